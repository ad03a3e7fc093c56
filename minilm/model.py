"""The Transformer language model: a GPT, in the GPT-2 style or the Llama style, set by one config.

A GPT reads token ids (batch, time) and gives, at every position, logits over the vocabulary for
the next token. Inside: token embeddings (+ positions), n_layer pre-norm blocks, a final norm, and
a linear head back to the vocabulary:

    x = embed(tokens) [+ positions]
    for each block:   x = x + attention(norm(x))     # tokens look back at earlier tokens
                      x = x + mlp(norm(x))           # each token thinks on its own
    logits = head(norm(x))

    from minilm.model import GPT, GPTConfig
    model = GPT(GPTConfig(vocab_size=512, context_length=128, n_layer=4, n_head=4, n_embd=128))
    logits, loss = model(idx, targets)                   # (batch, time, vocab), mean cross-entropy
    more = model.generate(idx, max_new_tokens=20, temperature=0, use_cache=True)
    count_parameters(model), flops_per_token(model.config)

The two families differ only in their defaults (every choice can be overridden):

    gpt2   learned positions, LayerNorm with bias, GELU MLP, biases, head tied to the embeddings
    llama  RoPE, RMSNorm, SwiGLU MLP, no biases, untied head, optional grouped-query attention

Attention itself comes from `minilm.attention` (chapter 2); positions from `minilm.positions`;
sampling and the KV cache from `minilm.generate`; Hugging Face weights from `minilm.interop`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from minilm.attention import causal_mask, fused_attention, scaled_dot_product_attention
from minilm.generate import KVCache, generate
from minilm.positions import LearnedPositions, RotaryEmbedding, SinusoidalPositions, apply_rope
from minilm.presets import choose

FAMILY_DEFAULTS = {
    "gpt2": {"position": "learned", "norm": "layernorm", "mlp": "gelu", "bias": True,
             "tie_embeddings": True, "norm_eps": 1e-5},
    "llama": {"position": "rope", "norm": "rmsnorm", "mlp": "swiglu", "bias": False,
              "tie_embeddings": False, "norm_eps": 1e-6},
}
CHOICES = {"family": ("gpt2", "llama"), "position": ("learned", "sinusoidal", "rope"),
           "norm": ("layernorm", "rmsnorm"), "mlp": ("gelu", "swiglu")}


@dataclass
class GPTConfig:
    """Everything that fixes a GPT's shape. A family choice left as None takes the family's default
    when the config is made (so `replace(config, family=...)` keeps the choices already filled in:
    make a new GPTConfig to switch families); the two sizes left as None follow n_embd and n_head
    (`mlp_width`, `kv_heads`)."""

    vocab_size: int = 256  # how many different tokens the model reads and predicts
    context_length: int = 128  # the most tokens it reads at once: positions 0..context_length-1
    n_layer: int = 4  # blocks stacked on top of each other: the model's depth
    n_head: int = 4  # attention heads per block, each free to look for its own pattern
    n_embd: int = 128  # width of each token's vector (the residual stream); n_head must divide it
    family: str = "gpt2"  # "gpt2" or "llama": sets the defaults of the choices below
    position: str | None = None  # "learned", "sinusoidal" or "rope" (gpt2: learned, llama: rope)
    norm: str | None = None  # "layernorm" or "rmsnorm" (cheaper: no mean, no bias)
    mlp: str | None = None  # "gelu" (two matrices) or "swiglu" (three, with a gate)
    bias: bool | None = None  # biases in the linear layers and LayerNorms (GPT-2 has them, Llama not)
    tie_embeddings: bool | None = None  # the head reuses the token embedding matrix: vocab × n_embd fewer weights
    intermediate_size: int | None = None  # MLP hidden width; None: 4·n_embd (gelu), ≈ 8/3·n_embd (swiglu)
    n_kv_head: int | None = None  # key/value heads (grouped-query attention); None: one per query head
    norm_eps: float | None = None  # added to the variance under the square root, so it never divides by 0
    rope_theta: float = 10_000.0  # RoPE's base: the slowest pair turns once every 2π·theta positions
    dropout: float = 0.0  # dropout on embeddings, attention weights and residual branches while training
    fast_attention: bool = True  # PyTorch's fused attention kernel; False: the formula, step by step
    init_std: float = 0.02  # GPT-2's initialisation: weights ~ N(0, init_std²)

    def __post_init__(self):
        if self.family not in FAMILY_DEFAULTS:
            raise ValueError(f"family={self.family!r} is not one the course builds; use 'gpt2' or 'llama'.")
        for name, value in FAMILY_DEFAULTS[self.family].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        self._validate()

    def _validate(self) -> None:
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {', '.join(allowed)}.")
        for name in ("vocab_size", "context_length", "n_layer", "n_head", "n_embd", "intermediate_size", "n_kv_head"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive whole number, got {getattr(self, name)}.")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must split evenly into n_head={self.n_head} heads.")
        if self.n_head % self.kv_heads:
            raise ValueError(f"n_head={self.n_head} must be a multiple of n_kv_head={self.n_kv_head}: "
                             f"each key/value head serves the same number of query heads.")
        if self.position == "rope" and self.head_dim % 2:
            raise ValueError(f"RoPE rotates pairs of features, so head_dim = n_embd / n_head must be even, "
                             f"got {self.head_dim}.")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}.")

    @property
    def head_dim(self) -> int:
        """Features per attention head."""
        return self.n_embd // self.n_head

    # The two sizes below follow n_embd and n_head unless set, so they are worked out when read:
    # `dataclasses.replace(config, n_embd=256)` then gets the MLP width of the new n_embd.

    @property
    def mlp_width(self) -> int:
        """The MLP's hidden width: intermediate_size, else 4·n_embd (gelu) or ≈ 8/3·n_embd (swiglu)."""
        if self.intermediate_size is not None:
            return self.intermediate_size
        return 4 * self.n_embd if self.mlp == "gelu" else _swiglu_width(self.n_embd)

    @property
    def kv_heads(self) -> int:
        """Key/value heads: n_kv_head, else one per query head (plain multi-head attention)."""
        return self.n_kv_head if self.n_kv_head is not None else self.n_head

    def to_dict(self) -> dict:
        """Every field, family defaults filled in: what a checkpoint stores."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "GPTConfig":
        """The config that `to_dict` wrote; unknown keys are an error, not silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"GPTConfig has no field(s) {', '.join(unknown)}; the fields are {', '.join(sorted(known))}.")
        return cls(**values)


