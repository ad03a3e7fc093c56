"""Where and how the course's code runs: the device, the random seed, the CPU threads.

Every notebook starts with the same three decisions, so they live in one place:

    from minilm.runtime import choose_device, seed_everything, set_threads
    device = choose_device()      # cuda, then mps, then cpu; MINILM_DEVICE overrides
    seed_everything(0)            # python, numpy and torch in one call
    set_threads()                 # MINILM_THREADS, or torch's default

A device that was asked for but is not there stops with one clear line (`DeviceError`), not a
trace from inside torch. Under the GPU check (`./course check --gpu`, which sets
MINILM_REQUIRE_CUDA=1) `confirm_device` fails unless a model really sits on CUDA.
"""
from __future__ import annotations

import os
import random
import time
from typing import Callable

import numpy as np
import torch

KNOWN_DEVICES = ("cuda", "mps", "cpu")


class DeviceError(RuntimeError):
    """The device that was asked for cannot be used on this machine."""


def _available(kind: str) -> bool:
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return kind == "cpu"


def choose_device(requested: str | None = None) -> torch.device:
    """The device to run on: `requested`, else $MINILM_DEVICE, else cuda, then mps, then cpu.

    `requested` may carry an index ("cuda:1"). Asking for a device that is not present raises
    `DeviceError` with a message that says what to do.
    """
    requested = requested or os.environ.get("MINILM_DEVICE") or None
    if requested is None:
        for kind in KNOWN_DEVICES:
            if _available(kind):
                return torch.device(kind)
    kind = requested.split(":")[0].strip().lower()
    if kind not in KNOWN_DEVICES:
        raise DeviceError(
            f"MINILM_DEVICE={requested!r} is not a device the course knows; use one of "
            f"{', '.join(KNOWN_DEVICES)} (or unset it to choose automatically)."
        )
    if not _available(kind):
        raise DeviceError(
            f"MINILM_DEVICE={requested!r} was asked for, but this machine has no {kind} device "
            f"that torch {torch.__version__} can use; unset MINILM_DEVICE or set it to cpu."
        )
    return torch.device(requested.strip().lower())


def seed_everything(seed: int = 0) -> None:
    """Seed Python's `random`, NumPy's global generator and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def set_threads(count: int | None = None) -> int:
    """Set torch's CPU thread count: `count`, else $MINILM_THREADS, else leave torch's default.

    On a 2-core machine two threads beat one for mid-size models only while nothing else keeps a
    core busy; `benchmarks/threads.py` measures it. Returns the count in force.
    """
    value = count if count is not None else os.environ.get("MINILM_THREADS")
    if value not in (None, ""):
        try:
            threads = int(value)
        except ValueError:
            threads = 0
        if threads < 1:
            raise ValueError(f"MINILM_THREADS={value!r} must be a whole number of at least 1.")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def wall_seconds(run: Callable[[], object], device: torch.device | str) -> float:
    """Wall time of one call of `run`, waiting for the GPU to finish its queued work before and after
    (CUDA kernels run asynchronously: without the waits a timer measures only the launch)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def cuda_required() -> bool:
    """True under the GPU check, which must fail unless the work really runs on CUDA."""
    return os.environ.get("MINILM_REQUIRE_CUDA", "") not in ("", "0")


def confirm_device(model: torch.nn.Module | torch.Tensor) -> str:
    """Say where a model (or tensor) lives; under the GPU check, fail unless it is on CUDA."""
    if isinstance(model, torch.Tensor):
        device, what = model.device, "the tensor is"
    else:
        device, what = next(model.parameters()).device, "model parameters are"
    if cuda_required() and device.type != "cuda":
        raise DeviceError(f"the GPU check is on (MINILM_REQUIRE_CUDA=1) but {what} on {device}.")
    return f"{what} on {device}"
