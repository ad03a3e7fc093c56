"""Student mode checks exercises/ and names each unfinished function in one line."""
import os
import subprocess
import sys

from tests.exercises.harness import ROOT


def test_student_mode_names_the_unfinished_warmup():
    env = dict(os.environ)
    env.pop("MINILM_STUDENT", None)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "--student",
                             "tests/exercises/test_ch00_warmup.py"],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert "exercises/ch00_warmup.py: `mean_squared_error` is not written yet" in result.stdout
    assert "NotImplementedError\n" not in result.stdout  # no bare trace


def test_default_mode_checks_the_solutions():
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/exercises/test_ch00_warmup.py"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