def _swiglu_width(n_embd: int) -> int:
    """Llama's MLP width: 2/3 of 4·n_embd (three matrices cost what GELU's two do), rounded up to 16."""
    return 16 * math.ceil(8 * n_embd / 3 / 16)


@dataclass(frozen=True)
class ModelSize:
    """A model's shape; the vocabulary comes from the tokenizer."""

    n_layer: int  # blocks
    n_head: int  # attention heads per block
    n_embd: int  # width of the residual stream
    context_length: int  # tokens read at once


MODEL_SIZES = {  # named sizes, for `python -m minilm train --size` and every preset's model
    "nano": ModelSize(n_layer=1, n_head=2, n_embd=32, context_length=256),
    "tiny": ModelSize(n_layer=2, n_head=2, n_embd=64, context_length=256),
    "small": ModelSize(n_layer=4, n_head=4, n_embd=128, context_length=256),
    "medium": ModelSize(n_layer=6, n_head=6, n_embd=384, context_length=256),
    "gpt2-small": ModelSize(n_layer=12, n_head=12, n_embd=768, context_length=1024),  # GPT-2's 124M
}

# The size each preset trains (chapter 4's recipe) and studies (chapter 3): one model throughout.
PRESET_SIZES = {"smoke": "nano", "cpu": "tiny", "gpu": "medium"}


def model_config(size: str, vocab_size: int, family: str = "gpt2", **overrides) -> GPTConfig:
    """The GPTConfig of a named size (MODEL_SIZES), with any field overridden."""
    if size not in MODEL_SIZES:
        raise ValueError(f"size={size!r} is not a model size; use one of {', '.join(MODEL_SIZES)}.")
    return replace(GPTConfig(vocab_size=vocab_size, family=family, **asdict(MODEL_SIZES[size])), **overrides)


