"""exercises/ and solutions/ hold the same modules with the same functions and signatures, and every
exercise is unfinished (so a student never finds an answer in exercises/)."""
import ast
import inspect
from pathlib import Path

import pytest

from tests.exercises.harness import ROOT, _import, student_copy

CHAPTERS = sorted(p.stem for p in (ROOT / "exercises").glob("ch*.py"))
pytestmark = pytest.mark.skipif(student_copy(), reason="an authors' check: a student copy has no solutions/ and "
                                                      "its exercises/ fill up with answers")


def public_functions(module):
    return {name: inspect.signature(value) for name, value in vars(module).items()
            if inspect.isfunction(value) and value.__module__ == module.__name__ and not name.startswith("_")}


def test_every_chapter_has_a_solution_module():
    assert CHAPTERS, "exercises/ holds no chapter modules"
    solved = sorted(p.stem for p in (ROOT / "solutions").glob("ch*.py"))
    assert solved == CHAPTERS


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_same_functions_and_signatures(chapter):
    exercise = public_functions(_import(ROOT / "exercises" / f"{chapter}.py"))
    solution = public_functions(_import(ROOT / "solutions" / f"{chapter}.py"))
    assert exercise.keys() == solution.keys()
    for name in exercise:
        assert exercise[name] == solution[name], f"{chapter}.{name}: signatures differ"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_exercises_are_left_for_the_student(chapter):
    tree = ast.parse((ROOT / "exercises" / f"{chapter}.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            raises = [n for n in ast.walk(node) if isinstance(n, ast.Raise)
                      and "NotImplementedError" in ast.unparse(n)]
            assert raises, f"exercises/{chapter}.py: {node.name} should end in `raise NotImplementedError`"
