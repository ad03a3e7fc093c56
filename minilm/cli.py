"""The command line of chapter 4: train a model, then let it write.

    python -m minilm train --preset cpu --data stories --family gpt2 --size tiny --steps 2500 --out runs/stories
    python -m minilm generate --checkpoint runs/stories --prompt "Once, a brave fox" --temperature 0.8 --top-k 40

`train` builds chapter 1's corpus and tokenizer, chapter 3's model, and runs chapter 4's loop,
saving a checkpoint (with its tokenizer) in --out; run it again with --resume to continue an
interrupted run. Started by torchrun, it trains on every process torchrun started, with DDP
(minilm.distributed):

    torchrun --nproc_per_node=4 -m minilm train --size small --out runs/ddp

`generate` loads a checkpoint and continues a prompt. Every size not given on the command line
comes from the preset's recipe (minilm.course_model.RECIPES).

A run saves its checkpoint at least every --checkpoint-minutes (and every --checkpoint-every steps,
if given); Ctrl+C or SIGTERM finishes the step, saves and stops with one line, so `--resume` never
loses more than the steps since the last save. Numbers are checked as they are read: a value
out of range is refused with a line saying which values are allowed.
"""
from __future__ import annotations

import argparse
import math
import re
from dataclasses import replace

import torch

from minilm.checkpoint import CheckpointError, check_writable, has_checkpoint, load_checkpoint, read_manifest
from minilm.data import END_OF_TEXT, CorpusConfig, build_corpus
from minilm.distributed import distributed, main_process_first, ring_all_reduce_bytes
from minilm.generate import document_prompt
from minilm.course_model import RECIPES, SampleEvery
from minilm.model import GPT, MODEL_SIZES, count_parameters, model_config
from minilm.presets import PRESETS, choose, current_preset
from minilm.runtime import choose_device, seed_everything
from minilm.tokens import prepare_tokens
from minilm.train import TokenBatches, TrainingInterrupted, train

DATA_SOURCES = {  # --data -> chapter 1's sources and their shares (None: chapter 1's default mix)
    "stories": {"stories": 1.0},
    "prose": {"prose": 1.0},
    "code": {"code": 1.0},
    "mixed": None,
}

TRAIN_EXAMPLES = """examples:
  python -m minilm train --preset smoke --out runs/first          a few seconds, to see it work
  python -m minilm train --data stories --size tiny --steps 2500 --out runs/stories
  python -m minilm train --data stories --size tiny --steps 2500 --out runs/stories --resume
  python -m minilm generate --checkpoint runs/stories --prompt "Once, a brave fox"
  torchrun --nproc_per_node=4 -m minilm train --size small --out runs/ddp     4 GPUs (or CPU processes), DDP
"""

GENERATE_EXAMPLES = """examples:
  python -m minilm generate --checkpoint runs/stories
  python -m minilm generate --checkpoint runs/stories --prompt "Long ago, a shy cat" --temperature 0.8 --top-k 40
  python -m minilm generate --checkpoint runs/stories --temperature 0 --max-new-tokens 60     greedy: always the likeliest token
"""


def whole_number(minimum: int, maximum: int | None = None):
    """An argparse type: a whole number from `minimum` to `maximum` (inclusive), else one clear line."""
    allowed = f"from {minimum:,} to {maximum:,}" if maximum is not None else f"of at least {minimum:,}"

    def parse(text: str) -> int:
        if not re.fullmatch(r"-?[0-9]{1,30}", text.strip()):  # ASCII digits: int() would take "²" or "１"
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number; give one {allowed}")
        value = int(text)
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"{value:,} is out of range; give a whole number {allowed}")
        return value

    return parse


def number(minimum: float, maximum: float | None = None, above_minimum: bool = False):
    """An argparse type: a finite number ≥ `minimum` (> it if `above_minimum`) and ≤ `maximum`."""
    low = f"> {minimum:g}" if above_minimum else f">= {minimum:g}"
    allowed = low + (f" and <= {maximum:g}" if maximum is not None else "")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number; give one {allowed}") from None
        if (not math.isfinite(value) or value < minimum or (above_minimum and value == minimum)
                or (maximum is not None and value > maximum)):
            raise argparse.ArgumentTypeError(f"{text[:40]} is out of range; give a number {allowed}")
        return value

    return parse


SEED = whole_number(0, 2**32 - 1)  # NumPy takes 32-bit seeds, so the course's seeds are 32-bit
STEPS = whole_number(1)


