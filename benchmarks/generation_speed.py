"""Generation with and without the KV cache: 256 new tokens from the cpu preset's model.

    MINILM_THREADS=1 python benchmarks/generation_speed.py
    python benchmarks/generation_speed.py --preset gpu --device cuda --new-tokens 512

Without a cache every step runs the model over the whole sequence so far; with it, a step runs only
the new token against the stored keys and values. Both give exactly the same tokens (the tests check
it); this measures the difference in time. The preset's model keeps its width and depth, and its
context is stretched to hold prompt + new tokens (at the cpu preset the context is 128, and a model
generating past its context slides its window, which the cache cannot help with). Goal: >= 5x.
"""
from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from minilm.generate import generation_seconds
from minilm.model import GPT, config_for_preset, count_parameters
from minilm.runtime import choose_device, seed_everything, set_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", help="whose model size to use: smoke, cpu or gpu")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per setting (the median is kept)")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    args = parser.parse_args()
    device = choose_device(args.device)
    threads = set_threads()
    seed_everything(0)

    for family in ("gpt2", "llama"):
        config = config_for_preset(args.vocab_size, family=family, preset=args.preset)
        config = replace(config, context_length=max(config.context_length, args.prompt_tokens + args.new_tokens))
        model = GPT(config).to(device).eval()
        prompt = torch.randint(0, args.vocab_size, (args.batch, args.prompt_tokens), device=device)
        generation_seconds(model, prompt, 8, use_cache=True, repeats=1)  # warm up
        cached = generation_seconds(model, prompt, args.new_tokens, use_cache=True, repeats=args.repeats)
        uncached = generation_seconds(model, prompt, args.new_tokens, use_cache=False, repeats=args.repeats)
        if family == "gpt2":
            print(f"\n{args.new_tokens} new tokens after a {args.prompt_tokens}-token prompt, batch {args.batch}, "
                  f"{args.preset} preset's model ({config.n_layer} layers, {config.n_embd} wide, vocabulary "
                  f"{args.vocab_size}), on {device}, {threads} torch thread(s)\n")
            print(f"{'family':8} {'parameters':>11} {'no cache s':>11} {'cache s':>9} {'tokens/s':>9} {'speed-up':>9}")
        print(f"{family:8} {count_parameters(model)['total']:11,d} {uncached:11.3f} {cached:9.3f} "
              f"{args.new_tokens * args.batch / cached:9.0f} {uncached / cached:8.1f}x")


if __name__ == "__main__":
    main()
