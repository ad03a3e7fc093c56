"""Chapter 7: the corpus as it stands after each step of chapter 1's pipeline, to measure what each
step is worth.

    held_out = documents_of(build_corpus(config)["validation"])  # one fixed, clean held-out set
    stages = pipeline_stages(config, held_out)                   # {"raw": [...], "cleaned": [...], ...}
    corpus = mixed(stages["exact dedup"], config)               # mixed by the config's weights

`pipeline_stages` runs the steps of `minilm.data.corpus.run_pipeline` one at a time and keeps what
each one hands on: raw -> cleaned -> quality-filtered -> exact dedup -> near dedup. Every stage is
a training set, so none may hold the held-out set: every document of a file whose documents are
held out (the same `meta["path"]`, as the corpus's splits group them) and every text equal to a
held-out one once normalised is left out of the raw documents, and so out of every later stage.
(A near copy from another file can remain; chapter 7 runs the contamination check on each stage.)

A model trained on each stage for the same number of steps then answers "what did this step buy?"
on the same held-out text. `mixed` gives each stage the config's source shares, so stages differ
in what their documents are, not in how much of each source they hold.
"""
from __future__ import annotations

from typing import Iterable

from minilm.data.clean import clean_documents
from minilm.data.corpus import CorpusConfig, check_config, load_source
from minilm.data.dedup import DedupReport, near_duplicate_clusters, remove_exact_duplicates, remove_near_duplicates, text_hash
from minilm.data.documents import Document
from minilm.data.quality import filter_documents
from minilm.data.splits import mix_sources

STAGES = ("raw", "cleaned", "filtered", "exact dedup", "near dedup")  # in pipeline order


def leave_out(documents: Iterable[Document], held_out: Iterable[Document]) -> list[Document]:
    """The documents that share neither a file (meta["path"]) nor a normalised text with `held_out`."""
    held_out = list(held_out)
    paths = {d.meta["path"] for d in held_out if d.meta.get("path")}
    texts = {text_hash(d.text) for d in held_out}
    return [d for d in documents if d.meta.get("path") not in paths and text_hash(d.text) not in texts]


def deduplicated(documents: list[Document], config: CorpusConfig) -> dict[str, list[Document]]:
    """The two deduplication steps: {"exact dedup": ..., "near dedup": ...}."""
    exact = remove_exact_duplicates(documents, DedupReport())
    leaders = near_duplicate_clusters(exact, DedupReport(), config.near_duplicate_threshold, config.shingle_size,
                                      config.num_perm, config.bands)
    return {"exact dedup": exact, "near dedup": remove_near_duplicates(exact, leaders, DedupReport())}


def pipeline_stages(config: CorpusConfig, held_out: Iterable[Document]) -> dict[str, list[Document]]:
    """The training documents after each step (STAGES), none of them from the held-out files or texts."""
    check_config(config)
    raw = leave_out((d for name in config.sources for d in load_source(name, config)), held_out)
    cleaned, _ = clean_documents(raw)
    filtered, _ = filter_documents(cleaned, config.text_quality, config.code_quality)
    return {"raw": raw, "cleaned": cleaned, "filtered": filtered, **deduplicated(filtered, config)}


def mixed(documents: list[Document], config: CorpusConfig) -> list[Document]:
    """The documents mixed by the config's source weights (chapter 1's `mix_sources`)."""
    kept, _, _ = mix_sources(documents, config.sources, [text_hash(d.text) for d in documents])
    return kept
