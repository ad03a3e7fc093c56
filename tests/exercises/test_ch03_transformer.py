"""Chapter 3 exercises, checked against minilm's own GPT (weights copied, float64), PyTorch's LayerNorm
and MultiheadAttention, Hugging Face's GPT-2 and brute-force sampling."""
import random

import pytest
import torch
import torch.nn.functional as F

import minilm.model
from minilm.model import GPT, GPTConfig
from tests.exercises.harness import load_chapter

ex = load_chapter("ch03_transformer")

SEEDS = [0, 1, 2, 3]  # each seed draws one configuration (1-3 layers, 1, 2 or 4 heads) and its weights


def random_config(seed: int) -> GPTConfig:
    """A small GPT-2-family configuration drawn from `seed`: its depth, heads, head size, vocabulary, context."""
    draw = random.Random(seed)
    n_layer, n_head = [(1, 1), (2, 2), (3, 4), (2, 4)][seed % 4]  # every depth and head count is met
    return GPTConfig(vocab_size=draw.randint(8, 40), context_length=draw.randint(6, 16), n_layer=n_layer,
                     n_head=n_head, n_embd=n_head * draw.choice([4, 8]), family="gpt2")


def random_model(config: GPTConfig, seed: int) -> GPT:
    """minilm's GPT in float64 with weights large enough that every piece (mask, scale, GELU form,
    positions, norms, biases) changes the logits well beyond the tests' tolerance."""
    torch.manual_seed(seed)
    model = GPT(config).double().eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() == 2:
                parameter.normal_(0.0, parameter.shape[1] ** -0.5)
            else:  # biases around 0, LayerNorm gains around 1
                parameter.normal_(1.0 if name.endswith("norm.weight") else 0.0, 0.3)
    return model


def random_ids(config: GPTConfig, batch: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.vocab_size, (batch, config.context_length), generator=generator)


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


@pytest.mark.parametrize("seed", SEEDS)
def test_transformer_block_matches_minilm_block(seed):
    config = random_config(seed)
    model = random_model(config, seed)
    x = torch.randn(2, config.context_length, config.n_embd, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(seed))
    for block in model.blocks:
        with torch.no_grad():
            expected = block(x)
        torch.testing.assert_close(ex.transformer_block(x, block.state_dict(), config.n_head), expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_gpt_forward_matches_minilm_logits(seed):
    config = random_config(seed)
    model = random_model(config, seed)
    ids = random_ids(config, seed=seed)  # the whole context: every position vector is used
    with torch.no_grad():
        expected, _ = model(ids)
    logits = ex.gpt_forward(ids, model.state_dict(), config.n_head)
    assert logits.shape == (2, config.context_length, config.vocab_size)
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(ex.gpt_forward(ids[:, :3], model.state_dict(), config.n_head), expected[:, :3])


def _sdpa_without_mask(q, k, v, is_causal=False, dropout_p=0.0):
    return F.scaled_dot_product_attention(q, k, v)


def _sdpa_without_scale(q, k, v, is_causal=False, dropout_p=0.0):
    return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, scale=1.0)


@pytest.mark.parametrize("mistake", ["no causal mask", "no 1/sqrt(head_dim)", "exact GELU instead of tanh"])
def test_the_logit_comparison_catches_common_mistakes(mistake, monkeypatch):
    """The tests above compare in float64 at torch's default tolerance (1e-7): a model with one of
    these mistakes is far outside it, so an answer that makes it fails them."""
    config = random_config(3)
    model = random_model(config, 3)
    ids = random_ids(config)
    with torch.no_grad():
        right, _ = model(ids)
        if mistake == "no causal mask":
            monkeypatch.setattr(minilm.model, "fused_attention", _sdpa_without_mask)
        elif mistake == "no 1/sqrt(head_dim)":
            monkeypatch.setattr(minilm.model, "fused_attention", _sdpa_without_scale)
        else:
            exact_gelu = F.gelu
            monkeypatch.setattr(F, "gelu", lambda x, approximate="none": exact_gelu(x))
        wrong, _ = model(ids)
    assert (wrong - right).abs().max() > 1e-4
    assert not torch.allclose(wrong, right, rtol=1.3e-6, atol=1e-5)  # outside even float32's tolerance


