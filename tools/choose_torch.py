"""Which PyTorch build the course's setup installs: the CPU wheel on a machine without an NVIDIA GPU.

PyPI's torch for Linux is a CUDA build of several GB. A machine with no NVIDIA GPU cannot use CUDA,
and PyTorch's CPU index serves a build of a few hundred MB instead. `./course` runs this script
(standard library only, before any package is installed):

    python3 tools/choose_torch.py      # prints the pip options for torch on stdout, the reason on stderr

It prints `--index-url https://download.pytorch.org/whl/cpu` when the machine is Linux, has no
NVIDIA GPU and that index answers within a few seconds; otherwise nothing (pip's default index,
which on macOS and on an NVIDIA machine is the right build anyway). MINILM_TORCH_INDEX overrides
the CPU index's address ("" turns the choice off).
"""
from __future__ import annotations

import os
import platform
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
NVIDIA_SIGNS = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/nvidia0")


def has_nvidia_gpu() -> bool:
    """An NVIDIA driver is loaded (its /proc entry or devices), or nvidia-smi is on the PATH."""
    return any(Path(sign).exists() for sign in NVIDIA_SIGNS) or shutil.which("nvidia-smi") is not None


def reachable(url: str, timeout: float = 5.0) -> bool:
    """Whether `url` answers at all within `timeout` seconds (any HTTP status counts as an answer)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # it answered, if only with an error page
    except (OSError, ValueError):
        return False


def choose(system: str, nvidia: bool, index: str, index_answers) -> tuple[list[str], str]:
    """(pip options for torch, the reason in one sentence)."""
    if system != "Linux":
        return [], f"{system}: PyPI's torch is the right build here."
    if nvidia:
        return [], "an NVIDIA GPU is here: installing PyTorch's default (CUDA) build from the package index."
    if not index:
        return [], "MINILM_TORCH_INDEX is empty: installing PyTorch's default build from the package index."
    if index_answers(index):
        return ["--index-url", index], (f"no NVIDIA GPU here: installing PyTorch's CPU build from {index} "
                                        f"(a few hundred MB instead of a multi-GB CUDA build).")
    return [], (f"no NVIDIA GPU here, but {index} cannot be reached: installing PyTorch's default build from the "
                f"package index (on Linux that can be a multi-GB CUDA build, which runs on the CPU too).")


def main() -> int:
    index = os.environ.get("MINILM_TORCH_INDEX", CPU_INDEX)
    options, reason = choose(platform.system(), has_nvidia_gpu(), index, lambda url: reachable(url.rstrip("/") + "/torch/"))
    print(f"PyTorch: {reason}", file=sys.stderr)
    print(" ".join(options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
