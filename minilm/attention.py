"""Attention, written from its formula: Attention(Q, K, V) = softmax(QKᵀ / √d_k) V.

Each query asks "which keys match me?": its dot product with every key is a score, the softmax turns
the scores into weights that are positive and sum to one, and the output is the weighted sum of the
values. Dividing by √d_k keeps the scores' variance near one whatever the head size, so the softmax
neither saturates nor starves the gradients (chapter 2's notebook shows the experiment).

    from minilm.attention import scaled_dot_product_attention, causal_mask, MultiHeadAttention
    out, weights = scaled_dot_product_attention(q, k, v, mask=causal_mask(t, device=q.device))
    layer = MultiHeadAttention(d_model=64, n_heads=4)
    y, _ = layer(x, mask=causal_mask(x.shape[1]))        # self-attention, a word only looks back

Mask convention, everywhere in the course (the same as PyTorch's boolean `attn_mask`): a boolean
tensor broadcastable to (..., t_q, t_k) in which True means "this query may attend to this key".
A query row whose every key is masked has nothing to attend to: its weights are all zero and its
output is the zero vector (finite, never NaN, in the forward pass and in the gradients).

`scaled_dot_product_attention` is the formula, step by step, and returns the weights so they can be
looked at; `fused_attention` gives the same result through `torch.nn.functional.
scaled_dot_product_attention`, which picks a fused kernel (FlashAttention-style on a GPU) that never
stores the (t_q, t_k) weights. `measure_attention` times one pass of either and measures its peak
memory, which is how the notebook and `benchmarks/attention_speed.py` show attention's O(t²) cost.
"""
from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.profiler import ProfilerActivity, profile

from minilm.runtime import wall_seconds


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """softmax(x)_i = exp(x_i) / Σ_j exp(x_j), computed without overflow.

    Subtracting the row's maximum m changes nothing (the factor exp(-m) cancels between numerator
    and denominator) but keeps every exponent ≤ 0, so exp never overflows, even for inputs of ±1e4.
    A row of all -inf (every key masked) gives all zeros instead of NaN.
    """
    peak = x.amax(dim=dim, keepdim=True).detach()  # the shift needs no gradient: it cancels out
    peak = peak.masked_fill(peak == float("-inf"), 0.0)  # an all -inf row: shift by 0, not by -inf
    exps = torch.exp(x - peak)  # every exponent ≤ 0, so every value is in [0, 1]
    total = exps.sum(dim=dim, keepdim=True)  # ≥ 1 when the row has a finite entry (its max gives e⁰)
    # An all -inf row sums to exactly 0: divide it by 1 instead (0/1 = 0, not 0/0 = NaN). `where` leaves
    # every other row's gradient untouched; clamp_min(1.0) would not, at a row with one key (total == 1).
    return exps / torch.where(total > 0, total, torch.ones_like(total))


