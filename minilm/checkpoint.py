"""Checkpoints: everything needed to use a trained model, or to carry on training it exactly.

A checkpoint is a folder:

    checkpoint.json       what it is: the model's config, the training config, the step, the data
                          position, the metrics history, Python's and NumPy's RNG settings, and a
                          SHA-256 checksum of every other file
    model.safetensors     the weights
    training.safetensors  AdamW's two moment estimates for every parameter, and the random
                          generators' states (torch, CUDA, NumPy)
    tokenizer.json        the tokenizer, when one was given, so `generate` can read and write text

Everything is tensors (safetensors) or JSON, so loading a checkpoint runs no code: a pickle
(`torch.save`) can run anything at all when it is loaded.

    save_checkpoint("runs/x", model, optimizer=optimizer, train_config=asdict(config), step=200)
    checkpoint = load_checkpoint("runs/x", device="cpu")   # .model (a GPT in eval mode), .tokenizer, ...
    state = restore_training_state("runs/x", model, optimizer)   # resuming: weights, moments, RNGs

A missing, truncated or corrupted file, or a checkpoint made for another model config, raises a
`CheckpointError` that says which and what to do.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError

from minilm.model import GPT, GPTConfig
from minilm.tokenizer import load_tokenizer

FORMAT = "minilm-checkpoint/1"
MANIFEST = "checkpoint.json"
WEIGHTS = "model.safetensors"
TRAINING = "training.safetensors"
TOKENIZER = "tokenizer.json"


class CheckpointError(ValueError):
    """A checkpoint is missing, damaged, or does not fit the model or run it is loaded into."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model ready to use, and what was saved with it."""

    model: torch.nn.Module  # a GPT built from the saved config, in eval mode
    tokenizer: object | None  # the BPETokenizer saved with it, if any
    model_config: dict  # GPTConfig.to_dict() of the model
    train_config: dict  # the TrainConfig it was trained with, as a dict ({} if none)
    step: int  # optimizer steps taken
    history: list = field(default_factory=list)  # the metrics history, one dict per step
    folder: Path | None = None


@dataclass
class TrainingState:
    """What resuming needs besides the weights and the optimizer (restored in place)."""

    step: int  # optimizer steps already taken
    data_position: int  # index of the next training batch
    history: list  # the metrics history so far
    train_config: dict  # the TrainConfig of the run, as a dict


def has_checkpoint(folder: str | Path) -> bool:
    return (Path(folder) / MANIFEST).exists()


def model_config_dict(model: torch.nn.Module) -> dict:
    """The model's config as plain JSON data (GPTConfig.to_dict())."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise CheckpointError(f"a checkpoint needs a model with a config (model.config.to_dict(), as a "
                              f"minilm GPT has); {type(model).__name__} has none.")
    return json.loads(json.dumps(config.to_dict()))  # tuples become lists, as they will after loading


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomically(path: Path, write) -> None:
    """Write through a temporary file, then rename: a crash never leaves half a file under `path`."""
    temporary = path.with_name(f".{path.name}.partial")
    write(str(temporary))
    os.replace(temporary, path)


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


def save_checkpoint(folder: str | Path, model: torch.nn.Module, *, optimizer=None, train_config=None,
                    step: int = 0, data_position: int = 0, history=(), tokenizer=None) -> Path:
    """Save model (and optionally optimizer, run state, tokenizer) into `folder`; return the folder.

    Files are written one by one through temporary names and checkpoint.json comes last, with the
    checksums of the others: a checkpoint whose saving was cut short fails to load, loudly.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomically(folder / WEIGHTS, lambda name: safetensors.torch.save_model(model, name))
    tensors = _rng_tensors() | (_optimizer_tensors(optimizer) if optimizer is not None else {})
    _write_atomically(folder / TRAINING, lambda name: safetensors.torch.save_file(tensors, name))
    files = [WEIGHTS, TRAINING]
    if tokenizer is not None:
        _write_atomically(folder / TOKENIZER, tokenizer.save)
        files.append(TOKENIZER)
    manifest = {
        "format": FORMAT,
        "model_config": model_config_dict(model),
        "train_config": dict(train_config or {}),
        "step": step,
        "data_position": data_position,
        "learning_rate": optimizer.param_groups[0]["lr"] if optimizer is not None else None,
        "optimizer_groups": _group_sizes(optimizer) if optimizer is not None else None,
        "history": list(history),
        "rng": _rng_json(),
        "sha256": {name: sha256(folder / name) for name in files},
    }
    text = json.dumps(manifest, indent=1)
    _write_atomically(folder / MANIFEST, lambda name: Path(name).write_text(text, encoding="utf-8"))
    return folder


