"""Float32, bf16 and weight-only int8 on the CPU: generation speed and file size of the cpu preset's model.

    MINILM_THREADS=1 python benchmarks/quantize_speed.py
    python benchmarks/quantize_speed.py --preset gpu --new-tokens 128

Greedy generation through the KV cache, batch 1, random weights (speed does not depend on training).
Speeds are ratios against the float32 model measured in the same process. bf16 is the model after
`.to(torch.bfloat16)`; int8 is `minilm.deploy.quantize.quantize_model`, whose layers turn the int8
weight back into floats inside every matmul: it saves memory and disk, and is not meant to be
faster (that needs int8 matmul kernels). Sizes are the safetensors files each one saves to.
"""
from __future__ import annotations

import argparse
import copy

import torch

from minilm.deploy.quantize import quantize_model, saved_bytes
from minilm.generate import generation_seconds
from minilm.model import GPT, config_for_preset
from minilm.report import cpu_name
from minilm.runtime import seed_everything, set_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", help="whose model size to use: smoke, cpu or gpu")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per setting (the median is kept)")
    args = parser.parse_args()
    threads = set_threads()
    seed_everything(0)

    print(f"\n{args.new_tokens} new tokens (greedy, KV cache, batch 1) after a {args.prompt_tokens}-token prompt, "
          f"{args.preset} preset's model, vocabulary {args.vocab_size}, random weights; "
          f"CPU: {cpu_name()}, {threads} torch thread(s), torch {torch.__version__}\n")
    print("| family | weights | file MB | size / float32 | tokens/s | speed / float32 |")
    print("|---|---|---:|---:|---:|---:|")
    for family in ("gpt2", "llama"):
        config = config_for_preset(args.vocab_size, family=family, preset=args.preset)
        model = GPT(config).eval()
        models = {"float32": model, "bf16": copy.deepcopy(model).to(torch.bfloat16), "int8": quantize_model(model)}
        prompt = torch.randint(0, args.vocab_size, (1, args.prompt_tokens))
        for candidate in models.values():  # warm up: one full run each
            generation_seconds(candidate, prompt, args.new_tokens, use_cache=True, repeats=1)
        times = {name: [] for name in models}
        for _ in range(args.repeats):  # the settings take turns, so a slow moment of the machine hits all alike
            for name, candidate in models.items():
                times[name].append(generation_seconds(candidate, prompt, args.new_tokens, use_cache=True, repeats=1))
        seconds = {name: sorted(values)[len(values) // 2] for name, values in times.items()}  # the medians
        sizes = {name: saved_bytes(candidate) for name, candidate in models.items()}
        for name in models:
            print(f"| {family} | {name} | {sizes[name] / 1e6:.3f} | {sizes[name] / sizes['float32']:.2f}x "
                  f"| {args.new_tokens / seconds[name]:.0f} | {seconds['float32'] / seconds[name]:.2f}x |")


if __name__ == "__main__":
    main()