def config_for_preset(vocab_size: int, family: str = "gpt2", preset: str | None = None, **overrides) -> GPTConfig:
    """The preset's model (PRESET_SIZES: the one chapter 4 trains), with any field overridden."""
    return model_config(choose(PRESET_SIZES, preset), vocab_size, family, **overrides)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) · weight: LayerNorm without the mean and the bias (Llama)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps  # keeps the square root away from zero
        self.weight = nn.Parameter(torch.ones(dim))  # a learned gain per feature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inverse_rms = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., 1)
        return x * inverse_rms * self.weight  # (..., dim)


def make_norm(config: GPTConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd, config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)


class GeluMLP(nn.Module):
    """GPT-2's MLP: widen, GELU (tanh form, as GPT-2), narrow back."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.up = nn.Linear(config.n_embd, config.mlp_width, bias=config.bias)
        self.out = nn.Linear(config.mlp_width, config.n_embd, bias=config.bias)  # into the residual stream
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = F.gelu(self.up(x), approximate="tanh")  # (batch, time, intermediate)
        return self.dropout(self.out(hidden))  # (batch, time, n_embd)


class SwiGLU(nn.Module):
    """Llama's MLP: out(silu(gate(x)) · up(x)); the gate decides, feature by feature, what passes."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.gate = nn.Linear(config.n_embd, config.mlp_width, bias=config.bias)
        self.up = nn.Linear(config.n_embd, config.mlp_width, bias=config.bias)
        self.out = nn.Linear(config.mlp_width, config.n_embd, bias=config.bias)  # into the residual stream
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = F.silu(self.gate(x)) * self.up(x)  # (batch, time, intermediate)
        return self.dropout(self.out(hidden))  # (batch, time, n_embd)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which a token sees itself and the tokens before it, never after.

    One linear layer makes the queries, keys and values of every head at once; with grouped-query
    attention (n_kv_head < n_head) several query heads share one key/value head. RoPE, when used,
    rotates queries and keys; a KV cache, when given, supplies the keys and values of earlier tokens.
    """

    def __init__(self, config: GPTConfig, layer_index: int):
        super().__init__()
        self.config = config
        self.layer_index = layer_index  # which slot of the KV cache is this layer's
        kv_width = config.kv_heads * config.head_dim
        self.qkv = nn.Linear(config.n_embd, config.n_embd + 2 * kv_width, bias=config.bias)  # [q | k | v]
        self.out = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)  # mixes the heads, into the residual
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        c = self.config
        qk, v = self.qkv(x).split([c.n_embd + c.kv_heads * c.head_dim, c.kv_heads * c.head_dim], dim=-1)
        qk = rearrange(qk, "b t (h d) -> b h t d", d=c.head_dim)  # (batch, heads + kv_heads, time, head_dim)
        v = rearrange(v, "b t (h d) -> b h t d", d=c.head_dim)  # (batch, kv_heads, time, head_dim)
        if rope is not None:
            qk = apply_rope(qk, *rope)  # queries and keys turn alike: one call rotates both
        q, k = qk.split([c.n_head, c.kv_heads], dim=1)  # (batch, heads | kv_heads, time, head_dim)
        mask = None  # the causal mask alone, unless the cache's rows hold different numbers of tokens
        if cache is not None:
            k, v = cache.update(self.layer_index, k, v)  # (batch, kv_heads, cached + time, head_dim)
            mask = cache.attention_mask(q.shape[-2])  # None, or (batch, 1, time, t_k) for rows of their own lengths
        if c.kv_heads != c.n_head:  # each key/value head serves n_head / n_kv_head query heads
            k = repeat(k, "b h t d -> b (h g) t d", g=c.n_head // c.kv_heads)  # (batch, heads, t_k, head_dim)
            v = repeat(v, "b h t d -> b (h g) t d", g=c.n_head // c.kv_heads)
        heads = self.attend(q, k, v, mask)  # (batch, heads, time, head_dim)
        return self.dropout(self.out(rearrange(heads, "b h t d -> b t (h d)")))  # (batch, time, n_embd)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Causal attention of the queries (the last t_q positions) over all t_k keys, or over the
        keys `mask` allows (a batching server's cache, whose rows have lengths of their own)."""
        t_q, t_k = q.shape[-2], k.shape[-2]
        dropout_p = self.config.dropout if self.training else 0.0
        if mask is not None:
            if not self.config.fast_attention:
                return scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=dropout_p)[0]
            return fused_attention(q, k, v, mask=mask, dropout_p=dropout_p)
        if not self.config.fast_attention:
            mask = causal_mask(t_q, t_k, device=q.device)  # (t_q, t_k)
            return scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=dropout_p)[0]
        # a single new query is the last position: it may see every key, so no mask is needed
        return fused_attention(q, k, v, is_causal=t_q > 1, dropout_p=dropout_p)


