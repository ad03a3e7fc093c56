"""Distinct-n, the repetition rate and memorisation (the suffix array) against brute force."""
import random

import numpy as np
import pytest

from minilm.evaluate.diversity import distinct_n, ngrams, repetition_rate
from minilm.evaluate.memorisation import SuffixIndex, suffix_array


def random_samples(rng, count=6, vocab=4, longest=15):
    return [[rng.randrange(vocab) for _ in range(rng.randint(0, longest))] for _ in range(count)]


def windows_as_strings(sample, n):
    return [",".join(map(str, sample[i:i + n])) for i in range(len(sample) - n + 1)]


def test_distinct_n_matches_brute_force():
    rng = random.Random(0)
    for _ in range(200):
        samples, n = random_samples(rng), rng.randint(1, 4)
        every = [w for s in samples for w in windows_as_strings(s, n)]
        if not every:
            continue
        assert distinct_n(samples, n) == pytest.approx(len(set(every)) / len(every))


def test_repetition_rate_matches_brute_force():
    rng = random.Random(1)
    for _ in range(200):
        samples, n = random_samples(rng), rng.randint(1, 4)
        rates = []
        for sample in samples:
            grams = windows_as_strings(sample, n)
            repeats = sum(grams[i] in grams[:i] for i in range(len(grams)))  # n-grams seen earlier in the sample
            if grams:
                rates.append(repeats / len(grams))
        if rates:
            assert repetition_rate(samples, n) == pytest.approx(sum(rates) / len(rates))


def test_diversity_by_hand_and_errors():
    assert distinct_n([["a", "b", "a", "b"]], 1) == 0.5
    assert repetition_rate([["a", "b", "a", "b", "a"]], 2) == pytest.approx(0.5)  # ab ba ab ba: 2 repeats of 4
    assert ngrams("abc", 2) == [("a", "b"), ("b", "c")]
    with pytest.raises(ValueError, match="shorter than 3 tokens"):
        distinct_n([["a", "b"]], 3)
    with pytest.raises(ValueError, match="no sample has 4 tokens"):
        repetition_rate([["a"]], 4)
    with pytest.raises(ValueError, match="at least 1"):
        ngrams("abc", 0)


def test_suffix_array_matches_sorting_the_suffixes():
    rng = random.Random(2)
    for _ in range(100):
        ids = [rng.randrange(rng.choice([1, 2, 5, 300])) for _ in range(rng.randint(1, 60))]
        expected = sorted(range(len(ids)), key=lambda i: ids[i:])
        assert suffix_array(ids).tolist() == expected


def brute_force_longest_shared(sample, train):
    best = 0
    for i in range(len(sample)):
        for j in range(len(train)):
            length = 0
            while i + length < len(sample) and j + length < len(train) and sample[i + length] == train[j + length]:
                length += 1
            best = max(best, length)
    return best


def test_longest_shared_ngram_matches_brute_force():
    rng = random.Random(3)
    for _ in range(150):
        vocab = rng.choice([2, 3, 6])
        train = [rng.randrange(vocab) for _ in range(rng.randint(1, 80))]
        sample = [rng.randrange(vocab + 1) for _ in range(rng.randint(0, 25))]  # may hold an unseen id
        if train and rng.random() < 0.5 and sample:  # plant a copied run
            start = rng.randrange(len(train))
            copied = train[start:start + rng.randint(1, 20)]
            at = rng.randrange(len(sample) + 1)
            sample = sample[:at] + copied + sample[at:]
        match = SuffixIndex(train).longest_shared_ngram(sample)
        assert match.length == brute_force_longest_shared(sample, train)
        if match.length:
            run = sample[match.sample_start:match.sample_start + match.length]
            assert train[match.train_start:match.train_start + match.length] == run


def test_memorised_document_is_found_in_a_large_stream():
    rng = np.random.default_rng(4)
    train = rng.integers(0, 500, size=50_000)
    sample = np.concatenate([rng.integers(500, 600, size=10), train[31_000:31_040], rng.integers(500, 600, size=10)])
    match = SuffixIndex(train).longest_shared_ngram(sample)
    assert (match.length, match.sample_start, match.train_start) == (40, 10, 31_000)


def test_bad_training_stream_is_explained():
    with pytest.raises(ValueError, match="non-empty flat sequence"):
        SuffixIndex([])
