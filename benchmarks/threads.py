"""How many CPU threads should torch use here? Time one training step at 1 and 2 threads.

    python benchmarks/threads.py

On a 2-core machine two threads usually beat one for mid-size models, but only while nothing
else keeps a core busy: then two threads can be many times slower. Measure on an idle machine.
The figures are ratios against the one-thread step measured in the same process; set the count
the course uses with MINILM_THREADS.
"""
from __future__ import annotations

import time

import torch
from torch import nn


def transformer_stack(width: int, layers: int) -> nn.Module:
    layer = nn.TransformerEncoderLayer(width, nhead=max(1, width // 64), dim_feedforward=4 * width,
                                       batch_first=True, dropout=0.0)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def seconds_per_step(model: nn.Module, batch: torch.Tensor, threads: int, repeats: int = 5) -> float:
    torch.set_num_threads(threads)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for _ in range(repeats + 1):  # the first step warms up
        start = time.perf_counter()
        loss = model(batch).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]  # the median


def main() -> None:
    sizes = {"small (64 wide, 2 layers)": (64, 2), "mid (256 wide, 4 layers)": (256, 4),
             "large (512 wide, 6 layers)": (512, 6)}
    print(f"{'model':28} {'1 thread ms':>12} {'2 threads ms':>13} {'speed-up':>9}")
    for name, (width, layers) in sizes.items():
        torch.manual_seed(0)
        model = transformer_stack(width, layers)
        batch = torch.randn(8, 128, width)  # (batch, time, width)
        one = seconds_per_step(model, batch, 1)
        two = seconds_per_step(model, batch, 2)
        print(f"{name:28} {one * 1e3:12.1f} {two * 1e3:13.1f} {one / two:8.2f}x")


if __name__ == "__main__":
    main()
