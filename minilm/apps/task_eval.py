"""Chapter 6: ask a model every prompt of a task, and score its answers with the task's metric.

    result = evaluate_task(model, tokenizer, test_examples)   # greedy answers, then the metric
    result.score, result.metric, result.predictions[:3]

Each task is measured the way its field measures it:

    translation  corpus BLEU (chapter 5), the answers against the reference translations
    qa           exact match: the share of answers equal to the reference once normalised
    summary      mean ROUGE-L F1 (chapter 5) against the reference summary
    mood         accuracy: the share of answers that are the right mood word
    code         the share of completed functions that parse (minilm.apps.code_completion)

A score on a few hundred examples is itself uncertain: `wilson_interval(right, n)` gives the
95% Wilson score interval of a share of right answers, which stays inside [0, 1] and is honest
even at 0 of n or n of n (where the textbook p ± 1.96·√(p(1−p)/n) collapses to a point).

Exact match normalises both sides as the SQuAD benchmark does: lower case, punctuation and the
articles a, an, the removed, runs of spaces collapsed; so "The red kite." matches "red kite".

`compare_decoding` runs several decoding strategies on the same prompts and measures the text
with chapter 5's distinct-n and repetition rate.
"""
from __future__ import annotations

import re
import string
from collections import defaultdict
from dataclasses import dataclass
from operator import attrgetter
from typing import Callable, Sequence

import torch

from minilm.data import END_OF_TEXT
from minilm.evaluate import corpus_bleu, distinct_n, mean_rouge_l, repetition_rate
from minilm.apps.tasks import Example

METRICS = {"translation": "BLEU", "qa": "exact match", "summary": "ROUGE-L", "mood": "accuracy"}
ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (SQuAD's normalisation)."""
    text = "".join(c for c in text.lower() if c not in string.punctuation)
    return " ".join(ARTICLES.sub(" ", text).split())


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """The share of predictions equal to their reference after `normalize_answer`."""
    _check_pairs(predictions, references)
    return sum(normalize_answer(p) == normalize_answer(r) for p, r in zip(predictions, references)) / len(predictions)


def accuracy(predictions: Sequence, references: Sequence) -> float:
    """The share of predictions equal to their reference."""
    _check_pairs(predictions, references)
    return sum(p == r for p, r in zip(predictions, references)) / len(predictions)


def _check_pairs(predictions: Sequence, references: Sequence) -> None:
    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"need one reference per prediction and at least one of each, got "
                         f"{len(predictions)} predictions and {len(references)} references.")


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a share `successes / n` (z = 1.96: 95%): every p for which
    |successes/n − p| ≤ z·√(p(1 − p)/n), the values a two-sided score test would not reject."""
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes} of {n}.")
    share = successes / n
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half_width = z / (1 + z * z / n) * (share * (1 - share) / n + z * z / (4 * n * n)) ** 0.5
    return max(0.0, centre - half_width), min(1.0, centre + half_width)


def unsupported_rate(predictions: Sequence[str], sources: Sequence[str]) -> float:
    """The share of predictions holding a word that their source text does not (after normalising):
    a rough count of invented answers. References can score above 0 too (paraphrases)."""
    _check_pairs(predictions, sources)
    invented = [bool(set(normalize_answer(p).split()) - set(normalize_answer(s).split()))
                for p, s in zip(predictions, sources)]
    return sum(invented) / len(invented)


def score(task: str, predictions: Sequence[str], references: Sequence[str]) -> float:
    """The task's metric (METRICS) of the answers against the references, from 0 to 1 (BLEU: 0 to 100)."""
    if task == "translation":
        return corpus_bleu(predictions, [[r] for r in references]).score
    if task == "qa":
        return exact_match(predictions, references)
    if task == "summary":
        return mean_rouge_l(predictions, [[r] for r in references])
    if task == "mood":
        return accuracy([normalize_answer(p) for p in predictions], [normalize_answer(r) for r in references])
    raise ValueError(f"no metric for task {task!r}; the tasks are {', '.join(METRICS)}.")


def until_stop(ids: Sequence[int], stop_ids: Sequence[int]) -> list[int]:
    """Generated ids up to (not including) the first stop token."""
    ids = list(ids)
    cut = next((i for i, token in enumerate(ids) if token in set(stop_ids)), len(ids))
    return ids[:cut]


def first_line(text: str) -> str:
    """An answer is one line: what comes before the first new line, without surrounding spaces."""
    return text.split("\n", 1)[0].strip()


