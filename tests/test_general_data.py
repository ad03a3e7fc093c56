"""Chapter 7's machinery: file groups in the splits, the corpus after each pipeline step, the shared
vocabulary, and the transfer harness on a tiny config; checked against brute force and float64 maths."""
import math
import random
from dataclasses import replace
from itertools import combinations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minilm.data import CorpusConfig, Document, build_corpus, run_pipeline
from minilm.data.corpus import documents_of
from minilm.data.dedup import jaccard, normalise, shingles
from minilm.data.splits import group_keys
from minilm.data.stages import STAGES, leave_out, mixed, pipeline_stages
from minilm.data import END_OF_TEXT
from minilm.model import GPT, model_config
from minilm.tokens import encode_with, prepare_tokens
from minilm.transfer import (EXPERIMENT_SIZES, T_975, fine_tuned_score, labelled_subset, mean_and_interval,
                             source_bits_per_byte, subset_size, task_data, transfer_grid)
from minilm.apps.task_eval import evaluate_task

MODULES = ("posixpath", "ntpath", "genericpath", "json", "textwrap", "statistics", "urllib")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILM_CACHE", str(tmp_path / "cache"))


def config(**overrides) -> CorpusConfig:
    return CorpusConfig(**{"stories": 150, "stdlib_modules": MODULES, **overrides})


def components(keys, groups):
    """Connected components by breadth-first search over 'same key or same group' (the reference)."""
    n, seen, found = len(keys), set(), []
    for start in range(n):
        if start in seen:
            continue
        frontier, members = [start], {start}
        while frontier:
            i = frontier.pop()
            for j in range(n):
                if j not in members and (keys[j] == keys[i] or (groups[i] is not None and groups[j] == groups[i])):
                    members.add(j)
                    frontier.append(j)
        seen |= members
        found.append(sorted(members))
    return found


def test_group_keys_give_each_connected_component_the_key_of_its_earliest_document():
    rng = random.Random(0)
    for _ in range(30):
        n = rng.randint(1, 40)
        keys = [f"k{rng.randint(0, n // 2)}" for _ in range(n)]
        groups = [rng.choice([None, None, f"g{rng.randint(0, n // 3)}"]) for _ in range(n)]
        joined = group_keys(keys, groups)
        for members in components(keys, groups):
            assert {joined[i] for i in members} == {keys[members[0]]}


def test_a_files_pieces_and_docstrings_share_one_split_and_without_grouping_they_do_not():
    def split_paths(result):
        where = {}
        for name, documents in result.splits.items():
            for d in documents:
                if d.meta.get("path"):
                    where.setdefault(d.meta["path"], set()).add(name)
        return where

    grouped = split_paths(run_pipeline(config(code_chunk_chars=1500)))
    assert grouped and all(len(splits) == 1 for splits in grouped.values())
    loose = split_paths(run_pipeline(config(code_chunk_chars=1500, group_files=False)))
    assert any(len(splits) > 1 for splits in loose.values())


def test_documents_of_gives_back_the_documents_of_a_stored_split():
    result = run_pipeline(config())
    stored = build_corpus(config())
    for name in ("train", "validation"):
        again = documents_of(stored[name])
        assert [(d.text, d.source, d.meta.get("path")) for d in again] == \
               [(d.text, d.source, d.meta.get("path")) for d in result.splits[name]]


