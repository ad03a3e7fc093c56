"""Did the model write something new, or recite its training data? The longest shared n-gram.

For a generated sample, memorisation here is the length of the longest run of tokens that also
occurs somewhere in the training stream. Short shared runs are normal (common phrases); a run as
long as a whole training document means the model copied it.

Checking every sample position against every training position would cost O(sample × train).
A suffix array makes it fast: the starting positions of all suffixes of the training stream,
sorted in lexicographic order. Every training run that starts like the query sits in one block of
that order, so a binary search finds where the query would go, and the longest prefix the query
shares with any suffix is shared with one of the two neighbours of that place.

    index = SuffixIndex(train_ids)                 # built once: O(N log² N) with NumPy sorts
    match = index.longest_shared_ngram(sample)     # .length, .sample_start, .train_start
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def suffix_array(ids) -> np.ndarray:
    """Start positions of all suffixes of ids, sorted lexicographically (a shorter prefix first).

    Prefix doubling: rank every suffix by its first token, then by its first 2, 4, 8, … tokens,
    each round sorting by the pair (rank of the first half, rank of the second half), until
    every rank differs.
    """
    ids = np.asarray(ids, dtype=np.int64)
    count = len(ids)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    rank = np.unique(ids, return_inverse=True)[1].astype(np.int64).ravel()  # (N,) rank by first token
    span = 1
    while True:
        second = np.full(count, -1, dtype=np.int64)  # rank of the suffix `span` further on; −1: past the end
        second[:count - span] = rank[span:]
        order = np.lexsort((second, rank))  # sort by rank, then by second
        first_sorted, second_sorted = rank[order], second[order]
        starts_group = np.ones(count, dtype=bool)
        starts_group[1:] = (first_sorted[1:] != first_sorted[:-1]) | (second_sorted[1:] != second_sorted[:-1])
        rank = np.empty(count, dtype=np.int64)
        rank[order] = np.cumsum(starts_group) - 1  # equal pairs share a rank
        if rank.max() == count - 1 or span >= count:  # every suffix is told apart
            return order
        span *= 2


@dataclass(frozen=True)
class SharedNgram:
    """The longest run of tokens a sample shares with the training stream."""
    length: int  # tokens in the run (0: not even one token is shared)
    sample_start: int  # where it starts in the sample
    train_start: int  # where it occurs in the training stream (one occurrence; −1 when length is 0)


class SuffixIndex:
    """The training stream and its suffix array, for finding shared runs of tokens quickly."""

    def __init__(self, train_ids):
        self.ids = np.asarray(train_ids, dtype=np.int64)  # (N,) the training stream
        if self.ids.ndim != 1 or len(self.ids) == 0:
            raise ValueError("the training ids must be one non-empty flat sequence.")
        self.order = suffix_array(self.ids)  # (N,) suffix starts in sorted order

    def _compare(self, query: np.ndarray, start: int) -> tuple[int, int]:
        """(shared prefix length, sign): sign < 0 when the suffix at `start` sorts before the query."""
        suffix = self.ids[start:start + len(query)]
        width = len(suffix)
        differ = np.flatnonzero(suffix != query[:width])
        if differ.size:
            at = int(differ[0])
            return at, (-1 if suffix[at] < query[at] else 1)
        return width, (0 if width == len(query) else -1)  # a suffix that is a prefix of the query sorts first

    def longest_prefix_match(self, query) -> tuple[int, int]:
        """(length, train position) of the longest prefix of `query` found in the training stream."""
        query = np.asarray(query, dtype=np.int64)
        low, high = 0, len(self.order)  # find the first suffix that does not sort before the query
        while low < high:
            middle = (low + high) // 2
            if self._compare(query, int(self.order[middle]))[1] < 0:
                low = middle + 1
            else:
                high = middle
        best = (0, -1)
        for neighbour in (low - 1, low):
            if 0 <= neighbour < len(self.order):
                start = int(self.order[neighbour])
                shared = self._compare(query, start)[0]
                if shared > best[0]:
                    best = (shared, start)
        return best

    def longest_shared_ngram(self, sample) -> SharedNgram:
        """The longest run of tokens of `sample` that occurs anywhere in the training stream."""
        sample = np.asarray(sample, dtype=np.int64)
        best = SharedNgram(0, 0, -1)
        for start in range(len(sample)):
            if len(sample) - start <= best.length:  # no longer run can start here
                break
            length, train_start = self.longest_prefix_match(sample[start:])
            if length > best.length:
                best = SharedNgram(length, start, train_start)
        return best
