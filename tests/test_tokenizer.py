"""minilm.tokenizer: lossless round trips over all of Unicode (hypothesis), special tokens, streaming
encodes that equal one-shot encodes, save/load, and the errors a learner can meet."""
import inspect
import json
import textwrap

import pytest
from hypothesis import given, settings, strategies as st

from minilm.data import END_OF_TEXT
from minilm.tokenizer import BPETokenizer, CharTokenizer, UnknownCharacterError, load_tokenizer

# Training text with English, code, accents, CJK and emoji, so that learned merges cut through
# multi-byte characters and the round trip has something to get wrong.
MULTILINGUAL = ["Les données générales sont diverses. Ça coûte peu. " * 20,
                "通用数据来自许多来源，清洗后用于训练语言模型。" * 20,
                "emoji 😀😀 🎉 and combining e\u0301 marks " * 20]
TRAINING_TEXTS = [inspect.getsource(textwrap), *MULTILINGUAL]

# Strings a tokenizer can get wrong: special-token look-alikes, whitespace runs, combining marks.
TRICKY_PIECES = [END_OF_TEXT, "<|endoftext|", "<|endoftext", "|>", "<|", "<|endoftext|>>", "<<|endoftext|>",
                 "  ", "\n\n", "\t \n", "\r\n", " 's", "'ll", "e\u0301", "\u200d", "👩‍👩‍👧", "猫", "\ufeff", "\x00"]
ANY_TEXT = st.lists(st.one_of(st.text(), st.sampled_from(TRICKY_PIECES)), max_size=12).map("".join)


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train(TRAINING_TEXTS, vocab_size=700)


# Byte-level BPE


