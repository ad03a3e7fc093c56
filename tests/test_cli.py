"""`python -m minilm train` and `generate`, run as a learner would: in a subprocess, at the smoke preset.
Bad options are refused with one line before any work; MINILM_THREADS reaches every command; the
command line and the server write the same greedy text; a run is never resumed on other data."""
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import torch

from minilm.__main__ import main
from minilm.checkpoint import load_checkpoint
from minilm.apps.serve import running_server

ROOT = Path(__file__).resolve().parents[1]


def minilm(*args, env=None):
    return subprocess.run([sys.executable, "-m", "minilm", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "MINILM_PRESET": "smoke", "TQDM_DISABLE": "1", **(env or {})},
                          timeout=600)


def test_train_then_generate(tmp_path):
    out = tmp_path / "run"
    trained = minilm("train", "--data", "stories", "--family", "llama", "--size", "nano", "--steps", "4",
                     "--out", str(out))
    assert trained.returncode == 0, trained.stderr
    assert "step 4: train loss" in trained.stdout and load_checkpoint(out).step == 4
    written = minilm("generate", "--checkpoint", str(out), "--prompt", "Once, a", "--max-new-tokens", "12",
                     "--samples", "2", "--top-k", "20")
    assert written.returncode == 0, written.stderr
    texts = written.stdout.split("---\n")[:2]
    assert all(text.startswith("Once, a") for text in texts), written.stdout


def test_help_speaks_to_a_newcomer():
    result = minilm("train", "--help")
    assert result.returncode == 0
    for option in ("--preset", "--data", "--family", "--size", "--steps", "--out", "--resume", "examples:"):
        assert option in result.stdout


def test_mistakes_get_one_line_that_says_what_to_do(tmp_path, capsys):
    assert main(["generate", "--checkpoint", str(tmp_path / "nowhere")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("minilm generate:") and "does not exist" in error and error.count("\n") == 1
    out = str(tmp_path / "run")
    assert main(["train", "--size", "nano", "--steps", "2", "--out", out]) == 0
    assert main(["train", "--size", "nano", "--steps", "2", "--out", out]) == 2
    assert "already holds a checkpoint; pass resume=True (on the command line: --resume)" in capsys.readouterr().err
    assert main(["train", "--size", "nano", "--steps", "3", "--out", out, "--resume"]) == 2
    assert "steps: 2 -> 3" in capsys.readouterr().err


def test_a_bad_out_folder_is_refused_before_any_work(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    result = minilm("train", "--size", "nano", "--steps", "2", "--out", str(a_file))
    assert result.returncode == 2 and result.stdout == ""  # nothing was built or trained
    assert result.stderr.startswith("minilm train:") and "is a file, not a folder" in result.stderr
    assert result.stderr.count("\n") == 1
    if os.geteuid() == 0:  # root may write anywhere a permission allows: use a place no one may write
        unwritable = Path("/proc/minilm-run")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        unwritable = locked / "run"
    result = minilm("train", "--size", "nano", "--steps", "2", "--out", str(unwritable))
    assert result.returncode == 2 and result.stdout == "" and "cannot write a checkpoint into" in result.stderr


@pytest.mark.parametrize("option", ["--steps", "--lr", "--batch-size", "--accumulation"])
def test_zero_is_refused_not_replaced_by_the_preset(option, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", option, "0", "--out", str(tmp_path / "run")])
    assert stop.value.code == 2 and f"argument {option}: 0 is out of range" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("option,value", [("--temperature", "nan"), ("--temperature", "inf"), ("--samples", "0"),
                                          ("--seed", "1" * 23), ("--seed", "-1"), ("--top-p", "1.5"),
                                          ("--top-k", "0"), ("--max-new-tokens", "²")])
def test_bad_generation_settings_are_one_clear_line(option, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["generate", "--checkpoint", str(tmp_path), option, value])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert stop.value.code == 2 and error.startswith(f"python -m minilm generate: error: argument {option}:")
    assert "give" in error  # and says what to give instead


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "stories"
    trained = minilm("train", "--size", "nano", "--steps", "3", "--out", str(out), env={"MINILM_THREADS": "1"})
    assert trained.returncode == 0, trained.stderr
    assert "(1 CPU thread)" in trained.stdout  # MINILM_THREADS reaches `train`
    return out


def test_minilm_threads_reaches_every_command(checkpoint, monkeypatch, capsys):
    before = torch.get_num_threads()
    monkeypatch.setenv("MINILM_THREADS", "1")
    try:
        torch.set_num_threads(2)
        assert main(["generate", "--checkpoint", str(checkpoint), "--max-new-tokens", "2"]) == 0
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("MINILM_THREADS", "many")
        assert main(["generate", "--checkpoint", str(checkpoint)]) == 2
        assert "MINILM_THREADS='many' must be a whole number" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


def test_generate_and_the_server_write_the_same_greedy_text(checkpoint, capsys):
    prompt = "Once, a brave fox"
    assert main(["generate", "--checkpoint", str(checkpoint), "--prompt", prompt, "--temperature", "0",
                 "--max-new-tokens", "20"]) == 0
    from_cli = capsys.readouterr().out.rstrip("\n")
    loaded = load_checkpoint(checkpoint)
    with running_server(loaded.model, loaded.tokenizer, max_new_tokens=20) as url:
        request = urllib.request.Request(url + "/generate", data=json.dumps(
            {"prompt": prompt, "max_new_tokens": 20, "temperature": 0}).encode())
        with urllib.request.urlopen(request, timeout=30) as response:
            from_server = json.loads(response.read())["text"]
    assert from_cli == prompt + from_server


def test_resuming_on_other_data_is_refused_and_the_checkpoint_kept(checkpoint):
    before = {path: path.read_bytes() for path in checkpoint.rglob("*") if path.is_file()}
    result = minilm("train", "--size", "nano", "--steps", "3", "--data", "prose", "--out", str(checkpoint), "--resume")
    assert result.returncode == 2 and "was trained with --data stories; resume it with --data stories" in result.stderr
    assert {path: path.read_bytes() for path in checkpoint.rglob("*") if path.is_file()} == before
