"""Chapter 4: training a language model — the loop and every knob it has.

    from minilm.train import TrainConfig, TokenBatches, train
    config = TrainConfig(steps=300, batch_size=16, context_length=128, lr=3e-3)
    batches = TokenBatches(tokens.streams, config)             # chapter 1's token streams
    history = train(model, batches, config, out_dir="runs/stories")   # a list of dicts to plot

The objective is next-token cross-entropy: `model(x, y)` returns `(logits, loss)` where `y` is `x`
shifted by one token (or -100 where no loss is taken: chapter 6 masks prompts that way).
One optimizer step does:

    for each of `accumulation` micro-batches:  loss = model(x, y)[1];  (loss / accumulation).backward()
    clip the gradients to global norm `grad_clip`
    set the learning rate from the schedule: linear warm-up, then cosine decay to `min_lr`
    AdamW step (weight decay on weight matrices only), then zero the gradients

`batches` is anything that hands out batches by number: a function `get_batch(split, index)` or an
object with that method. The same index always gives the same batch, so a run resumed from a
checkpoint sees exactly the data the uninterrupted run would have seen.

Training with several processes (DDP, minilm.distributed) changes only what `Process` decides:
which batches a process draws, the model it runs forward through (the DDP wrapper, which averages
gradients), that losses are averaged over processes before they are logged, and that only the main
process prints and writes checkpoints.

The course's own model, the one chapters 5 and 6 start from, and its recipe per preset live in
`minilm.course_model`.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch

from minilm.checkpoint import (CheckpointError, TrainingState, check_writable, has_checkpoint,
                               restore_training_state, save_checkpoint, tokenizer_digest)
from minilm.progress import progress_bar

BatchFn = Callable[[str, int], "tuple[torch.Tensor, torch.Tensor]"]
Callback = Callable[[dict, torch.nn.Module], None]

# Settings that may change when a run is resumed: they decide what is measured and saved, never
# which numbers the training itself computes.
RESUMABLE_CHANGES = ("eval_every", "eval_batches", "checkpoint_every", "checkpoint_minutes", "compile")


@dataclass
class TrainConfig:
    steps: int = 300  # optimizer steps; each one sees batch_size * accumulation sequences
    batch_size: int = 16  # sequences per micro-batch: what fits in memory at once
    context_length: int = 128  # tokens per sequence (at most the model's context)
    accumulation: int = 1  # micro-batches summed into one step: effective batch = batch_size * accumulation
    lr: float = 3e-3  # the peak learning rate, reached at the end of warm-up
    min_lr: float = 3e-4  # the floor the cosine decays to (often lr / 10): late steps still learn a little
    warmup_steps: int = 20  # linear ramp up to lr: Adam's first moment estimates are noisy, big steps would hurt
    weight_decay: float = 0.1  # AdamW's pull of every weight matrix towards zero, per unit of lr
    beta1: float = 0.9  # Adam's averaging of gradients (momentum)
    beta2: float = 0.95  # Adam's averaging of squared gradients: 0.95 adapts faster than 0.999, steadier for LMs
    grad_clip: float = 1.0  # the largest global gradient norm allowed (0: no clipping)
    eval_every: int = 50  # measure the validation loss every this many steps, at the start and the end (0: never)
    eval_batches: int = 8  # validation batches per measurement: always the same ones, so curves compare
    checkpoint_every: int = 0  # also save a checkpoint every this many steps (0: by time only)
    checkpoint_minutes: float = 2.0  # save at least this often (0: never by time): a kill loses at most this much
    precision: str = "auto"  # "auto": bf16 autocast on CUDA, float32 elsewhere; or "bf16" / "fp32"
    compile: bool = False  # torch.compile the model: faster steps on a GPU after a slow first one
    seed: int = 0  # seeds dropout and which batches are drawn

    def __post_init__(self) -> None:
        problems = []
        for name in ("steps", "batch_size", "context_length", "accumulation"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} must be at least 1")
        if not 0 <= self.warmup_steps <= self.steps:
            problems.append(f"warmup_steps={self.warmup_steps} must lie between 0 and steps={self.steps}")
        if not 0 <= self.min_lr <= self.lr:
            problems.append(f"min_lr={self.min_lr} must lie between 0 and lr={self.lr}")
        if self.grad_clip < 0 or self.weight_decay < 0:
            problems.append("grad_clip and weight_decay cannot be negative (0 turns them off)")
        if self.checkpoint_every < 0 or not self.checkpoint_minutes >= 0:
            problems.append("checkpoint_every and checkpoint_minutes cannot be negative (0 turns them off)")
        if self.precision not in ("auto", "bf16", "fp32"):
            problems.append(f"precision={self.precision!r} must be 'auto', 'bf16' or 'fp32'")
        if problems:
            raise ValueError("TrainConfig: " + "; ".join(problems) + ".")

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.context_length * self.accumulation


@dataclass(frozen=True)
class Process:
    """Where this process stands among those training one model together (one, without DDP)."""

    rank: int = 0  # this process's number, 0 .. world_size - 1
    world_size: int = 1  # how many processes train the model together

    @property
    def is_main(self) -> bool:
        """Only the main process shows progress and writes checkpoints."""
        return self.rank == 0

    def batch_index(self, step: int, micro: int, accumulation: int) -> int:
        """The batch this process trains on: processes interleave, so no two draw the same batch."""
        return (step * accumulation + micro) * self.world_size + self.rank

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the forward and backward passes run through (DDP wraps the model here)."""
        return model

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """`value` averaged over the processes (alone: itself)."""
        return value


