"""Baselines that give a transformer's loss some context: a unigram model and Kneser-Ney n-grams.

Both work on the same token ids as the transformer, so their losses are in the same unit (nats per
token of the same stream).

    unigram = UnigramLM(vocab_size).fit(train_ids)
    kn = KneserNeyLM(vocab_size, max_order=5).fit(train_ids)
    choice = choose_order(kn, valid_ids)          # the order with the lowest validation loss
    kn.loss(test_ids, order=choice.best_order)

Interpolated Kneser-Ney (Kneser & Ney 1995; the interpolated form of Chen & Goodman 1998). An n-gram
model predicts the next token from the n−1 before it. Counts alone give zero probability to
anything unseen, so every level keeps back a discount D from each count it has seen and hands that
mass to the level below (one token less of context), all the way down to a uniform distribution:

    p_k(w | h) = max(c(h w) − D_k, 0) / c(h•)  +  D_k · N(h•) / c(h•) · p_{k−1}(w | h′)

where h′ is h without its oldest token, c(h•) = Σ_w c(h w) and N(h•) = how many different w follow
h (so the kept-back mass D_k·N(h•)/c(h•) is exactly what the max(·) removed: the distribution sums
to one). A context never seen hands everything down: p_k(w | h) = p_{k−1}(w | h′).

Kneser-Ney's idea is what the lower levels count. The top level counts how often h w occurred; a
lower level is only consulted for contexts, so it counts how many *different* tokens came before
h′ w (its continuation count). "Francisco" is frequent, but only ever after "San": as a guess in a
new context it should be rare, and its continuation count (1) says so where its raw count would not.

Choices made here: one discount per level and kind of count ("plain" interpolated Kneser-Ney;
Chen & Goodman's *modified* KN uses three per level, a small gain for more formulas), estimated as
D = n₁ / (n₁ + 2n₂) from the numbers of n-grams seen once (n₁) and twice (n₂), or 0.5 when n₁ = 0.
The unigram level interpolates with the uniform distribution over the vocabulary, so no token is
ever impossible. The token stream is one long sequence (documents are joined by their separator);
its first few tokens, with less than n−1 tokens of history, use the highest level their history
allows.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np


def _as_id_list(ids, vocab_size: int) -> list[int]:
    values = np.asarray(ids).astype(np.int64).ravel()
    if values.size and (values.min() < 0 or values.max() >= vocab_size):
        raise ValueError(f"token ids must lie in 0..{vocab_size - 1} (vocab_size={vocab_size}), got "
                         f"{values.min()}..{values.max()}; pass the vocab_size of the tokenizer that made them.")
    return values.tolist()


def count_ngrams(ids: list[int], n: int) -> Counter:
    """How often each n-gram (a tuple of n ids) occurs in ids."""
    return Counter(zip(*(ids[start:] for start in range(n))))


def ney_discount(counts: Counter) -> float:
    """D = n₁ / (n₁ + 2 n₂), from how many n-grams have count 1 (n₁) and count 2 (n₂); 0.5 if n₁ = 0."""
    count_of_counts = Counter(counts.values())
    once, twice = count_of_counts[1], count_of_counts[2]
    return once / (once + 2 * twice) if once else 0.5


@dataclass
class _Level:
    """One level of the model: for every context (a tuple of k−1 ids), the counts of what followed."""
    following: dict  # context -> {token: count}
    totals: dict  # context -> Σ of those counts, c(h•)
    discount: float  # D, the mass kept back from each seen count

    @classmethod
    def from_ngram_counts(cls, ngram_counts: Counter) -> "_Level":
        following = defaultdict(dict)
        for ngram, count in ngram_counts.items():
            following[ngram[:-1]][ngram[-1]] = count
        totals = {context: sum(tokens.values()) for context, tokens in following.items()}
        return cls(dict(following), totals, ney_discount(ngram_counts))

    def interpolate(self, context: tuple, token: int, lower: float) -> float:
        """p_k(token | context) given p_{k−1}(token | shorter context) = lower."""
        tokens = self.following.get(context)
        if tokens is None:  # an unseen context hands everything down
            return lower
        total = self.totals[context]
        seen = max(tokens.get(token, 0) - self.discount, 0.0) / total
        return seen + self.discount * len(tokens) / total * lower

    def interpolate_all(self, context: tuple, lower: np.ndarray) -> np.ndarray:
        """The same for every token of the vocabulary at once: (vocab,) -> (vocab,)."""
        tokens = self.following.get(context)
        if tokens is None:
            return lower
        total = self.totals[context]
        counts = np.zeros_like(lower)
        counts[list(tokens)] = list(tokens.values())
        return np.maximum(counts - self.discount, 0.0) / total + self.discount * len(tokens) / total * lower


class KneserNeyLM:
    """An interpolated Kneser-Ney n-gram language model on token ids, of every order up to max_order."""

    def __init__(self, vocab_size: int, max_order: int = 5):
        if vocab_size < 1 or max_order < 1:
            raise ValueError(f"need vocab_size >= 1 and max_order >= 1, got {vocab_size} and {max_order}.")
        self.vocab_size = vocab_size  # the uniform distribution at the bottom spreads over this many ids
        self.max_order = max_order  # the longest n-gram counted; any order up to it can be used
        self.raw: dict[int, _Level] = {}  # order k -> counts of k-grams (used when k is the top level)
        self.continuation: dict[int, _Level] = {}  # order k -> continuation counts (when k is a lower level)

    def fit(self, ids) -> "KneserNeyLM":
        """Count every n-gram of the training ids, orders 1..max_order; returns self."""
        ids = _as_id_list(ids, self.vocab_size)
        if len(ids) < self.max_order:
            raise ValueError(f"{len(ids)} training tokens are too few for order {self.max_order}.")
        ngram_counts = {k: count_ngrams(ids, k) for k in range(1, self.max_order + 1)}
        for k in range(1, self.max_order + 1):
            self.raw[k] = _Level.from_ngram_counts(ngram_counts[k])
            if k < self.max_order:  # N(• h w): the distinct (k+1)-grams that end in h w
                self.continuation[k] = _Level.from_ngram_counts(Counter(g[1:] for g in ngram_counts[k + 1]))
        return self

    def _levels(self, order: int | None) -> list[_Level]:
        order = self.max_order if order is None else order
        if not self.raw:
            raise RuntimeError("the model has no counts yet: call fit(train_ids) first.")
        if not 1 <= order <= self.max_order:
            raise ValueError(f"order must lie in 1..{self.max_order} (the max_order it was fitted with), got {order}.")
        return [self.continuation[k] for k in range(1, order)] + [self.raw[order]]

    @staticmethod
    def _contexts(levels: list[_Level], context: tuple):
        """(level, its context) pairs from the unigram up, as far as the history allows.

        Level k (0-based) looks at the last k tokens; a history shorter than the model's order
        stops early, so its top level is a lower (continuation) level.
        """
        for k, level in enumerate(levels[:len(context) + 1]):
            yield level, (context[len(context) - k:] if k else ())

    def _prob(self, levels: list[_Level], context: tuple, token: int) -> float:
        p = 1.0 / self.vocab_size  # the uniform distribution below the unigram level
        for level, ctx in self._contexts(levels, context):
            p = level.interpolate(ctx, token, p)
        return p

    def prob(self, context, token: int, order: int | None = None) -> float:
        """p(token | context) under the model of the given order (default: max_order)."""
        return self._prob(self._levels(order), tuple(int(t) for t in context), int(token))

    def distribution(self, context, order: int | None = None) -> np.ndarray:
        """p(· | context) over the whole vocabulary, (vocab,) float64; it sums to one."""
        levels, context = self._levels(order), tuple(int(t) for t in context)
        p = np.full(self.vocab_size, 1.0 / self.vocab_size)  # (vocab,)
        for level, ctx in self._contexts(levels, context):
            p = level.interpolate_all(ctx, p)  # (vocab,)
        return p

    def log_probs(self, ids, order: int | None = None) -> np.ndarray:
        """ln p(ids[i] | ids[:i]) for i = 1..len−1: (len−1,) float64 (the first token has no context)."""
        levels, ids = self._levels(order), _as_id_list(ids, self.vocab_size)
        history = len(levels) - 1  # tokens of context the top level looks at
        return np.array([math.log(self._prob(levels, tuple(ids[max(0, i - history):i]), ids[i]))
                         for i in range(1, len(ids))])

    def loss(self, ids, order: int | None = None) -> float:
        """Mean −ln p per predicted token: the same unit as a transformer's validation loss."""
        if len(ids) < 2:
            raise ValueError("the loss needs at least two tokens (the first is only context).")
        return float(-self.log_probs(ids, order).mean())


