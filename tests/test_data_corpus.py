"""The whole pipeline: sources, the stored corpus, its cache, leakage-free splits and clear errors."""
import inspect
import json
import math

import pytest

from minilm.data import (CorpusConfig, DatasetUnavailableError, Document, EmptyCorpusError, MissingFileError, NotUtf8Error,
                         StoryWorld, build_corpus, corpus_path, corpus_report, dataset_entropy, run_pipeline)
from minilm.data.dedup import jaccard, shingles
from minilm.data.sources import code_chunks, docstrings, stdlib_code, stdlib_files, stdlib_root, text_files
from minilm.data.splits import SPLITS

SMALL_MODULES = ("posixpath", "ntpath", "genericpath", "json", "textwrap", "statistics")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILM_CACHE", str(tmp_path / "cache"))


def small_config(**overrides) -> CorpusConfig:
    return CorpusConfig(**{"stories": 200, "stdlib_modules": SMALL_MODULES, **overrides})


def test_docstrings_read_with_ast_match_the_imported_objects():
    import json.decoder as module

    source = inspect.getsource(module)
    found = {name: text for name, text, _ in docstrings(source)}
    assert found[""] == inspect.getdoc(module)
    assert found["JSONDecoder.decode"] == inspect.getdoc(module.JSONDecoder.decode)
    assert found["JSONDecoder"] == inspect.getdoc(module.JSONDecoder)


def test_stdlib_files_skip_tests_and_third_party_packages():
    files = stdlib_files()
    relative = [f.relative_to(stdlib_root()).parts for f in files]
    assert len(files) > 300
    assert not any({"site-packages", "test", "tests"} & set(parts) for parts in relative)
    only = stdlib_files(["json"])
    assert only and all(f.relative_to(stdlib_root()).parts[0] == "json" for f in only)


MODULE = """import os

# a note about f
@staticmethod
def f():
    return 1


class Box:
    \"\"\"A box.\"\"\"

    def open(self):
        return "open"

    # a note about shut
    def shut(self):
        return "shut"


X = 1
"""


@pytest.mark.parametrize("max_chars", [1, 40, 80, 10_000])
def test_code_chunks_cut_between_definitions_and_join_back(max_chars):
    pieces = code_chunks(Document(MODULE, "code", {"path": "m.py"}), max_chars)
    assert "".join(p.text for p in pieces) == MODULE
    firsts = [p.text.lstrip("\n").splitlines()[0] for p in pieces]
    allowed = {"import os", "# a note about f", "class Box:", "    def open(self):", "    # a note about shut", "X = 1"}
    assert set(firsts) <= allowed  # never a decorator or body line without what it belongs to
    if max_chars == 1:
        assert len(pieces) == len(allowed)
    if max_chars == 10_000:
        assert len(pieces) == 1
    assert all(p.meta["path"] == "m.py" and "-" in p.meta["lines"] for p in pieces)


def test_code_chunks_keep_the_standard_library_readable_and_whole():
    files = list(stdlib_code(modules=["json", "textwrap"]))
    for file in files:
        pieces = code_chunks(file, 2000)
        assert "".join(p.text for p in pieces) == file.text
        for piece in pieces:
            first, last = (int(n) for n in piece.meta["lines"].split("-"))
            assert piece.text == "".join(file.text.splitlines(keepends=True)[first - 1:last])
    assert sum(len(code_chunks(f, 2000)) for f in files) > 2 * len(files)
    broken = Document("def f(:\n" * 500, "code")
    assert code_chunks(broken, 100) == [broken]


def test_built_corpus_has_the_promised_splits_and_columns():
    corpus = build_corpus(small_config())
    assert list(corpus) == list(SPLITS)
    assert corpus["train"].column_names == ["text", "source", "log_prob", "meta"]
    train = corpus["train"]
    assert set().union(*(corpus[name]["source"] for name in SPLITS)) == {"prose", "code", "stories"}
    exact = {s.text: s.log_prob for s in StoryWorld().stories(200, seed=0)}
    for row in train:
        meta = json.loads(row["meta"])
        if row["source"] == "stories":
            assert row["log_prob"] == pytest.approx(exact[row["text"]], abs=1e-12)
            assert meta["facts"]["mood"] in ("happy", "sad") and meta["facts"]["translation"]
        else:
            assert math.isnan(row["log_prob"]) and "module" in meta
    assert dataset_entropy(train)["nats"] == pytest.approx(
        -sum(lp for lp, s in zip(train["log_prob"], train["source"]) if s == "stories"))


