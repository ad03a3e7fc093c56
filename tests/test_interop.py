"""minilm.interop, offline: tiny random Hugging Face GPT-2 and Llama models give the same logits
(float32, max abs difference <= 1e-4) and the same greedy generations in minilm, in both directions."""
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from minilm.interop import (gpt2_state_dict_from_hf, gpt2_state_dict_to_hf, llama_state_dict_from_hf, load_hf_gpt2,
                            load_hf_llama, load_pretrained_gpt2, to_hf_gpt2, to_hf_llama)
from minilm.model import GPT, GPTConfig

VOCAB, CONTEXT = 61, 20


def randomized(hf_model):
    """Every weight random (norm gains and biases too, which start at 1 and 0), so a tensor mapped to
    the wrong place shows in the logits."""
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in hf_model.parameters():
            parameter.normal_(0.0, 0.3)
    return hf_model.eval()


def hf_gpt2(tied=True):
    config = GPT2Config(vocab_size=VOCAB, n_positions=CONTEXT, n_embd=32, n_layer=2, n_head=4,
                        tie_word_embeddings=tied, bos_token_id=None, eos_token_id=None)
    return randomized(GPT2LMHeadModel(config))


def hf_llama(tied=False, kv_heads=2, bias=False):
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=CONTEXT,
                         rope_theta=1000.0, attention_bias=bias,  # transformers 5 keeps it in rope_parameters
                         mlp_bias=bias, tie_word_embeddings=tied, bos_token_id=None, eos_token_id=None)
    return randomized(LlamaForCausalLM(config))


HF_MODELS = {"gpt2": (hf_gpt2, load_hf_gpt2), "gpt2-untied": (lambda: hf_gpt2(tied=False), load_hf_gpt2),
             "llama-gqa": (hf_llama, load_hf_llama), "llama-mha-tied": (lambda: hf_llama(True, 4), load_hf_llama),
             "llama-bias": (lambda: hf_llama(bias=True), load_hf_llama)}
IDS = torch.randint(0, VOCAB, (3, CONTEXT), generator=torch.Generator().manual_seed(2))


def max_logit_difference(hf_model, model, ids=IDS):
    with torch.no_grad():
        return (hf_model(ids).logits - model(ids)[0]).abs().max().item()


@pytest.mark.parametrize("name", HF_MODELS)
def test_loaded_weights_give_the_same_logits(name):
    make, load = HF_MODELS[name]
    hf_model = make()
    model = load(hf_model).eval()
    assert max_logit_difference(hf_model, model) <= 1e-4
    assert hf_model(IDS).logits.abs().max() > 1  # the logits are large: a match is no accident


@pytest.mark.parametrize("name", HF_MODELS)
def test_loaded_weights_give_the_same_greedy_generations(name):
    make, load = HF_MODELS[name]
    hf_model = make()
    model = load(hf_model)
    ids = IDS[:, :4]
    theirs = hf_model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=0,
                               attention_mask=torch.ones_like(ids))
    assert torch.equal(model.generate(ids, 12, temperature=0), theirs)


def minilm_model(family, **overrides):
    torch.manual_seed(3)
    model = GPT(GPTConfig(vocab_size=VOCAB, context_length=CONTEXT, n_layer=2, n_head=4, n_embd=32,
                          family=family, **overrides))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    return model.eval()


@pytest.mark.parametrize("family, overrides, to_hf", [
    ("gpt2", {}, to_hf_gpt2), ("gpt2", {"tie_embeddings": False}, to_hf_gpt2),
    ("llama", {"n_kv_head": 1}, to_hf_llama), ("llama", {"tie_embeddings": True, "bias": True}, to_hf_llama),
])
def test_minilm_weights_run_in_hugging_face(family, overrides, to_hf):
    model = minilm_model(family, **overrides)
    hf_model = to_hf(model).eval()
    assert max_logit_difference(hf_model, model) <= 1e-4


def test_state_dicts_round_trip_exactly():
    hf_model = hf_gpt2()
    model = load_hf_gpt2(hf_model)
    theirs, back = hf_model.state_dict(), gpt2_state_dict_to_hf(model)
    assert set(back) == set(theirs)
    assert all(torch.equal(back[name], theirs[name]) for name in theirs)
    ours = gpt2_state_dict_from_hf(hf_model)
    assert set(ours) == set(model.state_dict())
    llama = hf_llama()
    assert set(llama_state_dict_from_hf(llama)) == set(load_hf_llama(llama).state_dict())


def test_unsupported_settings_are_named():
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=8, n_embd=16, n_layer=1, n_head=2,
                                      activation_function="relu", bos_token_id=None, eos_token_id=None))
    with pytest.raises(ValueError, match="activation_function='relu'"):
        load_hf_gpt2(gpt2)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, bos_token_id=None, eos_token_id=None,
                                         rope_parameters={"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0}))
    with pytest.raises(ValueError, match="rope_type='linear'"):
        load_hf_llama(llama)
    with pytest.raises(ValueError, match="Llama-style"):
        to_hf_llama(minilm_model("gpt2"))
    with pytest.raises(ValueError, match="GPT-2-style"):
        to_hf_gpt2(minilm_model("llama"))


def test_load_pretrained_gpt2_reads_a_saved_folder_offline(tmp_path):
    hf_model = hf_gpt2(tied=True)
    hf_model.save_pretrained(tmp_path / "tiny-gpt2")
    ours = load_pretrained_gpt2(str(tmp_path / "tiny-gpt2")).eval()
    x = torch.randint(0, VOCAB, (2, CONTEXT))
    torch.testing.assert_close(ours(x)[0], hf_model(x).logits, atol=1e-4, rtol=1e-4)


def test_load_pretrained_gpt2_offline_without_a_copy_says_what_to_do(tmp_path):
    with pytest.raises(RuntimeError, match="needs the internet once"):
        load_pretrained_gpt2(str(tmp_path / "no-such-model"))
