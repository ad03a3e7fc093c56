"""Continuous batching: many requests decoded together, each with its own length, settings and stop.

A server that answers one request at a time leaves the model idle between users' tokens: one
decoding step for one row costs nearly what a step for sixteen rows costs (the weights are read
once either way). Here a background thread runs the model in a loop; at every step it

    admits   waiting requests into free slots of one shared KV cache (each prompt is read alone: prefill)
    decodes  one token for every active request at once: a batch of (slots, 1), each row at its own position
    leaves   finished requests (a stop token, max_new_tokens, the time limit, a client that went away)

    engine = BatchingEngine(model, BatchingConfig(max_batch=16))
    job = engine.submit(Job(prompt_ids, max_new_tokens=32, temperature=0.8, seed=1, stop_ids=[end]))
    for token in engine.tokens(job): ...        # as soon as each is chosen; job.finish_reason after
    engine.close()

Each request samples with its own seeded generator, so a request alone in the batch writes exactly
what `minilm.generate` writes for it. Rows of different lengths need two things the plain KV cache
does not give: a position per row (the model's positions take a tensor of starts) and a mask that
hides the slots' unused cache entries (`SlotCache.attention_mask`). With other rows beside it, a
row's logits can differ from its solo run in the last bits of float32 rounding (the matrix products
are blocked differently), so a near-tie may rarely go the other way; in float64 they agree.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import torch

from minilm.generate import _check_settings, next_token


class QueueFull(RuntimeError):
    """Every slot is busy and the waiting line is full: the caller should answer 503 and retry later."""


@dataclass
class BatchingConfig:
    max_batch: int = 16  # requests decoded together (slots in the cache); 1 serves one request at a time
    max_waiting: int = 64  # requests that may wait for a slot (at least 1); one more is refused (QueueFull)
    max_seconds: float = 60.0  # a request's time limit, from submission: then it ends with "time_limit"


@dataclass
class Job:
    """One request: its prompt, settings, and the tokens the engine writes for it (read with engine.tokens)."""

    prompt_ids: list[int]
    max_new_tokens: int
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    stop_ids: list[int] = field(default_factory=list)  # a stop token ends the text (it is not passed on)
    finish_reason: str | None = None  # "stop", "length", "time_limit", "cancelled" once done
    written: int = 0  # tokens written, stop token excluded
    events: queue.Queue = field(default_factory=queue.Queue)  # token ids, then None at the end
    cancelled: threading.Event = field(default_factory=threading.Event)  # set when the client went away
    submitted: float = field(default_factory=time.monotonic)


class SlotCache:
    """A KV cache of `slots` rows, each holding its own number of tokens.

    The engine chooses which rows a forward pass uses (`use(rows)`); `length` is then one count per
    row, so the model places each new token at its own position, and `attention_mask` lets each
    query see only its own row's tokens (earlier ones and itself), never a slot's stale entries.
    """

    def __init__(self, model, slots: int):
        c, weight = model.config, model.token_embedding.weight
        shape = (c.n_layer, slots, c.kv_heads, c.context_length, c.head_dim)
        self.keys = torch.zeros(shape, device=weight.device, dtype=weight.dtype)  # (layer, slot, kv_heads, context, head_dim)
        self.values = torch.zeros(shape, device=weight.device, dtype=weight.dtype)
        self.lengths = torch.zeros(slots, dtype=torch.long, device=weight.device)  # (slot,) tokens stored per slot
        self.rows = torch.arange(slots, device=weight.device)  # (batch,) the slots the next pass uses

    def use(self, rows: list[int]) -> None:
        self.rows = torch.tensor(rows, dtype=torch.long, device=self.lengths.device)  # (batch,)

    @property
    def length(self) -> torch.Tensor:
        return self.lengths[self.rows]  # (batch,): where each row's new tokens go

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (batch, kv_heads, new, head_dim) after each row's tokens; return the rows' keys and
        values up to the longest row (batch, kv_heads, t_k, head_dim)."""
        new = k.shape[-2]
        positions = self.length[:, None] + torch.arange(new, device=k.device)  # (batch, new)
        rows = self.rows[:, None]  # (batch, 1)
        self.keys[layer][rows, :, positions] = k.transpose(1, 2)  # indexed: (batch, new, kv_heads, head_dim)
        self.values[layer][rows, :, positions] = v.transpose(1, 2)
        end = int(self.length.max()) + new
        return self.keys[layer, self.rows, :, :end], self.values[layer, self.rows, :, :end]

    def attention_mask(self, t_q: int) -> torch.Tensor | None:
        """(batch, 1, t_q, t_k): query i of a row sees that row's keys up to its own position.
        None when the rows all hold the same number of tokens (the causal mask is then enough)."""
        lengths = self.length  # (batch,) before this pass's tokens
        if bool((lengths == lengths[0]).all()):
            return None
        t_k = int(lengths.max()) + t_q
        query_positions = lengths[:, None] + torch.arange(t_q, device=lengths.device)  # (batch, t_q)
        keys = torch.arange(t_k, device=lengths.device)  # (t_k,)
        return (keys <= query_positions[:, :, None])[:, None]  # (batch, 1, t_q, t_k)

    def advance(self, time: int) -> None:
        self.lengths[self.rows] += time


