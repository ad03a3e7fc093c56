"""Chapter 6c exercises against independent references: the ragged attention mask against a
brute-force triple loop and against minilm.deploy.batching.SlotCache.attention_mask (or the plain
causal mask when every row holds the same length), the exponential race against torch.multinomial
with generators of the same seeds and against the frequencies of 4000 draws, and absmax
quantisation against torch.quantize_per_channel, a float64 computation of the scales, the half-step
error bound, and minilm.deploy.quantize.Int8Linear.from_linear."""
import random
import warnings

import pytest
import torch
from torch import nn

from minilm.attention import causal_mask
from minilm.deploy.batching import SlotCache
from minilm.deploy.quantize import Int8Linear
from minilm.model import GPT, GPTConfig
from tests.exercises.harness import load_chapter

CHAPTER = "ch06c_deployment"
ex = load_chapter(CHAPTER)


# The ragged attention mask ---------------------------------------------------------------------------

def brute_mask(lengths, t_q):
    """(batch, t_q, t_k) nested lists: query i of row b sits at position lengths[b] + i."""
    t_k = max(lengths) + t_q
    return [[[j <= length + i for j in range(t_k)] for i in range(t_q)] for length in lengths]


def checked_mask(lengths, t_q):
    mask = ex.ragged_attention_mask(torch.tensor(lengths), t_q)
    assert mask.dtype == torch.bool, "return a bool mask"
    assert tuple(mask.shape) == (len(lengths), 1, t_q, max(lengths) + t_q), "(batch, 1, t_q, max(lengths) + t_q)"
    return mask


def test_mask_matches_a_brute_force_triple_loop():
    rng = random.Random(0)
    cases = [([2, 0], 2), ([0], 1), ([5], 3), ([3, 3, 3], 1)]
    cases += [([rng.randint(0, 10) for _ in range(rng.randint(1, 6))], rng.randint(1, 5)) for _ in range(40)]
    for lengths, t_q in cases:
        assert checked_mask(lengths, t_q)[:, 0].tolist() == brute_mask(lengths, t_q), f"lengths {lengths}, t_q {t_q}"


def test_mask_matches_minilms_slot_cache():
    torch.manual_seed(0)
    cache = SlotCache(GPT(GPTConfig(vocab_size=50, context_length=32, n_layer=1, n_head=2, n_embd=16)), slots=5)
    rng = random.Random(1)
    for trial in range(30):
        t_q = rng.randint(1, 4)
        stored = [rng.randint(0, 12) for _ in range(5)] if trial % 3 else [rng.randint(0, 12)] * 5
        rows = rng.sample(range(5), rng.randint(1, 5))  # the slots this pass uses, in any order
        cache.lengths[:] = torch.tensor(stored)
        cache.use(rows)
        lengths = [stored[row] for row in rows]
        expected = cache.attention_mask(t_q)  # None when the rows all hold the same number of tokens
        if expected is None:
            expected = causal_mask(t_q, max(lengths) + t_q).expand(len(rows), 1, -1, -1)
        assert torch.equal(checked_mask(lengths, t_q), expected), f"lengths {lengths}, t_q {t_q}"


@pytest.mark.parametrize("lengths,t_q", [(torch.tensor([[1, 2]]), 1), (torch.tensor(3), 1),
                                         (torch.tensor([2, -1]), 1), (torch.tensor([2, 1]), 0)])
def test_mask_rejects_bad_inputs(lengths, t_q):
    with pytest.raises(ValueError):
        ex.ragged_attention_mask(lengths, t_q)


# The exponential race --------------------------------------------------------------------------------

def random_probs(rng, batch, vocab, dtype, top_k=None):
    g = torch.Generator().manual_seed(rng.randrange(10**6))
    logits = torch.randn(batch, vocab, generator=g, dtype=dtype) * rng.choice([0.5, 1.0, 3.0])  # (batch, vocab)
    if top_k is not None:  # a top-k filter: every token below the k-th largest gets probability 0
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (batch, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.softmax(logits, dim=-1)  # (batch, vocab)


def test_race_chooses_what_torch_multinomial_chooses_with_the_same_seeds():
    rng = random.Random(2)
    for trial in range(60):
        batch, vocab = rng.randint(1, 6), rng.randint(2, 80)
        top_k = rng.randint(1, vocab) if trial % 2 else None
        probs = random_probs(rng, batch, vocab, rng.choice([torch.float32, torch.float64]), top_k)
        seeds = [rng.randrange(2**31) for _ in range(batch)]
        tokens = ex.exponential_race(probs, [torch.Generator().manual_seed(s) for s in seeds])
        expected = [torch.multinomial(probs[b:b + 1], 1, generator=torch.Generator().manual_seed(s)).item()
                    for b, s in enumerate(seeds)]
        assert isinstance(tokens, list) and all(type(t) is int for t in tokens), "return a list of Python ints"
        assert tokens == expected, f"trial {trial}: seeds {seeds}"
        assert all(probs[b, t] > 0 for b, t in enumerate(tokens)), "a token of probability 0 never wins"


def test_race_frequencies_match_the_probabilities():
    p, n = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64), 4000
    tokens = ex.exponential_race(p.expand(n, 4).clone(), [torch.Generator().manual_seed(9000 + i) for i in range(n)])
    frequencies = torch.bincount(torch.tensor(tokens), minlength=4).double() / n
    assert ((frequencies - p).abs() <= 4 * (p * (1 - p) / n).sqrt()).all(), f"frequencies {frequencies.tolist()}"


