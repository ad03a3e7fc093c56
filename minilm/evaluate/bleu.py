"""BLEU, written from the paper (Papineni et al., 2002, "BLEU: a Method for Automatic Evaluation of
Machine Translation"), with the smoothing methods of Chen & Cherry (2014).

BLEU asks how many of a translation's n-grams appear in human references, for n = 1..4:

1. Modified (clipped) n-gram precision: each hypothesis n-gram counts as matched at most as many
   times as it occurs in the reference that has most of it (so "the the the the" does not score
   well against "the cat"). Counts are summed over the whole corpus before dividing:
   p_n = Σ matched_n / Σ total_n.
2. Brevity penalty: precision alone rewards saying little, so with c the hypothesis length and r
   the reference length (per sentence, the reference closest in length; ties go to the shorter),
   both summed over the corpus, BP = 1 if c ≥ r, else e^(1 − r/c) (and 0 when c = 0).
3. BLEU = BP · exp( (1/N) Σ_n ln p_n ): a geometric mean, so one zero precision gives BLEU 0.
   Like `sacrebleu`, the score is reported ×100.

    score = corpus_bleu(["the cat sat on the mat"], [["the cat is on the mat"]])
    score.score, score.precisions, score.brevity_penalty

`references[i]` holds every reference of hypothesis i (any number, at least one). Text is cut into
tokens by `tokenize` (default: split on whitespace), which is what `sacrebleu` does after its own
tokenizer; with `tokenize="none"` in sacrebleu the two agree exactly (tests/test_evaluate_bleu.py).

Smoothing, for short texts where some precision is 0 (Chen & Cherry's numbering):
    "none"   the paper: a zero precision makes BLEU 0
    "floor"  method 1: a zero count becomes `smooth_value` (default 0.1): p_n = ε / total_n
    "add-k"  method 2: for n ≥ 2, add `smooth_value` (default 1) to matched and total counts
    "exp"    method 3 (NIST, sacrebleu's default): the j-th order with no match gets p_n = 1 / (2^j total_n)
With no match at any order the score is 0 whatever the smoothing. `effective_order=True` leaves
out the orders longer than the hypothesis (no n-grams at all), which helps sentence-level BLEU.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

SMOOTHING_DEFAULTS = {"none": None, "floor": 0.1, "add-k": 1.0, "exp": None}


def ngram_counts(tokens: Sequence[str], n: int) -> Counter:
    """How often each n-gram (a tuple of n tokens) occurs."""
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def clipped_matches(hypothesis: Sequence[str], references: Sequence[Sequence[str]], n: int) -> tuple[int, int]:
    """(matched, total) n-grams of one hypothesis: each match clipped to its largest count in any reference."""
    hyp = ngram_counts(hypothesis, n)
    most_in_a_reference = Counter()
    for reference in references:
        most_in_a_reference |= ngram_counts(reference, n)  # `|` keeps the larger count of each n-gram
    matched = sum(min(count, most_in_a_reference[gram]) for gram, count in hyp.items())
    return matched, sum(hyp.values())


def closest_reference_length(hyp_length: int, reference_lengths: Sequence[int]) -> int:
    """The reference length closest to the hypothesis length; on a tie, the shorter reference."""
    return min(reference_lengths, key=lambda length: (abs(length - hyp_length), length))


def brevity_penalty(hyp_length: int, ref_length: int) -> float:
    """1 if the hypothesis is at least as long as the reference, else e^(1 − r/c) (0 when c = 0)."""
    if hyp_length >= ref_length:
        return 1.0
    if hyp_length == 0:
        return 0.0
    return math.exp(1.0 - ref_length / hyp_length)


@dataclass(frozen=True)
class BleuScore:
    """A corpus BLEU score and the statistics it was computed from."""
    score: float  # BLEU × 100, as reported in papers and by sacrebleu
    precisions: list[float]  # p_n for n = 1..max_order after smoothing, in [0, 1]
    brevity_penalty: float  # BP in [0, 1]
    hyp_length: int  # c: hypothesis tokens, summed over the corpus
    ref_length: int  # r: closest reference lengths, summed over the corpus
    matched: list[int]  # clipped matching n-grams per order, before smoothing
    totals: list[int]  # hypothesis n-grams per order


def _smoothed_precisions(matched: list[int], totals: list[int], smoothing: str, value: float | None) -> list[float]:
    """p_n for every order that has n-grams (an order with none ends the list)."""
    precisions, zeros_so_far = [], 0
    for n, (m, t) in enumerate(zip(matched, totals), start=1):
        if smoothing == "add-k" and n > 1:
            m, t = m + value, t + value
        if t == 0:  # the hypotheses are shorter than n: no n-grams to judge
            break
        if m > 0:
            precisions.append(m / t)
        elif smoothing == "floor":
            precisions.append(value / t)
        elif smoothing == "exp":
            zeros_so_far += 1
            precisions.append(1.0 / (2 ** zeros_so_far * t))
        else:
            precisions.append(0.0)
    return precisions


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], max_order: int = 4,
                smoothing: str = "none", smooth_value: float | None = None, effective_order: bool = False,
                tokenize: Callable[[str], list[str]] = str.split) -> BleuScore:
    """Corpus-level BLEU of hypotheses[i] against its references[i] (a list of one or more strings)."""
    if smoothing not in SMOOTHING_DEFAULTS:
        raise ValueError(f"unknown smoothing {smoothing!r}; use one of {', '.join(SMOOTHING_DEFAULTS)}.")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists: "
                         f"references[i] must hold the references of hypotheses[i].")
    if isinstance(references, str) or any(isinstance(refs, str) or len(refs) == 0 for refs in references):
        raise ValueError("each references[i] must be a list of one or more reference strings, "
                         "e.g. [['the cat sat']] for one hypothesis with one reference.")
    value = SMOOTHING_DEFAULTS[smoothing] if smooth_value is None else smooth_value
    matched, totals = [0] * max_order, [0] * max_order
    hyp_length = ref_length = 0
    for hypothesis, refs in zip(hypotheses, references):
        hyp_tokens, ref_tokens = tokenize(hypothesis), [tokenize(ref) for ref in refs]
        hyp_length += len(hyp_tokens)
        ref_length += closest_reference_length(len(hyp_tokens), [len(r) for r in ref_tokens])
        for n in range(1, max_order + 1):
            m, t = clipped_matches(hyp_tokens, ref_tokens, n)
            matched[n - 1] += m
            totals[n - 1] += t
    bp = brevity_penalty(hyp_length, ref_length)
    # Not a single match: BLEU is 0 and no smoothing applies (every precision is reported as 0).
    precisions = _smoothed_precisions(matched, totals, smoothing, value) if any(matched) else []
    orders = len(precisions) if effective_order else max_order  # missing orders count as precision 0
    used = precisions[:orders] + [0.0] * (orders - len(precisions))
    if min(used, default=0.0) == 0.0:
        score = 0.0
    else:
        score = 100.0 * bp * math.exp(sum(math.log(p) for p in used) / orders)
    return BleuScore(score=score, precisions=precisions + [0.0] * (max_order - len(precisions)),
                     brevity_penalty=bp, hyp_length=hyp_length, ref_length=ref_length,
                     matched=matched, totals=totals)
