"""Deduplication: exact (a hash of normalised text) and near-duplicate (MinHash + banded LSH).

Exact duplicates have the same text once case and whitespace are normalised: a hash finds them.
Near duplicates differ a little (a renamed variable, one changed word). We compare documents as
sets of word n-grams ("shingles") and call two documents near duplicates when their Jaccard
similarity |A ∩ B| / |A ∪ B| is at least a threshold.

MinHash. Hash every shingle with k random hash functions h_1..h_k and keep, for each, the minimum
over the document's shingles. For one random hash function, P[min h(A) = min h(B)] = J(A, B), so
the share of the k positions where two signatures agree estimates the Jaccard similarity.

LSH (locality-sensitive hashing). Comparing every pair costs n²/2. Cut each signature into b bands
of r rows; two documents become candidates when all r rows of at least one band agree, which
happens with probability 1 - (1 - J^r)^b: an S-curve that is near 0 for dissimilar pairs and near
1 for similar ones (its steepest point is near (1/b)^(1/r)). Only candidates are compared exactly.

    signatures = MinHasher(num_perm=128).signatures([shingles(d.text) for d in documents])
    pairs = lsh_candidates(signatures, bands=32)
"""
from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from einops import rearrange

from minilm.data.documents import Document

MERSENNE_PRIME = (1 << 31) - 1  # hash values live modulo this prime; a * x < 2^62 fits in 64 bits
WORD = re.compile(r"\w+")


def normalise(text: str) -> str:
    """Lower case, one space between words: the form exact duplicates are compared in."""
    return " ".join(text.lower().split())


def text_hash(text: str) -> str:
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()


def shingles(text: str, size: int = 5) -> set[str]:
    """The set of word `size`-grams of the lower-cased text (the whole text if it is shorter)."""
    words = WORD.findall(text.lower())
    if len(words) <= size:
        return {" ".join(words)}
    return {" ".join(words[i: i + size]) for i in range(len(words) - size + 1)}


def jaccard(a: set, b: set) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def shingle_hash(shingle: str) -> int:
    """A shingle as a number below MERSENNE_PRIME."""
    digest = hashlib.blake2b(shingle.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % MERSENNE_PRIME


class MinHasher:
    """k hash functions h_i(x) = (a_i x + b_i) mod p, p prime, 0 < a_i < p, over shingle hashes x < p.

    (A random linear map modulo a prime scatters the shingles in a new random order for each i.)
    """

    def __init__(self, num_perm: int = 128, seed: int = 0, chunk: int = 4096) -> None:
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, MERSENNE_PRIME, size=num_perm, dtype=np.uint64)  # (k,)
        self.b = rng.integers(0, MERSENNE_PRIME, size=num_perm, dtype=np.uint64)  # (k,)
        self.chunk = chunk  # shingles hashed at once (bounds memory for long documents)

    def signature(self, shingle_set: set[str]) -> np.ndarray:
        """The MinHash signature of one set of shingles: (k,) uint64."""
        x = np.fromiter((shingle_hash(s) for s in shingle_set), dtype=np.uint64, count=len(shingle_set))
        result = np.full(self.a.shape, MERSENNE_PRIME, dtype=np.uint64)
        for start in range(0, len(x), self.chunk):
            block = x[start: start + self.chunk, None]  # (n, 1)
            hashed = (block * self.a + self.b) % np.uint64(MERSENNE_PRIME)  # (n, k)
            result = np.minimum(result, hashed.min(axis=0))
        return result

    def signatures(self, shingle_sets: list[set[str]]) -> np.ndarray:
        """(documents, k) signatures."""
        return np.stack([self.signature(s) for s in shingle_sets]) if shingle_sets else \
            np.zeros((0, len(self.a)), dtype=np.uint64)


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """The share of MinHash positions where two signatures agree."""
    return float(np.mean(sig_a == sig_b))


def lsh_candidates(signatures: np.ndarray, bands: int) -> set[tuple[int, int]]:
    """Pairs (i < j) whose signatures agree on every row of at least one of `bands` bands."""
    if signatures.shape[1] % bands:
        raise ValueError(f"{signatures.shape[1]} hash functions cannot be cut into {bands} equal bands; "
                         f"choose bands that divide num_perm.")
    banded = rearrange(signatures, "n (band row) -> band n row", band=bands)  # (bands, docs, rows)
    pairs: set[tuple[int, int]] = set()
    for band in banded:
        buckets: dict[bytes, list[int]] = defaultdict(list)
        for index, rows in enumerate(band):
            buckets[rows.tobytes()].append(index)
        for members in buckets.values():
            pairs.update((a, b) for i, a in enumerate(members) for b in members[i + 1:])
    return pairs


class UnionFind:
    """Groups of indices joined pair by pair (near-duplicate clusters)."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        root_i, root_j = self.find(i), self.find(j)
        if root_i != root_j:
            self.parent[max(root_i, root_j)] = min(root_i, root_j)  # the earliest document leads


@dataclass
class DedupReport:
    exact_removed: dict[str, int] = field(default_factory=dict)  # source -> exact duplicates removed
    near_removed: dict[str, int] = field(default_factory=dict)  # source -> near duplicates removed
    candidate_pairs: int = 0  # pairs LSH proposed
    near_pairs: int = 0  # candidates whose exact Jaccard reached the threshold
    examples: list[dict] = field(default_factory=list)  # near-duplicate pairs: texts, sources, Jaccard


def remove_exact_duplicates(documents: list[Document], report: DedupReport) -> list[Document]:
    """Keep the first document of each normalised text."""
    seen: set[str] = set()
    kept = []
    for document in documents:
        key = text_hash(document.text)
        if key in seen:
            report.exact_removed[document.source] = report.exact_removed.get(document.source, 0) + 1
            continue
        seen.add(key)
        kept.append(document)
    return kept


def near_duplicate_clusters(documents: list[Document], report: DedupReport, threshold: float = 0.7,
                            shingle_size: int = 5, num_perm: int = 128, bands: int = 32,
                            examples: int = 5) -> list[int]:
    """For each document, the index of the first document of its near-duplicate cluster."""
    sets = [shingles(d.text, shingle_size) for d in documents]
    signatures = MinHasher(num_perm).signatures(sets)
    candidates = lsh_candidates(signatures, bands)
    report.candidate_pairs = len(candidates)
    clusters = UnionFind(len(documents))
    found = []
    for i, j in sorted(candidates):
        similarity = jaccard(sets[i], sets[j])
        if similarity >= threshold:
            clusters.union(i, j)
            found.append((similarity, i, j))
    report.near_pairs = len(found)
    for similarity, i, j in sorted(found, key=lambda f: (f[0] == 1.0, -f[0], f[1]))[:examples]:
        report.examples.append({"jaccard": similarity,
                                "estimate": estimated_jaccard(signatures[i], signatures[j]),
                                "a": documents[i].text, "b": documents[j].text,
                                "a_meta": documents[i].meta, "b_meta": documents[j].meta,
                                "source": documents[i].source})
    return [clusters.find(i) for i in range(len(documents))]


def remove_near_duplicates(documents: list[Document], leaders: list[int],
                           report: DedupReport) -> list[Document]:
    """Keep one document (the first) of each near-duplicate cluster."""
    kept = []
    for index, (document, leader) in enumerate(zip(documents, leaders)):
        if leader == index:
            kept.append(document)
        else:
            report.near_removed[document.source] = report.near_removed.get(document.source, 0) + 1
    return kept
