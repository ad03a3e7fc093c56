"""Attention by the formula and through the fused kernel, against PyTorch's own, for t = 64 … 2,048.

    MINILM_THREADS=1 python benchmarks/attention_speed.py            # the default lengths
    python benchmarks/attention_speed.py --lengths 128 512 --device cuda

Each row is one causal self-attention forward pass (batch 1, 4 heads of 64 features by default, no
gradients) of every path in `minilm.attention.ATTENTION_PATHS`:

    formula       scaled_dot_product_attention with a boolean causal mask: stores the (t, t) weights
    fused         fused_attention with the same boolean mask (what MultiHeadAttention(fast=True) runs)
    fused-causal  fused_attention(is_causal=True) (what minilm.model runs)
    torch         torch.nn.functional.scaled_dot_product_attention(is_causal=True): the reference

Each time is the best of several rounds that take the paths in turn (so a busy moment on a shared
machine hits one round, not one path), each round a median; printed as ratios against the reference measured in the same process. Peak
memory is what a pass allocates beyond its inputs: torch.cuda.max_memory_allocated on CUDA,
torch.profiler's allocation record on the CPU. The last column is the size of one (batch, heads,
t, t) float32 weights tensor, for scale.
"""
from __future__ import annotations

import argparse
import itertools

from tqdm.auto import tqdm

from minilm.attention import ATTENTION_PATHS, measure_attention
from minilm.runtime import choose_device, set_threads

MIB = 2 ** 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512, 1024, 2048])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per round (the median is kept)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all paths (the best is kept)")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    args = parser.parse_args()
    device = choose_device(args.device)
    threads = set_threads()

    costs = {}  # (path, length) -> the AttentionCost of its fastest round
    for length in tqdm(args.lengths, desc="lengths"):
        for _, path in itertools.product(range(args.rounds), ATTENTION_PATHS):
            cost = measure_attention(path, length, batch=args.batch, heads=args.heads,
                                     head_dim=args.head_dim, repeats=args.repeats, device=device)
            if (path, length) not in costs or cost.seconds < costs[path, length].seconds:
                costs[path, length] = cost

    print(f"\ncausal self-attention forward, batch {args.batch}, {args.heads} heads of {args.head_dim}, "
          f"on {device}, {threads} torch thread(s)\n")
    print(f"{'t':>6} {'torch ms':>9} " + " ".join(f"{path + ' / torch':>21}" for path in ATTENTION_PATHS[:-1]))
    for length in args.lengths:
        reference = costs["torch", length].seconds
        ratios = [costs[path, length].seconds / reference for path in ATTENTION_PATHS[:-1]]
        print(f"{length:6d} {reference * 1e3:9.2f} " + " ".join(f"{ratio:20.2f}x" for ratio in ratios))

    print(f"\n{'t':>6} " + " ".join(f"{path + ' MiB':>16}" for path in ATTENTION_PATHS) + f" {'(t,t) weights MiB':>18}")
    for length in args.lengths:
        peaks = [costs[path, length].peak_bytes for path in ATTENTION_PATHS]
        cells = " ".join(f"{'n/a':>16}" if peak is None else f"{peak / MIB:16.2f}" for peak in peaks)
        weights = args.batch * args.heads * length * length * 4 / MIB
        print(f"{length:6d} {cells} {weights:18.2f}")


if __name__ == "__main__":
    main()
