"""Chapter 7 exercises, solved: contamination by n-gram overlap, the hashing trick, logistic
regression by gradient descent, and sample-efficiency curves with error bars.

Check them with `./course exercise ch07_general_data`; notebooks/07_general_data.ipynb explains each.
"""
import math
import re
import zlib

import numpy as np

WORD = re.compile(r"\w+")


def word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """The distinct word n-grams of a text, as tuples of lower-cased words (`\\w+` runs).

    A text of fewer than n words (but at least one) gives one tuple of all its words; a text with
    no words gives the empty set.
    >>> sorted(word_ngrams("The cat sat. The cat", 2))
    [('cat', 'sat'), ('sat', 'the'), ('the', 'cat')]
    """
    words = WORD.findall(text.lower())
    if not words:
        return set()
    if len(words) < n:
        return {tuple(words)}
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def contaminated(train_texts: list[str], eval_texts: list[str], n: int = 13, flag_share: float = 0.5) -> list[int]:
    """The indices of the evaluation texts at least `flag_share` of whose word n-grams occur in
    some training text (a text with no words is never flagged).
    >>> contaminated(["one two three four"], ["one two three", "five six seven"], n=2)
    [0]
    """
    seen = set().union(*(word_ngrams(text, n) for text in train_texts)) if train_texts else set()
    flagged = []
    for index, text in enumerate(eval_texts):
        grams = word_ngrams(text, n)
        if grams and len(grams & seen) / len(grams) >= flag_share:
            flagged.append(index)
    return flagged


def hashed_features(texts: list[str], buckets: int) -> np.ndarray:
    """(len(texts), buckets) float64: for each text, the counts of its words and of its pairs of
    consecutive words (lower-cased `\\w+` runs; a pair is written "a b"), each in slot
    zlib.crc32(ngram.encode("utf-8")) % buckets; then each row divided by its length (rows with
    no words stay 0).
    >>> hashed_features(["a a"], 4).round(4).tolist()  # "a" twice and "a a" once
    [[0.0, 0.4472, 0.0, 0.8944]]
    """
    features = np.zeros((len(texts), buckets))
    for row, text in enumerate(texts):
        words = WORD.findall(text.lower())
        for gram in words + [f"{a} {b}" for a, b in zip(words, words[1:])]:
            features[row, zlib.crc32(gram.encode("utf-8")) % buckets] += 1
        norm = np.linalg.norm(features[row])
        if norm:
            features[row] /= norm
    return features


def fit_logistic_regression(features: np.ndarray, labels: np.ndarray, l2: float, steps: int,
                            lr: float) -> tuple[np.ndarray, float]:
    """(weights, bias) after `steps` steps of full-batch gradient descent from zero on
    mean log-loss + l2/2 · |weights|² (the bias not penalised), p = sigmoid(features @ w + b):
    gradient of w = featuresᵀ(p − labels)/n + l2·w; of b = mean(p − labels).
    >>> w, b = fit_logistic_regression(np.array([[1.0], [-1.0]]), np.array([1.0, 0.0]), 0.0, 1, 1.0)
    >>> w.tolist(), b
    ([0.5], 0.0)
    """
    weights, bias = np.zeros(features.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(features @ weights + bias)))  # (n,)
        grad_w = features.T @ (p - labels) / len(labels) + l2 * weights  # (features,)
        grad_b = float(np.mean(p - labels))
        weights, bias = weights - lr * grad_w, bias - lr * grad_b
    return weights, bias


T_975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 6: 2.4469, 7: 2.3646, 8: 2.3060, 9: 2.2622}


def sample_efficiency(rows: list[dict]) -> dict[str, list[tuple[int, float, float]]]:
    """From runs {"pretraining": name, "labelled": k, "score": s} (one per seed), for each
    pretraining the sorted list of (k, mean score, half-width of the 95% t-interval over its seeds:
    t · sample standard deviation / √n, with t from T_975 for n − 1 degrees of freedom; 0 for a
    single run).
    >>> sample_efficiency([{"pretraining": "a", "labelled": 10, "score": 0.5}])
    {'a': [(10, 0.5, 0.0)]}
    """
    groups: dict[str, dict[int, list[float]]] = {}
    for row in rows:
        groups.setdefault(row["pretraining"], {}).setdefault(row["labelled"], []).append(row["score"])
    result = {}
    for name, by_k in groups.items():
        curve = []
        for k in sorted(by_k):
            scores = by_k[k]
            mean = sum(scores) / len(scores)
            half = 0.0
            if len(scores) > 1:
                std = math.sqrt(sum((s - mean) ** 2 for s in scores) / (len(scores) - 1))
                half = T_975[len(scores) - 1] * std / math.sqrt(len(scores))
            curve.append((k, mean, half))
        result[name] = curve
    return result