@pytest.mark.parametrize("seed", SEEDS)
def test_build_gpt_has_minilm_names_and_gives_its_logits(seed):
    config = random_config(seed)
    model = random_model(config, seed)
    mine = ex.build_gpt(config)
    assert isinstance(mine, torch.nn.Module)
    theirs = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    ours = {name: tuple(t.shape) for name, t in mine.state_dict().items()}
    assert ours.keys() == theirs.keys(), f"names differ: {sorted(set(ours) ^ set(theirs))}"
    assert ours == theirs
    mine.double().load_state_dict(model.state_dict())  # float64 first, so the copy loses nothing
    mine.eval()
    ids = random_ids(config, seed=seed)
    with torch.no_grad():
        logits = mine(ids)
        expected, _ = model(ids)
    assert isinstance(logits, torch.Tensor), "forward(idx) returns the logits alone (batch, time, vocab)"
    torch.testing.assert_close(logits, expected)


def test_build_gpt_trains_and_keeps_its_head_tied():
    config = random_config(1)
    torch.manual_seed(0)
    mine = ex.build_gpt(config)
    assert sum(p.numel() for p in mine.parameters()) == sum(p.numel() for p in GPT(config).parameters())
    ids = random_ids(config, batch=4)
    optimizer = torch.optim.Adam(mine.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        logits = mine(ids[:, :-1])  # (batch, time - 1, vocab)
        loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        if not losses:
            untouched = [name for name, p in mine.named_parameters() if p.grad is None or not p.grad.any()]
            assert not untouched, f"no gradient reaches {untouched}"
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5, f"30 Adam steps on one batch: the loss went {losses[0]:.3f} -> {losses[-1]:.3f}"
    state = mine.state_dict()
    assert torch.equal(state["head.weight"], state["token_embedding.weight"]), \
        "the head must stay tied to the token embeddings (one shared matrix)"


@pytest.mark.parametrize("seed", SEEDS)
def test_kv_cache_step_decodes_like_the_full_forward(seed):
    config = random_config(seed)
    model = random_model(config, seed)
    weights = model.state_dict()
    ids = random_ids(config, seed=seed)
    with torch.no_grad():
        full, _ = model(ids)  # (batch, time, vocab): no cache
        minilm_cache = model.new_cache(batch=2)
        model(ids, cache=minilm_cache)
    cache = []
    for t in range(config.context_length):
        logits, cache = ex.kv_cache_step(ids[:, t], cache, weights, config.n_head)
        torch.testing.assert_close(logits, full[:, t], msg=lambda m: f"step {t}: {m}")
        assert len(cache) == config.n_layer
        for keys, values in cache:
            assert keys.shape == values.shape == (2, config.n_head, t + 1, config.head_dim)
    for layer, (keys, values) in enumerate(cache):  # the same keys and values minilm's KVCache stored
        torch.testing.assert_close(keys, minilm_cache.keys[layer])
        torch.testing.assert_close(values, minilm_cache.values[layer])


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_kv_cache_step_reads_the_cache_it_is_given(seed):
    """A cache filled by minilm from the prompt: the step must take the earlier tokens from it."""
    config = random_config(seed)
    model = random_model(config, seed)
    ids = random_ids(config, seed=seed)
    prompt = config.context_length - 1
    with torch.no_grad():
        full, _ = model(ids)
        minilm_cache = model.new_cache(batch=2)
        model(ids[:, :prompt], cache=minilm_cache)
    cache = [(minilm_cache.keys[layer, :, :, :prompt], minilm_cache.values[layer, :, :, :prompt])
             for layer in range(config.n_layer)]
    logits, _ = ex.kv_cache_step(ids[:, prompt], cache, model.state_dict(), config.n_head)
    torch.testing.assert_close(logits, full[:, prompt])


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
