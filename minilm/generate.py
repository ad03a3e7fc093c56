"""Generation: turning a model's next-token scores into text, one token at a time, with a KV cache.

A language model gives, at every position, logits over the vocabulary for the next token. To
generate, we append one chosen token and ask again. How the token is chosen:

    greedy       the most likely token (temperature = 0): deterministic, often repetitive
    temperature  divide the logits by T before the softmax: T < 1 sharpens, T > 1 flattens
    top-k        sample among the k most likely tokens only
    top-p        sample among the fewest tokens whose probabilities add up to at least p (the nucleus)

    from minilm.generate import generate
    tokens = generate(model, prompt, max_new_tokens=50, temperature=0.8, top_k=40, seed=0)
    # the same as model.generate(prompt, ...)

Without a cache every step runs the model over the whole sequence again, though only the last
position's output is new. The `KVCache` keeps every layer's keys and values of the tokens already
seen, so a step only computes the new token's: the same tokens come out, much faster.

Past the context: a prompt longer than the model's context_length is an error. Generation may run
past it: the model then sees a sliding window, the last context_length tokens. Once the window
slides every position moves, so the cached keys are stale and each such step recomputes the whole
window (the tokens are still exactly those of generation without a cache).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch

from minilm.data import END_OF_TEXT
from minilm.runtime import wall_seconds


def _check_settings(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Catch bad sampling settings before the first step, each with an error saying what to use."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be 0 or more, got {max_new_tokens}.")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0 (0 means greedy), got {temperature}.")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1 (or None to keep every token), got {top_k}.")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must lie in (0, 1] (or None to keep every token), got {top_p}.")


def document_prompt(tokenizer, text: str) -> list[int]:
    """The token ids of a prompt that starts a text: END_OF_TEXT, then the text's tokens.

    Every training document came right after an END_OF_TEXT, so this is how the model saw each text
    begin. The command line and the server both prompt this way: the same greedy prompt writes the
    same text through either.
    """
    return [tokenizer.special_tokens[END_OF_TEXT]] + tokenizer.encode(text)


def filter_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (ties with the k-th are kept too); the rest become -inf."""
    k = min(k, logits.shape[-1])
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth_largest, float("-inf"))  # (..., vocab)


def filter_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the nucleus of each row: the most likely tokens, in order, until their probability reaches p.

    A token is kept when the tokens ranked above it hold less than p of the probability, so the
    most likely token is always kept and the kept set is the smallest whose mass is at least p.
    p = 1 keeps every token (even those whose probability is lost in float32 rounding).
    """
    if p >= 1:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (..., vocab)
    probs = sorted_logits.softmax(dim=-1)  # (..., vocab), largest first
    mass_above = probs.cumsum(dim=-1) - probs  # (..., vocab): probability of the better-ranked tokens
    drop_sorted = mass_above >= p  # (..., vocab): the nucleus was full before this token
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))  # (..., vocab)


def next_token(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row from logits (batch, vocab): greedy at temperature 0, else sampled. (batch,)"""
    if temperature == 0:
        return logits.argmax(dim=-1)  # (batch,)
    probs = sampling_probabilities(logits, temperature, top_k, top_p)  # (batch, vocab)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)  # (batch,)


def sampling_probabilities(logits: torch.Tensor, temperature: float, top_k: int | None = None,
                           top_p: float | None = None) -> torch.Tensor:
    """The distribution a sampled token is drawn from (temperature > 0): each row's logits (batch, vocab)
    divided by the temperature, filtered by top-k then top-p, then softmax. (batch, vocab)"""
    logits = logits.float() / temperature  # (batch, vocab)
    if top_k is not None:
        logits = filter_top_k(logits, top_k)
    if top_p is not None:
        logits = filter_top_p(logits, top_p)
    return logits.softmax(dim=-1)  # (batch, vocab)


