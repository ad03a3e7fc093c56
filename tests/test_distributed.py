"""Training on two processes against one: torchrun starts two CPU processes (gloo on localhost), and
they must give the same losses as one process with the same global batch, take disjoint shards of the
token stream that together are the single process's, leave checkpoints to rank 0, and hand runs over
between 2 processes and 1 through a checkpoint. FSDP must train like DDP with half the weights each.

This file is also the program torchrun runs: `torchrun --standalone --nproc_per_node=2 THIS OUT_DIR`.
"""
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

import minilm.train as train_module
from minilm.__main__ import build_parser, main
from minilm.checkpoint import CheckpointError, load_checkpoint, read_manifest
from minilm.cli import train_here
from minilm.distributed import (DistributedError, distributed, full_weights, main_process_first,
                                ring_all_reduce_bytes, shard_model, start)
from minilm.model import GPT, GPTConfig
from minilm.tokens import TokenStream
from minilm.train import Process, TokenBatches, TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 61
STEPS, CUT = 6, 3  # the runs take 6 steps; the interrupted ones keep their checkpoint of step 3
GLOBAL_MICRO_BATCHES = 2  # micro-batches per step, all processes together: the global batch is 2 × 4 sequences
CLI_RUN = ["train", "--preset", "smoke", "--size", "nano", "--steps", "3"]  # the command line's run, --out added


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=VOCAB, context_length=16, n_layer=2, n_head=2, n_embd=16))


def config_for(processes: int) -> TrainConfig:
    """The same global batch, and the same validation batches, for 1 or 2 processes."""
    return TrainConfig(steps=STEPS, batch_size=4, context_length=16, accumulation=GLOBAL_MICRO_BATCHES // processes,
                       lr=1e-2, min_lr=1e-3, warmup_steps=2, eval_every=CUT, eval_batches=4 // processes,
                       checkpoint_every=CUT)


def write_streams(folder: Path) -> None:
    """A learnable token stream (each token adds a small step to the last) for train and validation."""
    rng = np.random.default_rng(0)
    for split, size in (("train", 20_000), ("validation", 2_000)):
        (np.cumsum(rng.integers(1, 4, size)) % VOCAB).astype(np.uint8).tofile(folder / f"{split}.bin")


class RecordedBatches(TokenBatches):
    """TokenBatches that remember which training batches they handed out, and their token windows."""

    def __init__(self, folder: Path, config: TrainConfig):
        super().__init__({split: TokenStream(folder / f"{split}.bin", np.uint8) for split in ("train", "validation")},
                         config, "cpu")
        self.taken: list[tuple[int, list]] = []

    def get_batch(self, split, index):
        x, y = super().get_batch(split, index)
        if split == "train":
            self.taken.append((index, x.tolist()))
        return x, y


class Interrupted(Exception):
    pass


def stop_at(step: int):
    def callback(record, model):
        if record["step"] == step:
            raise Interrupted
    return callback


def losses(history: list[dict], key: str) -> list[float]:
    return [record[key] for record in history if key in record]


# ---- the program each of the two processes runs ---------------------------------------------------

def two_process_program(out: Path) -> None:
    saves = []
    save_checkpoint = train_module.save_checkpoint

    def recorded_save(folder, model, **options):  # who writes which checkpoint
        saves.append([Path(folder).name, options["step"]])
        return save_checkpoint(folder, model, **options)

    train_module.save_checkpoint = recorded_save
    with distributed("cpu") as (process, device):
        config = config_for(process.world_size)
        with main_process_first(process):
            order = [process.rank]
        batches = RecordedBatches(out, config)
        model = tiny_gpt()
        history = train(model, batches, config, out / "two", process=process)
        traffic = {"bytes": process.traffic.bytes, "buckets": process.traffic.buckets}
        try:
            train(tiny_gpt(), RecordedBatches(out, config), config, out / "two-cut", process=process,
                  callbacks=[stop_at(CUT + 1)])
        except Interrupted:
            pass
        resumed = train(tiny_gpt(seed=7), RecordedBatches(out, config), config, out / "one-cut-on-two",
                        resume=True, process=process)
        sharded = shard_model(tiny_gpt())
        local_share = sum(p.to_local().numel() for p in sharded.parameters()) / sum(p.numel() for p in sharded.parameters())
        fsdp_history = train(sharded, RecordedBatches(out, config), config, process=process)
        weights = full_weights(sharded)
        if process.is_main:
            safetensors.torch.save_file(weights, out / "fsdp.safetensors")
        with contextlib.redirect_stdout(io.StringIO()) as printed:  # `python -m minilm train` on each process
            train_here(build_parser().parse_args([*CLI_RUN, "--out", str(out / "cli")]), process, device)
    result = {"rank": process.rank, "world_size": process.world_size, "history": history, "saves": saves,
              "taken": batches.taken, "traffic": traffic, "resumed": resumed, "fsdp_history": fsdp_history,
              "fsdp_local_share": local_share, "order": order, "printed": printed.getvalue()}
    (out / f"rank{process.rank}.json").write_text(json.dumps(result))


