"""Kneser-Ney and unigram baselines: distributions sum to one, hand-worked values, a brute-force
implementation written from the formulas, and the entropy rate of a Markov source."""
import math
import random

import numpy as np
import pytest

from minilm.evaluate.ngram import KneserNeyLM, UnigramLM, choose_order

# "a b a b c b" as ids
TINY = [0, 1, 0, 1, 2, 1]


def test_hand_worked_bigram_values():
    """Worked on paper for TINY (V = 3).

    Unigram level (continuation counts: how many different tokens precede each token):
      a ← {b}, b ← {a, c}, c ← {b}: counts 1, 2, 1; total 4, 3 types; n₁ = 2, n₂ = 1 so D = 2/4 = 0.5.
      p₁(a) = (1 − .5)/4 + .5·3/4·(1/3) = .25,  p₁(b) = 1.5/4 + .125 = .5,  p₁(c) = .25.
    Bigram level (raw counts): ab 2, ba 1, bc 1, cb 1: n₁ = 3, n₂ = 1 so D = 3/5 = 0.6.
      p(b | a) = (2 − .6)/2 + .6·1/2·.5 = .85,  p(a | a) = p(c | a) = .6·1/2·.25 = .075.
      p(c | b) = (1 − .6)/2 + .6·2/2·.25 = .35,  p(a | b) = .35,  p(b | b) = .6·.5 = .3.
    Unigram model alone (raw counts a 2, b 3, c 1; n₁ = 1, n₂ = 1 so D = 1/3):
      p(a) = (2 − 1/3)/6 + (1/3)·3/6·(1/3) = 1/3,  p(b) = 1/2,  p(c) = 1/6.
    """
    model = KneserNeyLM(vocab_size=3, max_order=2).fit(TINY)
    np.testing.assert_allclose(model.distribution([0]), [0.075, 0.85, 0.075])
    np.testing.assert_allclose(model.distribution([1]), [0.35, 0.3, 0.35])
    np.testing.assert_allclose(model.distribution([]), [0.25, 0.5, 0.25])  # no history: the unigram level
    np.testing.assert_allclose(model.distribution([2], order=1), [1 / 3, 1 / 2, 1 / 6])
    assert model.prob([0], 1) == pytest.approx(0.85)


def count(seq, gram):
    return sum(tuple(seq[i:i + len(gram)]) == gram for i in range(len(seq) - len(gram) + 1))


def continuation(seq, gram):
    return len({seq[i - 1] for i in range(1, len(seq) - len(gram) + 1) if tuple(seq[i:i + len(gram)]) == gram})


def brute_discount(seq, k, counter):
    grams = {tuple(seq[i:i + k]) for i in range(len(seq) - k + 1)}
    values = [counter(seq, g) for g in grams]
    once, twice = values.count(1), values.count(2)
    return once / (once + 2 * twice) if once else 0.5


def brute_kn(seq, vocab, top, history, token):
    """Interpolated Kneser-Ney straight from the formulas, by scanning the sequence for every count."""
    levels = min(top, len(history) + 1)

    def p(k, ctx):
        if k == 0:
            return 1 / vocab
        lower = p(k - 1, ctx[1:])
        counter = count if k == top else continuation
        follows = [counter(seq, ctx + (v,)) for v in range(vocab)]
        total = sum(follows)
        if total == 0:
            return lower
        d = brute_discount(seq, k, counter)
        types = sum(f > 0 for f in follows)
        return max(follows[token] - d, 0) / total + d * types / total * lower

    return p(levels, tuple(history[len(history) - (levels - 1):]) if levels > 1 else ())


def test_matches_brute_force_implementation():
    rng = random.Random(0)
    for trial in range(6):
        vocab = rng.choice([3, 4, 6])
        seq = [rng.randrange(vocab - 1) for _ in range(rng.randint(20, 60))]  # the last id is never seen
        model = KneserNeyLM(vocab, max_order=4).fit(seq)
        for _ in range(25):
            order = rng.randint(1, 4)
            history = tuple(rng.randrange(vocab) for _ in range(rng.randint(0, 4)))
            if rng.random() < 0.5:  # a history seen in training
                start = rng.randrange(len(seq) - 3)
                history = tuple(seq[start:start + rng.randint(0, 3)])
            token = rng.randrange(vocab)
            context = history[len(history) - (order - 1):] if order > 1 else ()
            assert model.prob(context, token, order) == pytest.approx(
                brute_kn(seq, vocab, order, context, token), rel=1e-12)


