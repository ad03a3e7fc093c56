"""A learned quality filter: logistic regression on hashed word n-grams, trained by gradient descent.

The rules in quality.py say what bad text looks like. GPT-3 also learned it: a logistic-regression
classifier on hashed features told a reference corpus (WebText, books, Wikipedia) from raw Common
Crawl, and crawl documents it scored as reference-like were kept. The same, by hand, in NumPy:

    classifier = QualityClassifier().fit(reference=good_texts, other=crawl_texts)
    classifier.score(["A new text."])          # (docs,) probability that each text is reference-like
    kept, dropped = learned_filter(documents, classifier, keep=0.3)   # the best-scored 30%

Features. Each word n-gram ("the cat", "cat sat") goes to one of `buckets` slots by a hash of its
string (the hashing trick: no vocabulary to build or store; two n-grams rarely share a slot, and
when they do they just share one weight). The hash is CRC-32, the same in every process
(Python's own hash() of a string changes from one run to the next). A row counts the n-grams of
one text, scaled to length 1.

Model and training. p(reference | x) = σ(w·x + b), σ(z) = 1 / (1 + e^-z). Training minimises the
mean log-loss, -mean(y log p + (1 - y) log(1 - p)), plus l2/2·‖w‖² (the bias is not penalised),
with full-batch Nesterov momentum. The objective is convex and smooth: its curvature is at most
σ'·‖(x, 1)‖² ≤ 1/4·2 = 1/2 (+ l2) on any data, since rows have length 1, so lr = 2 ≈ 1/(1/2) is a
safe step whatever the texts. The L2 term makes it strongly convex (curvature ≥ l2): one minimum,
approached fast with momentum (1 - √(lr·l2)) / (1 + √(lr·l2)), the textbook value for that ratio
of largest to smallest curvature (0.97 at the defaults; plain descent would need ~100x the steps).
The velocity is dropped whenever it points uphill (a "restart"), so the loss falls steadily, at
most a tiny blip at a restart. 300 steps at the defaults end within ~1e-6 of the optimal loss.
Memory: fit() holds a (docs, buckets) float64 matrix, 1.3 GB for 10,000 texts at 2^14 buckets;
score() works in chunks.
"""
from __future__ import annotations

import math
import numbers
import re
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from minilm.data.documents import Document

WORD = re.compile(r"\w+")
SCORE_CHUNK = 1024  # texts scored at once: bounds the feature matrix score() holds


@dataclass(frozen=True)
class ClassifierConfig:
    buckets: int = 2 ** 14  # hashed feature slots: no vocabulary to store; collisions rare and harmless
    ngram_sizes: tuple[int, ...] = (1, 2)  # word n-grams counted: bigrams see a little word order
    l2: float = 1e-4  # weight of l2/2·‖w‖²: keeps the weights of rare n-grams small, makes the optimum unique
    steps: int = 300  # full-batch steps: with momentum, enough to come close to the optimum on real texts
    lr: float = 2.0  # 1 / (the largest curvature, at most 1/2 with unit rows): a step safe on any data

    def __post_init__(self) -> None:
        if self.buckets < 1:
            raise ValueError(f"buckets={self.buckets}: a text needs at least 1 hashed slot; use e.g. 2 ** 14.")
        if not self.ngram_sizes or min(self.ngram_sizes) < 1:
            raise ValueError(f"ngram_sizes={self.ngram_sizes}: give word n-gram sizes of 1 or more, e.g. (1, 2).")
        if self.l2 < 0 or self.steps < 1 or self.lr <= 0:
            raise ValueError(f"l2={self.l2}, steps={self.steps}, lr={self.lr}: use l2 >= 0, steps >= 1, lr > 0.")


def ngrams(text: str, sizes: tuple[int, ...]) -> list[str]:
    """The word n-grams of the lower-cased text, each as its words joined by one space."""
    words = WORD.findall(text.lower())
    return [" ".join(words[i: i + n]) for n in sizes for i in range(len(words) - n + 1)]


def bucket(ngram: str, buckets: int) -> int:
    """The slot of one n-gram: CRC-32 of its UTF-8 bytes, modulo the number of slots."""
    return zlib.crc32(ngram.encode("utf-8")) % buckets


def hashed_features(texts: Sequence[str], config: ClassifierConfig = ClassifierConfig()) -> np.ndarray:
    """(docs, buckets) float64: hashed n-gram counts, each row of length 1 (zero for a text with no words).

    Unit length: a long text has large counts, so w·x would put it far from 0 (sure either way) and
    it would outweigh short texts in the gradient; scaled, a score says what a text is like, not how
    long it is. It also bounds the curvature, which is what makes the step size safe on any data.
    """
    if isinstance(texts, str):
        raise ValueError("texts is one string; pass a list of texts, e.g. [text].")
    counts = np.zeros((len(texts), config.buckets))  # (docs, buckets)
    for row, text in enumerate(texts):
        slots = np.array([bucket(g, config.buckets) for g in ngrams(text, config.ngram_sizes)], dtype=np.int64)
        counts[row] = np.bincount(slots, minlength=config.buckets)
    norms = np.linalg.norm(counts, axis=1, keepdims=True)  # (docs, 1)
    return counts / np.where(norms > 0, norms, 1.0)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))  # 1 / (1 + e^-z) without overflow for large |z|


