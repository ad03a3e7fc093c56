"""Chapter 1 exercises, part 1: the pieces of a data pipeline, solved."""
import hashlib
import random
import re
from collections import defaultdict

from minilm.data.dedup import MERSENNE_PRIME, shingle_hash


def passes_quality_filter(text: str, min_chars: int = 100, min_alpha_share: float = 0.7,
                          max_duplicate_line_share: float = 0.3) -> bool:
    """True when `text` passes three heuristic filters:

    - it has at least `min_chars` characters;
    - letters (str.isalpha) make up at least `min_alpha_share` of its characters that are not
      spaces, tabs or newlines;
    - at most `max_duplicate_line_share` of its non-empty lines (stripped) repeat an earlier line.
    """
    if len(text) < min_chars:
        return False
    visible = [ch for ch in text if ch not in " \t\n"]
    if not visible or sum(ch.isalpha() for ch in visible) / len(visible) < min_alpha_share:
        return False
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    repeated = len(lines) - len(set(lines))
    return not lines or repeated / len(lines) <= max_duplicate_line_share


def word_shingles(text: str, size: int = 3) -> set[str]:
    """The set of word `size`-grams of `text`, lower-cased, each written as its words joined by one space.

    Words are runs of letters, digits and underscores (the regex \\w+). A text with `size` words or
    fewer has one shingle: all its words. An empty text has the shingle "".
    >>> sorted(word_shingles("The cat sat on the mat", size=3))
    ['cat sat on', 'on the mat', 'sat on the', 'the cat sat']
    """
    words = re.findall(r"\w+", text.lower())
    if len(words) <= size:
        return {" ".join(words)}
    return {" ".join(words[i: i + size]) for i in range(len(words) - size + 1)}


def minhash_signature(hashes: list[int], a: list[int], b: list[int], prime: int) -> list[int]:
    """The MinHash signature of a set of shingle hashes (non-negative ints below `prime`).

    Position i holds min over x in `hashes` of (a[i] * x + b[i]) % prime. Raise ValueError when
    `hashes` is empty (an empty set has no minimum) or when a and b differ in length.
    >>> minhash_signature([3, 5], a=[2, 1], b=[1, 4], prime=7)
    [0, 0]
    """
    if not hashes:
        raise ValueError("an empty set has no MinHash signature; give at least one shingle hash.")
    if len(a) != len(b):
        raise ValueError(f"{len(a)} values of a but {len(b)} of b; give one (a, b) pair per hash function.")
    return [min((a_i * x + b_i) % prime for x in hashes) for a_i, b_i in zip(a, b)]


def lsh_candidates(signatures: list[list[int]], bands: int) -> set[tuple[int, int]]:
    """The candidate pairs of banded LSH: (i, j), i < j, whose signatures agree on every row of at
    least one band.

    Cut each signature (all of the same length k) into `bands` bands of k // bands consecutive
    positions; band number t of document i is signatures[i][t * r:(t + 1) * r] with r = k // bands.
    For each band, put each document in a bucket keyed by its band (a tuple), and pair up every two
    documents that share a bucket. Raise ValueError when k is not a multiple of `bands`. Never
    compare two signatures directly: that is the n²/2 work LSH exists to avoid.
    >>> sorted(lsh_candidates([[1, 2, 3, 4], [1, 2, 0, 0], [9, 9, 3, 4], [5, 6, 7, 8]], bands=2))
    [(0, 1), (0, 2)]
    """
    length = len(signatures[0]) if signatures else 0
    if length % bands:
        raise ValueError(f"signatures of {length} hashes cannot be cut into {bands} equal bands.")
    rows = length // bands
    pairs = set()
    for band in range(bands):
        buckets = defaultdict(list)
        for index, signature in enumerate(signatures):
            buckets[tuple(signature[band * rows:(band + 1) * rows])].append(index)
        for members in buckets.values():
            pairs.update((a, b) for position, a in enumerate(members) for b in members[position + 1:])
    return pairs


def deduplicate(texts: list[str], threshold: float = 0.7, shingle_size: int = 5, num_perm: int = 128,
                bands: int = 32, seed: int = 0) -> list[int]:
    """The indexes of the texts kept when near duplicates are removed: one text per cluster.

    1. Shingle each text (`word_shingles(text, shingle_size)`) and hash each shingle to a number below
       `MERSENNE_PRIME` (use `minilm.data.dedup.shingle_hash`).
    2. Draw `num_perm` hash functions with `rng = random.Random(seed)`: a_i = rng.randrange(1, prime)
       and b_i = rng.randrange(prime) for each i, and take each text's `minhash_signature`.
    3. Find the candidate pairs with `lsh_candidates(signatures, bands)`, and keep those whose exact
       Jaccard similarity |A ∩ B| / |A ∪ B| of shingle sets is at least `threshold`.
    4. Clusters: texts joined by a chain of such pairs (a union-find, or a graph search). Keep the
       first text (the smallest index) of each cluster; return the kept indexes in increasing order.
    With enough bands, the result equals the one found by comparing every pair exactly.
    >>> deduplicate(["the cat sat on the mat today", "the cat sat on the mat today!", "a dog ran"], 0.7, 3)
    [0, 2]
    """
    sets = [word_shingles(text, shingle_size) for text in texts]
    rng = random.Random(seed)
    a = [rng.randrange(1, MERSENNE_PRIME) for _ in range(num_perm)]
    b = [rng.randrange(MERSENNE_PRIME) for _ in range(num_perm)]
    signatures = [minhash_signature([shingle_hash(s) for s in shingle_set], a, b, MERSENNE_PRIME)
                  for shingle_set in sets]
    leader = list(range(len(texts)))  # union-find: each text points towards its cluster's first text

    def find(i: int) -> int:
        while leader[i] != i:
            i = leader[i]
        return i

    for i, j in lsh_candidates(signatures, bands):
        if len(sets[i] & sets[j]) / len(sets[i] | sets[j]) >= threshold:
            first, second = sorted((find(i), find(j)))
            leader[second] = first
    return [i for i in range(len(texts)) if find(i) == i]


def split_for(text: str, validation: float = 0.1) -> str:
    """"train" or "validation", decided by the text alone, so it never changes between runs.

    Take the SHA-256 digest of the UTF-8 text (hashlib.sha256), read its first 8 bytes as a
    big-endian integer, divide by 2**64, and return "validation" when that number is below
    `validation`, else "train".
    """
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2 ** 64
    return "validation" if position < validation else "train"
