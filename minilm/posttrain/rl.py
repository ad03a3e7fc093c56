"""Reinforcement from a verifiable reward: sample answers, score them exactly, reinforce the better ones.

DPO learns from answers someone else wrote. Here the model learns from its own: for each question
it samples a group of G answers, a checker scores each one, and each answer's log-probability is
pushed up or down by how much better it did than the rest of its group (GRPO's group baseline):

    advantage_i = reward_i − mean(rewards of the group)         no value network needed
    loss        = −mean_i( advantage_i · log π(answer_i | x) ) + kl_coef · mean_i( KL_i )

KL_i keeps the policy near the reference (the SFT model), estimated per token on the sampled
answer with GRPO's k3 = exp(r) − r − 1, r = log π_ref − log π (never negative, zero when equal).
A group whose answers all score the same teaches nothing: its advantages are all zero.

The story world is the checker: `exact_reward` compares an answer with the story's fact, and the
only way to score is to be right. A judge that also pays for something else can be gamed, and
the policy finds the way if it ever samples it: `length_biased_reward` pays mostly for detail
(words), as judges that prefer long answers do, and the policy learns to say more, right or not.

    tuned = train_rl(sft_model, tokenizer, train_examples, checked(exact_reward), rl_config())
    tuned.history[-1]     # {"step", "reward", "exact", "kl", "answer_tokens", "seconds"}
"""
from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch

from minilm.apps.task_eval import normalize_answer, until_stop
from minilm.apps.tasks import Example
from minilm.data import END_OF_TEXT
from minilm.posttrain.dpo import Tuned, token_log_probs
from minilm.posttrain.finetune import IGNORE_INDEX, pad_batch
from minilm.presets import choose

GroupReward = Callable[[Example, Sequence[str]], list[float]]  # (question, its sampled answers) -> a score each


def exact_reward(answer: str, reference: str) -> float:
    """1 when the answer is the reference (chapter 6's normalised exact match), else 0."""
    return float(normalize_answer(answer) == normalize_answer(reference))


def length_biased_reward(answer: str, reference: str) -> float:
    """A judge that can be gamed: a fifth of the score for the right answer, the rest for detail
    (up to six words), as judges that prefer longer answers give it."""
    return 0.2 * exact_reward(answer, reference) + 0.8 * min(1.0, len(answer.split()) / 6)


def checked(check: Callable[[str, str], float]) -> GroupReward:
    """A reward for `train_rl` from a checker of one answer against the story's fact."""
    return lambda example, answers: [check(answer, example.answer) for answer in answers]


def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """Each reward minus its group's mean: (questions, group) -> (questions, group)."""
    return rewards - rewards.mean(dim=1, keepdim=True)


@dataclass
class Samples:
    """Sampled answers to one question."""

    prompt_ids: list[int]  # the question, encoded
    answer_ids: list[list[int]]  # each sampled answer, up to and including its end token
    answers: list[str]  # the same, decoded (without the end token)


def sample_answers(model, tokenizer, prompt: str, count: int, temperature: float, max_new_tokens: int,
                   seed: int) -> Samples:
    """`count` answers to one prompt, sampled together; each stops at its first end token."""
    end = tokenizer.special_tokens[END_OF_TEXT]
    prompt_ids = tokenizer.encode(prompt)
    room = model.config.context_length - len(prompt_ids)
    if room < 1:
        raise ValueError(f"the prompt has {len(prompt_ids)} tokens, leaving no room in the model's context of "
                         f"{model.config.context_length}; leave it out or shorten it.")
    device = next(model.parameters()).device
    idx = torch.tensor([prompt_ids] * count, device=device)  # (count, prompt)
    out = model.generate(idx, min(max_new_tokens, room), temperature=temperature, stop_tokens=[end], seed=seed)
    answer_ids, answers = [], []
    for row in out[:, len(prompt_ids):].tolist():
        text_ids = until_stop(row, [end])
        answer_ids.append(text_ids + [end] if len(text_ids) < len(row) else text_ids)  # the end token is an action too
        answers.append(tokenizer.decode(text_ids))
    return Samples(prompt_ids, answer_ids, answers)


@dataclass(frozen=True)
class SampledScore:
    """How often a model's sampled answers (not its greedy ones) are right."""

    accuracy: float  # share of all sampled answers that the story's facts support
    pass_at_k: float  # share of questions with at least one right answer among their k samples
    k: int  # samples per question
    questions: int  # how many questions


