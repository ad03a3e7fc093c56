"""Is generated text varied, or does it loop? Distinct-n and the repetition rate.

A model can reach a good loss and still write dull text when sampled greedily: the same phrase
again and again. Two simple counts on token sequences (lists of ids or of words) show it:

    distinct_n(samples, 2)         # distinct bigrams / all bigrams, over all samples (Li et al., 2016)
    repetition_rate(samples, 4)    # share of each sample's 4-grams that repeat an earlier one in it,
                                   # averaged over samples (seq-rep-n of Welleck et al., 2019)

High distinct-n and low repetition mean varied text; they say nothing about whether it is good,
which is why chapter 5 plots them next to a quality measure as the temperature changes.
"""
from __future__ import annotations

from typing import Hashable, Sequence


def ngrams(tokens: Sequence[Hashable], n: int) -> list[tuple]:
    """Every n-gram of a token sequence, in order, as tuples."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}.")
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(samples: Sequence[Sequence[Hashable]], n: int) -> float:
    """Distinct n-grams divided by all n-grams, counted over every sample together."""
    every = [gram for sample in samples for gram in ngrams(sample, n)]
    if not every:
        raise ValueError(f"the samples hold no {n}-gram (each is shorter than {n} tokens); "
                         f"generate longer samples or use a smaller n.")
    return len(set(every)) / len(every)


def repetition_rate(samples: Sequence[Sequence[Hashable]], n: int = 4) -> float:
    """Mean over samples of 1 − distinct / all n-grams within the sample: 0 never repeats, → 1 loops.

    Samples shorter than n tokens have no n-grams and are left out.
    """
    rates = []
    for sample in samples:
        grams = ngrams(sample, n)
        if grams:
            rates.append(1.0 - len(set(grams)) / len(grams))
    if not rates:
        raise ValueError(f"no sample has {n} tokens or more; generate longer samples or use a smaller n.")
    return sum(rates) / len(rates)
