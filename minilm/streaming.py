"""Chapter 1's pipeline for a corpus too big for memory: documents stream through one at a time and
leave as token shards that the trainer memory-maps.

    rows = stream_rows("json", data_files="big.jsonl")          # datasets.load_dataset(..., streaming=True)
    tokenizer = BPETokenizer.train(sample_texts(rows, 2_000), vocab_size=4096)   # trained on a sample
    report = write_token_shards(rows, tokenizer, "data/big", StreamConfig(shard_tokens=50_000_000))
    tokens = load_token_shards("data/big")                     # .streams["train"]: a ShardedTokenStream
    history = train(model, TokenBatches(tokens.streams, config), config)   # chapter 4, unchanged

Each row becomes a Document and goes through chapter 1's steps on its own: cleaning
(minilm.data.clean), the quality filters (minilm.data.quality), exact deduplication, and a split
chosen by the hash of its text (minilm.data.splits), so a document always lands in the same split
whatever else the stream holds. Near-duplicate removal and mixing sources compare documents with
each other, so they need the whole corpus at once; they are left to chapter 1's in-memory pipeline.

Memory stays bounded: one row at a time (`datasets` reads the file in small batches), and per split
at most `shard_tokens` token ids waiting to be written. The one thing that grows with the corpus is
the set of 64-bit hashes that finds exact duplicates (about 100 bytes a document; turn it off with
deduplicate=False).

The folder holds chapter 1's token-stream format (minilm.tokens), cut into shards:

    tokenizer.json
    train-00000.bin, train-00001.bin, ...   raw token ids, at most shard_tokens each; a document may
                                            run on into the next shard
    validation-00000.bin, test-00000.bin
    tokens.json    {"dtype": "uint16", "splits": {"train": {"tokens", "documents", "bytes", "shards"}}}

Read one after the other, a split's shards are exactly the stream `minilm.tokens.write_stream`
writes for the same documents; `ShardedTokenStream` reads them as one, memory-mapped.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from minilm.data import END_OF_TEXT, DataError, DatasetUnavailableError, Document
from minilm.data.clean import clean_documents
from minilm.data.dedup import text_hash
from minilm.data.quality import CODE_THRESHOLDS, TEXT_THRESHOLDS, QualityThresholds, filter_documents
from minilm.data.splits import SPLITS, check_fractions, split_name
from minilm.progress import progress_bar
from minilm.tokenizer import load_tokenizer
from minilm.tokens import PreparedTokens, TokenStream, smallest_unsigned_dtype

MANIFEST = "tokens.json"


@dataclass(frozen=True)
class StreamConfig:
    text_column: str = "text"  # the column of each row that holds the document
    source: str = "stream"  # the documents' source: "prose" or "code" get chapter 1's rules for those, others its defaults
    shard_tokens: int = 1 << 24  # token ids per shard file at most (16M: 32 MB of uint16), and per split in memory
    split_fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)  # train, validation, test, as in chapter 1
    deduplicate: bool = True  # drop exact duplicates (this keeps one 64-bit hash per document)
    max_documents: int | None = None  # stop after this many rows (None: the whole stream)
    text_quality: QualityThresholds = TEXT_THRESHOLDS  # filters for every source but code
    code_quality: QualityThresholds = CODE_THRESHOLDS  # filters for code

    def __post_init__(self) -> None:
        if self.shard_tokens < 1:
            raise ValueError(f"shard_tokens={self.shard_tokens} must be at least 1 (try 1 << 24, 16M tokens).")
        check_fractions(self.split_fractions)  # chapter 1's check


@dataclass
class StreamReport:
    rows: int = 0  # rows read from the stream
    emptied: int = 0  # documents that cleaning left empty
    dropped: dict[str, int] = field(default_factory=dict)  # quality filter -> documents it dropped
    duplicates: int = 0  # exact duplicates dropped
    splits: dict[str, dict] = field(default_factory=dict)  # split -> tokens, documents, bytes, shards


def stream_rows(path_or_name: str, data_files=None, split: str = "train", **options):
    """`datasets.load_dataset(..., streaming=True)`: rows are read as they are asked for, never all at once.

    Local files: stream_rows("json", data_files="docs.jsonl") or stream_rows("text", data_files="a.txt",
    sample_by="paragraph"). A dataset on the Hugging Face Hub (online): stream_rows("roneneldan/TinyStories").
    """
    import datasets

    try:
        return datasets.load_dataset(path_or_name, data_files=data_files, split=split, streaming=True, **options)
    except Exception as error:  # a missing file, offline, misspelt: all end here
        raise DatasetUnavailableError(
            f"could not stream {path_or_name!r} (data_files={data_files!r}, split {split!r}): "
            f"{type(error).__name__}: {error}. Check the path; a Hub dataset needs the network.") from None


def row_text(row: dict, index: int, column: str) -> str:
    if column not in row:
        raise DataError(f"row {index} has no column {column!r}; its columns are {sorted(row)}: "
                        f"pass StreamConfig(text_column=...).")
    text = row[column]
    if not isinstance(text, str):
        raise DataError(f"row {index}'s {column!r} is {type(text).__name__}, not text.")
    return text


def clean_stream(rows: Iterable[dict], config: StreamConfig, report: StreamReport) -> Iterator[Document]:
    """Chapter 1's cleaning, quality filters and exact deduplication, one document at a time."""
    seen: set[int] = set()
    for index, row in enumerate(islice(rows, config.max_documents)):
        report.rows += 1
        document = Document(row_text(row, index, config.text_column), config.source, {"row": index})
        cleaned, _ = clean_documents([document])
        if not cleaned:
            report.emptied += 1
            continue
        kept, quality = filter_documents(cleaned, config.text_quality, config.code_quality)
        for reason in quality.dropped:
            report.dropped[reason] = report.dropped.get(reason, 0) + 1
        if not kept:
            continue
        key = text_hash(kept[0].text)
        if config.deduplicate:
            if int(key[:16], 16) in seen:
                report.duplicates += 1
                continue
            seen.add(int(key[:16], 16))
        kept[0].meta["key"] = key  # the hash that picks its split
        yield kept[0]


