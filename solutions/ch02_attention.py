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


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(batch, time, d_model) -> (batch, n_heads, time, d_model // n_heads).

    Head h takes features h * head_dim .. (h + 1) * head_dim - 1 of every position (the layout
    torch.nn.MultiheadAttention uses). einops' `rearrange` does it in one line.
    Raise ValueError if n_heads does not divide d_model.
    """
    if n_heads < 1 or x.shape[-1] % n_heads:
        raise ValueError(f"d_model={x.shape[-1]} does not split into n_heads={n_heads} equal heads.")
    return rearrange(x, "b t (h d) -> b h t d", h=n_heads)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(batch, n_heads, time, head_dim) -> (batch, time, n_heads * head_dim): undoes `split_heads`."""
    return rearrange(x, "b h t d -> b t (h d)")
