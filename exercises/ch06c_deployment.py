"""Chapter 6c exercises: three pieces of serving a model, by hand: the attention mask of a KV cache
whose rows hold different numbers of tokens (continuous batching), the exponential race that draws
one token per row from each request's own generator, and per-channel absmax int8 quantisation.

Write each function below (replace `raise NotImplementedError`), then check your answers with:

    ./course exercise ch06c_deployment

(or `pytest tests/exercises/test_ch06c_deployment.py --student`). The tests compare your mask with a
brute-force triple loop and with minilm.deploy.batching.SlotCache.attention_mask, your race with
torch.multinomial given generators of the same seeds (and with the frequencies of 4000 draws), and
your int8 weights and scales with torch.quantize_per_channel, float64 scales, the half-step error
bound and minilm.deploy.quantize.Int8Linear.from_linear. The solutions are in
solutions/ch06c_deployment.py; chapter 6c's notebook (notebooks/06c_deployment.ipynb) explains each idea.
"""
import torch


def ragged_attention_mask(lengths: torch.Tensor, t_q: int) -> torch.Tensor:
    """The mask of a batch whose rows each hold their own number of tokens: bool (batch, 1, t_q, t_k).

    lengths (batch,), batch >= 1: the tokens row b already holds in the KV cache. The pass adds t_q
    new tokens to every row, so query i of row b sits at position lengths[b] + i, and the keys read
    are positions 0..t_k - 1 with t_k = max(lengths) + t_q (the longest row's cache plus the new
    tokens; a shorter row's entries past its own tokens are stale or padding). Entry [b, 0, i, j] is
    True where that query may see key j: j <= lengths[b] + i, its own row's earlier tokens and
    itself. The 1 broadcasts over the attention heads.
    Hint: compare torch.arange(t_k) with a (batch, t_q, 1) tensor of query positions.
    Raise ValueError if lengths is not a 1-D tensor of at least one length, if a length is negative,
    or if t_q < 1.
    >>> mask = ragged_attention_mask(torch.tensor([2, 0]), 2)  # rows holding 2 and 0 tokens, 2 new each
    >>> mask.shape
    torch.Size([2, 1, 2, 4])
    >>> mask[:, 0].int().tolist()  # row 0's queries sit at positions 2, 3; row 1's at 0, 1
    [[[1, 1, 1, 0], [1, 1, 1, 1]], [[1, 0, 0, 0], [1, 1, 0, 0]]]
    """
    raise NotImplementedError


def exponential_race(probs: torch.Tensor, generators: list) -> list[int]:
    """One token per row of probs (batch, vocab), each drawn with the row's own generator.

    Row b of probs is a distribution (non-negative, summing to 1; a top-k or top-p filter leaves
    zeros). For row b draw vocab independent times q_i ~ Exp(1), (vocab,), with
    `torch.empty(vocab, dtype=probs.dtype).exponential_(generator=generators[b])` (or
    `.exponential_` on row b of a (batch, vocab) tensor); the row's token is argmax_i p_i / q_i.
    Why that draws token i with probability p_i: q_i / p_i is exponential with rate p_i, so the
    largest p_i / q_i is the smallest of independent exponential times with rates p_i, and the
    smallest of such times is time i with probability p_i / Σ_j p_j = p_i (a token with p_i = 0
    never wins). This is how torch.multinomial draws one sample, so with a generator of the same
    seed, torch.multinomial(probs[b:b+1], 1, generator=...) chooses the same token; a batching
    server can then make one batched choice per step and still give each request the text it would
    get alone. Return the tokens as a list of Python ints.
    Hint: the draws are made row by row (each generator in turn); the division and argmax over
    dim=-1 can be done for the whole batch at once.
    Raise ValueError if probs is not 2-D or len(generators) is not its number of rows.
    >>> exponential_race(torch.tensor([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]]),
    ...                  [torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)])
    [1, 2]
    >>> torch.multinomial(torch.tensor([[0.2, 0.3, 0.5]]), 1, generator=torch.Generator().manual_seed(0)).item()
    2
    """
    raise NotImplementedError


def absmax_quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel absmax int8: weight (out, in) float -> (q int8 (out, in), scale float32 (out,)).

    Each row o (one output channel) gets its own scale, its largest magnitude mapped to 127:
    scale[o] = max_i |W[o, i]| / 127, and q[o, i] = round(W[o, i] / scale[o]), clamped to
    -127..127, so that W ≈ q · scale, each weight off by at most scale[o] / 2. A row of zeros
    would get scale 0 (and 0 / 0): give it scale 1.0, as minilm.deploy.quantize does (any positive
    scale stores its zeros exactly). Compute in float32 on the detached weight.
    Hint: amax(dim=1) gives the row maxima; torch.round rounds halves to even, as PyTorch's
    quantisers do, and they multiply by the float32 inverse 1 / scale (W / scale can round the other
    way when W / scale lies within a rounding error of a half: the tests compare with
    torch.quantize_per_channel, so prefer W · (1 / scale)).
    Raise ValueError if weight is not 2-D.
    >>> absmax_quantize(torch.tensor([[0.5, -1.27, 0.0], [0.0, 0.0, 0.0]]))
    (tensor([[  50, -127,    0],
            [   0,    0,    0]], dtype=torch.int8), tensor([0.0100, 1.0000]))
    """
    raise NotImplementedError
