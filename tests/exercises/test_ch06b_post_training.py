"""Chapter 6b exercises against independent references: DPO's loss and its gradient against −log σ(z)
and σ(−z) computed in float64 plain Python (exact at margins of ±1000), the group advantages against
a brute-force double loop, and LoRALinear against a float64 NumPy product and against minilm's own
minilm.posttrain.lora.LoRALinear given the same base, A and B."""
import copy
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from minilm.posttrain import lora as minilm_lora
from tests.exercises.harness import load_chapter

CHAPTER = "ch06b_post_training"
ex = load_chapter(CHAPTER)


LoRALinear = ex.LoRALinear


# DPO's loss ------------------------------------------------------------------------------------------

def neg_log_sigmoid(z):
    """−log σ(z) = log(1 + e^(−z)) in float64, never exponentiating a positive number."""
    return math.log1p(math.exp(-z)) if z >= 0 else -z + math.log1p(math.exp(z))


def sigmoid_of_minus(z):
    """σ(−z) = 1 / (1 + e^z) in float64, never exponentiating a positive number."""
    return math.exp(-z) / (1.0 + math.exp(-z)) if z >= 0 else 1.0 / (1.0 + math.exp(z))


def reference_dpo(pc, pr, rc, rr, beta):
    """The mean loss and d(loss)/d(policy_chosen) (n,), from the inputs' values in float64 Python."""
    z = [beta * ((a - c) - (b - d)) for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist())]
    n = len(z)
    return sum(map(neg_log_sigmoid, z)) / n, [-beta * sigmoid_of_minus(m) / n for m in z]


def log_probs(generator, n, dtype=torch.float64, scale=30.0):
    """n sequence log-probabilities: negative, spread over tens of nats."""
    return -torch.rand(n, generator=generator, dtype=dtype) * scale


def dpo_with_gradient(pc, pr, rc, rr, beta):
    pc = pc.clone().requires_grad_()
    loss = ex.dpo_loss(pc, pr, rc, rr, beta)
    assert torch.is_tensor(loss) and loss.dim() == 0, "return the mean loss as a 0-dim tensor"
    loss.backward()
    return loss, pc.grad


@pytest.mark.parametrize("seed,n,beta", [(0, 1, 0.1), (1, 7, 0.1), (2, 64, 0.5), (3, 33, 2.0), (4, 16, 0.01)])
def test_dpo_loss_and_its_gradient_match_a_float64_computation(seed, n, beta):
    g = torch.Generator().manual_seed(seed)
    pc, pr, rc, rr = (log_probs(g, n) for _ in range(4))
    loss, grad = dpo_with_gradient(pc, pr, rc, rr, beta)
    expected_loss, expected_grad = reference_dpo(pc, pr, rc, rr, beta)
    assert loss.item() == pytest.approx(expected_loss, rel=1e-12, abs=1e-14)
    np.testing.assert_allclose(grad.numpy(), expected_grad, rtol=1e-10, atol=1e-16,
                               err_msg="d(loss)/d(policy_chosen) should be −β·σ(−z)/n")


def test_a_pair_the_policy_has_not_moved_costs_log_2():
    g = torch.Generator().manual_seed(5)
    chosen, rejected = log_probs(g, 10), log_probs(g, 10)
    for beta in (0.1, 1.0, 5.0):
        loss, grad = dpo_with_gradient(chosen, rejected, chosen, rejected, beta)  # policy = reference
        assert loss.item() == pytest.approx(math.log(2), abs=1e-12), "z = 0: −log σ(0) = log 2"
        torch.testing.assert_close(grad, torch.full((10,), -beta / 2 / 10, dtype=torch.float64), atol=1e-15, rtol=0)


def test_dpo_loss_depends_on_the_reference_and_the_rejected_answer():
    g = torch.Generator().manual_seed(6)
    pc, pr, rc, rr = (log_probs(g, 12) for _ in range(4))
    for args in [(pc, pr, rr, rc), (pc, rr, rc, pr), (pr, pc, rc, rr)]:  # each argument in its own place
        assert ex.dpo_loss(*args, 0.3).item() == pytest.approx(reference_dpo(*args, 0.3)[0], rel=1e-12)


