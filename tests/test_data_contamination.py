"""Contamination: planted leaks of every kind are found and clean data is not flagged, overlap shares
equal a brute-force count with word tuples, short examples, bad input and the table."""
import random
import re

import pytest

from minilm.data.contamination import (ContaminationConfig, NgramIndex, SetContamination, contamination_report,
                                       contamination_table, ngram_keys, words)
from minilm.data.sources import stdlib_docstrings
from minilm.data.stories import StoryWorld

TRAIN_MODULES = ["json", "textwrap", "statistics"]
EVAL_MODULES = ["difflib", "base64", "heapq", "fractions"]  # other modules: other prose


@pytest.fixture(scope="module")
def texts():
    world = StoryWorld()
    return {"train_stories": [s.text for s in world.stories(300, seed=0)],
            "eval_stories": [s.text for s in world.stories(300, seed=1)],
            "train_docs": [d.text for d in stdlib_docstrings(TRAIN_MODULES)],
            # long docstrings only: test_short_examples covers texts of fewer than 13 words
            "eval_docs": [d.text for d in stdlib_docstrings(EVAL_MODULES) if len(d.text.split()) >= 20]}


def disguise(text: str, rng: random.Random) -> str:
    """The same words with other case, punctuation and whitespace between them."""
    text = "".join(c.upper() if c.isascii() and rng.random() < 0.5 else c for c in text)
    return re.sub(r"[^\w]+", lambda m: rng.choice([" ", "  --  ", ",\n\t", "... ", " (", ") ; "]), text) + " !!"


def test_planted_leaks_are_all_found_and_nothing_else_is_flagged(texts):
    rng = random.Random(0)
    train_stories, train_docs = texts["train_stories"], texts["train_docs"]
    stories, docs = list(texts["eval_stories"]), list(texts["eval_docs"])
    long_train_docs = [d for d in train_docs if len(d.split()) >= 60]
    long_eval_docs = [i for i, d in enumerate(docs) if len(d.split()) >= 60]
    assert len(stories) == 300 and len(docs) >= 40 and len(long_train_docs) >= 4 and len(long_eval_docs) >= 3
    leaks = {"stories": [3, 77, 150, 299], "docstrings": [0, 11, 25, 30]}
    stories[3] = train_stories[5]  # an exact copy
    stories[77] = disguise(train_stories[17], rng)  # changed case, punctuation and whitespace
    stories[299] = train_stories[40] + " Then a purple dragon sang to the moon all night long."  # a sentence added
    docs[0] = long_train_docs[0]
    docs[11] = disguise(long_train_docs[1], rng)
    docs[30] = long_train_docs[2] + " This sentence was added by whoever built the test set."
    # test examples embedded whole in longer training documents (a story, a docstring)
    extra_train = [train_docs[1] + "\n\n" + stories[150] + "\n\n" + train_stories[0],
                   "Notes copied from a forum post. " + docs[25] + " Thanks for reading!"]
    # near misses: one long quotation of training text in an otherwise new example must not flag it
    quoted = long_eval_docs[-3:]
    for i, source in zip(quoted, long_train_docs[3:]):
        docs[i] = docs[i] + " As another module puts it: " + " ".join(source.split()[:16])

    report = contamination_report(train_stories + train_docs + extra_train,
                                  {"stories": stories, "docstrings": docs})
    assert report["stories"].flagged == leaks["stories"]
    assert report["docstrings"].flagged == leaks["docstrings"]
    assert report["stories"].examples == 300 and report["stories"].share == 4 / 300
    index = NgramIndex(train_stories + train_docs + extra_train)
    for i in [3, 77, 150]:
        assert index.overlap(stories[i]) == 1.0
    for i in [0, 11, 25]:
        assert index.overlap(docs[i]) == 1.0
    assert 0.5 <= index.overlap(stories[299]) < 1.0 and 0.5 <= index.overlap(docs[30]) < 1.0
    for i in quoted:
        assert 0 < index.overlap(docs[i]) < 0.5, "the quotation should be found but not flag the example"


def test_clean_stories_of_another_seed_are_not_flagged_at_13_grams_but_share_short_ones(texts):
    """The story world is a grammar with stock phrases: 5-grams are shared by unrelated stories."""
    train = [s.text for s in StoryWorld().stories(1000, seed=0)]
    eval_sets = {"stories": texts["eval_stories"]}
    long_grams = contamination_report(train, eval_sets)["stories"]
    short_grams = contamination_report(train, eval_sets, ContaminationConfig(n=5))["stories"]
    assert long_grams.flagged == []
    assert long_grams.mean_overlap < 0.05
    assert short_grams.mean_overlap > 0.2, "unrelated stories should share many 5-grams"


VOCAB = ["fox", "the", "a", "kite", "café", "été", "naïve", "über", "x1", "snake_case", "42", "red"]
SEPARATORS = [" ", ", ", ".\n", " -- ", "!  ", "\t", " (", ") ", "'"]


def render(word_list: list[str], rng: random.Random) -> str:
    """The words as text: random case, random punctuation and whitespace between and around them."""
    cased = [rng.choice([w, w.upper(), w.capitalize()]) for w in word_list]
    return rng.choice(["", "\"", "  "]) + "".join(w + rng.choice(SEPARATORS) for w in cased)


