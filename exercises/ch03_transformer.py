"""Chapter 3 exercises: a GPT built from its pieces.

Write each function below (replace `raise NotImplementedError`), then check your answers with:

    ./course exercise ch03_transformer

(or `pytest tests/exercises/test_ch03_transformer.py --student`). The pieces build on each other:
`layer_norm` and `causal_self_attention` make `transformer_block`, the blocks make `gpt_forward`,
which `build_gpt` wraps in a trainable module, and `kv_cache_step` decodes one token with a cache.
The tests copy the weights of minilm's own GPT (chapter 3's notebook shows it equals the one written
there by hand) and compare logits in float64, and also check PyTorch's LayerNorm and
MultiheadAttention, Hugging Face's GPT-2 and brute-force sampling. The solutions are in
solutions/ch03_transformer.py; try first.
"""
import torch
from torch import nn

from minilm.model import GPTConfig


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
    raise NotImplementedError


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
    raise NotImplementedError


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
    raise NotImplementedError


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
