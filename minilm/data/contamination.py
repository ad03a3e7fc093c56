"""Contamination: how many evaluation examples already occur in the training data.

A test example the model saw in training measures memory, not skill: a model can score well on it
by recalling the text, so the score no longer says how it does on new inputs. Large-model reports
therefore look for overlap between each benchmark and the training data (GPT-3 looked for shared
13-grams; PaLM flagged an example when at least 70% of its 8-grams occurred in training).

Why long n-grams. Texts are compared as sets of word n-grams (lower case, punctuation ignored).
Short n-grams ("in the end", "return the value of") are shared by any two texts of a language, so
they would flag everything. A run of 13 words almost never repeats by chance: two texts share one
mostly because one copies the other. (Even the story world, a grammar with stock phrases, shares
only about 1% of its 13-grams between stories of different seeds.)

Why a share threshold. An example is flagged when at least `flag_share` of its distinct n-grams
occur in training, not as soon as one does: one quotation, licence line or boilerplate sentence it
has in common with some training text should not flag a whole example, while a copy (whole, with
changed case or punctuation, inside a longer document, or with a sentence added) shares most of its
n-grams and is flagged.

Short examples. An example with fewer than n words is compared as one n-gram of all its words: its
share is 1.0 when that whole word sequence occurs inside one training text, else 0.0 (the index
keeps the normalised training text to look such phrases up). A phrase of only a few words occurs in
any large corpus by chance, so such flags say little.

Limits. Only surface copies are caught: a paraphrase, a translation or a reformatted copy with
other words shares few n-grams and passes. The n-grams are kept as Python's `hash()` of the joined
words: fast, and a collision of two 64-bit hashes is negligible, but the values change from one
process to the next, so an index is built and used in the same process.

    report = contamination_report(train_texts, {"qa": qa_prompts, "summary": summary_prompts})
    print(contamination_table(report))    # set, examples, flagged, share, mean overlap
    report["qa"].flagged                  # indices of the flagged examples
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from minilm.data.dedup import WORD
from minilm.data.documents import DataError


@dataclass(frozen=True)
class ContaminationConfig:
    n: int = 13  # words per n-gram (GPT-3's contamination study used 13): long enough to mean a copy
    flag_share: float = 0.5  # flag an example when at least this share of its n-grams occur in training

    def __post_init__(self) -> None:
        check_n(self.n)
        if not 0 < self.flag_share <= 1:
            raise ValueError(f"flag_share={self.flag_share} is outside (0, 1]; give the share of an "
                             f"example's n-grams that flags it, e.g. 0.5.")


def check_n(n: int) -> None:
    if n < 1:
        raise ValueError(f"n={n}: an n-gram needs at least one word; use n >= 1 (13 is usual).")


def words(text: str) -> list[str]:
    """The text's words, lower-cased, punctuation and whitespace ignored."""
    return WORD.findall(text.lower())


def ngram_keys(text: str, n: int) -> set[int]:
    """One integer per distinct word n-gram (a text shorter than n is one n-gram of all its words)."""
    check_n(n)
    return keys_of_words(words(text), n)


def keys_of_words(found: list[str], n: int) -> set[int]:
    if len(found) <= n:
        return {hash(" ".join(found))} if found else set()
    return {hash(" ".join(found[i: i + n])) for i in range(len(found) - n + 1)}


class NgramIndex:
    """Every word n-gram of the training texts, for fast lookups."""

    def __init__(self, texts: Iterable[str], n: int = 13) -> None:
        check_n(n)
        if isinstance(texts, str):
            raise DataError("the training texts are one string; pass a list of texts (one per document).")
        self.n = n
        self.keys: set[int] = set()
        lines = []  # each text's words, " a b c ", one per line: short examples are looked up here
        for text in texts:
            found = words(text)
            self.keys |= keys_of_words(found, n)
            lines.append(f" {' '.join(found)} ")
        self.phrases = "\n".join(lines)
        if not self.keys:
            raise DataError("no training texts with any words were given; pass the texts the model "
                            "was trained on (an exhausted iterator gives none).")

    def overlap(self, text: str) -> float:
        """The share of the text's distinct n-grams found in the index (0.0 for a text with no words)."""
        found = words(text)
        if not found:
            return 0.0
        if len(found) < self.n:
            return 1.0 if f" {' '.join(found)} " in self.phrases else 0.0
        keys = keys_of_words(found, self.n)
        return len(keys & self.keys) / len(keys)


@dataclass
class SetContamination:
    name: str  # the evaluation set
    examples: int  # how many examples it holds
    flagged: list[int]  # indices of the flagged examples
    mean_overlap: float  # the mean share of n-grams found in training, over all examples

    @property
    def share(self) -> float:
        return len(self.flagged) / self.examples if self.examples else 0.0


def checked_examples(name: str, examples: Sequence[str]) -> list[str]:
    """The set's texts as a list, or a DataError saying what is wrong with them."""
    if isinstance(examples, str):
        raise DataError(f"the evaluation set {name!r} is one string; pass a list of its examples' texts.")
    examples = list(examples)
    for index, example in enumerate(examples):
        if not isinstance(example, str):
            raise DataError(f"example {index} of the evaluation set {name!r} is a {type(example).__name__}, "
                            f"not a string; pass the examples' texts.")
    return examples


def contamination_report(train_texts: Iterable[str], eval_sets: dict[str, Sequence[str]],
                         config: ContaminationConfig = ContaminationConfig()) -> dict[str, SetContamination]:
    """For every evaluation set, which examples overlap the training texts."""
    sets = {name: checked_examples(name, examples) for name, examples in eval_sets.items()}
    index = NgramIndex(train_texts, config.n)
    report = {}
    for name, examples in sets.items():
        shares = [index.overlap(text) for text in examples]
        flagged = [i for i, share in enumerate(shares) if share >= config.flag_share]
        mean = sum(shares) / len(shares) if shares else 0.0
        report[name] = SetContamination(name, len(shares), flagged, mean)
    return report


def contamination_table(report: dict[str, SetContamination]) -> str:
    """A small text table: set, examples, flagged, share flagged, mean overlap."""
    width = max([len("set")] + [len(name) for name in report])
    rows = [f"{'set':<{width}}  {'examples':>8}  {'flagged':>7}  {'share':>6}  {'mean overlap':>12}"]
    for name, result in report.items():
        rows.append(f"{name:<{width}}  {result.examples:>8}  {len(result.flagged):>7}  "
                    f"{result.share:>6.1%}  {result.mean_overlap:>12.3f}")
    return "\n".join(rows)