class KVCache:
    """Every layer's keys and values for the tokens processed so far, in buffers filled left to right.

    Attention layer `layer` calls `update(layer, k, v)` with its new keys and values and gets back
    all of them, old and new; once every layer has run, the model calls `advance(time)`. Keys are
    stored after RoPE, so a cached key never needs rotating again.
    """

    def __init__(self, n_layer: int, batch: int, n_kv_head: int, max_length: int, head_dim: int,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        shape = (n_layer, batch, n_kv_head, max_length, head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)  # (layer, batch, kv_heads, max_length, head_dim)
        self.values = torch.zeros(shape, device=device, dtype=dtype)  # same shape as the keys
        self.max_length = max_length  # the most tokens it can hold (the model's context)
        self.length = 0  # tokens stored so far, the same in every layer

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (batch, kv_heads, new, head_dim) after the cached ones; return all of them."""
        end = self.length + k.shape[-2]
        if end > self.max_length:
            raise ValueError(f"the cache holds {self.max_length} positions; {end} do not fit. "
                             f"Call reset() and feed the last {self.max_length} tokens again.")
        self.keys[layer, :, :, self.length:end] = k
        self.values[layer, :, :, self.length:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]  # (batch, kv_heads, end, head_dim)

    def attention_mask(self, t_q: int) -> None:
        """None: every row holds the same tokens, so the causal mask is all attention needs.
        (A batching server's cache, chapter 6c, gives a mask for rows of different lengths.)"""
        return None

    def advance(self, time: int) -> None:
        """Count `time` new tokens as stored (every layer has stored them)."""
        self.length += time

    def reset(self) -> None:
        """Forget every stored token (the buffers are simply overwritten later)."""
        self.length = 0


def _last_logits(model, tokens: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
    """The model's logits for the token after `tokens` (batch, vocab), feeding only what is new."""
    context = model.config.context_length
    if cache is None:
        logits, _ = model(tokens[:, -context:])  # (batch, time, vocab)
        return logits[:, -1]
    if tokens.shape[1] > context:  # the window slides: every position moves, so start afresh
        cache.reset()
        logits, _ = model(tokens[:, -context:], cache=cache)
        return logits[:, -1]
    logits, _ = model(tokens[:, cache.length:], cache=cache)  # (batch, new, vocab)
    return logits[:, -1]


def generate(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, stop_tokens: Sequence[int] | None = None, seed: int | None = None,
             use_cache: bool = True) -> torch.Tensor:
    """Extend each row of idx (batch, time) by up to max_new_tokens tokens: (batch, time + new).

    `seed` makes sampling reproducible (a private generator, so the global one is left alone).
    `stop_tokens`: a row that produces one of them is finished and repeats that token while the
    others go on; generation ends when every row has finished. The model runs in eval mode (no
    dropout) without gradients, and is put back in the mode it was in.
    """
    steps = generate_steps(model, idx, max_new_tokens, temperature, top_k, top_p, stop_tokens, seed, use_cache)
    return torch.cat([idx, *(chosen[:, None] for chosen in steps)], dim=1)  # (batch, time + new)


@torch.no_grad()
def generate_steps(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                   top_k: int | None = None, top_p: float | None = None,
                   stop_tokens: Sequence[int] | None = None, seed: int | None = None,
                   use_cache: bool = True) -> Iterator[torch.Tensor]:
    """`generate`'s loop, one step at a time: yields each step's chosen tokens (batch,) as soon as they
    are picked, so a server can stream them. The arguments and rules are generate's."""
    _check_settings(max_new_tokens, temperature, top_k, top_p)
    if idx.dim() != 2 or idx.dtype != torch.long:
        raise ValueError(f"idx must be a LongTensor of token ids (batch, time), got {idx.dtype} {tuple(idx.shape)}.")
    context = model.config.context_length
    if not 1 <= idx.shape[1] <= context:
        raise ValueError(f"the prompt has {idx.shape[1]} tokens; the model reads 1 to {context} "
                         f"(its context_length). Crop a long prompt to its end: idx[:, -{context}:].")
    generator = None
    if seed is not None:
        generator = torch.Generator(device=idx.device).manual_seed(seed)
    stops = torch.tensor(list(stop_tokens or []), dtype=torch.long, device=idx.device)
    cache = model.new_cache(idx.shape[0]) if use_cache else None
    finished = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)  # (batch,)
    was_training = model.training
    model.eval()
    tokens = idx
    try:
        for _ in range(max_new_tokens):
            chosen = next_token(_last_logits(model, tokens, cache), temperature, top_k, top_p, generator)
            if len(stops):
                chosen = torch.where(finished, tokens[:, -1], chosen)  # (batch,): a finished row repeats its stop
                finished |= torch.isin(chosen, stops)
            tokens = torch.cat([tokens, chosen[:, None]], dim=1)  # (batch, time + 1)
            yield chosen
            if len(stops) and finished.all():
                break
    finally:
        model.train(was_training)


def generation_seconds(model, idx: torch.Tensor, max_new_tokens: int, use_cache: bool, repeats: int = 3) -> float:
    """Median wall time of a greedy `generate` (stop tokens off, so every run makes max_new_tokens)."""
    times = [wall_seconds(lambda: generate(model, idx, max_new_tokens, temperature=0, use_cache=use_cache),
                          idx.device) for _ in range(repeats)]
    return sorted(times)[len(times) // 2]
