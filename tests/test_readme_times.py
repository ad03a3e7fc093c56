"""The README's notebook times are the measured ones (notebooks/times.json, written by the renders
and by tools/notebook_times.py), so they cannot go stale."""
import re
from pathlib import Path

import pytest

from tools.notebook_times import load, shown

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| (\w+) \| \[(\w+)\]\(notebooks/\2\.ipynb\) \|.*\| ([^|]+) \| ([^|]+) \| ([^|]+) \|$")


def readme_rows() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            rows[match.group(2)] = (match.group(3).strip(), match.group(4).strip())
    return rows


def test_every_notebook_has_a_row_and_a_measurement():
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert sorted(readme_rows()) == notebooks
    times = load()
    for name in notebooks:
        assert {"smoke", "cpu"} <= set(times.get(name, {})), f"{name} has no measured smoke and cpu time"


@pytest.mark.parametrize("column, preset", [(0, "smoke"), (1, "cpu")])
def test_the_readme_quotes_the_measured_times(column, preset):
    times = load()
    for name, cells in readme_rows().items():
        assert cells[column] == shown(times[name][preset]["seconds"]), f"README's {preset} time of {name}"


def test_the_readme_total_is_the_sum():
    times = load()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for preset in ("smoke", "cpu"):
        total = shown(sum(measured[preset]["seconds"] for measured in times.values()))
        assert f"all notebooks at the {preset} preset: {total}" in text
