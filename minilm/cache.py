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
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable

DONE_MARK = "artifact.json"


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
        return final
    staging = cache_root() / f".{name}-{key}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        build(staging)
        (staging / DONE_MARK).write_text(json.dumps({"name": name, "key": key, "inputs": inputs},
                                                    indent=2, default=str))
        if (final / DONE_MARK).exists():  # another process finished the same build first
            return final
        if final.exists():  # an unfinished earlier build with the same key
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final