def test_mixture_follows_the_weights():
    config = small_config(sources={"prose": 1.0, "stories": 1.0})
    mixing = corpus_report(config)["mixing"]
    docs = [d for split in run_pipeline(config).splits.values() for d in split]
    chars = {source: sum(len(d.text) for d in docs if d.source == source) for source in ("prose", "stories")}
    assert chars == mixing["taken"]
    assert abs(chars["prose"] - chars["stories"]) <= max(len(d.text) for d in docs)  # equal, to one document
    assert min(chars.values()) == min(mixing["available"].values())  # the scarcer source is used whole


def test_the_corpus_is_cached_and_rebuilt_when_inputs_change():
    config = small_config(sources={"stories": 1.0})
    first = corpus_path(config)
    stamp = (first / "artifact.json").stat().st_mtime_ns
    assert corpus_path(config) == first and (first / "artifact.json").stat().st_mtime_ns == stamp
    assert corpus_path(small_config(sources={"stories": 1.0}, seed=1)) != first


def test_near_duplicates_never_straddle_splits():
    config = small_config(sources={"prose": 1.0}, remove_near_duplicates=False, split_fractions=(0.5, 0.25, 0.25),
                          near_duplicate_threshold=0.5)
    result = run_pipeline(config)
    assert result.report["dedup"]["near_pairs"] > 0, "the test needs near duplicates in its input"
    sets = {name: [shingles(d.text) for d in docs] for name, docs in result.splits.items()}
    for first, second in [("train", "validation"), ("train", "test"), ("validation", "test")]:
        for a in sets[first]:
            assert all(jaccard(a, b) < 0.5 for b in sets[second])


def test_local_files_run_through_the_same_pipeline(tmp_path):
    note = tmp_path / "note.txt"
    note.write_text("A garden needs water, light and patience. Plant the seeds in spring, keep the soil "
                    "moist, and pull the weeds before they flower. By summer the beds are full: beans, "
                    "peas and a few tomatoes for the cafe\u0301", encoding="utf-8")
    result = run_pipeline(small_config(sources={"files": 1.0}, text_files=(str(note),), split_fractions=(1, 0, 0)))
    [document] = result.splits["train"]
    assert document.source == "files" and document.text.endswith("\u00e9")  # cleaned (NFC)


def test_missing_and_non_utf8_files_give_clear_errors(tmp_path):
    with pytest.raises(MissingFileError, match="does not exist"):
        list(text_files([tmp_path / "nope.txt"]))
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\u00e9".encode("latin-1"))
    with pytest.raises(NotUtf8Error, match="not UTF-8.*iconv"):
        list(text_files([latin]))


def test_empty_corpora_give_clear_errors(tmp_path):
    with pytest.raises(EmptyCorpusError, match="at least one source"):
        run_pipeline(CorpusConfig(sources={}))
    short = tmp_path / "short.txt"
    short.write_text("Too short.", encoding="utf-8")
    with pytest.raises(EmptyCorpusError, match="no documents left"):
        run_pipeline(small_config(sources={"files": 1.0}, text_files=(str(short),)))


def test_an_unreachable_dataset_gives_a_clear_error(monkeypatch):
    import datasets

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):  # the name differs between datasets versions
        monkeypatch.setattr(datasets.config, name, True, raising=False)
    with pytest.raises(DatasetUnavailableError, match="once while online"):
        run_pipeline(small_config(sources={"hf:minilm-course/no-such-dataset": 1.0}))


@pytest.mark.parametrize("documents", [3, 4, 5])
def test_a_few_files_make_splits_that_work(tmp_path, monkeypatch, documents):
    from minilm.tokens import prepare_tokens

    monkeypatch.setenv("MINILM_CACHE", str(tmp_path / "cache"))
    paths = []
    for index, story in enumerate(StoryWorld().stories(documents, seed=9)):
        paths.append(tmp_path / f"story{index}.txt")
        paths[-1].write_text(story.text, encoding="utf-8")
    corpus = build_corpus(small_config(sources={"files": 1.0}, text_files=tuple(map(str, paths))))
    assert all(len(corpus[split]) >= 1 for split in ("train", "validation", "test"))
    assert sum(len(corpus[split]) for split in corpus) == documents
    assert len(prepare_tokens(corpus, 300).streams["validation"]) > 0


@pytest.mark.parametrize("documents", [1, 2])
def test_too_few_files_name_the_minimum(tmp_path, documents):
    paths = []
    for index, story in enumerate(StoryWorld().stories(documents, seed=9)):
        paths.append(tmp_path / f"story{index}.txt")
        paths[-1].write_text(story.text, encoding="utf-8")
    with pytest.raises(EmptyCorpusError, match=f"has {documents} distinct document.*give at least 3 documents"):
        run_pipeline(small_config(sources={"files": 1.0}, text_files=tuple(map(str, paths))))
