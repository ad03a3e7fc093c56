"""`python -m minilm train` and `generate`, run as a learner would: in a subprocess, at the smoke preset."""
import os
import subprocess
import sys
from pathlib import Path

from minilm.__main__ import main
from minilm.checkpoint import load_checkpoint

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
