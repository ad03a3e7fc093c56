"""One training step (forward, backward, AdamW) of minilm's GPT-2-style model against Hugging Face's
GPT2LMHeadModel at the same config and batch.

    MINILM_THREADS=1 python benchmarks/train_step_speed.py
    python benchmarks/train_step_speed.py --preset gpu --device cuda --batch 16

Both models get the preset's size, the same weights (copied with minilm.interop), dropout 0 and the
same tokens; both compute the loss of every next token (minilm's last target is -100, Hugging Face
shifts its labels). The two steps alternate, so a busy machine slows both alike; the table gives
median times and minilm's throughput relative to Hugging Face's (goal: >= 1.0x).
"""
from __future__ import annotations

import argparse

import torch
from tqdm.auto import tqdm

from minilm.interop import to_hf_gpt2
from minilm.model import GPT, config_for_preset, count_parameters
from minilm.runtime import choose_device, seed_everything, set_threads, wall_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", help="whose model size to use: smoke, cpu or gpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model (the median is kept)")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    args = parser.parse_args()
    device = choose_device(args.device)
    threads = set_threads()
    seed_everything(0)

    config = config_for_preset(args.vocab_size, family="gpt2", preset=args.preset, dropout=0.0)
    ours = GPT(config).to(device).train()
    theirs = to_hf_gpt2(ours).to(device).train()
    idx = torch.randint(0, args.vocab_size, (args.batch, config.context_length), device=device)
    targets = torch.cat([idx[:, 1:], torch.full_like(idx[:, :1], -100)], dim=1)  # the next token; none after the last
    ours_optimizer = torch.optim.AdamW(ours.parameters(), lr=1e-4)
    theirs_optimizer = torch.optim.AdamW(theirs.parameters(), lr=1e-4)

    def ours_step():
        _, loss = ours(idx, targets)
        loss.backward()
        ours_optimizer.step()
        ours_optimizer.zero_grad(set_to_none=True)

    def theirs_step():
        loss = theirs(input_ids=idx, labels=idx).loss
        loss.backward()
        theirs_optimizer.step()
        theirs_optimizer.zero_grad(set_to_none=True)

    ours_step(), theirs_step()  # warm up (and check both losses agree before any update)
    times = {"minilm": [], "transformers": []}
    for _ in tqdm(range(args.steps), desc="steps"):
        times["minilm"].append(wall_seconds(ours_step, device))
        times["transformers"].append(wall_seconds(theirs_step, device))
    medians = {name: sorted(values)[len(values) // 2] for name, values in times.items()}

    tokens = args.batch * config.context_length
    print(f"\ntraining step (forward, backward, AdamW), batch {args.batch} × {config.context_length} tokens, "
          f"{args.preset} preset's GPT-2 ({config.n_layer} layers, {config.n_embd} wide, vocabulary "
          f"{args.vocab_size}, {count_parameters(ours)['total']:,} parameters), on {device}, {threads} torch thread(s)\n")
    print(f"{'model':14} {'step ms':>9} {'tokens/s':>10}")
    for name, seconds in medians.items():
        print(f"{name:14} {seconds * 1e3:9.1f} {tokens / seconds:10.0f}")
    print(f"\nminilm / transformers throughput: {medians['transformers'] / medians['minilm']:.2f}x")


if __name__ == "__main__":
    main()
