"""Chapter 8 exercises: what a model does inside (an induction score, a previous-token score, a linear
probe, a head ablation) and what it remembers (the exposure of a planted secret).

Write each function below (replace `raise NotImplementedError`), then check your answers with:

    ./course exercise ch08_inside_and_safety

(or `pytest tests/exercises/test_ch08_inside_and_safety.py --student`). The tests compare your answers
with brute-force loops over the attention weights, planted attention patterns, PyTorch's autograd
and scikit-learn's logistic regression, torch.nn.functional.linear, and a brute-force sort. The
solutions are in solutions/ch08_inside_and_safety.py; chapter 8's notebook explains each idea.
"""
import math  # noqa: F401 (math.log2)

import torch
import torch.nn.functional as F  # noqa: F401 (F.one_hot, F.linear)
from einops import rearrange  # noqa: F401 (rearrange(x, "b t h d -> b t (h d)"))


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
    raise NotImplementedError


def previous_token_score(attention: torch.Tensor) -> torch.Tensor:
    """Per head (n_head,): the mean over the batch and queries i ≥ 1 of the weight on key i − 1.

    attention: the weights (batch, n_head, time, time). Raise ValueError if it is not of that shape
    with time ≥ 2.
    >>> uniform = torch.tril(torch.ones(4, 4)) / torch.arange(1, 5)[:, None]  # (4, 4)
    >>> previous_token_score(uniform[None, None])  # (1/2 + 1/3 + 1/4) / 3
    tensor([0.3611])
    """
    raise NotImplementedError


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
    raise NotImplementedError


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
    raise NotImplementedError


def exposure(log_probs: torch.Tensor, true_index: int) -> float:
    """Carlini et al.'s exposure of the true candidate: log2(N) − log2(rank), in bits.

    log_probs (N,): the model's log-probability of each of N candidate secrets; the rank of the
    true one counts the candidates whose log-prob is ≥ its own (itself included, so ties count
    against it): rank 1 = the most likely, exposure log2 N; the least likely, exposure 0.
    Raise ValueError if log_probs is not a non-empty 1-D tensor or true_index is out of range.
    >>> exposure(torch.tensor([-1.0, -3.0, -2.0, -5.0]), true_index=2)  # rank 2 of 4
    1.0
    """
    raise NotImplementedError