class BatchingEngine:
    """Runs `model` in a background thread, decoding every active Job together (see the module docstring)."""

    def __init__(self, model, config: BatchingConfig | None = None):
        self.model = model.eval()
        self.config = config or BatchingConfig()
        if self.config.max_batch < 1 or self.config.max_waiting < 1 or not self.config.max_seconds > 0:
            raise ValueError(f"max_batch and max_waiting must be at least 1 and max_seconds above 0, got {self.config}.")
        self.device = model.token_embedding.weight.device
        self.cache = SlotCache(model, self.config.max_batch)
        self.waiting: queue.Queue[Job] = queue.Queue(maxsize=self.config.max_waiting)
        self.wake = threading.Event()  # set when a job arrives
        self.running = True
        self.largest_batch = 0  # the most requests one decoding step has served (to see batching happen)
        self.thread = threading.Thread(target=self._loop, name="batching-engine", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> Job:
        """Queue a job (its settings are checked here); raises QueueFull when the waiting line is full."""
        _check_settings(job.max_new_tokens, job.temperature, job.top_k, job.top_p)
        if not 1 <= len(job.prompt_ids) or len(job.prompt_ids) + job.max_new_tokens > self.model.config.context_length:
            raise ValueError(f"the prompt ({len(job.prompt_ids)} tokens) and max_new_tokens ({job.max_new_tokens}) "
                             f"must fit the model's context of {self.model.config.context_length} tokens.")
        try:
            self.waiting.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"{self.config.max_waiting} requests are already waiting; try again shortly.") from None
        self.wake.set()
        return job

    def tokens(self, job: Job, timeout: float | None = None):
        """Yield the job's tokens as the engine writes them. Leaving early (a client that went away)
        cancels the job, and the engine frees its slot at the next step."""
        timeout = self.config.max_seconds + 5 if timeout is None else timeout
        try:
            while (token := job.events.get(timeout=timeout)) is not None:
                yield token
        finally:
            if job.finish_reason is None:
                job.cancelled.set()

    def close(self) -> None:
        self.running = False
        self.wake.set()
        self.thread.join(timeout=10)

    # the loop, in the engine's thread

    def _loop(self) -> None:
        active: dict[int, tuple[Job, torch.Generator | None, int]] = {}  # slot -> (job, generator, last token)
        while self.running:
            free = [slot for slot in range(self.config.max_batch) if slot not in active]
            while free and not self.waiting.empty():
                job = self.waiting.get_nowait()
                if not self._finished_early(job):
                    slot = free.pop(0)
                    active[slot] = self._prefill(job, slot)
            if not active:
                self.wake.wait(timeout=0.5)
                self.wake.clear()
                continue
            self._decode(active)

    def _finished_early(self, job: Job) -> bool:
        if job.cancelled.is_set():
            self._finish(job, "cancelled")
        elif time.monotonic() - job.submitted > self.config.max_seconds:
            self._finish(job, "time_limit")
        return job.finish_reason is not None

    @torch.no_grad()
    def _prefill(self, job: Job, slot: int) -> tuple[Job, torch.Generator | None, int]:
        """Read the job's prompt into its slot and choose its first token."""
        generator = None if job.seed is None else torch.Generator(device=self.device).manual_seed(job.seed)
        self.cache.lengths[slot] = 0
        self.cache.use([slot])
        prompt = torch.tensor([job.prompt_ids], device=self.device)  # (1, prompt)
        logits, _ = self.model(prompt, cache=self.cache)  # (1, prompt, vocab)
        return job, generator, self._choose(job, generator, logits[:, -1])

    @torch.no_grad()
    def _decode(self, active: dict) -> None:
        """Pass on each active job's last token, then run one step for all of them together."""
        for slot, (job, generator, token) in list(active.items()):
            if self._deliver(job, token):
                del active[slot]
        if not active:
            return
        slots = sorted(active)
        self.largest_batch = max(self.largest_batch, len(slots))
        self.cache.use(slots)
        last = torch.tensor([[active[slot][2]] for slot in slots], device=self.device)  # (batch, 1)
        logits, _ = self.model(last, cache=self.cache)  # (batch, 1, vocab)
        for row, slot in enumerate(slots):
            job, generator, _ = active[slot]
            active[slot] = (job, generator, self._choose(job, generator, logits[row:row + 1, -1]))

    @staticmethod
    def _choose(job: Job, generator, logits: torch.Tensor) -> int:
        return next_token(logits, job.temperature, job.top_k, job.top_p, generator).item()  # (1, vocab) -> id

    def _deliver(self, job: Job, token: int) -> bool:
        """Hand one chosen token to its job; True when the job is now finished."""
        if token in job.stop_ids:
            return self._finish(job, "stop")
        if self._finished_early(job):
            return True
        job.events.put(token)
        job.written += 1
        if job.written == job.max_new_tokens:
            return self._finish(job, "length")
        return False

    @staticmethod
    def _finish(job: Job, reason: str) -> bool:
        job.finish_reason = reason
        job.events.put(None)
        return True
