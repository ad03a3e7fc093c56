"""Chapter 4 exercises, solved: the pieces of a training step, by hand, then the loop that joins them."""
from __future__ import annotations

import math

import torch

from minilm.train import TrainConfig


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """The mean next-token cross-entropy, in nats: −log softmax(logits)[target], averaged.

    logits: (N, V) scores; targets: (N,) token ids, where `ignore_index` marks a position that takes
    no loss (it is left out of the mean). Use logsumexp for a softmax that cannot overflow:
    −log p(t) = logsumexp(logits) − logits[t]. Returns a 0-dimensional tensor.
    """
    keep = targets != ignore_index  # (N,)
    logits, targets = logits[keep], targets[keep]  # (M, V), (M,)
    picked = logits.gather(1, targets.unsqueeze(1)).squeeze(1)  # (M,) the target's score
    return (torch.logsumexp(logits, dim=1) - picked).mean()


def warmup_cosine_lr(step: int, steps: int, warmup_steps: int, lr: float, min_lr: float) -> float:
    """The learning rate of step `step` (from 0) of `steps`: linear warm-up, then cosine to min_lr.

    During warm-up (step < warmup_steps): lr · (step + 1) / (warmup_steps + 1), so the rate
    rises at every step and reaches lr once, at step warmup_steps.
    After it: min_lr + ½ (1 + cos(π · progress)) (lr − min_lr), with
    progress = (step − warmup_steps) / (steps − warmup_steps), at most 1.
    """
    if step < warmup_steps:
        return lr * (step + 1) / (warmup_steps + 1)
    progress = min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps))
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (lr - min_lr)


def clip_by_global_norm(grads: list[torch.Tensor], max_norm: float) -> tuple[list[torch.Tensor], float]:
    """Scale every gradient by the same factor so their global norm is at most max_norm.

    The global norm is √(Σ g²) over every entry of every tensor. If it exceeds max_norm, multiply
    each gradient by max_norm / (norm + 1e-6); otherwise leave them as they are. Return the new
    gradients (new tensors, the inputs untouched) and the norm before clipping, as a float.
    """
    norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))
    scale = min(1.0, max_norm / (norm + 1e-6))
    return [g * scale for g in grads], norm


def adamw_step(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
               step: int, lr: float, beta1: float = 0.9, beta2: float = 0.95, eps: float = 1e-8,
               weight_decay: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One AdamW update of one tensor; `step` counts updates from 1. Return (param, exp_avg, exp_avg_sq).

    1. decay, decoupled from the gradient:  param ← param · (1 − lr · weight_decay)
    2. moments:  m ← β1 m + (1 − β1) g;   v ← β2 v + (1 − β2) g²
    3. bias correction (m and v start at 0):  m̂ = m / (1 − β1^step);   v̂ = v / (1 − β2^step)
    4. update:  param ← param − lr · m̂ / (√v̂ + eps)
    Return new tensors; leave the inputs unchanged.
    """
    param = param * (1 - lr * weight_decay)
    exp_avg = beta1 * exp_avg + (1 - beta1) * grad
    exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    corrected_avg = exp_avg / (1 - beta1 ** step)
    corrected_sq = exp_avg_sq / (1 - beta2 ** step)
    return param - lr * corrected_avg / (corrected_sq.sqrt() + eps), exp_avg, exp_avg_sq


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW's two parameter groups: weight matrices decay, biases and norm gains do not.

    A parameter with 2 or more dimensions goes into the first group, {"params": [...],
    "weight_decay": weight_decay}; every other one into the second, {"params": [...],
    "weight_decay": 0.0}. Keep the order of model.parameters() inside each group (a tied weight
    appears there once). Example: nn.Linear(3, 2) gives [{"params": [weight (2, 3)], ...},
    {"params": [bias (2,)], ...}]. Pass the result to torch.optim.AdamW(groups, ...).
    """
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    others = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": matrices, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]


def train_loop(model: torch.nn.Module, get_batch, config: TrainConfig) -> list[float]:
    """Train `model` in place for config.steps steps and return the training loss of every step.

    `model(x)` returns logits (batch, time, vocab); `get_batch("train", step)` returns (x, y), two
    (batch, time) tensors of token ids, with -100 in y where no loss is taken. Before the loop,
    torch.manual_seed(config.seed) (dropout draws from it) and model.train(); the optimizer is
    torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr,
    betas=(config.beta1, config.beta2)). Then at each step (from 0):

    1. x, y = get_batch("train", step); the loss is cross_entropy of the logits, flattened to
       (batch·time, vocab), against y flattened to (batch·time,); loss.backward()
    2. clip every gradient with clip_by_global_norm(..., config.grad_clip) (0: leave them)
    3. set every group's "lr" to warmup_cosine_lr(step, config.steps, config.warmup_steps,
       config.lr, config.min_lr); optimizer.step(); optimizer.zero_grad()
    4. keep loss.item()

    Use your own functions above. With the same seed, the same initial weights and accumulation 1,
    the losses equal minilm.train.train's "train_loss" history (up to float rounding). Example:
    config = TrainConfig(steps=3, warmup_steps=1, eval_every=0) gives a list of 3 floats, the
    first about ln(vocab) for a freshly initialised GPT.
    """
    optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr,
                                  betas=(config.beta1, config.beta2))
    parameters = list(model.parameters())
    torch.manual_seed(config.seed)  # dropout's randomness
    model.train()
    losses = []
    for step in range(config.steps):
        x, y = get_batch("train", step)  # (batch, time) each
        logits = model(x)  # (batch, time, vocab)
        loss = cross_entropy(logits.flatten(0, 1), y.flatten())
        loss.backward()
        if config.grad_clip > 0:
            clipped, _ = clip_by_global_norm([p.grad for p in parameters], config.grad_clip)
            for parameter, grad in zip(parameters, clipped):
                parameter.grad = grad
        lr = warmup_cosine_lr(step, config.steps, config.warmup_steps, config.lr, config.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses
