"""Loads a chapter's exercise module: the course's solutions by default, your own answers in
student mode (`pytest --student`, `./course exercise CHAPTER`, or MINILM_STUDENT=1).

An exercise that is not written yet makes its tests fail with one line naming the function (or the
class's method) to write, instead of a bare NotImplementedError trace.

A student copy (`./course student-copy DIR`) has no solutions/: there the checks take exercises/
even without --student, skip the tests of exercises not written yet (`./course check` then lists
them per chapter, see TO_WRITE) and test the ones that are. MINILM_EXERCISES=FOLDER takes the
answers from another folder (the grader points it at a submission).
"""
from __future__ import annotations

import functools
import importlib.util
import inspect
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]


TO_WRITE: dict[str, list[str]] = {}  # exercise file -> the functions met unwritten in a student copy


def student_mode() -> bool:
    return os.environ.get("MINILM_STUDENT", "") not in ("", "0")


def student_copy() -> bool:
    """A copy for students: the course's solutions/ is not there."""
    return not (ROOT / "solutions").is_dir()


def module_path(chapter: str, folder: str | None = None) -> Path:
    if folder is None and os.environ.get("MINILM_EXERCISES"):
        return Path(os.environ["MINILM_EXERCISES"]) / f"{chapter}.py"
    folder = folder or ("exercises" if student_mode() or student_copy() else "solutions")
    return ROOT / folder / f"{chapter}.py"


def _import(path: Path):
    spec = importlib.util.spec_from_file_location(f"{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _guard(function, where: str, name: str | None = None):
    @functools.wraps(function)
    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except NotImplementedError:
            unfinished = True  # fail outside the handler, so no NotImplementedError trace is chained
        if unfinished:
            missing = name or function.__name__
            if student_copy() and not student_mode():  # `./course check` in a student copy: a list, not failures
                if missing not in TO_WRITE.setdefault(where, []):
                    TO_WRITE[where].append(missing)
                pytest.skip(f"{where}: `{missing}` is not written yet")
            pytest.fail(f"{where}: `{missing}` is not written yet; replace its "
                        f"`raise NotImplementedError` with your code (its docstring says what to do).",
                        pytrace=False)
    return call


def _guard_class(cls: type, where: str) -> type:
    """A subclass of `cls` whose own methods are guarded like the functions."""
    methods = {name: _guard(method, where, f"{cls.__name__}.{name}")
               for name, method in vars(cls).items() if inspect.isfunction(method)}
    return type(cls.__name__, (cls,), {**methods, "__module__": cls.__module__, "__doc__": cls.__doc__})


def load_chapter(chapter: str, folder: str | None = None) -> SimpleNamespace:
    """The chapter's functions and classes, each function and method guarded as described above."""
    path = module_path(chapter, folder)
    module = _import(path)
    where = f"{path.parent.name}/{path.name}"
    members = {}
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if inspect.isfunction(value) and value.__module__ == module.__name__:
            members[name] = _guard(value, where)
        elif inspect.isclass(value) and value.__module__ == module.__name__:
            members[name] = _guard_class(value, where)
        else:
            members[name] = value
    return SimpleNamespace(**members)
