"""Statistics of a set of documents, per source: how many, how long, how many distinct words, and
which scripts their letters are written in.

    rows = source_statistics(documents)   # one dict per source, ready for a table
"""
from __future__ import annotations

import re
import statistics
import unicodedata
from collections import Counter, defaultdict

from minilm.data.documents import Document

WORD = re.compile(r"\w+")
NON_ASCII_LETTER = re.compile(r"[^\x00-\x7f]")


def script_counts(text: str) -> Counter:
    """Letters per script (the first word of the Unicode name: LATIN, GREEK, CJK, ...)."""
    counts = Counter({"LATIN": sum(1 for ch in text if ch.isascii() and ch.isalpha())})
    for ch in NON_ASCII_LETTER.findall(text):
        if ch.isalpha():
            counts[unicodedata.name(ch, "UNKNOWN").split()[0]] += 1
    return counts


def source_statistics(documents: list[Document]) -> list[dict]:
    """Per source: documents, characters, length quartiles, vocabulary size, share of Latin letters."""
    by_source: dict[str, list[Document]] = defaultdict(list)
    for document in documents:
        by_source[document.source].append(document)
    rows = []
    for source, docs in by_source.items():
        lengths = [len(d.text) for d in docs]
        vocabulary: set[str] = set()
        scripts: Counter = Counter()
        for d in docs:
            vocabulary.update(WORD.findall(d.text.lower()))
            scripts += script_counts(d.text)
        letters = sum(scripts.values())
        quartiles = statistics.quantiles(lengths, n=4) if len(lengths) > 1 else lengths * 3
        rows.append({"source": source, "documents": len(docs), "characters": sum(lengths),
                     "median_chars": statistics.median(lengths), "q1_chars": quartiles[0],
                     "q3_chars": quartiles[2], "max_chars": max(lengths), "vocabulary": len(vocabulary),
                     "latin_letters": scripts["LATIN"] / letters if letters else 0.0,
                     "other_scripts": ", ".join(f"{name} {n}" for name, n in scripts.most_common()
                                                if name != "LATIN")})
    return rows
