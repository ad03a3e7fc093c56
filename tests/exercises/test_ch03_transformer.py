"""Chapter 3 exercises, checked against PyTorch's LayerNorm and MultiheadAttention, Hugging Face's
GPT-2 and brute-force sampling."""
import pytest
import torch
import torch.nn.functional as F

from tests.exercises.harness import load_chapter

ex = load_chapter("ch03_transformer")


@pytest.mark.parametrize("shape", [(7,), (2, 5, 16)])
def test_layer_norm_matches_torch(shape):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64, generator=generator) * 3 + 1
    weight, bias = torch.randn(2, shape[-1], dtype=torch.float64, generator=generator)
    expected = F.layer_norm(x, (shape[-1],), weight, bias, eps=1e-5)
    torch.testing.assert_close(ex.layer_norm(x, weight, bias), expected)
    torch.testing.assert_close(ex.layer_norm(x, weight, bias, eps=0.5), F.layer_norm(x, (shape[-1],), weight, bias, 0.5))


@pytest.mark.parametrize("n_head", [1, 4])
def test_causal_self_attention_matches_torch_multihead_attention(n_head):
    torch.manual_seed(0)
    batch, time, d = 2, 6, 16
    reference = torch.nn.MultiheadAttention(d, n_head, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        reference.in_proj_bias.normal_()
        reference.out_proj.bias.normal_()
    x = torch.randn(batch, time, d, dtype=torch.float64)
    future = torch.ones(time, time, dtype=torch.bool).triu(1)  # PyTorch's convention: True = may NOT attend
    expected, _ = reference(x, x, x, attn_mask=future, need_weights=False)
    ours = ex.causal_self_attention(x, reference.in_proj_weight, reference.in_proj_bias,
                                    reference.out_proj.weight, reference.out_proj.bias, n_head)
    torch.testing.assert_close(ours, expected)


def test_causal_self_attention_rejects_an_uneven_split():
    x = torch.randn(1, 3, 10)
    with pytest.raises(ValueError):
        ex.causal_self_attention(x, torch.randn(30, 10), torch.zeros(30), torch.randn(10, 10), torch.zeros(10), 3)


@pytest.mark.parametrize("vocab, context, layers, width", [(50, 16, 1, 8), (1000, 64, 3, 48)])
def test_count_gpt2_parameters_matches_hugging_face(vocab, context, layers, width):
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=context, n_layer=layers, n_embd=width,
                                       n_head=2, bos_token_id=None, eos_token_id=None))
    assert ex.count_gpt2_parameters(vocab, context, layers, width) == sum(p.numel() for p in model.parameters())


def test_top_k_sample_draws_only_the_k_best_in_proportion():
    logits = torch.tensor([[0.5, 2.0, -1.0, 1.5, 0.0, 1.0]]).repeat(30_000, 1)
    draws = ex.top_k_sample(logits, 3, generator=torch.Generator().manual_seed(0))
    assert draws.shape == (30_000,) and draws.dtype == torch.long
    best = sorted(range(6), key=lambda i: logits[0, i].item(), reverse=True)[:3]  # brute force: ranks by hand
    weights = torch.tensor([logits[0, i].exp().item() if i in best else 0.0 for i in range(6)])
    frequencies = torch.bincount(draws, minlength=6) / len(draws)
    torch.testing.assert_close(frequencies, weights / weights.sum(), rtol=0, atol=0.012)


def test_top_k_sample_is_greedy_at_k_1_and_reproducible_with_a_generator():
    logits = torch.randn(8, 20, generator=torch.Generator().manual_seed(1))
    assert torch.equal(ex.top_k_sample(logits, 1), logits.argmax(-1))
    first = ex.top_k_sample(logits, 5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(ex.top_k_sample(logits, 5, generator=torch.Generator().manual_seed(3)), first)
    with pytest.raises(ValueError):
        ex.top_k_sample(logits, 0)
    with pytest.raises(ValueError):
        ex.top_k_sample(logits, 21)
