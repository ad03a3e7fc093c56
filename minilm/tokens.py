"""The token stream: a corpus encoded once into one flat array of token ids, and batches cut from it.

    prepared = prepare_tokens(corpus, vocab_size=1024)   # trains a BPE tokenizer, encodes every split
    stream = prepared.streams["train"]                   # len(stream) tokens, memory-mapped from disk
    x, y = stream.batch(16, 128, generator=torch.Generator().manual_seed(0), device=device)
    # x, y: (16, 128) int64 on device, y[:, t] == x[:, t + 1]: the token that follows each input

Every document is followed by END_OF_TEXT, so the model sees where one text stops and an unrelated
one starts. A batch is `batch_size` windows of `context + 1` consecutive tokens at random starts
(a window may cross a document boundary): x is each window without its last token, y without its
first.

`prepare_tokens` is cached (minilm.cache): its folder is keyed by a hash of the corpus's texts, the
vocabulary size, the kind of tokenizer and the tokenizers' code, and reused while none of them
changes. The folder holds

    tokenizer.json     the tokenizer, trained on the train split (minilm.tokenizer's format)
    SPLIT.bin          the split's token ids, raw, in the smallest unsigned dtype that holds the vocabulary
    tokens.json        {"dtype": "uint16", "splits": {SPLIT: {"tokens": .., "documents": .., "bytes": ..}}}

where "bytes" is the UTF-8 size of the split's documents (their END_OF_TEXT separators not counted),
the denominator of bits per byte.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from datasets import DatasetDict
from minilm import bpe_train, tokenizer as tokenizer_module
from minilm.cache import cached_artifact, file_sha256
from minilm.data import END_OF_TEXT
from minilm.progress import progress_bar
from minilm.runtime import choose_device
from minilm.tokenizer import BPETokenizer, CharTokenizer, load_tokenizer

FLUSH_TOKENS = 1 << 20  # token ids gathered in memory before they are appended to the file
KINDS = ("bpe", "char")


def smallest_unsigned_dtype(vocab_size: int) -> np.dtype:
    """uint8 for up to 256 token ids, uint16 for up to 65,536, else uint32."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"a vocabulary of {vocab_size:,} ids does not fit in 32 bits.")