class NonFiniteLossError(FloatingPointError):
    """The loss (or the gradient norm) became NaN or infinite: training cannot continue."""


def learning_rate(step: int, config: TrainConfig) -> float:
    """The learning rate of optimizer step `step` (counted from 0).

    Warm-up: lr · (step + 1) / (warmup_steps + 1), a straight line that rises at every step and
    reaches lr at step warmup_steps, the first of the decay. Then a half cosine from lr down to
    min_lr over the remaining steps: min_lr + ½ (1 + cos(π · progress)) (lr − min_lr).
    """
    if step < config.warmup_steps:
        return config.lr * (step + 1) / (config.warmup_steps + 1)
    decay_steps = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / decay_steps)  # 0 → 1 over the decay
    return config.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (config.lr - config.min_lr)


def decay_split(model: torch.nn.Module) -> tuple[list[str], list[str]]:
    """Names of the parameters that get weight decay, and of those that do not.

    Decay pulls weights towards zero; that is a sensible prior for the matrices that mix features
    (attention and MLP projections), not for biases or the gains of LayerNorm/RMSNorm, whose neutral
    value is 0 or 1 and which have too few numbers to overfit. The rule is "matrices decay": 2-D and
    larger tensors do. Embedding tables are matrices too, so they decay, as in GPT-2: with weight
    tying the token table is also the output layer, a weight matrix by any reading.
    """
    decay, keep = [], []
    for name, parameter in model.named_parameters():  # tied weights appear once
        if parameter.requires_grad:
            (decay if parameter.dim() >= 2 else keep).append(name)
    return decay, keep


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with two parameter groups: weight matrices decay, biases and norm gains do not."""
    parameters = dict(model.named_parameters())
    decay, keep = decay_split(model)
    groups = [{"params": [parameters[n] for n in decay], "weight_decay": config.weight_decay},
              {"params": [parameters[n] for n in keep], "weight_decay": 0.0}]
    on_cuda = next(model.parameters()).device.type == "cuda"
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2),
                             fused=True if on_cuda else None)  # one fused kernel for the whole update on a GPU


def clip_grad_norm(parameters: Iterable[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale all gradients together so their global norm is at most `max_norm`; return the norm before.

    The global norm is √(Σ g²) over every entry of every gradient, as if they were one long vector.
    Scaling them all by the same factor keeps the step's direction and only shortens it, so one
    unlucky batch cannot throw the weights far away. `max_norm` 0 only measures.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    norms = torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])  # (number of tensors,)
    total = torch.linalg.vector_norm(norms)  # √(Σ over tensors of their squared norms)
    if max_norm > 0:
        scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)  # 1 when the norm is already small
        for grad in grads:
            grad.mul_(scale.to(grad.dtype))
    return total


def autocast_context(precision: str, device: torch.device):
    """bf16 autocast on CUDA ("auto" or "bf16"): matrix products in bfloat16, weights kept in float32.

    bfloat16 has float32's range (so, unlike float16, no loss scaling is needed) and half its bytes;
    tensor cores run it many times faster. On the CPU and MPS the course trains in float32.
    """
    if device.type == "cuda" and precision in ("auto", "bf16") and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def as_batch_function(batches) -> BatchFn:
    """Accept a function get_batch(split, index) or an object with a `get_batch` method."""
    get_batch = getattr(batches, "get_batch", batches)
    if not callable(get_batch):
        raise TypeError(f"train needs batches as a function get_batch(split, index) -> (x, y) or an "
                        f"object with such a method; got {type(batches).__name__}.")
    return get_batch


class TokenBatches:
    """Training batches from chapter 1's token streams, drawn by number.

    Batch `index` of a split comes from a random generator seeded with (seed, split, index), so it
    is the same batch every time it is asked for: no hidden position to lose when a run stops.
    """

    def __init__(self, streams, config: TrainConfig, device: torch.device | str | None = None):
        self.streams = streams  # split name -> TokenStream (chapter 1)
        self.batch_size = config.batch_size
        self.context_length = config.context_length
        self.seed = config.seed
        self.device = device

    @property
    def fingerprint(self) -> str | None:
        """Which token streams these are (their cache folder, keyed by corpus and tokenizer), if known:
        a checkpoint records it, so a run is never resumed on other data."""
        path = getattr(self.streams.get("train"), "path", None)
        return None if path is None else f"{Path(path).parent.name}/{Path(path).name}:{len(self.streams['train'])}"

    def get_batch(self, split: str, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        digest = hashlib.blake2b(f"{self.seed}/{split}/{index}".encode(), digest_size=8).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
        return self.streams[split].batch(self.batch_size, self.context_length, generator, self.device)


@torch.no_grad()
def estimate_loss(model: torch.nn.Module, get_batch: BatchFn, split: str, batches: int,
                  autocast=None, process: Process = Process()) -> float:
    """The mean loss over batches 0 .. batches-1 of `split`, in eval mode (no dropout)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    losses = []
    for index in range(batches):
        x, y = get_batch(split, process.batch_index(index, 0, 1))
        with autocast or contextlib.nullcontext():
            _, loss = model(x.to(device), y.to(device))
        losses.append(loss.float())
    model.train(was_training)
    return process.mean(torch.stack(losses).mean()).item()


