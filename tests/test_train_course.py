"""The course's chapter-4 model: trained once per preset on the story corpus, cached, and sized so
that a whole story fits in its context."""
import random

import numpy as np
import pytest
import torch

from minilm.data import END_OF_TEXT, StoryConfig, StoryWorld
from minilm.presets import PRESETS
from minilm.tokenizer import BPETokenizer
from minilm.course_model import RECIPES, course_model, longest_document
from minilm.train import TokenBatches


@pytest.fixture(scope="module")
def smoke_model():
    return course_model("smoke", device="cpu")


def test_course_model_is_trained_cached_and_ready(smoke_model):
    assert not smoke_model.model.training
    recipe = smoke_model.recipe
    assert smoke_model.history[-1]["step"] == recipe.train.steps
    first, last = smoke_model.history[0]["val_loss"], smoke_model.history[-1]["val_loss"]
    assert first == pytest.approx(np.log(smoke_model.tokenizer.vocab_size), rel=0.05)  # about ln V at the start
    assert last < first
    assert any("sample" in record for record in smoke_model.history)
    again = course_model("smoke", device="cpu")  # from the cache: the same folder, the same weights
    assert again.checkpoint_dir == smoke_model.checkpoint_dir
    for a, b in zip(again.model.parameters(), smoke_model.model.parameters()):
        assert torch.equal(a, b)


def test_whole_stories_fit_in_the_smoke_context(smoke_model):
    tokenizer = smoke_model.tokenizer
    longest = max(len(tokenizer.encode(text)) + 1 for split in smoke_model.corpus.values() for text in split["text"])
    assert longest <= smoke_model.recipe.train.context_length
    stream = smoke_model.tokens.streams["validation"]
    assert longest_document(stream, tokenizer.special_tokens[END_OF_TEXT]) == max(
        len(tokenizer.encode(text)) + 1 for text in smoke_model.corpus["validation"]["text"])


@pytest.mark.parametrize("preset", [p for p in PRESETS if p != "smoke"])
def test_whole_stories_fit_in_every_presets_context(preset):
    recipe = RECIPES[preset]
    stories = [s.text for s in StoryWorld(StoryConfig()).stories(3000, seed=1)]
    tokenizer = BPETokenizer.train(stories[:1000], recipe.vocab_size)  # less text than the real one: longer encodings
    longest = max(len(tokenizer.encode(text)) + 1 for text in stories[1000:])
    assert 1.5 * longest <= recipe.train.context_length  # with room to spare for rarer, longer stories


def test_token_batches_are_the_same_for_the_same_index(smoke_model):
    batches = TokenBatches(smoke_model.tokens.streams, smoke_model.recipe.train, device="cpu")
    x, y = batches.get_batch("train", 5)
    again, _ = batches.get_batch("train", 5)
    other, _ = batches.get_batch("train", 6)
    assert torch.equal(x, again) and not torch.equal(x, other)
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert x.shape == (smoke_model.recipe.train.batch_size, smoke_model.recipe.train.context_length)
