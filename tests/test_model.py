"""minilm.model: the GPT's behaviour (causality, positions, batch independence, loss, init) and the
seed model's three flaws, each shown by an experiment."""
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from minilm.course_model import RECIPES
from minilm.model import GPT, MODEL_SIZES, PRESET_SIZES, GPTConfig, RMSNorm, SeedTransformer, config_for_preset, model_config

VOCAB = 37


def tiny(family="gpt2", **overrides):
    settings = dict(vocab_size=VOCAB, context_length=16, n_layer=2, n_head=4, n_embd=32, family=family)
    return GPTConfig(**(settings | overrides))


VARIANTS = {
    "gpt2": tiny(),
    "gpt2-sinusoidal": tiny(position="sinusoidal"),
    "gpt2-formula": tiny(fast_attention=False),
    "llama": tiny("llama"),
    "llama-gqa": tiny("llama", n_kv_head=2),
    "llama-formula": tiny("llama", n_kv_head=1, fast_attention=False),
}


def model_of(config, seed=0):
    torch.manual_seed(seed)
    return GPT(config).eval()


def tokens(batch, time, seed=1):
    return torch.randint(0, VOCAB, (batch, time), generator=torch.Generator().manual_seed(seed))


def test_families_differ_where_the_issue_says():
    gpt2, llama = GPTConfig(family="gpt2"), GPTConfig(family="llama")
    assert (gpt2.position, gpt2.norm, gpt2.mlp, gpt2.bias, gpt2.tie_embeddings) == ("learned", "layernorm", "gelu", True, True)
    assert (llama.position, llama.norm, llama.mlp, llama.bias, llama.tie_embeddings) == ("rope", "rmsnorm", "swiglu", False, False)
    gpt2_model, llama_model = GPT(tiny()), GPT(tiny("llama"))
    assert gpt2_model.head.weight is gpt2_model.token_embedding.weight
    assert llama_model.head.weight is not llama_model.token_embedding.weight
    assert not any(name.endswith("bias") for name, _ in llama_model.named_parameters())


def test_config_round_trips_through_a_dict_and_rejects_unknown_keys():
    config = tiny("llama", n_kv_head=2, dropout=0.1)
    assert GPTConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="no field"):
        GPTConfig.from_dict(config.to_dict() | {"n_layers": 3})


@pytest.mark.parametrize("bad, message", [
    (dict(family="bert"), "family"), (dict(position="alibi"), "position"), (dict(n_embd=30), "split evenly"),
    (dict(n_kv_head=3), "multiple of n_kv_head"), (dict(position="rope", n_embd=20, n_head=4), "even"),
    (dict(dropout=1.0), "dropout"), (dict(n_layer=0), "positive"),
])
def test_bad_configs_say_what_is_wrong(bad, message):
    with pytest.raises(ValueError, match=message):
        tiny(**bad)


def test_replace_keeps_derived_sizes_in_step():
    config = replace(tiny("llama"), n_embd=48, n_head=6)
    model = GPT(config)
    assert model.blocks[0].mlp.up.out_features == GPTConfig(n_embd=48, n_head=6, family="llama").mlp_width
    assert config.kv_heads == 6
    assert GPT(replace(tiny(), n_embd=64)).blocks[0].mlp.up.out_features == 4 * 64


def test_presets_pick_the_size_and_take_overrides():
    config = config_for_preset(vocab_size=100, family="llama", preset="cpu", dropout=0.1)
    size = MODEL_SIZES["tiny"]
    assert (config.n_layer, config.n_head, config.n_embd, config.context_length) == \
           (size.n_layer, size.n_head, size.n_embd, size.context_length)
    assert (config.vocab_size, config.family, config.dropout) == (100, "llama", 0.1)


@pytest.mark.parametrize("preset", ["smoke", "cpu", "gpu"])
def test_chapter_3_studies_the_model_chapter_4_trains(preset):
    assert config_for_preset(100, preset=preset) == model_config(RECIPES[preset].size, 100)
    assert RECIPES[preset].size == PRESET_SIZES[preset]


def test_an_unknown_size_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="nano, tiny"):
        model_config("huge", 100)


@pytest.mark.parametrize("name", VARIANTS)
def test_no_position_sees_the_future(name):
    model = model_of(VARIANTS[name])
    idx = tokens(2, 12)
    changed = idx.clone()
    changed[:, 7:] = (changed[:, 7:] + 5) % VOCAB  # rewrite the future after position 6
    with torch.no_grad():
        before, after = model(idx)[0], model(changed)[0]
    torch.testing.assert_close(before[:, :7], after[:, :7], rtol=0, atol=1e-6)
    assert (before[:, 7:] - after[:, 7:]).abs().max() > 1e-3  # the changed positions did change


