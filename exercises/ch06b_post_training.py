"""Chapter 6b exercises: the pieces of post-training, by hand: DPO's loss, the group baseline of
reinforcement from a verifiable reward, and a low-rank adapter (LoRA).

Write each function and the class below (replace `raise NotImplementedError`), then check your
answers with:

    ./course exercise ch06b_post_training

(or `pytest tests/exercises/test_ch06b_post_training.py --student`). The tests compare your DPO loss
and its gradient with a float64 computation of −log σ(z) that stays exact at margins of ±1000, your
advantages with a brute-force double loop, and your LoRALinear with a float64 matrix product and
with minilm.posttrain.lora.LoRALinear given the same weights. The solutions are in
solutions/ch06b_post_training.py; chapter 6b's notebook explains each idea.
"""
import math  # noqa: F401 (math.sqrt)

import torch
import torch.nn.functional as F  # noqa: F401 (F.logsigmoid, F.softplus)
from torch import nn


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
             reference_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO's loss, the mean over the pairs of −log σ(z), a 0-dim tensor that autograd can differentiate.

    Each argument holds one sequence log-probability per pair, (pairs,): log π(y⁺|x), log π(y⁻|x)
    under the policy and the same under the frozen reference. The margin of pair i is
    z_i = β · ((policy_chosen_i − reference_chosen_i) − (policy_rejected_i − reference_rejected_i)).
    Hint: σ(−200) is 0 in float32, so torch.log(torch.sigmoid(z)) gives −inf (and a NaN gradient);
    −log σ(z) = log(1 + e^(−z)) = softplus(−z), which F.logsigmoid and F.softplus compute stably.
    Raise ValueError if the four are not 1-D tensors of the same non-zero length.
    >>> dpo_loss(torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.0]), torch.tensor([-2.0]), 0.1)
    tensor(0.6931)
    """
    raise NotImplementedError


def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """Each reward minus the mean reward of its group: (questions, group) -> (questions, group).

    Row q holds the rewards of the G answers sampled for question q (GRPO's group baseline: no value
    network, the other answers to the same question are the baseline). A group whose answers all
    score the same gets advantages of zero: it teaches nothing.
    Hint: a mean over dim=1 with keepdim=True broadcasts back over the row.
    Raise ValueError if rewards is not 2-D.
    >>> group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]))
    tensor([[ 0.5000, -0.5000, -0.5000,  0.5000],
            [ 0.0000,  0.0000,  0.0000,  0.0000]])
    """
    raise NotImplementedError


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable change of rank r: y = base(x) + (α / r) · (x Aᵀ) Bᵀ.

    __init__(base, rank, alpha): keep `base` (an nn.Linear (in → out)) as a submodule and freeze
    its parameters (requires_grad_(False)); make two nn.Parameters, `A` of shape (rank, in), random
    (nn.init.kaiming_uniform_(self.A, a=math.sqrt(5)), as nn.Linear initialises, or randn / √in),
    and `B` of shape (out, rank), zeros, so that the layer starts exactly as base. Keep
    scale = alpha / rank. Only A and B are trained: rank · (in + out) numbers. Call
    super().__init__() first (as given); raise ValueError if rank < 1.
    forward(x): x (..., in) -> (..., out), base(x) + scale · ((x @ Aᵀ) @ Bᵀ): through the thin
    (..., rank) middle, never forming the (out, in) matrix B A.
    >>> layer = LoRALinear(nn.Linear(3, 2), rank=1, alpha=2.0)
    >>> layer.A.shape, layer.B.shape, [name for name, p in layer.named_parameters() if p.requires_grad]
    (torch.Size([1, 3]), torch.Size([2, 1]), ['A', 'B'])
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