@pytest.mark.parametrize("dtype,margins", [
    (torch.float32, [-200.0, -120.0, -50.0, -1.0, 0.0, 1.0, 50.0, 120.0, 200.0]),  # σ(−200) is 0 in float32
    (torch.float64, [-1000.0, -800.0, -40.0, 0.0, 40.0, 800.0, 1000.0]),  # σ(−800) is 0 in float64
])
def test_dpo_loss_is_stable_at_large_margins(dtype, margins):
    """A naive torch.log(torch.sigmoid(z)) gives −inf and NaN gradients here; −log σ(z) is then ≈ −z."""
    beta = 0.1
    n = len(margins)
    g = torch.Generator().manual_seed(7)
    rc, rr, pr = (log_probs(g, n, torch.float64, scale=5.0) for _ in range(3))
    pc = pr - rr + rc + torch.tensor(margins, dtype=torch.float64) / beta  # z_i = margins[i]
    pc, pr, rc, rr = (t.to(dtype) for t in (pc, pr, rc, rr))
    loss, grad = dpo_with_gradient(pc, pr, rc, rr, beta)
    expected_loss, expected_grad = reference_dpo(pc, pr, rc, rr, beta)  # from the values actually passed
    assert math.isfinite(loss.item()), f"the loss at margins {margins[0]}..{margins[-1]} must be finite"
    assert torch.isfinite(grad).all(), "the gradient must be finite (a NaN here means log(sigmoid()))"
    rel = 1e-5 if dtype == torch.float32 else 1e-12
    assert loss.item() == pytest.approx(expected_loss, rel=rel)
    np.testing.assert_allclose(grad.double().numpy(), expected_grad, rtol=rel, atol=rel * beta / n)


def test_dpo_loss_rejects_mismatched_log_probabilities():
    a, b = torch.zeros(3), torch.zeros(4)
    with pytest.raises(ValueError):
        ex.dpo_loss(a, a, a, b, 0.1)
    with pytest.raises(ValueError):
        ex.dpo_loss(*(torch.zeros(2, 3),) * 4, 0.1)


# Group advantages ------------------------------------------------------------------------------------

def brute_advantages(rewards):
    rows = rewards.tolist()
    out = []
    for row in rows:
        mean = math.fsum(row) / len(row)
        out.append([r - mean for r in row])
    return out


def test_group_advantages_match_a_brute_force_double_loop():
    rng = random.Random(8)
    for _ in range(50):
        questions, group = rng.randint(1, 9), rng.randint(1, 12)
        rewards = torch.tensor([[rng.random() for _ in range(group)] for _ in range(questions)], dtype=torch.float64)
        before = rewards.clone()
        advantages = ex.group_advantages(rewards)
        assert advantages.shape == (questions, group)
        np.testing.assert_allclose(advantages.numpy(), brute_advantages(rewards), rtol=0, atol=1e-12)
        np.testing.assert_allclose(advantages.sum(dim=1).numpy(), np.zeros(questions), atol=1e-12,
                                   err_msg="each group's advantages sum to zero")
        torch.testing.assert_close(rewards, before, atol=0, rtol=0, msg="leave the caller's rewards unchanged")


def test_a_group_that_all_scores_the_same_teaches_nothing():
    rewards = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    advantages = ex.group_advantages(rewards)
    assert torch.equal(advantages[:2], torch.zeros(2, 4)), "all right or all wrong: every advantage is zero"
    assert torch.equal(advantages[2], torch.tensor([0.5, -0.5, 0.5, -0.5]))
    assert torch.equal(advantages[3], torch.tensor([0.75, -0.25, -0.25, -0.25]))
    same = torch.full((3, 8), 0.3, dtype=torch.float64)
    np.testing.assert_allclose(ex.group_advantages(same).numpy(), np.zeros((3, 8)), atol=1e-15)
    assert torch.equal(ex.group_advantages(torch.tensor([[0.7], [0.2]])), torch.zeros(2, 1)), \
        "a group of one answer has nothing to compare with"


def test_group_advantages_need_a_table_of_rewards():
    with pytest.raises(ValueError):
        ex.group_advantages(torch.tensor([1.0, 0.0, 1.0]))


