"""Chapter 5 exercises: BLEU from its counts, and an n-gram language model.

Write each function below (replace `raise NotImplementedError`), then check your answers with:

    ./course exercise ch05_evaluation

(or `pytest tests/exercises/test_ch05_evaluation.py --student`). The tests compare your BLEU with
`sacrebleu` and your bigram model with a brute-force count. The solutions are in
solutions/ch05_evaluation.py; notebooks/05_evaluation.ipynb explains every formula.
"""
import math  # noqa: F401 (math.exp, math.log)
from collections import Counter  # noqa: F401 (useful for counting n-grams)


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


def corpus_bleu(hypotheses: list[str], references: list[list[str]]) -> float:
    """Corpus BLEU-4 ×100, without smoothing, of hypotheses[i] against its references[i].

    Tokens are the whitespace-separated words (`str.split`), which is what sacrebleu does with
    tokenize="none"; its default tokenizer (13a) also cuts punctuation off words, so on text
    without punctuation the two agree.
    1. For n = 1..4 add up, over all sentences, the clipped matches and the n-grams of each
       hypothesis (modified_ngram_precision): p_n = Σ matched / Σ total.
    2. c = Σ hypothesis lengths; r = Σ of the reference length closest to each hypothesis's
       length (on a tie, the shorter one); BP = brevity_penalty(c, r).
    3. BLEU = 100 · BP · exp(¼ Σ ln p_n), and 0 when some p_n is 0 (or has no n-grams at all).
    >>> round(corpus_bleu(["the cat sat on the mat"], [["the cat sat on a mat"]]), 4)
    53.7285
    """
    raise NotImplementedError


def bigram_log_likelihood(train_ids: list[int], test_ids: list[int], vocab_size: int, k: float = 1.0) -> float:
    """The total natural log-probability of test_ids[1:], each token given the one before it, under an
    add-k bigram model counted on train_ids.

    p(b | a) = (c(a b) + k) / (c(a ·) + k · vocab_size), where c(a b) counts the pair a, b in
    train_ids and c(a ·) counts the pairs that start with a. Every token id lies in 0..vocab_size-1.
    >>> round(bigram_log_likelihood([0, 1, 0, 1], [0, 1], vocab_size=2, k=1.0), 6)  # p(1|0) = 3/4
    -0.287682
    """
    raise NotImplementedError
