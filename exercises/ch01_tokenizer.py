"""Chapter 1 exercises, part 2: byte-pair encoding by hand.

Write each function below (replace `raise NotImplementedError`), then check your answers with:

    ./course exercise ch01_tokenizer

(or `pytest tests/exercises/test_ch01_tokenizer.py --student`). The tests compare your answers with
Python's own str.replace, NumPy, and the `tokenizers` library's BPE model. The solutions are in
solutions/ch01_tokenizer.py; try first.

A text starts as its UTF-8 bytes, ids 0-255. A merge table maps a pair of ids to the id of the new
token that replaces it; it was learned in order, so a smaller new id means an earlier merge.
"""


def count_pairs(ids: list[int]) -> dict[tuple[int, int], int]:
    """How often each adjacent pair (ids[i], ids[i + 1]) occurs in `ids`.

    Overlapping pairs all count: [7, 7, 7] holds (7, 7) twice. Fewer than two ids hold no pair.
    >>> count_pairs([1, 2, 1, 2, 3])
    {(1, 2): 2, (2, 1): 1, (2, 3): 1}
    """
    raise NotImplementedError


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """`ids` with every occurrence of `pair` replaced by `new_id`, scanning from left to right.

    An occurrence that overlaps one already replaced is left alone: merging (7, 7) in [7, 7, 7]
    gives [new_id, 7].
    >>> merge([1, 2, 1, 2, 3], (1, 2), 256)
    [256, 256, 3]
    """
    raise NotImplementedError


def encode_with_merges(text: str, merges: dict[tuple[int, int], int]) -> list[int]:
    """The ids of `text`: its UTF-8 bytes, merged with the table until no learned pair is left.

    At each step, among the adjacent pairs that are in `merges`, merge the one learned first (the
    smallest new id), everywhere at once (use `merge`). There is no pre-tokenisation here: the whole
    text is one piece.
    >>> encode_with_merges("aaab", {(97, 97): 256, (256, 97): 257})
    [257, 98]
    """
    raise NotImplementedError
