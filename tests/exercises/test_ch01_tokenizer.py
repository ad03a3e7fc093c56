"""Chapter 1 exercises, part 2 (byte-level BPE): the merges are checked against minilm's tested
incremental trainer, the ids against minilm's BPETokenizer and the `tokenizers` library's BPE model
built from the same merges, on story-world stories, standard-library source and random words."""
import inspect
import json
import random

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from minilm.bpe_train import count_pretokens, train_merges
from minilm.data import StoryWorld
from minilm.tokenizer import BPETokenizer, gpt2_byte_to_char
from tests.exercises.harness import load_chapter

ex = load_chapter("ch01_tokenizer")
STORIES = [story.text for story in StoryWorld().stories(300, seed=1)]
SOURCE = [inspect.getsource(json)[:8000], "通用数据，通用数据。 数据的质量 😀😀 café café"]


def random_words(seed: int, count: int = 400) -> list[str]:
    """Texts of short words over four letters: ties and overlaps such as "aaaa" are everywhere."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcd") for _ in range(rng.randint(1, 6))) for _ in range(count)]
    return [" ".join(words[i:i + 20]) for i in range(0, count, 20)]


def reference_merges(texts, vocab_size):
    return [(merge.left, merge.right) for merge in train_merges(count_pretokens(texts), vocab_size)]


@pytest.mark.parametrize("texts,vocab_size", [(STORIES, 256 + 120), (SOURCE, 256 + 150),
                                              (random_words(0), 256 + 60), (random_words(1), 256 + 60)],
                         ids=["stories", "stdlib source", "random words 0", "random words 1"])
def test_train_bpe_learns_the_merges_of_minilm_in_order(texts, vocab_size):
    assert ex.train_bpe(texts, vocab_size) == reference_merges(texts, vocab_size)


def test_train_bpe_counts_the_256_bytes_and_stops_when_pairs_run_out():
    assert ex.train_bpe(STORIES, 256) == []
    assert len(ex.train_bpe(STORIES, 300)) == 300 - 256
    assert ex.train_bpe(["ab ab"], 1000) == [(b"a", b"b"), (b" ", b"ab")]  # then no pair is left
    assert ex.train_bpe(["aaaa"], 258) == [(b"a", b"a"), (b"aa", b"aa")]  # "aaaa" merges to (aa, aa), left to right


def test_train_bpe_never_merges_across_pretokens():
    merges = ex.train_bpe(["the cat. the cat. the cat."], 280)
    assert all(not (left + right).endswith(b" ") and b". " not in left + right for left, right in merges)


@pytest.fixture(scope="module", params=["stories", "stdlib source"])
def trained(request):
    """(texts, the exercise's merges, minilm's tokenizer trained on the same texts)."""
    texts, vocab_size = {"stories": (STORIES, 256 + 300), "stdlib source": (SOURCE, 256 + 200)}[request.param]
    merges = reference_merges(texts, vocab_size)  # encoding is tested on its own, from minilm's merges
    return texts, merges, BPETokenizer.train(texts, vocab_size, special_tokens=())


def tokenizers_model(merges):
    """The same merges as a `tokenizers` byte-level BPE with GPT-2's pre-tokenisation."""
    to_char = gpt2_byte_to_char()
    as_text = lambda token: "".join(to_char[b] for b in token)
    vocab = {as_text(bytes([b])): b for b in range(256)}
    for left, right in merges:
        vocab.setdefault(as_text(left + right), len(vocab))
    reference = Tokenizer(models.BPE(vocab=vocab, merges=[(as_text(l), as_text(r)) for l, r in merges]))
    reference.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    return reference


def held_out_texts(texts):
    return [texts[0], texts[-1][:300], StoryWorld().stories(3, seed=99)[2].text, "通用数据很重要 😀", "aaaaaaa",
            "x", "", "    def decode(self, s):\n        return s\n\n\n", "Don't   stop, 3.14159!"]


def test_bpe_encode_gives_the_ids_of_minilm_and_of_tokenizers(trained):
    texts, merges, tokenizer = trained
    reference = tokenizers_model(merges)
    for text in held_out_texts(texts):
        ids = ex.bpe_encode(text, merges)
        assert ids == tokenizer.encode(text), text[:40]
        assert ids == reference.encode(text).ids, text[:40]


def test_bpe_encode_applies_the_earliest_merge_first_and_round_trips(trained):
    # " abc": (b, c) was learned first, so a + bc, never ab + c.
    assert ex.bpe_encode("abc", [(b"b", b"c"), (b"a", b"b"), (b"a", b"bc")]) == [258]
    assert ex.bpe_encode("abc", []) == [97, 98, 99]
    texts, merges, tokenizer = trained
    text = held_out_texts(texts)[2]
    ids = ex.bpe_encode(text, merges)
    assert tokenizer.decode(ids) == text and len(ids) < len(text.encode())


def test_train_then_encode_is_minilms_tokenizer():
    merges = ex.train_bpe(STORIES[:100], 256 + 80)
    tokenizer = BPETokenizer.train(STORIES[:100], 256 + 80, special_tokens=())
    assert ex.bpe_encode(STORIES[150], merges) == tokenizer.encode(STORIES[150])
