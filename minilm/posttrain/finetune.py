"""Chapter 6: supervised fine-tuning — teach a pretrained model to answer, with the loss on the answer only.

Pretraining taught the model to continue text. To make it answer, we show it prompt + answer
sequences and train on the answer's tokens only: the prompt is given, not predicted, so no
gradient asks the model to write prompts. In the targets every position whose next token still
belongs to the prompt is -100, which the model's cross-entropy skips (chapter 4's `ignore_index`):

    tokens    Q   :   ␣Who  ?   A   :  ␣Leo  <|endoftext|>
    inputs    Q   :   ␣Who  ?   A   :  ␣Leo
    targets  -100 -100 -100 -100 -100 ␣Leo <|endoftext|>        (the answer, then "stop")

The end token teaches the model to stop once the answer is written. Examples of different lengths
are padded on the right to the longest in their batch; padded positions get target -100 too, and a
causal model never looks right, so the padding changes nothing else.

    tuned = finetune(model, tokenizer, train_examples, validation_examples)   # finetune_config(task) by default
    tuned.model, tuned.history            # a fine-tuned copy (the original is left as it was)

The training loop is chapter 4's `minilm.train.train`: only the batches differ (`ExampleBatches`).
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, replace
from typing import Sequence

import torch

from minilm.data import END_OF_TEXT
from minilm.presets import choose
from minilm.apps.tasks import Example
from minilm.train import TrainConfig, train

IGNORE_INDEX = -100  # a target the cross-entropy skips (PyTorch's default ignore_index)


@dataclass(frozen=True)
class FinetuneSizes:
    """How long and how hard to fine-tune, for one preset."""

    steps: dict[str, int]  # optimizer steps per task: short answers teach few tokens per step, so take more
    batch_size: int  # examples per step
    lr: float  # peak learning rate


SFT_SIZES = {
    "smoke": FinetuneSizes(steps={"translation": 8, "qa": 8, "summary": 8, "mood": 8, "chat": 8},
                           batch_size=8, lr=3e-3),
    "cpu": FinetuneSizes(steps={"translation": 600, "qa": 2400, "summary": 450, "mood": 300, "chat": 1500},
                         batch_size=16, lr=3e-3),
    "gpu": FinetuneSizes(steps={"translation": 2000, "qa": 6000, "summary": 2000, "mood": 1000, "chat": 6000},
                         batch_size=32, lr=1e-3),
}


def finetune_config(task: str, preset: str | None = None, **overrides) -> TrainConfig:
    """Chapter 4's TrainConfig with the preset's fine-tuning sizes for `task` (any field overridden).

    `task` is one of the story tasks or "chat" (instruction tuning on all of them at once).
    """
    sizes = choose(SFT_SIZES, preset)
    if task not in sizes.steps:
        raise ValueError(f"no fine-tuning length for task {task!r}; the tasks are {', '.join(sizes.steps)}.")
    steps = sizes.steps[task]
    config = TrainConfig(steps=steps, batch_size=sizes.batch_size, lr=sizes.lr, min_lr=sizes.lr / 10,
                         warmup_steps=max(1, steps // 10), weight_decay=0.0,
                         eval_every=max(1, steps // 5), eval_batches=4)
    return replace(config, **overrides)


def encode_example(tokenizer, prompt: str, answer: str, end_token: str | None = END_OF_TEXT
                   ) -> tuple[list[int], list[int]]:
    """(inputs, targets) of one example: targets[t] is the token after inputs[t], -100 inside the prompt.

    Prompt and answer are encoded separately, exactly as at inference time, when the model reads the
    encoded prompt and writes the answer token by token.
    """
    prompt_ids = tokenizer.encode(prompt)
    answer_ids = tokenizer.encode(answer)
    if end_token is not None:
        if end_token not in tokenizer.special_tokens:
            raise ValueError(f"the tokenizer has no special token {end_token!r} to end answers with; "
                             f"its special tokens are {sorted(tokenizer.special_tokens)}.")
        answer_ids.append(tokenizer.special_tokens[end_token])
    if not prompt_ids or not answer_ids:
        raise ValueError("an example needs a non-empty prompt and a non-empty answer to learn from.")
    tokens = prompt_ids + answer_ids
    targets = [IGNORE_INDEX] * (len(prompt_ids) - 1) + answer_ids  # the token after each input
    return tokens[:-1], targets


def pad_batch(encoded: Sequence[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad examples to the longest: (x, y), each (batch, longest); padded targets are -100."""
    longest = max(len(inputs) for inputs, _ in encoded)
    x = torch.full((len(encoded), longest), pad_id, dtype=torch.long)  # (batch, time)
    y = torch.full((len(encoded), longest), IGNORE_INDEX, dtype=torch.long)  # (batch, time)
    for row, (inputs, targets) in enumerate(encoded):
        x[row, :len(inputs)] = torch.tensor(inputs)
        y[row, :len(targets)] = torch.tensor(targets)
    return x, y


