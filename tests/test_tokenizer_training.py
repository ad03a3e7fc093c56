"""BPE training (minilm.bpe_train): the incremental trainer learns exactly the merges of a brute-force
trainer that recounts every pair, breaks ties by the greatest pair of byte strings, never recounts,
and pre-tokenises like GPT-2 (checked against the `tokenizers` library)."""
import inspect
import json
import string
from collections import Counter

import pytest
from hypothesis import given, settings, strategies as st
from tokenizers import pre_tokenizers

import minilm.bpe_train as bpe_train
from minilm.bpe_train import Merge, count_pretokens, train_merges, train_merges_naive
from minilm.data import END_OF_TEXT
from minilm.tokenizer import gpt2_byte_to_char

SMALL_WORDS = st.dictionaries(st.binary(min_size=1, max_size=10).map(lambda b: bytes(x % 4 + 97 for x in b)),
                              st.integers(1, 9), min_size=1, max_size=15)


@settings(max_examples=200, deadline=None)
@given(SMALL_WORDS, st.integers(256, 300))
def test_incremental_trainer_equals_the_naive_one_on_small_vocabularies(words, vocab_size):
    """Four letters, so repeats and overlaps such as "aaaa" and "abab" are everywhere."""
    assert train_merges(words, vocab_size) == train_merges_naive(words, vocab_size)


def test_incremental_trainer_equals_the_naive_one_on_real_text():
    texts = [inspect.getsource(json), inspect.getsource(string), "通用数据 " * 30 + "数据的质量"]
    counts = count_pretokens(texts)
    assert train_merges(counts, 450) == train_merges_naive(counts, 450)


def brute_force_first_merge(words):
    """Every adjacent pair, counted directly; the greatest (count, left, right) wins."""
    counts = Counter()
    for word, count in words.items():
        for i in range(len(word) - 1):
            counts[word[i:i + 1], word[i + 1:i + 2]] += count
    best = max(counts.items(), key=lambda item: (item[1], item[0]))
    return Merge(best[0][0], best[0][1], best[1])


@pytest.mark.parametrize("words", [
    {b"ab": 1, b"cd": 1},  # a tie: (c, d) > (a, b)
    {b"zy": 2, b"ab": 2, b"ba": 2},  # (z, y) wins on its first byte
    {b"a\xff": 3, b"b\x00": 3},  # bytes compare as unsigned numbers: b"b" > b"a"
    {b"hello": 5, b"help": 1, b"yellow": 2},  # no tie: the most frequent pair
])
def test_first_merge_is_the_most_frequent_pair_then_the_greatest(words):
    assert train_merges(words, 257) == [brute_force_first_merge(words)]


def test_ties_between_longer_tokens_go_to_the_greatest_byte_string():
    """After (a, b) -> ab, the pairs (ab, x) and (ab, y) tie, and the greater right token, y, goes first."""
    words = {b"abx": 10, b"aby": 10, b"ab": 5}
    merges = train_merges(words, 259)
    assert merges[0] == Merge(b"a", b"b", 25)
    assert merges[1] == max([Merge(b"ab", b"x", 10), Merge(b"ab", b"y", 10)], key=lambda m: (m.count, m.left, m.right))
    assert merges == train_merges_naive(words, 259)


def test_the_trainer_never_recounts_all_pairs(monkeypatch):
    """Each merge revisits only the words holding the merged pair, far fewer than all words each time."""
    counts = count_pretokens([inspect.getsource(json), inspect.getsource(string)])
    visits = []
    original = bpe_train.merge_pair_counting
    monkeypatch.setattr(bpe_train, "merge_pair_counting", lambda word, *args: visits.append(1) or original(word, *args))
    merges = train_merges(counts, 556)
    assert len(merges) == 300
    assert len(visits) < 0.05 * len(merges) * len(counts), (len(visits), len(counts))


def test_pretokens_match_gpt2_pretokenisation_in_tokenizers():
    """GPT-2's regex here and the byte-level pre-tokenizer of `tokenizers` cut a text the same way."""
    text = inspect.getsource(json) + "  I'll say  it's 3.14159!\n\n\tdone   \u00e9t\u00e9 猫 😀 's 're"
    reference = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True).pre_tokenize_str(text)
    to_char = gpt2_byte_to_char()
    ours = ["".join(to_char[b] for b in piece.encode("utf-8")) for piece in bpe_train.GPT2_SPLIT.findall(text)]
    assert ours == [piece for piece, _ in reference]


def test_count_pretokens_leaves_special_tokens_out():
    counts = count_pretokens([f"cat{END_OF_TEXT}cat cat"], special_tokens=[END_OF_TEXT])
    assert counts == Counter({b"cat": 2, b" cat": 1})
