"""Chapter 2 exercises: attention by hand.

Write each function below (replace `raise NotImplementedError`), then check your answers with:

    ./course exercise ch02_attention

(or `pytest tests/exercises/test_ch02_attention.py --student`). The tests compare your answers with
PyTorch's own softmax and attention. The solutions are in solutions/ch02_attention.py; try first.
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


def attend_one_query(query: torch.Tensor, keys: torch.Tensor,
                     values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention for a single query: returns (output (d_v,), weights (t,)).

    query (d_k,), keys (t, d_k), values (t, d_v). The scores are the dot products of the query with
    every key, divided by √d_k; the weights are their softmax (you may use `stable_softmax`); the
    output is the weights' sum of the values.
    Raise ValueError if the query and keys differ in size, or keys and values in number.
    """
    raise NotImplementedError


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(batch, time, d_model) -> (batch, n_heads, time, d_model // n_heads).

    Head h takes features h * head_dim .. (h + 1) * head_dim - 1 of every position (the layout
    torch.nn.MultiheadAttention uses). einops' `rearrange` does it in one line.
    Raise ValueError if n_heads does not divide d_model.
    """
    raise NotImplementedError


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(batch, n_heads, time, head_dim) -> (batch, time, n_heads * head_dim): undoes `split_heads`."""
    raise NotImplementedError
