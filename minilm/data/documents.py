"""The unit of data: a document (a text, the source it came from, and where exactly), and the
errors the data pipeline raises when its input is unusable.

    Document(text="Return the sum of a and b.", source="prose", meta={"module": "operator"})

Every source yields documents; every later step (cleaning, filtering, deduplication, mixing,
splitting) takes documents and returns documents, so the same pipeline runs on any text.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Document:
    text: str
    source: str  # the source's name: "prose", "code", "stories", "files", "hf:<dataset>"
    meta: dict = field(default_factory=dict)  # where it came from: module, path, line, facts, ...


class DataError(ValueError):
    """Base class of the pipeline's errors; each message says what went wrong and what to do."""


class EmptyCorpusError(DataError):
    """No documents are left (no sources, or every document was filtered out)."""


class MissingFileError(DataError, FileNotFoundError):
    """A local text file that was asked for does not exist."""


class NotUtf8Error(DataError, UnicodeError):
    """A local text file is not valid UTF-8."""


class DatasetUnavailableError(DataError, ConnectionError):
    """A `datasets` dataset could not be loaded (offline, misspelt, or not cached)."""
