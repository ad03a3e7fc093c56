"""Linear probes: the optimum against scikit-learn's logistic regression, a planted linear fact
recovered while its control task stays at chance, control labels, per-layer rows, bad input."""
import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from minilm.interpret.probes import ProbeConfig, control_labels, fit_probe, probe_layers


def noisy_linear_problem(n: int, classes: int, seed: int):
    """Features on wildly different scales and offsets, labels from a noisy linear rule (not separable)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12)) * rng.uniform(0.1, 10, size=12) + rng.normal(scale=5, size=12)  # (n, 12)
    scores = StandardScaler().fit_transform(x) @ rng.normal(size=(12, classes))  # (n, classes)
    return x, (scores + rng.gumbel(scale=2, size=scores.shape)).argmax(axis=1)


def objective(z, y, weight, bias, l2):
    """Mean cross-entropy + l2/2·‖W‖², in float64 NumPy: (examples, features) z, (features, classes) W."""
    logits = z @ weight + bias  # (examples, classes)
    log_probs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    return -log_probs[np.arange(len(y)), y].mean() + l2 / 2 * np.sum(weight ** 2)


@pytest.mark.parametrize("l2", [1e-1, 1e-2, 1e-3])
def test_the_probe_reaches_scikit_learns_multinomial_optimum(l2):
    x, y = noisy_linear_problem(300, classes=4, seed=0)
    probe = fit_probe(x, y, ProbeConfig(l2=l2))
    z = StandardScaler().fit_transform(x)
    # scikit-learn minimises C·Σ cross-entropy + ½‖W‖²; divided by C·n that is ours when C = 1 / (l2·n).
    reference = LogisticRegression(C=1 / (l2 * len(y)), tol=1e-12, max_iter=100_000).fit(z, y)
    np.testing.assert_allclose(probe.predict_proba(x).numpy(), reference.predict_proba(z), rtol=0, atol=1e-5)
    ours = objective(z, y, probe.weight.numpy(), probe.bias.numpy(), l2)
    assert probe.loss == pytest.approx(ours, abs=1e-12)
    assert ours <= objective(z, y, reference.coef_.T, reference.intercept_, l2) + 1e-10
    assert probe.steps_taken < ProbeConfig().steps  # it stopped because it converged
    assert np.array_equal(probe.predict(x), reference.predict(z))


def test_two_classes_equal_a_binary_logistic_regression_at_half_the_l2():
    x, y = noisy_linear_problem(250, classes=2, seed=1)
    l2 = 1e-2
    probe = fit_probe(x, np.where(y == 1, "yes", "no"), ProbeConfig(l2=l2))
    z = StandardScaler().fit_transform(x)
    # Softmax weights W1 = -W2 = w/2 cost l2/2·2·‖w/2‖² = (l2/2)/2·‖w‖²: a binary fit with C = 2 / (l2·n).
    reference = LogisticRegression(C=2 / (l2 * len(y)), tol=1e-12, max_iter=100_000).fit(z, y)
    np.testing.assert_allclose(probe.predict_proba(x).numpy()[:, 1], reference.predict_proba(z)[:, 1],
                               rtol=0, atol=1e-5)
    assert probe.classes.tolist() == ["no", "yes"]
    assert set(probe.predict(x)) <= {"no", "yes"}


def test_standardising_makes_the_probe_blind_to_the_scale_and_offset_of_each_feature():
    x, y = noisy_linear_problem(200, classes=3, seed=2)
    rng = np.random.default_rng(3)
    scale, shift = rng.uniform(0.01, 100, size=x.shape[1]), rng.normal(scale=50, size=x.shape[1])
    plain, rescaled = fit_probe(x, y), fit_probe(x * scale + shift, y)
    np.testing.assert_allclose(plain.predict_proba(x[:20]).numpy(),
                               rescaled.predict_proba(x[:20] * scale + shift).numpy(), rtol=0, atol=1e-6)
    constant = np.hstack([x, np.full((len(x), 1), 7.0)])  # a feature that never changes: std 1, weight 0
    np.testing.assert_allclose(fit_probe(constant, y).predict_proba(constant).numpy(),
                               plain.predict_proba(x).numpy(), rtol=0, atol=1e-6)


def planted_problem(n: int, keys: int = 40, seed: int = 0):
    """Labels = argmax(W·x) over 5 informative dimensions of 20; keys shared by train and test,
    written nowhere in the features."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 20))  # (n, 20): dimensions 5-19 are noise
    labels = (x[:, :5] @ rng.normal(size=(5, 3))).argmax(axis=1)  # (n,)
    return x, labels, np.arange(n) % keys


def test_a_planted_linear_fact_is_recovered_while_its_control_task_stays_at_chance():
    x, labels, keys = planted_problem(n=3000)
    control = control_labels(labels, keys, seed=0)
    key_one_hot = np.eye(40)[keys] + 0.01 * np.random.default_rng(1).normal(size=(len(keys), 40))  # (n, 40)
    train, test = np.arange(2000), np.arange(2000, 3000)
    rows = probe_layers({0: x, 1: np.hstack([x, key_one_hot])}, labels, train, test, ProbeConfig(l2=1e-4),
                        control=control)
    planted, with_keys = rows
    assert planted["layer"] == 0 and with_keys["layer"] == 1
    assert planted["test_accuracy"] > 0.97 and planted["train_accuracy"] > 0.97
    # The control labels are independent of x, so no predictor can beat the commonest control label by much.
    commonest = np.bincount(control[test]).max() / len(test)
    assert planted["control_accuracy"] < commonest + 0.08
    assert planted["selectivity"] > 0.5
    # Once the features spell out the key, the control task is learnt by memorising key -> label.
    assert with_keys["control_accuracy"] > 0.9 and with_keys["selectivity"] < planted["selectivity"] - 0.4


