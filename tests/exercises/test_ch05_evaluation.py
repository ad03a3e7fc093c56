"""Chapter 5 exercises against independent references: PyTorch's cross-entropy, sacrebleu, brute force."""
import math
import random

import pytest
import sacrebleu
import torch

from tests.exercises.harness import load_chapter

ex = load_chapter("ch05_evaluation")

WORDS = "the a cat dog sat on mat rug".split()


@pytest.mark.parametrize("tokens", [1, 7, 100])
def test_perplexity_from_losses_matches_torch(tokens):
    generator = torch.Generator().manual_seed(tokens)
    logits = torch.randn(tokens, 11, dtype=torch.float64, generator=generator)
    targets = torch.randint(0, 11, (tokens,), generator=generator)
    losses = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    expected = torch.exp(torch.nn.functional.cross_entropy(logits, targets)).item()
    assert ex.perplexity_from_losses(losses.tolist()) == pytest.approx(expected, rel=1e-12)


def test_perplexity_of_a_fair_die_and_empty_input():
    assert ex.perplexity_from_losses([math.log(6)] * 5) == pytest.approx(6.0)
    with pytest.raises(ValueError):
        ex.perplexity_from_losses([])


def test_bits_per_byte_by_float64_maths():
    for loss, tokens, size in [(2.0, 300, 1000), (0.7, 5, 3), (math.log(2), 8, 8)]:
        total_bits = torch.tensor(loss, dtype=torch.float64) * tokens / torch.log(torch.tensor(2.0, dtype=torch.float64))
        assert ex.bits_per_byte(loss, tokens, size) == pytest.approx((total_bits / size).item(), rel=1e-12)


def sacrebleu_stats(hypothesis, references):
    """sacrebleu's matched and total n-gram counts and brevity penalty for one sentence, no smoothing."""
    score = sacrebleu.corpus_bleu([" ".join(hypothesis)], [[" ".join(r)] for r in references],
                                  smooth_method="none", tokenize="none", force=True)
    return score


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


def test_distinct_n_matches_brute_force():
    rng = random.Random(2)
    for _ in range(200):
        samples = [random_sentence(rng) for _ in range(rng.randint(1, 4))]
        n = rng.randint(1, 3)
        seen, total = [], 0
        for sample in samples:
            for start in range(len(sample) - n + 1):
                gram = " ".join(sample[start:start + n])
                total += 1
                if gram not in seen:
                    seen.append(gram)
        if total == 0:
            with pytest.raises(ValueError):
                ex.distinct_n(samples, n)
        else:
            assert ex.distinct_n(samples, n) == pytest.approx(len(seen) / total)