def torchrun(script: Path, out: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Two CPU processes under torchrun on a free localhost port (--standalone), one thread each."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(out)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MINILM_THREADS": "1", "MINILM_DEVICE": "cpu",
                   "TQDM_DISABLE": "1", "MINILM_CACHE": str(out / "cache")}
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout)


# ---- the runs, once for the whole file -------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("distributed")
    write_streams(out)
    single = RecordedBatches(out, config_for(1))
    history = train(tiny_gpt(), single, config_for(1), out / "one")
    with pytest.raises(Interrupted):
        train(tiny_gpt(), RecordedBatches(out, config_for(1)), config_for(1), out / "one-cut-on-two",
              callbacks=[stop_at(CUT + 1)])
    launched = torchrun(Path(__file__), out)
    assert launched.returncode == 0, launched.stderr[-3000:]
    ranks = [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    return {"out": out, "history": history, "taken": single.taken, "ranks": ranks}


def test_two_processes_give_the_loss_curve_of_one_with_the_same_global_batch(runs):
    one, two = runs["history"], runs["ranks"][0]["history"]
    for key in ("train_loss", "val_loss", "grad_norm"):
        assert len(losses(two, key)) == len(losses(one, key)) > 0
        np.testing.assert_allclose(losses(two, key), losses(one, key), rtol=1e-5)
    assert losses(one, "train_loss")[-1] < losses(one, "train_loss")[0]  # it learned something
    for key in ("train_loss", "val_loss"):  # averaged over the processes: both log the same losses
        assert losses(runs["ranks"][1]["history"], key) == losses(two, key)
    assert [r["tokens"] for r in two] == [r["tokens"] for r in one]  # tokens count the global batch
    single, double = (load_checkpoint(runs["out"] / name).model for name in ("one", "two"))
    # Summing gradients in another order changes their last bits; AdamW divides each gradient by its
    # own running size, so a weight whose gradient is near zero can move by a few 1e-6 either way.
    for a, b in zip(single.parameters(), double.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_shards_do_not_overlap_and_together_are_the_single_process_batches(runs):
    taken = [rank["taken"] for rank in runs["ranks"]]
    indices = [{index for index, _ in rank} for rank in taken]
    assert not indices[0] & indices[1]
    assert indices[0] | indices[1] == {index for index, _ in runs["taken"]}
    windows = sorted(window for rank in taken for _, x in rank for window in x)
    assert windows == sorted(window for _, x in runs["taken"] for window in x)  # the very same tokens


def test_only_rank_0_writes_checkpoints_and_they_hold_the_unwrapped_model(runs):
    zero, one = runs["ranks"]
    assert one["saves"] == []
    assert zero["saves"] == [["two", CUT], ["two", STEPS], ["two-cut", CUT], ["one-cut-on-two", STEPS],
                             ["cli", 3]]
    files = runs["out"] / "two" / read_manifest(runs["out"] / "two")["files_in"]
    names = safetensors.torch.load_file(files / "model.safetensors").keys()
    assert set(names) <= set(tiny_gpt().state_dict())  # the model's own names, never DDP's "module.…"
    load_checkpoint(runs["out"] / "two")  # loads (strictly) into a plain GPT
    assert zero["order"] == [0] and one["order"] == [1]


def test_the_command_line_trains_on_every_process_torchrun_started(runs, monkeypatch, capsys):
    zero, one = runs["ranks"]
    assert one["printed"] == ""  # only rank 0 prints
    assert "on each of 2 processes (DDP)" in zero["printed"] and "DDP all-reduced" in zero["printed"]
    monkeypatch.setenv("MINILM_CACHE", str(runs["out"] / "cache"))
    assert main([*CLI_RUN, "--accumulation", "2", "--out", str(runs["out"] / "cli-alone")]) == 0
    two, alone = (load_checkpoint(runs["out"] / name).history for name in ("cli", "cli-alone"))
    np.testing.assert_allclose(losses(two, "train_loss"), losses(alone, "train_loss"), rtol=1e-5)


def test_ddp_all_reduces_every_gradient_once_a_step(runs):
    traffic = runs["ranks"][0]["traffic"]
    parameter_bytes = sum(p.numel() * p.element_size() for p in tiny_gpt().parameters())
    micro_batches = STEPS * config_for(2).accumulation
    assert traffic["bytes"] == micro_batches * parameter_bytes


def test_a_checkpoint_of_two_processes_resumes_on_one(runs):
    folder = runs["out"] / "two-cut-on-one"
    shutil.copytree(runs["out"] / "two-cut", folder)
    resumed = train(tiny_gpt(seed=7), RecordedBatches(runs["out"], config_for(1)), config_for(1), folder,
                    resume=True)
    for key in ("train_loss", "val_loss"):
        np.testing.assert_allclose(losses(resumed, key), losses(runs["history"], key), rtol=1e-5)


def test_a_checkpoint_of_one_process_resumes_on_two(runs):
    resumed = runs["ranks"][0]["resumed"]
    for key in ("train_loss", "val_loss"):
        np.testing.assert_allclose(losses(resumed, key), losses(runs["history"], key), rtol=1e-5)


def test_resuming_with_another_global_batch_is_refused(runs):
    folder = runs["out"] / "two-cut-refused"
    shutil.copytree(runs["out"] / "two-cut", folder)
    with pytest.raises(CheckpointError, match=r"accumulation × processes: 2 -> 1 × 1"):
        train(tiny_gpt(), RecordedBatches(runs["out"], config_for(2)), config_for(2), folder, resume=True)


def test_fsdp_holds_half_the_weights_on_each_process_and_trains_like_ddp(runs):
    zero, one = runs["ranks"]
    assert 0.4 < zero["fsdp_local_share"] < 0.6 and 0.4 < one["fsdp_local_share"] < 0.6
    np.testing.assert_allclose(losses(zero["fsdp_history"], "train_loss"), losses(zero["history"], "train_loss"),
                               rtol=1e-5)
    gathered = safetensors.torch.load_file(runs["out"] / "fsdp.safetensors")
    ddp = load_checkpoint(runs["out"] / "two").model.state_dict()
    for name, weight in ddp.items():  # reduce-scatter and all-reduce sum gradients in other orders, and Adam
        torch.testing.assert_close(gathered[name], weight, rtol=1e-4, atol=1e-5)  # magnifies that near 0


def ring_all_reduce(pieces: list[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
    """Simulate a ring all-reduce among W processes; return every process's result and bytes sent."""
    world = len(pieces)
    chunks = [np.array_split(piece.copy(), world) for piece in pieces]
    sent = [0] * world
    for phase in ("reduce-scatter", "all-gather"):
        for hop in range(world - 1):
            moves = []
            for rank in range(world):
                index = (rank - hop + (0 if phase == "reduce-scatter" else 1)) % world
                moves.append((rank, (rank + 1) % world, index, chunks[rank][index].copy()))
            for source, target, index, chunk in moves:
                sent[source] += chunk.nbytes
                chunks[target][index] = chunks[target][index] + chunk if phase == "reduce-scatter" else chunk
    return [np.concatenate(c) for c in chunks], sent


@pytest.mark.parametrize("world", [2, 3, 8])
def test_ring_all_reduce_sends_two_w_minus_one_over_w_of_the_payload(world):
    rng = np.random.default_rng(world)
    pieces = [rng.standard_normal(96) for _ in range(world)]
    results, sent = ring_all_reduce(pieces)
    for result in results:
        np.testing.assert_allclose(result, np.sum(pieces, axis=0))
    assert sent == [ring_all_reduce_bytes(pieces[0].nbytes, world)] * world


def test_alone_nothing_changes_and_a_half_set_environment_is_explained(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    process, device = start("cpu")
    assert process == Process() and device == torch.device("cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(DistributedError, match="LOCAL_RANK, MASTER_ADDR, MASTER_PORT are not.*torchrun"):
        start("cpu")


if __name__ == "__main__":
    two_process_program(Path(sys.argv[1]))
