"""Chapter 5 exercises against independent references: sacrebleu, and brute-force counting."""
import math
import random

import pytest
import sacrebleu

from tests.exercises.harness import load_chapter

ex = load_chapter("ch05_evaluation")

WORDS = "the a cat dog sat on mat rug".split()


def sacrebleu_stats(hypothesis, references):
    """sacrebleu's matched and total n-gram counts and brevity penalty for one sentence, no smoothing."""
    return sacrebleu.corpus_bleu([" ".join(hypothesis)], [[" ".join(r)] for r in references],
                                 smooth_method="none", tokenize="none", force=True)


def random_sentence(rng, low=0, high=10):
    return [rng.choice(WORDS) for _ in range(rng.randint(low, high))]


def test_modified_ngram_precision_matches_sacrebleu():
    rng = random.Random(0)
    for _ in range(200):
        hypothesis = random_sentence(rng)
        references = [random_sentence(rng, 1) for _ in range(rng.randint(1, 3))]
        theirs = sacrebleu_stats(hypothesis, references)
        for n in range(1, 5):
            assert ex.modified_ngram_precision(hypothesis, references, n) == (theirs.counts[n - 1], theirs.totals[n - 1])


def test_modified_precision_clips_repeated_words():
    # The paper's example: "the" seven times, at most twice in one reference.
    references = ["the cat is on the mat".split(), "there is a cat on the mat".split()]
    assert ex.modified_ngram_precision(["the"] * 7, references, 1) == (2, 7)


def test_brevity_penalty_matches_sacrebleu():
    rng = random.Random(1)
    for _ in range(200):
        hypothesis, reference = random_sentence(rng), random_sentence(rng, 1)
        theirs = sacrebleu_stats(hypothesis, [reference])
        assert ex.brevity_penalty(len(hypothesis), len(reference)) == pytest.approx(theirs.bp, abs=1e-12)


def random_corpus(rng, sentences, references_each):
    """Hypotheses that copy, drop and swap words of a first reference, so that BLEU is rarely 0."""
    hypotheses, references = [], []
    for _ in range(sentences):
        refs = [" ".join(random_sentence(rng, 4, 14)) for _ in range(references_each)]
        words = [w for w in refs[0].split() if rng.random() > 0.15]
        for _ in range(rng.randint(0, 2)):
            words.insert(rng.randint(0, len(words)), rng.choice(WORDS))
        hypotheses.append(" ".join(words))
        references.append(refs)
    return hypotheses, references


@pytest.mark.parametrize("seed, sentences, references_each", [(0, 1, 1), (1, 5, 1), (2, 20, 2), (3, 40, 3)])
def test_corpus_bleu_matches_sacrebleu(seed, sentences, references_each):
    hypotheses, references = random_corpus(random.Random(seed), sentences, references_each)
    streams = [list(stream) for stream in zip(*references)]  # sacrebleu: one list per reference position
    # No punctuation: sacrebleu's default 13a tokenizer then cuts the text into the same words.
    for tokenize in ("none", "13a"):
        theirs = sacrebleu.corpus_bleu(hypotheses, streams, tokenize=tokenize, smooth_method="none", force=True)
        assert ex.corpus_bleu(hypotheses, references) == pytest.approx(theirs.score, abs=1e-9)


def test_corpus_bleu_sums_counts_over_the_corpus_and_is_zero_without_a_4_gram_match():
    hypotheses = ["the cat sat on the mat", "a dog"]  # the second has no 3- or 4-gram
    references = [["the cat sat on a mat"], ["a dog sat"]]
    theirs = sacrebleu.corpus_bleu(hypotheses, [[r[0] for r in references]], tokenize="none", smooth_method="none")
    assert ex.corpus_bleu(hypotheses, references) == pytest.approx(theirs.score, abs=1e-9) and theirs.score > 0
    per_sentence_mean = sum(ex.corpus_bleu([h], [r]) for h, r in zip(hypotheses, references)) / 2
    assert ex.corpus_bleu(hypotheses, references) != pytest.approx(per_sentence_mean)
    assert ex.corpus_bleu(["the cat sat"], [["the cat sat on the mat"]]) == 0.0  # no 4-gram at all


def brute_force_log_likelihood(train, test, vocab_size, k):
    """Count every pair by scanning the training list, one test pair at a time."""
    total = 0.0
    for a, b in zip(test, test[1:]):
        pair_count = sum(1 for i in range(len(train) - 1) if train[i] == a and train[i + 1] == b)
        start_count = sum(1 for i in range(len(train) - 1) if train[i] == a)
        total += math.log((pair_count + k) / (start_count + k * vocab_size))
    return total


@pytest.mark.parametrize("seed", range(5))
def test_bigram_log_likelihood_matches_brute_force(seed):
    rng = random.Random(seed)
    vocab_size = rng.randint(2, 9)
    train = [rng.randrange(vocab_size) for _ in range(rng.randint(2, 200))]
    test = [rng.randrange(vocab_size) for _ in range(rng.randint(2, 50))]
    k = rng.choice([1.0, 0.5, 0.01])
    assert ex.bigram_log_likelihood(train, test, vocab_size, k) == pytest.approx(
        brute_force_log_likelihood(train, test, vocab_size, k), rel=1e-12)


def test_bigram_probabilities_after_each_token_sum_to_one():
    rng = random.Random(7)
    train = [rng.randrange(6) for _ in range(100)] + [5]  # 5 ends the list: it starts one pair fewer
    for a in range(7):  # 6 never occurs: its next token is uniform
        total = sum(math.exp(ex.bigram_log_likelihood(train, [a, b], 7, 0.3)) for b in range(7))
        assert total == pytest.approx(1.0, rel=1e-12)
