"""Inside a GPT while it runs: the residual stream, the attention weights and what each head writes,
recorded with forward hooks; heads silenced and the stream patched the same way. The model's own
code (minilm.model) is not changed: leave the `with` block and every hook is gone.

    from minilm.interpret import ablate_heads, patch_residual, record_internals
    with record_internals(model) as seen:
        logits, _ = model(idx)
    seen.residual[2]          # (batch, time, n_embd): the stream entering block 2
    seen.attention[0]         # (batch, n_head, time, time): block 0's attention weights
    with ablate_heads(model, [(1, 0)]):                # block 1's head 0 writes nothing
        ablated, _ = model(idx)
    with patch_residual(model, 1, [3], seen.residual[1][:, 3:4]):   # position 3 from the run above
        patched, _ = model(other_idx)

Where each thing is read, block by block (l counts blocks from 0; the model has n_layer of them):

    residual[0]       the input of block 0: token embeddings (+ learned or sinusoidal positions)
    residual[l]       the output of block l-1, which is the input of block l (1 <= l <= n_layer);
                      residual[n_layer] comes before final_norm, so head(final_norm(it)) = the logits
    attention[l]      block l's softmax(q kᵀ / √head_dim), causal: recomputed from the block's normed
                      input with its own qkv weights, RoPE when the model uses it, and each key head
                      repeated for the query heads it serves (grouped-query attention)
    head_outputs[l]   the input of block l's attention.out split per head: each head's weighted sum
                      of values, which attention.out then mixes into the residual stream

Patching and ablation hooks run before the recording hooks, so a recording made while they are
active shows the patched stream and the silenced heads. Attention weights are those of eval mode
(no dropout): call model.eval() first.
"""
from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import torch
from einops import rearrange, repeat

from minilm.attention import causal_mask, softmax
from minilm.model import GPT, CausalSelfAttention
from minilm.positions import apply_rope


@dataclass
class Internals:
    """What one forward pass computed inside the model; every tensor is detached."""

    residual: list[torch.Tensor] = field(default_factory=list)  # n_layer + 1 × (batch, time, n_embd)
    attention: list[torch.Tensor] = field(default_factory=list)  # n_layer × (batch, n_head, time, time), if asked
    head_outputs: list[torch.Tensor] = field(default_factory=list)  # n_layer × (batch, n_head, time, head_dim)


@dataclass
class Recording:
    """Every forward pass made inside one `record_internals` block; the attributes read the last one."""

    passes: list[Internals] = field(default_factory=list)  # one per call of the model, in order

    @property
    def last(self) -> Internals:
        if not self.passes:
            raise ValueError("nothing was recorded: call the model inside the `with record_internals(model)` block.")
        return self.passes[-1]

    @property
    def residual(self) -> list[torch.Tensor]:
        return self.last.residual

    @property
    def attention(self) -> list[torch.Tensor]:
        return self.last.attention

    @property
    def head_outputs(self) -> list[torch.Tensor]:
        return self.last.head_outputs


def _check_gpt(model) -> None:
    if not isinstance(model, GPT):
        raise ValueError(f"the interpretability tools read a minilm GPT, got a {type(model).__name__}; "
                         f"load Hugging Face weights with minilm.interop first.")


def _check_layer(model: GPT, layer: int) -> None:
    if not isinstance(layer, int) or not 0 <= layer <= model.config.n_layer:
        raise ValueError(f"layer={layer!r} is not a residual stream of this model: use 0 (the embeddings) "
                         f"to {model.config.n_layer} (the last block's output).")


def hook_residual(model: GPT, layer: int, change: Callable[[torch.Tensor], torch.Tensor | None],
                  prepend: bool = False) -> torch.utils.hooks.RemovableHandle:
    """A hook calling change(stream) on residual[layer] at every forward pass; a tensor it returns
    replaces the stream. Remove it with `.remove()`."""
    _check_layer(model, layer)
    if layer == 0:  # the input of block 0: a pre-hook sees (x, rope, cache)
        def before(module, args):
            new = change(args[0])
            return None if new is None else (new, *args[1:])
        return model.blocks[0].register_forward_pre_hook(before, prepend=prepend)
    return model.blocks[layer - 1].register_forward_hook(lambda module, args, output: change(output),
                                                         prepend=prepend)