def add_command(subparsers) -> None:
    """Add `train` and `generate` to `python -m minilm`."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = subparsers.add_parser(
        "train", help="train a language model and save a checkpoint",
        description="Train a GPT on one of chapter 1's corpora and save a checkpoint in --out. Sizes "
                    "you leave out come from the preset (smoke: seconds, cpu: minutes on a laptop, "
                    "gpu: one GPU).", epilog=TRAIN_EXAMPLES, formatter_class=formatter)
    parser.add_argument("--out", required=True, metavar="FOLDER",
                        help="where to save the checkpoint (weights, optimizer, tokenizer, history)")
    parser.add_argument("--preset", choices=PRESETS, help="run size (default: $MINILM_PRESET, else gpu with "
                        "CUDA, else cpu)")
    parser.add_argument("--data", choices=DATA_SOURCES, default="stories",
                        help="what to learn from: the story world (its best possible loss is known exactly), "
                             "the standard library's docstrings (prose) or source (code), or chapter 1's mix "
                             "(default: stories)")
    parser.add_argument("--family", choices=("gpt2", "llama"), default="gpt2",
                        help="model style: gpt2 (learned positions, LayerNorm, GELU) or llama (RoPE, RMSNorm, "
                             "SwiGLU) (default: gpt2)")
    parser.add_argument("--size", choices=MODEL_SIZES, help="model size, from nano (1 layer, 32 wide) to "
                        "gpt2-small (12 layers, 768 wide, 124M parameters) (default: the preset's)")
    parser.add_argument("--steps", type=STEPS, help="optimizer steps (default: the preset's)")
    parser.add_argument("--lr", type=number(0, above_minimum=True), help="peak learning rate (default: the preset's)")
    parser.add_argument("--batch-size", type=STEPS, help="sequences per micro-batch (default: the preset's)")
    parser.add_argument("--accumulation", type=STEPS, help="micro-batches per step and process (default: the "
                        "preset's); a step sees batch-size × accumulation × processes sequences")
    parser.add_argument("--seed", type=SEED, default=0, help="random seed for the weights and batches (default: 0)")
    parser.add_argument("--checkpoint-every", type=whole_number(0), metavar="STEPS",
                        help="also save a checkpoint every this many steps (default: 0, by time only)")
    parser.add_argument("--checkpoint-minutes", type=number(0), metavar="MINUTES",
                        help="save a checkpoint at least this often, so a crash loses at most this much "
                             "(default: 2; 0: only at the end and on Ctrl+C)")
    parser.add_argument("--device", help="cuda, mps or cpu (default: $MINILM_DEVICE, else the best there is)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run saved in --out (give the same options as when it started)")
    parser.set_defaults(run=run_train)

    parser = subparsers.add_parser(
        "generate", help="let a trained model continue a prompt",
        description="Load a checkpoint saved by `train` and let the model write, one token at a time.",
        epilog=GENERATE_EXAMPLES, formatter_class=formatter)
    parser.add_argument("--checkpoint", required=True, metavar="FOLDER", help="the --out folder of a training run")
    parser.add_argument("--prompt", default="", help="the text to continue (default: none, a fresh start)")
    parser.add_argument("--max-new-tokens", type=whole_number(0), default=150,
                        help="the most tokens to add (default: 150)")
    parser.add_argument("--temperature", type=number(0), default=1.0,
                        help="randomness: 0 always takes the likeliest token, 1 samples the model's own "
                             "probabilities, above 1 is wilder (default: 1.0)")
    parser.add_argument("--top-k", type=whole_number(1), help="sample only among the k likeliest tokens (default: all)")
    parser.add_argument("--top-p", type=number(0, 1, above_minimum=True), help="sample only among the likeliest "
                        "tokens that together hold probability p, e.g. 0.9 (default: all)")
    parser.add_argument("--samples", type=whole_number(1, 1000), default=1,
                        help="how many continuations to write (default: 1)")
    parser.add_argument("--seed", type=SEED, default=0, help="random seed: the same seed writes the same text")
    parser.add_argument("--device", help="cuda, mps or cpu (default: $MINILM_DEVICE, else the best there is)")
    parser.set_defaults(run=run_generate)


def train_config_for(args, recipe):
    """The preset's TrainConfig with the command line's changes; warm-up and evaluation scale with --steps."""
    config = replace(recipe.train, context_length=MODEL_SIZES[args.size or recipe.size].context_length,
                     seed=args.seed)
    if args.steps is not None:
        share = args.steps / recipe.train.steps
        config = replace(config, steps=args.steps, warmup_steps=round(recipe.train.warmup_steps * share),
                         eval_every=max(1, round(recipe.train.eval_every * share)))
    if args.lr is not None:
        config = replace(config, lr=args.lr, min_lr=args.lr / 10)
    if args.batch_size is not None:
        config = replace(config, batch_size=args.batch_size)
    if args.accumulation is not None:
        config = replace(config, accumulation=args.accumulation)
    if args.checkpoint_every is not None:
        config = replace(config, checkpoint_every=args.checkpoint_every)
    if args.checkpoint_minutes is not None:
        config = replace(config, checkpoint_minutes=args.checkpoint_minutes)
    return config


def check_out_folder(args) -> None:
    """Before any work: --out must be a folder we can write to, and --resume must continue a run on
    the same data (the checkpoint records its --data)."""
    check_writable(args.out)
    if args.resume and has_checkpoint(args.out):
        saved = read_manifest(args.out, verify=False).get("run", {}).get("data")
        if saved is not None and saved != args.data:
            raise CheckpointError(f"{args.out} was trained with --data {saved}; resume it with --data {saved}, "
                                  f"or train --data {args.data} into a new folder.")


def run_train(args) -> int:
    check_out_folder(args)
    try:
        with distributed(args.device) as (process, device):  # alone unless torchrun started several processes
            train_here(args, process, device)
    except TrainingInterrupted as stop:
        print(f"minilm train: {stop}", flush=True)
        return 128 + stop.signal_number  # the shell's convention: 130 after Ctrl+C, 143 after SIGTERM
    return 0


def train_here(args, process, device) -> None:
    """Train as this process: alone, or as one of those torchrun started (only rank 0 prints)."""
    preset = args.preset or current_preset()
    recipe = choose(RECIPES, preset)
    corpus_config = CorpusConfig.for_preset(preset, stories=recipe.stories)
    if DATA_SOURCES[args.data] is not None:
        corpus_config = replace(corpus_config, sources=DATA_SOURCES[args.data])
    with main_process_first(process):  # rank 0 builds (and caches) the corpus and tokens, the others load them
        tokens = prepare_tokens(build_corpus(corpus_config), recipe.vocab_size)
    config = train_config_for(args, recipe)
    seed_everything(config.seed)
    model = GPT(model_config(args.size or recipe.size, tokens.tokenizer.vocab_size, args.family)).to(device)
    say = print if process.is_main else (lambda *_: None)
    processes = f" on each of {process.world_size} processes (DDP)" if process.world_size > 1 else ""
    count = torch.get_num_threads()
    threads = f" ({count} CPU thread{'s' * (count != 1)})" if device.type == "cpu" else ""
    say(f"{args.data} corpus: {len(tokens.streams['train']):,} training tokens; model: "
        f"{count_parameters(model)['total']:,} parameters on {device}{threads}; {config.steps} steps of "
        f"{config.tokens_per_step:,} tokens{processes}")
    sampler = SampleEvery(tokens.tokenizer, config.eval_every, max_new_tokens=60)
    history = train(model, TokenBatches(tokens.streams, config, device), config, args.out, resume=args.resume,
                    tokenizer=tokens.tokenizer, callbacks=[sampler] if process.is_main else [], process=process,
                    run_info={"data": args.data})
    final = history[-1]
    say(f"step {final['step']}: train loss {final.get('train_loss', float('nan')):.3f}, validation loss "
        f"{final.get('val_loss', float('nan')):.3f} nats per token")
    if process.world_size > 1 and process.traffic.backward_passes:
        payload = process.traffic.bytes_per_pass()
        say(f"DDP all-reduced {payload / 1e6:.3f} MB of gradients per backward pass; in a ring each process "
            f"sends 2(N-1)/N times that: {ring_all_reduce_bytes(payload, process.world_size) / 1e6:.3f} MB")
    say(f"checkpoint saved in {args.out}; try: python -m minilm generate --checkpoint {args.out}")


def run_generate(args) -> None:
    checkpoint = load_checkpoint(args.checkpoint, choose_device(args.device))
    tokenizer, model = checkpoint.tokenizer, checkpoint.model
    if tokenizer is None:
        raise ValueError(f"{args.checkpoint} was saved without a tokenizer, so its tokens cannot be turned "
                         f"into text; save it with save_checkpoint(..., tokenizer=...).")
    end_of_text = tokenizer.special_tokens[END_OF_TEXT]
    prompt = document_prompt(tokenizer, args.prompt)[-model.config.context_length:]
    device = next(model.parameters()).device
    idx = torch.tensor([prompt] * args.samples, device=device)  # (samples, prompt tokens)
    out = model.generate(idx, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                         top_p=args.top_p, stop_tokens=[end_of_text], seed=args.seed)
    for row in out.tolist():
        text = tokenizer.decode(row[len(prompt):]).split(END_OF_TEXT)[0]
        print(args.prompt + text)
        if args.samples > 1:
            print("---")
