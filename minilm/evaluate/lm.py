"""How good is a language model? Validation loss, perplexity, bits per byte, and the exact floor.

A language model's basic score is the average surprise of the next token, −ln p(token | context),
in nats per token, measured on text it never trained on. Everything else is that number seen
another way:

    losses = token_losses(model, ids, block_size=128)   # (windows, block_size) nats, one per token
    loss = losses.mean().item()                          # validation loss, nats per token
    perplexity(loss)                                     # e^loss: "as unsure as a fair die with this many sides"
    bits_per_byte(loss, n_tokens, n_bytes)               # per byte of text: comparable across tokenizers
    loss_by_position(losses)                             # (block_size,) how much more context helps
    sliding_window_loss(token_losses(model, ids, 128, stride=64), stride=64)   # every token with ≥ 64 of context

The story source of chapter 1 knows the exact probability of every story it writes, so the best loss
any model could reach is known too. Its entropy floor is the stories' total information (the sum of
−ln p(story)) spread over the tokens of the stream, separators included:

    floor = entropy_floor(story_log_probs, n_tokens, n_bytes)
    floor.nats_per_token, floor.bits_per_byte
    gap_to_floor(loss, floor).ratio                      # 1.0 would be a perfect model

The floor is the same text for every tokenizer, so in bits per byte it does not depend on the
tokenizer at all; in nats per token it does (fewer, longer tokens carry more nats each).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

LN2 = math.log(2.0)


def _as_id_tensor(ids) -> torch.Tensor:
    """A 1-D int64 tensor of token ids from a list, a NumPy array or memmap, or a tensor."""
    tensor = ids.long() if torch.is_tensor(ids) else torch.from_numpy(np.asarray(ids, dtype=np.int64))
    if tensor.dim() != 1:
        raise ValueError(f"token ids must be one flat sequence (1-D), got shape {tuple(tensor.shape)}.")
    return tensor


def windows(ids, block_size: int, max_windows: int | None = None,
            stride: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut a token sequence into windows of block_size inputs and their next-token targets.

    Window w reads ids[w·S : w·S + T] and predicts ids[w·S + 1 : w·S + T + 1] (T = block_size,
    S = stride). With the default stride S = T the windows do not overlap: every token but the
    first is predicted exactly once, and the target at position t is guessed from t + 1 tokens.
    A smaller stride overlaps them (see `sliding_window_loss`). `ids` may be a list, an array, a
    tensor or a TokenStream (chapter 1); only the tokens the windows need are read.
    Returns (inputs, targets), each (windows, block_size) int64.
    """
    ids = getattr(ids, "tokens", ids)  # a TokenStream keeps its ids in .tokens (a memmap)
    stride = block_size if stride is None else stride
    if block_size < 1 or not 1 <= stride <= block_size:
        raise ValueError(f"need block_size >= 1 and 1 <= stride <= block_size, got {block_size} and {stride}.")
    if len(ids) < block_size + 1:
        raise ValueError(f"{len(ids)} tokens are too few for one window of block_size={block_size} "
                         f"(it needs block_size + 1 tokens); give more tokens or a smaller block_size.")
    count = (len(ids) - 1 - block_size) // stride + 1
    if max_windows is not None:
        count = min(count, max_windows)
    ids = _as_id_tensor(ids[: (count - 1) * stride + block_size + 1])  # only the tokens the windows read
    spans = ids.unfold(0, block_size + 1, stride)  # (windows, T + 1)
    return spans[:, :-1], spans[:, 1:]  # (windows, T) each


