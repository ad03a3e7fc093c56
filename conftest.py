"""Options for every check: `--gpu` (the GPU check) and `--student` (check exercises/ instead of solutions/).

The checks run offline and under the smoke preset unless told otherwise; notebook kernels inherit
the environment set here.
"""
import os

import pytest

# Offline by default, and quiet progress bars, whichever way pytest was started.
for name, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "MINILM_PRESET": "smoke", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
                    "TQDM_DISABLE": "1", "MPLBACKEND": "Agg"}.items():
    os.environ.setdefault(name, value)


def pytest_addoption(parser):
    parser.addoption("--gpu", action="store_true",
                     help="the GPU check: fail unless CUDA is available, and run every notebook on CUDA")
    parser.addoption("--student", action="store_true",
                     help="check your answers in exercises/ instead of the course's solutions/ "
                          "(the same as MINILM_STUDENT=1)")


def pytest_configure(config):
    if config.getoption("--gpu"):
        import torch

        if not torch.cuda.is_available():
            raise pytest.UsageError("--gpu asks for the GPU check, but torch sees no CUDA device here.")
        os.environ["MINILM_DEVICE"] = "cuda"
        os.environ["MINILM_REQUIRE_CUDA"] = "1"
    if config.getoption("--student"):
        os.environ["MINILM_STUDENT"] = "1"


def pytest_terminal_summary(terminalreporter):
    """In a student copy: the exercises still to write, chapter by chapter (their tests were skipped)."""
    harness = __import__("sys").modules.get("tests.exercises.harness")
    if harness is None or not harness.TO_WRITE:
        return
    terminalreporter.section("exercises still to write")
    for where, names in sorted(harness.TO_WRITE.items()):
        terminalreporter.write_line(f"{where}: {', '.join(names)}")
    terminalreporter.write_line("check one chapter with: ./course exercise CHAPTER (for example ch00_warmup)")