def test_noise_features_score_about_the_majority_baseline():
    x, labels, _ = planted_problem(n=900, seed=4)
    rows = probe_layers([np.random.default_rng(5).normal(size=x.shape)], labels, np.arange(600), np.arange(600, 900))
    (row,) = rows
    assert row["layer"] == 0 and math.isnan(row["control_accuracy"]) and math.isnan(row["selectivity"])
    assert abs(row["test_accuracy"] - row["majority_baseline"]) < 0.1 and row["test_accuracy"] < 0.5


def wilson_by_search(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson interval found the long way: every p on a fine grid the score test does not reject."""
    grid = np.linspace(0, 1, 2_000_001)
    kept = grid[np.abs(correct / n - grid) <= z * np.sqrt(grid * (1 - grid) / n)]
    return kept.min(), kept.max()


def test_rows_hold_the_baseline_counts_and_the_wilson_interval():
    x, labels, keys = planted_problem(n=300, seed=6)
    rng = np.random.default_rng(7)
    test = rng.choice(300, size=77, replace=False)
    train = np.setdiff1d(np.arange(300), test)
    features = x + rng.normal(scale=2.0, size=x.shape)  # (300, 20) noisier: some test examples go wrong
    (row,) = probe_layers({3: torch.tensor(features, dtype=torch.float32)}, labels, train, test,
                          control=control_labels(labels, keys, seed=1))
    probe = fit_probe(torch.tensor(features, dtype=torch.float32)[train], labels[train])
    correct = sum(int(p == t) for p, t in zip(probe.predict(features[test]), labels[test]))
    assert row["layer"] == 3 and row["n_test"] == 77
    assert row["test_accuracy"] == pytest.approx(correct / 77) and 0 < correct < 77
    majority = max(set(labels[train].tolist()), key=labels[train].tolist().count)
    assert row["majority_baseline"] == pytest.approx(np.mean(labels[test] == majority))
    low, high = wilson_by_search(correct, 77)
    assert row["ci_low"] == pytest.approx(low, abs=1e-5) and row["ci_high"] == pytest.approx(high, abs=1e-5)
    assert row["selectivity"] == pytest.approx(row["test_accuracy"] - row["control_accuracy"])


def test_control_labels_are_one_draw_per_key_from_the_label_distribution():
    rng = np.random.default_rng(8)
    labels = rng.choice(3, size=60_000, p=[0.6, 0.3, 0.1])
    keys = [(int(k), "story") for k in rng.integers(20_000, size=len(labels))]  # tuples, as ProbeData's keys
    control = control_labels(labels, keys, seed=0)
    first = {}
    for key, label in zip(keys, control):
        assert first.setdefault(key, label) == label  # every example of a key gets the key's label
    shares = np.bincount(list(first.values()), minlength=3) / len(first)
    np.testing.assert_allclose(shares, [0.6, 0.3, 0.1], atol=0.015)  # one draw per key, real distribution
    assert np.array_equal(control, control_labels(labels, keys, seed=0))
    assert not np.array_equal(control, control_labels(labels, keys, seed=1))
    names = control_labels(np.array(["happy", "sad", "sad"]), ["a", "b", "a"], seed=0)
    assert names[0] == names[2] and set(names) <= {"happy", "sad"}


@pytest.mark.parametrize("call, message", [
    (lambda: fit_probe(np.ones((5, 3)), [0, 1, 0, 1]), "one label per row"),
    (lambda: fit_probe(np.random.rand(4, 3), [2, 2, 2, 2]), "single class"),
    (lambda: fit_probe(np.ones(4), [0, 1, 0, 1]), r"\(examples, features\)"),
    (lambda: fit_probe(np.array([[0.0], [np.nan]]), [0, 1]), "NaN"),
    (lambda: fit_probe(np.random.rand(4, 3), [0, 1, 0, 1]).predict(np.ones((2, 5))), r"\(examples, 3\)"),
    (lambda: fit_probe(np.random.rand(4, 3), [0, 1, 0, 1]).accuracy(np.ones((2, 3)), [0]), "one label per row"),
    (lambda: ProbeConfig(l2=-1.0), "l2 >= 0"),
    (lambda: ProbeConfig(steps=0), "steps >= 1"),
    (lambda: control_labels([0, 1, 1], ["a", "b"], seed=0), "one key per label"),
    (lambda: probe_layers([np.random.rand(6, 2)], [0, 1] * 3, [0, 1, 2, 3], [3, 4, 5]), "share examples"),
    (lambda: probe_layers([np.random.rand(6, 2)], [0, 1] * 3, [0, 1, 2], []), "at least one"),
    (lambda: probe_layers([np.random.rand(5, 2)], [0, 1] * 3, [0, 1, 2], [3, 4, 5]), "one row per example"),
    (lambda: probe_layers([np.random.rand(6, 2)], [0, 1] * 3, [0, 1, 2], [3, 4], control=[0, 1]), "control labels"),
    (lambda: probe_layers([np.random.rand(6, 2)], [0, 1] * 3, [0, 1, 2], [3, 4], control=[1] * 6), "single class"),
])
def test_bad_input_is_refused_with_a_clear_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()
