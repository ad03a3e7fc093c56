"""Chapter 1 exercises, checked against independent references: brute force, the course's vectorised
MinHash, a Monte Carlo simulation of LSH, and exact counts."""
import hashlib
import math
import random

import numpy as np
import pytest

from minilm.data import StoryWorld, corpus_entropy
from minilm.data.dedup import MERSENNE_PRIME, MinHasher, shingle_hash
from tests.exercises.harness import load_chapter

ex = load_chapter("ch01_data")


def test_word_shingles():
    text = "One day, a shy fox found a red kite near the river."
    words = ["one", "day", "a", "shy", "fox", "found", "a", "red", "kite", "near", "the", "river"]
    for size in (1, 2, 3, 5):
        expected = {" ".join(words[i:i + size]) for i in range(len(words) - size + 1)}
        assert ex.word_shingles(text, size) == expected
    assert ex.word_shingles("Two words", 3) == {"two words"}
    assert ex.word_shingles("", 3) == {""}


def test_jaccard_similarity_against_brute_force():
    rng = random.Random(0)
    for _ in range(200):
        a = {rng.randrange(30) for _ in range(rng.randrange(1, 20))}
        b = {rng.randrange(30) for _ in range(rng.randrange(1, 20))}
        both = sum(1 for x in range(30) if x in a and x in b)
        either = sum(1 for x in range(30) if x in a or x in b)
        assert ex.jaccard_similarity(a, b) == pytest.approx(both / either)
    assert ex.jaccard_similarity(set(), set()) == 1.0


def test_minhash_signature_matches_the_vectorised_one():
    hasher = MinHasher(num_perm=32, seed=3)
    words = {f"shingle {i}" for i in range(300)}
    hashes = [shingle_hash(w) for w in words]
    expected = hasher.signature(words).tolist()
    assert ex.minhash_signature(hashes, hasher.a.tolist(), hasher.b.tolist(), MERSENNE_PRIME) == expected
    with pytest.raises(ValueError):
        ex.minhash_signature([], [1], [2], 7)
    with pytest.raises(ValueError):
        ex.minhash_signature([1], [1, 2], [2], 7)


@pytest.mark.parametrize("bands,rows", [(32, 4), (16, 8), (8, 2)])
def test_lsh_probability_matches_a_simulation(bands, rows):
    rng = np.random.default_rng(bands)
    for similarity in (0.2, 0.5, 0.8):
        agree = rng.random((20_000, bands, rows)) < similarity  # each MinHash position agrees with P = J
        simulated = agree.all(axis=2).any(axis=1).mean()
        assert ex.lsh_candidate_probability(similarity, bands, rows) == pytest.approx(simulated, abs=0.012)


def test_quality_filter():
    prose = ("Return the number of items in a container. The argument may be a sequence, such as a "
             "string or a list, or a collection, such as a dictionary or a set.")
    assert ex.passes_quality_filter(prose)
    assert not ex.passes_quality_filter(prose[:50])
    assert not ex.passes_quality_filter("12 34 56 78 90 ab cd " * 10)
    assert not ex.passes_quality_filter("\n".join(["the same line"] * 6 + [prose]))
    assert ex.passes_quality_filter("\n".join(["the same line"] * 2 + [prose, "another", "and more"]))
    assert ex.passes_quality_filter("x" * 10, min_chars=5)


def test_split_is_deterministic_and_near_the_fraction():
    texts = [f"document number {i}" for i in range(5000)]
    splits = [ex.split_for(t, 0.2) for t in texts]
    assert splits == [ex.split_for(t, 0.2) for t in texts]
    assert abs(splits.count("validation") / len(texts) - 0.2) < 0.03
    first = texts[0]
    position = int(hashlib.sha256(first.encode()).hexdigest()[:16], 16) / 2 ** 64
    assert ex.split_for(first, position + 1e-9) == "validation"
    assert ex.split_for(first, max(position - 1e-9, 0)) == "train"


def test_bits_per_byte_of_stories():
    stories = StoryWorld().stories(100, seed=0)
    expected = corpus_entropy(stories)["bits_per_byte"]
    got = ex.bits_per_byte([s.log_prob for s in stories], [s.text for s in stories])
    assert got == pytest.approx(expected, rel=1e-12)
    assert ex.bits_per_byte([math.log(0.5)], ["é"]) == pytest.approx(1 / 3)  # 1 bit over 2 bytes + 1 separator
