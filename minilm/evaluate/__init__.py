"""Chapter 5: evaluating a language model. One idea per module:

    lm             validation loss, perplexity, bits per byte, loss by position, the exact entropy floor
    ngram          baselines on the same tokens: unigram and interpolated Kneser-Ney n-grams
    bleu           BLEU from the paper (clipped precisions, brevity penalty, smoothing)
    rouge          ROUGE-L, the longest-common-subsequence F-measure for summaries
    diversity      distinct-n and the repetition rate of generated text
    memorisation   the longest n-gram a sample shares with the training stream (a suffix array)
    calibration    expected calibration error and the reliability diagram
"""
from minilm.evaluate.bleu import BleuScore, brevity_penalty, clipped_matches, corpus_bleu
from minilm.evaluate.calibration import (ReliabilityDiagram, expected_calibration_error, next_token_confidences,
                                         plot_reliability, reliability)
from minilm.evaluate.diversity import distinct_n, ngrams, repetition_rate
from minilm.evaluate.lm import (EntropyFloor, FloorGap, bits_per_byte, entropy_floor, gap_to_floor,
                                loss_by_position, perplexity, sliding_window_loss, token_losses, windows)
from minilm.evaluate.memorisation import SharedNgram, SuffixIndex, suffix_array
from minilm.evaluate.ngram import KneserNeyLM, OrderChoice, UnigramLM, choose_order
from minilm.evaluate.rouge import RougeScore, lcs_length, mean_rouge_l, rouge_l

__all__ = ["BleuScore", "EntropyFloor", "FloorGap", "KneserNeyLM", "OrderChoice", "ReliabilityDiagram",
           "RougeScore", "SharedNgram", "SuffixIndex", "UnigramLM", "bits_per_byte", "brevity_penalty",
           "choose_order", "clipped_matches", "corpus_bleu", "distinct_n", "entropy_floor",
           "expected_calibration_error", "gap_to_floor", "lcs_length", "loss_by_position", "mean_rouge_l",
           "next_token_confidences", "ngrams", "perplexity", "plot_reliability", "reliability",
           "repetition_rate", "rouge_l", "sliding_window_loss", "suffix_array", "token_losses", "windows"]
