"""Low-rank adapters (LoRA): fine-tune a few thousand numbers instead of every weight.

Full fine-tuning changes every weight matrix W (out × in). LoRA freezes W and learns a change of
rank r instead, written as two thin matrices:

    y = W x + (α / r) · B (A x)        A: (r, in), random        B: (out, r), zeros

B starts at zero, so the adapted model starts exactly where the pretrained one is. Only A and B
are trained: r · (in + out) numbers per matrix instead of in · out, and AdamW keeps two moments for
each trained number only, so the optimizer's memory shrinks by the same factor. After training the
change can be folded into the weight, W' = W + (α / r) · B A, and the merged model runs as fast as
the original (`merge_lora`).

    adapted = add_lora(model, LoRAConfig(rank=4))     # a copy; only the adapters are trainable
    tuned = finetune(adapted, tokenizer, train, validation)   # chapter 6's fine-tuning, unchanged
    merged = merge_lora(tuned.model)                  # plain nn.Linear layers again, same logits

`LoRAConfig.targets` names the linear layers that get adapters, by the last part of their name in
`minilm.model.GPT`: attention's `qkv` and `out`, the MLP's `up`, `gate` and `out`.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank change (α / r) · B A."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        if rank < 1:
            raise ValueError(f"a LoRA rank is a whole number of at least 1, got {rank}.")
        self.base = base
        for parameter in self.base.parameters():
            parameter.requires_grad_(False)
        self.rank = rank
        self.scale = alpha / rank  # so that changing r does not change the size of the update
        like = {"device": base.weight.device, "dtype": base.weight.dtype}  # where and in what the base lives
        self.A = nn.Parameter(torch.empty(rank, base.in_features, **like))  # (r, in): reads the input
        self.B = nn.Parameter(torch.zeros(base.out_features, rank, **like))  # (out, r): zero, so nothing changes at first
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))  # nn.Linear's own initialisation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low_rank = (x @ self.A.T) @ self.B.T  # (..., in) -> (..., r) -> (..., out)
        return self.base(x) + self.scale * low_rank

    def delta_weight(self) -> torch.Tensor:
        """The change this adapter makes to the weight: (α / r) · B A, shape (out, in)."""
        return self.scale * self.B @ self.A

    def merged(self) -> nn.Linear:
        """A plain nn.Linear whose weight is W + (α / r) · B A: the same outputs, no extra matmuls."""
        linear = copy.deepcopy(self.base)
        with torch.no_grad():
            linear.weight += self.delta_weight()
        return linear


@dataclass(frozen=True)
class LoRAConfig:
    """Which layers get adapters, and how big the adapters are."""

    rank: int = 4  # r: the rank of the change; more can express more, and costs r · (in + out) per matrix
    alpha: float = 8.0  # the update is scaled by alpha / rank (the LoRA paper's α)
    targets: tuple[str, ...] = ("qkv", "out", "up", "gate")  # last name part of the linear layers to adapt


def _adaptable(model: nn.Module, targets: tuple[str, ...]) -> list[str]:
    """Names of the nn.Linear layers inside the blocks whose last name part is in `targets`."""
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and name.startswith("blocks.") and name.rsplit(".", 1)[-1] in targets]


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, module)


def add_lora(model: nn.Module, config: LoRAConfig = LoRAConfig()) -> nn.Module:
    """A copy of `model` with every target linear layer wrapped in a LoRALinear; all else frozen.

    The output head and the embeddings stay frozen too: only the adapters' A and B are trainable.
    """
    if isinstance(config.targets, str):
        raise ValueError(f"targets is a tuple of layer names, e.g. ({config.targets!r},), not a string.")
    names = _adaptable(model, config.targets)
    if not names:
        raise ValueError(f"no linear layer of the model is called any of {', '.join(config.targets)}; "
                         f"minilm's GPT has qkv, out, up and gate (swiglu models).")
    adapted = copy.deepcopy(model)
    for parameter in adapted.parameters():
        parameter.requires_grad_(False)
    for name in names:
        _set_module(adapted, name, LoRALinear(adapted.get_submodule(name), config.rank, config.alpha))
    return adapted


def merge_lora(model: nn.Module) -> nn.Module:
    """A copy of an adapted model with every LoRALinear folded back into a plain nn.Linear."""
    merged = copy.deepcopy(model)
    names = [name for name, module in merged.named_modules() if isinstance(module, LoRALinear)]
    for name in names:
        _set_module(merged, name, merged.get_submodule(name).merged())
    for parameter in merged.parameters():
        parameter.requires_grad_(True)
    return merged


def trainable_parameters(model: nn.Module) -> int:
    """How many numbers an optimizer would change: the parameters that require a gradient."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """The bytes an optimizer holds besides the weights (AdamW: two moments per trained number)."""
    return sum(value.numel() * value.element_size() for state in optimizer.state.values()
               for value in state.values() if torch.is_tensor(value) and value.dim() > 0)
