"""A copy of the course for students: everything but the solutions and the teachers' material.

    ./course student-copy DIR            # DIR: new or empty; a git repository with one commit
    ./course student-copy DIR --no-git   # the files only

The copy holds the notebooks, `minilm`, the tests and the exercise stubs as they are, and leaves out
`solutions/` and `teacher/` (the quiz bank). Its files are the course's tracked files (`git ls-files`;
a course folder without git is walked, leaving out virtual environments and caches), so nothing
built here (a .venv, caches, __pycache__, notebook checkpoints, graded work) goes with it. Its git
history, when it has one, starts with the copy: nothing of the course's history comes along.

In the copy `./course check` runs the course's checks against exercises/: the tests of an exercise
not written yet are skipped and listed at the end, chapter by chapter; `./course exercise CHAPTER`
checks one chapter as before. Before it finishes, the copy is searched for any solution's code (the
body of a solved function, word for word) outside `minilm/` and `notebooks/`, which show how the
course does things on purpose; finding one stops with the file that holds it.
"""
from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEFT_OUT = ("solutions", "teacher")  # top-level folders a student copy leaves out
NOT_SOURCES = {".git", ".venv", "__pycache__", ".pytest_cache", ".ipynb_checkpoints", ".cache", "grades", "slides"}
SHORTEST_LEAK = 3  # lines of a solution's body that, found word for word in the copy, give it away
TEACHES_OPENLY = ("minilm", "notebooks")  # how the course does each thing, on purpose: not searched for leaks


class CopyError(ValueError):
    """Why the copy cannot be written: one line for the teacher."""


def course_files(root: Path = ROOT) -> list[Path]:
    """The course's files, relative to root: git's tracked files, else every file but builds and caches."""
    if (root / ".git").exists():
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
        files = [Path(name) for name in listed.decode().split("\0") if name]
    else:
        files = [path.relative_to(root) for path in root.rglob("*")
                 if path.is_file() and not NOT_SOURCES & set(path.relative_to(root).parts)]
    return sorted(path for path in files if path.parts[0] not in LEFT_OUT and (root / path).is_file())


def as_code_lines(source: str) -> str:
    """Python source as its statements unparsed, one stripped line each: formatting and comments gone."""
    return "\n".join(line.strip() for line in ast.unparse(ast.parse(source)).splitlines())


def solution_bodies(root: Path = ROOT) -> dict[str, str]:
    """'solutions/ch01_data.py: name' -> the body of each solved function and method (docstring left
    out) as code lines, where it has at least SHORTEST_LEAK lines and the exercise module does not
    hand out the same body (a helper given to students is no answer)."""
    bodies = {}
    for path in sorted((root / "solutions").glob("*.py")):
        exercise = root / "exercises" / path.name
        given = as_code_lines(exercise.read_text(encoding="utf-8")) if exercise.exists() else ""
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body[1:] if ast.get_docstring(node) else node.body
                lines = [line.strip() for statement in body for line in ast.unparse(statement).splitlines()]
                if len(lines) >= SHORTEST_LEAK and "\n".join(lines) not in given:
                    bodies[f"solutions/{path.name}: {node.name}"] = "\n".join(lines)
    return bodies


def leaks(copy: Path, bodies: dict[str, str]) -> list[str]:
    """'file holds solutions/x.py: name' for every solution body found in a text file of the copy."""
    found = []
    searched = [p for p in copy.rglob("*") if p.is_file() and ".git" not in p.relative_to(copy).parts
                and p.relative_to(copy).parts[0] not in TEACHES_OPENLY]
    for path in sorted(searched):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        try:  # compare code as code, and any other text line by line, stripped
            text = as_code_lines(text) if path.suffix == ".py" else "\n".join(line.strip() for line in text.splitlines())
        except SyntaxError:
            text = "\n".join(line.strip() for line in text.splitlines())
        found += [f"{path.relative_to(copy)} holds {where}" for where, body in bodies.items() if body in text]
    return found


def write_copy(destination: Path, git: bool = True, root: Path = ROOT) -> list[Path]:
    """Write the student copy into destination (new or empty); return the files written."""
    destination = destination.resolve()
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise CopyError(f"{destination} exists and is not an empty folder; name a new folder for the copy.")
    if destination == root or root in destination.parents:
        raise CopyError(f"{destination} is inside the course itself; name a folder outside {root}.")
    files = course_files(root)
    for relative in files:
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / relative, target)  # keeps the mode: ./course stays executable
    found = leaks(destination, solution_bodies(root))
    if found:
        shutil.rmtree(destination)
        raise CopyError(f"a solution would go to the students: {found[0]} (and {len(found) - 1} more); "
                        "nothing was written.")
    if git:
        author = ["-c", "user.name=minilm course", "-c", "user.email=course@minilm.invalid", "-c", "commit.gpgsign=false"]
        subprocess.run(["git", "init", "-q"], cwd=destination, check=True)
        subprocess.run(["git", "add", "-A"], cwd=destination, check=True)
        subprocess.run(["git", *author, "commit", "-q", "-m", "minilm course: the student copy"], cwd=destination, check=True)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./course student-copy", description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="the folder to write (new, or empty)")
    parser.add_argument("--no-git", action="store_true", help="write the files only, no git repository")
    args = parser.parse_args(argv)
    try:
        files = write_copy(args.dir, git=not args.no_git)
    except CopyError as error:
        print(f"student-copy: {error}", file=sys.stderr)
        return 2
    exercises = sorted(p.stem for p in files if p.parts[0] == "exercises" and p.suffix == ".py")
    print(f"wrote the student copy to {args.dir.resolve()}: {len(files)} files, no {' or '.join(f'{n}/' for n in LEFT_OUT)}; "
          f"{len(exercises)} exercise modules to write. In it: ./course check, then ./course exercise CHAPTER.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
