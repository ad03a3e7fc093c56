"""Expected calibration error against a direct float64 computation, and next-token confidences."""
import numpy as np
import pytest
import torch

from minilm.evaluate.calibration import (expected_calibration_error, next_token_confidences, plot_reliability,
                                         reliability)


def direct_ece(confidences, correct, bins):
    """Loop over bins [lo, hi) (the last one closed), in float64."""
    total, ece = len(confidences), 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = [i for i, c in enumerate(confidences) if lo <= c < hi or (b == bins - 1 and c == 1.0)]
        if inside:
            accuracy = sum(float(correct[i]) for i in inside) / len(inside)
            confidence = sum(float(confidences[i]) for i in inside) / len(inside)
            ece += len(inside) / total * abs(accuracy - confidence)
    return ece


@pytest.mark.parametrize("bins", [1, 5, 10, 15])
def test_ece_matches_direct_computation(bins):
    rng = np.random.default_rng(bins)
    for _ in range(20):
        confidences = rng.uniform(0, 1, size=rng.integers(1, 300))
        confidences[: len(confidences) // 10] = rng.choice([0.0, 0.5, 1.0])  # values on bin edges
        correct = rng.random(len(confidences)) < confidences ** 2
        assert expected_calibration_error(confidences, correct, bins) == pytest.approx(
            direct_ece(confidences.tolist(), correct.tolist(), bins), abs=1e-12)


def test_calibrated_and_overconfident_predictions():
    rng = np.random.default_rng(0)
    confidences = rng.uniform(0, 1, size=200_000)
    calibrated = rng.random(confidences.size) < confidences  # right exactly as often as claimed
    assert expected_calibration_error(confidences, calibrated) < 0.01
    diagram = reliability(np.full(100, 0.9), np.zeros(100, dtype=bool), bins=10)  # sure and always wrong
    assert diagram.ece == pytest.approx(0.9)
    assert diagram.counts.tolist() == [0] * 9 + [100]
    assert np.isnan(diagram.accuracy[0]) and diagram.accuracy[9] == 0.0


class FixedLogits(torch.nn.Module):
    """A stand-in model whose logits depend only on the input token: a lookup table."""

    def __init__(self, vocab):
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(0)))

    def forward(self, idx, targets=None):
        return self.table[idx], None  # (batch, T, vocab)


def test_next_token_confidences_from_a_model():
    vocab, ids = 7, torch.randint(0, 7, (101,), generator=torch.Generator().manual_seed(1))
    model = FixedLogits(vocab)
    confidences, correct = next_token_confidences(model, ids, block_size=10, batch_size=3)
    probs = torch.softmax(model.table.detach().double(), dim=-1)[ids[:-1]]  # (100, vocab)
    np.testing.assert_allclose(confidences, probs.max(-1).values.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(correct, (probs.argmax(-1) == ids[1:]).numpy())


def test_plot_and_bad_input():
    import matplotlib

    matplotlib.use("Agg")
    ax = plot_reliability(reliability([0.2, 0.7, 0.75], [False, True, False], bins=4))
    assert "ECE" in ax.get_title()
    with pytest.raises(ValueError, match="probabilities in"):
        reliability([1.5], [True])
    with pytest.raises(ValueError, match="same non-zero length"):
        reliability([0.5, 0.5], [True])
