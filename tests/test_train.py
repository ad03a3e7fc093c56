"""The training loop's parts against PyTorch's own (schedulers, clipping, AdamW), and its behaviour:
gradient accumulation, resuming exactly, weight decay groups, stopping on a non-finite loss."""
import math
from dataclasses import asdict, replace

import pytest
import torch
from torch import nn

from minilm.checkpoint import CheckpointError
from minilm.model import GPT, GPTConfig, RMSNorm
from minilm.train import (NonFiniteLossError, Process, TrainConfig, clip_grad_norm, decay_split,
                          learning_rate, lr_range_test, make_optimizer, train)

VOCAB = 29


def tiny_gpt(family="gpt2", dropout=0.0, seed=0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=VOCAB, context_length=16, n_layer=2, n_head=2, n_embd=16,
                         family=family, dropout=dropout))


class FixedBatches:
    """Batch i is rows [i·size, (i+1)·size) of a fixed table: predictable, and splittable in halves."""

    def __init__(self, size: int, rows: int = 256, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        walk = torch.randint(0, VOCAB, (rows, 17), generator=generator)
        self.table = walk.cumsum(dim=1) % VOCAB  # a learnable pattern: each token adds to the last
        self.size = size

    def get_batch(self, split, index):
        offset = 128 if split == "validation" else 0
        rows = self.table[(offset + index * self.size) % len(self.table):][:self.size]
        return rows[:, :-1], rows[:, 1:]  # (size, 16) inputs and their next tokens


def small_config(**changes) -> TrainConfig:
    base = TrainConfig(steps=8, batch_size=4, context_length=16, lr=1e-2, min_lr=1e-3, warmup_steps=2,
                       eval_every=4, eval_batches=2)
    return replace(base, **changes)


@pytest.mark.parametrize("warmup,steps", [(0, 10), (3, 10), (10, 40), (7, 7)])
def test_learning_rate_matches_torch_schedulers(warmup, steps):
    config = TrainConfig(steps=steps, warmup_steps=warmup, lr=2e-3, min_lr=1e-4)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=config.lr)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps - warmup),
                                                        eta_min=config.min_lr)
    schedulers = [cosine]
    if warmup:
        # lr (s + 1) / (warmup + 1) for s < warmup: from 1/(warmup+1) to warmup/(warmup+1) of lr, then the peak
        ramp = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / (warmup + 1),
                                                 end_factor=warmup / (warmup + 1), total_iters=max(1, warmup - 1))
        schedulers = [torch.optim.lr_scheduler.SequentialLR(optimizer, [ramp, cosine], milestones=[warmup])]
    for step in range(steps):
        assert learning_rate(step, config) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9)
        optimizer.step()
        schedulers[0].step()


@pytest.mark.parametrize("warmup", [1, 2, 10])
def test_schedule_rises_strictly_to_lr_once_then_falls_towards_min_lr(warmup):
    config = TrainConfig(steps=100, warmup_steps=warmup, lr=1e-3, min_lr=1e-4)
    rates = [learning_rate(s, config) for s in range(config.steps)]
    assert rates[warmup] == config.lr and rates.count(config.lr) == 1  # the peak, at one step only
    assert all(a < b for a, b in zip(rates[:warmup], rates[1:warmup + 1]))  # every warm-up step rises
    assert all(a > b for a, b in zip(rates[warmup:], rates[warmup + 1:]))  # every later step falls
    assert config.min_lr < rates[-1] < config.min_lr * 1.01


@pytest.mark.parametrize("max_norm", [0.05, 1.0, 1e3, 0.0])
def test_clip_grad_norm_matches_torch(max_norm):
    generator = torch.Generator().manual_seed(3)
    ours = [nn.Parameter(torch.zeros(shape)) for shape in [(4, 5), (5,), (3, 2, 2)]]
    theirs = [nn.Parameter(torch.zeros(p.shape)) for p in ours]
    for mine, other in zip(ours, theirs):
        mine.grad = torch.randn(mine.shape, generator=generator, dtype=torch.float64).float()
        other.grad = mine.grad.clone()
    norm = clip_grad_norm(ours, max_norm)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm if max_norm else float("inf"))
    assert norm.item() == pytest.approx(expected.item(), rel=1e-6)
    for mine, other in zip(ours, theirs):
        torch.testing.assert_close(mine.grad, other.grad)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_weight_decay_goes_to_matrices_not_to_biases_or_norms(family):
    model = tiny_gpt(family)
    decay, keep = decay_split(model)
    names = {id(p): n for n, p in model.named_parameters()}
    for module in model.modules():
        for parameter in module.parameters(recurse=False):
            if isinstance(module, (nn.Linear, nn.Embedding)) and parameter is module.weight:
                assert names[id(parameter)] in decay
            elif isinstance(module, (nn.Linear, nn.LayerNorm, RMSNorm)):
                assert names[id(parameter)] in keep  # biases and norm gains
    assert sorted(decay + keep) == sorted(names.values()) and not set(decay) & set(keep)
    if family == "gpt2":  # the tied head is the embedding: one parameter, decayed once
        assert "head.weight" not in decay and "token_embedding.weight" in decay


