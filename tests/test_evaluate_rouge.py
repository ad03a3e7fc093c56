"""ROUGE-L against a brute-force longest common subsequence and hand-worked cases."""
import itertools
import random

import pytest

from minilm.evaluate.rouge import lcs_length, mean_rouge_l, rouge_l


def is_subsequence(short, long):
    remaining = iter(long)
    return all(token in remaining for token in short)  # `in` consumes the iterator up to the match


def brute_force_lcs(a, b):
    """Try every subsequence of a, longest first."""
    for size in range(len(a), 0, -1):
        if any(is_subsequence(combo, b) for combo in itertools.combinations(a, size)):
            return size
    return 0


def test_lcs_matches_brute_force():
    rng = random.Random(0)
    for _ in range(300):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 9))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 9))]
        assert lcs_length(a, b) == brute_force_lcs(a, b)


def test_rouge_l_by_hand():
    # LCS of "the cat sat on the mat" and "the cat was on the mat" is "the cat on the mat": 5 of 6 each way.
    score = rouge_l("the cat sat on the mat", ["the cat was on the mat"])
    assert (score.precision, score.recall, score.f_measure) == pytest.approx((5 / 6, 5 / 6, 5 / 6))
    # Candidate "the cat" (2) against "the big cat sat" (4): LCS 2, P = 1, R = 1/2, F1 = 2/3.
    score = rouge_l("the cat", ["the big cat sat"])
    assert (score.precision, score.recall, score.f_measure) == pytest.approx((1.0, 0.5, 2 / 3))
    # β = 2 weighs recall more: F = 5 P R / (R + 4 P) = 5·0.5 / (0.5 + 4) = 5/9.
    assert rouge_l("the cat", ["the big cat sat"], beta=2.0).f_measure == pytest.approx(5 / 9)


def test_rouge_l_takes_the_best_reference_and_handles_empty_text():
    best = rouge_l("a b c", ["x y z", "a b c", "a"])
    assert best.f_measure == pytest.approx(1.0)
    assert rouge_l("", ["a b"]).f_measure == 0.0
    assert rouge_l("a b", [""]).f_measure == 0.0
    assert mean_rouge_l(["a b", "c"], [["a b"], ["d"]]) == pytest.approx(0.5)


def test_random_f_measure_matches_formula():
    rng = random.Random(1)
    for _ in range(100):
        cand = " ".join(rng.choice("abc") for _ in range(rng.randint(1, 8)))
        ref = " ".join(rng.choice("abc") for _ in range(rng.randint(1, 8)))
        common = brute_force_lcs(cand.split(), ref.split())
        p, r = common / len(cand.split()), common / len(ref.split())
        expected = 0.0 if common == 0 else 2 * p * r / (p + r)
        assert rouge_l(cand, [ref]).f_measure == pytest.approx(expected)


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="list of one or more strings"):
        rouge_l("a", "a")
    with pytest.raises(ValueError, match="beta"):
        rouge_l("a", ["a"], beta=0)
    with pytest.raises(ValueError, match="one reference list per candidate"):
        mean_rouge_l(["a", "b"], [["a"]])