class TokenStream:
    """A split's token ids as one flat, read-only array memory-mapped from `path`."""

    def __init__(self, path: str | Path, dtype: np.dtype | str):
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        if self.path.stat().st_size == 0:  # an empty file cannot be memory-mapped
            self.tokens = np.zeros(0, dtype=self.dtype)
        else:
            self.tokens = np.memmap(self.path, dtype=self.dtype, mode="r")  # (tokens,)

    def __len__(self) -> int:
        return len(self.tokens)

    def batch(self, batch_size: int, context: int, generator: torch.Generator,
              device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y), each (batch_size, context) int64 on `device` (default: choose_device()); y is x shifted by one."""
        if batch_size < 1 or context < 1:
            raise ValueError(f"batch_size and context must be at least 1, got {batch_size} and {context}.")
        if context >= len(self):
            raise ValueError(f"context={context} needs at least {context + 1} tokens (the inputs and the token after "
                             f"them) but this stream has {len(self)}; use a shorter context or more text.")
        starts = torch.randint(len(self) - context, (batch_size,), generator=generator, device=generator.device)
        offsets = np.arange(context + 1)  # (context + 1,)
        windows = self.tokens[starts.cpu().numpy()[:, None] + offsets]  # (batch, context + 1)
        windows = torch.from_numpy(windows.astype(np.int64))  # (batch, context + 1)
        device = choose_device() if device is None else device
        x = windows[:, :-1].contiguous()  # (batch, context): the inputs
        y = windows[:, 1:].contiguous()  # (batch, context): the next token after each input
        return x.to(device), y.to(device)


def write_stream(tokenizer: BPETokenizer | CharTokenizer, texts: Iterable[str], path: str | Path,
                 progress: bool = False) -> dict[str, int]:
    """Encode each text, followed by END_OF_TEXT, into `path`; return its tokens, documents and bytes."""
    if END_OF_TEXT not in tokenizer.special_tokens:
        raise ValueError(f"the tokenizer has no {END_OF_TEXT!r} token to separate documents; train it with "
                         f"special_tokens=({END_OF_TEXT!r},).")
    dtype = smallest_unsigned_dtype(tokenizer.vocab_size)
    end_of_text = tokenizer.special_tokens[END_OF_TEXT]
    stats = {"tokens": 0, "documents": 0, "bytes": 0}
    pending: list[int] = []
    with open(path, "wb") as file:
        for text in progress_bar(texts, progress, desc=f"encoding {Path(path).stem}", unit=" docs"):
            pending += tokenizer.encode(text)
            pending.append(end_of_text)
            stats["documents"] += 1
            stats["bytes"] += len(text.encode("utf-8"))
            if len(pending) >= FLUSH_TOKENS:
                np.asarray(pending, dtype=dtype).tofile(file)
                stats["tokens"] += len(pending)
                pending.clear()
        np.asarray(pending, dtype=dtype).tofile(file)
        stats["tokens"] += len(pending)
    return stats


@dataclass
class PreparedTokens:
    tokenizer: BPETokenizer | CharTokenizer  # trained on the train split
    streams: dict[str, TokenStream]  # split name -> its token stream
    documents: dict[str, int]  # split name -> how many documents it holds
    text_bytes: dict[str, int]  # split name -> UTF-8 bytes of its documents (separators not counted)
    folder: Path  # the cache folder that holds the tokenizer and the streams

    def bytes_per_token(self, split: str = "validation") -> float:
        """How many bytes of text one token stands for on average (END_OF_TEXT tokens included)."""
        return self.text_bytes[split] / len(self.streams[split])

    @classmethod
    def load(cls, folder: str | Path) -> PreparedTokens:
        folder = Path(folder)
        meta = json.loads((folder / "tokens.json").read_text())
        splits = meta["splits"]
        return cls(tokenizer=load_tokenizer(folder / "tokenizer.json"),
                   streams={name: TokenStream(folder / f"{name}.bin", meta["dtype"]) for name in splits},
                   documents={name: stats["documents"] for name, stats in splits.items()},
                   text_bytes={name: stats["bytes"] for name, stats in splits.items()},
                   folder=folder)


def corpus_digest(corpus: DatasetDict) -> str:
    """A SHA-256 of every split's name and texts: it changes when any text changes."""
    digest = hashlib.sha256()
    for name in sorted(corpus):
        digest.update(f"\0split {name}\0".encode())
        for text in corpus[name]["text"]:
            digest.update(f"{len(text)}\0{text}".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def train_tokenizer(corpus: DatasetDict, vocab_size: int, kind: str = "bpe",
                    progress: bool = False) -> BPETokenizer | CharTokenizer:
    """A BPE tokenizer trained on the train split, or a character tokenizer over every split's alphabet.

    The character vocabulary takes the characters of every split (an alphabet carries no statistics
    worth leaking, and a character met only in validation would otherwise make it unencodable);
    `vocab_size` is then an upper limit.
    """
    if kind == "bpe":
        return BPETokenizer.train(corpus["train"]["text"], vocab_size, progress=progress)
    tokenizer = CharTokenizer.train(text for name in corpus for text in corpus[name]["text"])
    if tokenizer.vocab_size > vocab_size:
        raise ValueError(f"the corpus has {tokenizer.vocab_size} distinct characters (with END_OF_TEXT), more than "
                         f"vocab_size={vocab_size}; ask for a vocabulary of at least {tokenizer.vocab_size}.")
    return tokenizer


def prepare_tokens(corpus: DatasetDict, vocab_size: int, kind: str = "bpe", progress: bool = False) -> PreparedTokens:
    """The tokenizer (trained on corpus["train"]) and a TokenStream per split, built once and cached."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not a tokenizer kind; use one of {', '.join(KINDS)}.")
    if "train" not in corpus:
        raise ValueError(f"the corpus has no 'train' split (it has {', '.join(corpus) or 'none'}); "
                         f"the tokenizer is trained on it.")

    def build(folder: Path) -> None:
        write_streams(train_tokenizer(corpus, vocab_size, kind, progress), corpus, folder, progress)

    inputs = {"corpus": corpus_digest(corpus), "vocab_size": vocab_size, "kind": kind}
    # the tokenizers' code is part of the key: changing how text is tokenised rebuilds the streams
    folder = cached_artifact(f"tokens-{kind}", inputs, build, code=(tokenizer_module, bpe_train))
    return PreparedTokens.load(folder)


def encode_with(corpus: DatasetDict, tokens: PreparedTokens, progress: bool = False) -> PreparedTokens:
    """Every split of `corpus` encoded with the tokenizer of `tokens` (not trained again), cached.

    Models trained on different corpora compare only when they share one vocabulary: chapter 7
    trains a tokenizer on the general mix and encodes every other corpus with it.
    """
    def build(folder: Path) -> None:
        write_streams(tokens.tokenizer, corpus, folder, progress)

    inputs = {"corpus": corpus_digest(corpus), "tokenizer": file_sha256(tokens.folder / "tokenizer.json")}
    return PreparedTokens.load(cached_artifact("tokens-shared", inputs, build, code=(tokenizer_module, bpe_train)))


def write_streams(tokenizer: BPETokenizer | CharTokenizer, corpus: DatasetDict, folder: Path,
                  progress: bool = False) -> None:
    """Save the tokenizer and one stream per split into `folder`, with tokens.json describing them."""
    tokenizer.save(folder / "tokenizer.json")
    splits = {name: write_stream(tokenizer, corpus[name]["text"], folder / f"{name}.bin", progress)
              for name in corpus}
    meta = {"dtype": smallest_unsigned_dtype(tokenizer.vocab_size).name, "splits": splits}
    (folder / "tokens.json").write_text(json.dumps(meta, indent=2))