def test_adamw_groups_shrink_matrices_only():
    model = tiny_gpt()
    config = small_config(weight_decay=0.5, lr=0.1)
    optimizer = make_optimizer(model, config)
    before = {n: p.detach().clone().double() for n, p in model.named_parameters()}
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)  # no gradient: only the decay moves a weight
    optimizer.step()
    decay, keep = decay_split(model)
    for name, parameter in model.named_parameters():
        factor = 1 - config.lr * config.weight_decay if name in decay else 1.0
        torch.testing.assert_close(parameter.detach().double(), before[name] * factor)


def test_accumulating_two_half_batches_equals_one_whole_batch():
    whole, halves = tiny_gpt(), tiny_gpt()
    train(whole, FixedBatches(8), small_config(batch_size=8, eval_every=0))
    train(halves, FixedBatches(4), small_config(batch_size=4, accumulation=2, eval_every=0))
    for a, b in zip(whole.parameters(), halves.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_overfits_a_single_batch():
    model = tiny_gpt()
    history = train(model, lambda split, index: FixedBatches(4).get_batch("train", 0),
                    small_config(steps=60, warmup_steps=5, lr=2e-2, eval_every=0))
    assert history[0]["train_loss"] == pytest.approx(math.log(VOCAB), rel=0.05)  # uniform guesses at the start
    assert history[-1]["train_loss"] < 0.3 * history[0]["train_loss"]


def test_history_records_steps_tokens_and_validation():
    config = small_config()
    history = train(tiny_gpt(), FixedBatches(4), config)
    assert [r["step"] for r in history] == list(range(config.steps + 1))
    assert [r["step"] for r in history if "val_loss" in r] == [0, 4, 8]
    assert [r["tokens"] for r in history] == [s * config.tokens_per_step for s in range(config.steps + 1)]
    assert all(r["tokens_per_s"] > 0 for r in history[1:])
    assert [r["lr"] for r in history[1:]] == [learning_rate(s, config) for s in range(config.steps)]


class Interrupted(Exception):
    pass


def stop_after(step):
    def callback(record, model):
        if record["step"] == step:
            raise Interrupted
    return callback


def test_resuming_continues_exactly_as_the_uninterrupted_run(tmp_path):
    config = small_config(steps=10, checkpoint_every=3)
    straight = tiny_gpt(dropout=0.1)  # dropout draws random numbers: their state must be restored too
    expected = train(straight, FixedBatches(4), config, tmp_path / "straight")
    first = tiny_gpt(dropout=0.1)
    with pytest.raises(Interrupted):
        train(first, FixedBatches(4), config, tmp_path / "cut", callbacks=[stop_after(7)])
    torch.manual_seed(1234)  # whatever happened in between is irrelevant
    resumed = tiny_gpt(dropout=0.1, seed=99)  # even other initial weights: the checkpoint replaces them
    history = train(resumed, FixedBatches(4), config, tmp_path / "cut", resume=True)
    assert [r.get("train_loss") for r in history] == [r.get("train_loss") for r in expected]
    assert [r.get("val_loss") for r in history] == [r.get("val_loss") for r in expected]
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_resume_refuses_other_settings_and_missing_checkpoints(tmp_path):
    config = small_config(steps=4)
    train(tiny_gpt(), FixedBatches(4), config, tmp_path)
    with pytest.raises(CheckpointError, match="lr: 0.01 -> 0.02"):
        train(tiny_gpt(), FixedBatches(4), replace(config, lr=0.02), tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="n_embd"):
        other = GPT(GPTConfig(vocab_size=VOCAB, context_length=16, n_layer=2, n_head=2, n_embd=32))
        train(other, FixedBatches(4), config, tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="already holds a checkpoint"):
        train(tiny_gpt(), FixedBatches(4), config, tmp_path)
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        train(tiny_gpt(), FixedBatches(4), config, tmp_path / "empty", resume=True)
    history = train(tiny_gpt(), FixedBatches(4), replace(config, eval_every=1), tmp_path, resume=True)
    assert history[-1]["step"] == config.steps  # already finished: evaluation settings may change


def test_resume_refuses_other_data_or_another_tokenizer(tmp_path):
    from minilm.tokenizer import BPETokenizer

    config = small_config(steps=4)
    tokenizer = BPETokenizer.train(["the cat sat on the mat"] * 3, vocab_size=262)
    train(tiny_gpt(), FixedBatches(4), config, tmp_path, tokenizer=tokenizer, run_info={"data": "stories"})
    with pytest.raises(CheckpointError, match="other data \\(data: 'stories' -> 'prose'\\)"):
        train(tiny_gpt(), FixedBatches(4), config, tmp_path, resume=True, tokenizer=tokenizer,
              run_info={"data": "prose"})
    other = BPETokenizer.train(["a dog ran in the park"] * 3, vocab_size=262)
    with pytest.raises(CheckpointError, match="other data \\(tokenizer: "):
        train(tiny_gpt(), FixedBatches(4), config, tmp_path, resume=True, tokenizer=other,
              run_info={"data": "stories"})
    history = train(tiny_gpt(), FixedBatches(4), config, tmp_path, resume=True, tokenizer=tokenizer,
                    run_info={"data": "stories"})
    assert history[-1]["step"] == config.steps


def test_a_bad_out_dir_is_found_before_the_first_step(tmp_path):
    steps = []
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(CheckpointError, match="is a file, not a folder"):
        train(tiny_gpt(), FixedBatches(4), small_config(), a_file, callbacks=[lambda record, model: steps.append(1)])
    assert steps == []


def test_checkpoints_are_saved_by_time_as_well(tmp_path, monkeypatch):
    from minilm import train as train_module

    clock = iter(range(0, 10_000, 70))  # every step takes 70 "seconds"
    monkeypatch.setattr(train_module.time, "monotonic", lambda: next(clock))
    saved = []
    real_save = train_module.save_checkpoint
    monkeypatch.setattr(train_module, "save_checkpoint", lambda *a, **k: saved.append(k["step"]) or real_save(*a, **k))
    train(tiny_gpt(), FixedBatches(4), small_config(steps=6, checkpoint_minutes=2.0), tmp_path)
    assert saved == [2, 4, 6]  # 140 s ≥ 2 minutes after each save, and at the end


def test_non_finite_loss_stops_with_the_step_and_a_likely_cause():
    def poison(record, model):
        if record["step"] == 2:
            with torch.no_grad():
                model.blocks[0].mlp.up.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"at step 3 of 8.*learning rate"):
        train(tiny_gpt(), FixedBatches(4), small_config(eval_every=0), callbacks=[poison])
    broken = tiny_gpt()
    with torch.no_grad():
        broken.token_embedding.weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteLossError, match=r"at step 1 of 8.*before any update"):
        train(broken, lambda split, index: (torch.zeros(2, 4, dtype=torch.long),) * 2, small_config(eval_every=0))


