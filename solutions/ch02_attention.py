"""Chapter 2 exercises, solved."""
import math

import torch
from einops import rearrange


def stable_softmax(scores: torch.Tensor) -> torch.Tensor:
    """The softmax over the last dimension, exp(s_i) / Σ_j exp(s_j), finite even for scores of ±1e4.

    Hint: subtracting each row's maximum changes nothing mathematically but keeps exp from
    overflowing. Do not call torch.softmax (or F.softmax); build it from torch.exp and sums.
    """
    shifted = scores - scores.amax(dim=-1, keepdim=True)  # every entry ≤ 0
    exps = torch.exp(shifted)  # in [0, 1], the row's maximum gives exactly 1
    return exps / exps.sum(dim=-1, keepdim=True)


def causal_mask(length: int) -> torch.Tensor:
    """A boolean (length, length) mask, True where query i may attend to key j, that is when j <= i.

    Raise ValueError if length < 1.
    """
    if length < 1:
        raise ValueError(f"a causal mask needs at least one position, got length={length}.")
    positions = torch.arange(length)
    return positions[None, :] <= positions[:, None]  # (query i, key j): j <= i


def padding_mask(lengths: torch.Tensor, length: int) -> torch.Tensor:
    """A boolean (batch, length) mask, True where key j of sequence b is a real token: j < lengths[b].

    Sequence b holds lengths[b] real tokens, then padding up to `length`. For example
    padding_mask(torch.tensor([3, 1]), 4) is [[True, True, True, False], [True, False, False, False]].
    Raise ValueError if a length is negative or above `length`.
    """
    if (lengths < 0).any() or (lengths > length).any():
        raise ValueError(f"every length must lie in 0..{length}, got {lengths.tolist()}.")
    return torch.arange(length)[None, :] < lengths[:, None]  # (batch, length)


def attend_one_query(query: torch.Tensor, keys: torch.Tensor,
                     values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention for a single query: returns (output (d_v,), weights (t,)).

    query (d_k,), keys (t, d_k), values (t, d_v). The scores are the dot products of the query with
    every key, divided by √d_k; the weights are their softmax (you may use `stable_softmax`); the
    output is the weights' sum of the values.
    Raise ValueError if the query and keys differ in size, or keys and values in number.
    """
    if query.shape[-1] != keys.shape[-1]:
        raise ValueError(f"query has size {query.shape[-1]} but keys have size {keys.shape[-1]}.")
    if keys.shape[0] != values.shape[0]:
        raise ValueError(f"{keys.shape[0]} keys but {values.shape[0]} values; each key needs one value.")
    scores = keys @ query / math.sqrt(query.shape[-1])  # (t,)
    weights = stable_softmax(scores)  # (t,)
    return weights @ values, weights  # (d_v,), (t,)


def multi_head_attention(x: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor,
                         w_o: torch.Tensor, n_heads: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head self-attention of x (batch, time, d_model) -> (batch, time, d_model), from its weights.

    w_q, w_k, w_v and w_o are (d_model, d_model) and act as nn.Linear without bias does: q = x @ w_qᵀ.
    Split q, k and v into n_heads heads: head h takes features h·head_dim .. (h+1)·head_dim - 1, with
    head_dim = d_model / n_heads (the layout of torch.nn.MultiheadAttention). In each head, scores
    q kᵀ / √head_dim, then -inf where `mask` is False (mask: boolean, broadcastable to
    (batch, heads, time, time), True = may attend; None: every key), softmax over the keys, weights @ v.
    Put the heads side by side again, (batch, time, d_model), and apply w_o.
    Use your `stable_softmax`; einops' `rearrange` splits and merges the heads.
    Raise ValueError if n_heads does not divide d_model.
    """
    d_model = x.shape[-1]
    if n_heads < 1 or d_model % n_heads:
        raise ValueError(f"d_model={d_model} does not split into n_heads={n_heads} equal heads.")
    q, k, v = (rearrange(x @ w.T, "b t (h d) -> b h t d", h=n_heads) for w in (w_q, w_k, w_v))  # (batch, heads, time, head_dim)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (batch, heads, time, time)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # a masked key gets weight e^-inf = 0
    heads = stable_softmax(scores) @ v  # (batch, heads, time, head_dim)
    return rearrange(heads, "b h t d -> b t (h d)") @ w_o.T  # (batch, time, d_model)
