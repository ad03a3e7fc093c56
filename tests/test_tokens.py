"""minilm.tokens: the token stream's dtype, contents and batches, and the cached prepare_tokens."""
import inspect
import json
import string
import textwrap

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict

import minilm.tokens as tokens_module
from minilm.data import END_OF_TEXT
from minilm.tokenizer import BPETokenizer, CharTokenizer
from minilm.tokens import PreparedTokens, TokenStream, prepare_tokens, smallest_unsigned_dtype, write_stream


def small_corpus(extra: str = "") -> DatasetDict:
    sources = [inspect.getsource(module) for module in (json, string, textwrap)]
    documents = [paragraph for source in sources for paragraph in source.split("\n\n") if paragraph.strip()]
    return DatasetDict({"train": Dataset.from_dict({"text": documents[:-20]}),
                        "validation": Dataset.from_dict({"text": documents[-20:-10] + ["café 猫" + extra]}),
                        "test": Dataset.from_dict({"text": documents[-10:]})})


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILM_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("vocab_size, dtype", [(2, np.uint8), (256, np.uint8), (257, np.uint16),
                                               (65_536, np.uint16), (65_537, np.uint32), (50_257, np.uint16)])
def test_smallest_unsigned_dtype_holds_every_id(vocab_size, dtype):
    assert smallest_unsigned_dtype(vocab_size) == dtype
    assert np.iinfo(dtype).max >= vocab_size - 1  # the largest id fits


def test_every_document_is_followed_by_end_of_text(tmp_path):
    texts = ["first document", "", "third document", "last"]  # an empty document still gets its separator
    tokenizer = BPETokenizer.train(texts, vocab_size=280)
    stats = write_stream(tokenizer, texts, tmp_path / "s.bin")
    stream = TokenStream(tmp_path / "s.bin", smallest_unsigned_dtype(tokenizer.vocab_size))
    assert stream.tokens.dtype == np.uint16  # 280 ids need more than a byte
    expected = [i for text in texts for i in [*tokenizer.encode(text), tokenizer.special_tokens[END_OF_TEXT]]]
    assert stream.tokens.tolist() == expected
    assert tokenizer.decode(stream.tokens).split(END_OF_TEXT) == [*texts, ""]
    assert stats == {"tokens": len(expected), "documents": 4, "bytes": sum(len(t.encode()) for t in texts)}


def test_batches_are_windows_of_the_stream_shifted_by_one(tmp_path):
    data = np.arange(1000, dtype=np.uint16) * 7 % 997  # distinct values, so each window has one place
    data.tofile(tmp_path / "s.bin")
    stream = TokenStream(tmp_path / "s.bin", np.uint16)
    assert len(stream) == 1000 and isinstance(stream.tokens, np.memmap)
    x, y = stream.batch(8, 16, generator=torch.Generator().manual_seed(0), device="cpu")
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == torch.int64
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        start = data.tolist().index(row_x[0])
        assert row_x == data[start:start + 16].tolist()
        assert row_y == data[start + 1:start + 17].tolist()


def test_batches_repeat_with_the_same_generator_seed(tmp_path):
    np.arange(500, dtype=np.uint16).tofile(tmp_path / "s.bin")
    stream = TokenStream(tmp_path / "s.bin", np.uint16)
    first = stream.batch(4, 8, torch.Generator().manual_seed(3), "cpu")
    again = stream.batch(4, 8, torch.Generator().manual_seed(3), "cpu")
    other = stream.batch(4, 8, torch.Generator().manual_seed(4), "cpu")
    assert torch.equal(first[0], again[0]) and not torch.equal(first[0], other[0])


def test_the_last_token_can_be_a_target(tmp_path):
    np.arange(10, dtype=np.uint8).tofile(tmp_path / "s.bin")
    stream = TokenStream(tmp_path / "s.bin", np.uint8)
    x, y = stream.batch(200, 9, torch.Generator().manual_seed(0), "cpu")  # one window fits: all of it
    assert (x == torch.arange(9)).all() and (y == torch.arange(1, 10)).all()


def test_batch_errors_say_what_to_do(tmp_path):
    np.arange(10, dtype=np.uint8).tofile(tmp_path / "s.bin")
    stream = TokenStream(tmp_path / "s.bin", np.uint8)
    with pytest.raises(ValueError, match="context=10 needs at least 11 tokens .* this stream has 10"):
        stream.batch(2, 10, torch.Generator(), "cpu")
    with pytest.raises(ValueError, match="at least 1"):
        stream.batch(0, 4, torch.Generator(), "cpu")


def test_prepare_tokens_trains_on_train_and_encodes_every_split():
    corpus = small_corpus()
    prepared = prepare_tokens(corpus, vocab_size=400)
    assert prepared.tokenizer.vocab_size == 400 and set(prepared.streams) == {"train", "validation", "test"}
    reference = BPETokenizer.train(corpus["train"]["text"], vocab_size=400)
    assert prepared.tokenizer.merges == reference.merges  # trained on the train split only
    end = reference.special_tokens[END_OF_TEXT]
    for split in corpus:
        texts = list(corpus[split]["text"])
        expected = [i for text in texts for i in [*reference.encode(text), end]]
        assert prepared.streams[split].tokens.tolist() == expected
        assert prepared.documents[split] == len(texts)
        assert prepared.text_bytes[split] == sum(len(text.encode("utf-8")) for text in texts)
    assert prepared.bytes_per_token("validation") == prepared.text_bytes["validation"] / len(prepared.streams["validation"])


def test_prepare_tokens_is_cached_and_rebuilt_when_its_inputs_change(monkeypatch):
    corpus = small_corpus()
    first = prepare_tokens(corpus, vocab_size=300)
    monkeypatch.setattr(tokens_module, "train_tokenizer", lambda *args: pytest.fail("rebuilt a cached artifact"))
    again = prepare_tokens(small_corpus(), vocab_size=300)  # the same texts: reused, not retrained
    assert again.folder == first.folder
    monkeypatch.undo()
    assert prepare_tokens(corpus, vocab_size=301).folder != first.folder
    assert prepare_tokens(small_corpus(extra="!"), vocab_size=300).folder != first.folder
    assert isinstance(PreparedTokens.load(first.folder).tokenizer, BPETokenizer)


def test_character_streams_cover_every_split_alphabet():
    corpus = small_corpus()
    prepared = prepare_tokens(corpus, vocab_size=200, kind="char")
    assert isinstance(prepared.tokenizer, CharTokenizer)
    assert prepared.streams["train"].tokens.dtype == np.uint8  # under 256 characters
    assert "猫" in prepared.tokenizer.characters  # seen only in validation, still encodable
    validation = prepared.tokenizer.decode(prepared.streams["validation"].tokens)
    assert validation.split(END_OF_TEXT)[:-1] == list(corpus["validation"]["text"])


def test_prepare_tokens_errors_say_what_to_do():
    corpus = small_corpus()
    with pytest.raises(ValueError, match="kind='words' is not a tokenizer kind"):
        prepare_tokens(corpus, 300, kind="words")
    with pytest.raises(ValueError, match="no 'train' split"):
        prepare_tokens(DatasetDict({"validation": corpus["validation"]}), 300)
    with pytest.raises(ValueError, match="distinct characters .* at least"):
        prepare_tokens(corpus, 20, kind="char")
    with pytest.raises(ValueError, match="no '<\\|endoftext\\|>' token"):
        write_stream(BPETokenizer.train(["ab"], 300, special_tokens=()), ["ab"], "unused.bin")