def brute_overlap(query: list[str], train: list[list[str]], n: int) -> float:
    if not query:
        return 0.0
    if len(query) < n:
        k = len(query)
        return float(any(t[i: i + k] == query for t in train for i in range(len(t) - k + 1)))
    grams = {tuple(query[i: i + n]) for i in range(len(query) - n + 1)}
    train_grams = {tuple(t[i: i + n]) for t in train for i in range(len(t) - n + 1)}
    return len(grams & train_grams) / len(grams)


def test_overlap_equals_a_brute_force_count_of_word_tuples():
    rng = random.Random(1)
    for trial in range(40):
        n = rng.randint(1, 6)
        train = [[rng.choice(VOCAB[:6]) for _ in range(rng.randint(0, 30))] for _ in range(8)]
        queries = []
        for _ in range(25):
            source = rng.choice(train)
            start = rng.randint(0, len(source))
            copied = source[start: start + rng.randint(0, 15)]  # a piece of training text, maybe mixed
            fresh = [rng.choice(VOCAB) for _ in range(rng.randint(0, 10))]
            queries.append(rng.choice([copied, fresh, copied + fresh, fresh + copied, fresh[:2] + copied]))
        index = NgramIndex([render(t, rng) for t in train] + ["a"], n)  # "a": never empty
        train = train + [["a"]]
        shares = []
        for query in queries:
            text = render(query, rng)
            assert words(text) == query
            assert len(ngram_keys(text, n)) == len({tuple(query[i: i + n]) for i in range(len(query) - n + 1)}
                                                   or ({tuple(query)} if query else set()))
            shares.append(brute_overlap(query, train, n))
            assert index.overlap(text) == pytest.approx(shares[-1], abs=1e-12), (query, n)
        flag_share = rng.choice([0.3, 0.5, 1.0])
        result = contamination_report([" ".join(t) for t in train], {"q": [" ".join(q) for q in queries]},
                                      ContaminationConfig(n=n, flag_share=flag_share))["q"]
        assert result.flagged == [i for i, share in enumerate(shares) if share >= flag_share]
        assert result.mean_overlap == pytest.approx(sum(shares) / len(shares))


def test_short_examples_are_found_only_when_their_whole_word_sequence_occurs_in_training():
    train = ["Once upon a time, a shy fox named Mia lived in a snowy valley near the old mill.",
             "Return the sum of a and b.", "Leo found a kite."]
    index = NgramIndex(train)  # n = 13: every example below is shorter
    found = ["A SHY FOX -- named mia", "named Mia lived in a snowy valley near the old mill",
             "return the sum of a and b", "Leo found a kite", "once", "mill"]
    not_found = ["a fox named Mia", "fox shy", "old mill Return the", "Leo found a red kite", "kit", "ite",
                 "Mia lived in a snowy town"]
    for text in found:
        assert index.overlap(text) == 1.0, text
    for text in not_found:
        assert index.overlap(text) == 0.0, text
    assert index.overlap("") == 0.0 and index.overlap(" ... !") == 0.0
    report = contamination_report(train, {"short": found + not_found + ["", "?"]})["short"]
    assert report.flagged == list(range(len(found)))
    assert NgramIndex(train, n=2).overlap("fox shy") == 0.0 and NgramIndex(train, n=3).overlap("shy fox") == 1.0


def test_bad_input_gives_one_clear_line():
    train, good = ["Some training text here."], {"set": ["an example"]}
    cases = [(lambda: ContaminationConfig(n=0), "n=0"),
             (lambda: NgramIndex(train, n=-1), "n=-1"),
             (lambda: ContaminationConfig(flag_share=0), "flag_share=0 is outside"),
             (lambda: ContaminationConfig(flag_share=1.5), "flag_share=1.5 is outside"),
             (lambda: contamination_report(train, {"qa": "one story, not a list"}), "'qa' is one string"),
             (lambda: contamination_report(train, {"qa": ["text", 7]}), "example 1 .* not a string"),
             (lambda: contamination_report([], good), "no training texts"),
             (lambda: contamination_report(iter([]), good), "no training texts"),
             (lambda: contamination_report(["", " !? "], good), "no training texts"),
             (lambda: NgramIndex("a whole corpus as one string"), "training texts are one string")]
    for make, message in cases:
        with pytest.raises(ValueError, match=message) as error:
            make()
        assert "\n" not in str(error.value)
    assert ContaminationConfig(n=1, flag_share=1.0).flag_share == 1.0  # the edges are allowed


def test_the_table_shows_every_set_with_its_flagged_count():
    train = ["the quick brown fox jumps over the lazy dog near the river bank today"]
    copy, other = train[0], "a completely different sentence about kites and stars and the moon tonight"
    eval_sets = {"copies": [copy, copy.upper(), other], "clean": [other, other], "empty set": []}
    report = contamination_report(train, eval_sets)
    assert report["empty set"].share == 0.0
    lines = contamination_table(report).splitlines()
    assert "flagged" in lines[0] and len(lines) == 4
    for line, (name, expected) in zip(lines[1:], [("copies", 2), ("clean", 0), ("empty set", 0)]):
        assert line.startswith(name)
        columns = line[len(name):].split()
        assert int(columns[0]) == len(eval_sets[name]) and int(columns[1]) == expected
    assert isinstance(report["copies"], SetContamination)
