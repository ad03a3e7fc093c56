"""Chapter 6b exercises, solved: DPO's loss written stably, the group baseline of reinforcement from a
verifiable reward, and a low-rank adapter (LoRA).

Check them with `./course exercise ch06b_post_training`; chapter 6b's notebook explains each.
"""
import math

import torch
import torch.nn.functional as F
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
    shapes = [tuple(t.shape) for t in (policy_chosen, policy_rejected, reference_chosen, reference_rejected)]
    if len(set(shapes)) != 1 or len(shapes[0]) != 1 or shapes[0][0] == 0:
        raise ValueError(f"the four log-probabilities must be (pairs,) tensors of one non-zero length, got {shapes}.")
    margin = beta * ((policy_chosen - reference_chosen) - (policy_rejected - reference_rejected))  # (pairs,)
    return -F.logsigmoid(margin).mean()  # logsigmoid(z) = −softplus(−z): finite for any finite z


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
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (questions, group), got shape {tuple(rewards.shape)}.")
    return rewards - rewards.mean(dim=1, keepdim=True)  # (questions, group) - (questions, 1)


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
        if rank < 1:
            raise ValueError(f"a LoRA rank is a whole number of at least 1, got {rank}.")
        self.base = base
        for parameter in self.base.parameters():
            parameter.requires_grad_(False)
        self.scale = alpha / rank
        like = {"dtype": base.weight.dtype, "device": base.weight.device}
        self.A = nn.Parameter(torch.empty(rank, base.in_features, **like))  # (rank, in): reads the input
        self.B = nn.Parameter(torch.zeros(base.out_features, rank, **like))  # (out, rank): zero, no change at first
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * ((x @ self.A.T) @ self.B.T)  # (..., in) -> (..., rank) -> (..., out)
