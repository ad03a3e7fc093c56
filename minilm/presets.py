"""Run sizes: one switch, `MINILM_PRESET`, sets the size of every experiment in the course.

    smoke  seconds per notebook on 2 CPU cores (what CI runs)
    cpu    a few minutes per notebook on a laptop (the default without CUDA)
    gpu    larger models, longer contexts, more steps (the default with CUDA)

Each chapter keeps a small table with one entry per preset and picks its row with `choose`:

    SIZES = {"smoke": TrainSizes(steps=20), "cpu": TrainSizes(steps=2000), "gpu": TrainSizes(steps=20000)}
    sizes = choose(SIZES)         # the row for the preset in force
"""
from __future__ import annotations

import os
from typing import Mapping, TypeVar

import torch

PRESETS = ("smoke", "cpu", "gpu")
T = TypeVar("T")


class PresetError(ValueError):
    """MINILM_PRESET names no preset, or a table lacks a row for the preset in force."""


def current_preset() -> str:
    """The preset in force: $MINILM_PRESET, else gpu when CUDA is present, else cpu."""
    value = os.environ.get("MINILM_PRESET", "").strip().lower()
    if not value:
        return "gpu" if torch.cuda.is_available() else "cpu"
    if value not in PRESETS:
        raise PresetError(
            f"MINILM_PRESET={os.environ['MINILM_PRESET']!r} is not a preset; use one of "
            f"{', '.join(PRESETS)} (or unset it for the default)."
        )
    return value


def choose(table: Mapping[str, T], preset: str | None = None) -> T:
    """The row of `table` for `preset` (default: the preset in force)."""
    preset = preset or current_preset()
    if preset not in PRESETS:
        raise PresetError(f"{preset!r} is not a preset; use one of {', '.join(PRESETS)}.")
    missing = [name for name in PRESETS if name not in table]
    if missing:
        raise PresetError(f"this size table has no row for {', '.join(missing)}; give every preset a row.")
    return table[preset]