@torch.no_grad()
def attention_weights(attention: CausalSelfAttention, x: torch.Tensor,
                      rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """The causal attention weights (batch, n_head, time, time) of one attention module for its input x
    (batch, time, n_embd), recomputed the way CausalSelfAttention.forward computes them."""
    c = attention.config
    kv_width = c.kv_heads * c.head_dim
    qk, _ = attention.qkv(x).split([c.n_embd + kv_width, kv_width], dim=-1)  # values are not needed
    qk = rearrange(qk, "b t (h d) -> b h t d", d=c.head_dim)  # (batch, n_head + kv_heads, time, head_dim)
    if rope is not None:
        qk = apply_rope(qk, *rope)
    q, k = qk.split([c.n_head, c.kv_heads], dim=1)  # (batch, n_head | kv_heads, time, head_dim)
    k = repeat(k, "b h t d -> b (h g) t d", g=c.n_head // c.kv_heads)  # (batch, n_head, time, head_dim)
    scores = q @ k.transpose(-2, -1) / math.sqrt(c.head_dim)  # (batch, n_head, time, time)
    mask = causal_mask(x.shape[1], device=x.device)  # (time, time)
    return softmax(torch.where(mask, scores, float("-inf")), dim=-1)  # (batch, n_head, time, time)


def _record_attention(recording: Recording):
    def hook(module, args, kwargs):
        rope = args[1] if len(args) > 1 else kwargs.get("rope")
        cache = args[2] if len(args) > 2 else kwargs.get("cache")
        if cache is not None:
            raise ValueError("record_internals(attention=True) recomputes attention over the tokens of one call, "
                             "not a KV cache: generate with use_cache=False, or record with attention=False.")
        recording.last.attention.append(attention_weights(module, args[0], rope))
    return hook


def _record_head_outputs(recording: Recording, head_dim: int):
    def hook(module, args):
        heads = rearrange(args[0].detach(), "b t (h d) -> b h t d", d=head_dim)  # (batch, n_head, time, head_dim)
        recording.last.head_outputs.append(heads)
    return hook


def _record_residual(recording: Recording, layer: int):
    def change(stream):
        if layer == 0:  # block 0's input: a new forward pass begins
            recording.passes.append(Internals())
        recording.last.residual.append(stream.detach())
    return change


@contextlib.contextmanager
def _hooks(handles: list) -> Iterator[None]:
    """Remove every hook on leaving, also when the block raises."""
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def record_internals(model: GPT, attention: bool = True) -> Iterator[Recording]:
    """Record the residual streams, head outputs and (unless attention=False, which saves a
    recomputation) attention weights of every forward pass made inside the block."""
    _check_gpt(model)
    recording = Recording()
    handles = [hook_residual(model, layer, _record_residual(recording, layer))
               for layer in range(model.config.n_layer + 1)]
    for block in model.blocks:
        handles.append(block.attention.out.register_forward_pre_hook(
            _record_head_outputs(recording, model.config.head_dim)))
        if attention:
            handles.append(block.attention.register_forward_pre_hook(_record_attention(recording), with_kwargs=True))
    with _hooks(handles):
        yield recording


def _heads_by_layer(model: GPT, heads: Iterable[tuple[int, int]]) -> dict[int, list[int]]:
    c = model.config
    by_layer = defaultdict(list)
    for pair in heads:
        if len(pair) != 2 or not (0 <= pair[0] < c.n_layer and 0 <= pair[1] < c.n_head):
            raise ValueError(f"{pair!r} is not a head: give (layer, head) pairs with 0 <= layer < {c.n_layer} "
                             f"and 0 <= head < {c.n_head}.")
        by_layer[int(pair[0])].append(int(pair[1]))
    return by_layer


@torch.no_grad()
def mean_head_outputs(model: GPT, idx: torch.Tensor) -> list[torch.Tensor]:
    """Each head's output averaged over the batch and the positions of idx: n_layer × (n_head, head_dim)."""
    with record_internals(model, attention=False) as seen:
        model(idx)
    return [heads.mean(dim=(0, 2)) for heads in seen.head_outputs]  # (n_head, head_dim) each


def _replace_heads(heads: list[int], head_dim: int, values: torch.Tensor | None):
    def hook(module, args):
        split = rearrange(args[0], "b t (h d) -> b t h d", d=head_dim).clone()  # (batch, time, n_head, head_dim)
        split[:, :, heads] = 0.0 if values is None else values[heads].to(split.dtype)  # (len(heads), head_dim)
        return (rearrange(split, "b t h d -> b t (h d)"),)
    return hook


@contextlib.contextmanager
def ablate_heads(model: GPT, heads: Iterable[tuple[int, int]], how: str = "zero",
                 mean_over: torch.Tensor | None = None) -> Iterator[None]:
    """Inside the block the given (layer, head) pairs write zeros ("zero"), or their mean output over
    the token ids `mean_over` ("mean", measured once on entry, with every head present)."""
    _check_gpt(model)
    if how not in ("zero", "mean"):
        raise ValueError(f"how={how!r}: ablate heads with 'zero' or 'mean'.")
    if how == "mean" and mean_over is None:
        raise ValueError("how='mean' needs mean_over: token ids (batch, time) whose head outputs give the means.")
    by_layer = _heads_by_layer(model, heads)
    means = mean_head_outputs(model, mean_over) if how == "mean" else None
    handles = [model.blocks[layer].attention.out.register_forward_pre_hook(
        _replace_heads(chosen, model.config.head_dim, None if means is None else means[layer]), prepend=True)
        for layer, chosen in by_layer.items()]
    with _hooks(handles):
        yield


def _check_patch(model: GPT, positions: list[int], values: torch.Tensor) -> None:
    if not positions or any(p < 0 for p in positions):
        raise ValueError(f"positions={positions}: give one or more positions, each 0 or more.")
    expected = (len(positions), model.config.n_embd)
    if values.dim() != 3 or tuple(values.shape[1:]) != expected:
        raise ValueError(f"values has shape {tuple(values.shape)}; it must be (batch or 1, {expected[0]}, "
                         f"{expected[1]}): one n_embd vector per patched position.")


@contextlib.contextmanager
def patch_residual(model: GPT, layer: int, positions: Iterable[int], values: torch.Tensor) -> Iterator[None]:
    """Inside the block, residual[layer] (0: the embeddings, l: block l-1's output, the input of
    block l) holds `values` (batch or 1, len(positions), n_embd) at the given positions."""
    _check_gpt(model)
    positions = [int(p) for p in positions]
    _check_patch(model, positions, values)

    def change(stream):  # (batch, time, n_embd)
        if max(positions) >= stream.shape[1] or values.shape[0] not in (1, stream.shape[0]):
            raise ValueError(f"cannot patch positions {positions} with values {tuple(values.shape)} into a stream "
                             f"of shape {tuple(stream.shape)}: the positions must exist and the batch match (or be 1).")
        patched = stream.clone()
        patched[:, positions] = values.to(patched)  # (batch, len(positions), n_embd)
        return patched

    with _hooks([hook_residual(model, layer, change, prepend=True)]):
        yield
