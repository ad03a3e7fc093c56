"""minilm.generate: the sampling filters by brute force, seeds, stop tokens, errors, and a KV cache
that gives exactly the tokens of generation without it."""
import math
import random

import pytest
import torch

from minilm.generate import KVCache, filter_top_k, filter_top_p, next_token
from minilm.model import GPT, GPTConfig

VOCAB = 29


def tiny_model(family="gpt2", **overrides):
    torch.manual_seed(0)
    config = GPTConfig(**(dict(vocab_size=VOCAB, context_length=24, n_layer=2, n_head=4, n_embd=32, family=family)
                          | overrides))
    model = GPT(config)
    with torch.no_grad():  # logits of standard deviation ~2 (not ~0.1), so sampling is far from uniform
        model.final_norm.weight.mul_(15)
    return model.eval()


def prompt(batch=2, time=5, seed=1):
    return torch.randint(0, VOCAB, (batch, time), generator=torch.Generator().manual_seed(seed))


def distinct_logits(rows, vocab, seed):
    """Logits whose probabilities have no ties, so the filters' choices are unambiguous."""
    rng = random.Random(seed)
    return torch.tensor([rng.sample(range(vocab * 10), vocab) for _ in range(rows)], dtype=torch.float32) / 7


@pytest.mark.parametrize("k", [1, 3, 10, 12])
def test_top_k_keeps_exactly_the_k_largest(k):
    logits = distinct_logits(4, 12, seed=k)
    filtered = filter_top_k(logits, k)
    for row, kept in zip(logits.tolist(), filtered.tolist()):
        largest = sorted(range(len(row)), key=lambda i: row[i], reverse=True)[:k]
        assert [i for i, x in enumerate(kept) if x != -math.inf] == sorted(largest)
        assert all(kept[i] == row[i] for i in largest)


@pytest.mark.parametrize("p", [0.05, 0.3, 0.6, 0.9, 1.0])
def test_top_p_keeps_the_smallest_nucleus_reaching_p(p):
    logits = distinct_logits(5, 15, seed=int(p * 100))
    filtered = filter_top_p(logits, p)
    for row, kept in zip(logits.tolist(), filtered.tolist()):
        probs = [math.exp(x) for x in row]
        probs = [q / sum(probs) for q in probs]
        nucleus, mass = [], 0.0  # brute force: add tokens, most likely first, until the mass reaches p
        for i in sorted(range(len(row)), key=lambda i: probs[i], reverse=True):
            nucleus.append(i)
            mass += probs[i]
            if mass >= p:
                break
        assert [i for i, x in enumerate(kept) if x != -math.inf] == sorted(nucleus)


def test_sampling_follows_the_tempered_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(20_000, 1)
    generator = torch.Generator().manual_seed(0)
    for temperature in (0.5, 2.0):
        draws = next_token(logits, temperature=temperature, generator=generator)
        frequencies = torch.bincount(draws, minlength=4) / len(draws)
        expected = torch.softmax(logits[0] / temperature, dim=-1)
        torch.testing.assert_close(frequencies, expected, rtol=0, atol=0.015)


def test_greedy_and_top_k_1_pick_the_argmax():
    logits = distinct_logits(6, 10, seed=3)
    assert torch.equal(next_token(logits, temperature=0), logits.argmax(-1))
    assert torch.equal(next_token(logits, temperature=1.5, top_k=1), logits.argmax(-1))


MODELS = {"gpt2": {}, "gpt2-sinusoidal": {"position": "sinusoidal"}, "llama-gqa": {"family": "llama", "n_kv_head": 2},
          "formula": {"fast_attention": False}}


@pytest.mark.parametrize("name", MODELS)
def test_cached_forward_gives_the_logits_of_a_full_forward(name):
    model = tiny_model(**MODELS[name])
    idx = prompt(2, 12)
    cache = model.new_cache(batch=2)
    with torch.no_grad():
        pieces = [model(idx[:, :5], cache=cache)[0]] + [model(idx[:, t:t + 1], cache=cache)[0] for t in range(5, 12)]
        torch.testing.assert_close(torch.cat(pieces, dim=1), model(idx)[0], rtol=1e-5, atol=1e-4)
    assert cache.length == 12


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("sampling", [dict(temperature=0), dict(temperature=1.0, seed=7),
                                      dict(temperature=0.8, top_k=5, top_p=0.9, seed=3)])
