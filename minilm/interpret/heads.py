"""What attention heads do: induction and previous-token scores, the loss on a repeated sequence, and
what removing each head costs on each kind of token.

    from minilm.interpret import head_ablation_effects, induction_scores, repeated_sequence_losses
    scores = induction_scores(model, vocab_size=500)       # (n_layer, n_head), 1 = a perfect induction head
    losses = repeated_sequence_losses(model, vocab_size=500)   # .first, .second: the copy is cheap once learned
    copying = copy_scores(model, idx, targets, where)      # (n_layer, n_head): weight on earlier copies of the target
    print(format_effects(head_ablation_effects(model, idx, targets, kinds)))

The induction test (Olsson et al., 2022): T random tokens, then the same T again. At position i of
the second copy the current token last appeared at i - T, and what followed it then sits at
i - T + 1; an induction head attends there and copies that token forward, so the model predicts
the second copy almost for free. A head attending evenly over the causal window gives key i - T + 1
only 1 / (i + 1) of its weight: chance. A previous-token head (attention to i - 1) in an earlier
layer is the other half of the circuit: it writes "the token before me was A" into each position,
which the induction head's queries look for.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from minilm.interpret.internals import ablate_heads, record_internals
from minilm.model import GPT


def repeated_tokens(vocab_size: int, length: int, batch: int, seed: int = 0, bos: int | None = None) -> torch.Tensor:
    """`batch` rows of `length` random ids below vocab_size, each followed by itself again:
    (batch, 2·length), or (batch, 1 + 2·length) with the token `bos` in front."""
    if vocab_size < 2 or length < 2 or batch < 1:
        raise ValueError(f"need vocab_size >= 2, length >= 2 and batch >= 1, got {vocab_size}, {length}, {batch}.")
    generator = torch.Generator().manual_seed(seed)
    first = torch.randint(vocab_size, (batch, length), generator=generator)  # (batch, length)
    rows = [first, first]
    if bos is not None:
        rows.insert(0, torch.full((batch, 1), bos))
    return torch.cat(rows, dim=1)  # (batch, [1 +] 2·length)


def attention_at_offset(attention: list[torch.Tensor], offset: int, first_query: int) -> torch.Tensor:
    """The mean weight from each query i >= first_query to the key i - offset, over the batch and
    those queries, for every head: (n_layer, n_head)."""
    scores = []
    for weights in attention:  # (batch, n_head, time, time)
        queries = torch.arange(first_query, weights.shape[-1], device=weights.device)  # (queries,)
        scores.append(weights[:, :, queries, queries - offset].mean(dim=(0, 2)))  # (n_head,)
    return torch.stack(scores)  # (n_layer, n_head)


def _check_fits(model: GPT, vocab_size: int, tokens: int) -> None:
    if vocab_size > model.config.vocab_size:
        raise ValueError(f"vocab_size={vocab_size} is more than the model's {model.config.vocab_size} tokens.")
    if tokens > model.config.context_length:
        raise ValueError(f"the repeated sequence takes {tokens} tokens, more than the context of "
                         f"{model.config.context_length}; choose a smaller length.")


@torch.no_grad()
def induction_scores(model: GPT, vocab_size: int, length: int = 50, batch: int = 8, seed: int = 0,
                     bos: int | None = None) -> torch.Tensor:
    """Per head (n_layer, n_head): the mean attention from each position i of the second copy of a
    repeated random sequence to i - length + 1, the token after the current one's first occurrence."""
    idx = repeated_tokens(vocab_size, length, batch, seed, bos).to(model.head.weight.device)
    _check_fits(model, vocab_size, idx.shape[1])
    start = 0 if bos is None else 1
    with record_internals(model) as seen:
        model(idx)
    return attention_at_offset(seen.attention, offset=length - 1, first_query=start + length)


