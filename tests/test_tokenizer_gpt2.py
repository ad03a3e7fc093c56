"""GPT-2's file format, checked against the `tokenizers` library: train its byte-level BPE, load the
vocab.json and merges.txt it writes, and encode many texts to the very same ids."""
import inspect
import json
import string
import textwrap

import pytest
from hypothesis import given, settings, strategies as st
from tokenizers import ByteLevelBPETokenizer, pre_tokenizers

from minilm.data import END_OF_TEXT
from minilm.tokenizer import BPETokenizer, gpt2_byte_to_char

CORPUS = [inspect.getsource(module) for module in (json.decoder, json.encoder, string, textwrap)] + [
    "通用数据来自许多来源，经过清洗、去重和质量过滤。" * 10, "Ça a été très économique — naïve café. " * 10,
    "emoji 😀 🎉 👩‍👩‍👧 " * 10]
OTHER_TEXTS = [inspect.getsource(json), "The cat sat on the mat.\n\n\n   It's 2024; we'll see!",
               f"first document{END_OF_TEXT}second document{END_OF_TEXT}", "<|endoftext|", "数据质量很重要。",
               "\t\t  x  \n \n", "e\u0301 \u200d 😀😀😀", ""]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(the `tokenizers` tokenizer, minilm's tokenizer loaded from the files it saved)."""
    reference = ByteLevelBPETokenizer(add_prefix_space=False)  # GPT-2's settings: no space added in front
    reference.train_from_iterator(CORPUS, vocab_size=900, min_frequency=1, special_tokens=[END_OF_TEXT],
                                  show_progress=False)
    folder = tmp_path_factory.mktemp("gpt2_files")
    vocab_json, merges_txt = reference.save_model(str(folder))
    return reference, BPETokenizer.from_gpt2_files(vocab_json, merges_txt)


def test_byte_to_character_table_is_the_byte_level_alphabet():
    table = gpt2_byte_to_char()
    assert sorted(table) == list(range(256))
    assert set(table.values()) == set(pre_tokenizers.ByteLevel.alphabet())
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ"  # the well-known stand-ins


def test_loaded_vocabulary_has_the_files_ids(pair):
    reference, ours = pair
    assert ours.vocab_size == reference.get_vocab_size()
    assert ours.special_tokens == {END_OF_TEXT: reference.token_to_id(END_OF_TEXT)}


@pytest.mark.parametrize("text", CORPUS + OTHER_TEXTS)
def test_same_ids_as_tokenizers(pair, text):
    reference, ours = pair
    assert ours.encode(text) == reference.encode(text).ids


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_same_ids_as_tokenizers_on_random_text(pair, text):
    reference, ours = pair
    assert ours.encode(text) == reference.encode(text).ids


def test_decode_agrees_with_tokenizers(pair):
    reference, ours = pair
    ids = reference.encode(OTHER_TEXTS[1]).ids
    assert ours.decode(ids) == reference.decode(ids) == OTHER_TEXTS[1]


def test_bad_gpt2_files_are_clear_errors(tmp_path, pair):
    (tmp_path / "vocab.json").write_text(json.dumps({"a": 0, "b": 2}))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    with pytest.raises(ValueError, match="ids must be 0, 1"):
        BPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    vocab = {gpt2_byte_to_char()[b]: b for b in range(256)}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(ValueError, match="no entry for the special token"):
        BPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b c\n")
    with pytest.raises(ValueError, match="line 2: expected two tokens"):
        BPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt", special_tokens=())
    (tmp_path / "merges.txt").write_text("a b\n")
    with pytest.raises(ValueError, match="makes a token that is not in the vocabulary"):
        BPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt", special_tokens=())
    (tmp_path / "vocab.json").write_text(json.dumps({**vocab, " x": 256}))
    with pytest.raises(ValueError, match="byte-level BPE file"):
        BPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt", special_tokens=())
