"""Chapter 8 exercises against independent references: brute-force loops over attention weights and
planted attention patterns, PyTorch's autograd and scikit-learn for the linear probe,
torch.nn.functional.linear and linearity for the head ablation, a brute-force sort for exposure."""
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.exercises.harness import load_chapter

ex = load_chapter("ch08_inside_and_safety")


def causal_attention(batch, n_head, time, seed):
    """Random causal attention weights (batch, n_head, time, time), float64, each row summing to 1."""
    scores = torch.randn(batch, n_head, time, time, generator=torch.Generator().manual_seed(seed),
                         dtype=torch.float64) * 3
    future = torch.ones(time, time, dtype=torch.bool).triu(1)
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)


def one_hot_pattern(time, key_of):
    """A (time, time) pattern in which query i puts all its weight on key key_of(i)."""
    pattern = torch.zeros(time, time, dtype=torch.float64)
    for i in range(time):
        pattern[i, key_of(i)] = 1.0
    return pattern


def test_induction_score_matches_a_brute_force_loop():
    batch, n_head, period = 3, 4, 6
    attention = causal_attention(batch, n_head, 2 * period, seed=0)
    score = ex.induction_score(attention, period)
    assert score.shape == (n_head,)
    for h in range(n_head):
        weights = [attention[b, h, i, i - period + 1].item() for b in range(batch) for i in range(period, 2 * period)]
        assert score[h].item() == pytest.approx(sum(weights) / len(weights), abs=1e-12)


def test_induction_score_of_planted_patterns():
    period = 5
    time = 2 * period
    induction = one_hot_pattern(time, lambda i: max(i - period + 1, 0))
    previous = one_hot_pattern(time, lambda i: max(i - 1, 0))
    uniform = torch.tensor([[1 / (i + 1) if j <= i else 0.0 for j in range(time)] for i in range(time)],
                           dtype=torch.float64)
    heads = torch.stack([induction, previous, uniform])[None]  # (1, 3 heads, time, time)
    score = ex.induction_score(heads, period)
    assert score[0].item() == pytest.approx(1.0, abs=1e-12), "a perfect induction head scores 1"
    assert score[1].item() == pytest.approx(0.0, abs=1e-12), "a previous-token head is not an induction head"
    expected = sum(1 / (i + 1) for i in range(period, time)) / period  # uniform over keys 0..i
    assert score[2].item() == pytest.approx(expected, abs=1e-12)


def test_induction_score_rejects_a_period_that_does_not_fit():
    with pytest.raises(ValueError):
        ex.induction_score(causal_attention(1, 2, 10, seed=1), period=4)


def test_previous_token_score_matches_a_brute_force_loop_and_a_planted_head():
    batch, n_head, time = 2, 3, 9
    attention = causal_attention(batch, n_head, time, seed=2)
    score = ex.previous_token_score(attention)
    assert score.shape == (n_head,)
    for h in range(n_head):
        weights = [attention[b, h, i, i - 1].item() for b in range(batch) for i in range(1, time)]
        assert score[h].item() == pytest.approx(sum(weights) / len(weights), abs=1e-12)
    planted = one_hot_pattern(time, lambda i: max(i - 1, 0))[None, None]  # (1, 1, time, time)
    assert ex.previous_token_score(planted).item() == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError):
        ex.previous_token_score(torch.ones(1, 1, 1, 1))


