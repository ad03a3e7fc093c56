"""Where documents come from: the Python standard library (its docstrings as prose, its source as
code), local text files, and any text dataset that `datasets.load_dataset` can reach.

    prose = stdlib_docstrings(modules=["json", "textwrap"])   # one Document per docstring
    code = stdlib_code(modules=["json"])                       # one Document per .py file
    pieces = [p for d in code for p in code_chunks(d, 4000)]    # cut between definitions
    notes = text_files(["notes.txt"])                         # one Document per file
    tiny = hf_documents("roneneldan/TinyStories", limit=1000)  # needs the network (or its cache)

The standard library is read with `ast`, never imported, so reading it runs none of its code.
Every machine with Python has it: about 1.7 MB of English docstrings and 11 MB of code.
The story world (minilm/data/stories.py) is the third source; corpus.py turns its stories into
documents.
"""
from __future__ import annotations

import ast
import os
import sysconfig
from pathlib import Path
from typing import Iterable, Iterator

from minilm.data.documents import DatasetUnavailableError, Document, MissingFileError, NotUtf8Error

# Folders of the standard library that are not its own prose and code: third-party packages,
# test suites, generated tables, vendored or demo code.
SKIPPED_FOLDERS = frozenset({"site-packages", "dist-packages", "test", "tests", "idlelib", "__pycache__",
                             "turtledemo", "pydoc_data", "encodings", "ensurepip", "lib2to3"})


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stdlib_files(modules: Iterable[str] | None = None) -> list[Path]:
    """The standard library's .py files, sorted; only the top-level `modules` given, if any."""
    root = stdlib_root()
    wanted = set(modules) if modules is not None else None
    files = []
    for folder, subfolders, names in os.walk(root):
        relative = Path(folder).relative_to(root)
        subfolders[:] = [name for name in subfolders if name not in SKIPPED_FOLDERS
                         and not (relative == Path(".") and name.startswith("config-"))
                         and (wanted is None or relative != Path(".") or name in wanted)]
        for name in names:
            top = relative.parts[0] if relative.parts else name.removesuffix(".py")
            if name.endswith(".py") and not top.startswith("_sysconfigdata") and (wanted is None or top in wanted):
                files.append(Path(folder) / name)
    return sorted(files)


def docstrings(source: str) -> Iterator[tuple[str, str, int]]:
    """(object name, docstring, line) for the module, every class and every function in `source`."""
    tree = ast.parse(source)

    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[str, str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                text = ast.get_docstring(child, clean=True)
                if text:
                    yield name, text, child.lineno
                yield from visit(child, f"{name}.")

    text = ast.get_docstring(tree, clean=True)
    if text:
        yield "", text, 1
    yield from visit(tree, "")


def stdlib_docstrings(modules: Iterable[str] | None = None) -> Iterator[Document]:
    """Prose: one document per docstring, with the module and object it documents."""
    root = stdlib_root()
    for path in stdlib_files(modules):
        module = module_name(path, root)
        try:
            found = list(docstrings(path.read_text(encoding="utf-8")))
        except (SyntaxError, UnicodeDecodeError):  # a few files are templates or other encodings
            continue
        for name, text, line in found:
            yield Document(text, "prose", {"module": module, "object": name, "line": line,
                                           "path": str(path.relative_to(root))})


def stdlib_code(modules: Iterable[str] | None = None) -> Iterator[Document]:
    """Code: one document per .py file of the standard library."""
    root = stdlib_root()
    for path in stdlib_files(modules):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        yield Document(text, "code", {"module": module_name(path, root), "path": str(path.relative_to(root))})


def statement_starts(source: str) -> list[int]:
    """The 0-based lines where a cut may fall: the start of each top-level statement and of each
    statement in a class body (a method), with its decorators and the comments just above it (so a
    cut never separates a definition from its notes)."""
    lines = source.splitlines(keepends=True)
    starts = set()

    def visit(statements) -> None:
        for node in statements:
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
            while first > 0 and lines[first - 1].lstrip().startswith("#"):
                first -= 1
            starts.add(first)
            if isinstance(node, ast.ClassDef):
                visit(node.body[1:])  # a cut inside a class never falls before its first statement

    visit(ast.parse(source).body)
    return sorted(starts)


def code_chunks(document: Document, max_chars: int) -> list[Document]:
    """A source file cut between statements (top-level ones, and methods of a class) into pieces of
    at most `max_chars` characters; a single function longer than that stays whole. Joined, the
    pieces give the file back.

    Whole files make few, large documents: a split of a few percent would hold one or two files,
    so its loss would describe those files rather than Python. Pieces of a few functions each spread
    every split over many modules. A file that does not parse stays whole.
    """
    try:
        starts = statement_starts(document.text)
    except (SyntaxError, ValueError):
        return [document]
    lines = document.text.splitlines(keepends=True)
    bounds = sorted(set([0] + starts)) + [len(lines)]
    pieces, begin, size = [], 0, 0
    for start, end in zip(bounds, bounds[1:]):
        length = sum(len(line) for line in lines[start:end])
        if size and size + length > max_chars:
            pieces.append((begin, start))
            begin, size = start, 0
        size += length
    pieces.append((begin, len(lines)))
    return [Document("".join(lines[a:b]), document.source, {**document.meta, "lines": f"{a + 1}-{b}"})
            for a, b in pieces if "".join(lines[a:b]).strip()]


def read_utf8(path: str | Path) -> str:
    """The text of a local file, or a clear error when it is missing or not UTF-8."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist (or is not a file); check the path, which is "
                               f"relative to {Path.cwd()} unless it is absolute.")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise NotUtf8Error(f"{path} is not UTF-8 text: byte {error.start} is 0x{data[error.start]:02x}. "
                           f"Convert it first, for example: iconv -f latin1 -t utf-8 {path.name} > "
                           f"{path.stem}.utf8{path.suffix}") from None


def text_files(paths: Iterable[str | Path], source: str = "files") -> Iterator[Document]:
    """One document per local UTF-8 text file."""
    for path in paths:
        yield Document(read_utf8(path), source, {"path": str(path)})


def hf_documents(name: str, split: str = "train", text_column: str = "text", config_name: str | None = None,
                 limit: int | None = None) -> Iterator[Document]:
    """One document per row of a `datasets` dataset (online, or from the local Hugging Face cache)."""
    import datasets

    try:
        dataset = datasets.load_dataset(name, config_name, split=split)
    except Exception as error:  # offline, misspelt, gated, no such split: all end here
        raise DatasetUnavailableError(
            f"could not load the dataset {name!r} (split {split!r}): {type(error).__name__}: {error}. "
            f"It must be downloaded once while online (unset HF_DATASETS_OFFLINE and HF_HUB_OFFLINE); "
            f"offline, use the built-in sources instead: prose, code, stories, files.") from None
    if text_column not in dataset.column_names:
        raise DatasetUnavailableError(f"the dataset {name!r} has no column {text_column!r}; its columns are "
                                      f"{dataset.column_names}: pass text_column=...")
    rows = dataset if limit is None else dataset.select(range(min(limit, len(dataset))))
    for index, text in enumerate(rows[text_column]):
        yield Document(text, f"hf:{name}", {"dataset": name, "split": split, "row": index})
