"""A cache for artifacts that later notebooks reuse: a cleaned corpus, a tokenizer, a checkpoint.

An artifact lives in a folder named after what it is and a hash of everything it was built from:
its inputs (a dict you pass), the source code of the module that builds it, and any other source
files named in `code` (modules or paths). Change any of them and the key changes, so a stale
artifact is never reused.

    path = cached_artifact("tokenizer", {"vocab_size": 1024, "corpus": corpus_key}, build,
                           code=[minilm.bpe_train])
    # build(folder) writes the files; it runs only when no finished artifact has this key

The cache lives in $MINILM_CACHE, else ~/.cache/minilm. A folder is used only once its build has
finished (it is built under a temporary name and renamed), so an interrupted build is redone.

A cached folder is checked, not trusted: artifact.json records every file's size and SHA-256, and
each use checks the sizes, and the checksums of files up to CHECKSUM_MAX_BYTES (each folder's
checksums once per process while its files stay unchanged). A damaged entry (a file missing,
truncated, edited) is rebuilt, with one line on stderr saying so.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable

DONE_MARK = "artifact.json"
CHECKSUM_MAX_BYTES = 64 << 20  # files up to this size are checksummed on use; bigger ones are checked by size
_checked: dict[Path, tuple] = {}  # folder -> the (name, size, mtime) of its files when their checksums last matched


def cache_root() -> Path:
    """The cache folder: $MINILM_CACHE, else ~/.cache/minilm (created if missing)."""
    root = Path(os.environ.get("MINILM_CACHE") or Path.home() / ".cache" / "minilm").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _source_hash(build: Callable[..., Any]) -> str:
    module = inspect.getmodule(build)
    try:
        source = inspect.getsource(module) if module is not None else inspect.getsource(build)
    except (OSError, TypeError):  # built-ins and interactive definitions have no file
        source = getattr(build, "__qualname__", repr(build))
    return hashlib.sha256(source.encode()).hexdigest()


def _file_hash(source: ModuleType | Path) -> str:
    path = Path(source.__file__) if isinstance(source, ModuleType) else Path(source)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files_of(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file() and path.name != DONE_MARK)


def file_records(folder: Path) -> dict[str, dict]:
    """Every file of a built artifact (relative path) with its size in bytes and its SHA-256."""
    return {str(path.relative_to(folder)): {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
            for path in _files_of(folder)}


def damage(folder: Path) -> str | None:
    """What is wrong with a finished artifact's files, or None when they are as they were built."""
    try:
        records = json.loads((folder / DONE_MARK).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"its {DONE_MARK} holds no record of its files (it is damaged, or an older minilm made it)"
    stats = {}
    for name, record in records.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        stat = path.stat()
        if stat.st_size != record["bytes"]:
            return f"{name} has {stat.st_size:,} bytes, not the {record['bytes']:,} it was built with"
        stats[name] = (stat.st_size, stat.st_mtime_ns)
    signature = tuple(sorted(stats.items()))
    if _checked.get(folder) == signature:
        return None
    for name, record in records.items():
        if record["bytes"] <= CHECKSUM_MAX_BYTES and file_sha256(folder / name) != record["sha256"]:
            return f"{name} does not match the checksum it was built with"
    _checked[folder] = signature
    return None


def artifact_key(name: str, inputs: dict[str, Any], build: Callable[..., Any] | None = None,
                 code: Iterable[ModuleType | Path] = ()) -> str:
    """A short stable hash of the artifact's name, its inputs, its builder's source code, and the
    source files in `code` (modules or paths)."""
    payload = {"name": name, "inputs": inputs, "code": _source_hash(build) if build else None,
               "more_code": sorted(_file_hash(source) for source in code)}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_artifact(name: str, inputs: dict[str, Any], build: Callable[[Path], None],
                    code: Iterable[ModuleType | Path] = ()) -> Path:
    """The folder of the finished artifact for (name, inputs, code), building it first if needed."""
    key = artifact_key(name, inputs, build, code)
    final = cache_root() / f"{name}-{key}"
    if (final / DONE_MARK).exists():
        problem = damage(final)
        if problem is None:
            return final
        print(f"minilm cache: {final.name} is damaged ({problem}); rebuilding it.", file=sys.stderr, flush=True)
        shutil.rmtree(final, ignore_errors=True)
        _checked.pop(final, None)
    staging = cache_root() / f".{name}-{key}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        build(staging)
        record = {"name": name, "key": key, "inputs": inputs, "files": file_records(staging)}
        (staging / DONE_MARK).write_text(json.dumps(record, indent=2, default=str))
        if (final / DONE_MARK).exists() and damage(final) is None:  # another process finished the same build first
            return final
        if final.exists():  # an unfinished earlier build with the same key
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final
