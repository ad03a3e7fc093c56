"""minilm.streaming: a local file streamed through `datasets` gives the token streams of chapter 1's
in-memory path, one document at a time with bounded memory, in shards the trainer memory-maps."""
import itertools
import json
from dataclasses import replace

import datasets
import numpy as np
import pytest
import torch

from minilm.data import DataError, DatasetUnavailableError, Document
from minilm.data.clean import clean_documents
from minilm.data.dedup import DedupReport, remove_exact_duplicates, text_hash
from minilm.data.quality import filter_documents
from minilm.data.sources import stdlib_docstrings
from minilm.data.splits import SPLITS, split_documents
from minilm.model import GPT, GPTConfig
from minilm.streaming import (ShardedTokens, StreamConfig, load_token_shards, sample_texts, stream_rows,
                              write_token_shards)
from minilm.tokenizer import BPETokenizer, CharTokenizer
from minilm.tokens import TokenStream, write_stream
from minilm.train import TokenBatches, TrainConfig, train

SHARD_TOKENS = 700


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """Docstrings, with what chapter 1 must remove: duplicates, control characters, junk, empty rows."""
    docstrings = [document.text for document in stdlib_docstrings(["json", "textwrap", "string", "shlex"])]
    return docstrings + docstrings[:5] + ["zero\u200bwidth " * 30, "x = 1; y = 2", "", "   \n\n  "]


@pytest.fixture(scope="module")
def tokenizer(texts) -> BPETokenizer:
    return BPETokenizer.train(texts, vocab_size=300)


def in_memory_streams(rows: list[dict], tokenizer, config: StreamConfig, folder) -> dict[str, np.ndarray]:
    """Chapter 1's path with every document in memory: clean, filter, deduplicate, split, write_stream."""
    documents = [Document(row["text"], config.source) for row in rows]
    cleaned, _ = clean_documents(documents)
    kept, _ = filter_documents(cleaned)
    unique = remove_exact_duplicates(kept, DedupReport())
    splits = split_documents(unique, [text_hash(d.text) for d in unique], config.split_fractions)
    streams = {}
    for name in SPLITS:
        write_stream(tokenizer, [d.text for d in splits[name]], folder / f"{name}.bin")
        streams[name] = TokenStream(folder / f"{name}.bin", np.uint16).tokens
    return streams


def write_file(texts: list[str], folder, kind: str):
    if kind == "json":
        path = folder / "docs.jsonl"
        path.write_text("".join(json.dumps({"text": text, "id": i}) + "\n" for i, text in enumerate(texts)))
        return path, {}
    path = folder / "docs.txt"  # paragraphs: one document per run of lines between blank lines
    path.write_text("\n\n".join(" ".join(text.split()) for text in texts if text.strip()) + "\n")
    return path, {"sample_by": "paragraph"}


@pytest.mark.parametrize("kind", ["json", "text"])
def test_streaming_a_local_file_gives_the_in_memory_token_streams(tmp_path, texts, tokenizer, kind):
    path, options = write_file(texts, tmp_path, kind)
    config = StreamConfig(shard_tokens=SHARD_TOKENS)
    rows = stream_rows(kind, data_files=str(path), **options)
    assert isinstance(rows, datasets.IterableDataset)  # streaming=True: nothing is read up front
    report = write_token_shards(rows, tokenizer, tmp_path / "shards", config)
    in_memory = list(datasets.load_dataset(kind, data_files=str(path), split="train", cache_dir=str(tmp_path / "hf"),
                                           **options))
    expected = in_memory_streams(in_memory, tokenizer, config, tmp_path)
    meta = json.loads((tmp_path / "shards" / "tokens.json").read_text())
    for name in SPLITS:
        shards = [np.fromfile(tmp_path / "shards" / file, dtype=meta["dtype"]) for file in meta["splits"][name]["shards"]]
        assert all(len(shard) <= SHARD_TOKENS for shard in shards)
        np.testing.assert_array_equal(np.concatenate(shards), expected[name])
        assert report.splits[name]["tokens"] == len(expected[name])
    assert len(meta["splits"]["train"]["shards"]) > 3  # the limit really cut the stream
    assert report.rows == len(in_memory) and report.duplicates > 0
    assert sum(report.dropped.values()) >= 1