def test_training_reaches_the_vocabulary_size_with_the_special_token_last(bpe):
    assert bpe.vocab_size == 700
    assert bpe.special_tokens == {END_OF_TEXT: 699}
    assert [bpe.token_bytes(i) for i in range(256)] == [bytes([b]) for b in range(256)]
    assert len(set(bpe.vocab)) == bpe.vocab_size  # every token's bytes are its own


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_decode_encode_round_trips_every_string(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


@settings(max_examples=100, deadline=None)
@given(ANY_TEXT)
def test_tokens_concatenate_to_the_text(bpe, text):
    """Each id stands for bytes, and those bytes, joined, are exactly the text's UTF-8."""
    assert b"".join(bpe.token_bytes(i) for i in bpe.encode(text)) == text.encode("utf-8")


def test_merges_cut_through_multi_byte_characters(bpe):
    """The Chinese training text makes merges of 2- and 3-byte pieces; some token is not whole UTF-8."""
    def is_whole_utf8(token):
        try:
            token.decode("utf-8")
            return True
        except UnicodeDecodeError:
            return False
    assert not all(is_whole_utf8(bpe.token_bytes(i)) for i in range(bpe.vocab_size))


def test_a_token_holding_part_of_a_character_decodes_to_the_replacement_character(bpe):
    cat = "猫".encode("utf-8")  # 3 bytes
    assert bpe.decode([cat[0]]) == "\ufffd"
    assert bpe.decode([cat[0], cat[1], cat[2]]) == "猫"


def test_special_tokens_are_never_split_and_look_alikes_are_plain_text(bpe):
    end = bpe.special_tokens[END_OF_TEXT]
    assert bpe.encode(END_OF_TEXT) == [end]
    assert bpe.encode(f"a{END_OF_TEXT}{END_OF_TEXT}b").count(end) == 2
    assert end not in bpe.encode("<|endoftext|")
    assert end not in bpe.encode("<|endoftext|" + "|>")
    assert bpe.encode(f"x{END_OF_TEXT}y") == bpe.encode("x") + [end] + bpe.encode("y")  # nothing merges across


def test_longest_special_token_wins():
    tokenizer = BPETokenizer.train(["aaa bbb"], vocab_size=260, special_tokens=["<|a|>", "<|a|><|b|>"])
    assert tokenizer.encode("<|a|><|b|>") == [tokenizer.special_tokens["<|a|><|b|>"]]
    assert tokenizer.encode("<|a|><|b") == [tokenizer.special_tokens["<|a|>"], *tokenizer.encode("<|b")]


def test_no_merge_crosses_a_pretoken_boundary(bpe):
    """Encoding a text piece by piece (GPT-2's pre-tokens) gives the same ids as encoding it whole."""
    pieces = ["Hello", ",", " world", "!", "  ", " 123", "\n"]
    assert bpe.encode("".join(pieces)) == [i for piece in pieces for i in bpe.encode(piece)]


@settings(max_examples=150, deadline=None)
@given(ANY_TEXT, st.lists(st.integers(0, 40), max_size=8), st.integers(1, 24))
def test_encode_iterable_equals_encode_of_the_joined_text(bpe, text, cuts, chunk_chars):
    bounds = sorted({min(cut, len(text)) for cut in cuts} | {0, len(text)})
    chunks = [text[a:b] for a, b in zip(bounds, bounds[1:])]
    assert list(bpe.encode_iterable(chunks, chunk_chars=chunk_chars)) == bpe.encode(text)


@pytest.mark.parametrize("chunks", [["  <|endoftext|", ">"], ["a   ", "<|endoftext|>b"], ["x \n\n  <|end", "oftext|>"]])
def test_encode_iterable_keeps_a_space_run_whole_before_a_special_token(bpe, chunks):
    """A run of spaces gives its last space to the next word unless a special token follows it,
    which the stream may only learn from later text."""
    assert list(bpe.encode_iterable(chunks, chunk_chars=1)) == bpe.encode("".join(chunks))


def test_encode_iterable_streams_a_file_lazily(bpe, tmp_path):
    path = tmp_path / "big.txt"
    path.write_text(TRAINING_TEXTS[0] * 5, encoding="utf-8")  # about 300 kB, several chunks
    read = []

    def lines():
        with open(path, encoding="utf-8") as file:
            for line in file:
                read.append(len(line))
                yield line

    streamed = bpe.encode_iterable(lines(), chunk_chars=4096)
    ids = [next(streamed)]
    assert sum(read) < 2 * 4096 + max(read)  # the first ids come after about one chunk, not the whole file
    ids += streamed
    assert ids == bpe.encode(path.read_text(encoding="utf-8"))


def test_save_and_load_round_trip(bpe, tmp_path):
    bpe.save(tmp_path / "tokenizer.json")
    loaded = BPETokenizer.load(tmp_path / "tokenizer.json")
    assert loaded.vocab == bpe.vocab and loaded.merges == bpe.merges
    assert loaded.special_tokens == bpe.special_tokens
    for text in TRAINING_TEXTS:
        assert loaded.encode(text) == bpe.encode(text)
    assert isinstance(load_tokenizer(tmp_path / "tokenizer.json"), BPETokenizer)


def test_saved_format_is_the_documented_json(bpe, tmp_path):
    bpe.save(tmp_path / "tokenizer.json")
    saved = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    assert saved["kind"] == "byte-level-bpe" and saved["version"] == 1
    assert [bytes.fromhex(token) for token in saved["vocab"]] == bpe.vocab
    left, right = saved["merges"][0].split(" ")
    assert (bytes.fromhex(left), bytes.fromhex(right)) == bpe.merges[0]


def test_a_smaller_vocabulary_is_a_prefix_of_the_merges():
    """Training is greedy, so the first merges of a big vocabulary are the merges of a small one."""
    big = BPETokenizer.train(TRAINING_TEXTS, vocab_size=600)
    small = BPETokenizer.train(TRAINING_TEXTS, vocab_size=400)
    assert big.merges[:len(small.merges)] == small.merges
    assert BPETokenizer.from_merges(big.merges[:len(small.merges)]).vocab == small.vocab


def test_bpe_errors_say_what_to_do(bpe, tmp_path):
    with pytest.raises(ValueError, match="at least 257"):
        BPETokenizer.train(["abc"], vocab_size=100)
    with pytest.raises(ValueError, match="lone surrogate U\\+D800"):
        bpe.encode("a\ud800b")
    with pytest.raises(ValueError, match="token id 700 is not in this tokenizer's vocabulary"):
        bpe.decode([1, 700])
    with pytest.raises(ValueError, match="token id -1"):
        bpe.decode([-1])
    (tmp_path / "other.json").write_text(json.dumps({"kind": "characters", "version": 1}))
    with pytest.raises(ValueError, match="not a saved byte-level-bpe tokenizer"):
        BPETokenizer.load(tmp_path / "other.json")
    with pytest.raises(ValueError, match="empty string"):
        BPETokenizer.train(["abc"], vocab_size=300, special_tokens=[""])


def test_training_stops_when_pairs_run_out():
    tokenizer = BPETokenizer.train(["ab ab"], vocab_size=1000)
    assert [tokenizer.token_bytes(i) for i in range(256, tokenizer.vocab_size - 1)] == [b"ab", b" ab"]


# Characters


def test_char_tokenizer_round_trips_and_numbers_sorted_characters():
    tokenizer = CharTokenizer.train(["hello world", f"dlrow{END_OF_TEXT}"])
    assert tokenizer.characters == sorted(set("hello world"))
    assert tokenizer.special_tokens == {END_OF_TEXT: len(set("hello world"))}
    text = f"hello{END_OF_TEXT} world"
    ids = tokenizer.encode(text)
    assert ids[5] == tokenizer.special_tokens[END_OF_TEXT] and len(ids) == len("hello") + 1 + len(" world")
    assert tokenizer.decode(ids) == text
    assert tokenizer.vocab_size == len(set("hello world")) + 1


def test_char_tokenizer_names_an_unknown_character(tmp_path):
    tokenizer = CharTokenizer.train(["abc"])
    with pytest.raises(UnknownCharacterError, match=r"'猫' \(U\+732B\)"):
        tokenizer.encode("ab猫")
    with pytest.raises(ValueError, match="token id 9"):
        tokenizer.decode([9])
    tokenizer.save(tmp_path / "chars.json")
    loaded = load_tokenizer(tmp_path / "chars.json")
    assert isinstance(loaded, CharTokenizer) and loaded.encode("cab") == tokenizer.encode("cab")
