"""BPE training and encoding speed: minilm against the `tokenizers` library and a naive trainer.

    python benchmarks/tokenizer_speed.py                  # all of it: about a minute on 2 cores
    python benchmarks/tokenizer_speed.py --naive-merges 50   # time the naive trainer on 50 merges only

The text is the standard library's prose (its docstrings, cleaned as minilm.data cleans them, about
1.5 MB). Each trainer learns a byte-level BPE of `--vocab-size` tokens (END_OF_TEXT included):

    minilm     BPETokenizer.train: GPT-2 pre-tokenisation, then pair counts kept up to date per merge
    tokenizers ByteLevelBPETokenizer.train_from_iterator (Rust, multi-threaded; add_prefix_space=False)
    naive      the same pre-token counts, then every pair recounted before every merge
               (minilm.bpe_train.train_merges_naive). With --naive-merges N it runs N merges and its
               time is extrapolated linearly to the full count; later merges are a little cheaper than
               early ones (pre-tokens shrink), so the extrapolation overstates it slightly.

Encoding uses one vocabulary for both libraries (the `tokenizers` one, loaded into minilm from its
vocab.json and merges.txt) and checks that the ids agree: minilm's `encode` per document, on a
fresh tokenizer (its pre-token cache empty) and again with the cache warm, against `tokenizers`
encoding one document at a time and a whole batch (its threads). Times are the best of --repeats;
encoding speeds are also given as a ratio to `tokenizers` encoding one document at a time.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

from tokenizers import ByteLevelBPETokenizer

from minilm.bpe_train import count_pretokens, train_merges, train_merges_naive
from minilm.data import END_OF_TEXT
from minilm.data.clean import clean_documents
from minilm.data.sources import stdlib_docstrings
from minilm.tokenizer import BPETokenizer

MB = 1e6


def prose() -> list[str]:
    documents, _ = clean_documents(list(stdlib_docstrings()))
    return [document.text for document in documents]


def best_time(function, repeats: int) -> tuple[float, object]:
    """The shortest of `repeats` wall times of function(), and its last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def train_reference(texts: list[str], vocab_size: int) -> ByteLevelBPETokenizer:
    reference = ByteLevelBPETokenizer(add_prefix_space=False)
    reference.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=1, special_tokens=[END_OF_TEXT],
                                  show_progress=False)
    return reference


def time_naive(texts: list[str], vocab_size: int, merges: int | None) -> tuple[float, bool]:
    """Seconds for the naive trainer to reach vocab_size (measured, or extrapolated from `merges`)."""
    start = time.perf_counter()
    counts = count_pretokens(texts, [END_OF_TEXT])
    counting = time.perf_counter() - start
    wanted = vocab_size - 1 - 256  # merges in the full run (END_OF_TEXT takes one id)
    run = wanted if merges is None else min(merges, wanted)
    start = time.perf_counter()
    naive = train_merges_naive(counts, 256 + run)
    merging = time.perf_counter() - start
    assert naive == train_merges(counts, 256 + run), "the naive and incremental trainers disagree"
    return counting + merging * wanted / run, run < wanted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each fast path (the best is kept)")
    parser.add_argument("--naive-merges", type=int, default=None,
                        help="run the naive trainer for this many merges and extrapolate (default: all of them)")
    args = parser.parse_args()
    texts = prose()
    size = sum(len(text.encode("utf-8")) for text in texts)
    threads = os.environ.get("RAYON_NUM_THREADS") or os.cpu_count()

    ours_train, ours = best_time(lambda: BPETokenizer.train(texts, args.vocab_size), args.repeats)
    reference_train, reference = best_time(lambda: train_reference(texts, args.vocab_size), args.repeats)
    naive_train, extrapolated = time_naive(texts, args.vocab_size, args.naive_merges)

    with tempfile.TemporaryDirectory() as folder:
        shared = BPETokenizer.from_gpt2_files(*reference.save_model(folder))
    def fresh_encode():  # a new tokenizer each time: its pre-token cache starts empty
        tokenizer = BPETokenizer(shared.vocab, shared.merges, shared.special_tokens)
        return [tokenizer.encode(text) for text in texts]

    cold, ids = best_time(fresh_encode, args.repeats)
    warm, _ = best_time(lambda: [shared.encode(text) for text in texts], args.repeats + 1)  # the 1st fills the cache
    one_by_one, reference_ids = best_time(lambda: [reference.encode(t).ids for t in texts], args.repeats)
    batch, _ = best_time(lambda: [e.ids for e in reference.encode_batch(texts)], args.repeats)
    assert ids == reference_ids, "minilm and tokenizers encode the same vocabulary differently"

    print(f"\nstdlib prose: {len(texts):,} documents, {size / MB:.2f} MB; vocabulary {args.vocab_size} "
          f"({ours.vocab_size} learned by minilm); tokenizers may use {threads} thread(s), minilm uses 1\n")
    print(f"{'training':<34}{'seconds':>9}{'minilm is':>16}")
    print(f"{'minilm (incremental counts)':<34}{ours_train:>9.2f}{'':>16}")
    print(f"{'tokenizers (Rust)':<34}{reference_train:>9.2f}{ours_train / reference_train:>11.1f}x slower")
    naive_label = "naive (recount every merge)" + (", extrap." if extrapolated else "")
    print(f"{naive_label:<34}{naive_train:>9.2f}{naive_train / ours_train:>11.0f}x faster")
    print(f"\n{'encoding (same vocabulary, same ids)':<40}{'MB/s':>8}{'speed / tokenizers':>20}")
    rows = [("minilm, cold pre-token cache", cold), ("minilm, warm pre-token cache", warm),
            ("tokenizers, one document at a time", one_by_one), ("tokenizers, encode_batch (threads)", batch)]
    for label, seconds in rows:
        print(f"{label:<40}{size / MB / seconds:>8.2f}{one_by_one / seconds:>19.2f}x")
    print("\ngoals: training within 5x of tokenizers and at least 50x faster than naive; "
          "encoding at least as fast as tokenizers")


if __name__ == "__main__":
    main()