class ExampleBatches:
    """Padded batches of encoded examples, drawn by number like chapter 4's TokenBatches.

    Batch `index` of a split is `batch_size` examples drawn with a generator seeded by (seed, split,
    index): the same batch every time it is asked for, so a resumed run sees the same data.
    """

    def __init__(self, splits: dict[str, list[tuple[list[int], list[int]]]], batch_size: int, pad_id: int,
                 seed: int = 0, device: torch.device | str | None = None):
        empty = [name for name, encoded in splits.items() if not encoded]
        if empty:
            raise ValueError(f"the split(s) {', '.join(empty)} hold no examples; give each split at least one.")
        self.splits = splits  # split name -> encoded examples (inputs, targets)
        self.batch_size = batch_size
        self.pad_id = pad_id  # any token id: padded positions are never learned from
        self.seed = seed
        self.device = device

    def get_batch(self, split: str, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self.splits[split]
        digest = hashlib.blake2b(f"{self.seed}/{split}/{index}".encode(), digest_size=8).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
        rows = torch.randint(len(encoded), (self.batch_size,), generator=generator).tolist()
        x, y = pad_batch([encoded[row] for row in rows], self.pad_id)
        return x.to(self.device or "cpu"), y.to(self.device or "cpu")


def encode_fitting(tokenizer, examples: Sequence[Example], context_length: int,
                   end_token: str | None = END_OF_TEXT) -> list[tuple[list[int], list[int]]]:
    """Encode the examples, leaving out those longer than the model's context; at least one must fit."""
    return keep_fitting([encode_example(tokenizer, e.prompt, e.answer, end_token) for e in examples], context_length)


def keep_fitting(encoded: list[tuple[list[int], list[int]]], context_length: int) -> list[tuple[list[int], list[int]]]:
    """The encoded examples that fit the context; an error if none does."""
    fitting = [pair for pair in encoded if len(pair[0]) <= context_length]
    if encoded and not fitting:
        shortest = min(len(inputs) for inputs, _ in encoded)
        raise ValueError(f"none of the {len(encoded)} examples fits the model's context of {context_length} "
                         f"tokens (the shortest needs {shortest}); use a model with a longer context, "
                         f"or shorter examples.")
    return fitting


@dataclass
class FineTuned:
    """A fine-tuned copy of a model and what happened on the way."""

    model: torch.nn.Module  # the tuned copy, in eval mode
    history: list[dict]  # chapter 4's training history (train_loss per step, val_loss at times)
    examples: dict[str, int]  # split -> examples trained or validated on (those that fit the context)


def finetune(model: torch.nn.Module, tokenizer, train_examples: Sequence[Example],
             validation_examples: Sequence[Example], config: TrainConfig | None = None,
             end_token: str | None = END_OF_TEXT) -> FineTuned:
    """Fine-tune a copy of `model` on prompt -> answer examples, the loss on the answers only.

    Without `config`, the preset's fine-tuning run for the examples' task (finetune_config).
    """
    context = model.config.context_length
    splits = {"train": encode_fitting(tokenizer, train_examples, context, end_token),
              "validation": encode_fitting(tokenizer, validation_examples, context, end_token)}
    pad_id = tokenizer.special_tokens.get(end_token, 0) if end_token else 0
    return finetune_encoded(model, splits, pad_id, config or finetune_config(train_examples[0].task))


def finetune_encoded(model: torch.nn.Module, splits: dict[str, list[tuple[list[int], list[int]]]], pad_id: int,
                     config: TrainConfig) -> FineTuned:
    """Fine-tune a copy of `model` on encoded (inputs, targets) pairs: splits "train" and "validation"."""
    device = next(model.parameters()).device
    batches = ExampleBatches(splits, config.batch_size, pad_id, config.seed, device)
    longest = max(len(inputs) for encoded in splits.values() for inputs, _ in encoded)
    config = replace(config, context_length=longest)  # only counts tokens in the history
    tuned = copy.deepcopy(model)
    history = train(tuned, batches, config)
    return FineTuned(model=tuned, history=history, examples={name: len(pairs) for name, pairs in splits.items()})