@dataclass(frozen=True)
class OrderChoice:
    """Validation loss of each order and the best one."""
    losses: dict  # order -> validation loss, nats per token
    best_order: int  # the order with the lowest validation loss


def choose_order(model: KneserNeyLM, valid_ids, orders=None) -> OrderChoice:
    """Pick the n-gram order by validation loss: longer contexts help until the counts get too thin."""
    orders = list(range(1, model.max_order + 1)) if orders is None else list(orders)
    losses = {order: model.loss(valid_ids, order) for order in orders}
    return OrderChoice(losses=losses, best_order=min(losses, key=losses.get))


class UnigramLM:
    """The simplest baseline: p(w) = (count(w) + α) / (N + α·V), ignoring context entirely."""

    def __init__(self, vocab_size: int, alpha: float = 1.0):
        if vocab_size < 1 or alpha <= 0:
            raise ValueError(f"need vocab_size >= 1 and alpha > 0 (add-α smoothing), got {vocab_size} and {alpha}.")
        self.vocab_size = vocab_size  # ids lie in 0..vocab_size−1
        self.alpha = alpha  # pseudo-count added to every token so none is impossible
        self.probs: np.ndarray | None = None  # (vocab,) once fitted

    def fit(self, ids) -> "UnigramLM":
        counts = np.bincount(np.asarray(_as_id_list(ids, self.vocab_size), dtype=np.int64),
                             minlength=self.vocab_size).astype(np.float64)  # (vocab,)
        self.probs = (counts + self.alpha) / (counts.sum() + self.alpha * self.vocab_size)  # (vocab,)
        return self

    def log_probs(self, ids) -> np.ndarray:
        """ln p(ids[i]) for i = 1..len−1, aligned with KneserNeyLM.log_probs."""
        if self.probs is None:
            raise RuntimeError("the model has no counts yet: call fit(train_ids) first.")
        return np.log(self.probs[np.asarray(_as_id_list(ids, self.vocab_size), dtype=np.int64)[1:]])

    def loss(self, ids) -> float:
        if len(ids) < 2:
            raise ValueError("the loss needs at least two tokens (the first is only context).")
        return float(-self.log_probs(ids).mean())
