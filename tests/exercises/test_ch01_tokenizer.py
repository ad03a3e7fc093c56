"""Chapter 1 exercises, part 2 (byte-pair encoding), checked against NumPy, str.replace and the
`tokenizers` library's own BPE model."""
import inspect
import json

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from minilm.bpe_train import train_merges
from minilm.tokenizer import gpt2_byte_to_char
from tests.exercises.harness import load_chapter

ex = load_chapter("ch01_tokenizer")
TEXT = inspect.getsource(json)[:6000] + " 通用数据，通用数据。 😀😀"


def numpy_pair_counts(ids):
    if len(ids) < 2:
        return {}
    pairs, counts = np.unique(np.stack([ids[:-1], ids[1:]], axis=1), axis=0, return_counts=True)
    return {(int(a), int(b)): int(c) for (a, b), c in zip(pairs, counts)}


@pytest.mark.parametrize("seed", range(5))
def test_count_pairs_matches_numpy(seed):
    ids = np.random.default_rng(seed).integers(0, 6, size=200).tolist()
    assert ex.count_pairs(ids) == numpy_pair_counts(ids)


def test_count_pairs_counts_overlaps_and_handles_short_lists():
    assert ex.count_pairs([7, 7, 7]) == {(7, 7): 2}
    assert ex.count_pairs([3]) == {} and ex.count_pairs([]) == {}


def string_replace_merge(ids, pair, new_id):
    """The same merge through Python's str.replace, which also replaces left to right without overlaps."""
    text = "".join(map(chr, ids)).replace(chr(pair[0]) + chr(pair[1]), chr(new_id))
    return [ord(c) for c in text]


@pytest.mark.parametrize("seed", range(10))
def test_merge_matches_str_replace(seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 3, size=100).tolist()
    pair = tuple(rng.integers(0, 3, size=2).tolist())
    assert ex.merge(ids, pair, 256) == string_replace_merge(ids, pair, 256)


def test_merge_leaves_overlaps_alone():
    assert ex.merge([7, 7, 7], (7, 7), 300) == [300, 7]
    assert ex.merge([], (1, 2), 256) == []


@pytest.fixture(scope="module")
def learned():
    """A merge table learned on TEXT as one piece, and the same merges as a `tokenizers` BPE model."""
    merges = train_merges({TEXT.encode("utf-8"): 1}, vocab_size=400)
    to_char = gpt2_byte_to_char()
    as_text = lambda token: "".join(to_char[b] for b in token)
    vocab = {as_text(bytes([b])): b for b in range(256)}
    table, kept = {}, []
    for merge in merges:
        if as_text(merge.left + merge.right) in vocab:
            continue  # the same bytes reached by another pair: one id each, as in minilm.tokenizer
        new_id = vocab[as_text(merge.left + merge.right)] = len(vocab)
        table[vocab[as_text(merge.left)], vocab[as_text(merge.right)]] = new_id
        kept.append((as_text(merge.left), as_text(merge.right)))
    reference = Tokenizer(models.BPE(vocab=vocab, merges=kept))
    reference.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)  # one piece
    return table, reference


@pytest.mark.parametrize("text", [TEXT, TEXT[:500], "通用数据很重要", "aaaaaaa", "x", "",
                                  "    def decode(self, s):\n        return s"])
def test_encode_with_merges_matches_tokenizers(learned, text):
    table, reference = learned
    assert ex.encode_with_merges(text, table) == reference.encode(text).ids


def test_encode_with_merges_applies_the_earliest_merge_first():
    # "abc": (b, c) was learned first, so a + bc, never ab + c.
    assert ex.encode_with_merges("abc", {(98, 99): 256, (97, 98): 257, (97, 256): 258}) == [258]
    assert ex.encode_with_merges("abc", {}) == [97, 98, 99]
