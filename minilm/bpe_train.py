"""Pre-tokenisation and training of byte-level BPE: which pairs of tokens to merge, in which order.

    counts = count_pretokens(texts, special_tokens=("<|endoftext|>",))   # pre-token (bytes) -> count
    merges = train_merges(counts, vocab_size=1024)                        # [Merge(left, right, count), ...]

**Pre-tokenisation.** Special tokens (such as `<|endoftext|>`) are cut out of the text first,
longest first, so they are never split or merged with their neighbours. The rest is cut with GPT-2's
regular expression into pre-tokens: a word with the space before it (" cat"), a number, a run of
punctuation, a run of whitespace. A merge never crosses a pre-token boundary, so " cat" and "cat."
are learned separately from what follows them, and training only needs how often each distinct
pre-token occurs (a few tens of thousands of counts instead of megabytes of text).

**Training.** The vocabulary starts as the 256 single bytes, so every text can be written in it.
Each step finds the adjacent pair of tokens that occurs most often (counting each pre-token as often
as it occurs), adds their concatenation to the vocabulary and replaces the pair everywhere, until the
vocabulary has `vocab_size` tokens (or no pair is left). Ties between equally frequent pairs go to
the lexicographically greatest pair of byte strings, (left, right) compared as Python compares a
tuple of bytes: (b"t", b"h") beats (b"e", b" ") because b"t" > b"e".

`train_merges` never recounts: it keeps every pair's count and, for every pair, the set of
pre-tokens that contain it. A merge revisits only the pre-tokens that contain the merged pair and
updates the counts of the pairs they lose and gain; a heap (with stale entries skipped when popped)
hands out the most frequent pair. `train_merges_naive` recounts every pair after every merge: the
slow, obvious reference that tests and benchmarks/tokenizer_speed.py compare against.
"""
from __future__ import annotations

import heapq
from collections import Counter
from typing import Iterable, Mapping, NamedTuple

import regex

from minilm.progress import progress_bar

# GPT-2's pre-tokenisation pattern: English contractions, a letter run with an optional space in
# front, a number run, a punctuation run, and whitespace (a run before a word leaves its last space
# for the word).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_SPLIT = regex.compile(GPT2_PATTERN)


class Merge(NamedTuple):
    left: bytes  # the first token of the pair
    right: bytes  # the token that follows it
    count: int  # how often the pair occurred when it was merged


def special_splitter(special_tokens: Iterable[str]) -> regex.Pattern | None:
    """A pattern whose `split` keeps the special tokens (longest first) at the odd positions."""
    tokens = sorted(set(special_tokens), key=len, reverse=True)
    if any(not token for token in tokens):
        raise ValueError("a special token cannot be the empty string.")
    if not tokens:
        return None
    return regex.compile("(" + "|".join(regex.escape(token) for token in tokens) + ")")


def split_on_special(text: str, splitter: regex.Pattern | None) -> list[str]:
    """[plain, special, plain, special, ..., plain]: the special tokens sit at the odd indexes."""
    return splitter.split(text) if splitter is not None else [text]


