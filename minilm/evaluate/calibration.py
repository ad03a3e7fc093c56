"""Does the model know what it knows? Calibration of next-token probabilities.

A model is calibrated when, among all the predictions it makes with confidence 0.7, about 70% are
right. Here the prediction is the model's most likely next token, its confidence that token's
probability, and "right" means it is the token that came. Group the predictions into bins of
confidence and compare, in each bin, the mean confidence with the accuracy: the reliability
diagram. Its weighted mean gap is the expected calibration error (Naeini et al., 2015; Guo et al.,
2017):

    ECE = Σ_b (n_b / N) · |accuracy_b − confidence_b|

    confidences, correct = next_token_confidences(model, valid_ids, block_size=128)
    diagram = reliability(confidences, correct, bins=10)
    diagram.ece
    plot_reliability(diagram)

Bins are equal-width on [0, 1]: bin b holds confidences in [b/B, (b+1)/B), and a confidence of
exactly 1 goes in the last bin.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from minilm.evaluate.lm import batched_logits


@torch.no_grad()
def next_token_confidences(model: torch.nn.Module, ids, block_size: int, batch_size: int = 16,
                           max_windows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For every predicted token: the probability of the model's top guess, and whether it was right.

    Returns (confidences, correct), each (tokens,), float64 and bool.
    """
    confidences, correct = [], []
    for logits, targets in batched_logits(model, ids, block_size, batch_size, max_windows):
        top_prob, top_token = torch.softmax(logits, dim=-1).max(dim=-1)  # (batch, T), (batch, T)
        confidences.append(top_prob.flatten().double().cpu())
        correct.append((top_token == targets).flatten().cpu())
    return torch.cat(confidences).numpy(), torch.cat(correct).numpy()


@dataclass(frozen=True)
class ReliabilityDiagram:
    """Per confidence bin: how many predictions, their mean confidence, and how often they were right."""
    edges: np.ndarray  # (bins + 1,) bin boundaries on [0, 1]
    counts: np.ndarray  # (bins,) predictions in each bin
    confidence: np.ndarray  # (bins,) mean confidence in each bin (NaN where empty)
    accuracy: np.ndarray  # (bins,) share of right predictions in each bin (NaN where empty)
    ece: float  # expected calibration error: Σ (n_b / N) |accuracy_b − confidence_b|


def reliability(confidences, correct, bins: int = 10) -> ReliabilityDiagram:
    """Bin predictions by confidence and compute the reliability diagram and the ECE."""
    confidences = np.asarray(confidences, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if confidences.shape != correct.shape or confidences.ndim != 1 or confidences.size == 0:
        raise ValueError(f"need two flat arrays of the same non-zero length, got shapes "
                         f"{confidences.shape} and {correct.shape}.")
    if np.any(confidences < 0) or np.any(confidences > 1) or np.any(np.isnan(confidences)):
        raise ValueError("confidences must be probabilities in [0, 1]; pass softmax outputs, not logits.")
    if bins < 1:
        raise ValueError(f"need at least one bin, got {bins}.")
    which = np.minimum((confidences * bins).astype(np.int64), bins - 1)  # (N,) bin of each prediction
    counts = np.bincount(which, minlength=bins)  # (bins,)
    with np.errstate(invalid="ignore", divide="ignore"):  # empty bins give NaN, on purpose
        confidence = np.bincount(which, weights=confidences, minlength=bins) / counts  # (bins,)
        accuracy = np.bincount(which, weights=correct, minlength=bins) / counts  # (bins,)
    filled = counts > 0
    ece = float(np.sum(counts[filled] / counts.sum() * np.abs(accuracy[filled] - confidence[filled])))
    return ReliabilityDiagram(np.linspace(0.0, 1.0, bins + 1), counts, confidence, accuracy, ece)


def expected_calibration_error(confidences, correct, bins: int = 10) -> float:
    """The ECE alone: the mean |accuracy − confidence| over bins, weighted by their sizes."""
    return reliability(confidences, correct, bins).ece


def plot_reliability(diagram: ReliabilityDiagram, ax=None, title: str | None = None):
    """Draw the diagram: accuracy per bin as bars against the diagonal of perfect calibration."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(4.5, 4.5))[1]
    width = np.diff(diagram.edges)  # (bins,)
    filled = diagram.counts > 0
    ax.bar(diagram.edges[:-1][filled], diagram.accuracy[filled], width=width[filled], align="edge",
           edgecolor="black", alpha=0.7, label="accuracy in the bin")
    ax.plot(diagram.confidence[filled], diagram.accuracy[filled], "o", color="C1", label="(mean confidence, accuracy)")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfectly calibrated")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence of the top token", ylabel="accuracy",
           title=title or f"reliability diagram (ECE = {diagram.ece:.3f})")
    ax.legend(loc="upper left", fontsize="small")
    return ax
