"""Capstone: a language model of your own, assembled from the pieces you built.

Your BPE (chapter 1: `train_bpe`, `bpe_encode`), your GPT (chapter 3: `build_gpt`) and your
training loop (chapter 4: `train_loop`) come together here. Trained on the story world for a fixed
budget, your model must land within 0.1 nats of minilm's validation loss at the same budget and
seed, and beat a Kneser-Ney n-gram model on the same tokens. Check it with

    ./course exercise capstone

The grader checks each piece against minilm first, so a failure names the piece that is off
(tokenizer, batches, model, initialisation, loop) before it trains the whole. The functions below
find your chapter modules in the folder this file is in: exercises/ for you, solutions/ for the
course's answers.
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Callable

import torch

from minilm.model import model_config
from minilm.train import TrainConfig

BatchFn = Callable[[str, int], "tuple[torch.Tensor, torch.Tensor]"]


def _chapter(name: str):
    """Your chapter module `name` (say "ch03_transformer"), loaded from the folder of this file."""
    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"{path.parent.name}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

def tokenize(train_stories: list[str], other_stories: list[str], vocab_size: int) -> tuple[list[int], list[int], int]:
    """Train your BPE on `train_stories`, then encode both lists, each story followed by end of text.

    The vocabulary holds `vocab_size` ids: the 256 bytes, then your merges (learn them with
    `_chapter("ch01_tokenizer").train_bpe(train_stories, vocab_size - 1)`), then one last id for
    end of text, 256 + the number of merges. That is the layout of minilm's BPETokenizer with its one
    special token, <|endoftext|>. Returns (train ids, other ids, the end-of-text id).
    >>> train_ids, other_ids, end = tokenize(["a cat."], ["a cat."], 260)
    >>> train_ids[-1] == end == 256 + 3      # three merges fit in 260 - 1 ids
    True
    """
    tokenizer = _chapter("ch01_tokenizer")
    merges = tokenizer.train_bpe(train_stories, vocab_size - 1)  # leave one id for end of text
    end_of_text = 256 + len(merges)

    def encode(stories: list[str]) -> list[int]:
        return [token for story in stories for token in tokenizer.bpe_encode(story, merges) + [end_of_text]]

    return encode(train_stories), encode(other_stories), end_of_text


def batch_getter(train_ids: list[int], validation_ids: list[int], batch_size: int, context_length: int,
                 seed: int = 0) -> BatchFn:
    """A function get_batch(split, index) -> (x, y) for your training loop.

    x: `batch_size` windows of `context_length` tokens from the split's ids ("train" or
    "validation"), each starting at a random place; y: the same windows shifted one token on (the
    next token at every position). Both (batch_size, context_length) long tensors. Draw the starts
    with a torch.Generator seeded from (seed, split, index), so the same index always gives the same
    batch (do not use Python's hash() of a string: it changes from one run to the next).
    """
    data = {"train": torch.tensor(train_ids), "validation": torch.tensor(validation_ids)}

    def get_batch(split: str, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = data[split]
        generator = torch.Generator().manual_seed(seed * 1_000_003 + 2 * index + (split == "validation"))
        starts = torch.randint(0, len(ids) - context_length, (batch_size, 1), generator=generator)  # (batch, 1)
        windows = ids[starts + torch.arange(context_length + 1)]  # (batch, context_length + 1)
        return windows[:, :-1], windows[:, 1:]

    return get_batch


def initialise(model: torch.nn.Module, n_layer: int, std: float = 0.02) -> None:
    """GPT-2's initialisation of your model, in place (PyTorch's defaults train far worse here).

    Every weight matrix and embedding table ~ N(0, std²); the two layers per block that write into
    the residual stream (names ending in "attention.out.weight" and "mlp.out.weight") ~ N(0, (std /
    √(2·n_layer))²), since 2·n_layer of them add up along the stream; every bias 0; every norm gain 1.
    A tied weight (the head) is the embedding table, so it is set once. minilm.model.GPT does the same.
    """
    residual_std = std / math.sqrt(2 * n_layer)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("attention.out.weight", "mlp.out.weight")):
                parameter.normal_(0.0, residual_std)
            elif parameter.dim() >= 2:
                parameter.normal_(0.0, std)
            elif name.endswith("bias"):
                parameter.zero_()
            else:  # a norm's gain
                parameter.fill_(1.0)


def train_model(train_ids: list[int], validation_ids: list[int], vocab_size: int, size: str,
                config: TrainConfig) -> tuple[torch.nn.Module, list[float]]:
    """Build your GPT and train it with your loop; return the model (in eval mode) and every step's loss.

    The model: `_chapter("ch03_transformer").build_gpt` of
    `model_config(size, vocab_size, context_length=config.context_length)` (GPT-2 family, no
    dropout), built and then given `initialise` right after `torch.manual_seed(config.seed)`. The loop:
    `_chapter("ch04_training").train_loop` over `batch_getter(..., config.batch_size,
    config.context_length, config.seed)`.
    """
    torch.manual_seed(config.seed)
    gpt_config = model_config(size, vocab_size, context_length=config.context_length)
    model = _chapter("ch03_transformer").build_gpt(gpt_config)
    initialise(model, gpt_config.n_layer)
    get_batch = batch_getter(train_ids, validation_ids, config.batch_size, config.context_length, config.seed)
    losses = _chapter("ch04_training").train_loop(model, get_batch, config)
    return model.eval(), losses
