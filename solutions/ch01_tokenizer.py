"""Chapter 1 exercises, part 2: byte-level BPE by hand, trained and used, solved."""
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
    pretokens = Counter(word.encode("utf-8") for text in texts for word in GPT2_SPLIT.findall(text))
    words = {tuple(bytes([b]) for b in word): count for word, count in pretokens.items()}
    vocabulary = {bytes([b]) for b in range(256)}
    merges = []
    while len(vocabulary) < vocab_size:
        pair_counts = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pair_counts[pair] += count
        if not pair_counts:
            break
        best = max(pair_counts, key=lambda pair: (pair_counts[pair], pair))
        merges.append(best)
        vocabulary.add(best[0] + best[1])
        words = {tuple(_replace_pair(word, best, best[0] + best[1])): count for word, count in words.items()}
    return merges


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
    token_ids = {bytes([b]): b for b in range(256)}
    ranks = {}  # (left id, right id) -> (rank, id of the merged token)
    for rank, (left, right) in enumerate(merges):
        new_id = token_ids.setdefault(left + right, len(token_ids))
        ranks.setdefault((token_ids[left], token_ids[right]), (rank, new_id))
    ids = []
    for word in GPT2_SPLIT.findall(text):
        word_ids = list(word.encode("utf-8"))
        while True:
            learned = [pair for pair in zip(word_ids, word_ids[1:]) if pair in ranks]
            if not learned:
                break
            first = min(learned, key=ranks.__getitem__)
            word_ids = _replace_pair(word_ids, first, ranks[first][1])
        ids += word_ids
    return ids


def _replace_pair(tokens: list | tuple, pair: tuple, new) -> list:
    """`tokens` with every adjacent `pair` replaced by `new`, scanning left to right (no overlaps)."""
    replaced, i = [], 0
    while i < len(tokens):
        if tuple(tokens[i:i + 2]) == pair:
            replaced.append(new)
            i += 2
        else:
            replaced.append(tokens[i])
            i += 1
    return replaced
