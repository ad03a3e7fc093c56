"""Chapter 3 exercises, solved."""
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from minilm.attention import causal_mask, scaled_dot_product_attention
from minilm.model import GPTConfig


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm over the last dimension: (x - mean) / sqrt(variance + eps) · weight + bias.

    The mean and the (biased, divide-by-n) variance are taken over the features of each vector;
    weight and bias have one entry per feature. Do not call F.layer_norm or nn.LayerNorm.
    """
    mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
    variance = (x - mean).pow(2).mean(dim=-1, keepdim=True)  # (..., 1): divide by n, not n - 1
    return (x - mean) / torch.sqrt(variance + eps) * weight + bias  # (..., features)


def causal_self_attention(x: torch.Tensor, w_qkv: torch.Tensor, b_qkv: torch.Tensor, w_out: torch.Tensor,
                          b_out: torch.Tensor, n_head: int) -> torch.Tensor:
    """Multi-head causal self-attention of x (batch, time, d) -> (batch, time, d).

    w_qkv (3d, d) and b_qkv (3d,) make queries, keys and values in one product, x @ w_qkvᵀ + b_qkv,
    stacked [q | k | v] along the last dimension (nn.Linear's convention). Split each into n_head
    heads of d / n_head features, let every position attend to itself and the positions before it
    (scores scaled by 1/√head_dim), put the heads side by side again and apply w_out (d, d), b_out.
    You may use minilm.attention.causal_mask and scaled_dot_product_attention.
    Raise ValueError if n_head does not divide d.
    """
    d = x.shape[-1]
    if d % n_head:
        raise ValueError(f"n_head={n_head} must divide the width d={d}.")
    q, k, v = (x @ w_qkv.T + b_qkv).chunk(3, dim=-1)  # (batch, time, d) each
    q, k, v = (rearrange(t, "b t (h e) -> b h t e", h=n_head) for t in (q, k, v))  # (batch, heads, time, head_dim)
    heads, _ = scaled_dot_product_attention(q, k, v, mask=causal_mask(x.shape[1], device=x.device))
    return rearrange(heads, "b h t e -> b t (h e)") @ w_out.T + b_out  # (batch, time, d)


def transformer_block(x: torch.Tensor, weights: dict[str, torch.Tensor], n_head: int) -> torch.Tensor:
    """One pre-norm GPT-2 block: x + attention(LN(x)), then x + MLP(LN(x)); (batch, time, d) -> same.

    `weights` holds the block's tensors under the names of `minilm.model.Block(config, 0).state_dict()`:
    attention_norm.{weight,bias}, attention.qkv.{weight,bias}, attention.out.{weight,bias},
    mlp_norm.{weight,bias}, mlp.up.{weight,bias} (d -> 4d), mlp.out.{weight,bias} (4d -> d).
    Every Linear computes x @ weightᵀ + bias. LayerNorm's eps is 1e-5; the MLP's GELU is the tanh form,
    F.gelu(h, approximate="tanh"), as in GPT-2. Use your `layer_norm` and `causal_self_attention`.

        block = minilm.model.Block(config, 0)
        transformer_block(x, block.state_dict(), config.n_head)  # equals block(x)
    """
    w = weights
    normed = layer_norm(x, w["attention_norm.weight"], w["attention_norm.bias"])  # (batch, time, d)
    x = x + causal_self_attention(normed, w["attention.qkv.weight"], w["attention.qkv.bias"],
                                  w["attention.out.weight"], w["attention.out.bias"], n_head)
    normed = layer_norm(x, w["mlp_norm.weight"], w["mlp_norm.bias"])  # (batch, time, d)
    hidden = F.gelu(normed @ w["mlp.up.weight"].T + w["mlp.up.bias"], approximate="tanh")  # (batch, time, 4d)
    return x + hidden @ w["mlp.out.weight"].T + w["mlp.out.bias"]  # (batch, time, d)


def _block_weights(weights: dict[str, torch.Tensor], layer: int) -> dict[str, torch.Tensor]:
    """The tensors of block `layer`, named as in the block's own state_dict (prefix removed)."""
    prefix = f"blocks.{layer}."
    return {name.removeprefix(prefix): w for name, w in weights.items() if name.startswith(prefix)}


def _layer_count(weights: dict[str, torch.Tensor]) -> int:
    return len({name.split(".")[1] for name in weights if name.startswith("blocks.")})


def gpt_forward(idx: torch.Tensor, weights: dict[str, torch.Tensor], n_head: int) -> torch.Tensor:
    """The logits (batch, time, vocab) of a GPT-2-family model for token ids idx (batch, time).

    `weights` is `minilm.model.GPT(config).state_dict()` (GPT-2 family): token_embedding.weight
    (vocab, d), positions.table.weight (context, d), blocks.0. ... blocks.{L-1}. (as in
    `transformer_block`), final_norm.{weight,bias} and head.weight (vocab, d; tied, so equal to the
    token embeddings). Embed the tokens, add the vectors of positions 0..time-1, run every block in
    order, apply the final LayerNorm and the head:

        model = minilm.model.GPT(config)
        gpt_forward(idx, model.state_dict(), config.n_head)  # equals model(idx)[0]
    """
    positions = torch.arange(idx.shape[1], device=idx.device)  # (time,)
    x = weights["token_embedding.weight"][idx] + weights["positions.table.weight"][positions]  # (batch, time, d)
    for layer in range(_layer_count(weights)):
        x = transformer_block(x, _block_weights(weights, layer), n_head)  # (batch, time, d)
    x = layer_norm(x, weights["final_norm.weight"], weights["final_norm.bias"])  # (batch, time, d)
    return x @ weights["head.weight"].T  # (batch, time, vocab)


class _GPT(nn.Module):
    """The parameters of a GPT-2-family model under minilm's names; the forward pass is `gpt_forward`."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        d = config.n_embd
        self.n_head = config.n_head
        self.token_embedding = nn.Embedding(config.vocab_size, d)
        self.positions = nn.ModuleDict({"table": nn.Embedding(config.context_length, d)})
        self.blocks = nn.ModuleList(nn.ModuleDict({
            "attention_norm": nn.LayerNorm(d),
            "attention": nn.ModuleDict({"qkv": nn.Linear(d, 3 * d), "out": nn.Linear(d, d)}),
            "mlp_norm": nn.LayerNorm(d),
            "mlp": nn.ModuleDict({"up": nn.Linear(d, 4 * d), "out": nn.Linear(4 * d, d)}),
        }) for _ in range(config.n_layer))
        self.final_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.vocab_size, bias=False)
        self.head.weight = self.token_embedding.weight  # tied: one matrix embeds and scores tokens

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return gpt_forward(idx, self.state_dict(keep_vars=True), self.n_head)  # keep_vars: gradients flow


def build_gpt(config: GPTConfig) -> nn.Module:
    """A trainable GPT-2-family model whose state_dict has the keys and shapes of minilm.model.GPT(config).

    Its `forward(idx)` takes token ids (batch, time) and returns the logits (batch, time, vocab), and
    after `load_state_dict(minilm.model.GPT(config).state_dict())` they equal minilm's. No dropout is
    needed. The head is tied to the token embeddings; the MLP is 4·n_embd wide. One way: nn.Embedding,
    nn.LayerNorm and nn.Linear layers in nn.ModuleList / nn.ModuleDict containers named like minilm's,
    and a forward that calls your `gpt_forward` on `self.state_dict(keep_vars=True)` (the parameters
    themselves, so gradients reach them). `config` is a GPT-2-family GPTConfig with its defaults.

        mine, theirs = build_gpt(config), minilm.model.GPT(config)
        mine.load_state_dict(theirs.state_dict())
        mine(idx)  # equals theirs(idx)[0]
    """
    return _GPT(config)


def kv_cache_step(token: torch.Tensor, cache: list[tuple[torch.Tensor, torch.Tensor]],
                  weights: dict[str, torch.Tensor],
                  n_head: int) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """One decoding step with a KV cache: the logits (batch, vocab) after `token`, and the grown cache.

    token (batch,): the ids of the newest token, which sits at position p = the number of tokens the
    cache holds. cache: one (keys, values) pair per block, each (batch, n_head, p, head_dim), the keys
    and values of positions 0..p-1; an empty list when nothing is cached yet (p = 0). weights: as in
    `gpt_forward`. In every block, compute only the new token's query, key and value, append the key
    and value to the block's cached ones, and let the one query attend over all p + 1 keys (no mask
    is needed: nothing after it exists). Return the logits and the new cache, (batch, n_head, p + 1,
    head_dim) per block. Feeding a sequence token by token, starting from [], gives at each step
    gpt_forward's logits at that position:

        logits, cache = kv_cache_step(ids[:, 0], [], weights, n_head)
        logits, cache = kv_cache_step(ids[:, 1], cache, weights, n_head)   # == gpt_forward(ids, ...)[:, 1]
    """
    position = cache[0][0].shape[2] if cache else 0  # tokens already cached
    x = weights["token_embedding.weight"][token] + weights["positions.table.weight"][position]  # (batch, d)
    new_cache = []
    for layer in range(_layer_count(weights)):
        w = _block_weights(weights, layer)
        normed = layer_norm(x, w["attention_norm.weight"], w["attention_norm.bias"])  # (batch, d)
        q, k, v = (normed @ w["attention.qkv.weight"].T + w["attention.qkv.bias"]).chunk(3, dim=-1)
        q, k, v = (rearrange(t, "b (h e) -> b h 1 e", h=n_head) for t in (q, k, v))  # (batch, heads, 1, head_dim)
        if cache:
            k = torch.cat([cache[layer][0], k], dim=2)  # (batch, heads, p + 1, head_dim)
            v = torch.cat([cache[layer][1], v], dim=2)
        new_cache.append((k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (batch, heads, 1, p + 1)
        heads = scores.softmax(dim=-1) @ v  # (batch, heads, 1, head_dim)
        x = x + rearrange(heads, "b h 1 e -> b (h e)") @ w["attention.out.weight"].T + w["attention.out.bias"]
        normed = layer_norm(x, w["mlp_norm.weight"], w["mlp_norm.bias"])  # (batch, d)
        hidden = F.gelu(normed @ w["mlp.up.weight"].T + w["mlp.up.bias"], approximate="tanh")  # (batch, 4d)
        x = x + hidden @ w["mlp.out.weight"].T + w["mlp.out.bias"]  # (batch, d)
    x = layer_norm(x, weights["final_norm.weight"], weights["final_norm.bias"])  # (batch, d)
    return x @ weights["head.weight"].T, new_cache  # (batch, vocab), one (keys, values) per block


def count_gpt2_parameters(vocab_size: int, context_length: int, n_layer: int, n_embd: int) -> int:
    """The number of trainable parameters of a GPT-2 model with a tied head.

    Token embeddings (vocab × d) and learned positions (context × d); per block two LayerNorms
    (weight and bias each), the attention (qkv: d → 3d, output: d → d, with biases) and the MLP
    (d → 4d → d, with biases); a final LayerNorm. The head reuses the token embeddings.
    """
    d = n_embd
    embeddings = vocab_size * d + context_length * d
    attention = (d * 3 * d + 3 * d) + (d * d + d)
    mlp = (d * 4 * d + 4 * d) + (4 * d * d + d)
    norms = 2 * (2 * d)
    return embeddings + n_layer * (attention + mlp + norms) + 2 * d


def top_k_sample(logits: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row of logits (batch, vocab), drawn from the softmax of the k largest logits only.

    Every token outside a row's k largest logits must have probability zero; the k kept tokens keep
    their relative probabilities. Use torch.multinomial(..., generator=generator). Returns (batch,).
    Raise ValueError if k is not between 1 and vocab.
    """
    if not 1 <= k <= logits.shape[-1]:
        raise ValueError(f"k must lie in 1..{logits.shape[-1]} (the vocabulary), got {k}.")
    values, ids = torch.topk(logits, k, dim=-1)  # (batch, k): the k largest and where they are
    choice = torch.multinomial(values.softmax(dim=-1), 1, generator=generator)  # (batch, 1): index into the k
    return ids.gather(-1, choice).squeeze(-1)  # (batch,)
