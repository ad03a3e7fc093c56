"""Chapter 2 exercises: attention by hand.

Write each function below (replace `raise NotImplementedError`), then check your answers with:

    ./course exercise ch02_attention

(or `pytest tests/exercises/test_ch02_attention.py --student`). The pieces build on each other:
`stable_softmax` and the masks go into `attend_one_query` and `multi_head_attention`. The tests
compare your answers with PyTorch's softmax, `scaled_dot_product_attention` and
`nn.MultiheadAttention`, and with minilm's own attention. The solutions are in
solutions/ch02_attention.py; try first.
"""
import torch


def stable_softmax(scores: torch.Tensor) -> torch.Tensor:
    """The softmax over the last dimension, exp(s_i) / Σ_j exp(s_j), finite even for scores of ±1e4.

    Hint: subtracting each row's maximum changes nothing mathematically but keeps exp from
    overflowing. Do not call torch.softmax (or F.softmax); build it from torch.exp and sums.
    """
    raise NotImplementedError


def causal_mask(length: int) -> torch.Tensor:
    """A boolean (length, length) mask, True where query i may attend to key j, that is when j <= i.

    Raise ValueError if length < 1.
    """
    raise NotImplementedError


def padding_mask(lengths: torch.Tensor, length: int) -> torch.Tensor:
    """A boolean (batch, length) mask, True where key j of sequence b is a real token: j < lengths[b].

    Sequence b holds lengths[b] real tokens, then padding up to `length`. For example
    padding_mask(torch.tensor([3, 1]), 4) is [[True, True, True, False], [True, False, False, False]].
    Raise ValueError if a length is negative or above `length`.
    """
    raise NotImplementedError


def attend_one_query(query: torch.Tensor, keys: torch.Tensor,
                     values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention for a single query: returns (output (d_v,), weights (t,)).

    query (d_k,), keys (t, d_k), values (t, d_v). The scores are the dot products of the query with
    every key, divided by √d_k; the weights are their softmax (you may use `stable_softmax`); the
    output is the weights' sum of the values.
    Raise ValueError if the query and keys differ in size, or keys and values in number.
    """
    raise NotImplementedError


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
    raise NotImplementedError
