"""Tokenizers: text to token ids and back, by characters or by byte-level BPE.

    from minilm.tokenizer import BPETokenizer, CharTokenizer
    tokenizer = BPETokenizer.train(texts, vocab_size=1024)   # special_tokens=("<|endoftext|>",)
    ids = tokenizer.encode("The cat sat on the mat.<|endoftext|>")
    text = tokenizer.decode(ids)                             # the same string again
    tokenizer.save("tokenizer.json"); BPETokenizer.load("tokenizer.json")
    gpt2 = BPETokenizer.from_gpt2_files("vocab.json", "merges.txt")   # GPT-2's own token ids

`CharTokenizer` gives every character seen in training one id. A character it has not seen has no
id: encoding it raises `UnknownCharacterError`, which names the character (there is no "unknown"
token, so nothing is silently lost).

`BPETokenizer` works on UTF-8 bytes, so every string has an encoding and `decode(encode(s)) == s`
always. Encoding: special tokens are cut out first (longest first), the rest is pre-tokenised with
GPT-2's pattern (minilm.bpe_train), and each pre-token's bytes are merged by rank: repeatedly the
adjacent pair whose merge was learned earliest, until no learned pair is left. Each pre-token's ids
are kept in a cache bounded in bytes (it empties itself when full), so the many repeats of " the"
are merged once and no input, however hostile, makes it grow without bound. Decoding joins the
tokens' bytes and decodes them with errors="replace": a token that holds only part of a character
(Chinese characters take 3 bytes) still decodes, to U+FFFD.

Our own ids: 0-255 are the single bytes, then one id per learned merge, then the special tokens.

The save format (one JSON file, UTF-8):

    {"kind": "byte-level-bpe", "version": 1, "pattern": GPT-2's pre-tokenisation regex,
     "vocab": ["00", "01", ..., "7468", ...],   # token id i -> its bytes, in hex
     "merges": ["74 68", ...],                  # learned pairs in rank order: left and right bytes in hex
     "special_tokens": {"<|endoftext|>": 1023}} # their vocab entry is their UTF-8 text

A character tokenizer saves as {"kind": "characters", "version": 1, "characters": [...],
"special_tokens": {...}}. `load_tokenizer(path)` loads either.
"""
from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from minilm.bpe_train import (GPT2_PATTERN, GPT2_SPLIT, count_pretokens, merge_pair, special_splitter,
                              split_on_special, to_utf8, train_merges)
from minilm.data import END_OF_TEXT

WORD_CACHE_BYTES = 8 << 20  # what encode()'s cache of pre-token ids may hold, about; then it starts afresh
CACHED_WORD_CHARS = 32  # longer pre-tokens are rare: they are merged afresh each time, never kept
STREAM_CHUNK_CHARS = 1 << 16  # encode_iterable encodes text in pieces of about this many characters
NOT_A_MERGE = (float("inf"), -1)  # the rank of a pair that was never merged: after every real rank


class UnknownCharacterError(ValueError):
    """The text holds a character the character tokenizer never saw in training."""


def _as_int_list(ids) -> list[int]:
    return ids.tolist() if hasattr(ids, "tolist") else list(ids)  # a tensor or array, or a list


def _check_ids(ids: list[int], vocab_size: int) -> None:
    if ids and (min(ids) < 0 or max(ids) >= vocab_size):
        bad = next(i for i in ids if not 0 <= i < vocab_size)
        raise ValueError(f"token id {bad} is not in this tokenizer's vocabulary (ids 0 to {vocab_size - 1}).")


