"""Deduplication (MinHash, LSH, exact and near duplicates), mixing, splits and statistics, checked
against brute force."""
import itertools
import math
import random
from collections import Counter

import numpy as np
import pytest

from minilm.data import Document
from minilm.data.dedup import (DedupReport, MinHasher, estimated_jaccard, jaccard, lsh_candidates,
                               near_duplicate_clusters, remove_exact_duplicates, shingles)
from minilm.data.splits import SPLITS, mix_sources, split_documents, split_name
from minilm.data.stats import script_counts, source_statistics


def random_pair(rng: random.Random, target: float) -> tuple[set, set]:
    """Two sets of tokens whose Jaccard similarity is near `target`."""
    shared = [f"s{i}" for i in range(int(200 * target))]
    only = int(200 * (1 - target) / 2)
    return (set(shared) | {f"a{i}" for i in range(only)} | {rng.random()},
            set(shared) | {f"b{i}" for i in range(only)} | {rng.random()})


def test_minhash_estimates_the_exact_jaccard_similarity():
    rng = random.Random(0)
    hasher = MinHasher(num_perm=256, seed=1)
    errors = []
    for trial in range(150):
        a, b = random_pair(rng, target=trial / 150)
        a, b = {str(x) for x in a}, {str(x) for x in b}
        estimate = estimated_jaccard(hasher.signature(a), hasher.signature(b))
        errors.append(estimate - jaccard(a, b))
    sigma = math.sqrt(0.25 / 256)  # the largest standard error, at J = 0.5
    assert max(abs(e) for e in errors) < 5 * sigma
    assert abs(sum(errors) / len(errors)) < 3 * sigma / math.sqrt(len(errors)) + 0.005  # unbiased


def test_identical_sets_have_identical_signatures_and_chunking_does_not_matter():
    words = {f"w{i}" for i in range(10_000)}
    small_chunks, one_chunk = MinHasher(64, chunk=100), MinHasher(64, chunk=100_000)
    assert np.array_equal(small_chunks.signature(words), one_chunk.signature(set(sorted(words))))


def test_lsh_candidates_are_exactly_the_pairs_sharing_a_band():
    rng = np.random.default_rng(0)
    signatures = rng.integers(0, 3, size=(40, 12), dtype=np.uint64)  # few values: many collisions
    bands, rows = 4, 3
    brute = {(i, j) for i, j in itertools.combinations(range(40), 2)
             if any(np.array_equal(signatures[i, b * rows:(b + 1) * rows], signatures[j, b * rows:(b + 1) * rows])
                    for b in range(bands))}
    assert lsh_candidates(signatures, bands) == brute
    with pytest.raises(ValueError, match="divide"):
        lsh_candidates(signatures, 5)


def test_lsh_finds_similar_pairs_and_skips_dissimilar_ones():
    rng = random.Random(2)
    hasher = MinHasher(128)
    found = {0.9: 0, 0.2: 0}
    for target in found:
        for _ in range(50):
            a, b = random_pair(rng, target)
            sigs = hasher.signatures([{str(x) for x in a}, {str(x) for x in b}])
            found[target] += bool(lsh_candidates(sigs, bands=32))
    # theory: 1 - (1 - J^4)^32 is ~1.0 at J=0.9 and ~0.05 at J=0.2
    assert found[0.9] == 50 and found[0.2] <= 10


def test_exact_duplicates_ignore_case_and_spacing():
    docs = [Document("Hello  World", "prose"), Document("hello world\n", "prose"), Document("Other", "code")]
    report = DedupReport()
    assert [d.text for d in remove_exact_duplicates(docs, report)] == ["Hello  World", "Other"]
    assert report.exact_removed == {"prose": 1}


def test_near_duplicates_are_clustered_and_others_are_not():
    base = ("Return a new list containing all items from the iterable in ascending order. A custom key "
            "function can be supplied to customize the sort order, and the reverse flag can be set to "
            "request the result in descending order.").split()
    edited = base.copy()
    edited[5] = "including"
    unrelated = "Open the file and return a stream. Raise an error upon failure of any kind at all."
    docs = [Document(" ".join(base), "prose"), Document(unrelated, "prose"), Document(" ".join(edited), "prose")]
    report = DedupReport()
    leaders = near_duplicate_clusters(docs, report, threshold=0.7)
    assert leaders == [0, 1, 0]
    assert report.near_pairs == 1
    assert report.examples[0]["jaccard"] == pytest.approx(jaccard(shingles(docs[0].text), shingles(docs[2].text)))


def test_splits_are_deterministic_independent_and_near_the_fractions():
    keys = [f"{random.Random(i).getrandbits(64):016x}" for i in range(20_000)]
    fractions = (0.8, 0.15, 0.05)
    names = [split_name(k, fractions) for k in keys]
    counts = Counter(names)
    for name, share in zip(SPLITS, fractions):
        assert abs(counts[name] / len(keys) - share) < 0.015
    docs = [Document(str(i), "prose") for i in range(len(keys))]
    alone = split_documents(docs[:100], keys[:100], fractions)
    together = split_documents(docs, keys, fractions)
    for name in SPLITS:  # adding documents never moves the old ones
        assert all(d in together[name] for d in alone[name])
    with pytest.raises(ValueError, match="sum to 1"):
        split_documents(docs, keys, (0.5, 0.1, 0.1))


def test_mixing_meets_the_weights_without_repeating_documents():
    rng = random.Random(3)
    docs = [Document("x" * rng.randint(50, 150), source) for source, n in (("a", 400), ("b", 100)) for _ in range(n)]
    keys = [f"{rng.getrandbits(64):016x}" for _ in docs]
    mixed, mixed_keys, report = mix_sources(docs, {"a": 1.0, "b": 1.0}, keys)
    assert len(set(map(id, mixed))) == len(mixed)
    chars = Counter()
    for d in mixed:
        chars[d.source] += len(d.text)
    assert chars["b"] == report.available["b"]  # the scarcer source is used whole
    assert abs(chars["a"] - chars["b"]) < 150  # each holds half, to within one document
    key_of = {id(d): key for d, key in zip(docs, keys)}
    assert [key_of[id(d)] for d in mixed] == mixed_keys


def test_statistics_against_brute_force():
    docs = [Document("The cat sat. The cat ran!", "prose"), Document("Ein Kätzchen. Ἀθῆναι", "files"),
            Document("the dog", "prose")]
    rows = {row["source"]: row for row in source_statistics(docs)}
    assert rows["prose"]["documents"] == 2 and rows["prose"]["characters"] == 25 + 7
    assert rows["prose"]["vocabulary"] == len({"the", "cat", "sat", "ran", "dog"})
    greek = sum(1 for ch in "Ἀθῆναι")
    assert script_counts("Ein Kätzchen. Ἀθῆναι") == Counter({"LATIN": 11, "GREEK": greek})
    assert rows["files"]["latin_letters"] == pytest.approx(11 / (11 + greek))
