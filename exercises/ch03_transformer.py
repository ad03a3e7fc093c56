"""Chapter 3 exercises: the pieces of a Transformer by hand.

Write each function below (replace `raise NotImplementedError`), then check your answers with:

    ./course exercise ch03_transformer

(or `pytest tests/exercises/test_ch03_transformer.py --student`). The tests compare your answers with
PyTorch's LayerNorm and MultiheadAttention, Hugging Face's GPT-2 and brute-force sampling. The
solutions are in solutions/ch03_transformer.py; try first.
"""
import torch


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm over the last dimension: (x - mean) / sqrt(variance + eps) · weight + bias.

    The mean and the (biased, divide-by-n) variance are taken over the features of each vector;
    weight and bias have one entry per feature. Do not call F.layer_norm or nn.LayerNorm.
    """
    raise NotImplementedError


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
    raise NotImplementedError


def count_gpt2_parameters(vocab_size: int, context_length: int, n_layer: int, n_embd: int) -> int:
    """The number of trainable parameters of a GPT-2 model with a tied head.

    Token embeddings (vocab × d) and learned positions (context × d); per block two LayerNorms
    (weight and bias each), the attention (qkv: d → 3d, output: d → d, with biases) and the MLP
    (d → 4d → d, with biases); a final LayerNorm. The head reuses the token embeddings.
    """
    raise NotImplementedError


def top_k_sample(logits: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row of logits (batch, vocab), drawn from the softmax of the k largest logits only.

    Every token outside a row's k largest logits must have probability zero; the k kept tokens keep
    their relative probabilities. Use torch.multinomial(..., generator=generator). Returns (batch,).
    Raise ValueError if k is not between 1 and vocab.
    """
    raise NotImplementedError
