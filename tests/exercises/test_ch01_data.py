"""Chapter 1 exercises, part 1, checked against independent references: minilm's tested MinHash and
LSH (minilm/data/dedup.py), brute force (every pair of signatures or of shingle sets compared
exactly), and a count of a hash split over thousands of texts."""
import hashlib
import itertools
import random

import numpy as np
import pytest

from minilm.data import StoryWorld
from minilm.data.dedup import MERSENNE_PRIME, MinHasher, jaccard, lsh_candidates, shingle_hash, shingles
from tests.exercises.harness import load_chapter

ex = load_chapter("ch01_data")


def test_quality_filter():
    prose = ("Return the number of items in a container. The argument may be a sequence, such as a "
             "string or a list, or a collection, such as a dictionary or a set.")
    assert ex.passes_quality_filter(prose)
    assert not ex.passes_quality_filter(prose[:50])
    assert not ex.passes_quality_filter("12 34 56 78 90 ab cd " * 10)
    assert not ex.passes_quality_filter("\n".join(["the same line"] * 6 + [prose]))
    assert ex.passes_quality_filter("\n".join(["the same line"] * 2 + [prose, "another", "and more"]))
    assert ex.passes_quality_filter("x" * 10, min_chars=5)


def test_word_shingles_are_minilms():
    stories = [story.text for story in StoryWorld().stories(20, seed=3)]
    for text in stories + ["One day, a shy fox found a red kite.", "Two words", ""]:
        for size in (1, 3, 5):
            assert ex.word_shingles(text, size) == shingles(text, size), (text[:30], size)


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


def brute_force_candidates(signatures, bands):
    """Every pair of signatures compared band by band."""
    rows = len(signatures[0]) // bands
    return {(i, j) for i, j in itertools.combinations(range(len(signatures)), 2)
            if any(signatures[i][t * rows:(t + 1) * rows] == signatures[j][t * rows:(t + 1) * rows]
                   for t in range(bands))}


@pytest.mark.parametrize("bands", [1, 4, 8, 16])
def test_lsh_candidates_are_the_pairs_that_agree_on_a_band(bands):
    rng = np.random.default_rng(bands)
    signatures = rng.integers(0, 3, size=(120, 16)).tolist()  # few values: many bands collide by chance
    got = ex.lsh_candidates(signatures, bands)
    assert got == brute_force_candidates(signatures, bands)
    assert got == lsh_candidates(np.array(signatures, dtype=np.uint64), bands)
    assert all(i < j for i, j in got)


def test_lsh_candidates_on_real_signatures_and_a_bad_band_count():
    sets = [shingles(story.text) for story in StoryWorld().stories(150, seed=4)]
    sets += [set(list(s)[:-3]) for s in sets[:20]]  # near copies: a few shingles fewer
    signatures = MinHasher(num_perm=64, seed=1).signatures(sets)
    got = ex.lsh_candidates(signatures.tolist(), 16)
    assert got == lsh_candidates(signatures, 16) == brute_force_candidates(signatures.tolist(), 16)
    assert {(i, 150 + i) for i in range(20)} <= got
    with pytest.raises(ValueError):
        ex.lsh_candidates(signatures.tolist(), 5)


def near_copy(text: str, rng: random.Random) -> str:
    """`text` with one word replaced: Jaccard of 5-word shingles about 0.85 for a story."""
    words = text.split(" ")
    words[rng.randrange(len(words))] = rng.choice(["purple", "quietly", "seven", "never"])
    return " ".join(words)


def brute_force_kept(texts, threshold, size=5):
    """Compare every pair's exact Jaccard; join pairs at or above the threshold; keep each cluster's first."""
    sets = [shingles(text, size) for text in texts]
    cluster = list(range(len(texts)))
    for i, j in itertools.combinations(range(len(texts)), 2):
        if jaccard(sets[i], sets[j]) >= threshold:
            old, new = max(cluster[i], cluster[j]), min(cluster[i], cluster[j])
            cluster = [new if c == old else c for c in cluster]
    return [i for i, c in enumerate(cluster) if c == i]


@pytest.fixture(scope="module")
def corpus():
    """300 stories, with exact copies, one-word edits and chains of edits (copies of copies) mixed in."""
    rng = random.Random(0)
    texts = [story.text for story in StoryWorld().stories(300, seed=5)]
    for _ in range(60):
        texts.insert(rng.randrange(len(texts) + 1), near_copy(rng.choice(texts), rng))
    for _ in range(20):
        texts.insert(rng.randrange(len(texts) + 1), rng.choice(texts))
    return texts


@pytest.mark.parametrize("threshold", [0.7, 0.9])
def test_deduplicate_keeps_what_brute_force_keeps(corpus, threshold):
    kept = ex.deduplicate(corpus, threshold)
    expected = brute_force_kept(corpus, threshold)
    assert kept == expected
    assert 300 - 5 <= len(kept) < len(corpus)  # the copies go (a few originals may be edits' leaders)


def test_deduplicate_follows_chains_and_keeps_the_first():
    base = " ".join(f"word{i}" for i in range(60))  # 56 shingles of 5 words
    once = base.replace("word20 ", "other ")  # J(base, once) = 51 / 61 = 0.84
    twice = once.replace("word40 ", "again ")  # J(once, twice) = 0.84, J(base, twice) = 46 / 66 = 0.70
    texts = [twice, "something else entirely, with its own words and no overlap at all", base, once]
    assert ex.deduplicate(texts, 0.8) == brute_force_kept(texts, 0.8) == [0, 1]
    assert ex.deduplicate(texts, 1.0) == [0, 1, 2, 3]


def test_split_is_deterministic_and_near_the_fraction():
    texts = [f"document number {i}" for i in range(5000)]
    splits = [ex.split_for(t, 0.2) for t in texts]
    assert splits == [ex.split_for(t, 0.2) for t in texts]
    assert abs(splits.count("validation") / len(texts) - 0.2) < 0.03
    first = texts[0]
    position = int(hashlib.sha256(first.encode()).hexdigest()[:16], 16) / 2 ** 64
    assert ex.split_for(first, position + 1e-9) == "validation"
    assert ex.split_for(first, max(position - 1e-9, 0)) == "train"
