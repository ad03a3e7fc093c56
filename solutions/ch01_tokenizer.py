"""Chapter 1 exercises, part 2: byte-pair encoding by hand, solved."""


def count_pairs(ids: list[int]) -> dict[tuple[int, int], int]:
    """How often each adjacent pair (ids[i], ids[i + 1]) occurs in `ids`.

    Overlapping pairs all count: [7, 7, 7] holds (7, 7) twice. Fewer than two ids hold no pair.
    >>> count_pairs([1, 2, 1, 2, 3])
    {(1, 2): 2, (2, 1): 1, (2, 3): 1}
    """
    counts = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """`ids` with every occurrence of `pair` replaced by `new_id`, scanning from left to right.

    An occurrence that overlaps one already replaced is left alone: merging (7, 7) in [7, 7, 7]
    gives [new_id, 7].
    >>> merge([1, 2, 1, 2, 3], (1, 2), 256)
    [256, 256, 3]
    """
    merged, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


def encode_with_merges(text: str, merges: dict[tuple[int, int], int]) -> list[int]:
    """The ids of `text`: its UTF-8 bytes, merged with the table until no learned pair is left.

    At each step, among the adjacent pairs that are in `merges`, merge the one learned first (the
    smallest new id), everywhere at once (use `merge`). There is no pre-tokenisation here: the whole
    text is one piece.
    >>> encode_with_merges("aaab", {(97, 97): 256, (256, 97): 257})
    [257, 98]
    """
    ids = list(text.encode("utf-8"))
    while len(ids) > 1:
        learned = [pair for pair in count_pairs(ids) if pair in merges]
        if not learned:
            break
        first = min(learned, key=merges.__getitem__)
        ids = merge(ids, first, merges[first])
    return ids
