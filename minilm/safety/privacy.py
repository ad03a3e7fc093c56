"""PII masking: find e-mail addresses, API-key-like secrets, phone numbers and IPv4 addresses, and
replace each with a placeholder before the text is trained on.

    from minilm.safety.privacy import find_pii, mask_pii, mask_documents
    find_pii("Write to mia@example.org")   # [PiiMatch(kind='email', start=9, end=24, text='mia@example.org')]
    mask_pii("Write to mia@example.org")   # 'Write to [email]'
    masked, counts = mask_documents(texts)  # counts: {'email': 3, 'key': 0, 'phone': 1, 'ip': 0}

Chapter 1 found addresses with one inline pattern; this is the pipeline step, with rules chosen
so that ordinary prose and numbers survive:

    email  local@domain.tld: the domain needs a dot and a top-level part of 2+ letters ("a@b" is not one)
    key    sk-... or key-... followed by 16+ letters and digits, or a run of 32+ hex digits (a token, a hash)
    phone  + and a country code, then 8 to 15 digits in groups ("+44 20 7946 0958"); or a national
           number written in groups: "(555) 123-4567", "555-123-4567", "555.123.4567", "020 7946 0958"
    ip     four dot-separated numbers 0-255 ("192.168.0.1"), not part of a longer dotted run

Decided and tested: a bare run of digits is not a phone (it may be a year, a count, a door code;
guessing would mask too much), nor is a date (2024-01-15) or a version number (3.12.1, 10.0.19041);
a four-part version such as 1.2.3.4 cannot be told from an address and is masked as one. Where
matches overlap, the one that starts first wins, then the longer one.

What masking misses: a secret in plain words ("the door code is 48213") looks like any other
sentence. Chapter 8's canaries measure what such a miss costs.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

PLACEHOLDERS = {"email": "[email]", "key": "[key]", "phone": "[phone]", "ip": "[ip]"}
OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"  # 0-255, no leading zeros
PATTERNS = {  # in order of precedence when two kinds match the same span
    "email": re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![\w-])"),
    "key": re.compile(r"(?<![A-Za-z0-9])(?:(?:sk|key)-[A-Za-z0-9]{16,}|[0-9a-fA-F]{32,})(?![A-Za-z0-9])"),
    "ip": re.compile(rf"(?<![\d.]){OCTET}(?:\.{OCTET}){{3}}(?!\d|\.\d)"),
    "phone": re.compile(r"(?<![\w+.-])(?:"
                        r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}"  # international: +CC and groups
                        r"|\(\d{3}\) ?\d{3}[ .-]\d{4}"  # (555) 123-4567
                        r"|\d{3}([.-])\d{3}\1\d{4}"  # 555-123-4567, 555.123.4567
                        r"|0\d{2,4} \d{3,4} ?\d{3,4}"  # 020 7946 0958, 07700 900123
                        r")(?![\w-]|\.\d)"),
}
PHONE_DIGITS = range(7, 16)  # ITU E.164: at most 15 digits; fewer than 7 is a code, not a number


@dataclass(frozen=True)
class PiiMatch:
    """One piece of personal or secret data found in a text."""

    kind: str  # email, key, phone or ip
    start: int  # where it starts in the text (a character index)
    end: int  # where it ends (exclusive): text[start:end] is the match
    text: str  # the matched characters


def candidate_matches(text: str) -> list[PiiMatch]:
    """Every match of every kind, overlapping ones included."""
    found = []
    for kind, pattern in PATTERNS.items():
        for match in pattern.finditer(text):
            digits = sum(c.isdigit() for c in match.group())
            if kind == "phone" and digits not in PHONE_DIGITS:
                continue
            found.append(PiiMatch(kind, match.start(), match.end(), match.group()))
    return found


def find_pii(text: str) -> list[PiiMatch]:
    """The PII in `text`, in order and not overlapping: the earliest match wins, then the longest,
    then the kind listed first in PATTERNS."""
    if not isinstance(text, str):
        raise ValueError(f"find_pii takes a string, got {type(text).__name__}; pass each document's text.")
    precedence = list(PATTERNS)
    ordered = sorted(candidate_matches(text), key=lambda m: (m.start, m.start - m.end, precedence.index(m.kind)))
    kept, end = [], 0
    for match in ordered:
        if match.start >= end:
            kept.append(match)
            end = match.end
    return kept


def replace_matches(text: str, matches: Sequence[PiiMatch]) -> str:
    """`text` with each of `matches` (in order, not overlapping) replaced by its kind's placeholder."""
    pieces, position = [], 0
    for match in matches:
        pieces += [text[position:match.start], PLACEHOLDERS[match.kind]]
        position = match.end
    return "".join(pieces) + text[position:]


def mask_pii(text: str) -> str:
    """`text` with everything find_pii finds replaced by its placeholder ("[email]", "[key]", ...)."""
    return replace_matches(text, find_pii(text))


def mask_documents(texts: Sequence[str]) -> tuple[list[str], dict[str, int]]:
    """Every text masked, and how many matches of each kind were replaced (every kind listed)."""
    if isinstance(texts, str):
        raise ValueError("mask_documents takes a list of documents, not one string; use mask_pii for one text.")
    counts, masked = Counter(), []
    for text in texts:
        matches = find_pii(text)
        counts.update(match.kind for match in matches)
        masked.append(replace_matches(text, matches))
    return masked, {kind: counts[kind] for kind in PLACEHOLDERS}
