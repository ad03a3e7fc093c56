"""Chapter 1 exercises, part 2: byte-level BPE by hand, trained and used.

Write each function below (replace `raise NotImplementedError`), then check your answers with:

    ./course exercise ch01_tokenizer

(or `pytest tests/exercises/test_ch01_tokenizer.py --student`). The tests compare your merges with
`minilm.bpe_train.train_merges`, and your ids with `minilm.tokenizer.BPETokenizer` and with the
`tokenizers` library's BPE model built from your merges. Helper functions are welcome (start their
names with `_`). The solutions are in solutions/ch01_tokenizer.py; try first.
"""
from collections import Counter

from minilm.bpe_train import GPT2_SPLIT


def train_bpe(texts: list[str], vocab_size: int) -> list[tuple[bytes, bytes]]:
    """The merges, in the order learned, of byte-level BPE trained on `texts` up to `vocab_size` tokens.

    1. Cut each text into pre-tokens with GPT-2's pattern (`from minilm.bpe_train import GPT2_SPLIT`,
       then `GPT2_SPLIT.findall(text)`) and count how often each pre-token occurs.
    2. Write each distinct pre-token as a tuple of one-byte tokens: " cat" -> (b" ", b"c", b"a", b"t").
    3. Repeat: count every adjacent pair of tokens over all pre-tokens (a pre-token that occurs n
       times adds n), take the most frequent pair, break ties towards the greatest (left, right) as
       Python compares tuples of bytes, append it to the merges, and replace it in every pre-token by
       the concatenated token, scanning left to right (in (a, a, a) the pair (a, a) becomes (aa, a)).
    4. Stop when the vocabulary, the 256 single bytes plus every distinct token the merges made,
       has `vocab_size` tokens (so at most vocab_size - 256 merges), or when no pair is left.

    The result equals `[(m.left, m.right) for m in minilm.bpe_train.train_merges(count_pretokens(texts),
    vocab_size)]`, which finds the same merges without recounting every pair.
    >>> train_bpe(["ab ab abc"], 258)
    [(b'a', b'b'), (b' ', b'ab')]
    """
    raise NotImplementedError


def bpe_encode(text: str, merges: list[tuple[bytes, bytes]]) -> list[int]:
    """The token ids of `text` under a merge table learned by `train_bpe`.

    Ids: 0-255 are the single bytes, and merge i makes token 256 + i. (If a merge makes bytes that an
    earlier merge already made, which is rare, it reuses that token's id and the later merges take
    the next free ids, as `minilm.tokenizer.BPETokenizer.from_merges` does.)
    Cut the text into pre-tokens with `GPT2_SPLIT.findall`, as in training; write each as its UTF-8
    bytes; then, while some adjacent pair of its tokens is in the table, merge the pair whose merge
    came first in the table, everywhere in the pre-token, left to right. The ids of the pre-tokens,
    one after the other, are the encoding. It equals `BPETokenizer.train(texts, vocab_size,
    special_tokens=()).encode(text)` when `merges = train_bpe(texts, vocab_size)`.
    >>> bpe_encode("ab abc", [(b"a", b"b"), (b" ", b"ab")])
    [256, 257, 99]
    """
    raise NotImplementedError