def sample_texts(rows: Iterable[dict], count: int, config: StreamConfig = StreamConfig()) -> list[str]:
    """The first `count` documents that pass cleaning and the filters: enough to train a tokenizer on."""
    return [document.text for document in islice(clean_stream(rows, config, StreamReport()), count)]


class ShardWriter:
    """One split's token ids, written to files of at most `shard_tokens` ids as they arrive."""

    def __init__(self, folder: Path, split: str, dtype: np.dtype, shard_tokens: int):
        self.folder, self.split, self.dtype, self.shard_tokens = folder, split, dtype, shard_tokens
        self.pending: list[np.ndarray] = []  # ids not written yet, fewer than shard_tokens between calls
        self.pending_count = 0
        self.shards: list[str] = []  # file names written so far

    def add(self, ids: list[int]) -> None:
        self.pending.append(np.asarray(ids, dtype=self.dtype))  # (len(ids),)
        self.pending_count += len(ids)
        while self.pending_count >= self.shard_tokens:
            self.write(self.shard_tokens)

    def close(self) -> list[str]:
        if self.pending_count or not self.shards:  # an empty split still gets one (empty) shard
            self.write(self.pending_count)
        return self.shards

    def write(self, count: int) -> None:
        ids = np.concatenate(self.pending) if self.pending else np.zeros(0, self.dtype)  # (pending,)
        name = f"{self.split}-{len(self.shards):05d}.bin"
        ids[:count].tofile(self.folder / name)
        self.pending, self.pending_count = [ids[count:]], len(ids) - count
        self.shards.append(name)


