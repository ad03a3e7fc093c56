"""Chapter 7 exercises: contamination by n-gram overlap, the hashing trick, logistic regression by
gradient descent, and sample-efficiency curves with error bars.

Write each function below (replace `raise NotImplementedError`), then check your answers with:

    ./course exercise ch07_general_data

(or `pytest tests/exercises/test_ch07_general_data.py --student`). The tests compare your answers
with brute-force n-gram sets, an independent count of hashed features, scikit-learn's logistic
regression and SciPy's t quantiles. The solutions are in solutions/ch07_general_data.py;
notebooks/07_general_data.ipynb explains each idea.
"""
import math  # noqa: F401 (math.sqrt)
import re
import zlib  # noqa: F401 (zlib.crc32)

import numpy as np

WORD = re.compile(r"\w+")


def word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """The distinct word n-grams of a text, as tuples of lower-cased words (`\\w+` runs).

    A text of fewer than n words (but at least one) gives one tuple of all its words; a text with
    no words gives the empty set.
    >>> sorted(word_ngrams("The cat sat. The cat", 2))
    [('cat', 'sat'), ('sat', 'the'), ('the', 'cat')]
    """
    raise NotImplementedError


def contaminated(train_texts: list[str], eval_texts: list[str], n: int = 13, flag_share: float = 0.5) -> list[int]:
    """The indices of the evaluation texts at least `flag_share` of whose word n-grams occur in
    some training text (a text with no words is never flagged).
    >>> contaminated(["one two three four"], ["one two three", "five six seven"], n=2)
    [0]
    """
    raise NotImplementedError


def hashed_features(texts: list[str], buckets: int) -> np.ndarray:
    """(len(texts), buckets) float64: for each text, the counts of its words and of its pairs of
    consecutive words (lower-cased `\\w+` runs; a pair is written "a b"), each in slot
    zlib.crc32(ngram.encode("utf-8")) % buckets; then each row divided by its length (rows with
    no words stay 0).
    >>> hashed_features(["a a"], 4).round(4).tolist()  # "a" twice and "a a" once
    [[0.0, 0.4472, 0.0, 0.8944]]
    """
    raise NotImplementedError


def fit_logistic_regression(features: np.ndarray, labels: np.ndarray, l2: float, steps: int,
                            lr: float) -> tuple[np.ndarray, float]:
    """(weights, bias) after `steps` steps of full-batch gradient descent from zero on
    mean log-loss + l2/2 · |weights|² (the bias not penalised), p = sigmoid(features @ w + b):
    gradient of w = featuresᵀ(p − labels)/n + l2·w; of b = mean(p − labels).
    >>> w, b = fit_logistic_regression(np.array([[1.0], [-1.0]]), np.array([1.0, 0.0]), 0.0, 1, 1.0)
    >>> w.tolist(), b
    ([0.5], 0.0)
    """
    raise NotImplementedError


T_975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 6: 2.4469, 7: 2.3646, 8: 2.3060, 9: 2.2622}


def sample_efficiency(rows: list[dict]) -> dict[str, list[tuple[int, float, float]]]:
    """From runs {"pretraining": name, "labelled": k, "score": s} (one per seed), for each
    pretraining the sorted list of (k, mean score, half-width of the 95% t-interval over its seeds:
    t · sample standard deviation / √n, with t from T_975 for n − 1 degrees of freedom; 0 for a
    single run).
    >>> sample_efficiency([{"pretraining": "a", "labelled": 10, "score": 0.5}])
    {'a': [(10, 0.5, 0.0)]}
    """
    raise NotImplementedError
