"""Chapter 4 exercises against PyTorch's own: F.cross_entropy, LR schedulers, clip_grad_norm_, AdamW."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

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