def causal_mask(t_q: int, t_k: int | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """The causal mask (t_q, t_k): True where a query may attend to a key, i.e. looks back, not ahead.

    With t_k == t_q (the default) it is lower triangular: position i sees positions 0..i. With
    t_k > t_q (generation with a KV cache: t_k - t_q earlier positions are already stored) the
    queries are the last t_q positions, so query i sits at position t_k - t_q + i and sees keys
    0..t_k - t_q + i.
    """
    t_k = t_q if t_k is None else t_k
    if t_q < 1 or t_k < t_q:
        raise ValueError(f"causal_mask needs 1 <= t_q <= t_k, got t_q={t_q}, t_k={t_k}: the queries "
                         f"are the last t_q of the t_k positions, so there cannot be more of them.")
    offset = t_k - t_q  # how many positions come before the first query
    ones = torch.ones(t_q, t_k, dtype=torch.bool, device=device)  # (t_q, t_k)
    return torch.tril(ones, diagonal=offset)  # key j allowed for query i iff j <= offset + i


def padding_mask(lengths: torch.Tensor, t_k: int) -> torch.Tensor:
    """The padding mask (batch, 1, 1, t_k): True for a real token, False for padding after it.

    Sequence b holds lengths[b] real tokens followed by padding; no query may attend to padding.
    The two singleton dimensions broadcast over heads and queries: (batch, heads, t_q, t_k).
    """
    if lengths.dim() != 1 or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be a 1-D integer tensor (one length per sequence), "
                         f"got shape {tuple(lengths.shape)} and dtype {lengths.dtype}.")
    if len(lengths) and (lengths.min() < 0 or lengths.max() > t_k):
        raise ValueError(f"every length must lie in 0..t_k={t_k}, got {lengths.tolist()}.")
    positions = torch.arange(t_k, device=lengths.device)  # (t_k,)
    real = positions < rearrange(lengths, "b -> b 1")  # (batch, t_k)
    return rearrange(real, "b t -> b 1 1 t")  # (batch, 1, 1, t_k)


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> None:
    """Clear errors for the shapes and masks that attention cannot take."""
    if q.dim() < 2 or k.dim() < 2 or v.dim() < 2:
        raise ValueError("q, k and v need at least two dimensions each: (..., time, features).")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"queries and keys must have the same size d_k to be compared, got "
                         f"q (..., {q.shape[-1]}) and k (..., {k.shape[-1]}).")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"every key needs one value: k has {k.shape[-2]} positions, v has {v.shape[-2]}.")
    if mask is not None and mask.dtype != torch.bool:
        raise TypeError(f"the mask must be boolean (True = may attend), got dtype {mask.dtype}; "
                        f"build one with causal_mask or padding_mask, or compare, e.g. `mask != 0`.")


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None,
                                 dropout_p: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(QKᵀ / √d_k) V, step by step; returns (output, weights).

    q (..., t_q, d_k), k (..., t_k, d_k), v (..., t_k, d_v), with any leading dimensions that
    broadcast. `mask`: boolean, broadcastable to (..., t_q, t_k), True = may attend; a masked score
    becomes -inf, so its weight is exactly e^-inf = 0. A query with no key left gets zero weights and
    a zero output. `dropout_p` (training only) zeroes weights at random before the weighted sum; the
    weights returned are the softmax, before dropout.
    Returns output (..., t_q, d_v) and weights (..., t_q, t_k), each weight row summing to 1 (or 0).
    """
    _check_inputs(q, k, v, mask)
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., t_q, t_k): how well each query matches each key
    if mask is not None:
        scores = torch.where(mask, scores, float("-inf"))  # (..., t_q, t_k): a masked key scores -inf
    weights = softmax(scores, dim=-1)  # (..., t_q, t_k): each row positive, summing to 1
    mixing = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights  # (..., t_q, t_k)
    output = mixing @ v  # (..., t_q, d_v): each query's weighted average of the values
    return output, weights


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                    is_causal: bool = False, dropout_p: float = 0.0) -> torch.Tensor:
    """The same attention through PyTorch's fused `F.scaled_dot_product_attention`; returns the output.

    q, k, v: (batch, heads, time, head_dim). The mask convention is the one above (True = may
    attend); `is_causal` adds `causal_mask(t_q, t_k)` (queries are the last t_q positions). The
    fused kernels never store the (t_q, t_k) weights, which is why they return none. A query whose
    every key is masked is given every key inside the kernel (so nothing there can turn NaN, forward
    or backward) and its output is then set to zero, matching `scaled_dot_product_attention`.
    """
    _check_inputs(q, k, v, mask)
    t_q, t_k = q.shape[-2], k.shape[-2]
    if is_causal and mask is None and t_q == t_k:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)  # fastest kernel
    if is_causal:
        causal = causal_mask(t_q, t_k, device=q.device)  # (t_q, t_k)
        mask = causal if mask is None else mask & causal  # (..., t_q, t_k)
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    has_key = mask.any(dim=-1, keepdim=True)  # (..., t_q, 1): does this query see any key at all?
    safe_mask = mask | ~has_key  # (..., t_q, t_k): an empty row may see every key, so it stays finite
    output = F.scaled_dot_product_attention(q, k, v, attn_mask=safe_mask,
                                            dropout_p=dropout_p)  # (..., t_q, d_v)
    return torch.where(has_key, output, 0.0)  # (..., t_q, d_v): zero for queries with nothing to see


class MultiHeadAttention(nn.Module):
    """Multi-head attention: n_heads attentions side by side, each in its own d_model / n_heads space.

    x (batch, t_q, d_model) is projected to queries; `context` (batch, t_k, d_model), or x itself
    for self-attention, to keys and values. The d_model features are split into n_heads heads of
    head_dim = d_model / n_heads, each head attends on its own (so different heads can look for
    different things), the heads are concatenated back and mixed by the output projection:

        MultiHead(x) = Concat(head_1, …, head_h) W_O,   head_i = Attention(x W_Q_i, c W_K_i, c W_V_i)

    `fast=True` computes the attention with `fused_attention` (same results, no stored weights);
    asking for the weights (`need_weights=True`) always takes the formula path, which keeps them.
    """

    def __init__(self, d_model: int, n_heads: int, bias: bool = True, dropout: float = 0.0,
                 fast: bool = False):
        super().__init__()
        if n_heads < 1 or d_model % n_heads:
            raise ValueError(f"d_model={d_model} must split evenly into n_heads={n_heads} heads "
                             f"(choose n_heads that divides d_model).")
        self.n_heads = n_heads  # heads attending side by side
        self.head_dim = d_model // n_heads  # the size of each head's queries, keys and values
        self.dropout = dropout  # probability of zeroing an attention weight while training
        self.fast = fast  # use PyTorch's fused kernel instead of the formula
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)  # W_Q for all heads at once
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)  # W_K
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)  # W_V
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)  # W_O: mixes the concatenated heads

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, time, d_model) -> (batch, heads, time, head_dim)."""
        return rearrange(x, "... t (h d) -> ... h t d", h=self.n_heads)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, heads, time, head_dim) -> (batch, time, d_model): the heads side by side."""
        return rearrange(x, "... h t d -> ... t (h d)")

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns (output (batch, t_q, d_model), weights (batch, heads, t_q, t_k) or None).

        `mask` is boolean, broadcastable to (batch, heads, t_q, t_k), True = may attend: a
        `causal_mask` (t_q, t_k), a `padding_mask` (batch, 1, 1, t_k), or the two combined with `&`.
        """
        context = x if context is None else context  # self-attention: x attends to itself
        q = self.split_heads(self.q_proj(x))  # (batch, heads, t_q, head_dim)
        k = self.split_heads(self.k_proj(context))  # (batch, heads, t_k, head_dim)
        v = self.split_heads(self.v_proj(context))  # (batch, heads, t_k, head_dim)
        dropout_p = self.dropout if self.training else 0.0
        weights = None
        if self.fast and not need_weights:
            heads = fused_attention(q, k, v, mask=mask, dropout_p=dropout_p)  # (batch, heads, t_q, head_dim)
        else:
            heads, weights = scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=dropout_p)
        output = self.out_proj(self.merge_heads(heads))  # (batch, t_q, d_model)
        return output, (weights if need_weights else None)