def likely_cause(step: int, lr: float, recent_grad_norms: list[float], config: TrainConfig) -> str:
    """A guess, for the error message, at why the loss stopped being a number."""
    if step == 0:
        return ("it happened before any update, so the model or the data is broken: check the "
                "initialisation and that every target is a token id below the vocabulary size, or -100")
    limit = 10 * (config.grad_clip or 1.0)
    if recent_grad_norms and max(recent_grad_norms) > limit:
        return (f"the gradient norm was exploding (up to {max(recent_grad_norms):.3g}): the learning rate "
                f"{lr:.3g} is likely too high; lower lr, lengthen warmup_steps, or keep grad_clip on")
    return (f"the learning rate {lr:.3g} is likely too high for this model, or a weight became "
            f"NaN: lower lr or lengthen warmup_steps")


def optimizer_step(model, forward, optimizer, get_batch: BatchFn, step: int, lr: float, config: TrainConfig,
                   process: Process, autocast, recent_grad_norms: list[float]) -> dict:
    """One optimizer step at learning rate `lr` over `accumulation` micro-batches; returns its
    loss, lr and gradient norm."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device)
    for micro in range(config.accumulation):
        x, y = get_batch("train", process.batch_index(step, micro, config.accumulation))
        with autocast:
            _, loss = forward(x.to(device), y.to(device))  # mean cross-entropy over the micro-batch
        (loss / config.accumulation).backward()  # gradients add up over micro-batches
        loss_sum += loss.detach().float()
    loss_value = process.mean(loss_sum / config.accumulation).item()  # the global batch's loss
    grad_norm = clip_grad_norm(model.parameters(), config.grad_clip).item()
    if not (math.isfinite(loss_value) and math.isfinite(grad_norm)):
        what = "loss" if not math.isfinite(loss_value) else "gradient norm"
        value = loss_value if what == "loss" else grad_norm
        raise NonFiniteLossError(f"the {what} became {value} at step {step + 1} of {config.steps}; "
                                 f"{likely_cause(step, lr, recent_grad_norms, config)}.")
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"step": step + 1, "lr": lr, "train_loss": loss_value, "grad_norm": grad_norm}


def lr_range_test(model: torch.nn.Module, batches, config: TrainConfig, start: float = 1e-5, end: float = 1.0,
                  steps: int = 100) -> list[dict]:
    """Raise the learning rate exponentially from `start` to `end`, one step each; record the losses.

    The loss first barely moves (too small a rate), then falls fastest, then turns up and explodes.
    A good peak rate sits a little below where the fall is steepest. Stops once the loss exceeds
    four times its best, or stops being a number. Trains `model` in place: use a fresh copy.
    """
    get_batch = as_batch_function(batches)
    optimizer = make_optimizer(model, config)
    autocast = autocast_context(config.precision, next(model.parameters()).device)
    model.train()
    records: list[dict] = []
    for step in range(steps):
        lr = start * (end / start) ** (step / max(1, steps - 1))  # evenly spaced on a log scale
        try:
            record = optimizer_step(model, model, optimizer, get_batch, step, lr, config, Process(), autocast, [])
        except NonFiniteLossError:
            break
        records.append(record)
        if record["train_loss"] > 4 * min(r["train_loss"] for r in records):
            break
    model.eval()
    return records


def check_resumable(state: TrainingState, config: TrainConfig, run: dict, process: Process = Process()) -> None:
    """A run continues only under the settings and on the data it started with (a few harmless
    settings excepted).

    The number of processes may change if `accumulation` changes with it, so that each step still
    takes the same batches: the checkpoint's data position says how many a step took.
    """
    saved, current = state.train_config, asdict(config)
    changed = [f"{key}: {saved.get(key)!r} -> {current[key]!r}" for key in current
               if key not in RESUMABLE_CHANGES + ("accumulation",) and key in saved and saved[key] != current[key]]
    per_step = state.data_position // state.step if state.step else saved.get("accumulation")
    if config.accumulation * process.world_size != per_step:
        changed.append(f"accumulation × processes: {per_step} -> {config.accumulation} × {process.world_size}")
    if changed:
        raise CheckpointError("this checkpoint was trained with other settings (" + ", ".join(changed) +
                              "); resume with the same TrainConfig, or train into a new folder.")
    other_data = [f"{key}: {state.run[key]!r} -> {value!r}" for key, value in run.items()
                  if key in state.run and state.run[key] != value]
    if other_data:
        raise CheckpointError("this checkpoint was trained on other data (" + "; ".join(other_data) +
                              "); resume with the data and tokenizer it started with, or train into a new folder.")


class TrainingInterrupted(Exception):
    """Ctrl+C (SIGINT) or SIGTERM stopped training; the checkpoint in `out_dir` holds the last step."""

    def __init__(self, signal_number: int, step: int, steps: int, out_dir: Path):
        self.signal_number, self.step, self.out_dir = signal_number, step, out_dir
        name = "Ctrl+C" if signal_number == signal.SIGINT else signal.Signals(signal_number).name
        super().__init__(f"interrupted ({name}) after step {step} of {steps}; the checkpoint in {out_dir} holds "
                         f"it: run the same command with --resume (train(..., resume=True)) to continue.")


@contextlib.contextmanager
def stop_requests(enabled: bool):
    """While training, Ctrl+C or SIGTERM only asks the loop to stop: it finishes the step, saves and
    raises `TrainingInterrupted`. A second Ctrl+C stops at once (the last checkpoint stays whole).
    Yields a list that receives the signal numbers."""
    received: list[int] = []
    if not enabled or threading.current_thread() is not threading.main_thread():  # signals reach the main thread
        yield received
        return

    def ask_to_stop(signal_number, frame):
        if received and signal_number == signal.SIGINT:
            raise KeyboardInterrupt
        received.append(signal_number)

    previous = {number: signal.signal(number, ask_to_stop) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run_record(batches, tokenizer, run_info: dict | None) -> dict:
    """What a checkpoint records of the run's data: the caller's notes, the token streams, the tokenizer."""
    run = dict(run_info or {})
    fingerprint = getattr(batches, "fingerprint", None)
    if fingerprint is not None:
        run["tokens"] = fingerprint
    if tokenizer is not None:
        run["tokenizer"] = tokenizer_digest(tokenizer)
    return run


def train(model: torch.nn.Module, batches, config: TrainConfig, out_dir: str | Path | None = None, *,
          resume: bool = False, callbacks: Iterable[Callback] = (), process: Process = Process(),
          tokenizer=None, run_info: dict | None = None) -> list[dict]:
    """Train `model` in place and return its history: one dict per step, plus validation losses.

    Each step's dict holds step, lr, train_loss, grad_norm, tokens (seen so far), tokens_per_s and
    seconds; every `eval_every` steps (and at steps 0 and `config.steps`) it also holds val_loss.
    With `out_dir` a checkpoint (and `tokenizer`, if given) is saved there every `checkpoint_every`
    steps, at least every `checkpoint_minutes`, at the end, and when Ctrl+C or SIGTERM stops the run
    (which then raises `TrainingInterrupted`); `resume=True` continues the run saved in `out_dir`,
    refusing other settings or other data (`run_info`, the token streams, the tokenizer). Each
    callback is called as `callback(record, model)` after every step, before the checkpoint is saved
    (it may add to the record: samples, say). The model is left in eval mode.
    """
    get_batch = as_batch_function(batches)
    device = next(model.parameters()).device
    if out_dir is not None:
        out_dir = check_writable(out_dir) if process.is_main else Path(out_dir)  # before any work is done
    run = run_record(batches, tokenizer, run_info)
    optimizer = make_optimizer(model, config)
    history: list[dict] = []
    if resume:
        if out_dir is None or not has_checkpoint(out_dir):
            raise CheckpointError(f"resume=True but {out_dir} holds no checkpoint; train without resume first.")
        state = restore_training_state(out_dir, model, optimizer)
        check_resumable(state, config, run, process)
        history, start = state.history, state.step
    else:
        if out_dir is not None and has_checkpoint(out_dir):
            raise CheckpointError(f"{out_dir} already holds a checkpoint; pass resume=True (on the command "
                                  f"line: --resume) to continue it, or choose another out_dir.")
        torch.manual_seed(config.seed)  # dropout's randomness; the data has its own seeds
        start = 0
    forward = process.wrap(model)  # the model itself, or its DDP wrapper
    forward = torch.compile(forward) if config.compile else forward
    autocast = autocast_context(config.precision, device)
    model.train()

    def validate() -> float:
        return estimate_loss(forward, get_batch, "validation", config.eval_batches, autocast, process)

    def save(done: int) -> None:
        save_checkpoint(out_dir, model, optimizer=optimizer, train_config=asdict(config), step=done,
                        data_position=process.batch_index(done, 0, config.accumulation),
                        history=history, tokenizer=tokenizer, run=run)

    if start == 0 and config.eval_every:
        history.append({"step": 0, "tokens": 0, "val_loss": validate()})
    # Only the main process draws the bar; TQDM_DISABLE=1 silences it too, also as a notebook widget.
    bar = progress_bar(total=config.steps, initial=start, desc="training", enabled=process.is_main)
    tokens = history[-1].get("tokens", 0) if history else 0
    seconds = history[-1].get("seconds", 0.0) if history else 0.0
    last_save = time.monotonic()
    with stop_requests(enabled=out_dir is not None) as received:
        for step in range(start, config.steps):
            began = time.perf_counter()
            recent = [r["grad_norm"] for r in history[-20:] if "grad_norm" in r]
            record = optimizer_step(model, forward, optimizer, get_batch, step, learning_rate(step, config),
                                    config, process, autocast, recent)
            elapsed = time.perf_counter() - began
            tokens += config.tokens_per_step * process.world_size
            seconds += elapsed
            record.update(tokens=tokens, tokens_per_s=config.tokens_per_step * process.world_size / elapsed,
                          seconds=seconds)
            done = step + 1
            if config.eval_every and (done % config.eval_every == 0 or done == config.steps):
                record["val_loss"] = validate()
            history.append(record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['train_loss']:.3f}", tok_s=f"{record['tokens_per_s']:,.0f}")
            for callback in callbacks:  # before saving, so what a callback adds to the record is kept
                callback(record, model)
            # every process stops at the same step: a signal reaching one of them stops them all
            stopping = process.mean(torch.tensor(float(bool(received)), device=device)).item() > 0
            saving = (done == config.steps or stopping
                      or (config.checkpoint_every and done % config.checkpoint_every == 0)
                      or (config.checkpoint_minutes and time.monotonic() - last_save >= 60 * config.checkpoint_minutes))
            if out_dir is not None and saving:
                if process.is_main:
                    save(done)
                last_save = time.monotonic()
            if stopping and done < config.steps:
                bar.close()
                raise TrainingInterrupted(received[0] if received else signal.SIGTERM, done, config.steps, out_dir)
    bar.close()
    model.eval()
    return history
