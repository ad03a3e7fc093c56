"""The learned quality filter: hashed features against a count made by hand, training against
scikit-learn's logistic regression, filtering clean text from junk, bad input, stable hashing."""
import json
import math
import os
import random
import re
import subprocess
import sys
import zlib
from collections import Counter

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from minilm.data import Document, StoryWorld
from minilm.data.quality_classifier import ClassifierConfig, QualityClassifier, hashed_features, learned_filter
from minilm.data.sources import stdlib_docstrings

DOCSTRING_MODULES = ["json", "textwrap", "statistics", "calendar", "argparse"]


@pytest.fixture(scope="module")
def stories() -> list[str]:
    return [story.text for story in StoryWorld().stories(200, seed=0)]


@pytest.fixture(scope="module")
def docstrings() -> list[str]:
    return [document.text for document in stdlib_docstrings(DOCSTRING_MODULES)]


def shuffled(text: str, rng: random.Random) -> str:
    """The same words in a random order: the same unigram counts, nonsense as text."""
    words = text.split()
    rng.shuffle(words)
    return " ".join(words)


def auc(positives, negatives) -> float:
    """P(a random positive scores above a random negative), ties counting half, over every pair."""
    return sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives) / (len(positives) * len(negatives))


def brute_force_features(text: str, buckets: int, sizes: tuple[int, ...]) -> np.ndarray:
    """The documented features, computed the long way: n-gram strings counted, then hashed."""
    words = re.findall(r"\w+", text.lower())
    grams = Counter(" ".join(words[i:i + n]) for n in sizes for i in range(len(words) - n + 1))
    row = np.zeros(buckets)
    for gram, count in grams.items():
        row[zlib.crc32(gram.encode("utf-8")) % buckets] += count
    length = math.sqrt(sum(value * value for value in row))
    return row / length if length else row


@pytest.mark.parametrize("l2, steps", [(1e-2, 300), (1e-4, 2000)])
def test_gradient_descent_finds_the_same_optimum_as_scikit_learn(stories, docstrings, l2, steps):
    config = ClassifierConfig(buckets=256, l2=l2, steps=steps)
    features = hashed_features(stories + docstrings, config)  # (docs, 256)
    labels = np.array([1.0] * len(stories) + [0.0] * len(docstrings))
    ours = QualityClassifier(config).fit_features(features, labels)
    # scikit-learn minimises C·Σ log-loss + ½‖w‖²; divided by C·n that is ours when C = 1 / (l2·n).
    # Its exact Newton solver reaches the optimum to rounding on 256 features: a sharp reference.
    reference = LogisticRegression(C=1 / (l2 * len(labels)), solver="newton-cholesky", tol=1e-10,
                                   max_iter=10000).fit(features, labels)

    def objective(weights, bias):
        z = features @ weights + bias
        return np.mean(np.logaddexp(0, z) - labels * z) + l2 / 2 * weights @ weights

    np.testing.assert_allclose(ours.weights, reference.coef_[0], rtol=0, atol=1e-8)
    assert ours.bias == pytest.approx(reference.intercept_[0], abs=1e-8)
    np.testing.assert_allclose(ours.score(stories + docstrings), reference.predict_proba(features)[:, 1],
                               rtol=0, atol=1e-10)
    assert objective(ours.weights, ours.bias) <= objective(reference.coef_[0], reference.intercept_[0]) + 1e-12
    losses = np.array(ours.losses)
    assert len(losses) == steps and losses[0] == pytest.approx(math.log(2))  # w = 0: p = 1/2 for every text
    assert np.all(np.diff(losses[::10]) <= 1e-12)  # the curve falls, ten steps at a time,
    assert np.all(np.diff(losses) < 1e-3)  # with at most a small blip where a restart drops the momentum
    assert losses[-1] == pytest.approx(objective(reference.coef_[0], reference.intercept_[0]), abs=1e-9)


def test_fit_on_texts_is_fit_features_on_their_hashed_features(stories, docstrings):
    config = ClassifierConfig(buckets=128, steps=50)
    direct = QualityClassifier(config).fit(stories[:40], docstrings[:40])
    features = hashed_features(stories[:40] + docstrings[:40], config)
    manual = QualityClassifier(config).fit_features(features, np.repeat([1.0, 0.0], 40))
    np.testing.assert_array_equal(direct.weights, manual.weights)
    assert direct.bias == manual.bias and len(direct.losses) == 50


@pytest.mark.parametrize("buckets, sizes", [(7, (1, 2)), (64, (1, 2, 3)), (2 ** 14, (1, 2))])
def test_hashed_features_match_a_brute_force_count(buckets, sizes):
    texts = ["The cat sat on the mat. The cat sat!", "Café naïve café, CAFÉ", "one", "", "?! ... --",
             "a b a b a b a b", "x_1 = f(x_2) + 3 * x_1"]
    features = hashed_features(texts, ClassifierConfig(buckets=buckets, ngram_sizes=sizes))
    assert features.shape == (len(texts), buckets) and features.dtype == np.float64
    expected = np.stack([brute_force_features(text, buckets, sizes) for text in texts])
    np.testing.assert_allclose(features, expected, rtol=1e-12, atol=1e-15)
    norms = np.linalg.norm(features, axis=1)
    np.testing.assert_allclose(norms[[0, 1, 2, 5, 6]], 1.0, rtol=1e-12)
    assert norms[3] == norms[4] == 0  # no words, no features


