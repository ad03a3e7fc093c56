"""Chapter 4 exercises against PyTorch's own (F.cross_entropy, LR schedulers, clip_grad_norm_, AdamW)
and against minilm's tested training loop (minilm.train.train, decay_split)."""
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minilm.model import GPT, GPTConfig
from minilm.train import TrainConfig, decay_split, train
from tests.exercises.harness import load_chapter

ex = load_chapter("ch04_training")


@pytest.mark.parametrize("vocab,ignored", [(7, 0), (50, 5), (3, 11)])
def test_cross_entropy_matches_torch(vocab, ignored):
    generator = torch.Generator().manual_seed(vocab)
    logits = 4 * torch.randn(12, vocab, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, vocab, (12,), generator=generator)
    targets[:ignored] = -100  # these positions take no loss
    expected = F.cross_entropy(logits, targets, ignore_index=-100)
    torch.testing.assert_close(ex.cross_entropy(logits, targets), expected)


def test_cross_entropy_does_not_overflow():
    logits = torch.tensor([[1000.0, 0.0, -1000.0]])
    assert torch.isfinite(ex.cross_entropy(logits, torch.tensor([1])))


@pytest.mark.parametrize("warmup,steps", [(0, 12), (4, 12), (10, 30)])
def test_warmup_cosine_lr_matches_torch_schedulers(warmup, steps):
    lr, min_lr = 1e-2, 1e-3
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps - warmup, eta_min=min_lr)
    scheduler = cosine
    if warmup:
        ramp = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / (warmup + 1),
                                                 end_factor=warmup / (warmup + 1), total_iters=warmup - 1)
        scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [ramp, cosine], milestones=[warmup])
    for step in range(steps):
        assert ex.warmup_cosine_lr(step, steps, warmup, lr, min_lr) == pytest.approx(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("max_norm", [0.1, 2.0, 100.0])
def test_clip_by_global_norm_matches_torch(max_norm):
    generator = torch.Generator().manual_seed(1)
    grads = [torch.randn(shape, generator=generator, dtype=torch.float64) for shape in [(3, 4), (5,), (2, 2, 2)]]
    originals = [g.clone() for g in grads]
    parameters = [nn.Parameter(torch.zeros_like(g)) for g in grads]
    for parameter, grad in zip(parameters, grads):
        parameter.grad = grad.clone()
    expected_norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    clipped, norm = ex.clip_by_global_norm(grads, max_norm)
    assert norm == pytest.approx(expected_norm.item())
    for mine, parameter, grad, original in zip(clipped, parameters, grads, originals):
        torch.testing.assert_close(mine, parameter.grad)
        assert torch.equal(grad, original)  # the inputs are left as they were


def test_adamw_step_matches_torch_over_several_steps():
    generator = torch.Generator().manual_seed(2)
    start = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    reference = nn.Parameter(start.clone())
    settings = dict(lr=0.05, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    optimizer = torch.optim.AdamW([reference], **settings)
    param, exp_avg, exp_avg_sq = start.clone(), torch.zeros_like(start), torch.zeros_like(start)
    for step in range(1, 6):
        grad = torch.randn(4, 3, generator=generator, dtype=torch.float64)
        reference.grad = grad.clone()
        optimizer.step()
        param, exp_avg, exp_avg_sq = ex.adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr=0.05,
                                                   beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1)
        torch.testing.assert_close(param, reference.detach())
        torch.testing.assert_close(exp_avg, optimizer.state[reference]["exp_avg"])
        torch.testing.assert_close(exp_avg_sq, optimizer.state[reference]["exp_avg_sq"])


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_parameter_groups_split_like_minilm(family):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, context_length=8, n_layer=2, n_head=2, n_embd=8, family=family))
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    groups = ex.parameter_groups(model, 0.3)
    decay, keep = decay_split(model)
    assert [names[id(p)] for p in groups[0]["params"]] == decay
    assert [names[id(p)] for p in groups[1]["params"]] == keep
    assert (groups[0]["weight_decay"], groups[1]["weight_decay"]) == (0.3, 0.0)


VOCAB, TIME, BATCH = 32, 16, 4
LOOP_CONFIG = TrainConfig(steps=15, batch_size=BATCH, context_length=TIME, lr=2e-2, min_lr=2e-3, warmup_steps=5,
                          grad_clip=0.3, eval_every=0, checkpoint_minutes=0, seed=3)


class LogitsOnly(nn.Module):
    """minilm's GPT as the exercise sees a model: forward(x) returns the logits alone."""

    def __init__(self, gpt: GPT):
        super().__init__()
        self.gpt = gpt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gpt(x)[0]  # (batch, time, vocab)


def counting_batch(split: str, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch `index`: sequences (start + stride·t) mod VOCAB, the same every time; a few targets are -100."""
    generator = torch.Generator().manual_seed(1000 * (split != "train") + index)
    start = torch.randint(0, VOCAB, (BATCH, 1), generator=generator)
    stride = torch.randint(1, 4, (BATCH, 1), generator=generator)
    sequence = (start + stride * torch.arange(TIME + 1)) % VOCAB  # (batch, time + 1)
    x, y = sequence[:, :-1], sequence[:, 1:].clone()
    y[0, :3] = -100  # positions that take no loss
    return x, y


def initial_gpt() -> GPT:
    torch.manual_seed(7)
    return GPT(GPTConfig(vocab_size=VOCAB, context_length=TIME, n_layer=2, n_head=2, n_embd=16, dropout=0.1))


def minilm_history(config: TrainConfig, gpt: GPT | None = None) -> list[dict]:
    return train(gpt or initial_gpt(), counting_batch, config)


def same_losses(mine: list[float], expected: list[float]) -> bool:
    return len(mine) == len(expected) and max(abs(a - b) for a, b in zip(mine, expected)) < 1e-3


def test_train_loop_gives_the_losses_and_weights_of_minilm_train():
    reference, learner = initial_gpt(), initial_gpt()
    expected = [r["train_loss"] for r in minilm_history(LOOP_CONFIG, reference)]
    losses = ex.train_loop(LogitsOnly(learner), counting_batch, LOOP_CONFIG)
    assert all(isinstance(loss, float) for loss in losses)
    assert same_losses(losses, expected), f"your losses {losses}\nminilm.train.train's {expected}"
    assert any(not torch.equal(a, b) for a, b in zip(learner.parameters(), initial_gpt().parameters())), \
        "train_loop should train the model it is given, in place"


@pytest.mark.parametrize("missing", [dict(grad_clip=0.0), dict(warmup_steps=0), dict(seed=4)],
                         ids=["no clipping", "no warm-up", "dropout not seeded with config.seed"])
def test_a_loop_missing_a_piece_does_not_pass(missing):
    expected = minilm_history(LOOP_CONFIG)
    assert sum(r["grad_norm"] > LOOP_CONFIG.grad_clip for r in expected) > LOOP_CONFIG.steps // 2  # clipping acts
    broken = [r["train_loss"] for r in minilm_history(replace(LOOP_CONFIG, **missing))]
    assert not same_losses(broken, [r["train_loss"] for r in expected])
