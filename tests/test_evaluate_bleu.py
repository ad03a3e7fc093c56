"""minilm.evaluate.bleu against sacrebleu's corpus BLEU (tokenize='none': both split on whitespace)."""
import math
import random

import pytest
import sacrebleu

from minilm.evaluate.bleu import brevity_penalty, clipped_matches, closest_reference_length, corpus_bleu

WORDS = "the a cat dog sat ran on under mat rug big small".split()
SMOOTHINGS = ["none", "floor", "add-k", "exp"]


def sacre(hypotheses, references, smoothing, effective_order=False, smooth_value=None):
    """sacrebleu wants reference *streams* (one list per reference set); None pads a missing reference."""
    most = max(len(refs) for refs in references)
    streams = [[refs[k] if k < len(refs) else None for refs in references] for k in range(most)]
    return sacrebleu.corpus_bleu(hypotheses, streams, smooth_method=smoothing, smooth_value=smooth_value,
                                 tokenize="none", use_effective_order=effective_order, force=True)


def sentence(rng, low=0, high=12):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def random_corpus(rng):
    segments = rng.randint(1, 5)
    hypotheses = [sentence(rng) for _ in range(segments)]
    references = [[sentence(rng, 1) for _ in range(rng.randint(1, 3))] for _ in range(segments)]
    return hypotheses, references


def assert_same(mine, theirs):
    assert mine.score == pytest.approx(theirs.score, abs=1e-6)
    assert mine.brevity_penalty == pytest.approx(theirs.bp, abs=1e-9)
    assert mine.hyp_length == theirs.sys_len and mine.ref_length == theirs.ref_len
    assert [100 * p for p in mine.precisions] == pytest.approx(theirs.precisions, abs=1e-6)


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
@pytest.mark.parametrize("effective_order", [False, True])
def test_random_corpora_match_sacrebleu(smoothing, effective_order):
    rng = random.Random(f"{smoothing}-{effective_order}")
    for _ in range(150):
        hypotheses, references = random_corpus(rng)
        mine = corpus_bleu(hypotheses, references, smoothing=smoothing, effective_order=effective_order)
        assert_same(mine, sacre(hypotheses, references, smoothing, effective_order))


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_close_translations_match_sacrebleu(smoothing):
    """Mostly-right hypotheses (a few words changed), so that all four orders have matches."""
    rng = random.Random(smoothing)
    for _ in range(60):
        references = [[sentence(rng, 5, 20) for _ in range(rng.randint(1, 4))] for _ in range(rng.randint(1, 6))]
        hypotheses = []
        for refs in references:
            words = refs[0].split()
            for _ in range(rng.randint(0, 3)):
                words[rng.randrange(len(words))] = rng.choice(WORDS)
            hypotheses.append(" ".join(words[:len(words) - rng.randint(0, 3)]))
        mine = corpus_bleu(hypotheses, references, smoothing=smoothing)
        theirs = sacre(hypotheses, references, smoothing)
        assert_same(mine, theirs)
        if smoothing == "none":
            assert mine.matched == theirs.counts and mine.totals == theirs.totals


EDGE_CASES = {
    "empty hypothesis": ([""], [["the cat sat on the mat"]]),
    "all empty hypotheses": (["", ""], [["the cat"], ["a dog ran"]]),
    "no matches": (["big small rug"], [["the cat sat on the mat"]]),
    "shorter than four tokens": (["the cat"], [["the cat sat"]]),
    "one token": (["cat"], [["cat"]]),
    "identical": (["the cat sat on the mat"], [["the cat sat on the mat"]]),
    "longer than the reference": (["the cat sat on the mat on the mat"], [["the cat sat on the mat"]]),
    "repeated word is clipped": (["the the the the the the the"], [["the cat is on the mat"]]),
    "several references": (["the cat sat on the mat"], [["a cat sat on a rug", "the cat is on the mat", "the mat"]]),
    "tie in reference length": (["a b c"], [["a b", "a b c d"]]),
    "unigrams only match": (["mat the on sat cat"], [["the cat sat on the mat"]]),
    "varying reference counts": (["the cat sat", "a dog ran on a rug"],
                                 [["the cat sat down"], ["a dog ran", "a dog ran on the big rug"]]),
}


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
@pytest.mark.parametrize("effective_order", [False, True])
@pytest.mark.parametrize("case", EDGE_CASES)
def test_edge_cases_match_sacrebleu(case, smoothing, effective_order):
    hypotheses, references = EDGE_CASES[case]
    mine = corpus_bleu(hypotheses, references, smoothing=smoothing, effective_order=effective_order)
    assert_same(mine, sacre(hypotheses, references, smoothing, effective_order))


@pytest.mark.parametrize("smoothing, value", [("floor", 0.3), ("add-k", 2.0), ("add-k", 0.5)])
def test_smoothing_values_match_sacrebleu(smoothing, value):
    rng = random.Random(value)
    for _ in range(60):
        hypotheses, references = random_corpus(rng)
        mine = corpus_bleu(hypotheses, references, smoothing=smoothing, smooth_value=value)
        assert_same(mine, sacre(hypotheses, references, smoothing, smooth_value=value))


def test_paper_example_by_hand():
    """Papineni et al.'s clipping example: "the the the the the the the" against two references.

    "the" occurs 7 times in the candidate, at most twice in one reference: unigram precision 2/7.
    """
    refs = ["the cat is on the mat".split(), "there is a cat on the mat".split()]
    assert clipped_matches("the the the the the the the".split(), refs, 1) == (2, 7)


def test_brevity_penalty_by_hand():
    assert brevity_penalty(10, 8) == 1.0
    assert brevity_penalty(8, 8) == 1.0
    assert brevity_penalty(4, 8) == pytest.approx(math.exp(1 - 2))
    assert brevity_penalty(0, 3) == 0.0
    assert closest_reference_length(5, [3, 7, 9]) == 3  # 3 and 7 are both 2 away: the shorter wins


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="unknown smoothing"):
        corpus_bleu(["a"], [["a"]], smoothing="add-one")
    with pytest.raises(ValueError, match="reference lists"):
        corpus_bleu(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="list of one or more reference strings"):
        corpus_bleu(["a"], ["a"])
    with pytest.raises(ValueError, match="list of one or more reference strings"):
        corpus_bleu(["a"], [[]])