def test_length_does_not_matter_once_rows_have_unit_length():
    text = "the cat sat on the mat"
    unigrams = ClassifierConfig(buckets=512, ngram_sizes=(1,))
    features = hashed_features([text, f"{text} {text}", " ".join([text] * 7)], unigrams)  # (3, 512)
    np.testing.assert_allclose(features[1:], features[[0, 0]], rtol=1e-12)  # counts x2 and x7, same row


def test_learned_filter_keeps_clean_text_over_shuffled_words(docstrings):
    rng = random.Random(0)
    texts = [text for text in docstrings if len(text) > 200]
    train, held_out = texts[::2], texts[1::2]
    config = ClassifierConfig(buckets=4096)
    train_junk, junk = [shuffled(text, rng) for text in train], [shuffled(text, rng) for text in held_out]
    classifier = QualityClassifier(config).fit(train, train_junk)
    assert auc(classifier.score(held_out), classifier.score(junk)) > 0.9  # bigrams see word order
    unigrams = QualityClassifier(ClassifierConfig(buckets=4096, ngram_sizes=(1,))).fit(train, train_junk)
    np.testing.assert_allclose(unigrams.score(held_out), unigrams.score(junk))  # word counts alone cannot tell

    documents = [Document(text, "prose" if i % 2 else "junk") for i, text in enumerate(
        t for pair in zip(junk, held_out) for t in pair)]
    scores = classifier.score([document.text for document in documents])
    shares = [(share, round(share * len(documents))) for share in (0.1, 0.25, 0.3, 1.0)]  # rounded to a count
    for keep, count in [(10, 10), (1, 1), (len(documents) + 5, len(documents))] + shares:
        kept, dropped = learned_filter(documents, classifier, keep)
        assert len(kept) == count and len(kept) + len(dropped) == len(documents)
        kept_at = [i for i, document in enumerate(documents) if any(document is k for k in kept)]
        dropped_at = [i for i in range(len(documents)) if i not in kept_at]
        assert [documents[i] for i in kept_at] == kept and [documents[i] for i in dropped_at] == dropped
        if dropped:
            assert scores[kept_at].min() >= scores[dropped_at].max()  # the best-scored are kept
    kept, _ = learned_filter(documents, classifier, 0.5)
    assert sum(document.source == "prose" for document in kept) > 0.8 * len(kept)


@pytest.mark.parametrize("call, message", [
    (lambda: QualityClassifier().fit([], ["some text"]), "reference set is empty"),
    (lambda: QualityClassifier().fit(["some text"], []), "other set is empty"),
    (lambda: QualityClassifier().score(["some text"]), "before fit"),
    (lambda: ClassifierConfig(buckets=0), "buckets=0"),
    (lambda: hashed_features("one string, not a list"), "one string"),
    (lambda: QualityClassifier(ClassifierConfig(buckets=4)).fit_features(np.ones((3, 4)), np.ones(3)), "labels"),
    (lambda: QualityClassifier(ClassifierConfig(buckets=4)).fit_features(np.ones((3, 5)), np.ones(3)), "match"),
])
def test_bad_input_is_refused_with_a_clear_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("keep, message", [(0, "at least 1"), (-3, "at least 1"), (0.0, r"share in \(0, 1\]"),
                                           (1.5, r"share in \(0, 1\]"), (-0.2, r"share in \(0, 1\]")])
def test_learned_filter_refuses_a_keep_that_is_no_share_or_count(keep, message):
    classifier = QualityClassifier(ClassifierConfig(buckets=16, steps=5)).fit(["good text"], ["bad bad"])
    with pytest.raises(ValueError, match=message):
        learned_filter([Document("some text", "prose")], classifier, keep)


SCORING = """
import json, sys
from minilm.data.quality_classifier import ClassifierConfig, QualityClassifier
texts = json.loads(sys.argv[1])
classifier = QualityClassifier(ClassifierConfig(buckets=64, steps=30)).fit(texts[:2], texts[2:4])
print(json.dumps([float(p) for p in classifier.score(texts)]))
"""


def test_the_hash_is_the_standard_crc32():
    # 0xCBF43926 is CRC-32's published check value, the CRC of the ASCII digits "123456789".
    features = hashed_features(["123456789"], ClassifierConfig(buckets=1000, ngram_sizes=(1,)))  # (1, 1000)
    assert np.flatnonzero(features[0]).tolist() == [0xCBF43926 % 1000]


def test_scores_are_the_same_in_another_process():
    texts = ["the fox ran home", "a bear sang at night", "!!! $$$ ###", "x x x x x", "the bear ran"]
    here = QualityClassifier(ClassifierConfig(buckets=64, steps=30)).fit(texts[:2], texts[2:4]).score(texts)
    environment = {**os.environ, "PYTHONHASHSEED": "12345"}  # Python's own str hash() differs there
    result = subprocess.run([sys.executable, "-c", SCORING, json.dumps(texts)], capture_output=True, text=True,
                            env=environment, check=True)
    np.testing.assert_allclose(json.loads(result.stdout), here, rtol=0, atol=1e-12)