def test_documents_stream_through_one_at_a_time_in_bounded_memory(tmp_path, texts, tokenizer):
    config = StreamConfig(shard_tokens=SHARD_TOKENS, split_fractions=(1.0, 0.0, 0.0))
    kept, _ = filter_documents(clean_documents([Document(text, "stream") for text in texts[:60]])[0])
    unique = remove_exact_duplicates(kept, DedupReport())
    lengths = [len(tokenizer.encode(d.text)) + 1 for d in unique]  # each document and its END_OF_TEXT
    written_when_pulled = []

    def rows():  # a source that notes how many tokens are on disk each time it is asked for a row
        for document in unique:
            written_when_pulled.append(sum(p.stat().st_size for p in tmp_path.glob("shards/*.bin")) // 2)
            yield {"text": document.text}

    write_token_shards(rows(), tokenizer, tmp_path / "shards", config)
    for index, on_disk in enumerate(written_when_pulled):
        assert sum(lengths[:index]) - on_disk < SHARD_TOKENS  # fewer than shard_tokens ids ever wait in memory
    assert written_when_pulled[-1] > 0  # shards were written while the source was still being read


def test_max_documents_stops_an_endless_stream(tmp_path, texts, tokenizer):
    endless = ({"text": text} for text in itertools.cycle(texts[:20]))
    report = write_token_shards(endless, tokenizer, tmp_path / "shards", StreamConfig(max_documents=50))
    assert report.rows == 50 and report.duplicates > 0  # the cycle came round again
    assert len(sample_texts(({"text": t} for t in itertools.cycle(texts[:20])), 3)) == 3


def test_the_trainer_reads_the_shards_memory_mapped_as_one_stream(tmp_path, texts, tokenizer):
    config = StreamConfig(shard_tokens=SHARD_TOKENS, split_fractions=(0.8, 0.2, 0.0))
    write_token_shards(({"text": text} for text in texts), tokenizer, tmp_path / "shards", config)
    sharded = load_token_shards(tmp_path / "shards")
    train_stream = sharded.streams["train"]
    assert len(train_stream.shards) > 3 and all(isinstance(s.tokens, np.memmap) for s in train_stream.shards)
    whole = {}  # the same ids in one file each: what chapter 1's TokenStream reads
    for name in ("train", "validation"):
        np.asarray(sharded.streams[name].tokens).tofile(tmp_path / f"{name}.bin")
        whole[name] = TokenStream(tmp_path / f"{name}.bin", np.uint16)
    train_config = TrainConfig(steps=3, batch_size=8, context_length=64, warmup_steps=1, eval_every=3, eval_batches=2)
    for index in range(10):  # windows start anywhere, so many of them cross from one shard into the next
        for a, b in zip(TokenBatches(sharded.streams, train_config, "cpu").get_batch("train", index),
                        TokenBatches(whole, train_config, "cpu").get_batch("train", index)):
            assert torch.equal(a, b)
    histories = []
    for streams in (sharded.streams, whole):
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, context_length=64, n_layer=1, n_head=2, n_embd=16))
        histories.append(train(model, TokenBatches(streams, train_config, "cpu"), train_config))
    assert [r.get("train_loss") for r in histories[0]] == [r.get("train_loss") for r in histories[1]]
    assert sharded.documents["train"] > 0 and sharded.bytes_per_token("validation") > 1


def test_sharded_tokens_read_like_one_array():
    parts = [np.arange(0, 5), np.arange(5, 5), np.arange(5, 12), np.arange(12, 13)]  # an empty shard too
    tokens, whole = ShardedTokens(parts, np.int64), np.arange(13)
    assert len(tokens) == 13
    for start, stop in [(0, 13), (3, 9), (5, 12), (11, 13), (7, 7), (0, 100), (-4, None)]:
        np.testing.assert_array_equal(tokens[start:stop], whole[start:stop])
    positions = np.array([[0, 4, 5, 11], [12, 6, 2, 9]])
    np.testing.assert_array_equal(tokens[positions], whole[positions])
    with pytest.raises(IndexError, match="0 .. 12"):
        tokens[np.array([13])]


def test_mistakes_are_explained(tmp_path, tokenizer):
    with pytest.raises(DataError, match=r"no column 'text'; its columns are \['body'\]"):
        write_token_shards([{"body": "hello"}], tokenizer, tmp_path / "a")
    with pytest.raises(DataError, match="row 1's 'text' is NoneType"):
        write_token_shards([{"text": "fine"}, {"text": None}], tokenizer, tmp_path / "b")
    write_token_shards([], tokenizer, tmp_path / "c")
    assert len(load_token_shards(tmp_path / "c").streams["train"]) == 0  # an empty stream is still a stream
    with pytest.raises(FileExistsError, match="already holds token shards"):
        write_token_shards([], tokenizer, tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="holds no tokens.json"):
        load_token_shards(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="END_OF_TEXT|<\\|endoftext\\|>"):
        write_token_shards([], CharTokenizer("abc", special_tokens=()), tmp_path / "d")
    with pytest.raises(DatasetUnavailableError, match="could not stream 'json'"):
        stream_rows("json", data_files=str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="shard_tokens=0"):
        StreamConfig(shard_tokens=0)
    with pytest.raises(ValueError, match="sum to 1"):
        replace(StreamConfig(), split_fractions=(0.5, 0.2, 0.2))
