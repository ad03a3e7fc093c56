"""Continuous batching: many requests decoded together, each with its own length, settings and stop.

A server that answers one request at a time leaves the model idle between users' tokens: one
decoding step for one row costs nearly what a step for sixteen rows costs (the weights are read
once either way). Here a background thread runs the model in a loop; at every step it

    admits   waiting requests into free slots of one shared KV cache, their prompts read in one
             right-padded pass (prefill)
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

from minilm.generate import _check_settings, sampling_probabilities


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
    events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)  # token ids, then None at the end
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
        self.use(list(range(slots)))

    def use(self, rows: list[int], adds: list[int] | None = None) -> None:
        """Choose the slots the next forward pass reads and writes, one per row of its batch. `adds`: the
        tokens each row really adds in that pass (a right-padded prefill); by default all of them."""
        device = self.lengths.device
        self.rows = torch.tensor(rows, dtype=torch.long, device=device)  # (batch,)
        self.adds = None if adds is None else torch.tensor(adds, dtype=torch.long, device=device)  # (batch,)
        self.length = self.lengths[self.rows]  # (batch,): where each row's new tokens go
        self.longest = int(self.length.max())  # the most tokens any of these rows holds
        self.all_equal = bool((self.length == self.longest).all())  # then the causal mask is enough

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (batch, kv_heads, new, head_dim) after each row's tokens; return the rows' keys and
        values up to the longest row (batch, kv_heads, t_k, head_dim)."""
        new = k.shape[-2]
        positions = self.length[:, None] + torch.arange(new, device=k.device)  # (batch, new)
        rows = self.rows[:, None]  # (batch, 1)
        self.keys[layer][rows, :, positions] = k.transpose(1, 2)  # indexed: (batch, new, kv_heads, head_dim)
        self.values[layer][rows, :, positions] = v.transpose(1, 2)
        end = self.longest + new
        return self.keys[layer, self.rows, :, :end], self.values[layer, self.rows, :, :end]

    def attention_mask(self, t_q: int) -> torch.Tensor | None:
        """(batch, 1, t_q, t_k): query i of a row sees that row's keys up to its own position.
        None when the rows all hold the same number of tokens (the causal mask is then enough)."""
        if self.all_equal:
            return None
        query_positions = self.length[:, None] + torch.arange(t_q, device=self.rows.device)  # (batch, t_q)
        keys = torch.arange(self.longest + t_q, device=self.rows.device)  # (t_k,)
        return (keys <= query_positions[:, :, None])[:, None]  # (batch, 1, t_q, t_k)

    def advance(self, time: int) -> None:
        self.lengths[self.rows] += time if self.adds is None else self.adds


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
            admitted = []  # (slot, job): read together in one prefill pass
            while len(admitted) < len(free) and not self.waiting.empty():
                job = self.waiting.get_nowait()
                if not self._finished_early(job):
                    admitted.append((free[len(admitted)], job))
            if admitted:
                active.update(self._prefill(admitted))
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
    def _prefill(self, admitted: list[tuple[int, Job]]) -> dict[int, tuple[Job, torch.Generator | None, int]]:
        """Read the admitted jobs' prompts into their slots in one pass and choose each one's first token.

        Prompts of different lengths are padded on the right. Causal attention keeps every prompt
        token from seeing the padding after it, and each slot keeps only its prompt's length, so the
        next tokens overwrite the padding's cache entries."""
        slots, jobs = [slot for slot, _ in admitted], [job for _, job in admitted]
        lengths = [len(job.prompt_ids) for job in jobs]
        longest = max(lengths)
        self.cache.lengths[slots] = 0
        self.cache.use(slots, adds=lengths)
        prompts = torch.tensor([job.prompt_ids + [0] * (longest - len(job.prompt_ids)) for job in jobs],
                               device=self.device)  # (batch, longest)
        logits, _ = self.model(prompts, cache=self.cache)  # (batch, longest, vocab)
        ends = torch.tensor(lengths, device=self.device) - 1  # (batch,): where each prompt's last token sits
        last = logits[torch.arange(len(jobs), device=self.device), ends]  # (batch, vocab)
        generators = [None if job.seed is None else torch.Generator(device=self.device).manual_seed(job.seed)
                      for job in jobs]
        chosen = self._choose(list(zip(jobs, generators)), last)
        return {slot: (job, generator, token) for slot, job, generator, token in zip(slots, jobs, generators, chosen)}

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
        chosen = self._choose([active[slot][:2] for slot in slots], logits[:, -1])
        for slot, token in zip(slots, chosen):
            job, generator, _ = active[slot]
            active[slot] = (job, generator, token)

    @staticmethod
    def _choose(rows: list[tuple[Job, torch.Generator | None]], logits: torch.Tensor) -> list[int]:
        """One token per row of logits (batch, vocab), each by its job's settings, exactly as `next_token`
        would choose it alone: rows with the same settings share the arithmetic, and only the random
        draw is made row by row, from the row's own generator.

        The draw is an exponential race, the way torch.multinomial draws one sample: token i wins
        with probability p_i when the winner is argmax(p_i / q_i), each q_i ~ Exp(1)."""
        chosen = [0] * len(rows)
        groups: dict[tuple, list[int]] = {}  # (temperature, top_k, top_p) -> rows
        for row, (job, _) in enumerate(rows):
            groups.setdefault((job.temperature, job.top_k, job.top_p), []).append(row)
        for (temperature, top_k, top_p), members in groups.items():
            if temperature == 0:
                tokens = logits[members].argmax(dim=-1).tolist()  # greedy
            else:
                probs = sampling_probabilities(logits[members], temperature, top_k, top_p)  # (members, vocab)
                races = torch.empty_like(probs)  # (members, vocab): Exp(1) times, each row from its own generator
                for i, row in enumerate(members):
                    races[i].exponential_(generator=rows[row][1])
                tokens = (probs / races).argmax(dim=-1).tolist()
            for row, token in zip(members, tokens):
                chosen[row] = token
        return chosen

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