def multinomial_problem(seed=5, n=240, d=8, n_classes=3):
    """Labels drawn from a softmax of random linear scores (Gumbel-max), so no class separates perfectly."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = (x @ rng.normal(size=(d, n_classes)) + rng.gumbel(size=(n, n_classes))).argmax(axis=1)
    return torch.tensor(x), torch.tensor(y)


def test_one_probe_step_matches_autograd():
    x, y = multinomial_problem()
    l2, lr = 0.1, 0.5
    w0, b0 = ex.fit_linear_probe(x, y, 3, l2, steps=1, lr=lr)
    w, b = ex.fit_linear_probe(x, y, 3, l2, steps=2, lr=lr)
    assert w0.shape == (3, 8) and b0.shape == (3,)
    wt, bt = w0.clone().requires_grad_(), b0.clone().requires_grad_()
    loss = F.cross_entropy(x @ wt.T + bt, y) + l2 / 2 * (wt ** 2).sum()
    loss.backward()
    torch.testing.assert_close(w, w0 - lr * wt.grad, atol=1e-12, rtol=0)
    torch.testing.assert_close(b, b0 - lr * bt.grad, atol=1e-12, rtol=0)


def test_many_probe_steps_reach_scikit_learns_probabilities():
    linear_model = pytest.importorskip("sklearn.linear_model")
    x, y = multinomial_problem()
    l2 = 0.02
    w, b = ex.fit_linear_probe(x, y, 3, l2, steps=2000, lr=1.0)
    # scikit-learn minimises C·Σ_i CE_i + ½‖W‖² (intercept unpenalised); divided by C·n that is
    # mean CE + ‖W‖²/(2·C·n), the probe's loss when l2 = 1/(C·n).
    reference = linear_model.LogisticRegression(C=1 / (l2 * len(y)), tol=1e-12, max_iter=10_000)
    reference.fit(x.numpy(), y.numpy())
    probabilities = torch.softmax(x @ w.T + b, dim=-1).numpy()
    np.testing.assert_allclose(probabilities, reference.predict_proba(x.numpy()), atol=1e-6)
    np.testing.assert_allclose(w.numpy(), reference.coef_, atol=1e-6)


def planted_feature(seed, n=1600, d=32, n_classes=4):
    """Balanced labels, each class shifting the features 4 units along its own hidden direction."""
    g = torch.Generator().manual_seed(seed)
    directions = torch.linalg.qr(torch.randn(d, n_classes, generator=g, dtype=torch.float64))[0].T  # (classes, d)
    labels = torch.arange(n) % n_classes
    features = torch.randn(n, d, generator=g, dtype=torch.float64) + 4.0 * directions[labels]  # (n, d)
    return features, labels, g


def held_out_accuracy(features, labels, n_classes):
    half = len(labels) // 2
    w, b = ex.fit_linear_probe(features[:half], labels[:half], n_classes, l2=1e-3, steps=500, lr=1.0)
    return ((features[half:] @ w.T + b).argmax(dim=-1) == labels[half:]).double().mean().item()


def test_a_probe_recovers_a_planted_feature_but_not_shuffled_labels():
    features, labels, g = planted_feature(seed=0)
    assert held_out_accuracy(features, labels, 4) >= 0.95
    shuffled = labels[torch.randperm(len(labels), generator=g)]
    assert held_out_accuracy(features, shuffled, 4) == pytest.approx(0.25, abs=0.08), \
        "labels unrelated to the features cannot be predicted on held-out data"


def test_a_probe_rejects_labels_out_of_range():
    x, y = multinomial_problem()
    with pytest.raises(ValueError):
        ex.fit_linear_probe(x, y, 2, 0.0, 1, 1.0)  # the labels go up to 2


def heads_and_projection(seed=7, batch=2, time=5, n_head=4, head_dim=3, n_embd=6):
    g = torch.Generator().manual_seed(seed)
    heads = torch.randn(batch, time, n_head, head_dim, generator=g, dtype=torch.float64)
    weight = torch.randn(n_embd, n_head * head_dim, generator=g, dtype=torch.float64)
    bias = torch.randn(n_embd, generator=g, dtype=torch.float64)
    return heads, weight, bias


@pytest.mark.parametrize("head", [0, 2, 3])
def test_ablating_a_head_equals_zeroing_its_columns_of_the_projection(head):
    heads, weight, bias = heads_and_projection()
    before = heads.clone()
    head_dim = heads.shape[-1]
    zeroed = weight.clone()
    zeroed[:, head * head_dim:(head + 1) * head_dim] = 0.0
    expected = F.linear(heads.reshape(*heads.shape[:2], -1), zeroed, bias)  # (batch, time, n_embd)
    torch.testing.assert_close(ex.ablate_head(heads, weight, bias, head), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(heads, before, atol=0, rtol=0, msg="leave the caller's head outputs unchanged")


@pytest.mark.parametrize("with_bias", [True, False])
def test_ablating_a_head_removes_exactly_its_own_contribution(with_bias):
    heads, weight, bias = heads_and_projection(seed=8)
    bias = bias if with_bias else None
    head_dim = heads.shape[-1]
    own = [heads[:, :, h] @ weight[:, h * head_dim:(h + 1) * head_dim].T  # (batch, time, n_embd)
           for h in range(heads.shape[2])]
    full = sum(own) + (0.0 if bias is None else bias)  # the projection is linear: bias + one term per head
    for h, contribution in enumerate(own):
        torch.testing.assert_close(ex.ablate_head(heads, weight, bias, h), full - contribution, atol=1e-12, rtol=0)


def test_ablate_head_rejects_a_head_that_is_not_there():
    heads, weight, bias = heads_and_projection()
    with pytest.raises(ValueError):
        ex.ablate_head(heads, weight, bias, head=4)


def brute_exposure(log_probs, true_index):
    """Sort descending, the true candidate after every candidate tied with it; its place is its rank."""
    order = sorted(range(len(log_probs)), key=lambda j: (-log_probs[j], j == true_index))
    rank = order.index(true_index) + 1
    return math.log2(len(log_probs)) - math.log2(rank)


def test_exposure_matches_a_brute_force_sort_ties_included():
    rng = random.Random(9)
    for _ in range(200):
        n = rng.randint(1, 40)
        log_probs = [float(-rng.randint(0, 6)) for _ in range(n)]  # few distinct values: many ties
        true_index = rng.randrange(n)
        expected = brute_exposure(log_probs, true_index)
        assert ex.exposure(torch.tensor(log_probs), true_index) == pytest.approx(expected, abs=1e-12)


def test_exposure_extremes():
    log_probs = torch.randn(1000, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    assert ex.exposure(log_probs, int(log_probs.argmax())) == pytest.approx(math.log2(1000), abs=1e-12)
    assert ex.exposure(log_probs, int(log_probs.argmin())) == pytest.approx(0.0, abs=1e-12)
    assert ex.exposure(torch.zeros(8), 3) == pytest.approx(0.0, abs=1e-12), "a tie with everyone ranks last"
    with pytest.raises(ValueError):
        ex.exposure(log_probs, 1000)