def test_the_kv_cache_gives_exactly_the_tokens_of_generation_without_it(name, sampling):
    model = tiny_model(**MODELS[name])
    idx = prompt(2, 5)
    max_new = 30  # 5 + 30 > context_length=24: the last steps slide the window
    with_cache = model.generate(idx, max_new, use_cache=True, **sampling)
    without = model.generate(idx, max_new, use_cache=False, **sampling)
    assert with_cache.shape == (2, 35)
    assert torch.equal(with_cache, without)
    assert torch.equal(with_cache[:, :5], idx)


def test_greedy_generation_takes_the_argmax_of_the_full_forward_each_step():
    model = tiny_model()
    out = model.generate(prompt(1, 4), 6, temperature=0)
    with torch.no_grad():
        for t in range(4, 10):
            assert out[0, t] == model(out[:, :t])[0][0, -1].argmax()


def test_a_seed_reproduces_a_sample_and_leaves_the_global_generator_alone():
    model = tiny_model()
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = model.generate(prompt(), 20, seed=5)
    assert torch.equal(torch.rand(1), before)
    assert torch.equal(model.generate(prompt(), 20, seed=5), first)
    assert not torch.equal(model.generate(prompt(), 20, seed=6), first)


def test_stop_tokens_end_a_row_which_then_repeats_its_stop():
    model = tiny_model()
    idx = prompt(2, 5)
    free = model.generate(idx, 12, temperature=0)
    stop = free[0, 8].item()  # the 4th new token of row 0
    stopped = model.generate(idx, 12, temperature=0, stop_tokens=[stop])
    row0_end = 5 + next(t for t in range(12) if free[0, 5 + t] == stop) + 1
    assert torch.equal(stopped[0, :row0_end], free[0, :row0_end])
    assert torch.all(stopped[0, row0_end:] == stop)
    if stop not in free[1, 5:].tolist():  # row 1 never stops: it runs to max_new_tokens
        assert torch.equal(stopped[1], free[1])


def test_generation_ends_when_every_row_has_stopped():
    model = tiny_model()
    idx = prompt(1, 5)
    free = model.generate(idx, 10, temperature=0)
    out = model.generate(idx, 10, temperature=0, stop_tokens=[free[0, 6].item()])
    first = next(t for t in range(5, 15) if free[0, t] == free[0, 6])
    assert torch.equal(out, free[:, :first + 1])


def test_generation_restores_the_training_mode():
    model = tiny_model(dropout=0.2).train()
    idx = prompt()
    assert torch.equal(model.generate(idx, 8, temperature=0), model.generate(idx, 8, temperature=0))  # no dropout
    assert model.training


@pytest.mark.parametrize("bad, message", [
    (dict(temperature=-1), "temperature"), (dict(top_k=0), "top_k"), (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"), (dict(max_new_tokens=-1), "max_new_tokens"),
])
def test_bad_settings_say_what_to_use(bad, message):
    settings = dict(max_new_tokens=3) | bad
    with pytest.raises(ValueError, match=message):
        tiny_model().generate(prompt(), **settings)


def test_prompts_that_do_not_fit_are_an_error():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"the prompt has 25 tokens.*idx\[:, -24:\]"):
        model.generate(prompt(1, 25), 3)
    with pytest.raises(ValueError, match="the prompt has 0 tokens"):
        model.generate(prompt(1, 0), 3)
    with pytest.raises(ValueError, match="LongTensor"):
        model.generate(prompt().float(), 3)


def test_a_full_cache_is_an_error():
    cache = KVCache(n_layer=1, batch=1, n_kv_head=1, max_length=4, head_dim=2)
    cache.update(0, torch.zeros(1, 1, 3, 2), torch.zeros(1, 1, 3, 2))
    cache.advance(3)
    with pytest.raises(ValueError, match="holds 4 positions"):
        cache.update(0, torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