def sampled_score(model, tokenizer, examples: Sequence[Example], k: int = 8, temperature: float = 1.0,
                  seed: int = 0) -> SampledScore:
    """Sample k answers to each question and score them exactly: free generation, judged by the world."""
    right, solved = 0.0, 0
    for number, example in enumerate(examples):
        drawn = sample_answers(model, tokenizer, example.prompt, k, temperature, 16, seed + number)
        scores = [exact_reward(answer, example.answer) for answer in drawn.answers]
        right += sum(scores)
        solved += max(scores) == 1.0
    return SampledScore(right / (k * len(examples)), solved / len(examples), k, len(examples))


def _answers_batch(samples: Sequence[Samples], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Every sampled answer after its prompt: (x, y), y is -100 off the answers."""
    encoded = []
    for group in samples:
        for answer in group.answer_ids:
            tokens = group.prompt_ids + answer
            encoded.append((tokens[:-1], [IGNORE_INDEX] * (len(group.prompt_ids) - 1) + answer))
    x, y = pad_batch(encoded, pad_id)
    return x.to(device), y.to(device)


@dataclass(frozen=True)
class RLConfig:
    """One run of group-relative policy gradient."""

    steps: int = 100  # optimizer steps
    questions: int = 8  # questions per step
    group: int = 8  # answers sampled per question (G)
    temperature: float = 1.0  # sampling temperature: the exploration
    max_new_tokens: int = 12  # the longest answer sampled
    lr: float = 1e-4  # a small rate: every step's samples come from the policy itself, so a bad step feeds on itself
    kl_coef: float = 0.05  # weight of the KL penalty to the reference
    grad_clip: float = 1.0  # the gradient's norm is clipped to this (0: not clipped)
    seed: int = 0  # which questions each step asks, and the sampling


RL_SIZES = {"smoke": RLConfig(steps=3, questions=2, group=4), "cpu": RLConfig(steps=300),
            "gpu": RLConfig(steps=400, questions=16)}


def rl_config(preset: str | None = None, **overrides) -> RLConfig:
    """The preset's run (RL_SIZES), with any field overridden."""
    return replace(choose(RL_SIZES, preset), **overrides)


def train_rl(model: torch.nn.Module, tokenizer, examples: Sequence[Example], reward: GroupReward,
             config: RLConfig | None = None) -> Tuned:
    """Group-relative policy gradient on a copy of `model`, whose frozen self is the reference.

    Each history record holds the step's mean reward, the share of its samples that are exactly
    right (whatever the reward), the mean KL to the reference per answer (log π − log π_ref summed
    over its tokens, averaged over the samples), and the mean answer length in tokens.
    """
    config = config or rl_config()
    if not examples:
        raise ValueError("reinforcement needs at least one question to sample answers for.")
    reference = copy.deepcopy(model).eval()
    policy = copy.deepcopy(model).train()
    device = next(policy.parameters()).device
    pad_id = tokenizer.special_tokens[END_OF_TEXT]
    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.lr, betas=(0.9, 0.95), weight_decay=0.0)
    rng = random.Random(config.seed)
    history, began = [], time.perf_counter()
    for step in range(config.steps):
        asked = rng.sample(list(examples), min(config.questions, len(examples)))
        samples = [sample_answers(policy, tokenizer, e.prompt, config.group, config.temperature,
                                  config.max_new_tokens, seed=config.seed * 1_000_003 + step * 1009 + i)
                   for i, e in enumerate(asked)]
        rewards = torch.tensor([reward(e, s.answers) for s, e in zip(samples, asked)], dtype=torch.float)
        exact = [[exact_reward(a, e.answer) for a in s.answers] for s, e in zip(samples, asked)]
        advantages = group_advantages(rewards).flatten().to(device)  # (questions · group,)
        x, y = _answers_batch(samples, pad_id, device)
        policy_tokens = token_log_probs(policy, x, y)  # (samples, time)
        with torch.no_grad():
            reference_tokens = token_log_probs(reference, x, y)
        on_answer = y != IGNORE_INDEX
        log_ratio = (reference_tokens - policy_tokens) * on_answer  # (samples, time)
        k3 = (log_ratio.exp() - log_ratio - 1).sum(dim=1)  # (samples,): ≥ 0, the KL estimate that is trained
        loss = -(advantages * policy_tokens.sum(dim=1)).mean() + config.kl_coef * k3.mean()
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(policy.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        history.append({"step": step + 1, "reward": rewards.mean().item(),
                        "exact": sum(map(sum, exact)) / rewards.numel(),
                        "kl": (-log_ratio.sum(dim=1)).mean().item(),
                        "answer_tokens": on_answer.sum().item() / rewards.numel(),
                        "seconds": time.perf_counter() - began})
    return Tuned(model=policy.eval(), history=history)
