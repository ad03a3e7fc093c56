"""The story world's made-up language: its own words and its own word order.

Translating a story is a mechanical rule, so a model that learns it has learnt something exact:

    words       every English word of the story world has one made-up word (names stay as they are)
    articles    a, an and the disappear
    adjectives  come after the noun they describe ("a red kite" -> "kite red")
    verbs       the first verb of each clause moves to the end of the clause (verb-final order)

    translate("One morning, Mia found a red kite near the river.")
    # 'Kuve toti, Mia kena ruba zuro sodi peda.'  (one morning, Mia kite red near river found.)

The lexicon is made from syllables by a fixed seed, so it is the same on every machine.
"""
from __future__ import annotations

import functools
import random
import re

from minilm.data.story_words import ADJECTIVES, ARTICLES, NAMES, NOUNS, TEMPLATE_WORDS, VERBS, WORDS

CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"
LEXICON_SEED = 1859  # fixes the made-up words
TOKEN = re.compile(r"\w+|[^\w\s]")
CLAUSE_ENDS = frozenset({",", ".", "!", "?"})


def english_vocabulary() -> list[str]:
    """Every lowercase English word the story grammar can write (names excluded), sorted."""
    listed = {word.lower() for words in WORDS.values() if words is not NAMES
              for phrase in words for word in re.findall(r"[A-Za-z]+", phrase)}
    return sorted(listed | set(TEMPLATE_WORDS) | NOUNS | ADJECTIVES | VERBS)


@functools.lru_cache(maxsize=1)
def lexicon() -> dict[str, str]:
    """English word -> made-up word: one distinct word of two or three syllables each."""
    rng = random.Random(LEXICON_SEED)
    made_up: dict[str, str] = {}
    used: set[str] = set()
    for word in english_vocabulary():
        while True:
            syllables = rng.choice((2, 2, 3))
            candidate = "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(syllables))
            if candidate not in used:
                break
        used.add(candidate)
        made_up[word] = candidate
    return made_up


@functools.lru_cache(maxsize=1)
def word_table() -> dict[str, tuple[str, str]]:
    """Each English word, as written in a story (any capitalisation), -> (made-up word, part of speech)."""
    table = {name: (name, "name") for name in NAMES}
    for word, made_up in lexicon().items():
        kind = ("article" if word in ARTICLES else "noun" if word in NOUNS else
                "adjective" if word in ADJECTIVES else "verb" if word in VERBS else "other")
        table[word] = table[word.capitalize()] = (made_up, kind)
    return table


def _reorder(clause: list[tuple[str, str]]) -> list[str]:
    """Drop articles, put adjectives after their noun, move the first verb to the end of the clause."""
    words: list[tuple[str, str]] = []
    adjectives: list[tuple[str, str]] = []
    for entry in clause:
        kind = entry[1]
        if kind == "adjective":
            adjectives.append(entry)
        elif kind != "article":
            words += [entry] + adjectives if kind == "noun" else adjectives + [entry]
            adjectives = []
    words += adjectives
    for i, (_, kind) in enumerate(words):
        if kind == "verb":
            words.append(words.pop(i))
            break
    return [made_up for made_up, _ in words]


def translate(text: str) -> str:
    """The text in the made-up language (word map + word-order rule above)."""
    table = word_table()
    out: list[str] = []
    clause: list[tuple[str, str]] = []
    sentence_start = True
    for token in TOKEN.findall(text):
        if token not in CLAUSE_ENDS:
            clause.append(table[token])
            continue
        words = _reorder(clause)
        if sentence_start:
            words[0] = words[0].capitalize()
        words[-1] += token
        out += words
        clause, sentence_start = [], token != ","
    return " ".join(out)