def read_manifest(folder: str | Path) -> dict:
    """checkpoint.json, after checking that every file it names is there and unchanged."""
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
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint (format "
                              f"{manifest.get('format') if isinstance(manifest, dict) else None!r}).")
    for name, digest in manifest["sha256"].items():
        file = folder / name
        if not file.exists():
            raise CheckpointError(f"{file} is missing from the checkpoint; copy the whole folder, or train again.")
        if sha256(file) != digest:
            raise CheckpointError(f"{file} ({file.stat().st_size} bytes) does not match the checksum saved "
                                  f"with it: the file is truncated or corrupted; use another checkpoint "
                                  f"or train again.")
    return manifest


def check_model_config(manifest: dict, model: torch.nn.Module) -> None:
    saved, current = manifest["model_config"], model_config_dict(model)
    if saved != current:
        differences = [f"{key}: checkpoint {saved.get(key)!r}, model {current.get(key)!r}"
                       for key in sorted(set(saved) | set(current)) if saved.get(key) != current.get(key)]
        raise CheckpointError("this checkpoint was made for another model config (" + "; ".join(differences) +
                              "); build the model from the checkpoint's config, as load_checkpoint does.")


def _load_weights(folder: Path, model: torch.nn.Module) -> None:
    try:
        safetensors.torch.load_model(model, folder / WEIGHTS, strict=True,
                                     device=str(next(model.parameters()).device))
    except (SafetensorError, RuntimeError) as error:
        raise CheckpointError(f"{folder / WEIGHTS} could not be loaded into the model ({error}).") from None


def _load_training_tensors(folder: Path) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load_file(folder / TRAINING)
    except SafetensorError as error:
        raise CheckpointError(f"{folder / TRAINING} could not be read ({error}): it is corrupted.") from None


def restore_training_state(folder: str | Path, model: torch.nn.Module,
                           optimizer: torch.optim.Optimizer) -> TrainingState:
    """Load weights, optimizer moments and RNG states in place; return the step, data position, history."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    check_model_config(manifest, model)
    if manifest["optimizer_groups"] != _group_sizes(optimizer):
        raise CheckpointError(f"the checkpoint's optimizer has parameter groups of sizes "
                              f"{manifest['optimizer_groups']}, this one {_group_sizes(optimizer)}; "
                              f"resume with the same model and optimizer settings.")
    _load_weights(folder, model)
    tensors = _load_training_tensors(folder)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    _restore_rng(tensors, manifest["rng"])
    return TrainingState(step=manifest["step"], data_position=manifest["data_position"],
                         history=manifest["history"], train_config=manifest["train_config"])


def load_checkpoint(folder: str | Path, device: torch.device | str | None = None) -> Checkpoint:
    """The model saved in `folder`, rebuilt from its config, on `device` (default: CPU), in eval mode."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    model = GPT(GPTConfig.from_dict(manifest["model_config"]))
    _load_weights(folder, model)
    model.to(device or "cpu").eval()
    tokenizer = load_tokenizer(folder / TOKENIZER) if TOKENIZER in manifest["sha256"] else None
    return Checkpoint(model=model, tokenizer=tokenizer, model_config=manifest["model_config"],
                      train_config=manifest["train_config"], step=manifest["step"],
                      history=manifest["history"], folder=folder)
