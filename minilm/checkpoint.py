"""Checkpoints: everything needed to use a trained model, or to carry on training it exactly.

A checkpoint is a folder whose `checkpoint.json` names the step folder holding the files:

    checkpoint.json       what it is: the model's config, the training config, the step, the data
                          position, the metrics history, what the run was trained on, Python's and
                          NumPy's RNG settings, and a SHA-256 checksum of every file in the step folder
    step-00000200-ab12cd34/
      model.safetensors     the weights
      training.safetensors  AdamW's two moment estimates for every parameter, and the random
                            generators' states (torch, CUDA, NumPy)
      tokenizer.json        the tokenizer, when one was given, so `generate` can read and write text

Saving is atomic as a whole: the new step folder is written under a temporary name, renamed, and
only then does a new checkpoint.json replace the old one (`os.replace`, one atomic step); the old
step folder is deleted after that. A process killed at any moment therefore leaves the previous
checkpoint loadable, or the new one complete, never a mix; leftovers of a cut-short save are
removed by the next save.

Everything is tensors (safetensors) or JSON, so loading a checkpoint runs no code: a pickle
(`torch.save`) can run anything at all when it is loaded.

    save_checkpoint("runs/x", model, optimizer=optimizer, train_config=asdict(config), step=200)
    checkpoint = load_checkpoint("runs/x", device="cpu")   # .model (a GPT in eval mode), .tokenizer, ...
    state = restore_training_state("runs/x", model, optimizer)   # resuming: weights, moments, RNGs

Any module can be saved, a learner's own model too: a minilm GPT is rebuilt from its saved config,
any other module is loaded into one you build (`load_checkpoint(folder, model=MyModel())`), after
its parameter names and shapes are checked. A missing, truncated or corrupted file, or a checkpoint
made for another model, raises a `CheckpointError` that says which and what to do.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError

from minilm.cache import file_sha256
from minilm.model import GPT, GPTConfig
from minilm.tokenizer import load_tokenizer

FORMAT = "minilm-checkpoint/2"
READABLE_FORMATS = ("minilm-checkpoint/1", FORMAT)  # format 1 kept its files beside checkpoint.json
MANIFEST = "checkpoint.json"
WEIGHTS = "model.safetensors"
TRAINING = "training.safetensors"
TOKENIZER = "tokenizer.json"
STEP_PREFIX = "step-"  # step folders: step-00000200-ab12cd34
PARTIAL = ".partial"  # the suffix of whatever a save has not finished writing


class CheckpointError(ValueError):
    """A checkpoint is missing, damaged, or does not fit the model or run it is loaded into."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model ready to use, and what was saved with it."""

    model: torch.nn.Module  # a GPT built from the saved config (or the module given), in eval mode
    tokenizer: object | None  # the BPETokenizer saved with it, if any
    model_config: dict | None  # GPTConfig.to_dict() of the model (None for a module without one)
    train_config: dict  # the TrainConfig it was trained with, as a dict ({} if none)
    step: int  # optimizer steps taken
    history: list = field(default_factory=list)  # the metrics history, one dict per step
    folder: Path | None = None
    run: dict = field(default_factory=dict)  # what the run was trained on (data, tokenizer), if saved


@dataclass
class TrainingState:
    """What resuming needs besides the weights and the optimizer (restored in place)."""

    step: int  # optimizer steps already taken
    data_position: int  # index of the next training batch
    history: list  # the metrics history so far
    train_config: dict  # the TrainConfig of the run, as a dict
    run: dict  # what the run was trained on, as saved (empty for older checkpoints)


def has_checkpoint(folder: str | Path) -> bool:
    return (Path(folder) / MANIFEST).exists()


def model_config_dict(model: torch.nn.Module) -> dict | None:
    """The model's config as plain JSON data (GPTConfig.to_dict()), or None if it has none."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        return None
    return json.loads(json.dumps(config.to_dict()))  # tuples become lists, as they will after loading


def parameter_shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    """Every tensor of the model's state (parameters and buffers) by name, with its shape."""
    return {name: list(tensor.shape) for name, tensor in model.state_dict().items()}


def tokenizer_digest(tokenizer) -> str:
    """The SHA-256 of the tokenizer as it would be saved: two tokenizers match when their files do."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / TOKENIZER
        tokenizer.save(path)
        return file_sha256(path)


def check_writable(folder: str | Path) -> Path:
    """Make sure checkpoints can be written into `folder` (created if missing) before any work is done."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder} is a file, not a folder; give --out (out_dir) a folder to save "
                              f"the checkpoint in.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{uuid.uuid4().hex[:8]}{PARTIAL}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise CheckpointError(f"cannot write a checkpoint into {folder} ({error.strerror or error}); choose a "
                              f"folder you may write to.") from None
    return folder