def loss_and_gradient(features: np.ndarray, labels: np.ndarray, weights: np.ndarray, bias: float,
                      l2: float) -> tuple[float, np.ndarray, float]:
    """The objective, its gradient in the weights (buckets,) and its derivative in the bias."""
    z = features @ weights + bias  # (docs,)
    loss = np.mean(np.logaddexp(0.0, z) - labels * z) + l2 / 2 * weights @ weights  # log(1+e^z) - yz
    error = sigmoid(z) - labels  # (docs,) p - y: the log-loss's derivative in z
    return float(loss), features.T @ error / len(labels) + l2 * weights, float(error.mean())


class QualityClassifier:
    """p(reference-like | text) = σ(w·x + b) on hashed features x; label 1 = reference, 0 = other."""

    def __init__(self, config: ClassifierConfig = ClassifierConfig()) -> None:
        self.config = config
        self.weights: np.ndarray | None = None  # (buckets,), set by fit
        self.bias = 0.0
        self.losses: list[float] = []  # the objective at each step: the training curve

    def fit(self, reference: Sequence[str], other: Sequence[str]) -> "QualityClassifier":
        for name, texts in (("reference", reference), ("other", other)):
            if isinstance(texts, str) or len(texts) == 0:
                raise ValueError(f"the {name} set is {'one string' if texts else 'empty'}; "
                                 f"pass a non-empty list of texts for each class.")
        features = hashed_features(list(reference) + list(other), self.config)  # (docs, buckets)
        labels = np.concatenate([np.ones(len(reference)), np.zeros(len(other))])  # (docs,)
        return self.fit_features(features, labels)

    def fit_features(self, features: np.ndarray, labels: np.ndarray) -> "QualityClassifier":
        """Train on a ready (docs, buckets) matrix and (docs,) labels of 0 and 1."""
        features, labels = np.asarray(features, dtype=np.float64), np.asarray(labels, dtype=np.float64)
        if features.ndim != 2 or features.shape != (len(labels), self.config.buckets):
            raise ValueError(f"features {features.shape} and labels {labels.shape} do not match; "
                             f"pass (docs, {self.config.buckets}) features and (docs,) labels.")
        if not set(np.unique(labels)) == {0.0, 1.0}:
            raise ValueError(f"labels hold {np.unique(labels)[:5]}; use 1 (reference) and 0 (other), both present.")
        lr, l2 = self.config.lr, self.config.l2
        momentum = max(0.0, (1 - math.sqrt(lr * l2)) / (1 + math.sqrt(lr * l2)))  # ~1 - 2√(smallest/largest)
        weights, bias = np.zeros(features.shape[1]), 0.0  # (buckets,)
        velocity_w, velocity_b = np.zeros_like(weights), 0.0
        self.losses = []
        for _ in range(self.config.steps):
            loss, grad_w, grad_b = loss_and_gradient(features, labels, weights, bias, l2)
            self.losses.append(loss)
            if grad_w @ velocity_w + grad_b * velocity_b > 0:  # moving uphill: forget the momentum
                velocity_w, velocity_b = np.zeros_like(weights), 0.0
            velocity_w = momentum * velocity_w - lr * grad_w
            velocity_b = momentum * velocity_b - lr * grad_b
            weights = weights + momentum * velocity_w - lr * grad_w  # Nesterov: step on from the look-ahead
            bias = bias + momentum * velocity_b - lr * grad_b
        self.weights, self.bias = weights, float(bias)
        return self

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """(docs,) probability that each text is reference-like."""
        if self.weights is None:
            raise ValueError("score() was called before fit(); train the classifier with fit(reference, other) first.")
        chunks = [hashed_features(texts[i: i + SCORE_CHUNK], self.config) @ self.weights + self.bias
                  for i in range(0, len(texts), SCORE_CHUNK)]  # each (chunk,)
        return sigmoid(np.concatenate(chunks)) if chunks else np.zeros(0)


def keep_count(keep: float | int, total: int) -> int:
    """How many of `total` documents to keep: an int is a count, a float in (0, 1] a share (rounded)."""
    if isinstance(keep, numbers.Integral) and not isinstance(keep, bool):
        if keep < 1:
            raise ValueError(f"keep={keep} documents: keep at least 1, or pass a share such as 0.3.")
        return min(int(keep), total)
    if not isinstance(keep, numbers.Real) or isinstance(keep, bool) or not 0 < keep <= 1:
        raise ValueError(f"keep={keep!r} is not a share in (0, 1] nor a count >= 1; pass e.g. 0.3 or 100.")
    return round(keep * total)


def learned_filter(documents: list[Document], classifier: QualityClassifier,
                   keep: float | int) -> tuple[list[Document], list[Document]]:
    """(kept, dropped): the `keep` documents the classifier scores highest, and the rest, in input order."""
    count = keep_count(keep, len(documents))
    scores = classifier.score([document.text for document in documents])  # (docs,)
    best = set(np.argsort(-scores, kind="stable")[:count].tolist())  # ties: the earlier document wins
    kept = [document for i, document in enumerate(documents) if i in best]
    dropped = [document for i, document in enumerate(documents) if i not in best]
    return kept, dropped
