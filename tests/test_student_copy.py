"""`./course student-copy DIR`: a copy with nothing of solutions/ or teacher/ in its files or its git
history, whose checks pass and list the exercises still to write, and whose `--student` check of a
chapter fails one line per unwritten function; a planted solution stops the copy."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.exercises.harness import ROOT, student_copy
from tools.student_copy import CopyError, main, write_copy

pytestmark = pytest.mark.skipif(student_copy(), reason="builds a student copy from the full course")
CHECKS = ["tests/exercises", "tests/test_exercise_layout.py", "tests/test_exercise_harness.py"]


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    destination = tmp_path_factory.mktemp("class") / "minilm"
    write_copy(destination)
    return destination


def pytest_in(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=folder,
                          capture_output=True, text=True, timeout=600)


def unwritten(module: Path) -> set[str]:
    """The functions and methods of an exercise module whose body raises NotImplementedError."""
    names = set()
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef) and any(
                isinstance(n, ast.Raise) and "NotImplementedError" in ast.unparse(n) for n in ast.walk(node)):
            names.add(node.name)
    return names


def test_nothing_of_the_solutions_or_the_teachers_material_goes_along(copy):
    files = [p.relative_to(copy) for p in copy.rglob("*") if p.is_file() and ".git" not in p.relative_to(copy).parts]
    assert {p.parts[0] for p in files} >= {"minilm", "notebooks", "exercises", "tests", "course"}
    assert not [p for p in files if p.parts[0] in ("solutions", "teacher")]
    assert not [p for p in files if {"__pycache__", ".venv", ".cache", ".pytest_cache"} & set(p.parts)]
    solved = {p.read_bytes() for p in (ROOT / "solutions").glob("*.py")}
    assert not [p for p in files if (copy / p).read_bytes() in solved]
    history = subprocess.run(["git", "rev-list", "--all", "--objects"], cwd=copy, capture_output=True, text=True,
                             check=True).stdout.split()
    assert not [name for name in history if name.startswith(("solutions", "teacher"))]
    assert len(subprocess.run(["git", "log", "--oneline"], cwd=copy, capture_output=True, text=True).stdout.splitlines()) == 1
    assert sorted(p.name for p in (copy / "exercises").glob("*.py")) == sorted(p.name for p in (ROOT / "exercises").glob("*.py"))


def test_the_copy_checks_pass_and_list_what_is_left_to_write(copy):
    result = pytest_in(copy, *CHECKS)
    assert result.returncode == 0, result.stdout[-3000:]
    listed = result.stdout.split("exercises still to write")[1].splitlines()
    rows = dict(line.split(": ", 1) for line in listed if line.startswith("exercises/"))
    modules = sorted((copy / "exercises").glob("*.py"))
    assert sorted(rows) == [f"exercises/{m.name}" for m in modules]  # every chapter, one line each
    for module in modules:
        names = {name.split(".")[-1] for name in rows[f"exercises/{module.name}"].split(", ")}
        assert names and names <= unwritten(module), module.name
    assert " failed" not in result.stdout.splitlines()[-1]


def test_a_written_exercise_is_tested_and_leaves_the_list(copy, tmp_path):
    work = tmp_path / "minilm"
    write_copy(work, git=False)
    (work / "exercises" / "ch00_warmup.py").write_text((ROOT / "solutions" / "ch00_warmup.py").read_text())
    result = pytest_in(work, "tests/exercises/test_ch00_warmup.py", "tests/exercises/test_ch02_attention.py")
    assert result.returncode == 0, result.stdout[-2000:]
    assert "exercises/ch00_warmup.py:" not in result.stdout and "exercises/ch02_attention.py:" in result.stdout
    tests_of_ch00 = pytest_in(work, "--collect-only", "tests/exercises/test_ch00_warmup.py").stdout.count("::")
    assert f"{tests_of_ch00} passed" in result.stdout.splitlines()[-1]


def test_the_student_check_of_a_chapter_names_each_unwritten_function(copy):
    result = pytest_in(copy, "--student", "tests/exercises/test_ch06c_deployment.py")
    assert result.returncode == 1
    for name in unwritten(copy / "exercises" / "ch06c_deployment.py"):
        assert f"exercises/ch06c_deployment.py: `{name}` is not written yet" in result.stdout
    assert "NotImplementedError\n" not in result.stdout


def test_a_planted_solution_stops_the_copy(tmp_path):
    course = tmp_path / "course"
    body = "total = 0\nfor value in values:\n    total += value * value\nreturn total"
    (course / "solutions").mkdir(parents=True)
    (course / "exercises").mkdir()
    (course / "docs").mkdir()
    indented = "\n".join("    " + line for line in body.splitlines())
    (course / "solutions" / "ch00.py").write_text(f'def squares(values):\n    """Sum of squares."""\n{indented}\n')
    (course / "exercises" / "ch00.py").write_text('def squares(values):\n    """Sum of squares."""\n    raise NotImplementedError\n')
    (course / "docs" / "notes.md").write_text("hint: " + body + "\n")
    with pytest.raises(CopyError, match="docs/notes.md holds solutions/ch00.py: squares"):
        write_copy(tmp_path / "out", git=False, root=course)
    assert not (tmp_path / "out").exists()


def test_a_folder_in_use_is_one_line(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    assert main([str(tmp_path / "taken")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "is not an empty folder" in error
