"""Cleaning steps and quality filters, on small texts whose right answer is known by hand."""
import unicodedata

import pytest

from minilm.data import Document, StoryWorld
from minilm.data.clean import (clean_documents, normalize_nfc, normalize_whitespace, remove_control_characters,
                               strip_doctests, strip_licence_header, strip_rest_markup)
from minilm.data.sources import stdlib_root
from minilm.data.quality import (QualityThresholds, alpha_share, duplicate_line_share, filter_documents,
                                 symbol_share, top_trigram_share)

NATO = ("alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november oscar papa "
        "quebec romeo sierra tango").split()


def test_nfc_joins_a_letter_and_its_combining_accent():
    decomposed = "Cafe\u0301 nai\u0308ve"
    assert normalize_nfc(decomposed) == "Caf\u00e9 na\u00efve"
    assert all(unicodedata.is_normalized("NFC", ch) for ch in normalize_nfc(decomposed))


def test_control_characters_go_but_tabs_and_newlines_stay():
    assert remove_control_characters("a\x00b\tc\nd\u200be\ufeff\x1b[0m") == "ab\tc\nde[0m"


def test_licence_header_is_removed_only_when_it_is_a_licence():
    licensed = "#!/usr/bin/env python\n# Copyright (C) 2001 PSF\n# Author: someone\n\nimport os\n"
    assert strip_licence_header(licensed) == "import os\n"
    plain = "# A helper module.\n\nimport os\n"
    assert strip_licence_header(plain) == plain


def test_doctest_examples_are_removed_with_their_output():
    text = "Add numbers.\n\n>>> add(1, 2)\n3\n>>> add(\n...   4, 5)\n9\n\nThe end."
    assert strip_doctests(text) == "Add numbers.\n\n\n\nThe end."


def test_rest_markup_is_unwrapped():
    text = "See :func:`os.path.join` and :class:`~collections.OrderedDict`, use ``None``.\n" \
           ".. versionadded:: 3.2\nExample::\n    code\n"
    assert strip_rest_markup(text) == "See os.path.join and OrderedDict, use None.\nExample:\n    code\n"


def test_whitespace_is_tidied():
    assert normalize_whitespace("  \r\nline one   \r\n\n\n\n\nline two\t\n\n") == "line one\n\nline two"


def test_cleaning_reports_what_each_step_changed():
    docs = [Document("Cafe\u0301.  \n", "prose"), Document("# Copyright X\nx = 1\n", "code"),
            Document("already clean", "stories")]
    cleaned, reports = clean_documents(docs)
    by_step = {r.step: r for r in reports}
    assert [d.text for d in cleaned] == ["Caf\u00e9.", "x = 1", "already clean"]
    assert by_step["nfc"].changed == 1 and by_step["nfc"].removed_chars == 1
    assert by_step["licence"].documents == 1 and by_step["licence"].changed == 1
    assert by_step["doctest"].documents == 1  # prose only
    assert by_step["whitespace"].changed == 2
    assert by_step["nfc"].examples[0][1].startswith("Caf\u00e9")


def test_quality_measures_on_hand_counted_texts():
    assert alpha_share("ab 12\ncd") == pytest.approx(4 / 6)
    assert duplicate_line_share("x\ny\nx\n\nx") == pytest.approx(2 / 4)
    words = "a b c a b c a b c d".split()  # "a b c" occurs 3 times: 9 of 10 words
    assert top_trigram_share(" ".join(words)) == pytest.approx(9 / 10)
    assert top_trigram_share("w w w w w x") == pytest.approx(5 / 6)  # overlapping occurrences count once
    assert top_trigram_share("one two three four") == 0.0
    assert symbol_share("a{b}|c") == pytest.approx(3 / 6)


def test_each_filter_drops_its_bad_document_and_keeps_good_prose():
    good = ("This function returns the sum of its arguments, and it raises an error when one of them "
            "is not a number. It never changes its inputs, so it is safe to call at any time.")
    bad = {
        "length": "Too short.",
        "alpha_share": "0x1F 0x2A 0x3B 0x4C " * 20,
        "duplicate_lines": "\n".join(["same line here"] * 10 + ["another line", "and one more"]) * 3,
        "top_trigram_share": "buy it now " * 40,
        "symbol_share": " ".join(f"{word}|" for word in NATO),
    }
    docs = [Document(good, "prose")] + [Document(text, "prose", {"expect": name}) for name, text in bad.items()]
    kept, report = filter_documents(docs)
    assert [d.text for d in kept] == [good]
    for name in bad:
        assert report.dropped[name] == {"prose": 1}, name
        assert report.examples[name][0]["meta"]["expect"] == name


def test_code_has_its_own_thresholds():
    code = (stdlib_root() / "colorsys.py").read_text(encoding="utf-8")  # real code, full of digits
    kept, _ = filter_documents([Document(code, "code"), Document(code, "prose")])
    assert [d.source for d in kept] == ["code"]


def test_stories_pass_every_filter():
    stories = [Document(s.text, "stories") for s in StoryWorld().stories(500, seed=0)]
    kept, report = filter_documents(stories)
    assert len(kept) == len(stories), report.dropped


def test_thresholds_are_configurable():
    doc = Document("word " * 30, "prose")
    assert filter_documents([doc], text=QualityThresholds(min_chars=10, max_top_trigram_share=1.0))[0]
    assert not filter_documents([doc], text=QualityThresholds(min_chars=1000))[0]
