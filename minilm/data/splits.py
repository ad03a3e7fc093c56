"""Mixing sources by weight, and splitting documents into train / validation / test.

Mixing. Each source gets a share of the corpus's characters (its weight, normalised). No document is
repeated, so the corpus is as large as the scarcest source allows: its size T is the largest for
which every source has weight × T characters to give. Within a source, documents are taken in the
order of a hash (`mixing_order`): a fixed, pseudo-random order that does not depend on how they
were read, and independent of the hash that picks the split.

Splitting. A document's split is decided by a hash, not by a random draw, so it never changes when
other documents are added or removed. The hash is that of its near-duplicate cluster (the cluster's
first document), so near duplicates always land on the same side: the validation set never holds a
lightly edited copy of a training document. Documents cut from one file share a group (the pieces
of a source file and the docstrings it holds: `Document.meta["path"]`), and `group_keys` joins each
group to its clusters, so no split holds a piece of a file whose other pieces, or whose docstrings
copied inside its code, are in another.

A small corpus can leave a split empty by chance (five documents rarely put one in a 5% split).
Then the cluster whose hash lies nearest that split's share of [0, 1) moves there from the
fullest split, so every split with a share gets at least one cluster; fewer clusters than such
splits is an error that names the minimum.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from minilm.data.dedup import UnionFind
from minilm.data.documents import Document, EmptyCorpusError

SPLITS = ("train", "validation", "test")


def hash_fraction(key: str) -> float:
    """A hex digest -> a number in [0, 1), uniform over documents."""
    return int(key[:15], 16) / 16 ** 15


def mixing_order(key: str) -> str:
    """The sort key that orders a source's documents for mixing (unrelated to `split_name`)."""
    return hashlib.sha256(f"mix:{key}".encode()).hexdigest()


def split_name(key: str, fractions: tuple[float, float, float]) -> str:
    """The split a cluster key belongs to, for (train, validation, test) fractions summing to 1."""
    position, edge = hash_fraction(key), 0.0
    for name, share in zip(SPLITS, fractions):
        edge += share
        if position < edge:
            return name
    return SPLITS[-1]


@dataclass
class MixReport:
    available: dict[str, int] = field(default_factory=dict)  # source -> characters before mixing
    taken: dict[str, int] = field(default_factory=dict)  # source -> characters in the corpus
    documents: dict[str, int] = field(default_factory=dict)  # source -> documents in the corpus
    target_shares: dict[str, float] = field(default_factory=dict)  # the normalised weights


def mix_sources(documents: list[Document], weights: dict[str, float],
                keys: list[str]) -> tuple[list[Document], list[str], MixReport]:
    """Keep documents so each source holds its weight's share of characters; keys follow the documents."""
    total_weight = sum(weights.values())
    shares = {source: weight / total_weight for source, weight in weights.items()}
    report = MixReport(target_shares=shares)
    by_source: dict[str, list[tuple[str, Document]]] = {source: [] for source in weights}
    for key, document in zip(keys, documents):
        by_source[document.source].append((key, document))
    for source, items in by_source.items():
        if not items:
            raise EmptyCorpusError(f"the source {source!r} has no documents left after cleaning, filtering "
                                   f"and deduplication; give it more input, loosen the thresholds, or drop "
                                   f"it from CorpusConfig.sources.")
        report.available[source] = sum(len(d.text) for _, d in items)
    corpus_chars = min(report.available[s] / shares[s] for s in weights)
    kept, kept_keys = [], []
    for source, items in by_source.items():
        budget, taken = shares[source] * corpus_chars, 0
        for key, document in sorted(items, key=lambda item: (mixing_order(item[0]), item[1].text)):
            if taken >= budget:
                break
            kept.append(document)
            kept_keys.append(key)
            taken += len(document.text)
        report.taken[source] = taken
        report.documents[source] = sum(1 for d in kept if d.source == source)
    return kept, kept_keys, report


def group_keys(keys: list[str], groups: list[str | None]) -> list[str]:
    """Each document's split key: documents joined by a shared cluster key or a shared group (None:
    no group) form one component, and every member takes the key of its earliest document (a
    uniform hash like any other; the smallest of many keys would not be, and would pull large
    components into the first split)."""
    joined = UnionFind(len(keys))
    first_of: dict[tuple[str, str], int] = {}
    for index, (key, group) in enumerate(zip(keys, groups)):
        for label in [("key", key)] + ([("group", group)] if group is not None else []):
            joined.union(index, first_of.setdefault(label, index))
    return [keys[joined.find(index)] for index in range(len(keys))]


def check_fractions(fractions: tuple[float, float, float]) -> None:
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"split fractions {fractions} must be three non-negative numbers (train, "
                         f"validation, test) that sum to 1, e.g. (0.9, 0.05, 0.05).")


def split_documents(documents: list[Document], keys: list[str],
                    fractions: tuple[float, float, float]) -> dict[str, list[Document]]:
    """Documents per split, decided by each document's cluster key."""
    check_fractions(fractions)
    cluster_split = {key: split_name(key, fractions) for key in keys}  # one decision per cluster
    wanted = [name for name, share in zip(SPLITS, fractions) if share > 0]
    if len(cluster_split) < len(wanted):
        raise EmptyCorpusError(f"the corpus has {len(cluster_split)} distinct document(s) after cleaning, filtering "
                               f"and deduplication, too few for the {len(wanted)} splits {', '.join(wanted)}: "
                               f"give at least {len(wanted)} documents that are not near duplicates of each other "
                               f"(a long text can be cut into several files).")
    for name in wanted:
        if name not in cluster_split.values():
            cluster_split[nearest_cluster(cluster_split, name, fractions)] = name
    splits: dict[str, list[Document]] = {name: [] for name in SPLITS}
    for key, document in zip(keys, documents):
        splits[cluster_split[key]].append(document)
    return splits


def nearest_cluster(cluster_split: dict[str, str], split: str, fractions: tuple[float, float, float]) -> str:
    """The cluster to move into an empty `split`: from the split with the most clusters, the one whose
    hash lies nearest the empty split's interval of [0, 1)."""
    counts = {name: list(cluster_split.values()).count(name) for name in SPLITS}
    donor = max(SPLITS, key=lambda name: counts[name])
    start = sum(fractions[:SPLITS.index(split)])
    middle = start + fractions[SPLITS.index(split)] / 2
    candidates = [key for key, name in cluster_split.items() if name == donor]
    return min(candidates, key=lambda key: (abs(hash_fraction(key) - middle), key))
