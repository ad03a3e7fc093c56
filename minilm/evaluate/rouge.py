"""ROUGE-L (Lin, 2004): how much of a reference summary a candidate keeps, in the same order.

BLEU rewards exact n-grams; a summary may keep the reference's words in order with others between
them. ROUGE-L measures the longest common subsequence (LCS): the longest list of tokens that appears
in both texts in the same order, not necessarily next to each other. With m reference tokens, n
candidate tokens and L = LCS length:

    recall R = L / m,   precision P = L / n,   F_β = (1 + β²) R P / (R + β² P)

β = 1 (the default, as in the `rouge-score` package's F-measure) weighs both equally. With several
references the best F counts. The LCS is found by dynamic programming in O(m·n).

    rouge_l("the cat sat on the mat", ["the cat was on the mat"]).f_measure
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence of a and b.

    Row by row: best[j] = LCS of the tokens of a read so far and b[:j]. A shared token extends the
    diagonal neighbour; otherwise the better of dropping a token of a or of b.
    """
    best = [0] * (len(b) + 1)
    for token in a:
        diagonal = 0  # best[j − 1] of the previous row
        for j, other in enumerate(b, start=1):
            above = best[j]
            best[j] = diagonal + 1 if token == other else max(above, best[j - 1])
            diagonal = above
    return best[len(b)]


@dataclass(frozen=True)
class RougeScore:
    """ROUGE-L of one candidate against its best-matching reference."""
    precision: float  # L / candidate length
    recall: float  # L / reference length
    f_measure: float  # F_β of the two


def _score(candidate: Sequence, reference: Sequence, beta: float) -> RougeScore:
    common = lcs_length(candidate, reference)
    if common == 0:
        return RougeScore(0.0, 0.0, 0.0)
    precision, recall = common / len(candidate), common / len(reference)
    f_measure = (1 + beta ** 2) * precision * recall / (recall + beta ** 2 * precision)
    return RougeScore(precision, recall, f_measure)


def rouge_l(candidate: str, references: Sequence[str], beta: float = 1.0,
            tokenize: Callable[[str], list[str]] = str.split) -> RougeScore:
    """ROUGE-L of a candidate against one or more references: the best F_β among them."""
    if isinstance(references, str) or len(references) == 0:
        raise ValueError("references must be a list of one or more strings, e.g. ['the cat sat'].")
    if beta <= 0:
        raise ValueError(f"beta weighs recall against precision and must be positive, got {beta}.")
    tokens = tokenize(candidate)
    scores = [_score(tokens, tokenize(reference), beta) for reference in references]
    return max(scores, key=lambda score: score.f_measure)


def mean_rouge_l(candidates: Sequence[str], references: Sequence[Sequence[str]], beta: float = 1.0,
                 tokenize: Callable[[str], list[str]] = str.split) -> float:
    """The mean ROUGE-L F_β over a set of candidates, references[i] belonging to candidates[i]."""
    if len(candidates) != len(references) or not candidates:
        raise ValueError(f"need one reference list per candidate and at least one candidate, "
                         f"got {len(candidates)} candidates and {len(references)} reference lists.")
    scores = [rouge_l(c, refs, beta, tokenize).f_measure for c, refs in zip(candidates, references)]
    return sum(scores) / len(scores)
