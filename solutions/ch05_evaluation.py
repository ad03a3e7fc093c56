"""Chapter 5 exercises, solved: the numbers that say how good a language model is.

Check your own answers (exercises/ch05_evaluation.py) with:

    ./course exercise ch05_evaluation
"""
import math
from collections import Counter


def perplexity_from_losses(losses: list[float]) -> float:
    """The perplexity of a model from its per-token losses (−ln p of each token, in nats).

    Perplexity is e raised to the mean loss. Raise ValueError for an empty list.
    >>> round(perplexity_from_losses([math.log(4), math.log(4)]), 6)
    4.0
    """
    if not losses:
        raise ValueError("no losses given: perplexity needs at least one token.")
    return math.exp(sum(losses) / len(losses))


def bits_per_byte(loss_nats_per_token: float, n_tokens: int, n_bytes: int) -> float:
    """Turn a mean loss in nats per token into bits per byte of the text.

    The text's total information is loss × n_tokens nats; one bit is ln 2 nats; divide by the bytes.
    >>> round(bits_per_byte(math.log(2), 8, 4), 6)
    2.0
    """
    return loss_nats_per_token * n_tokens / (n_bytes * math.log(2))


def modified_ngram_precision(hypothesis: list[str], references: list[list[str]], n: int) -> tuple[int, int]:
    """BLEU's clipped n-gram matches of one tokenized hypothesis: (matched, total).

    total is the number of n-grams in the hypothesis. An n-gram counts as matched at most as many
    times as it appears in the single reference that holds it most often.
    >>> modified_ngram_precision("the the the".split(), ["the cat".split(), "the the dog".split()], 1)
    (2, 3)
    """
    hyp = Counter(tuple(hypothesis[i:i + n]) for i in range(len(hypothesis) - n + 1))
    most = Counter()
    for reference in references:
        most |= Counter(tuple(reference[i:i + n]) for i in range(len(reference) - n + 1))
    return sum(min(count, most[gram]) for gram, count in hyp.items()), sum(hyp.values())


def brevity_penalty(hypothesis_length: int, reference_length: int) -> float:
    """BLEU's brevity penalty: 1 if the hypothesis is at least as long as the reference,
    else exp(1 − reference_length / hypothesis_length), and 0 for an empty hypothesis.
    >>> round(brevity_penalty(5, 10), 6)
    0.367879
    """
    if hypothesis_length >= reference_length:
        return 1.0
    if hypothesis_length == 0:
        return 0.0
    return math.exp(1 - reference_length / hypothesis_length)


def distinct_n(samples: list[list[str]], n: int) -> float:
    """The share of distinct n-grams among all n-grams of all samples together.

    Raise ValueError if the samples hold no n-gram at all.
    >>> distinct_n([["a", "b", "a", "b"]], 2)
    0.6666666666666666
    """
    grams = [tuple(s[i:i + n]) for s in samples for i in range(len(s) - n + 1)]
    if not grams:
        raise ValueError(f"the samples hold no {n}-gram.")
    return len(set(grams)) / len(grams)