@torch.no_grad()
def previous_token_scores(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """Per head (n_layer, n_head): the mean attention from each position i >= 1 of idx to i - 1."""
    with record_internals(model) as seen:
        model(idx)
    return attention_at_offset(seen.attention, offset=1, first_query=1)



@torch.no_grad()
def copy_scores(model: GPT, idx: torch.Tensor, targets: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Per head (n_layer, n_head): at the positions `where` (batch, time) marks, the mean attention
    weight on the earlier positions that hold the token about to be predicted (targets[b, t] among
    idx[b, :t+1]). A head that copies a name it has seen puts its weight there; on positions whose
    target never appeared before, there is nothing to copy, so mark only those where it did."""
    if not (idx.shape == targets.shape == where.shape):
        raise ValueError(f"idx {tuple(idx.shape)}, targets {tuple(targets.shape)} and where {tuple(where.shape)} "
                         f"must have one shape (batch, time).")
    time = idx.shape[1]
    earlier = torch.ones(time, time, dtype=torch.bool, device=idx.device).tril()  # (query, key): key <= query
    holds_target = (idx[:, None, :] == targets[:, :, None]) & earlier  # (batch, query, key)
    with record_internals(model) as seen:
        model(idx)
    scores = []
    for weights in seen.attention:  # (batch, n_head, time, time)
        on_target = (weights * holds_target[:, None]).sum(dim=-1)  # (batch, n_head, time)
        scores.append(on_target.transpose(1, 2)[where].mean(dim=0))  # (n_head,)
    return torch.stack(scores)  # (n_layer, n_head)

def target_losses(model: GPT, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-ln p(targets[b, t] | idx[b, :t+1]) at every position: (batch, time), 0 where targets is -100."""
    logits, _ = model(idx)  # (batch, time, vocab)
    return F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="none")  # (batch, time)


@dataclass
class RepeatLosses:
    """The loss on a random sequence the first time and when it comes again."""

    first: float  # mean loss on tokens 1..T-1 of the first copy: nothing to go on, about ln(vocab_size)
    second: float  # the same tokens of the second copy: low once the model copies (induction)
    by_position: torch.Tensor  # (time - 1,): the mean loss of predicting token t + 1 from tokens 0..t


@torch.no_grad()
def repeated_sequence_losses(model: GPT, vocab_size: int, length: int = 50, batch: int = 8, seed: int = 0,
                             bos: int | None = None) -> RepeatLosses:
    """The model's loss on the two copies of repeated random sequences (see `repeated_tokens`)."""
    idx = repeated_tokens(vocab_size, length, batch, seed, bos).to(model.head.weight.device)
    _check_fits(model, vocab_size, idx.shape[1])
    losses = target_losses(model, idx[:, :-1], idx[:, 1:]).mean(dim=0)  # (time - 1,): loss of token t + 1
    start = 0 if bos is None else 1  # where the first copy begins
    first = losses[start:start + length - 1]  # tokens start+1 .. start+length-1
    second = losses[start + length:start + 2 * length - 1]  # the same tokens, one copy later
    return RepeatLosses(first=first.mean().item(), second=second.mean().item(), by_position=losses.cpu())


def _kind_masks(kinds, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """A boolean (batch, time) mask of the scored positions per kind name, "all" first."""
    if len(kinds) != targets.shape[0] or any(len(row) != targets.shape[1] for row in kinds):
        raise ValueError(f"kinds must name one kind per target, shape {tuple(targets.shape)} (a list of rows "
                         f"of strings), got {len(kinds)} rows of lengths {sorted({len(row) for row in kinds})}.")
    scored = targets != -100  # (batch, time)
    masks = {"all": scored}
    for name in dict.fromkeys(kind for row in kinds for kind in row):  # in order of first appearance
        masks[name] = torch.tensor([[kind == name for kind in row] for row in kinds], device=targets.device) & scored
    return {name: mask for name, mask in masks.items() if mask.any()}


@torch.no_grad()
def head_ablation_effects(model: GPT, idx: torch.Tensor, targets: torch.Tensor, kinds) -> list[dict]:
    """For every head alone, the change in mean loss on each kind of token when it is zero-ablated.

    kinds[b][t] names the kind of targets[b, t], the token being predicted (e.g. "name", "object",
    "other", from story_labels.token_kinds shifted by one like the targets); "all" covers every
    target that is not -100. One row per (head, kind): layer, head, kind, tokens (how many), loss
    (with every head), ablated_loss, change (ablated_loss - loss; > 0: the head helps there).
    """
    masks = _kind_masks(kinds, targets)
    base = target_losses(model, idx, targets)  # (batch, time)
    rows = []
    for layer in range(model.config.n_layer):
        for head in range(model.config.n_head):
            with ablate_heads(model, [(layer, head)]):
                ablated = target_losses(model, idx, targets)  # (batch, time)
            for kind, mask in masks.items():
                loss, ablated_loss = base[mask].mean().item(), ablated[mask].mean().item()
                rows.append({"layer": layer, "head": head, "kind": kind, "tokens": int(mask.sum()), "loss": loss,
                             "ablated_loss": ablated_loss, "change": ablated_loss - loss})
    return rows


def format_effects(rows: list[dict]) -> str:
    """The rows of `head_ablation_effects` as a text table: one line per head, the change per kind."""
    kinds = list(dict.fromkeys(row["kind"] for row in rows))
    counts = {row["kind"]: row["tokens"] for row in rows}
    lines = ["head   " + "".join(f"{kind:>12}" for kind in kinds),
             "tokens " + "".join(f"{counts[kind]:>12}" for kind in kinds)]
    changes = {(row["layer"], row["head"], row["kind"]): row["change"] for row in rows}
    for layer, head in dict.fromkeys((row["layer"], row["head"]) for row in rows):
        lines.append(f"L{layer}H{head:<4}" + "".join(f"{changes[layer, head, kind]:>+12.4f}" for kind in kinds))
    return "\n".join(lines)
