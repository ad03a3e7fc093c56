"""How close does chapter 4's model get to the best possible loss, and how fast does it train?

    python benchmarks/train_quality.py                    # smoke and cpu (and gpu when CUDA is there)
    python benchmarks/train_quality.py --presets smoke

For each preset, the course model (minilm.course_model.course_model: trained once, then cached) on the
validation stream of the story corpus, in nats per token of that stream, against
  - the exact entropy floor: the stories' total −ln p (chapter 1 knows it) over the stream's tokens;
  - a Kneser-Ney n-gram baseline (chapter 5) fitted on the training stream, its best order.
Two measurements of the model: non-overlapping windows of its context (each token counted once,
the first tokens of a window see almost nothing), and sliding windows with stride context/2 (each
token sees at least half a context, a whole story at every preset): the floor assumes each token
knows its whole story, so the sliding figure is the one to compare with it. The goal at the cpu
preset: within 15% of the floor.

Then the same recipe trained on the standard library's prose: validation bits per byte, reported.
Tokens per second are the median of the training steps of each run, with the thread count; the
machine may be shared, so treat them as rough. `benchmarks/train_speed.py` compares the step with
a plain PyTorch one and measures MFU on a GPU.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import torch

from minilm.cache import cached_artifact
from minilm.checkpoint import load_checkpoint
from minilm.course_model import RECIPES, course_model
from minilm.data import CorpusConfig, build_corpus
from minilm.evaluate import KneserNeyLM, bits_per_byte, choose_order, entropy_floor, sliding_window_loss, token_losses
from minilm.model import GPT, model_config
from minilm.runtime import choose_device, seed_everything, set_threads
from minilm.tokens import prepare_tokens
from minilm.train import TokenBatches, train

NGRAM_TRAIN_TOKENS = 2_000_000  # the n-gram counts are pure Python: cap the text they are fitted on


def stream_losses(model, stream, context: int) -> tuple[float, float]:
    """(non-overlapping, sliding) validation loss over the whole stream, nats per token."""
    whole = token_losses(model, stream, context, batch_size=32).mean().item()
    stride = context // 2
    sliding = sliding_window_loss(token_losses(model, stream, context, batch_size=32, stride=stride), stride)
    return whole, sliding


def ngram_baseline(tokens) -> tuple[int, float]:
    """The best order of a Kneser-Ney n-gram model and its validation loss, nats per token."""
    train_ids = tokens.streams["train"].tokens[:NGRAM_TRAIN_TOKENS]
    model = KneserNeyLM(tokens.tokenizer.vocab_size, max_order=6).fit(train_ids)
    choice = choose_order(model, tokens.streams["validation"].tokens)
    return choice.best_order, choice.losses[choice.best_order]


def median_tokens_per_second(history) -> float:
    return statistics.median(r["tokens_per_s"] for r in history if "tokens_per_s" in r)


def story_row(preset: str, device) -> dict:
    started = time.perf_counter()
    story = course_model(preset, device)
    seconds = time.perf_counter() - started
    validation = story.corpus["validation"]
    stream = story.tokens.streams["validation"]
    floor = entropy_floor(validation["log_prob"], len(stream), story.tokens.text_bytes["validation"])
    whole, sliding = stream_losses(story.model, stream, story.recipe.train.context_length)
    order, ngram = ngram_baseline(story.tokens)
    return {"preset": preset, "floor": floor.nats_per_token, "whole": whole, "sliding": sliding, "ngram": ngram,
            "order": order, "tok_s": median_tokens_per_second(story.history), "seconds": seconds,
            "train_s": story.history[-1]["seconds"]}


def prose_model(preset: str, device):
    """The preset's recipe trained on standard-library prose (cached like the course model)."""
    recipe = RECIPES[preset]
    tokens = prepare_tokens(build_corpus(CorpusConfig.for_preset(preset, sources={"prose": 1.0})), recipe.vocab_size)
    config = model_config(recipe.size, tokens.tokenizer.vocab_size)

    def build(folder: Path) -> None:
        seed_everything(recipe.train.seed)
        model = GPT(config).to(device)
        train(model, TokenBatches(tokens.streams, recipe.train, device), recipe.train, folder)

    folder = cached_artifact(f"prose-model-{preset}", {"model": config.to_dict(), "train": asdict(recipe.train),
                                                       "tokens": tokens.folder.name}, build)
    return load_checkpoint(folder, device), tokens


def prose_row(preset: str, device) -> dict:
    checkpoint, tokens = prose_model(preset, device)
    stream = tokens.streams["validation"]
    whole, _ = stream_losses(checkpoint.model, stream, checkpoint.model.config.context_length)
    return {"preset": preset, "loss": whole, "bpb": bits_per_byte(whole, len(stream), tokens.text_bytes["validation"]),
            "tok_s": median_tokens_per_second(checkpoint.history), "train_s": checkpoint.history[-1]["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = ["smoke", "cpu"] + (["gpu"] if torch.cuda.is_available() else [])
    parser.add_argument("--presets", nargs="+", default=default)
    args = parser.parse_args()
    device = choose_device()
    threads = set_threads()
    print(f"device {device}, {threads} torch thread(s); nats per token of each validation stream\n")
    print(f"{'preset':7} {'floor':>7} {'model':>7} {'gap':>6} {'sliding':>8} {'gap':>6} {'n-gram':>7} "
          f"{'gap':>6} {'tokens/s':>9} {'train s':>8}")
    for preset in args.presets:
        row = story_row(preset, device)
        gap = {key: row[key] / row["floor"] - 1 for key in ("whole", "sliding", "ngram")}
        print(f"{preset:7} {row['floor']:7.4f} {row['whole']:7.4f} {gap['whole']:6.1%} {row['sliding']:8.4f} "
              f"{gap['sliding']:6.1%} {row['ngram']:7.4f} {gap['ngram']:6.1%} {row['tok_s']:9,.0f} "
              f"{row['train_s']:8.0f}   (n-gram order {row['order']})")
    print(f"\nstandard-library prose, the same recipes\n{'preset':7} {'loss':>7} {'bits/byte':>10} "
          f"{'tokens/s':>9} {'train s':>8}")
    for preset in args.presets:
        row = prose_row(preset, device)
        print(f"{preset:7} {row['loss']:7.4f} {row['bpb']:10.3f} {row['tok_s']:9,.0f} {row['train_s']:8.0f}")


if __name__ == "__main__":
    main()
