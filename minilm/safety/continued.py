"""Continue training the chapter-4 story model on other texts, and cache the result.

    from minilm.safety.continued import continue_training
    model = continue_training("canaries-raw", texts)        # a GPT in eval mode, on the chosen device
    again = continue_training("canaries-raw", texts)        # the same weights, loaded from the cache

Chapter 8 asks what a model takes in from the text it reads: planted secrets (canaries), answers
it should refuse, biased sentences. Each experiment starts from the same trained story model
(minilm.course_model), reads its own documents for a few hundred steps with chapter 4's loop, and
compares. The documents are encoded with the course tokenizer and joined by END_OF_TEXT exactly as
chapter 4's streams are (minilm.tokens.encode_with); the validation loss is measured on the course
corpus's own validation stories, so it shows how much of the story world the new texts make the
model forget.

The run is cached under `continued-NAME`, keyed by the starting checkpoint, the training settings
and a hash of the texts: the same texts load the saved model; other texts train another one.
"""
from __future__ import annotations

import copy
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from datasets import Dataset, DatasetDict

from minilm import model as model_module, train as train_module
from minilm.cache import cached_artifact
from minilm.checkpoint import load_checkpoint
from minilm.course_model import RECIPES, course_model
from minilm.data import END_OF_TEXT
from minilm.model import GPT
from minilm.presets import choose, current_preset
from minilm.runtime import choose_device, seed_everything
from minilm.tokens import corpus_digest, encode_with
from minilm.train import TokenBatches, TrainConfig, train

NAME = re.compile(r"[A-Za-z0-9_.-]+")  # the name becomes part of a cache folder's name


@dataclass(frozen=True)
class ContinuedSize:
    """How long continued training runs for one preset, and how fast it moves."""

    steps: int  # optimizer steps; cpu: 300 × 16 × 256 tokens, about 14,000 stories' worth
    batch_size: int  # sequences per step, each the recipe's context_length tokens long
    lr_share: float  # peak lr = recipe lr × this share (see continued_config)
    warmup_steps: int  # the optimizer starts with empty moments: a short ramp keeps the first steps small
    eval_every: int  # validation loss on the course's own stories every this many steps
    eval_batches: int  # validation batches per measurement


# smoke: a handful of steps for the checks. cpu: 300 steps at batch 16, about 0.06 s a step on 2 CPU
# cores for the "tiny" model (measured: 18 s in all). gpu: the same number of steps at a larger batch.
CONTINUED_SIZES = {
    "smoke": ContinuedSize(steps=6, batch_size=4, lr_share=1 / 3, warmup_steps=1, eval_every=3, eval_batches=2),
    "cpu": ContinuedSize(steps=300, batch_size=16, lr_share=1 / 3, warmup_steps=15, eval_every=50, eval_batches=8),
    "gpu": ContinuedSize(steps=300, batch_size=64, lr_share=1 / 3, warmup_steps=15, eval_every=50, eval_batches=16),
}


def continued_config(preset: str | None = None, steps: int | None = None) -> TrainConfig:
    """Chapter 4's recipe for the preset, turned into a gentle second run of `steps` steps.

    Peak lr is a third of the recipe's, decaying (cosine) to the recipe's own floor, min_lr. The
    model already sits in a good minimum for stories: the full peak would shake it out of it and
    make it forget more than it learns, while the floor alone is too slow to learn a new phrase in
    a few hundred steps. A third is the usual compromise for fine-tuning a pretrained model.
    """
    recipe_train = choose(RECIPES, preset).train
    size = choose(CONTINUED_SIZES, preset)
    steps = size.steps if steps is None else steps
    if steps < 1:
        raise ValueError(f"steps={steps} must be at least 1 (or None for the preset's {size.steps}).")
    lr = recipe_train.lr * size.lr_share
    return TrainConfig(steps=steps, batch_size=size.batch_size, context_length=recipe_train.context_length,
                       lr=lr, min_lr=min(recipe_train.min_lr, lr), warmup_steps=min(size.warmup_steps, steps),
                       eval_every=min(size.eval_every, steps), eval_batches=size.eval_batches,
                       precision=recipe_train.precision, seed=recipe_train.seed)


def check_texts(name: str, texts: Sequence[str]) -> None:
    """A usable cache name and a non-empty list of documents, none holding END_OF_TEXT itself."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(f"name={name!r} must be letters, digits, '.', '_' or '-' (it names a cache folder).")
    if isinstance(texts, str) or not texts or not all(isinstance(text, str) and text for text in texts):
        raise ValueError("texts must be a non-empty list of non-empty strings, one document each.")
    if any(END_OF_TEXT in text for text in texts):
        raise ValueError(f"a text contains {END_OF_TEXT!r}, which separates documents; remove it or split the text.")


def continue_training(name: str, texts: Sequence[str], steps: int | None = None, preset: str | None = None,
                      device=None) -> GPT:
    """The course model trained further on `texts` (trained once, then loaded from the cache), in eval mode."""
    check_texts(name, texts)
    preset = preset or current_preset()
    device = choose_device(None if device is None else str(device))
    course = course_model(preset, device)
    config = continued_config(preset, steps)
    corpus = DatasetDict({"train": Dataset.from_dict({"text": list(texts)}),
                          "validation": course.corpus["validation"]})

    def build(folder: Path) -> None:
        tokens = encode_with(corpus, course.tokens)  # the course tokenizer, documents joined by END_OF_TEXT
        seed_everything(config.seed)
        model = copy.deepcopy(course.model).to(device)
        train(model, TokenBatches(tokens.streams, config, device), config, folder, tokenizer=course.tokenizer,
              run_info={"start": course.checkpoint_dir.name})

    inputs = {"start": course.checkpoint_dir.name, "train": asdict(config), "texts": corpus_digest(corpus)}
    folder = cached_artifact(f"continued-{name}", inputs, build, code=(train_module, model_module))
    return load_checkpoint(folder, device).model
