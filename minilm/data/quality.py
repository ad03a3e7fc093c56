"""Quality filters: cheap measurements of a document, each with a threshold, in the spirit of the
heuristic filters published for web text (Gopher's "MassiveText" rules, C4, RefinedWeb).

    kept, report = filter_documents(documents)
    report.dropped["alpha_share"]   # {"prose": 120}: documents dropped by that filter, per source

Each document is measured by every filter in order and dropped by the first one it fails, so each
drop has one reason. Code gets its own thresholds: it is meant to have symbols and short lines.

    length             characters, between min_chars and max_chars
    alpha_share        letters / non-space characters (tables, hex dumps, ASCII art score low)
    duplicate_lines    share of non-empty lines that repeat an earlier line (boilerplate, logs)
    top_trigram_share  share of words inside the most frequent word 3-gram (repetitive spam)
    symbol_share       characters that are neither letters, digits, spaces nor common punctuation
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from minilm.data.documents import Document

WORD = re.compile(r"\w+")
EXAMPLES_KEPT = 3  # dropped documents each filter keeps for its report
COMMON_PUNCTUATION = set(".,;:!?'\"()-")


@dataclass(frozen=True)
class QualityThresholds:
    min_chars: int = 100  # shorter documents (one-line docstrings) teach little context
    max_chars: int = 100_000  # longer ones are usually generated data, not writing
    min_alpha_share: float = 0.7  # prose is mostly letters
    max_duplicate_line_share: float = 0.3  # Gopher drops documents with over 30% duplicate lines
    max_top_trigram_share: float = 0.3  # Gopher: 0.18 on long web pages; short docstrings need slack
    max_symbol_share: float = 0.1  # markup, tables and code fragments in prose


TEXT_THRESHOLDS = QualityThresholds()
CODE_THRESHOLDS = QualityThresholds(min_chars=300, min_alpha_share=0.5, max_duplicate_line_share=0.5,
                                    max_symbol_share=0.3)  # code has symbols and repeated short lines


def alpha_share(text: str) -> float:
    visible = len(text) - sum(text.count(space) for space in " \n\t")
    return sum(ch.isalpha() for ch in text) / visible if visible else 0.0


def duplicate_line_share(text: str) -> float:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return 1 - len(set(lines)) / len(lines) if lines else 0.0


def top_trigram_share(text: str) -> float:
    """Share of words covered by the occurrences of the most frequent word 3-gram (if it repeats)."""
    words = WORD.findall(text.lower())
    trigrams = list(zip(words, words[1:], words[2:]))
    if not trigrams:
        return 0.0
    top, count = Counter(trigrams).most_common(1)[0]
    if count < 2:
        return 0.0
    covered = {i + k for i, trigram in enumerate(trigrams) if trigram == top for k in range(3)}
    return len(covered) / len(words)


def symbol_share(text: str) -> float:
    symbols = sum(1 for ch in text if not (ch.isalnum() or ch.isspace() or ch in COMMON_PUNCTUATION))
    return symbols / len(text) if text else 0.0


def measurements(text: str) -> dict[str, float]:
    return {"length": len(text), "alpha_share": alpha_share(text),
            "duplicate_lines": duplicate_line_share(text), "top_trigram_share": top_trigram_share(text),
            "symbol_share": symbol_share(text)}


def failed_filter(values: dict[str, float], limits: QualityThresholds) -> str | None:
    """The name of the first filter the measured values fail, or None."""
    if not limits.min_chars <= values["length"] <= limits.max_chars:
        return "length"
    if values["alpha_share"] < limits.min_alpha_share:
        return "alpha_share"
    if values["duplicate_lines"] > limits.max_duplicate_line_share:
        return "duplicate_lines"
    if values["top_trigram_share"] > limits.max_top_trigram_share:
        return "top_trigram_share"
    if values["symbol_share"] > limits.max_symbol_share:
        return "symbol_share"
    return None


@dataclass
class QualityReport:
    kept: dict[str, int] = field(default_factory=dict)  # source -> documents kept
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)  # filter -> source -> dropped
    examples: dict[str, list[dict]] = field(default_factory=dict)  # filter -> dropped examples


def filter_documents(documents: list[Document], text: QualityThresholds = TEXT_THRESHOLDS,
                     code: QualityThresholds = CODE_THRESHOLDS) -> tuple[list[Document], QualityReport]:
    """Keep the documents that pass every filter (code measured against `code`, the rest `text`)."""
    report = QualityReport()
    kept = []
    for document in documents:
        values = measurements(document.text)
        reason = failed_filter(values, code if document.source == "code" else text)
        if reason is None:
            kept.append(document)
            report.kept[document.source] = report.kept.get(document.source, 0) + 1
            continue
        per_source = report.dropped.setdefault(reason, {})
        per_source[document.source] = per_source.get(document.source, 0) + 1
        examples = report.examples.setdefault(reason, [])
        if len(examples) < EXAMPLES_KEPT:
            examples.append({"source": document.source, "value": values[reason], "text": document.text[:300],
                             "meta": document.meta})
    return kept, report
