"""The corpus every later chapter trains on: sources -> clean -> filter -> deduplicate -> mix -> split,
stored as a `datasets.DatasetDict` in the cache and rebuilt only when its inputs change.

    corpus = build_corpus(CorpusConfig.for_preset())              # prose + code + stories
    stories = build_corpus(CorpusConfig.for_preset(sources={"stories": 1.0}))   # stories only
    corpus["train"][0]   # {"text": ..., "source": "prose", "log_prob": nan, "meta": '{"module": ...}'}
    corpus_report(config)  # what each step did: counts, examples, mixture, split sizes, story entropy

Columns: `text`; `source` ("prose", "code", "stories", "files", "hf:<name>"); `log_prob`, the exact
natural-log probability of a story (NaN for every other source); `meta`, a JSON string (for a
story: its facts: characters, place, object, event, mood, summary, qa, translation).

Sources (the keys of `CorpusConfig.sources`, each with its share of the corpus's characters):
"prose" and "code" (the standard library), "stories" (the story world), "files" (the paths in
`text_files`), and "hf:<dataset name>" (any `datasets.load_dataset` name, online or cached).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from minilm.cache import cached_artifact
from minilm.data.clean import clean_documents
from minilm.data.dedup import (DedupReport, near_duplicate_clusters, remove_exact_duplicates,
                               remove_near_duplicates, text_hash)
from minilm.data.documents import DataError, Document, EmptyCorpusError
from minilm.data.quality import CODE_THRESHOLDS, TEXT_THRESHOLDS, QualityThresholds, filter_documents
from minilm.data.sources import code_chunks, hf_documents, stdlib_code, stdlib_docstrings, stdlib_root, text_files
from minilm.data.splits import group_keys, mix_sources, split_documents
from minilm.data.stats import source_statistics
from minilm.data.stories import StoryConfig, StoryWorld, entropy_from_log_probs
from minilm.presets import choose

BUILT_IN_SOURCES = ("prose", "code", "stories", "files")
# The standard-library modules the smoke preset reads (a few seconds instead of a minute);
# they include near duplicates (urllib.parse, statistics) and licence headers (tomllib).
SMOKE_MODULES = ("posixpath", "ntpath", "genericpath", "json", "textwrap", "statistics", "fractions",
                 "urllib", "string", "heapq", "bisect", "shlex", "calendar", "tomllib")
PRESET_SIZES = {
    "smoke": {"stories": 400, "stdlib_modules": SMOKE_MODULES},
    "cpu": {"stories": 5000, "stdlib_modules": None},
    "gpu": {"stories": 20000, "stdlib_modules": None},
}


@dataclass(frozen=True)
class CorpusConfig:
    # source -> share of the corpus's characters; {"stories": 1.0} is a stories-only corpus
    sources: dict[str, float] = field(default_factory=lambda: {"prose": 0.4, "code": 0.2, "stories": 0.4})
    stories: int = 5000  # how many stories the story world writes (before mixing)
    seed: int = 0  # seeds the story world; every other step is deterministic
    story_config: StoryConfig = field(default_factory=StoryConfig)  # which story world
    stdlib_modules: tuple[str, ...] | None = None  # top-level standard-library modules to read (None: all)
    text_files: tuple[str, ...] = ()  # local UTF-8 files for the source "files", one document each
    code_chunk_chars: int = 4000  # code enters cut between definitions into pieces at most this long
    hf_split: str = "train"  # for "hf:<name>" sources: the split,
    hf_text_column: str = "text"  # the column holding the text,
    hf_limit: int | None = 20_000  # and at most this many rows
    split_fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)  # train, validation, test
    group_files: bool = True  # a file's pieces and docstrings share a split (False leaks: chapter 7 shows it)
    text_quality: QualityThresholds = TEXT_THRESHOLDS  # filters for prose, stories, files, datasets
    code_quality: QualityThresholds = CODE_THRESHOLDS  # filters for code
    near_duplicate_threshold: float = 0.7  # Jaccard similarity of 5-word shingles that counts as "near"
    remove_near_duplicates: bool = True  # keep one document per near-duplicate cluster
    shingle_size: int = 5  # words per shingle
    num_perm: int = 128  # MinHash functions per signature
    bands: int = 32  # LSH bands (num_perm / bands rows each)

    @classmethod
    def for_preset(cls, preset: str | None = None, **overrides) -> "CorpusConfig":
        """The config sized for a preset (default: the one in force), with any field overridden."""
        return cls(**{**choose(PRESET_SIZES, preset), **overrides})


def stories_as_documents(config: CorpusConfig) -> list[Document]:
    world = StoryWorld(config.story_config)
    return [Document(story.text, "stories", {"log_prob": story.log_prob,
                                             "facts": dataclasses.asdict(story.facts)})
            for story in world.stories(config.stories, config.seed)]


def load_source(name: str, config: CorpusConfig) -> list[Document]:
    """The raw documents of one source."""
    if name == "prose":
        return list(stdlib_docstrings(config.stdlib_modules))
    if name == "code":
        files = stdlib_code(config.stdlib_modules)
        return [piece for file in files for piece in code_chunks(file, config.code_chunk_chars)]
    if name == "stories":
        return stories_as_documents(config)
    if name == "files":
        if not config.text_files:
            raise DataError("the source 'files' needs paths: CorpusConfig(text_files=('a.txt', ...)).")
        return list(text_files(config.text_files))
    if name.startswith("hf:"):
        return list(hf_documents(name[3:], config.hf_split, config.hf_text_column, limit=config.hf_limit))
    raise DataError(f"unknown source {name!r}; use {', '.join(BUILT_IN_SOURCES)} or 'hf:<dataset name>'.")


def check_config(config: CorpusConfig) -> None:
    if not config.sources:
        raise EmptyCorpusError("CorpusConfig.sources is empty: name at least one source, "
                               "e.g. sources={'stories': 1.0}.")
    if any(not weight > 0 for weight in config.sources.values()):
        raise DataError(f"mixing weights must be positive numbers, not {config.sources}; "
                        f"leave a source out instead of giving it weight 0.")


@dataclass
class PipelineResult:
    splits: dict[str, list[Document]]  # split name -> documents
    report: dict  # what each step did (JSON-ready)


def run_pipeline(config: CorpusConfig) -> PipelineResult:
    """Every step from raw sources to splits, with a report of what each step did."""
    check_config(config)
    raw = [document for name in config.sources for document in load_source(name, config)]
    if not raw:
        raise EmptyCorpusError(f"the sources {list(config.sources)} yielded no documents at all; "
                               f"check stdlib_modules, text_files or the dataset name.")
    cleaned, cleaning = clean_documents(raw)
    filtered, quality = filter_documents(cleaned, config.text_quality, config.code_quality)
    dedup = DedupReport()
    unique = remove_exact_duplicates(filtered, dedup)
    leaders = near_duplicate_clusters(unique, dedup, config.near_duplicate_threshold, config.shingle_size,
                                      config.num_perm, config.bands)
    keys = [text_hash(unique[leader].text) for leader in leaders]  # one key per near-duplicate cluster
    if config.remove_near_duplicates:
        unique = remove_near_duplicates(unique, leaders, dedup)
        keys = [key for key, leader, index in zip(keys, leaders, range(len(leaders))) if leader == index]
    for document, key in zip(unique, keys):
        document.meta = {**document.meta, "cluster": key[:16]}
    mixed, mixed_keys, mixing = mix_sources(unique, config.sources, keys)
    groups = [document.meta.get("path") if config.group_files else None for document in mixed]
    splits = split_documents(mixed, group_keys(mixed_keys, groups), config.split_fractions)
    report = {
        "raw": source_statistics(raw),
        "cleaning": [dataclasses.asdict(step) for step in cleaning],
        "quality": dataclasses.asdict(quality),
        "dedup": dataclasses.asdict(dedup),
        "mixing": dataclasses.asdict(mixing),
        "splits": {name: source_statistics(docs) for name, docs in splits.items()},
        "story_entropy": {name: split_entropy(docs) for name, docs in splits.items()},
    }
    return PipelineResult(splits, report)


def split_entropy(documents: list[Document]) -> dict | None:
    """The exact entropy of the stories among `documents` (None if there are none)."""
    stories = [d for d in documents if d.source == "stories"]
    if not stories:
        return None
    return entropy_from_log_probs([d.text for d in stories], [d.meta["log_prob"] for d in stories])


@contextlib.contextmanager
def quiet_datasets():
    """Silence `datasets` progress bars for a moment (they would clutter notebook outputs)."""
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def to_dataset_dict(splits: dict[str, list[Document]]) -> datasets.DatasetDict:
    features = datasets.Features({"text": datasets.Value("string"), "source": datasets.Value("string"),
                                  "log_prob": datasets.Value("float64"), "meta": datasets.Value("string")})
    return datasets.DatasetDict({name: datasets.Dataset.from_dict({
        "text": [d.text for d in docs],
        "source": [d.source for d in docs],
        "log_prob": [d.meta.get("log_prob", math.nan) for d in docs],
        "meta": [json.dumps(d.meta, sort_keys=True) for d in docs],
    }, features=features) for name, docs in splits.items()})


def documents_of(split: datasets.Dataset) -> list[Document]:
    """The rows of one split of a built corpus as Documents again (the inverse of `to_dataset_dict`)."""
    return [Document(row["text"], row["source"], json.loads(row["meta"])) for row in split]


def cache_inputs(config: CorpusConfig) -> dict:
    files = [(str(Path(p).resolve()), Path(p).stat().st_size, Path(p).stat().st_mtime_ns)
             for p in config.text_files if Path(p).is_file()]
    return {"config": dataclasses.asdict(config), "python": sys.version, "stdlib": str(stdlib_root()),
            "files": files}


def corpus_path(config: CorpusConfig | None = None) -> Path:
    """The cache folder holding the corpus (built now if no finished copy has these inputs)."""
    config = config or CorpusConfig.for_preset()

    def build(folder: Path) -> None:
        result = run_pipeline(config)
        with quiet_datasets():
            to_dataset_dict(result.splits).save_to_disk(str(folder / "dataset"))
        (folder / "report.json").write_text(json.dumps(result.report, indent=1, default=str))

    data_modules = sorted(Path(__file__).parent.glob("*.py"))  # a change to any step rebuilds the corpus
    return cached_artifact("corpus", cache_inputs(config), build, code=data_modules)


def build_corpus(config: CorpusConfig | None = None) -> datasets.DatasetDict:
    """The corpus as a DatasetDict with splits train, validation and test (cached on disk)."""
    return datasets.load_from_disk(str(corpus_path(config) / "dataset"))


def corpus_report(config: CorpusConfig | None = None) -> dict:
    """What each step of the corpus's build did (see `run_pipeline`)."""
    return json.loads((corpus_path(config) / "report.json").read_text())


def dataset_entropy(split: datasets.Dataset) -> dict | None:
    """The exact entropy of the stories in one split of a built corpus (None if it has none)."""
    stories = [i for i, source in enumerate(split["source"]) if source == "stories"]
    if not stories:
        return None
    rows = split.select(stories)
    return entropy_from_log_probs(rows["text"], rows["log_prob"])
