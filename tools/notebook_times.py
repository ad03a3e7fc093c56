"""How long each notebook takes at each preset, measured, kept in notebooks/times.json.

    python tools/notebook_times.py record notebooks/04_training.ipynb cpu 612   # `./course render` does this
    python tools/notebook_times.py run smoke notebooks/*.ipynb                   # run them (outputs not saved), record

notebooks/times.json maps notebook -> preset -> {"seconds", "threads", "cores", "date"}. Notebook 00
prints the table from it and the README quotes it, so the times a reader sees were measured, with
the thread count beside them. Measure with the machine idle: a second busy job slows two-thread
PyTorch many times over.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
import time
from pathlib import Path

TIMES = Path(__file__).resolve().parents[1] / "notebooks" / "times.json"


def shown(seconds: float) -> str:
    """A measured time as the README and notebook 00 print it: seconds below 90, else minutes."""
    return f"{round(seconds)} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def load() -> dict:
    """notebook -> preset -> measurement, as recorded so far."""
    return json.loads(TIMES.read_text()) if TIMES.exists() else {}


def record(notebook: str, preset: str, seconds: float) -> None:
    times = load()
    import torch  # the notebooks' thread count: MINILM_THREADS, else torch's default

    threads = os.environ.get("MINILM_THREADS") or torch.get_num_threads()
    times.setdefault(Path(notebook).stem, {})[preset] = {
        "seconds": round(float(seconds)), "threads": int(threads), "cores": os.cpu_count(),
        "date": datetime.date.today().isoformat()}
    TIMES.write_text(json.dumps(dict(sorted(times.items())), indent=1) + "\n")


def run(preset: str, notebooks: list[str]) -> None:
    import nbclient
    import nbformat

    os.environ["MINILM_PRESET"] = preset
    for notebook in notebooks:
        started = time.perf_counter()
        book = nbformat.read(notebook, as_version=4)
        nbclient.NotebookClient(book, timeout=1800, kernel_name="python3",
                                resources={"metadata": {"path": str(Path(notebook).parent)}}).execute()
        seconds = time.perf_counter() - started
        record(notebook, preset, seconds)
        print(f"{notebook}: {seconds:.0f} s at the {preset} preset", flush=True)


if __name__ == "__main__":
    command, *rest = sys.argv[1:] or ["help"]
    if command == "record" and len(rest) == 3:
        record(rest[0], rest[1], float(rest[2]))
    elif command == "run" and len(rest) >= 2:
        run(rest[0], rest[1:])
    else:
        print(__doc__)
        sys.exit(2)
