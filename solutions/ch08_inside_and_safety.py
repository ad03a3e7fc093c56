"""Chapter 8 exercises, solved: an induction score and a previous-token score from attention weights,
a linear probe by gradient descent, a head ablation, and the exposure of a planted secret.

Check them with `./course exercise ch08_inside_and_safety`; chapter 8's notebook explains each.
"""
import math

import torch
import torch.nn.functional as F
from einops import rearrange


def _check_attention(attention: torch.Tensor) -> None:
    if attention.dim() != 4 or attention.shape[-1] != attention.shape[-2]:
        raise ValueError(f"attention must be (batch, n_head, time, time), got shape {tuple(attention.shape)}.")


def induction_score(attention: torch.Tensor, period: int) -> torch.Tensor:
    """Per head (n_head,): how much each query in the second copy of a repeated sequence attends to
    the token after its own previous occurrence.

    attention: the weights (batch, n_head, 2·period, 2·period) of a sequence of `period` random
    tokens followed by the same tokens again. Query i (period ≤ i ≤ 2·period − 1) saw its token at
    i − period; the token after it sits at key i − period + 1. The score is the mean of
    attention[b, h, i, i − period + 1] over the batch and those queries.
    Raise ValueError if attention is not (batch, n_head, 2·period, 2·period) with period ≥ 1.
    >>> uniform = torch.tril(torch.ones(4, 4)) / torch.arange(1, 5)[:, None]  # (4, 4): 1/(i+1) on keys ≤ i
    >>> induction_score(uniform[None, None], period=2)  # (1/3 + 1/4) / 2
    tensor([0.2917])
    """
    _check_attention(attention)
    if period < 1 or attention.shape[-1] != 2 * period:
        raise ValueError(f"attention over {attention.shape[-1]} positions is not two copies of period={period}; "
                         f"pass period = time / 2.")
    queries = torch.arange(period, 2 * period)  # (period,): the second copy
    keys = queries - period + 1  # (period,): the token after the previous occurrence
    return attention[:, :, queries, keys].mean(dim=(0, 2))  # (batch, n_head, period) -> (n_head,)


def previous_token_score(attention: torch.Tensor) -> torch.Tensor:
    """Per head (n_head,): the mean over the batch and queries i ≥ 1 of the weight on key i − 1.

    attention: the weights (batch, n_head, time, time). Raise ValueError if it is not of that shape
    with time ≥ 2.
    >>> uniform = torch.tril(torch.ones(4, 4)) / torch.arange(1, 5)[:, None]  # (4, 4)
    >>> previous_token_score(uniform[None, None])  # (1/2 + 1/3 + 1/4) / 3
    tensor([0.3611])
    """
    _check_attention(attention)
    if attention.shape[-1] < 2:
        raise ValueError("a previous-token score needs at least 2 positions; pass a longer sequence.")
    queries = torch.arange(1, attention.shape[-1])  # (time - 1,)
    return attention[:, :, queries, queries - 1].mean(dim=(0, 2))  # (n_head,)