def _rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = state
    key = np.random.get_state()[1]  # MT19937's 624 words; the rest goes to checkpoint.json
    tensors["rng.numpy.key"] = torch.from_numpy(key.astype(np.uint32).view(np.int32).copy())
    return tensors


def _rng_json() -> dict:
    version, state, gauss_next = random.getstate()
    _, _, position, has_gauss, gauss = np.random.get_state()
    return {"python": [version, list(state), gauss_next],
            "numpy": {"position": int(position), "has_gauss": int(has_gauss), "gauss": float(gauss)}}


def _restore_rng(tensors: dict[str, torch.Tensor], saved: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda_names = sorted((name for name in tensors if name.startswith("rng.cuda.")),
                        key=lambda name: int(name.rsplit(".", 1)[1]))
    cuda_states = [tensors[name] for name in cuda_names]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[:torch.cuda.device_count()])
    version, state, gauss_next = saved["python"]
    random.setstate((version, tuple(state), gauss_next))
    key = tensors["rng.numpy.key"].numpy().view(np.uint32)
    numpy = saved["numpy"]
    np.random.set_state(("MT19937", key, numpy["position"], numpy["has_gauss"], numpy["gauss"]))


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """AdamW's per-parameter state (step, exp_avg, exp_avg_sq) as flat, named tensors."""
    return {f"optimizer.{index}.{name}": value.detach().contiguous().cpu()
            for index, state in optimizer.state_dict()["state"].items() for name, value in state.items()}


def _group_sizes(optimizer: torch.optim.Optimizer) -> list[int]:
    return [len(group["params"]) for group in optimizer.param_groups]


def _files_folder(folder: Path, manifest: dict) -> Path:
    """The folder that holds the checkpoint's files (format 1 kept them beside the manifest)."""
    return folder / manifest.get("files_in", ".")


def remove_leftovers(folder: Path, keep: str | None) -> None:
    """Delete step folders other than `keep` and anything a cut-short save left (…partial)."""
    for path in folder.iterdir():
        stale_step = path.name.startswith(STEP_PREFIX) and path.name != keep
        if stale_step or path.name.endswith(PARTIAL):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def save_checkpoint(folder: str | Path, model: torch.nn.Module, *, optimizer=None, train_config=None,
                    step: int = 0, data_position: int = 0, history=(), tokenizer=None,
                    run: dict | None = None) -> Path:
    """Save model (and optionally optimizer, run state, tokenizer) into `folder`; return the folder.

    `run` records what the run was trained on (its data, its tokenizer); resuming refuses a run that
    differs. The files go into a new step folder, written under a temporary name and renamed when
    complete; then checkpoint.json is replaced in one atomic step; then the old step folder goes.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)  # train() has checked it is writable, before its first step
    current = read_manifest(folder, verify=False).get("files_in") if has_checkpoint(folder) else None
    remove_leftovers(folder, keep=current)  # what an earlier, interrupted save left behind
    name = f"{STEP_PREFIX}{step:08d}-{uuid.uuid4().hex[:8]}"
    staging = folder / f".{name}{PARTIAL}"
    staging.mkdir()
    safetensors.torch.save_model(model, str(staging / WEIGHTS))
    tensors = _rng_tensors() | (_optimizer_tensors(optimizer) if optimizer is not None else {})
    safetensors.torch.save_file(tensors, str(staging / TRAINING))
    if tokenizer is not None:
        tokenizer.save(staging / TOKENIZER)
    checksums = {path.name: file_sha256(path) for path in sorted(staging.iterdir())}
    os.replace(staging, folder / name)  # the step folder is complete, under its final name
    manifest = {
        "format": FORMAT,
        "files_in": name,
        "model_config": model_config_dict(model),
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "parameters": parameter_shapes(model),
        "train_config": dict(train_config or {}),
        "run": dict(run or {}),
        "step": step,
        "data_position": data_position,
        "learning_rate": optimizer.param_groups[0]["lr"] if optimizer is not None else None,
        "optimizer_groups": _group_sizes(optimizer) if optimizer is not None else None,
        "history": list(history),
        "rng": _rng_json(),
        "sha256": checksums,
    }
    temporary = folder / f".{MANIFEST}{PARTIAL}"
    temporary.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    os.replace(temporary, folder / MANIFEST)  # the one atomic step: from here on the new checkpoint counts
    remove_leftovers(folder, keep=name)
    return folder


def read_manifest(folder: str | Path, verify: bool = True) -> dict:
    """checkpoint.json, after checking (unless verify=False) that every file it names is there and unchanged."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder} does not exist or is not a folder; give the folder a training "
                              f"run saved its checkpoint in (python -m minilm train --out FOLDER).")
    path = folder / MANIFEST
    if not path.exists():
        raise CheckpointError(f"{folder} holds no {MANIFEST}: it is not a checkpoint, or saving it was "
                              f"interrupted; train again into it, or pick another folder.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}): the checkpoint is truncated or "
                              f"corrupted; use another checkpoint or train again.") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in READABLE_FORMATS:
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint (format "
                              f"{manifest.get('format') if isinstance(manifest, dict) else None!r}).")
    files = _files_folder(folder, manifest)
    for name, digest in manifest["sha256"].items() if verify else ():
        file = files / name
        if not file.exists():
            raise CheckpointError(f"{file} is missing from the checkpoint; copy the whole folder, or train again.")
        if file_sha256(file) != digest:
            raise CheckpointError(f"{file} ({file.stat().st_size} bytes) does not match the checksum saved "
                                  f"with it: the file is truncated or corrupted; use another checkpoint "
                                  f"or train again.")
    return manifest