def to_utf8(text: str) -> bytes:
    """text encoded as UTF-8, or a ValueError that says where it is not valid Unicode."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as error:
        bad = text[error.start]
        raise ValueError(f"cannot encode {text!r}: it holds a lone surrogate U+{ord(bad):04X}, which is not "
                         f"a Unicode character; repair the text first, e.g. "
                         f"text.encode('utf-8', 'replace').decode('utf-8').") from None


def count_pretokens(texts: Iterable[str], special_tokens: Iterable[str] = (),
                    progress: bool = False) -> Counter[bytes]:
    """How often each pre-token (as UTF-8 bytes) occurs in `texts`; special tokens are left out."""
    splitter = special_splitter(special_tokens)
    counts: Counter[str] = Counter()
    for text in progress_bar(texts, progress, desc="pre-tokenising", unit=" docs"):
        for plain in split_on_special(text, splitter)[::2]:
            counts.update(GPT2_SPLIT.findall(plain))
    return Counter({to_utf8(word): count for word, count in counts.items()})


def merge_pair(word: list[int], left: int, right: int, new: int) -> list[int]:
    """`word` with every (left, right) replaced by `new`, scanning left to right."""
    merged, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == left and word[i + 1] == right:
            merged.append(new)
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return merged


def merge_pair_counting(word: list[int], pair: tuple[int, int], new: int, count: int,
                        changes: Counter[tuple[int, int]], gained: list[tuple[int, int]]) -> list[int]:
    """merge_pair, also adding to `changes` how the counts of the neighbouring pairs change.

    Around each (left, right) -> new: the pair (before, left) becomes (before, new) and
    (right, after) becomes (new, after), each `count` times; the new pairs are appended to `gained`.
    `before` is read from the merged output, so in "a b a b" the second merge sees (new, a) become
    (new, new), not (b, a) again. The merged pair itself is not counted: the trainer drops it whole.
    """
    left, right = pair
    merged, start, last = [], 0, len(word) - 1
    while True:
        try:
            i = word.index(left, start, last)  # the next `left` that has a token after it
        except ValueError:
            break
        if word[i + 1] != right:
            merged += word[start:i + 1]
            start = i + 1
            continue
        merged += word[start:i]
        if merged:
            before = merged[-1]
            changes[before, left] -= count
            changes[before, new] += count
            gained.append((before, new))
        if i + 2 <= last:
            after = word[i + 2]
            changes[right, after] -= count
            changes[new, after] += count
            gained.append((new, after))
        merged.append(new)
        start = i + 2
    merged += word[start:]
    return merged


def _descending(token: bytes) -> tuple[int, ...]:
    """A key that sorts byte strings in reverse: the greatest byte string gets the smallest key.

    Each byte b becomes 255 - b, and a final 256 puts a prefix after every longer string it starts
    (b"a" < b"ab", so b"ab" must come first).
    """
    return tuple(255 - b for b in token) + (256,)


def train_merges(pretoken_counts: Mapping[bytes, int], vocab_size: int, progress: bool = False) -> list[Merge]:
    """The merges, in order, that grow the 256 bytes into `vocab_size` tokens (fewer if pairs run out).

    Keeps pair counts up to date instead of recounting them (see the module's docstring).
    """
    tokens = [bytes([b]) for b in range(256)]  # token id -> its bytes
    token_ids = {token: i for i, token in enumerate(tokens)}
    sort_keys = [_descending(token) for token in tokens]  # token id -> tie-breaking key
    words = [list(word) for word in pretoken_counts]  # each pre-token as token ids (its bytes at first)
    word_counts = list(pretoken_counts.values())

    pair_counts: Counter[tuple[int, int]] = Counter()
    pair_words: dict[tuple[int, int], set[int]] = {}  # pair -> indexes of the words that contain it
    for index, (word, count) in enumerate(zip(words, word_counts)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += count
            pair_words.setdefault(pair, set()).add(index)

    def heap_entry(pair):  # the most frequent pair first, then the greatest (left, right)
        return (-pair_counts[pair], sort_keys[pair[0]], sort_keys[pair[1]], pair)

    heap = [heap_entry(pair) for pair in pair_counts]
    heapq.heapify(heap)
    merges: list[Merge] = []
    with progress_bar(None, progress, total=max(vocab_size - len(tokens), 0), desc="BPE merges") as bar:
        while len(tokens) < vocab_size and heap:
            negative_count, _, _, pair = heapq.heappop(heap)
            if pair_counts.get(pair) != -negative_count:
                continue  # a stale entry: this pair's count has changed since it was pushed
            left, right = pair
            merged = tokens[left] + tokens[right]
            merges.append(Merge(tokens[left], tokens[right], -negative_count))
            new = token_ids.get(merged)
            if new is None:  # the same bytes can arise from two different pairs: keep one id
                new = token_ids[merged] = len(tokens)
                tokens.append(merged)
                sort_keys.append(_descending(merged))
                bar.update()
            changes: Counter[tuple[int, int]] = Counter()  # pair -> how much its count changes
            for index in pair_words.pop(pair):  # may hold words that lost the pair since: no harm
                gained: list[tuple[int, int]] = []
                words[index] = merge_pair_counting(words[index], pair, new, word_counts[index], changes, gained)
                for neighbours in gained:
                    pair_words.setdefault(neighbours, set()).add(index)
            del pair_counts[pair]
            changes.pop(pair, None)  # an overlapping repeat, (a, a) in "a a a": dropped with the pair
            for changed, change in changes.items():
                if change == 0:
                    continue
                pair_counts[changed] += change
                if pair_counts[changed] > 0:
                    heapq.heappush(heap, heap_entry(changed))
                else:
                    del pair_counts[changed]
                    pair_words.pop(changed, None)
    return merges


def train_merges_naive(pretoken_counts: Mapping[bytes, int], vocab_size: int) -> list[Merge]:
    """The same merges as `train_merges`, found the obvious way: recount every pair for every merge."""
    words = {tuple(bytes([b]) for b in word): count for word, count in pretoken_counts.items()}
    vocabulary = {bytes([b]) for b in range(256)}
    merges = []
    while len(vocabulary) < vocab_size:
        pair_counts: Counter[tuple[bytes, bytes]] = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pair_counts[pair] += count
        if not pair_counts:
            break
        best = max(pair_counts, key=lambda pair: (pair_counts[pair], pair))
        merges.append(Merge(best[0], best[1], pair_counts[best]))
        vocabulary.add(best[0] + best[1])
        words = {_merge_bytes(word, best): count for word, count in words.items()}
    return merges


def _merge_bytes(word: tuple[bytes, ...], pair: tuple[bytes, bytes]) -> tuple[bytes, ...]:
    merged, i = [], 0
    while i < len(word):
        if word[i:i + 2] == pair:
            merged.append(pair[0] + pair[1])
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return tuple(merged)
