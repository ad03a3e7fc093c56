"""Chapter 5 exercises: the numbers that say how good a language model is.

Write each function below (replace `raise NotImplementedError`), then check your answers with:

    ./course exercise ch05_evaluation

(or `pytest tests/exercises/test_ch05_evaluation.py --student`). The solutions are in
solutions/ch05_evaluation.py; notebooks/05_evaluation.ipynb explains every formula.
"""
import math
from collections import Counter  # noqa: F401 (useful for counting n-grams)


def perplexity_from_losses(losses: list[float]) -> float:
    """The perplexity of a model from its per-token losses (−ln p of each token, in nats).

    Perplexity is e raised to the mean loss. Raise ValueError for an empty list.
    >>> round(perplexity_from_losses([math.log(4), math.log(4)]), 6)
    4.0
    """
    raise NotImplementedError


def bits_per_byte(loss_nats_per_token: float, n_tokens: int, n_bytes: int) -> float:
    """Turn a mean loss in nats per token into bits per byte of the text.

    The text's total information is loss × n_tokens nats; one bit is ln 2 nats; divide by the bytes.
    >>> round(bits_per_byte(math.log(2), 8, 4), 6)
    2.0
    """
    raise NotImplementedError


def modified_ngram_precision(hypothesis: list[str], references: list[list[str]], n: int) -> tuple[int, int]:
    """BLEU's clipped n-gram matches of one tokenized hypothesis: (matched, total).

    total is the number of n-grams in the hypothesis. An n-gram counts as matched at most as many
    times as it appears in the single reference that holds it most often.
    >>> modified_ngram_precision("the the the".split(), ["the cat".split(), "the the dog".split()], 1)
    (2, 3)
    """
    raise NotImplementedError


def brevity_penalty(hypothesis_length: int, reference_length: int) -> float:
    """BLEU's brevity penalty: 1 if the hypothesis is at least as long as the reference,
    else exp(1 − reference_length / hypothesis_length), and 0 for an empty hypothesis.
    >>> round(brevity_penalty(5, 10), 6)
    0.367879
    """
    raise NotImplementedError


def distinct_n(samples: list[list[str]], n: int) -> float:
    """The share of distinct n-grams among all n-grams of all samples together.

    Raise ValueError if the samples hold no n-gram at all.
    >>> distinct_n([["a", "b", "a", "b"]], 2)
    0.6666666666666666
    """
    raise NotImplementedError