# LoRA ------------------------------------------------------------------------------------------------

def make_base(seed, n_in=6, n_out=5, bias=True):
    torch.manual_seed(seed)
    return nn.Linear(n_in, n_out, bias=bias)


def inputs(seed, *leading, n_in=6, dtype=torch.float32):
    return torch.randn(*leading, n_in, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("rank,alpha,bias", [(1, 1.0, True), (2, 8.0, True), (4, 16.0, False)])
def test_lora_starts_exactly_as_its_base(rank, alpha, bias):
    base = make_base(10, bias=bias)
    layer = LoRALinear(base, rank, alpha)
    assert tuple(layer.A.shape) == (rank, 6) and tuple(layer.B.shape) == (5, rank), "A is (rank, in), B (out, rank)"
    assert isinstance(layer.A, nn.Parameter) and isinstance(layer.B, nn.Parameter)
    assert torch.equal(layer.B, torch.zeros(5, rank)), "B starts at zero"
    assert layer.A.abs().sum() > 0 and layer.A.std() > 0, "A starts random (B = 0 makes the change zero anyway)"
    x = inputs(11, 3, 4)  # (batch, time, in)
    out = layer(x)
    assert out.shape == (3, 4, 5)
    assert torch.equal(out, base(x)), "with B = 0 the output is exactly the base's"


def test_only_the_adapter_is_trained():
    rank, n_in, n_out = 3, 6, 5
    base = make_base(12)
    layer = LoRALinear(base, rank, 4.0)
    trainable = {name: p for name, p in layer.named_parameters() if p.requires_grad}
    assert set(trainable) == {"A", "B"}, f"only A and B are trained, not {sorted(trainable)}"
    assert sum(p.numel() for p in trainable.values()) == rank * (n_in + n_out)
    assert not base.weight.requires_grad and not base.bias.requires_grad, "freeze the base's weight and bias"
    layer(inputs(13, 8)).square().sum().backward()
    assert base.weight.grad is None and base.bias.grad is None
    assert layer.A.grad is not None and layer.B.grad is not None and layer.B.grad.abs().sum() > 0


@pytest.mark.parametrize("rank,alpha,bias", [(1, 2.0, True), (3, 8.0, True), (5, 5.0, False)])
def test_lora_matches_a_float64_computation(rank, alpha, bias):
    base = make_base(14, bias=bias)
    layer = LoRALinear(base, rank, alpha).double()
    rng = np.random.default_rng(15)
    a, b = rng.normal(size=(rank, 6)), rng.normal(size=(5, rank))
    with torch.no_grad():
        layer.A.copy_(torch.from_numpy(a))
        layer.B.copy_(torch.from_numpy(b))
    x = inputs(16, 2, 7, dtype=torch.float64).numpy()  # (batch, time, in)
    weight = base.weight.detach().double().numpy()
    middle = np.einsum("bti,ri->btr", x, a)  # (batch, time, rank)
    expected = np.einsum("bti,oi->bto", x, weight) + (alpha / rank) * np.einsum("btr,or->bto", middle, b)
    if bias:
        expected = expected + base.bias.detach().double().numpy()
    out = layer(torch.from_numpy(x))
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rank,alpha", [(1, 1.0), (4, 8.0)])
def test_lora_matches_minilms_lora_linear(rank, alpha):
    base = make_base(17)
    mine = LoRALinear(copy.deepcopy(base), rank, alpha)
    reference = minilm_lora.LoRALinear(copy.deepcopy(base), rank, alpha)
    g = torch.Generator().manual_seed(18)
    with torch.no_grad():
        mine.A.copy_(torch.randn(rank, 6, generator=g))
        mine.B.copy_(torch.randn(5, rank, generator=g))
        reference.A.copy_(mine.A)
        reference.B.copy_(mine.B)
    x = inputs(19, 4, 3)
    torch.testing.assert_close(mine(x), reference(x), atol=1e-5, rtol=1e-5)


def test_lora_rejects_a_rank_below_one():
    with pytest.raises(ValueError):
        LoRALinear(make_base(20), 0, 1.0)
