"""The course's own model: chapter 4's recipe per preset, trained once and then loaded from the cache.

    from minilm.course_model import course_model
    story = course_model()       # .model, .tokenizer, .tokens, .corpus, .history, .checkpoint_dir, .recipe

Chapters 5 and 6 start from this model. Each preset's recipe (RECIPES) says how many stories the
story world writes, the BPE vocabulary, the model size (minilm.model.PRESET_SIZES, the same one
chapter 3 studies) and the training run; benchmarks/train_quality.py measures each recipe against
the story world's exact floor. The cache key holds the recipe, the token streams and the source of
the training loop and the model, so changing any of them trains the model again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict
from tqdm.auto import tqdm

from minilm import model as model_module, train as train_module
from minilm.cache import cached_artifact
from minilm.checkpoint import load_checkpoint
from minilm.data import END_OF_TEXT, CorpusConfig, build_corpus
from minilm.model import GPT, PRESET_SIZES, model_config
from minilm.presets import choose, current_preset
from minilm.runtime import choose_device, seed_everything
from minilm.tokens import PreparedTokens, prepare_tokens
from minilm.train import TokenBatches, TrainConfig, train


@dataclass(frozen=True)
class Recipe:
    """Chapter 4's run for one preset: how much story text, which tokenizer, model and training."""

    stories: int  # stories the story world writes (train 90%, validation 5%, test 5%)
    vocab_size: int  # BPE vocabulary: ~1024 holds the story world's words, about 90 tokens a story
    size: str  # a key of minilm.model.MODEL_SIZES (PRESET_SIZES: chapter 3 studies the same one)
    train: TrainConfig  # the training run (its context_length is the model's)


# benchmarks/train_quality.py measures each recipe against the story world's exact floor.
RECIPES = {
    "smoke": Recipe(stories=400, vocab_size=512, size=PRESET_SIZES["smoke"],
                    train=TrainConfig(steps=20, batch_size=4, context_length=256, lr=1e-2, min_lr=1e-3,
                                      warmup_steps=4, eval_every=10, eval_batches=2)),
    "cpu": Recipe(stories=60_000, vocab_size=1024, size=PRESET_SIZES["cpu"],
                  train=TrainConfig(steps=2500, batch_size=16, context_length=256, lr=3e-3, min_lr=3e-4,
                                    warmup_steps=100, eval_every=250, eval_batches=8)),
    "gpu": Recipe(stories=200_000, vocab_size=1024, size=PRESET_SIZES["gpu"],
                  train=TrainConfig(steps=3000, batch_size=64, context_length=256, lr=1.5e-3, min_lr=1.5e-4,
                                    warmup_steps=200, eval_every=250, eval_batches=16, compile=True)),
}


def story_corpus_config(preset: str | None = None) -> CorpusConfig:
    """Chapter 1's corpus, stories only, as many as the preset's recipe asks for."""
    return CorpusConfig.for_preset(preset, sources={"stories": 1.0}, stories=choose(RECIPES, preset).stories)


def longest_document(stream, end_of_text: int) -> int:
    """The most tokens any document of a token stream takes, its END_OF_TEXT included."""
    ends = np.flatnonzero(np.asarray(stream.tokens) == end_of_text)  # (documents,)
    return int(np.diff(ends, prepend=-1).max()) if len(ends) else len(stream)


class SampleEvery:
    """A callback that writes a story every `every` steps, prints it and keeps it in the record."""

    def __init__(self, tokenizer, every: int, max_new_tokens: int = 120, seed: int = 0):
        self.tokenizer, self.every, self.max_new_tokens, self.seed = tokenizer, every, max_new_tokens, seed
        self.end_of_text = tokenizer.special_tokens[END_OF_TEXT]

    def __call__(self, record: dict, model: torch.nn.Module) -> None:
        if not self.every or record["step"] % self.every:
            return
        start = torch.tensor([[self.end_of_text]], device=next(model.parameters()).device)  # (1, 1)
        ids = model.generate(start, self.max_new_tokens, stop_tokens=[self.end_of_text], seed=self.seed)
        record["sample"] = self.tokenizer.decode(ids[0, 1:].tolist()).split(END_OF_TEXT)[0]
        tqdm.write(f"step {record['step']}: {record['sample']}")


@dataclass
class CourseModel:
    """The chapter-4 model and everything it was made from; chapters 5 and 6 start from it."""

    model: GPT  # trained, in eval mode, on the device asked for
    tokenizer: object  # the BPE tokenizer of `tokens`
    tokens: PreparedTokens  # the token streams it was trained and validated on
    corpus: DatasetDict  # the story corpus (train, validation, test)
    history: list  # the training history (one dict per step, samples included)
    checkpoint_dir: Path  # the cached checkpoint folder
    recipe: Recipe  # the preset's recipe


def course_model(preset: str | None = None, device: torch.device | str | None = None) -> CourseModel:
    """The preset's story model: trained the first time (RECIPES), then loaded from the cache."""
    preset = preset or current_preset()
    recipe = choose(RECIPES, preset)
    corpus = build_corpus(story_corpus_config(preset))
    tokens = prepare_tokens(corpus, recipe.vocab_size)
    end_of_text = tokens.tokenizer.special_tokens[END_OF_TEXT]
    longest = max(longest_document(stream, end_of_text) for stream in tokens.streams.values())
    if longest > recipe.train.context_length:
        raise ValueError(f"a story takes {longest} tokens, more than the context of {recipe.train.context_length}; "
                         f"raise the context_length of the {preset} recipe.")
    config = model_config(recipe.size, tokens.tokenizer.vocab_size)
    device = choose_device(None if device is None else str(device))

    def build(folder: Path) -> None:
        seed_everything(recipe.train.seed)
        model = GPT(config).to(device)
        train(model, TokenBatches(tokens.streams, recipe.train, device), recipe.train, folder,
              tokenizer=tokens.tokenizer, callbacks=[SampleEvery(tokens.tokenizer, recipe.train.eval_every)])

    inputs = {"model": config.to_dict(), "train": asdict(recipe.train), "tokens": tokens.folder.name}
    folder = cached_artifact(f"course-model-{preset}", inputs, build, code=(train_module, model_module))
    checkpoint = load_checkpoint(folder, device)
    return CourseModel(model=checkpoint.model, tokenizer=checkpoint.tokenizer, tokens=tokens, corpus=corpus,
                       history=checkpoint.history, checkpoint_dir=folder, recipe=recipe)
