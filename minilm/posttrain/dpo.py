"""Direct preference optimisation (DPO): learn from "this answer, not that one", without a reward model.

For a prompt x with a chosen answer y⁺ and a rejected one y⁻, DPO compares how much more likely
the policy π makes each answer than a frozen reference model π_ref (the SFT model it starts from):

    reward(y)  = β · (log π(y | x) − log π_ref(y | x))          the implicit reward of an answer
    loss       = −log σ(reward(y⁺) − reward(y⁻))                 push the chosen above the rejected

The reference keeps the policy near what it was: raising an answer's probability only earns
reward relative to where it started, and β sets how far the policy may drift (a small β lets it
move far for a given margin). log π(y | x) is the sum of the answer's token log-probabilities,
the end token included, exactly what chapter 6's answer-only loss trains.

    tuned = train_dpo(sft_model, tokenizer, train_pairs, DPOConfig(beta=0.1))
    preference_report(tuned.model, sft_model, tokenizer, test_pairs, beta=0.1)
"""
from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import torch
import torch.nn.functional as F

from minilm.data import END_OF_TEXT
from minilm.posttrain.finetune import IGNORE_INDEX, encode_example, pad_batch
from minilm.posttrain.preferences import PreferencePair
from minilm.presets import choose


def token_log_probs(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log π(y[t] | x[:t+1]) at every position, 0 where the target is -100: (batch, time)."""
    logits, _ = model(x)  # (batch, time, vocab)
    log_probs = F.log_softmax(logits.float(), dim=-1)  # (batch, time, vocab)
    picked = log_probs.gather(-1, y.clamp(min=0)[..., None])[..., 0]  # (batch, time)
    return picked * (y != IGNORE_INDEX)


def encode_answers(tokenizer, prompts: Sequence[str], answers: Sequence[str],
                   device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt + answer + end token, right-padded: (x, y), each (batch, longest); y is -100 off the answers."""
    encoded = [encode_example(tokenizer, prompt, answer) for prompt, answer in zip(prompts, answers)]
    x, y = pad_batch(encoded, pad_id=tokenizer.special_tokens[END_OF_TEXT])
    return x.to(device), y.to(device)


def answer_log_probs(model, tokenizer, prompts: Sequence[str], answers: Sequence[str],
                     batch_size: int = 32) -> torch.Tensor:
    """log π(answer | prompt) of each pair, the end token included, without gradients: (n,)."""
    device = next(model.parameters()).device
    sums = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            x, y = encode_answers(tokenizer, prompts[start:start + batch_size], answers[start:start + batch_size], device)
            sums.append(token_log_probs(model, x, y).sum(dim=1))  # (batch,)
    model.train(was_training)
    return torch.cat(sums)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
             reference_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO's loss (mean over the pairs) and the implicit rewards of the chosen and rejected answers.

    Each argument holds one sequence log-probability per pair: (pairs,).
    """
    chosen_reward = beta * (policy_chosen - reference_chosen)  # (pairs,)
    rejected_reward = beta * (policy_rejected - reference_rejected)  # (pairs,)
    loss = -F.logsigmoid(chosen_reward - rejected_reward).mean()
    return loss, chosen_reward.detach(), rejected_reward.detach()


@dataclass(frozen=True)
class DPOConfig:
    """One DPO run."""

    steps: int = 200  # optimizer steps
    batch_size: int = 16  # pairs per step (each pair is two sequences)
    lr: float = 1e-4  # constant after a short warm-up: DPO moves a model that already answers
    beta: float = 0.1  # how strongly the reference holds the policy (small: may drift far)
    warmup_steps: int = 10  # the rate grows linearly to lr over these steps
    grad_clip: float = 1.0  # the gradient's norm is clipped to this (0: not clipped)
    nll_weight: float = 0.0  # > 0 adds the chosen answers' cross-entropy per token (DPO + NLL, "RPO")
    seed: int = 0  # which pairs each step draws


DPO_SIZES = {"smoke": DPOConfig(steps=4, batch_size=4, warmup_steps=2), "cpu": DPOConfig(steps=300, batch_size=16),
             "gpu": DPOConfig(steps=500, batch_size=32)}


def dpo_config(preset: str | None = None, **overrides) -> DPOConfig:
    """The preset's DPO run (DPO_SIZES), with any field overridden."""
    return replace(choose(DPO_SIZES, preset), **overrides)


@dataclass
class Tuned:
    """A post-trained copy of a model and its history, one record per step."""

    model: torch.nn.Module  # the tuned copy, in eval mode
    history: list[dict] = field(default_factory=list)


def pair_batch(count: int, batch_size: int, seed: int, step: int) -> list[int]:
    """The indices of the pairs that step `step` trains on: the same for the same (seed, step), as
    chapter 6's batches, so a loop written by hand can draw exactly what `train_dpo` draws."""
    digest = hashlib.blake2b(f"{seed}/dpo/{step}".encode(), digest_size=8).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
    return torch.randint(count, (batch_size,), generator=generator).tolist()


def train_dpo(model: torch.nn.Module, tokenizer, pairs: Sequence[PreferencePair],
              config: DPOConfig | None = None) -> Tuned:
    """DPO on a copy of `model`; the reference is `model` itself, frozen (its log-probs computed once)."""
    config = config or dpo_config()
    if not pairs:
        raise ValueError("DPO needs at least one preference pair to learn from.")
    prompts = [pair.prompt for pair in pairs]
    reference_chosen = answer_log_probs(model, tokenizer, prompts, [pair.chosen for pair in pairs])  # (pairs,)
    reference_rejected = answer_log_probs(model, tokenizer, prompts, [pair.rejected for pair in pairs])
    policy = copy.deepcopy(model).train()
    device = next(policy.parameters()).device
    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.lr, betas=(0.9, 0.95), weight_decay=0.0)
    history, began = [], time.perf_counter()
    for step in range(config.steps):
        rows = pair_batch(len(pairs), config.batch_size, config.seed, step)
        chosen = [pairs[row] for row in rows]
        both_prompts = [pair.prompt for pair in chosen] * 2
        both_answers = [pair.chosen for pair in chosen] + [pair.rejected for pair in chosen]
        x, y = encode_answers(tokenizer, both_prompts, both_answers, device)  # chosen rows, then rejected rows
        per_token = token_log_probs(policy, x, y)  # (2 · batch, time)
        sums = per_token.sum(dim=1)  # (2 · batch,)
        loss, chosen_reward, rejected_reward = dpo_loss(sums[:len(rows)], sums[len(rows):],
                                                        reference_chosen[rows], reference_rejected[rows], config.beta)
        if config.nll_weight:  # keep the chosen answers likely, not only likelier than the rejected
            chosen_tokens = (y[:len(rows)] != IGNORE_INDEX).sum()
            loss = loss - config.nll_weight * per_token[:len(rows)].sum() / chosen_tokens
        for group in optimizer.param_groups:
            group["lr"] = config.lr * min(1.0, (step + 1) / max(1, config.warmup_steps))
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(policy.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        margin = chosen_reward - rejected_reward
        history.append({"step": step + 1, "loss": loss.item(), "accuracy": (margin > 0).float().mean().item(),
                        "margin": margin.mean().item(), "seconds": time.perf_counter() - began})
    return Tuned(model=policy.eval(), history=history)


def token_kl(policy, reference, tokenizer, prompts: Sequence[str], answers: Sequence[str],
             batch_size: int = 32) -> float:
    """Mean KL(π ‖ π_ref) of the next-token distributions at the answers' positions, in nats per token.

    Exact at each position (a sum over the vocabulary), teacher-forced on the given answers: how
    far post-training moved the policy's predictions where it matters.
    """
    if not prompts:
        raise ValueError("token_kl needs at least one prompt and answer to compare the two models on.")
    device = next(policy.parameters()).device
    modes = policy.training, reference.training
    policy.eval(), reference.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            x, y = encode_answers(tokenizer, prompts[start:start + batch_size], answers[start:start + batch_size], device)
            mine = F.log_softmax(policy(x)[0].float(), dim=-1)  # (batch, time, vocab)
            theirs = F.log_softmax(reference(x)[0].float(), dim=-1)
            kl = (mine.exp() * (mine - theirs)).sum(dim=-1)  # (batch, time)
            answer = y != IGNORE_INDEX
            total += kl[answer].sum().item()
            count += answer.sum().item()
    policy.train(modes[0]), reference.train(modes[1])
    return total / count


@dataclass(frozen=True)
class PreferenceReport:
    """How a model ranks held-out pairs."""

    likelihood_accuracy: float  # share of pairs where the model finds the chosen answer likelier
    reward_accuracy: float  # share where the implicit reward of the chosen is higher (0.5 ≡ ties at the start)
    reward_margin: float  # mean reward(chosen) − reward(rejected), in nats × β
    kl: float  # token_kl from the reference on the chosen answers
    pairs: int  # how many pairs


def preference_report(policy, reference, tokenizer, pairs: Sequence[PreferencePair], beta: float) -> PreferenceReport:
    """The policy against its reference on held-out pairs."""
    prompts = [pair.prompt for pair in pairs]
    chosen, rejected = [pair.chosen for pair in pairs], [pair.rejected for pair in pairs]
    policy_chosen = answer_log_probs(policy, tokenizer, prompts, chosen)
    policy_rejected = answer_log_probs(policy, tokenizer, prompts, rejected)
    _, chosen_reward, rejected_reward = dpo_loss(policy_chosen, policy_rejected,
                                                 answer_log_probs(reference, tokenizer, prompts, chosen),
                                                 answer_log_probs(reference, tokenizer, prompts, rejected), beta)
    margin = chosen_reward - rejected_reward
    return PreferenceReport(likelihood_accuracy=(policy_chosen > policy_rejected).float().mean().item(),
                            reward_accuracy=((margin > 0).float() + 0.5 * (margin == 0).float()).mean().item(),
                            reward_margin=margin.mean().item(),
                            kl=token_kl(policy, reference, tokenizer, prompts, chosen), pairs=len(pairs))
