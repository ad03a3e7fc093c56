"""Checkpoints: a round trip gives the same model, optimizer and random state; nothing is pickled;
a missing, truncated or corrupted file, or a checkpoint for another config, fails clearly; a save cut
short at any point leaves the previous checkpoint loadable; any module can be saved."""
import json
import os
import random

import numpy as np
import pytest
import torch
from safetensors import safe_open

from minilm import checkpoint as checkpoint_module
from minilm.checkpoint import (MANIFEST, TOKENIZER, TRAINING, WEIGHTS, CheckpointError, load_checkpoint,
                               read_manifest, restore_training_state, save_checkpoint)
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


def files_of(folder):
    """The step folder that checkpoint.json names."""
    return folder / json.loads((folder / MANIFEST).read_text())["files_in"]


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
    files = files_of(folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted([MANIFEST, files.name])
    assert sorted(p.name for p in files.iterdir()) == sorted([WEIGHTS, TRAINING, TOKENIZER])
    for name in (WEIGHTS, TRAINING):
        with safe_open(files / name, framework="pt") as handle:  # safetensors: tensors and a JSON header
            assert list(handle.keys())
    json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    json.loads((files / TOKENIZER).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", [WEIGHTS, TRAINING, TOKENIZER])
def test_truncated_file_is_reported(saved, name):
    files = files_of(saved[0])
    data = (files / name).read_bytes()
    (files / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{name}.*truncated or corrupted"):
        load_checkpoint(saved[0])


def test_flipped_byte_is_reported(saved):
    folder = saved[0]
    data = bytearray((files_of(folder) / WEIGHTS).read_bytes())
    data[-5] ^= 0xFF  # inside the last tensor: safetensors itself could not notice
    (files_of(folder) / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the checksum"):
        load_checkpoint(folder)


def test_damaged_or_missing_pieces_are_reported(saved, tmp_path_factory):
    folder = saved[0]
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(folder / "nowhere")
    with pytest.raises(CheckpointError, match="holds no checkpoint.json"):
        load_checkpoint(tmp_path_factory.mktemp("empty"))
    (files_of(folder) / TRAINING).unlink()
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


class LearnersModel(torch.nn.Module):
    """A model written by hand, as in the capstone: no minilm config at all."""

    def __init__(self, width=3):
        super().__init__()
        self.embed = torch.nn.Embedding(10, width)
        self.out = torch.nn.Linear(width, 10)
        self.register_buffer("scale", torch.tensor(2.0))

    def forward(self, x):
        return self.out(self.embed(x)) * self.scale


def test_a_learners_own_model_is_checkpointed_and_resumed(tmp_path):
    torch.manual_seed(0)
    model = LearnersModel()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.tensor([[1, 2]])).sum().backward()
    optimizer.step()
    save_checkpoint(tmp_path, model, optimizer=optimizer, step=1, data_position=1)
    with pytest.raises(CheckpointError, match="not a minilm GPT.*model=YourModel"):
        load_checkpoint(tmp_path)
    loaded = load_checkpoint(tmp_path, model=LearnersModel()).model
    x = torch.tensor([[3, 4, 5]])
    assert torch.equal(loaded(x), model(x))
    fresh = LearnersModel()
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    assert restore_training_state(tmp_path, fresh, fresh_optimizer).step == 1
    for name, value in optimizer.state_dict()["state"][0].items():
        assert torch.equal(fresh_optimizer.state_dict()["state"][0][name], value)
    with pytest.raises(CheckpointError, match="embed.weight: checkpoint \\[10, 3\\], model \\[10, 4\\]"):
        load_checkpoint(tmp_path, model=LearnersModel(width=4))


STAGES = ["weights", "training", "tokenizer", "rename", "manifest"]


@pytest.mark.parametrize("stage", STAGES)
def test_a_save_cut_short_anywhere_leaves_the_previous_checkpoint(saved, stage, monkeypatch):
    """Make one stage of a second save fail (as a kill would stop it there): step 7 must still load, whole."""
    folder, model, optimizer, tokenizer = saved
    before = files_of(folder).name

    class Killed(BaseException):
        pass

    def fail(*args, **kwargs):
        raise Killed

    real_replace = os.replace
    calls = []

    def replace_failing_at(index):
        def replace(src, dst):
            calls.append(dst)
            if len(calls) == index:
                raise Killed
            return real_replace(src, dst)
        return replace

    if stage == "weights":
        monkeypatch.setattr(checkpoint_module.safetensors.torch, "save_model", fail)
    elif stage == "training":
        monkeypatch.setattr(checkpoint_module.safetensors.torch, "save_file", fail)
    elif stage == "tokenizer":
        monkeypatch.setattr(type(tokenizer), "save", fail)
    else:
        monkeypatch.setattr(checkpoint_module.os, "replace", replace_failing_at(1 if stage == "rename" else 2))
    with pytest.raises(Killed):
        save_checkpoint(folder, model, optimizer=optimizer, step=8, tokenizer=tokenizer)
    monkeypatch.undo()
    assert load_checkpoint(folder).step == 7 and files_of(folder).name == before
    save_checkpoint(folder, model, optimizer=optimizer, step=9, tokenizer=tokenizer)  # the next save tidies up
    assert load_checkpoint(folder).step == 9
    assert sorted(p.name for p in folder.iterdir()) == sorted([MANIFEST, files_of(folder).name])


def test_format_1_checkpoints_still_load(saved):
    """An earlier minilm kept the files beside checkpoint.json."""
    folder, model, _, _ = saved
    manifest = read_manifest(folder)
    for path in files_of(folder).iterdir():
        path.rename(folder / path.name)
    files_of(folder).rmdir()
    manifest["format"] = "minilm-checkpoint/1"
    del manifest["files_in"]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    x = torch.randint(0, CONFIG.vocab_size, (2, 16))
    assert torch.equal(load_checkpoint(folder).model(x)[0], model.eval()(x)[0])
