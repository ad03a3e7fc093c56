"""The environment report that opens every notebook: what runs the course, and with which sizes.

    from minilm.report import environment_report
    print(environment_report())
"""
from __future__ import annotations

import platform
import sys
from importlib import metadata
from pathlib import Path

import torch

from minilm.cache import cache_root
from minilm.presets import current_preset
from minilm.runtime import choose_device, set_threads

COURSE_PACKAGES = ("minilm", "numpy", "einops", "matplotlib", "tqdm", "datasets", "safetensors",
                   "regex", "tokenizers", "transformers", "sacrebleu", "nbval", "jupyterlab")


def package_versions(names=COURSE_PACKAGES) -> dict[str, str]:
    """Installed version of each package, or 'missing'."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def cpu_name() -> str:
    """The CPU's model name where Linux says it (/proc/cpuinfo), else what Python's platform module knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda ({torch.cuda.get_device_name(index)})"
    return device.type


def environment_report() -> str:
    """A few lines naming Python, torch, the device, the preset, threads, cache and versions."""
    device = choose_device()
    lines = [
        f"python   {sys.version.split()[0]} on {platform.system()} {platform.machine()}",
        f"torch    {torch.__version__} (cuda {torch.version.cuda or 'none'})",
        f"device   {device_description(device)}",
        f"preset   {current_preset()}",
        f"threads  {set_threads()}",
        f"cache    {cache_root()}",
        "packages " + ", ".join(f"{k} {v}" for k, v in package_versions().items()),
    ]
    return "\n".join(lines)


def add_command(subparsers) -> None:
    """`python -m minilm env`: print the environment report."""
    parser = subparsers.add_parser("env", help="print the environment report (python, torch, device, preset)")
    parser.set_defaults(run=lambda args: print(environment_report()))
