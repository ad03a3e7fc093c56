"""The logit lens (nostalgebraist, 2020): read every residual stream as if it were the last.

The model turns its last stream into logits with head(final_norm(x)). Doing the same to the stream
after block l shows what the model "would say" if it stopped there: how the prediction forms layer
by layer. Each block only adds to the stream, so the guesses usually sharpen towards the final one.

    from minilm.interpret import lens_losses, lens_top_tokens, logit_lens
    logits = logit_lens(model, idx)                   # (n_layer + 1, batch, time, vocab)
    losses = lens_losses(model, idx, targets)         # .loss and .kl_to_final, one per stream
    for layer, tokens in enumerate(lens_top_tokens(model, tokenizer, "<|endoftext|>Mia found a", -1)):
        print(layer, tokens)                          # [(token text, probability), ...]
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from minilm.interpret.internals import record_internals
from minilm.model import GPT


@torch.no_grad()
def logit_lens(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """head(final_norm(residual[l])) for every stream l = 0 .. n_layer: (n_layer + 1, batch, time, vocab);
    the last is the model's own logits."""
    with record_internals(model, attention=False) as seen:
        model(idx)
    streams = torch.stack(seen.residual)  # (n_layer + 1, batch, time, n_embd)
    return model.head(model.final_norm(streams))  # (n_layer + 1, batch, time, vocab)


@dataclass
class LensLosses:
    """How good each stream's guess is, one number per stream (index 0: the embeddings)."""

    loss: torch.Tensor  # (n_layer + 1,): mean cross-entropy of the targets; the last is the model's loss
    kl_to_final: torch.Tensor  # (n_layer + 1,): mean KL(final ‖ stream l), nats: what stopping at l loses


@torch.no_grad()
def lens_losses(model: GPT, idx: torch.Tensor, targets: torch.Tensor) -> LensLosses:
    """Per stream: the cross-entropy of `targets` (-100: skipped) and the KL divergence
    Σ p_final (ln p_final − ln p_l) from the final distribution to stream l's, averaged over the
    positions whose target is not -100."""
    if targets.shape != idx.shape:
        raise ValueError(f"targets {tuple(targets.shape)} must have the shape of idx {tuple(idx.shape)}.")
    log_probs = F.log_softmax(logit_lens(model, idx).float(), dim=-1)  # (layers, batch, time, vocab)
    scored = targets != -100  # (batch, time)
    picked = log_probs[:, scored]  # (layers, scored tokens, vocab)
    loss = -picked.gather(-1, targets[scored].expand(len(picked), -1).unsqueeze(-1)).squeeze(-1)  # (layers, tokens)
    final = picked[-1]  # (tokens, vocab)
    kl = (final.exp() * (final - picked)).sum(dim=-1)  # (layers, tokens)
    return LensLosses(loss=loss.mean(dim=1), kl_to_final=kl.mean(dim=1))


@torch.no_grad()
def lens_top_tokens(model: GPT, tokenizer, text: str, position: int = -1, k: int = 5) -> list[list[tuple[str, float]]]:
    """The k likeliest next tokens after `text` (at token `position`) by each stream's lens: one list
    of (token text, probability) per stream. Special tokens in the text, such as <|endoftext|> (the
    start of a story), are encoded as themselves."""
    ids = tokenizer.encode(text)
    if not ids or not -len(ids) <= position < len(ids):
        raise ValueError(f"position={position} is not a token of the text, which has {len(ids)} tokens.")
    idx = torch.tensor([ids], device=model.head.weight.device)  # (1, time)
    probs = logit_lens(model, idx)[:, 0, position].softmax(dim=-1)  # (layers, vocab)
    top = probs.topk(k, dim=-1)  # (layers, k) values and indices
    return [[(tokenizer.decode([token]), chance) for token, chance in zip(tokens, chances)]
            for tokens, chances in zip(top.indices.tolist(), top.values.tolist())]
