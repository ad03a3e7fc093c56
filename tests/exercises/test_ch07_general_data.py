"""Chapter 7 exercises against independent references: brute-force n-grams, an independent count of
hashed features, PyTorch's autograd and scikit-learn for logistic regression, SciPy's t quantiles."""
import math
import random
import zlib

import numpy as np
import pytest
import torch

from tests.exercises.harness import load_chapter

ex = load_chapter("ch07_general_data")

WORDS = "the a cat dog sat on mat rug Kite kite".split()


def random_text(rng, low=0, high=30):
    return " ".join(rng.choice(WORDS) + rng.choice(["", ",", ".", "!"]) for _ in range(rng.randint(low, high)))


def brute_ngrams(text, n):
    words = [w.strip(",.!").lower() for w in text.split() if w.strip(",.!")]
    if not words:
        return set()
    if len(words) < n:
        return {tuple(words)}
    return set(zip(*(words[i:] for i in range(n))))


def test_word_ngrams_match_a_brute_force_count():
    rng = random.Random(0)
    for _ in range(300):
        text, n = random_text(rng), rng.randint(1, 6)
        assert ex.word_ngrams(text, n) == brute_ngrams(text, n)


def test_contaminated_flags_exactly_the_examples_over_the_share():
    rng = random.Random(1)
    train = [random_text(rng, 10, 40) for _ in range(20)]
    leaked = train[3].split()[:12]
    tests = [random_text(rng, 0, 20) for _ in range(30)] + [" ".join(leaked), train[7].upper()]
    for n, share in ((3, 0.5), (4, 0.8), (2, 1.0)):
        seen = set().union(*(brute_ngrams(t, n) for t in train))
        expected = [i for i, t in enumerate(tests)
                    if brute_ngrams(t, n) and len(brute_ngrams(t, n) & seen) / len(brute_ngrams(t, n)) >= share]
        assert ex.contaminated(train, tests, n, share) == expected
        assert {len(tests) - 2, len(tests) - 1} <= set(expected)  # the planted copies


def test_hashed_features_match_an_independent_count():
    rng = random.Random(2)
    texts = [random_text(rng) for _ in range(40)] + [""]
    features = ex.hashed_features(texts, 64)
    assert features.shape == (41, 64)
    for row, text in zip(features, texts):
        words = [w.strip(",.!").lower() for w in text.split() if w.strip(",.!")]
        counts = np.zeros(64)
        for gram in words + [a + " " + b for a, b in zip(words, words[1:])]:
            counts[zlib.crc32(gram.encode()) % 64] += 1
        expected = counts / np.linalg.norm(counts) if counts.any() else counts
        np.testing.assert_allclose(row, expected, atol=1e-12)


def problem(seed=3, n=120, d=10):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) / math.sqrt(d)
    y = (x @ rng.normal(size=d) + 0.3 * rng.normal(size=n) > 0).astype(float)
    return x, y


def test_one_gradient_step_matches_autograd():
    x, y = problem()
    w0, b0 = ex.fit_logistic_regression(x, y, l2=0.1, steps=1, lr=0.5)
    w, b = ex.fit_logistic_regression(x, y, l2=0.1, steps=2, lr=0.5)
    wt = torch.tensor(w0, requires_grad=True)
    bt = torch.tensor(b0, dtype=torch.float64, requires_grad=True)
    logits = torch.tensor(x) @ wt + bt
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor(y)) + 0.05 * (wt ** 2).sum()
    loss.backward()
    np.testing.assert_allclose(w, w0 - 0.5 * wt.grad.numpy(), atol=1e-12)
    assert b == pytest.approx(b0 - 0.5 * bt.grad.item(), abs=1e-12)


def test_many_steps_reach_scikit_learns_optimum():
    linear_model = pytest.importorskip("sklearn.linear_model")
    x, y = problem(n=200)
    l2 = 0.05
    w, b = ex.fit_logistic_regression(x, y, l2=l2, steps=4000, lr=2.0)
    reference = linear_model.LogisticRegression(C=1 / (l2 * len(y)), tol=1e-12, max_iter=10_000).fit(x, y)
    np.testing.assert_allclose(w, reference.coef_[0], atol=1e-5)
    assert b == pytest.approx(reference.intercept_[0], abs=1e-5)


def test_sample_efficiency_matches_scipys_t_interval():
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(4)
    rows = [{"pretraining": name, "labelled": k, "score": rng.random()}
            for name in ("none", "mix") for k in (10, 1, 100) for _ in range(rng.randint(1, 5))]
    curves = ex.sample_efficiency(rows)
    assert set(curves) == {"none", "mix"}
    for name, curve in curves.items():
        assert [k for k, _, _ in curve] == [1, 10, 100]
        for k, mean, half in curve:
            scores = [r["score"] for r in rows if r["pretraining"] == name and r["labelled"] == k]
            assert mean == pytest.approx(np.mean(scores))
            expected = 0.0 if len(scores) == 1 else \
                stats.t.ppf(0.975, len(scores) - 1) * np.std(scores, ddof=1) / math.sqrt(len(scores))
            assert half == pytest.approx(expected, rel=1e-4, abs=1e-12)