class CharTokenizer:
    """One id per character seen in training (sorted), then one per special token."""

    def __init__(self, characters: Iterable[str], special_tokens: Sequence[str] = (END_OF_TEXT,)):
        self.characters = sorted(set(characters))
        if any(len(c) != 1 for c in self.characters):
            raise ValueError("CharTokenizer takes single characters; use BPETokenizer for longer tokens.")
        self._ids = {c: i for i, c in enumerate(self.characters)}
        self.special_tokens = {token: len(self.characters) + i for i, token in enumerate(dict.fromkeys(special_tokens))}
        self._tokens = self.characters + list(self.special_tokens)  # id -> its text
        self._splitter = special_splitter(self.special_tokens)

    @classmethod
    def train(cls, texts: Iterable[str], special_tokens: Sequence[str] = (END_OF_TEXT,)) -> CharTokenizer:
        """The tokenizer whose vocabulary is every character of `texts` (special tokens aside)."""
        splitter = special_splitter(special_tokens)
        characters = set()
        for text in texts:
            for plain in split_on_special(text, splitter)[::2]:
                characters.update(plain)
        return cls(characters, special_tokens)

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    def encode(self, text: str) -> list[int]:
        ids = []
        for index, part in enumerate(split_on_special(text, self._splitter)):
            if index % 2:
                ids.append(self.special_tokens[part])
                continue
            try:
                ids.extend(self._ids[c] for c in part)
            except KeyError as error:
                c = error.args[0]
                raise UnknownCharacterError(
                    f"the character {c!r} (U+{ord(c):04X}) never occurred in this tokenizer's training text, so it "
                    f"has no id; train on text that contains it, or use BPETokenizer, which has an id for every byte."
                ) from None
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        ids = _as_int_list(ids)
        _check_ids(ids, self.vocab_size)
        return "".join(self._tokens[i] for i in ids)

    def token_bytes(self, token_id: int) -> bytes:
        _check_ids([token_id], self.vocab_size)
        return self._tokens[token_id].encode("utf-8")

    def save(self, path: str | Path) -> None:
        payload = {"kind": "characters", "version": 1, "characters": self.characters,
                   "special_tokens": self.special_tokens}
        Path(path).write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        payload = _read_saved(path, "characters")
        return cls(payload["characters"], list(payload["special_tokens"]))


class WordCache(dict):
    """Pre-token -> its ids, bounded in bytes: a hit is a plain dict lookup; a miss merges the word
    and keeps it if it is short, emptying the cache first when it holds WORD_CACHE_BYTES."""

    def __init__(self, merge):
        super().__init__()
        self.merge = merge  # word -> ids
        self.size = 0  # bytes held, as sys.getsizeof counts them

    def __missing__(self, word: str) -> tuple[int, ...]:
        ids = self.merge(word)
        if len(word) <= CACHED_WORD_CHARS:
            if self.size > WORD_CACHE_BYTES:
                self.clear()
                self.size = 0
            self[word] = ids
            self.size += sys.getsizeof(word) + sys.getsizeof(ids) + 64  # 64: the dict's slot
        return ids


