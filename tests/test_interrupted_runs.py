"""An interrupted run loses nothing: real `python -m minilm train` processes are killed (SIGKILL, at
random moments and in the middle of writing a checkpoint) or stopped with Ctrl+C (SIGINT), then
resumed with --resume until they finish; every time the final weights must be bit-identical to those
of a run that was never interrupted."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from minilm.checkpoint import PARTIAL, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
STEPS = 30
# A 4-layer model (about 1M parameters) checkpointed after every step: saving takes about as long as a
# step, so kills land in the middle of a save as often as between saves.
TRAIN = ["-m", "minilm", "train", "--preset", "smoke", "--size", "small", "--steps", str(STEPS),
         "--checkpoint-every", "1"]
ENV = {**os.environ, "MINILM_PRESET": "smoke", "TQDM_DISABLE": "1", "MINILM_THREADS": "1"}


def start(out: Path, resume: bool) -> subprocess.Popen:
    command = [sys.executable, *TRAIN, "--out", str(out)] + (["--resume"] if resume else [])
    return subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(out).model.state_dict()


def saving_now(out: Path) -> bool:
    """A save is being written: its step folder is still under its temporary name."""
    return out.exists() and any(path.name.startswith(".step-") and path.name.endswith(PARTIAL)
                                for path in out.iterdir())


def wait_for_checkpoint(process: subprocess.Popen, out: Path) -> bool:
    """Wait until the run has saved a first checkpoint (False if it finished before)."""
    while not (out / "checkpoint.json").exists():
        if process.poll() is not None:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The weights of a run that nobody interrupted."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    code, _, err = finish(start(out, resume=False))
    assert code == 0, err
    return weights(out)


def assert_same_weights(out: Path, reference: dict[str, torch.Tensor]) -> None:
    assert load_checkpoint(out).step == STEPS
    ours = weights(out)
    assert ours.keys() == reference.keys()
    for name in reference:
        assert torch.equal(ours[name], reference[name]), name


def test_sigkill_at_many_moments_then_resume_is_exact(tmp_path, reference):
    out = tmp_path / "run"
    chance = random.Random(0)
    kills = mid_save = rounds = 0
    resume = False
    while True:
        rounds += 1
        assert rounds < 40, "the run never finished"
        process = start(out, resume)
        if kills < 6 and wait_for_checkpoint(process, out):
            if kills % 2:  # every other kill waits for a save to begin, and strikes while it writes
                deadline = time.monotonic() + 20
                while not saving_now(out) and process.poll() is None and time.monotonic() < deadline:
                    pass
            else:  # the others strike at a random moment
                time.sleep(chance.uniform(0, 0.4))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=60)
                kills += 1
                mid_save += saving_now(out)  # a dead process cannot tidy up: what is left was mid-save
                resume = True
                load_checkpoint(out)  # whatever the moment, a whole checkpoint is there
                continue
        code, _, err = finish(process)
        assert code == 0, err
        break
    assert kills >= 4 and mid_save >= 1, (kills, mid_save)
    assert_same_weights(out, reference)
    assert not saving_now(out)  # the leftovers of the cut-short saves are gone


def test_ctrl_c_saves_and_stops_with_one_line_then_resume_is_exact(tmp_path, reference):
    out = tmp_path / "run"
    process = start(out, resume=False)
    assert wait_for_checkpoint(process, out)
    process.send_signal(signal.SIGINT)
    code, stdout, stderr = finish(process)
    assert code == 128 + signal.SIGINT, stderr
    stopped = [line for line in stdout.splitlines() if "interrupted" in line]
    assert len(stopped) == 1 and "Ctrl+C" in stopped[0] and "--resume" in stopped[0], stdout
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    step = int(stopped[0].split("after step ")[1].split()[0])
    assert 0 < step < STEPS and load_checkpoint(out).step == step  # the step it stopped after was saved
    code, _, stderr = finish(start(out, resume=True))
    assert code == 0, stderr
    assert_same_weights(out, reference)


def test_sigterm_saves_too(tmp_path):
    out = tmp_path / "run"
    process = start(out, resume=False)
    assert wait_for_checkpoint(process, out)
    process.send_signal(signal.SIGTERM)
    code, stdout, stderr = finish(process)
    assert code == 128 + signal.SIGTERM and "interrupted (SIGTERM)" in stdout, (stdout, stderr)
    assert 0 < load_checkpoint(out).step < STEPS
