"""Chapter 3 exercises, solved."""
import torch
from einops import rearrange

from minilm.attention import causal_mask, scaled_dot_product_attention


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