class BPETokenizer:
    """Byte-level BPE: `vocab[i]` is token i's bytes; `merges` are the learned pairs in rank order."""

    def __init__(self, vocab: Sequence[bytes], merges: Sequence[tuple[bytes, bytes]], special_tokens: dict[str, int]):
        self.vocab = list(vocab)
        self.merges = [(bytes(left), bytes(right)) for left, right in merges]
        self.special_tokens = dict(special_tokens)
        ids = {token: i for i, token in enumerate(self.vocab) if i not in self.special_tokens.values()}
        if len(ids) + len(self.special_tokens) != len(self.vocab):
            raise ValueError("two ordinary tokens of this vocabulary have the same bytes; each needs its own.")
        for token, token_id in self.special_tokens.items():
            if not 0 <= token_id < len(self.vocab) or self.vocab[token_id] != token.encode("utf-8"):
                raise ValueError(f"special token {token!r} must map to a vocab entry holding its UTF-8 text.")
        missing = [b for b in range(256) if bytes([b]) not in ids]
        if missing:
            raise ValueError(f"a byte-level vocabulary needs all 256 single bytes; byte {missing[0]} is missing.")
        self._byte_ids = [ids[bytes([b])] for b in range(256)]  # byte value -> token id
        self._ranks = {}  # (left id, right id) -> (rank, id of the merged token)
        for rank, (left, right) in enumerate(self.merges):
            if left not in ids or right not in ids or left + right not in ids:
                raise ValueError(f"merge {rank} ({left!r}, {right!r}) uses or makes a token that is not in the vocabulary.")
            self._ranks.setdefault((ids[left], ids[right]), (rank, ids[left + right]))
        self._splitter = special_splitter(self.special_tokens)
        self._longest_special = max(map(len, self.special_tokens), default=1)
        self._word_ids = WordCache(self._merge_word).__getitem__  # a pre-token's ids, merged once

    # Building one -----------------------------------------------------------------------------

    @classmethod
    def from_merges(cls, merges: Sequence[tuple[bytes, bytes]], special_tokens: Sequence[str] = (END_OF_TEXT,)) -> BPETokenizer:
        """Our id layout: 256 bytes, one token per merge (unless its bytes exist already), specials last."""
        vocab = [bytes([b]) for b in range(256)]
        known = set(vocab)
        for left, right, *_ in merges:
            if left + right not in known:
                known.add(left + right)
                vocab.append(left + right)
        special_ids = {token: len(vocab) + i for i, token in enumerate(dict.fromkeys(special_tokens))}
        vocab += [token.encode("utf-8") for token in special_ids]
        return cls(vocab, [(left, right) for left, right, *_ in merges], special_ids)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, special_tokens: Sequence[str] = (END_OF_TEXT,),
              progress: bool = False) -> BPETokenizer:
        """Learn merges on `texts` until the vocabulary (special tokens included) has `vocab_size` ids.

        Stops early, with a smaller vocabulary, if the texts run out of pairs to merge.
        """
        special_tokens = list(dict.fromkeys(special_tokens))
        if vocab_size < 256 + len(special_tokens):
            raise ValueError(f"vocab_size={vocab_size} is too small: a byte-level BPE needs 256 byte tokens "
                             f"plus {len(special_tokens)} special token(s); ask for at least {256 + len(special_tokens)}.")
        counts = count_pretokens(texts, special_tokens, progress=progress)
        merges = train_merges(counts, vocab_size - len(special_tokens), progress=progress)
        return cls.from_merges(merges, special_tokens)

    # Using it ---------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def token_bytes(self, token_id: int) -> bytes:
        _check_ids([token_id], self.vocab_size)
        return self.vocab[token_id]

    def _merge_word(self, word: str) -> tuple[int, ...]:
        """One pre-token's ids: its bytes, merged pair by pair in the order the merges were learned."""
        ids = [self._byte_ids[b] for b in to_utf8(word)]
        while len(ids) > 1:
            pair = min(zip(ids, ids[1:]), key=lambda pair: self._ranks.get(pair, NOT_A_MERGE))
            if pair not in self._ranks:
                break
            ids = merge_pair(ids, *pair, new=self._ranks[pair][1])
        return tuple(ids)

    def encode(self, text: str) -> list[int]:
        """The token ids of `text`; special tokens in it become their own ids."""
        return self._encode_stable_prefix(text, stop=len(text) + 1)[0]

    def _encode_stable_prefix(self, text: str, stop: int) -> tuple[list[int], int]:
        """Ids of the leading pieces of `text` that text appended later cannot change, and their length.

        A pre-token is final when the pre-token after it ends before `stop`, the first position
        where an appended text could complete a special token; a special token is final when it
        starts before `stop`. encode() passes a `stop` beyond the end: every piece is final.
        """
        ids, position = [], 0
        for index, part in enumerate(split_on_special(text, self._splitter)):
            if index % 2:  # a special token
                if position >= stop:
                    break
                ids.append(self.special_tokens[part])
                position += len(part)
                continue
            if position + len(part) < stop:  # the whole plain part is final: the fast path
                ids.extend(itertools.chain.from_iterable(map(self._word_ids, GPT2_SPLIT.findall(part))))
                position += len(part)
                continue
            words = GPT2_SPLIT.findall(part)
            for word, following in zip(words, words[1:] + [""]):
                # Where a word ends can hang on the text up to the end of the next one (a run of
                # spaces leaves its last space to the word after it), so both must end before stop.
                if not following or position + len(word) + len(following) >= stop:
                    return ids, position
                ids.extend(self._word_ids(word))
                position += len(word)
        return ids, position

    def encode_iterable(self, texts: Iterable[str], chunk_chars: int = STREAM_CHUNK_CHARS) -> Iterator[int]:
        """Yield the ids of the concatenated `texts` (e.g. a file's lines) with bounded memory.

        The ids are exactly encode("".join(texts)). Text is buffered until about `chunk_chars`
        characters, the pieces that later text cannot change are encoded and dropped, and the rest
        waits for more text. Memory stays bounded unless a single pre-token is huge (a very long run
        of letters or of spaces), which is kept whole.
        """
        pieces, buffered = [], 0
        for text in texts:
            pieces.append(text)
            buffered += len(text)
            if buffered < chunk_chars:
                continue
            buffer = "".join(pieces)
            ids, consumed = self._encode_stable_prefix(buffer, stop=len(buffer) - self._longest_special + 1)
            yield from ids
            pieces, buffered = [buffer[consumed:]], len(buffer) - consumed
        yield from self.encode("".join(pieces))

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`: their bytes joined, then decoded as UTF-8 with errors="replace"."""
        ids = _as_int_list(ids)
        _check_ids(ids, self.vocab_size)
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")

    # Saving and loading -----------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the JSON format described in this module's docstring."""
        payload = {"kind": "byte-level-bpe", "version": 1, "pattern": GPT2_PATTERN,
                   "vocab": [token.hex() for token in self.vocab],
                   "merges": [f"{left.hex()} {right.hex()}" for left, right in self.merges],
                   "special_tokens": self.special_tokens}
        Path(path).write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        payload = _read_saved(path, "byte-level-bpe")
        if payload.get("pattern") != GPT2_PATTERN:
            raise ValueError(f"{path} pre-tokenises with another pattern than GPT-2's; this tokenizer cannot use it.")
        merges = [tuple(bytes.fromhex(half) for half in line.split(" ")) for line in payload["merges"]]
        return cls([bytes.fromhex(token) for token in payload["vocab"]], merges, payload["special_tokens"])

    @classmethod
    def from_gpt2_files(cls, vocab_json: str | Path, merges_txt: str | Path,
                        special_tokens: Sequence[str] = (END_OF_TEXT,)) -> BPETokenizer:
        """Load GPT-2's format: vocab.json (token text -> id) and merges.txt (one "left right" per line).

        In those files every byte is written as one printable character (`gpt2_byte_to_char`), so a
        space is "Ġ". Given GPT-2's own files, the ids are GPT-2's.
        """
        token_ids = json.loads(Path(vocab_json).read_text(encoding="utf-8"))
        if sorted(token_ids.values()) != list(range(len(token_ids))):
            raise ValueError(f"{vocab_json}: the ids must be 0, 1, ..., {len(token_ids) - 1}, each used once.")
        missing = [token for token in special_tokens if token not in token_ids]
        if missing:
            raise ValueError(f"{vocab_json} has no entry for the special token {missing[0]!r}; "
                             f"pass special_tokens=() or the file's own special tokens.")
        vocab = [b""] * len(token_ids)
        for text, token_id in token_ids.items():
            vocab[token_id] = text.encode("utf-8") if text in special_tokens else _gpt2_text_to_bytes(text, vocab_json)
        merges = []
        for number, line in enumerate(Path(merges_txt).read_text(encoding="utf-8").splitlines(), start=1):
            if not line or (number == 1 and line.startswith("#version")):
                continue
            halves = line.split(" ")
            if len(halves) != 2:
                raise ValueError(f"{merges_txt}, line {number}: expected two tokens separated by one space, got {line!r}.")
            merges.append(tuple(_gpt2_text_to_bytes(half, merges_txt) for half in halves))
        return cls(vocab, merges, {token: token_ids[token] for token in special_tokens})


def gpt2_byte_to_char() -> dict[int, str]:
    """GPT-2's printable stand-in for each byte: printable Latin-1 bytes stand for themselves, the
    others (control bytes, space, 0x7F-0xA0, 0xAD) get the characters from U+0100 on, in order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(others)}}


_GPT2_CHAR_TO_BYTE = {char: byte for byte, char in gpt2_byte_to_char().items()}


def _gpt2_text_to_bytes(text: str, where) -> bytes:
    try:
        return bytes(_GPT2_CHAR_TO_BYTE[char] for char in text)
    except KeyError as error:
        raise ValueError(f"{where}: {text!r} holds {error.args[0]!r}, which GPT-2's byte-to-character table "
                         f"does not use; is this a byte-level BPE file?") from None


def _read_saved(path: str | Path, kind: str) -> dict:
    payload = json.loads(Path(path).read_text(encoding="utf-8"))
    if payload.get("kind") != kind or payload.get("version") != 1:
        raise ValueError(f"{path} is not a saved {kind} tokenizer (version 1); it says kind={payload.get('kind')!r}.")
    return payload


def load_tokenizer(path: str | Path) -> CharTokenizer | BPETokenizer:
    """Load a tokenizer saved by either class, whichever it is."""
    kind = json.loads(Path(path).read_text(encoding="utf-8")).get("kind")
    loaders = {"characters": CharTokenizer.load, "byte-level-bpe": BPETokenizer.load}
    if kind not in loaders:
        raise ValueError(f"{path} holds no saved minilm tokenizer (kind={kind!r}).")
    return loaders[kind](path)