class Block(nn.Module):
    """A pre-norm Transformer block: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: GPTConfig, layer_index: int):
        super().__init__()
        self.attention_norm = make_norm(config)
        self.attention = CausalSelfAttention(config, layer_index)
        self.mlp_norm = make_norm(config)
        self.mlp = SwiGLU(config) if config.mlp == "swiglu" else GeluMLP(config)

    def forward(self, x: torch.Tensor, rope=None, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), rope, cache)  # (batch, time, n_embd)
        return x + self.mlp(self.mlp_norm(x))  # (batch, time, n_embd)


class GPT(nn.Module):
    """A decoder-only Transformer language model (see the module's docstring)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.n_embd)
        self.positions = None  # added to the embeddings (learned, sinusoidal); RoPE acts inside attention
        if config.position == "learned":
            self.positions = LearnedPositions(config.context_length, config.n_embd)
        elif config.position == "sinusoidal":
            self.positions = SinusoidalPositions(config.context_length, config.n_embd)
        self.rope = None
        if config.position == "rope":
            self.rope = RotaryEmbedding(config.head_dim, config.context_length, config.rope_theta)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.final_norm = make_norm(config)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.head.weight = self.token_embedding.weight  # one matrix: embed a token, score a token
        self.apply(self._init_weights)
        self._scale_residual_projections()

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2's initialisation: every matrix ~ N(0, 0.02²), biases 0, norms 1 (their default)."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def _scale_residual_projections(self) -> None:
        """Layers writing into the residual stream get std / √(2·n_layer): 2·n_layer of them add up,
        and this keeps the stream's variance at the start of training independent of depth."""
        std = self.config.init_std / math.sqrt(2 * self.config.n_layer)
        for block in self.blocks:
            nn.init.normal_(block.attention.out.weight, mean=0.0, std=std)
            nn.init.normal_(block.mlp.out.weight, mean=0.0, std=std)

    def new_cache(self, batch: int, max_length: int | None = None) -> KVCache:
        """An empty KV cache for `batch` sequences of up to max_length (default: the context) tokens."""
        c = self.config
        weight = self.token_embedding.weight
        return KVCache(c.n_layer, batch, c.kv_heads, max_length or c.context_length, c.head_dim,
                       device=weight.device, dtype=weight.dtype)

    def _check_tokens(self, idx: torch.Tensor, start: int | torch.Tensor) -> None:
        if idx.dim() != 2 or idx.dtype != torch.long:
            raise ValueError(f"idx must be a LongTensor of token ids (batch, time), got {idx.dtype} {tuple(idx.shape)}.")
        start = int(start.max()) if torch.is_tensor(start) else start  # the longest row
        if start + idx.shape[1] > self.config.context_length:
            raise ValueError(f"{start + idx.shape[1]} positions do not fit in context_length="
                             f"{self.config.context_length}; crop the input to its last "
                             f"{self.config.context_length - start} tokens.")
        if torch.compiler.is_compiling():  # a value check would break the compiled graph and wait on the GPU
            return
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.config.vocab_size):
            raise ValueError(f"token ids must lie in 0..{self.config.vocab_size - 1} (vocab_size), "
                             f"got {idx.min().item()}..{idx.max().item()}.")

    def hidden_states(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """The last block's output after the final norm: (batch, time, n_embd), one vector per token."""
        start = cache.length if cache is not None else 0  # tokens already in the cache come first (or one count per row)
        self._check_tokens(idx, start)
        time = idx.shape[1]
        x = self.token_embedding(idx)  # (batch, time, n_embd)
        if self.positions is not None:
            x = x + self.positions(time, start)  # (batch, time, n_embd) + (time, n_embd)
        rope = self.rope(time, start) if self.rope is not None else None  # (time, head_dim) twice
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x, rope, cache)  # (batch, time, n_embd)
        if cache is not None:
            cache.advance(time)
        return self.final_norm(x)  # (batch, time, n_embd)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                cache: KVCache | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits (batch, time, vocab), loss): the mean cross-entropy of predicting targets[b, t]
        from idx[b, :t+1], skipping targets equal to -100; loss is None without targets."""
        logits = self.head(self.hidden_states(idx, cache))  # (batch, time, vocab)
        if targets is None:
            return logits, None
        if targets.shape != idx.shape:
            raise ValueError(f"targets {tuple(targets.shape)} must have the shape of idx {tuple(idx.shape)}: "
                             f"one next token per position (use -100 where there is none).")
        loss = F.cross_entropy(rearrange(logits, "b t v -> (b t) v"), targets.flatten(), ignore_index=-100)
        return logits, loss

    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, stop_tokens=None, seed: int | None = None,
                 use_cache: bool = True) -> torch.Tensor:
        """`minilm.generate.generate` with this model: idx (batch, time) -> (batch, time + new)."""
        return generate(self, idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                        stop_tokens=stop_tokens, seed=seed, use_cache=use_cache)


class SeedTransformer(nn.Module):
    """The model the course starts from: embeddings, a stack of nn.TransformerEncoderLayer, a linear.

    Kept to show why it is not a language model: (1) no causal mask, so every position reads the
    tokens it should predict; (2) no positions, so shuffling the input only shuffles the output;
    (3) nn.TransformerEncoderLayer expects (time, batch, features) by default, so a (batch, time)
    input makes the sequences of a batch attend to each other. `GPT` fixes all three.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, num_heads: int, num_layers: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.transformer_layers = nn.ModuleList(
            nn.TransformerEncoderLayer(embedding_dim, num_heads) for _ in range(num_layers))
        self.linear = nn.Linear(embedding_dim, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embedding(x)  # whatever layout x has, the layers read it as (time, batch, features)
        for layer in self.transformer_layers:
            x = layer(x)
        return self.linear(x)


COMPONENTS = ("embeddings", "positions", "attention", "mlp", "norms", "head")


def _component(name: str) -> str:
    """Which component a parameter name belongs to."""
    if name.startswith("token_embedding."):
        return "embeddings"
    if name.startswith("positions."):
        return "positions"
    if name.startswith("head."):
        return "head"
    if ".attention." in name:
        return "attention"
    if ".mlp." in name:
        return "mlp"
    return "norms"  # attention_norm, mlp_norm, final_norm


def count_parameters(model: GPT) -> dict[str, int]:
    """Trainable numbers per component, and their total; a tied head counts once, as embeddings."""
    counts = dict.fromkeys(COMPONENTS, 0)
    for name, parameter in model.named_parameters():  # shared (tied) parameters are listed once
        counts[_component(name)] += parameter.numel()
    counts["total"] = sum(counts.values())
    return counts


def flops_per_token(config: GPTConfig, sequence_length: int | None = None) -> dict[str, int]:
    """Training FLOPs per token (forward + backward): the 6N rule plus attention's own term.

    N counts the weights of every matrix multiply a token goes through (the blocks' linear layers
    and the head; an embedding lookup multiplies nothing). A multiply-add is 2 FLOPs, so the forward
    pass costs 2N per token and the backward twice that: 6N. Attention also multiplies activations
    by activations: at sequence length T each query meets T keys (QKᵀ) and T values, 4·T·n_embd per
    layer forward, 12·n_layer·T·n_embd for training (the mask is not subtracted: a dense kernel
    computes the masked half too). Biases, norms and softmax are left out: they are O(n_embd).
    """
    c = config
    time = sequence_length or c.context_length
    kv_width = c.kv_heads * c.head_dim
    attention_weights = c.n_embd * (c.n_embd + 2 * kv_width) + c.n_embd * c.n_embd  # qkv and out
    mlp_weights = (3 if c.mlp == "swiglu" else 2) * c.n_embd * c.mlp_width
    matmul_parameters = c.n_layer * (attention_weights + mlp_weights) + c.n_embd * c.vocab_size
    dense = 6 * matmul_parameters
    attention = 12 * c.n_layer * time * c.n_embd
    return {"matmul_parameters": matmul_parameters, "dense": dense, "attention": attention,
            "forward": (dense + attention) // 3, "training": dense + attention}
