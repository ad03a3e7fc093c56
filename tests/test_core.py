"""The minilm core: device choice, seeding, presets, threads, the artifact cache, the report."""
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

import minilm
from minilm.cache import artifact_key, cached_artifact
from minilm.presets import PresetError, choose, current_preset
from minilm.runtime import DeviceError, choose_device, confirm_device, seed_everything, set_threads


def test_device_defaults_to_best_available(monkeypatch):
    monkeypatch.delenv("MINILM_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert choose_device().type == expected


def test_device_override_and_unknown(monkeypatch):
    monkeypatch.setenv("MINILM_DEVICE", "cpu")
    assert choose_device() == torch.device("cpu")
    monkeypatch.setenv("MINILM_DEVICE", "tpu")
    with pytest.raises(DeviceError, match="not a device the course knows"):
        choose_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_cuda_stops_with_one_clear_line():
    env = dict(os.environ, MINILM_DEVICE="cuda")
    result = subprocess.run([sys.executable, "-m", "minilm", "env"], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no cuda device" in lines[0] and "MINILM_DEVICE" in lines[0]
    assert "Traceback" not in result.stderr


def test_seed_everything_repeats_all_three_generators():
    draws = []
    for _ in range(2):
        seed_everything(123)
        draws.append((random.random(), np.random.rand(), torch.rand(1).item()))
    assert draws[0] == draws[1]
    seed_everything(124)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) != draws[0]


def test_preset_default_and_errors(monkeypatch):
    monkeypatch.delenv("MINILM_PRESET", raising=False)
    assert current_preset() == ("gpu" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("MINILM_PRESET", "Smoke")
    assert current_preset() == "smoke"
    assert choose({"smoke": 1, "cpu": 2, "gpu": 3}) == 1
    monkeypatch.setenv("MINILM_PRESET", "huge")
    with pytest.raises(PresetError, match="not a preset"):
        current_preset()
    with pytest.raises(PresetError, match="no row for gpu"):
        choose({"smoke": 1, "cpu": 2}, preset="cpu")


def test_threads_from_environment(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("MINILM_THREADS", "1")
        assert set_threads() == 1 == torch.get_num_threads()
        monkeypatch.setenv("MINILM_THREADS", "zero")
        with pytest.raises(ValueError, match="MINILM_THREADS"):
            set_threads()
    finally:
        torch.set_num_threads(before)


def test_cache_builds_once_and_rebuilds_when_inputs_change(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILM_CACHE", str(tmp_path))
    builds = []

    def build(folder):
        builds.append(folder)
        (folder / "value.txt").write_text("built")

    first = cached_artifact("thing", {"size": 1}, build)
    again = cached_artifact("thing", {"size": 1}, build)
    other = cached_artifact("thing", {"size": 2}, build)
    assert first == again != other
    assert len(builds) == 2
    assert (first / "value.txt").read_text() == "built"
    assert first.parent == tmp_path


def test_cache_key_depends_on_builder_code():
    def one(folder):
        return 1

    def two(folder):
        return 2

    assert artifact_key("x", {"a": 1}) != artifact_key("x", {"a": 2})
    assert artifact_key("x", {"a": 1}) == artifact_key("x", {"a": 1})
    # a builder from another module (other source code) gives another key
    assert artifact_key("x", {"a": 1}, one) != artifact_key("x", {"a": 1}, os.path.join)


def test_cache_key_depends_on_the_extra_code_files(tmp_path):
    source = tmp_path / "step.py"
    source.write_text("def step(): return 1\n")
    before = artifact_key("x", {"a": 1}, code=[source])
    assert artifact_key("x", {"a": 1}, code=[source]) == before != artifact_key("x", {"a": 1})
    source.write_text("def step(): return 2\n")
    assert artifact_key("x", {"a": 1}, code=[source]) != before


def test_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILM_CACHE", str(tmp_path))

    def broken(folder):
        (folder / "half.txt").write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cached_artifact("thing", {"size": 3}, broken)
    assert list(tmp_path.iterdir()) == []


def test_confirm_device_under_gpu_check(monkeypatch):
    model = torch.nn.Linear(2, 2)
    monkeypatch.delenv("MINILM_REQUIRE_CUDA", raising=False)
    assert "cpu" in confirm_device(model)
    assert confirm_device(torch.zeros(2)) == "the tensor is on cpu"
    monkeypatch.setenv("MINILM_REQUIRE_CUDA", "1")
    with pytest.raises(DeviceError, match="GPU check"):
        confirm_device(model)
    with pytest.raises(DeviceError, match="the tensor is on cpu"):
        confirm_device(torch.zeros(2))


def test_environment_report_names_what_matters(monkeypatch):
    monkeypatch.setenv("MINILM_PRESET", "smoke")
    report = minilm.environment_report()
    for word in ("python", "torch", "device", "preset   smoke", "threads", "cache", "einops"):
        assert word in report


def test_a_damaged_cache_entry_is_rebuilt_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINILM_CACHE", str(tmp_path))
    builds = []

    def build(folder):
        builds.append(folder)
        (folder / "tokens.bin").write_bytes(bytes(range(256)) * 40)
        (folder / "meta.json").write_text('{"tokens": 10240}')

    folder = cached_artifact("thing", {"n": 1}, build)
    damages = {
        "truncated to an even length": lambda: (folder / "tokens.bin").write_bytes(bytes(range(256)) * 20),
        "one byte changed": lambda: (folder / "meta.json").write_text('{"tokens": 10241}'),
        "a file removed": lambda: (folder / "tokens.bin").unlink(),
        "an older record": lambda: (folder / "artifact.json").write_text('{"name": "thing"}'),
    }
    expected = ["has 5,120 bytes, not the 10,240", "does not match the checksum", "tokens.bin is missing",
                "holds no record of its files"]
    for (what, damage), words in zip(damages.items(), expected):
        damage()
        assert cached_artifact("thing", {"n": 1}, build) == folder, what
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "is damaged" in error and words in error and "rebuilding" in error, what
        assert (folder / "tokens.bin").read_bytes() == bytes(range(256)) * 40  # whole again
    assert len(builds) == 1 + len(damages)
    cached_artifact("thing", {"n": 1}, build)  # an intact entry is used as it is, silently
    assert len(builds) == 1 + len(damages) and capsys.readouterr().err == ""


def test_a_truncated_token_stream_is_rebuilt_not_trained_on(tmp_path, monkeypatch, capsys):
    from datasets import Dataset, DatasetDict

    from minilm.data import StoryWorld
    from minilm.tokens import prepare_tokens

    monkeypatch.setenv("MINILM_CACHE", str(tmp_path))
    texts = [story.text for story in StoryWorld().stories(30, seed=1)]
    corpus = DatasetDict({"train": Dataset.from_dict({"text": texts[:25]}),
                          "validation": Dataset.from_dict({"text": texts[25:]})})
    tokens = prepare_tokens(corpus, 300)
    length = len(tokens.streams["train"])
    path = tokens.streams["train"].path
    path.write_bytes(path.read_bytes()[: 2 * (length // 3)])  # two bytes a token: still an even length
    again = prepare_tokens(corpus, 300)
    assert len(again.streams["train"]) == length
    assert "is damaged (train.bin has" in capsys.readouterr().err