@torch.no_grad()
def batched_logits(model: torch.nn.Module, ids, block_size: int, batch_size: int = 16,
                   max_windows: int | None = None,
                   stride: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Run `model` over the windows of `ids`, yielding (logits, targets) one batch at a time.

    logits is (batch, block_size, vocab) in float32, targets (batch, block_size), both on the
    model's device. The model is called as `model(inputs, targets)` and must return (logits, loss)
    with logits for every position (the course's GPT does). It runs in eval mode (no dropout) and
    is put back in the mode it was in.
    """
    inputs, targets = windows(ids, block_size, max_windows, stride)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(inputs), batch_size):
            x = inputs[start:start + batch_size].to(device)  # (batch, T)
            y = targets[start:start + batch_size].to(device)  # (batch, T)
            logits, _ = model(x, y)  # (batch, T, vocab)
            if logits.shape[:2] != x.shape:
                raise ValueError(f"the model returned logits of shape {tuple(logits.shape)} for inputs "
                                 f"{tuple(x.shape)}; evaluation needs logits for every position.")
            yield logits.float(), y
    finally:
        model.train(was_training)


def token_losses(model: torch.nn.Module, ids, block_size: int, batch_size: int = 16,
                 max_windows: int | None = None, stride: int | None = None) -> torch.Tensor:
    """−ln p(target | context) for every target of every window: (windows, block_size) float32 on the CPU."""
    rows = []
    for logits, targets in batched_logits(model, ids, block_size, batch_size, max_windows, stride):
        flat = F.cross_entropy(rearrange(logits, "b t v -> (b t) v"), rearrange(targets, "b t -> (b t)"),
                               reduction="none")  # (batch·T,)
        rows.append(rearrange(flat, "(b t) -> b t", t=block_size).cpu())  # (batch, T)
    return torch.cat(rows)  # (windows, T)


def loss_by_position(losses: torch.Tensor) -> torch.Tensor:
    """The mean loss at each position of the window, (block_size,): how the model uses context."""
    if losses.dim() != 2:
        raise ValueError(f"expected token losses of shape (windows, block_size), got {tuple(losses.shape)}.")
    return losses.mean(dim=0)  # (T,)


def sliding_window_loss(losses: torch.Tensor, stride: int) -> float:
    """The mean loss with every token counted once, from `token_losses(..., stride=stride)`.

    Non-overlapping windows make the first tokens of each window guess with almost no context. With
    overlapping windows (stride S < T) only the last S targets of each window are new, and each of
    them has seen at least T − S tokens; the first window counts all of its targets.
    """
    if losses.dim() != 2 or not 1 <= stride <= losses.shape[1]:
        raise ValueError(f"expected token losses (windows, block_size) and 1 <= stride <= block_size, "
                         f"got shape {tuple(losses.shape)} and stride {stride}.")
    counted = torch.cat([losses[0], losses[1:, -stride:].flatten()])  # (tokens,) each target once
    return counted.mean().item()


def perplexity(loss_nats: float) -> float:
    """e^loss: the number of equally likely tokens that would leave the model as unsure as it is."""
    return math.exp(loss_nats)


def bits_per_byte(loss_nats_per_token: float, n_tokens: int, n_bytes: int) -> float:
    """A per-token loss turned into bits per byte of the text those tokens encode.

    Total information = loss × n_tokens nats = loss × n_tokens / ln 2 bits; spread over the text's
    UTF-8 bytes, it no longer depends on how the text was cut into tokens.
    """
    if n_tokens < 1 or n_bytes < 1:
        raise ValueError(f"need at least one token and one byte, got n_tokens={n_tokens}, n_bytes={n_bytes}.")
    return loss_nats_per_token * n_tokens / (n_bytes * LN2)


@dataclass(frozen=True)
class EntropyFloor:
    """The best loss any model can reach on a text whose true probability is known."""
    total_nats: float  # −Σ ln p(story): the information in the stories, whatever the tokenizer
    n_tokens: int  # tokens of the split's stream that carry those stories, separators included
    n_bytes: int  # UTF-8 bytes of the same text: the tokenizer-free unit

    @property
    def nats_per_token(self) -> float:
        return self.total_nats / self.n_tokens

    @property
    def bits_per_byte(self) -> float:
        return self.total_nats / (self.n_bytes * LN2)


def entropy_floor(log_probs: Sequence[float], n_tokens: int, n_bytes: int) -> EntropyFloor:
    """The exact entropy floor of a split of stories from their natural-log probabilities.

    A separator after a story is certain once the story has ended (the story's probability already
    includes its ending), so it adds 0 nats but counts as a token: pass the stream's full count.
    """
    values = np.asarray(log_probs, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no log-probabilities given: the floor needs the stories of the split.")
    if not np.all(np.isfinite(values)):
        raise ValueError("some log-probabilities are NaN or infinite: only the story source knows its "
                         "probabilities; keep the documents whose source is the story world.")
    if np.any(values > 0):
        raise ValueError("a natural-log probability cannot be positive; pass ln p(story), not −ln p.")
    if n_tokens < 1 or n_bytes < 1:
        raise ValueError(f"need at least one token and one byte, got n_tokens={n_tokens}, n_bytes={n_bytes}.")
    return EntropyFloor(total_nats=float(-values.sum()), n_tokens=int(n_tokens), n_bytes=int(n_bytes))


@dataclass(frozen=True)
class FloorGap:
    """How far a model's loss sits above the floor, in the same unit (nats per token)."""
    model_loss: float  # the model's validation loss on the same stream
    floor: float  # the entropy floor of that stream
    excess: float  # model_loss − floor: nats per token a better model could still save
    ratio: float  # model_loss / floor: 1.0 is perfect, 1.15 is 15% above the floor


def gap_to_floor(model_loss: float, floor: EntropyFloor) -> FloorGap:
    """Compare a model's loss (nats per token of the same stream) with the floor."""
    best = floor.nats_per_token
    return FloorGap(model_loss=model_loss, floor=best, excess=model_loss - best, ratio=model_loss / best)
