"""Where a token sits: three ways to tell a Transformer about word order.

Attention by itself is blind to order: shuffle the input tokens and the outputs are shuffled the
same way, nothing else changes (chapter 3's notebook shows it). A language model must know that
"dog bites man" is not "man bites dog", so it is told each token's position in one of three ways:

    learned      a trainable vector per position, added to the token's embedding (GPT-2)
    sinusoidal   fixed sines and cosines of geometric frequencies, added the same way (the 2017 paper)
    rope         rotary embeddings: queries and keys are rotated by an angle proportional to their
                 position, so their dot product depends only on the distance between them (Llama)

    from minilm.positions import LearnedPositions, SinusoidalPositions, RotaryEmbedding, apply_rope
    x = token_vectors + SinusoidalPositions(context_length=256, dim=64)(time=10)   # (batch, 10, 64)
    cos, sin = RotaryEmbedding(head_dim=16, context_length=256)(time=10)           # (10, 16) each
    q = apply_rope(q, cos, sin)                                                    # (batch, heads, 10, 16)

Every module takes `time` (how many positions) and `start` (the first one's index): with a KV cache
the new tokens of a generation step sit after the `start` tokens already processed. `start` may
also be a tensor (batch,) of one start per row, for a server that decodes requests of different
lengths together (chapter 6c): the result then has a leading batch dimension.
"""
from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import nn


def _check_range(time: int, start: int | torch.Tensor, context_length: int) -> None:
    first, last = (int(start.min()), int(start.max())) if torch.is_tensor(start) else (start, start)
    if first < 0 or time < 1 or last + time > context_length:
        raise ValueError(f"positions {first}..{last + time - 1} do not fit in a context of {context_length} "
                         f"positions; crop the sequence to its last {context_length} tokens.")


def _rows(table: torch.Tensor, time: int, start: int | torch.Tensor) -> torch.Tensor:
    """Rows start..start+time-1 of a (context, dim) table: (time, dim), or (batch, time, dim) for one start per row."""
    if not torch.is_tensor(start):
        return table[start:start + time]  # (time, dim)
    positions = start[:, None] + torch.arange(time, device=start.device)  # (batch, time)
    return table[positions]  # (batch, time, dim)


class LearnedPositions(nn.Module):
    """One trainable vector per position (GPT-2): the model learns what each position means."""

    def __init__(self, context_length: int, dim: int):
        super().__init__()
        self.context_length = context_length  # the table has no row past this position
        self.table = nn.Embedding(context_length, dim)  # row p: the vector added at position p

    def forward(self, time: int, start: int = 0) -> torch.Tensor:
        """The vectors of positions start..start+time-1: (time, dim)."""
        _check_range(time, start, self.context_length)
        return _rows(self.table.weight, time, start)  # (time, dim)


def sinusoidal_encoding(length: int, dim: int, base: float = 10_000.0) -> torch.Tensor:
    """The fixed encodings of "Attention is all you need": (length, dim), float32.

    PE[p, 2i] = sin(p / base^(2i/dim)) and PE[p, 2i+1] = cos(p / base^(2i/dim)): each pair of
    features is a clock hand turning at its own speed, from one turn every 2π positions (i = 0) to
    one every 2π·base positions, so nearby positions get similar vectors and far ones differ.
    """
    if dim < 2 or dim % 2:
        raise ValueError(f"sinusoidal encodings pair a sine with a cosine, so dim must be even, got {dim}.")
    positions = torch.arange(length, dtype=torch.float64)  # (length,)
    frequencies = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (dim/2,)
    angles = torch.outer(positions, frequencies)  # (length, dim/2)
    pairs = torch.stack([angles.sin(), angles.cos()], dim=-1)  # (length, dim/2, 2)
    return rearrange(pairs, "p i two -> p (i two)").float()  # (length, dim): sin, cos, sin, cos, ...


class SinusoidalPositions(nn.Module):
    """The fixed sinusoidal encodings as a module: nothing to learn, works the same for every model."""

    def __init__(self, context_length: int, dim: int, base: float = 10_000.0):
        super().__init__()
        self.context_length = context_length  # encodings are precomputed up to this length
        # not persistent: a fixed function of the shape, so checkpoints need not carry it
        self.register_buffer("table", sinusoidal_encoding(context_length, dim, base), persistent=False)

    def forward(self, time: int, start: int = 0) -> torch.Tensor:
        """The encodings of positions start..start+time-1: (time, dim)."""
        _check_range(time, start, self.context_length)
        return _rows(self.table, time, start)  # (time, dim)


def rope_angles(length: int, head_dim: int, theta: float = 10_000.0) -> torch.Tensor:
    """RoPE's rotation angles (length, head_dim/2): position p turns feature pair i by p·θ^(-2i/head_dim)."""
    if head_dim < 2 or head_dim % 2:
        raise ValueError(f"RoPE rotates features in pairs, so head_dim must be even, got {head_dim}.")
    positions = torch.arange(length, dtype=torch.float64)  # (length,)
    frequencies = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (head_dim/2,)
    return torch.outer(positions, frequencies)  # (length, head_dim/2)


class RotaryEmbedding(nn.Module):
    """The cosines and sines that rotate queries and keys (RoPE), precomputed for every position.

    Features are paired as (x_i, x_{i + head_dim/2}): the first half of a head with its second half,
    the convention of Hugging Face's Llama (the original paper pairs neighbours; the two differ only
    by a fixed permutation of the weights).
    """

    def __init__(self, head_dim: int, context_length: int, theta: float = 10_000.0):
        super().__init__()
        self.context_length = context_length  # angles are precomputed up to this length
        angles = repeat(rope_angles(context_length, head_dim, theta), "p i -> p (two i)", two=2)  # (context, head_dim)
        self.register_buffer("cos", angles.cos().float(), persistent=False)  # (context, head_dim)
        self.register_buffer("sin", angles.sin().float(), persistent=False)  # (context, head_dim)

    def forward(self, time: int, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) for positions start..start+time-1, each (time, head_dim); with one start per row,
        (batch, 1, time, head_dim), to broadcast over the heads."""
        _check_range(time, start, self.context_length)
        cos, sin = _rows(self.cos, time, start), _rows(self.sin, time, start)
        if torch.is_tensor(start):
            cos, sin = cos[:, None], sin[:, None]  # (batch, 1, time, head_dim)
        return cos, sin


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension: a quarter turn of every pair."""
    first, second = x.chunk(2, dim=-1)  # (..., head_dim/2) each
    return torch.cat([-second, first], dim=-1)  # (..., head_dim)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate every feature pair of x (..., time, head_dim) by its position's angle.

    A 2-D rotation by angle a maps (u, w) to (u cos a - w sin a, u sin a + w cos a), which is
    x·cos + rotate_half(x)·sin on the pairs (x_i, x_{i+head_dim/2}). Rotating a query at position m
    and a key at position n makes their dot product a function of m - n only.
    """
    return x * cos + rotate_half(x) * sin  # (..., time, head_dim)
