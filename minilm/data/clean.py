"""Cleaning: small text-to-text steps, each reporting how many documents it changed and how.

    cleaned, reports = clean_documents(documents)
    reports[0]   # StepReport(step='nfc', changed=3, removed_chars=0, examples=[(before, after), ...])

The steps, and the sources they apply to (`STEPS_BY_SOURCE`):

    nfc         Unicode normalisation to NFC: "e" + combining accent becomes one character "é"
    control     control and invisible format characters removed (tab and newline kept)
    licence     a leading comment block naming a copyright or licence removed (code)
    doctest     doctest examples (">>> " lines and the output under them) removed (prose)
    rest        reST markup unwrapped: :func:`len` -> len, ``x`` -> x, ".. note::" lines dropped (prose)
    whitespace  trailing spaces, Windows line ends and runs of blank lines removed; ends stripped
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Callable

from minilm.data.documents import Document

EXAMPLES_KEPT = 3  # before/after examples each step keeps for its report
EXAMPLE_WINDOW = 160  # characters shown around the first change


def normalize_nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def remove_control_characters(text: str) -> str:
    return "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf")) \
        if CONTROL.search(text) else text


CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")
LICENCE_WORDS = re.compile(r"copyright|licen[cs]e|\(c\)|all rights reserved", re.IGNORECASE)
LEADING_COMMENTS = re.compile(r"\A(?:#![^\n]*\n)?(?:[ \t]*#[^\n]*\n|[ \t]*\n)+")
DOCTEST_BLOCK = re.compile(r"^[ \t]*>>>.*(?:\n(?![ \t]*\n).*)*", re.MULTILINE)
REST_ROLE = re.compile(r":[\w:.+-]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")
REST_LITERAL = re.compile(r"``([^`]+)``")
REST_DIRECTIVE = re.compile(r"^[ \t]*\.\. [\w:-]+::.*\n?", re.MULTILINE)
TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)
BLANK_RUNS = re.compile(r"\n{3,}")


def strip_licence_header(text: str) -> str:
    """Drop the comment block at the top of a file if it names a copyright or licence."""
    header = LEADING_COMMENTS.match(text)
    if header and LICENCE_WORDS.search(header.group()):
        return text[header.end():]
    return text


def strip_doctests(text: str) -> str:
    return DOCTEST_BLOCK.sub("", text)


def strip_rest_markup(text: str) -> str:
    text = REST_DIRECTIVE.sub("", text)
    text = REST_ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1] if "~" in m.group(0) else m.group(1), text)
    return REST_LITERAL.sub(r"\1", text).replace("::\n", ":\n")


def normalize_whitespace(text: str) -> str:
    text = TRAILING_SPACE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return BLANK_RUNS.sub("\n\n", text).strip()


STEPS: dict[str, Callable[[str], str]] = {
    "nfc": normalize_nfc,
    "control": remove_control_characters,
    "licence": strip_licence_header,
    "doctest": strip_doctests,
    "rest": strip_rest_markup,
    "whitespace": normalize_whitespace,
}
STEPS_BY_SOURCE = {
    "prose": ("nfc", "control", "doctest", "rest", "whitespace"),
    "code": ("nfc", "control", "licence", "whitespace"),
}
DEFAULT_STEPS = ("nfc", "control", "whitespace")  # every other source: stories, files, datasets


@dataclass
class StepReport:
    step: str
    documents: int = 0  # documents the step saw
    changed: int = 0  # documents it changed
    removed_chars: int = 0  # characters it removed in all (negative if it added some)
    examples: list[tuple[str, str]] = field(default_factory=list)  # (before, after) around the first change


def around_first_change(before: str, after: str) -> tuple[str, str]:
    """The two texts cut to a window around the first character where they differ."""
    start = next((i for i, (a, b) in enumerate(zip(before, after)) if a != b), min(len(before), len(after)))
    lo = max(0, start - EXAMPLE_WINDOW // 4)
    return before[lo: lo + EXAMPLE_WINDOW], after[lo: lo + EXAMPLE_WINDOW]


def clean_documents(documents: list[Document]) -> tuple[list[Document], list[StepReport]]:
    """Run each document through the steps for its source; drop documents left empty."""
    reports = {name: StepReport(name) for name in STEPS}
    cleaned = []
    for document in documents:
        text = document.text
        for name in STEPS_BY_SOURCE.get(document.source, DEFAULT_STEPS):
            new = STEPS[name](text)
            report = reports[name]
            report.documents += 1
            if new != text:
                report.changed += 1
                report.removed_chars += len(text) - len(new)
                if len(report.examples) < EXAMPLES_KEPT:
                    report.examples.append(around_first_change(text, new))
            text = new
        if text:
            cleaned.append(Document(text, document.source, document.meta))
    return cleaned, list(reports.values())