def write_token_shards(rows: Iterable[dict], tokenizer, folder: str | Path, config: StreamConfig = StreamConfig(),
                       progress: bool = False) -> StreamReport:
    """Clean, filter, deduplicate, split and tokenise `rows` one at a time into token shards in `folder`."""
    folder = Path(folder)
    if (folder / MANIFEST).exists():
        raise FileExistsError(f"{folder} already holds token shards ({MANIFEST}); write into a new folder, "
                              f"or delete this one first.")
    if END_OF_TEXT not in tokenizer.special_tokens:
        raise ValueError(f"the tokenizer has no {END_OF_TEXT!r} token to separate documents; train it with "
                         f"special_tokens=({END_OF_TEXT!r},).")
    folder.mkdir(parents=True, exist_ok=True)
    dtype = smallest_unsigned_dtype(tokenizer.vocab_size)
    end_of_text = tokenizer.special_tokens[END_OF_TEXT]
    writers = {split: ShardWriter(folder, split, dtype, config.shard_tokens) for split in SPLITS}
    report = StreamReport(splits={split: {"tokens": 0, "documents": 0, "bytes": 0} for split in SPLITS})
    documents = clean_stream(progress_bar(rows, progress, desc="streaming", unit=" rows"), config, report)
    for document in documents:
        split = split_name(document.meta["key"], config.split_fractions)
        ids = tokenizer.encode(document.text) + [end_of_text]
        writers[split].add(ids)
        stats = report.splits[split]
        stats["tokens"] += len(ids)
        stats["documents"] += 1
        stats["bytes"] += len(document.text.encode("utf-8"))
    for split, writer in writers.items():
        report.splits[split]["shards"] = writer.close()
    tokenizer.save(folder / "tokenizer.json")
    pipeline = {name: value for name, value in asdict(report).items() if name != "splits"}
    manifest = {"dtype": dtype.name, "splits": report.splits, "pipeline": pipeline}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))  # last: its presence means "finished"
    return report


class ShardedTokens:
    """Several memory-mapped arrays of token ids read as one long array (only what is asked for is read)."""

    def __init__(self, parts: list[np.ndarray], dtype: np.dtype):
        self.parts = parts
        self.dtype = np.dtype(dtype)
        self.starts = np.cumsum([0] + [len(part) for part in parts])  # (shards + 1,): where each shard starts, then the end

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice) and key.step in (None, 1):  # a run of consecutive positions
            start, stop, _ = key.indices(len(self))
            pieces = [part[max(start - first, 0): max(stop - first, 0)] for part, first in zip(self.parts, self.starts)]
            return np.concatenate(pieces) if pieces else np.zeros(0, self.dtype)
        positions = np.asarray(key)  # any shape of whole-array positions
        if positions.size and (positions.min() < 0 or positions.max() >= len(self)):
            raise IndexError(f"token positions must lie in 0 .. {len(self) - 1}.")
        shard = np.searchsorted(self.starts, positions, side="right") - 1  # same shape: the shard of each position
        out = np.empty(positions.shape, dtype=self.dtype)
        for index in np.unique(shard):
            here = shard == index
            out[here] = self.parts[index][positions[here] - self.starts[index]]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """Every id at once (this reads all the shards into memory)."""
        return self[:] if dtype is None else self[:].astype(dtype)


class ShardedTokenStream(TokenStream):
    """A TokenStream whose ids live in several shard files: `batch` reads them as one stream."""

    def __init__(self, paths: list[str | Path], dtype: np.dtype | str):  # no single file to map: TokenStream's
        self.path = Path(paths[0]).parent if paths else Path(".")  # own __init__ does not apply
        self.dtype = np.dtype(dtype)
        self.shards = [TokenStream(path, dtype) for path in paths]  # each one memory-mapped
        self.tokens = ShardedTokens([shard.tokens for shard in self.shards], self.dtype)


def load_token_shards(folder: str | Path) -> PreparedTokens:
    """The tokenizer and a ShardedTokenStream per split, from a folder `write_token_shards` finished."""
    folder = Path(folder)
    if not (folder / MANIFEST).exists():
        raise FileNotFoundError(f"{folder} holds no {MANIFEST}: it is not a folder of token shards, or writing "
                                f"it was interrupted; run write_token_shards into it.")
    meta = json.loads((folder / MANIFEST).read_text())
    splits = meta["splits"]
    return PreparedTokens(
        tokenizer=load_tokenizer(folder / "tokenizer.json"),
        streams={name: ShardedTokenStream([folder / shard for shard in stats["shards"]], meta["dtype"])
                 for name, stats in splits.items()},
        documents={name: stats["documents"] for name, stats in splits.items()},
        text_bytes={name: stats["bytes"] for name, stats in splits.items()},
        folder=folder)