@pytest.fixture(scope="module")
def stages_and_held_out(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINILM_CACHE", str(tmp_path_factory.mktemp("cache")))
        held_out = documents_of(build_corpus(config())["validation"])
        yield pipeline_stages(config(), held_out), held_out


def test_each_stage_keeps_what_its_step_should_and_none_holds_the_held_out_set(stages_and_held_out):
    stages, held_out = stages_and_held_out
    assert list(stages) == list(STAGES)
    paths = {d.meta["path"] for d in held_out if d.meta.get("path")}
    texts = {normalise(d.text) for d in held_out}
    for documents in stages.values():
        assert documents
        assert not any(d.meta.get("path") in paths or normalise(d.text) in texts for d in documents)
    assert len(stages["cleaned"]) == len(stages["raw"])  # cleaning edits documents, it drops none
    for before, after in zip(STAGES[1:], STAGES[2:]):  # filters and dedup only drop documents
        kept = [d.text for d in stages[after]]
        assert len(kept) <= len(stages[before]) and set(kept) <= {d.text for d in stages[before]}
    assert len(stages["filtered"]) < len(stages["cleaned"])  # the rules drop the one-line docstrings
    exact = [normalise(d.text) for d in stages["exact dedup"]]
    assert len(exact) == len(set(exact))
    near = stages["near dedup"]
    by_source = {}
    for d in near:
        by_source.setdefault(d.source, []).append(shingles(d.text))
    for sets in by_source.values():  # brute force over every pair: no near duplicates left
        assert all(jaccard(a, b) < config().near_duplicate_threshold for a, b in combinations(sets, 2))


def test_leave_out_drops_whole_files_and_normalised_copies():
    held = [Document("A held-out text.", "prose", {"path": "a.py"})]
    documents = [Document("other text", "code", {"path": "a.py"}), Document("a  HELD-OUT text.", "prose", {}),
                 Document("kept", "prose", {"path": "b.py"})]
    assert [d.text for d in leave_out(documents, held)] == ["kept"]


def test_mixed_stages_hold_the_configs_shares(stages_and_held_out):
    stages, _ = stages_and_held_out
    for name in ("raw", "near dedup"):
        documents = mixed(stages[name], config())
        chars = {s: sum(len(d.text) for d in documents if d.source == s) for s in config().sources}
        total = sum(chars.values())
        for source, weight in config().sources.items():
            longest = max(len(d.text) for d in documents if d.source == source)
            assert abs(chars[source] - weight * total) <= longest + 0.02 * total


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINILM_CACHE", str(tmp_path_factory.mktemp("cache")))
        corpus = build_corpus(config())
        yield corpus, prepare_tokens(corpus, 512)


def test_encode_with_encodes_every_split_with_the_given_tokenizer(shared):
    corpus, tokens = shared
    stories = build_corpus(config(sources={"stories": 1.0}))
    encoded = encode_with(stories, tokens)
    end = tokens.tokenizer.special_tokens[END_OF_TEXT]
    for name in stories:
        expected = [i for text in stories[name]["text"] for i in tokens.tokenizer.encode(text) + [end]]
        assert encoded.streams[name].tokens.tolist() == expected
        assert encoded.text_bytes[name] == sum(len(t.encode()) for t in stories[name]["text"])
    other = prepare_tokens(corpus, 480)
    assert encode_with(stories, other).folder != encoded.folder  # another tokenizer, another cache entry


def test_source_bits_per_byte_is_the_summed_cross_entropy_over_the_bytes(shared):
    _, tokens = shared
    torch.manual_seed(0)
    model = GPT(model_config("nano", tokens.tokenizer.vocab_size, context_length=64)).eval()
    measured = source_bits_per_byte(model, tokens)
    for name, stream in tokens.streams.items():
        ids = torch.tensor(stream.tokens[:len(stream) - (len(stream) - 1) % 64].astype(np.int64))
        windows = ids[:-1].reshape(-1, 64), ids[1:].reshape(-1, 64)  # (windows, 64) inputs and targets
        with torch.no_grad():
            logits = model(windows[0])[0].double()  # (windows, 64, vocab)
        mean_nats = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[1].reshape(-1)).item()
        assert measured[name] == pytest.approx(mean_nats * len(stream) / (tokens.text_bytes[name] * math.log(2)),
                                               rel=1e-4)


def test_student_t_quantiles_and_the_interval_match_float64_maths():
    stats = pytest.importorskip("scipy.stats")
    for dof, value in enumerate(T_975, start=1):
        assert value == pytest.approx(stats.t.ppf(0.975, dof), abs=6e-4)
    scores = [0.2, 0.35, 0.3]
    mean, half = mean_and_interval(scores)
    assert mean == pytest.approx(np.mean(scores))
    assert half == pytest.approx(stats.t.ppf(0.975, 2) * np.std(scores, ddof=1) / math.sqrt(3), rel=1e-3)
    assert mean_and_interval([0.5]) == (0.5, 0.0)


def test_labelled_subsets_have_the_asked_size_and_depend_on_the_seed():
    pool = list(range(1000))
    assert [subset_size(1000, f) for f in (0.0, 0.001, 0.01, 0.1, 1.0)] == [0, 1, 10, 100, 1000]
    assert len(set(labelled_subset(pool, 0.1, 3))) == 100
    assert labelled_subset(pool, 0.1, 3) == labelled_subset(pool, 0.1, 3) != labelled_subset(pool, 0.1, 4)


def test_the_transfer_grid_has_every_cell_scores_like_evaluate_task_and_is_cached(shared, monkeypatch):
    _, tokens = shared
    sizes = replace(EXPERIMENT_SIZES["smoke"], labelled=12, test=4, seeds=(0, 1), fractions=(0.25, 1.0),
                    tasks=("qa", "mood"))
    data = task_data(sizes, exclude=())
    assert {task: (len(d.pool), len(d.test)) for task, d in data.items()} == {"qa": (12, 4), "mood": (12, 4)}
    pool_texts = {e.prompt for d in data.values() for e in d.pool}
    assert not pool_texts & {e.prompt for d in data.values() for e in d.test}
    torch.manual_seed(1)
    start = GPT(model_config("nano", tokens.tokenizer.vocab_size)).eval()
    from minilm.transfer import Pretrained
    models = {"none": None, "pre": Pretrained(start, "test-model")}
    rows = transfer_grid(models, tokens.tokenizer, data, sizes, progress=False)
    assert len(rows) == 2 * 2 * (1 + 2 * 2)
    zero = [r for r in rows if r["pretraining"] == "pre" and r["fraction"] == 0.0 and r["task"] == "mood"]
    assert zero[0]["score"] == evaluate_task(start, tokens.tokenizer, data["mood"].test).score
    cell = next(r for r in rows if r["pretraining"] == "pre" and r["fraction"] == 1.0 and r["seed"] == 1)
    direct = fine_tuned_score(start, tokens.tokenizer, data[cell["task"]], 1.0, 1, sizes)
    assert cell["score"] == direct and cell["labelled"] == 12
    import minilm.transfer as transfer
    monkeypatch.setattr(transfer, "fine_tuned_score", lambda *a, **k: pytest.fail("a cached cell was run again"))
    assert transfer_grid(models, tokens.tokenizer, data, sizes, progress=False) == rows