def test_distributions_sum_to_one():
    rng = np.random.default_rng(1)
    seq = rng.integers(0, 30, size=3000) // rng.integers(1, 4, size=3000)  # skewed ids
    model = KneserNeyLM(vocab_size=40, max_order=5).fit(seq)
    for _ in range(200):
        order = int(rng.integers(1, 6))
        if rng.random() < 0.5:
            start = int(rng.integers(0, len(seq) - 5))
            context = seq[start:start + int(rng.integers(0, 5))]
        else:
            context = rng.integers(0, 40, size=int(rng.integers(0, 5)))
        dist = model.distribution(context, order)
        assert dist.sum() == pytest.approx(1.0, abs=1e-12)
        assert dist.min() > 0  # even ids never seen keep some probability
        token = int(rng.integers(0, 40))
        assert model.prob(context, token, order) == pytest.approx(dist[token], rel=1e-12)


def test_log_probs_agree_with_prob():
    model = KneserNeyLM(vocab_size=3, max_order=3).fit(TINY * 3)
    ids = [2, 0, 1, 1, 0, 2]
    expected = [math.log(model.prob(ids[max(0, i - 2):i], ids[i])) for i in range(1, len(ids))]
    np.testing.assert_allclose(model.log_probs(ids), expected)
    assert model.loss(ids) == pytest.approx(-np.mean(expected))


def markov_chain(vocab, seed):
    rng = np.random.default_rng(seed)
    transitions = rng.dirichlet(np.full(vocab, 0.2), size=vocab)  # (vocab, vocab), peaked rows
    values, vectors = np.linalg.eig(transitions.T)
    stationary = np.real(vectors[:, np.argmax(np.real(values))])
    stationary /= stationary.sum()
    rate = -np.sum(stationary[:, None] * transitions * np.log(transitions))  # nats per token
    return transitions, rate


def sample_chain(transitions, length, seed):
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(transitions, axis=1)
    ids, state = np.empty(length, dtype=np.int64), 0
    for i, u in enumerate(rng.random(length)):
        state = min(int(np.searchsorted(cumulative[state], u)), len(transitions) - 1)
        ids[i] = state
    return ids


def test_order_chosen_by_validation_reaches_the_entropy_rate():
    """A first-order Markov source: a bigram model is what it needs; unigrams cannot see it."""
    transitions, rate = markov_chain(vocab=12, seed=0)
    train, valid = sample_chain(transitions, 60_000, 1), sample_chain(transitions, 8_000, 2)
    model = KneserNeyLM(vocab_size=12, max_order=4).fit(train)
    choice = choose_order(model, valid)
    assert choice.losses[choice.best_order] == min(choice.losses.values())
    assert choice.best_order >= 2
    assert choice.losses[1] > 1.3 * rate  # context matters for this source
    assert choice.losses[choice.best_order] == pytest.approx(rate, rel=0.03)


def test_unigram_matches_counts():
    ids = [0, 0, 1, 2, 2, 2]
    model = UnigramLM(vocab_size=4, alpha=1.0).fit(ids)
    expected = np.array([3, 2, 4, 1]) / (6 + 4)  # (count + 1) / (N + V)
    np.testing.assert_allclose(model.probs, expected)
    assert model.loss([3, 0, 2]) == pytest.approx(-(math.log(expected[0]) + math.log(expected[2])) / 2)


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match=r"token ids must lie in 0..2"):
        KneserNeyLM(vocab_size=3, max_order=2).fit([0, 1, 3])
    model = KneserNeyLM(vocab_size=3, max_order=2)
    with pytest.raises(RuntimeError, match="call fit"):
        model.prob([0], 1)
    model.fit(TINY)
    with pytest.raises(ValueError, match="order must lie in 1..2"):
        model.prob([0], 1, order=3)
    with pytest.raises(ValueError, match="at least two tokens"):
        model.loss([1])
    with pytest.raises(ValueError, match="too few"):
        KneserNeyLM(vocab_size=3, max_order=5).fit([0, 1])
    with pytest.raises(RuntimeError, match="call fit"):
        UnigramLM(3).loss([0, 1])