@pytest.mark.parametrize("name", VARIANTS)
def test_sequences_in_a_batch_do_not_mix(name):
    model = model_of(VARIANTS[name])
    idx = tokens(3, 10)
    with torch.no_grad():
        together = model(idx)[0]
        alone = torch.cat([model(row[None])[0] for row in idx])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_fused_and_formula_attention_give_the_same_logits(family):
    fused, formula = GPT(tiny(family)), GPT(tiny(family, fast_attention=False))
    formula.load_state_dict(fused.state_dict())
    idx = tokens(2, 16)
    torch.testing.assert_close(fused.eval()(idx)[0], formula.eval()(idx)[0], rtol=1e-5, atol=1e-5)


def test_loss_is_mean_cross_entropy_skipping_minus_100():
    model = model_of(tiny())
    idx, targets = tokens(2, 9, seed=3), tokens(2, 9, seed=4)
    targets[0, :4] = -100
    logits, loss = model(idx, targets)
    log_probs = torch.log_softmax(logits.double(), dim=-1)  # float64, by hand
    kept = [(b, t) for b in range(2) for t in range(9) if targets[b, t] != -100]
    expected = -sum(log_probs[b, t, targets[b, t]] for b, t in kept) / len(kept)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert model(idx)[1] is None


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_hidden_states_are_what_the_head_reads(family):
    model = model_of(tiny(family))
    idx = tokens(2, 8)
    hidden = model.hidden_states(idx)
    assert hidden.shape == (2, 8, 32)
    torch.testing.assert_close(hidden @ model.head.weight.T, model(idx)[0])


def test_gpt2_initialisation_scales_the_residual_projections():
    config = tiny(n_layer=6, n_embd=256, n_head=4, vocab_size=500)
    model = model_of(config)
    residual_std = config.init_std / math.sqrt(2 * config.n_layer)
    for block in model.blocks:
        for weight in (block.attention.out.weight, block.mlp.out.weight):
            assert weight.std().item() == pytest.approx(residual_std, rel=0.05)
        assert block.attention.qkv.weight.std().item() == pytest.approx(config.init_std, rel=0.05)
        assert torch.all(block.attention.qkv.bias == 0) and torch.all(block.attention_norm.weight == 1)
    assert model.token_embedding.weight.std().item() == pytest.approx(config.init_std, rel=0.05)


def test_rmsnorm_matches_pytorch():
    x = torch.randn(3, 5, 16)
    ours, theirs = RMSNorm(16, eps=1e-6), torch.nn.RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        ours.weight.normal_()
        theirs.weight.copy_(ours.weight)
    torch.testing.assert_close(ours(x), theirs(x))


def test_dropout_acts_only_while_training():
    model = model_of(tiny(dropout=0.3))
    idx = tokens(2, 10)
    model.train()
    assert not torch.equal(model(idx)[0], model(idx)[0])
    model.eval()
    assert torch.equal(model(idx)[0], model(idx)[0])


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_a_few_adamw_steps_learn_a_repeated_sequence(family):
    model = model_of(tiny(family)).train()
    idx = tokens(4, 16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        _, loss = model(idx[:, :-1], idx[:, 1:])
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert first == pytest.approx(math.log(VOCAB), rel=0.1)  # an untrained model is near uniform
    assert loss.item() < 0.5 * first


def test_bad_inputs_say_what_to_do():
    model = model_of(tiny())
    with pytest.raises(ValueError, match="context_length=16"):
        model(tokens(1, 17))
    with pytest.raises(ValueError, match="LongTensor"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="token ids must lie"):
        model(torch.tensor([[0, VOCAB]]))
    with pytest.raises(ValueError, match="shape of idx"):
        model(tokens(2, 5), tokens(2, 4))


# The seed's model and its three flaws; GPT does not have them (the tests above).


def seed_model():
    torch.manual_seed(0)
    return SeedTransformer(VOCAB, embedding_dim=16, num_heads=2, num_layers=2).eval()


def test_seed_model_flaw_1_positions_read_the_future():
    model = seed_model()
    idx = tokens(8, 1)  # (time=8, batch=1): the layout the encoder layers expect
    changed = idx.clone()
    changed[-1] = (changed[-1] + 1) % VOCAB  # change only the last token
    with torch.no_grad():
        assert (model(idx)[0] - model(changed)[0]).abs().max() > 1e-3  # position 0 saw it


def test_seed_model_flaw_2_shuffling_the_input_only_shuffles_the_output():
    model = seed_model()
    idx = tokens(8, 1)  # (time, batch)
    order = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(idx[order]), model(idx)[order], rtol=1e-5, atol=1e-5)
    gpt = model_of(tiny())
    row = idx.T  # (batch=1, time): GPT's layout
    with torch.no_grad():
        assert (gpt(row[:, order])[0] - gpt(row)[0][:, order]).abs().max() > 1e-3


def test_seed_model_flaw_3_batch_first_input_mixes_the_batch():
    model = seed_model()
    idx = tokens(3, 10)  # (batch, time), as a training loop usually holds it
    changed = idx.clone()
    changed[1] = (changed[1] + 1) % VOCAB  # change sequence 1 only
    with torch.no_grad():
        assert (model(idx)[0] - model(changed)[0]).abs().max() > 1e-3  # sequence 0 changed too
    probe = model.transformer_layers[0]
    assert probe.self_attn.batch_first is False  # the default the seed relied on