# What attention costs: time and memory against sequence length.

ATTENTION_PATHS = ("formula", "fused", "fused-causal", "torch")  # what `measure_attention` can run


@dataclass
class AttentionCost:
    path: str  # formula, fused (boolean causal mask), fused-causal (is_causal=True) or torch (F.sdpa itself)
    length: int  # sequence length t: t queries attend causally over t keys
    seconds: float  # median wall time of one forward pass
    peak_bytes: int | None  # memory the pass allocates beyond its inputs, at its peak; None on MPS


def measure_attention(path: str, length: int, batch: int = 1, heads: int = 4, head_dim: int = 64,
                      repeats: int = 5, device: torch.device | str = "cpu") -> AttentionCost:
    """Time one causal self-attention forward pass (no gradients) and measure its peak memory.

    The formula path stores the (batch, heads, t, t) scores and weights, so its memory grows as t²;
    a fused kernel computes the same output block by block and stores only O(t) extra memory.
    Both still do O(t²) arithmetic: every query meets every key. Memory is
    `torch.cuda.max_memory_allocated` on CUDA and torch.profiler's allocation record on the CPU.
    """
    if path not in ATTENTION_PATHS:
        raise ValueError(f"unknown attention path {path!r}; choose one of {', '.join(ATTENTION_PATHS)}.")
    device = torch.device(device)
    qkv = torch.randn(3, batch, heads, length, head_dim, device=device)  # (3, batch, heads, t, head_dim)
    q, k, v = qkv.unbind(0)  # each (batch, heads, t, head_dim)
    mask = causal_mask(length, device=device)  # (t, t)
    run = {
        "formula": lambda: scaled_dot_product_attention(q, k, v, mask=mask)[0],
        "fused": lambda: fused_attention(q, k, v, mask=mask),
        "fused-causal": lambda: fused_attention(q, k, v, is_causal=True),
        "torch": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
    }[path]
    with torch.no_grad():
        run()  # warm-up: the first call pays for one-off set-up
        seconds = statistics.median(wall_seconds(run, device) for _ in range(repeats))
        peak_bytes = _peak_bytes(run, device)
    return AttentionCost(path, length, seconds, peak_bytes)


def _peak_bytes(run, device: torch.device) -> int | None:
    """The most memory `run` holds at once beyond what existed before it started."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    if device.type != "cpu":
        return None  # the profiler records CPU allocations only
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as recording:
        run()
    held, peak = 0, 0
    in_order = sorted(recording.events(), key=lambda e: e.time_range.start)  # allocations and frees, in order
    for event in in_order:
        held += event.self_cpu_memory_usage  # each op's own allocations (+) and frees (-), children excluded
        peak = max(peak, held)
    return peak


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 for a moment: the profiler's C++ side prints start/stop lines there."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