def check_model_matches(manifest: dict, model: torch.nn.Module) -> None:
    """Refuse a model that is not the one saved: another config, or other parameter names or shapes."""
    saved, current = manifest["model_config"], model_config_dict(model)
    if saved is not None and current is not None:
        if saved != current:
            differences = [f"{key}: checkpoint {saved.get(key)!r}, model {current.get(key)!r}"
                           for key in sorted(set(saved) | set(current)) if saved.get(key) != current.get(key)]
            raise CheckpointError("this checkpoint was made for another model config (" + "; ".join(differences) +
                                  "); build the model from the checkpoint's config, as load_checkpoint does.")
        return
    saved_shapes, shapes = manifest.get("parameters"), parameter_shapes(model)
    if saved_shapes is not None and saved_shapes != shapes:
        differences = [f"{name}: checkpoint {saved_shapes.get(name)}, model {shapes.get(name)}"
                       for name in sorted(set(saved_shapes) | set(shapes)) if saved_shapes.get(name) != shapes.get(name)]
        raise CheckpointError(f"this checkpoint holds a {manifest.get('model_class')} with other parameters ("
                              + "; ".join(differences[:5]) + "); load it into the same kind of model.")


def _load_weights(files: Path, model: torch.nn.Module) -> None:
    try:
        safetensors.torch.load_model(model, files / WEIGHTS, strict=True,
                                     device=str(next(model.parameters()).device))
    except (SafetensorError, RuntimeError) as error:
        raise CheckpointError(f"{files / WEIGHTS} could not be loaded into the model ({error}).") from None


def _load_training_tensors(files: Path) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load_file(files / TRAINING)
    except SafetensorError as error:
        raise CheckpointError(f"{files / TRAINING} could not be read ({error}): it is corrupted.") from None


def restore_training_state(folder: str | Path, model: torch.nn.Module,
                           optimizer: torch.optim.Optimizer) -> TrainingState:
    """Load weights, optimizer moments and RNG states in place; return the step, data position, history."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    check_model_matches(manifest, model)
    if manifest["optimizer_groups"] != _group_sizes(optimizer):
        raise CheckpointError(f"the checkpoint's optimizer has parameter groups of sizes "
                              f"{manifest['optimizer_groups']}, this one {_group_sizes(optimizer)}; "
                              f"resume with the same model and optimizer settings.")
    files = _files_folder(folder, manifest)
    _load_weights(files, model)
    tensors = _load_training_tensors(files)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    _restore_rng(tensors, manifest["rng"])
    return TrainingState(step=manifest["step"], data_position=manifest["data_position"],
                         history=manifest["history"], train_config=manifest["train_config"],
                         run=manifest.get("run", {}))


def load_checkpoint(folder: str | Path, device: torch.device | str | None = None,
                    model: torch.nn.Module | None = None) -> Checkpoint:
    """The model saved in `folder` on `device` (default: CPU), in eval mode.

    A minilm GPT is rebuilt from its saved config; any other module must be passed as `model`
    (built as it was when saved), and the weights are loaded into it.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    if model is None:
        if manifest["model_config"] is None:
            raise CheckpointError(f"{folder} holds a {manifest.get('model_class')}, not a minilm GPT, so it "
                                  f"cannot be rebuilt from a config; build the model and pass it: "
                                  f"load_checkpoint(folder, model=YourModel(...)).")
        model = GPT(GPTConfig.from_dict(manifest["model_config"]))
    check_model_matches(manifest, model)
    model.to(device or "cpu")
    files = _files_folder(folder, manifest)
    _load_weights(files, model)
    model.eval()
    tokenizer = load_tokenizer(files / TOKENIZER) if TOKENIZER in manifest["sha256"] else None
    return Checkpoint(model=model, tokenizer=tokenizer, model_config=manifest["model_config"],
                      train_config=manifest["train_config"], step=manifest["step"],
                      history=manifest["history"], folder=folder, run=manifest.get("run", {}))
