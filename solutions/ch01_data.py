"""Chapter 1 exercises, solved."""
import hashlib
import math
import re


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


def jaccard_similarity(a: set, b: set) -> float:
    """|a ∩ b| / |a ∪ b|, the Jaccard similarity of two sets; 1.0 when both are empty.
    >>> jaccard_similarity({1, 2, 3}, {2, 3, 4})
    0.5
    """
    union = a | b
    return len(a & b) / len(union) if union else 1.0


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


def lsh_candidate_probability(similarity: float, bands: int, rows: int) -> float:
    """The probability that banded LSH makes two documents with this Jaccard similarity candidates.

    Each band of `rows` MinHash positions agrees entirely with probability similarity**rows; the pair
    is a candidate when at least one of the `bands` bands agrees.
    """
    return 1 - (1 - similarity ** rows) ** bands


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


def split_for(text: str, validation: float = 0.1) -> str:
    """"train" or "validation", decided by the text alone, so it never changes between runs.

    Take the SHA-256 digest of the UTF-8 text (hashlib.sha256), read its first 8 bytes as a
    big-endian integer, divide by 2**64, and return "validation" when that number is below
    `validation`, else "train".
    """
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2 ** 64
    return "validation" if position < validation else "train"


def bits_per_byte(log_probs: list[float], texts: list[str]) -> float:
    """The entropy in bits per UTF-8 byte of texts whose exact natural-log probabilities are known.

    Total nats (minus the sum of the log-probabilities) over total bytes, converted to bits.
    Count one extra byte per text for the separator written after it (it costs 0 nats).
    """
    nats = -math.fsum(log_probs)
    total_bytes = sum(len(text.encode("utf-8")) + 1 for text in texts)
    return nats / total_bytes / math.log(2)