def test_race_rejects_bad_inputs():
    with pytest.raises(ValueError):
        ex.exponential_race(torch.tensor([0.5, 0.5]), [torch.Generator()])
    with pytest.raises(ValueError):
        ex.exponential_race(torch.full((3, 2), 0.5), [torch.Generator(), torch.Generator()])


# Absmax int8 quantisation ----------------------------------------------------------------------------

def weights():
    g = torch.Generator().manual_seed(3)
    outlier, with_zero_row = torch.randn(8, 12, generator=g), torch.randn(8, 12, generator=g)
    outlier[2, 5], with_zero_row[3] = 50.0, 0.0
    spread = torch.randn(9, 23, generator=g) * torch.logspace(-3, 1, 9)[:, None]  # rows of very different sizes
    return [torch.randn(67, 129, generator=g), torch.randn(5, 3, generator=g) * 1e-4,
            torch.randn(40, 16, generator=g) * 30, outlier, with_zero_row, spread]


@pytest.mark.parametrize("index", range(6))
def test_quantize_matches_torch_and_float64_scales(index):
    w = weights()[index]
    q, scale = ex.absmax_quantize(w)
    assert q.dtype == torch.int8 and tuple(q.shape) == tuple(w.shape), "q is int8, (out, in)"
    assert scale.dtype == torch.float32 and tuple(scale.shape) == (w.shape[0],), "scale is float32, (out,)"
    absmax = w.double().abs().amax(dim=1)  # (out,)
    expected_scale = torch.where(absmax > 0, absmax / 127, torch.ones_like(absmax)).float()  # a zero row: 1.0
    torch.testing.assert_close(scale, expected_scale, rtol=2.4e-7, atol=0,  # within a float32 bit or two
                               msg=lambda m: f"scale[o] = max_i |W[o, i]| / 127 (1.0 for a row of zeros): {m}")
    with warnings.catch_warnings():  # recent torch marks its quantized tensors deprecated; they still work
        warnings.simplefilter("ignore")
        zeros = torch.zeros(w.shape[0], dtype=torch.long)
        reference = torch.quantize_per_channel(w, scale.double(), zeros, axis=0, dtype=torch.qint8).int_repr()
    assert torch.equal(q, reference), "q = round(W · (1 / scale)) per row, as torch.quantize_per_channel rounds"
    error = (q.double() * scale.double()[:, None] - w.double()).abs()  # (out, in)
    assert (error <= scale.double()[:, None] * (0.5 + 1e-6) + 1e-30).all(), "each weight off by at most scale / 2"
    assert (q.abs().amax(dim=1)[absmax > 0] == 127).all(), "each row's largest magnitude becomes ±127"


def test_quantize_equals_minilms_int8_linear():
    torch.manual_seed(4)
    linear = nn.Linear(24, 10)
    linear.weight.data[7] = 0  # a zero row too
    q, scale = ex.absmax_quantize(linear.weight)  # a parameter that requires grad: quantise its values
    reference = Int8Linear.from_linear(linear)
    torch.testing.assert_close(scale, reference.scale, rtol=2.4e-7, atol=0)  # absmax · (1/127) may differ a bit
    same = scale == reference.scale  # (out,): where the scales agree to the bit, so must the int8 values
    assert torch.equal(q[same], reference.weight_int8[same]) and (q.int() - reference.weight_int8).abs().max() <= 1
    assert torch.equal(q[7], torch.zeros(24, dtype=torch.int8)) and scale[7].item() == 1.0, \
        "a row of zeros: q = 0 and scale 1.0"


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)])
def test_quantize_rejects_a_weight_that_is_not_a_matrix(shape):
    with pytest.raises(ValueError):
        ex.absmax_quantize(torch.randn(shape))