def generate_answers(model, tokenizer, prompts: Sequence[str], max_new_tokens: int,
                     stop_tokens: Sequence[str] = (END_OF_TEXT,), batch_size: int = 16) -> list[str]:
    """Greedy continuations of each prompt, up to a stop token, each at most `max_new_tokens` long.

    Prompts of the same token length are generated together in one batch (no padding needed); a
    continuation never runs past the model's context.
    """
    stop_ids = [tokenizer.special_tokens[token] for token in stop_tokens]
    encoded = [tokenizer.encode(prompt) for prompt in prompts]
    context = model.config.context_length
    too_long = [i for i, ids in enumerate(encoded) if len(ids) >= context]
    if too_long:
        raise ValueError(f"prompt {too_long[0]} has {len(encoded[too_long[0]])} tokens, leaving no room in the "
                         f"model's context of {context}; shorten it or leave it out.")
    by_length = defaultdict(list)  # prompt length -> indices of the prompts that long
    for index, ids in enumerate(encoded):
        by_length[len(ids)].append(index)
    device = next(model.parameters()).device
    answers = [""] * len(prompts)
    for length, indices in by_length.items():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            idx = torch.tensor([encoded[i] for i in chunk], device=device)  # (batch, length)
            out = model.generate(idx, min(max_new_tokens, context - length), temperature=0, stop_tokens=stop_ids)
            for row, i in enumerate(chunk):
                answers[i] = tokenizer.decode(until_stop(out[row, length:].tolist(), stop_ids))
    return answers


@dataclass
class TaskResult:
    """A model's answers on a task and their score."""

    task: str  # which task
    metric: str  # the metric's name (METRICS)
    score: float  # the metric over every example
    prompts: list[str]  # what was asked
    predictions: list[str]  # the model's answers (first line, stripped)
    references: list[str]  # the right answers


def evaluate_task(model, tokenizer, examples: Sequence[Example], max_new_tokens: int | None = None,
                  prompt_of: Callable[[Example], str] = attrgetter("prompt"),
                  stop_tokens: Sequence[str] = (END_OF_TEXT,)) -> TaskResult:
    """Greedy answers of `model` to every example of one task, scored with the task's metric.

    `prompt_of(example)` is what the model reads (default: example.prompt; the chat format passes
    its own). Examples whose prompt leaves no room in the model's context are left out (at least
    one must fit). Without `max_new_tokens` an answer may be up to twice the longest reference's
    tokens.
    """
    tasks = {example.task for example in examples}
    if len(tasks) != 1:
        raise ValueError(f"evaluate one task at a time; these examples are of tasks {sorted(tasks) or 'none'}.")
    task = tasks.pop()
    context = model.config.context_length
    kept = [e for e in examples if len(tokenizer.encode(prompt_of(e))) < context]
    if not kept:
        raise ValueError(f"no prompt of the {len(examples)} {task} examples fits the model's context of "
                         f"{context} tokens; use a model with a longer context, or shorter examples.")
    references = [e.answer.strip() for e in kept]
    if max_new_tokens is None:
        max_new_tokens = 2 * max(len(tokenizer.encode(e.answer)) for e in kept) + 1
    prompts = [prompt_of(e) for e in kept]
    raw = generate_answers(model, tokenizer, prompts, max_new_tokens, stop_tokens)
    predictions = [first_line(answer) for answer in raw]
    return TaskResult(task, METRICS[task], score(task, predictions, references), prompts, predictions, references)


@dataclass(frozen=True)
class Decoding:
    """One way of choosing tokens (minilm.generate): greedy is temperature 0."""

    name: str  # how it is shown in tables
    temperature: float = 1.0  # 0: greedy
    top_k: int | None = None  # sample among the k likeliest tokens only
    top_p: float | None = None  # sample among the smallest set of tokens holding probability p


DECODINGS = (Decoding("greedy", temperature=0.0), Decoding("temperature 0.7", 0.7), Decoding("temperature 1.0"),
             Decoding("temperature 1.5", 1.5), Decoding("top-k 10", top_k=10), Decoding("top-p 0.9", top_p=0.9))


def compare_decoding(model, tokenizer, prompts: Sequence[str], max_new_tokens: int,
                     decodings: Sequence[Decoding] = DECODINGS, samples: int = 4, seed: int = 0) -> list[dict]:
    """For each decoding: `samples` continuations of every prompt (each ends at the first end of
    text), their distinct-2 and repetition-4 (chapter 5, on token ids), mean length in tokens, and
    one example text. Returns one row per decoding."""
    device = next(model.parameters()).device
    stop_ids = [tokenizer.special_tokens[END_OF_TEXT]] if END_OF_TEXT in tokenizer.special_tokens else []
    rows = []
    for decoding in decodings:
        continuations, texts = [], []
        for number, prompt in enumerate(prompts):
            ids = tokenizer.encode(prompt)
            room = model.config.context_length - len(ids)
            if room < 1:
                raise ValueError(f"the prompt {prompt[:40]!r}... leaves no room in the context of "
                                 f"{model.config.context_length} tokens; use a shorter prompt.")
            idx = torch.tensor([ids] * samples, device=device)  # (samples, prompt)
            out = model.generate(idx, min(max_new_tokens, room), temperature=decoding.temperature,
                                 top_k=decoding.top_k, top_p=decoding.top_p, stop_tokens=stop_ids,
                                 seed=seed + number)
            for row in out[:, len(ids):].tolist():
                continuations.append(until_stop(row, stop_ids))
                texts.append(tokenizer.decode(continuations[-1]))
        rows.append({"decoding": decoding.name, "distinct-2": distinct_n(continuations, 2),
                     "repetition-4": repetition_rate(continuations, 4),
                     "tokens": sum(map(len, continuations)) / len(continuations), "example": texts[0]})
    return rows