def test_processes_draw_disjoint_batches_that_cover_the_single_process_run():
    single = {Process().batch_index(s, m, 2) for s in range(5) for m in range(2)}
    ranks = [{Process(rank, 2).batch_index(s, m, 2) for s in range(5) for m in range(2)} for rank in (0, 1)]
    assert not ranks[0] & ranks[1]
    assert ranks[0] | ranks[1] == set(range(20)) and single == set(range(10))
    assert Process(0, 2).is_main and not Process(1, 2).is_main


@pytest.mark.parametrize("changes,message", [({"warmup_steps": 20, "steps": 10}, "warmup_steps=20"),
                                             ({"min_lr": 1.0}, "min_lr=1.0"),
                                             ({"accumulation": 0}, "accumulation=0"),
                                             ({"precision": "fp16"}, "precision='fp16'")])
def test_bad_settings_are_explained(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{**asdict(TrainConfig()), **changes})


def test_batches_must_be_a_function_or_have_get_batch():
    with pytest.raises(TypeError, match="get_batch"):
        train(tiny_gpt(), [1, 2, 3], small_config())


def test_lr_range_test_sweeps_upwards_and_stops_when_the_loss_explodes():
    records = lr_range_test(
        tiny_gpt(), FixedBatches(4), small_config(grad_clip=0.0), start=1e-4, end=1e3, steps=60)
    rates = [r["lr"] for r in records]
    assert rates[0] == pytest.approx(1e-4) and all(a < b for a, b in zip(rates, rates[1:]))
    assert len(records) < 60  # a learning rate of 1000 cannot train anything: it stopped early
    assert min(r["train_loss"] for r in records) < records[0]["train_loss"]  # somewhere in between, it learned
