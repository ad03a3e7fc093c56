"""Checkpoints: a round trip gives the same model, optimizer and random state; nothing is pickled;
a missing, truncated or corrupted file, or a checkpoint for another config, fails clearly."""
import json
import random

import numpy as np
import pytest
import torch
from safetensors import safe_open

from minilm.checkpoint import (MANIFEST, TOKENIZER, TRAINING, WEIGHTS, CheckpointError, load_checkpoint,
                               restore_training_state, save_checkpoint)
from minilm.model import GPT, GPTConfig
from minilm.tokenizer import BPETokenizer
from minilm.train import TrainConfig, make_optimizer

CONFIG = GPTConfig(vocab_size=300, context_length=16, n_layer=2, n_head=2, n_embd=16)


def trained_pair(seed=0):
    """A model and an optimizer that has taken one step (so Adam's moments are not zero)."""
    torch.manual_seed(seed)
    model = GPT(CONFIG)
    optimizer = make_optimizer(model, TrainConfig())
    x = torch.randint(0, CONFIG.vocab_size, (2, 16))
    model(x, x)[1].backward()
    optimizer.step()
    return model, optimizer


@pytest.fixture
def saved(tmp_path):
    model, optimizer = trained_pair()
    tokenizer = BPETokenizer.train(["the cat sat on the mat"] * 3, vocab_size=260)
    save_checkpoint(tmp_path, model, optimizer=optimizer, train_config={"lr": 0.1}, step=7,
                    data_position=14, history=[{"step": 7, "train_loss": 1.5}], tokenizer=tokenizer)
    return tmp_path, model, optimizer, tokenizer


def test_load_checkpoint_gives_the_same_model_and_tokenizer(saved):
    folder, model, _, tokenizer = saved
    checkpoint = load_checkpoint(folder)
    x = torch.randint(0, CONFIG.vocab_size, (3, 16))
    model.eval()
    torch.testing.assert_close(checkpoint.model(x)[0], model(x)[0], rtol=0, atol=0)
    assert checkpoint.model.head.weight is checkpoint.model.token_embedding.weight  # still tied
    assert not checkpoint.model.training
    assert checkpoint.model.config == CONFIG and checkpoint.step == 7
    assert checkpoint.history == [{"step": 7, "train_loss": 1.5}] and checkpoint.train_config == {"lr": 0.1}
    assert checkpoint.tokenizer.encode("the cat") == tokenizer.encode("the cat")


def test_restore_brings_back_optimizer_moments_and_random_state(saved):
    folder, model, optimizer, _ = saved
    after_save = (torch.rand(4), random.random(), np.random.rand())
    fresh, _ = trained_pair(seed=5)
    fresh_optimizer = make_optimizer(fresh, TrainConfig())
    state = restore_training_state(folder, fresh, fresh_optimizer)
    assert (state.step, state.data_position) == (7, 14)
    assert torch.equal(torch.rand(4), after_save[0])
    assert (random.random(), np.random.rand()) == after_save[1:]
    theirs, ours = optimizer.state_dict()["state"], fresh_optimizer.state_dict()["state"]
    assert theirs.keys() == ours.keys()
    for index in theirs:
        for name in theirs[index]:
            assert torch.equal(theirs[index][name], ours[index][name])
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)


def test_nothing_is_pickled(saved):
    folder = saved[0]
    assert sorted(p.name for p in folder.iterdir()) == sorted([MANIFEST, WEIGHTS, TRAINING, TOKENIZER])
    for name in (WEIGHTS, TRAINING):
        with safe_open(folder / name, framework="pt") as handle:  # safetensors: tensors and a JSON header
            assert list(handle.keys())
    for name in (MANIFEST, TOKENIZER):
        json.loads((folder / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", [WEIGHTS, TRAINING, TOKENIZER])
def test_truncated_file_is_reported(saved, name):
    folder = saved[0]
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{name}.*truncated or corrupted"):
        load_checkpoint(folder)


def test_flipped_byte_is_reported(saved):
    folder = saved[0]
    data = bytearray((folder / WEIGHTS).read_bytes())
    data[-5] ^= 0xFF  # inside the last tensor: safetensors itself could not notice
    (folder / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the checksum"):
        load_checkpoint(folder)


def test_damaged_or_missing_pieces_are_reported(saved, tmp_path_factory):
    folder = saved[0]
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(folder / "nowhere")
    with pytest.raises(CheckpointError, match="holds no checkpoint.json"):
        load_checkpoint(tmp_path_factory.mktemp("empty"))
    (folder / TRAINING).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(folder)
    text = (folder / MANIFEST).read_text()
    (folder / MANIFEST).write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(folder)


def test_checkpoint_for_another_config_is_refused(saved):
    folder = saved[0]
    other = GPT(GPTConfig(vocab_size=300, context_length=16, n_layer=3, n_head=2, n_embd=16))
    with pytest.raises(CheckpointError, match="n_layer: checkpoint 2, model 3"):
        restore_training_state(folder, other, make_optimizer(other, TrainConfig()))


def test_a_model_without_a_config_cannot_be_saved(tmp_path):
    with pytest.raises(CheckpointError, match="needs a model with a config"):
        save_checkpoint(tmp_path, torch.nn.Linear(2, 2))