def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, n_classes: int, l2: float, steps: int,
                     lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(W (n_classes, d), b (n_classes,)) after `steps` steps of full-batch gradient descent from zero
    on mean cross-entropy + l2/2 · ‖W‖² (the bias not penalised), logits = features @ Wᵀ + b.

    features (n, d) float, labels (n,) integers in 0..n_classes − 1. Write the gradient by hand
    (autograd would give the same numbers, but the point is to see it): with p = softmax(logits)
    and Y the one-hot labels, G = (p − Y)/n (n, n_classes); grad W = Gᵀ features + l2·W, grad b = the
    column sums of G. (scikit-learn's LogisticRegression(C) minimises C·Σ cross-entropy + ½‖W‖²:
    the same optimum when C = 1/(l2·n).)
    Raise ValueError if features is not 2-D, labels do not match it in number, or a label is out of range.
    >>> W, b = fit_linear_probe(torch.tensor([[1.0], [-1.0]]), torch.tensor([0, 1]), 2, 0.0, 1, 1.0)
    >>> W.tolist(), b.tolist()
    ([[0.5], [-0.5]], [0.0, 0.0])
    """
    if features.dim() != 2 or len(features) == 0 or labels.shape != (features.shape[0],):
        raise ValueError(f"features must be (n, d) and labels (n,) with n ≥ 1, got {tuple(features.shape)} and "
                         f"{tuple(labels.shape)}.")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must lie in 0..{n_classes - 1}, got {labels.min().item()}..{labels.max().item()}.")
    one_hot = F.one_hot(labels, n_classes).to(features.dtype)  # (n, n_classes)
    weight = features.new_zeros(n_classes, features.shape[1])  # (n_classes, d)
    bias = features.new_zeros(n_classes)  # (n_classes,)
    for _ in range(steps):
        p = torch.softmax(features @ weight.T + bias, dim=-1)  # (n, n_classes)
        g = (p - one_hot) / len(labels)  # (n, n_classes): d(mean cross-entropy)/d(logits)
        weight = weight - lr * (g.T @ features + l2 * weight)  # (n_classes, d)
        bias = bias - lr * g.sum(dim=0)  # (n_classes,)
    return weight, bias


def ablate_head(head_outputs: torch.Tensor, out_weight: torch.Tensor, out_bias: torch.Tensor | None,
                head: int) -> torch.Tensor:
    """The attention block's output (batch, time, n_embd) with head `head` removed.

    head_outputs (batch, time, n_head, head_dim): each head's output; out_weight
    (n_embd, n_head·head_dim) and out_bias (n_embd,) or None: the output projection, as nn.Linear
    holds them (minilm's `attention.out`). Zero the head's slice, put the heads side by side
    (batch, time, n_head·head_dim) with head h in columns h·head_dim .. (h+1)·head_dim − 1, then
    project: out = concatenated @ out_weightᵀ + out_bias (the bias stays: it belongs to no head).
    Raise ValueError if head is out of range or out_weight's width is not n_head·head_dim.
    >>> ablate_head(torch.ones(1, 1, 2, 1), torch.tensor([[1.0, 10.0]]), None, head=1)
    tensor([[[1.]]])
    """
    _, _, n_head, head_dim = head_outputs.shape
    if not 0 <= head < n_head:
        raise ValueError(f"head={head} is not one of the {n_head} heads (0..{n_head - 1}).")
    if out_weight.shape[-1] != n_head * head_dim:
        raise ValueError(f"out_weight takes {out_weight.shape[-1]} inputs, but {n_head} heads of "
                         f"{head_dim} give {n_head * head_dim}.")
    kept = head_outputs.clone()
    kept[:, :, head] = 0.0  # (batch, time, n_head, head_dim), the ablated head silent
    return F.linear(rearrange(kept, "b t h d -> b t (h d)"), out_weight, out_bias)  # (batch, time, n_embd)


def exposure(log_probs: torch.Tensor, true_index: int) -> float:
    """Carlini et al.'s exposure of the true candidate: log2(N) − log2(rank), in bits.

    log_probs (N,): the model's log-probability of each of N candidate secrets; the rank of the
    true one counts the candidates whose log-prob is ≥ its own (itself included, so ties count
    against it): rank 1 = the most likely, exposure log2 N; the least likely, exposure 0.
    Raise ValueError if log_probs is not a non-empty 1-D tensor or true_index is out of range.
    >>> exposure(torch.tensor([-1.0, -3.0, -2.0, -5.0]), true_index=2)  # rank 2 of 4
    1.0
    """
    if log_probs.dim() != 1 or len(log_probs) == 0:
        raise ValueError(f"log_probs must be a non-empty (N,) tensor, got shape {tuple(log_probs.shape)}.")
    if not 0 <= true_index < len(log_probs):
        raise ValueError(f"true_index={true_index} is not one of the {len(log_probs)} candidates.")
    rank = int((log_probs >= log_probs[true_index]).sum())
    return math.log2(len(log_probs)) - math.log2(rank)
