"""Tokens per second of chapter 4's training step, against a bare PyTorch step in the same process.

    python benchmarks/train_speed.py            # the presets' models that suit this machine

For each preset's model, at its recipe's batch and context: the median time of
`minilm.train.optimizer_step` (parameter groups, clipping, the loss check, bf16 autocast and
torch.compile on CUDA) against a bare step of the same model on the same batch (forward, backward,
AdamW, nothing else). The ratio is what the loop's care costs. On CUDA it also measures GPT-2
small (124M parameters, context 1024) and the model FLOPs utilisation: training FLOPs per token
(minilm.model.flops_per_token) × tokens/s ÷ the GPU's peak dense bf16 rate. The goal there is 40%.
The CPU may be shared with other work: treat CPU figures as rough.
"""
from __future__ import annotations

import statistics
from dataclasses import replace

import torch

from minilm.course_model import RECIPES
from minilm.model import GPT, MODEL_SIZES, flops_per_token, model_config
from minilm.runtime import choose_device, set_threads, wall_seconds
from minilm.train import Process, autocast_context, make_optimizer, optimizer_step

PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12,
                   "A10": 125e12, "4090": 165e12, "3090": 71e12}  # dense, per GPU, from the vendors' sheets
VOCAB = 1024  # the recipes' vocabulary; GPT-2 small gets GPT-2's own


def peak_flops(device: torch.device) -> float | None:
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_FLOPS.items() if key in name), None)


def median_seconds(step, device: torch.device, repeats: int) -> float:
    times = [wall_seconds(step, device) for _ in range(repeats + 2)]  # two warm-up steps (compilation, allocator)
    return statistics.median(times[2:])


def measure(name: str, size: str, vocab: int, train_config, device: torch.device, repeats: int) -> dict:
    torch.manual_seed(0)
    model = GPT(model_config(size, vocab)).to(device)
    forward = torch.compile(model) if train_config.compile else model
    optimizer = make_optimizer(model, train_config)
    autocast = autocast_context(train_config.precision, device)
    shape = (train_config.batch_size, train_config.context_length)
    x = torch.randint(0, vocab, shape, device=device)  # (batch, context)
    y = torch.randint(0, vocab, shape, device=device)  # (batch, context)
    ours = median_seconds(lambda: optimizer_step(model, forward, optimizer, lambda split, index: (x, y), 0,
                                                 train_config.lr, train_config, Process(), autocast, []),
                          device, repeats)

    def bare_step():
        with autocast:
            loss = forward(x, y)[1]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    bare = median_seconds(bare_step, device, repeats)
    tokens_per_s = train_config.tokens_per_step / ours
    row = {"name": name, "tokens_per_s": tokens_per_s, "ratio": ours / bare, "mfu": None}
    if device.type == "cuda" and peak_flops(device):
        flops = flops_per_token(model.config, train_config.context_length)["training"]
        row["mfu"] = flops * tokens_per_s / peak_flops(device)
    return row


def main() -> None:
    device = choose_device()
    threads = set_threads()
    cases = [(preset, recipe.size, VOCAB, recipe.train) for preset, recipe in RECIPES.items()
             if device.type == "cuda" or preset != "gpu"]
    if device.type == "cuda":
        gpt2 = replace(RECIPES["gpu"].train, batch_size=16, context_length=MODEL_SIZES["gpt2-small"].context_length)
        cases.append(("gpt2-small", "gpt2-small", 50304, gpt2))  # GPT-2's vocabulary, padded to a multiple of 64
    print(f"device {device}, {threads} torch thread(s)\n")
    print(f"{'model':11} {'tokens/s':>10} {'ours / bare step':>17} {'MFU':>6}")
    for name, size, vocab, config in cases:
        config = replace(config, compile=config.compile and device.type == "cuda")
        row = measure(name, size, vocab, config, device, repeats=20 if device.type == "cuda" else 5)
        mfu = f"{row['mfu']:6.1%}" if row["mfu"] is not None else "     -"
        print(f"{name:11} {row['tokens_per_s']:10,.0f} {row['ratio']:16.2f}x {mfu}")


if __name__ == "__main__":
    main()
