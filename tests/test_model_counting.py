"""Parameter and FLOP counts, checked against the model itself, Hugging Face's models, and
PyTorch's FlopCounterMode on a real forward and backward pass."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from minilm.model import GPT, GPTConfig, count_parameters, flops_per_token

CONFIGS = {
    "gpt2": GPTConfig(vocab_size=50, context_length=16, n_layer=2, n_head=4, n_embd=32),
    "gpt2-untied": GPTConfig(vocab_size=50, context_length=16, n_layer=3, n_head=2, n_embd=24, tie_embeddings=False),
    "llama-gqa": GPTConfig(vocab_size=50, context_length=16, n_layer=2, n_head=4, n_embd=32, family="llama", n_kv_head=2),
    "llama-bias-tied": GPTConfig(vocab_size=50, context_length=16, n_layer=2, n_head=4, n_embd=32, family="llama",
                                 bias=True, tie_embeddings=True),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_components_add_up_to_every_parameter(name):
    model = GPT(CONFIGS[name])
    counts = count_parameters(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())  # unique tensors: a tied head once
    assert counts["attention"] == sum(p.numel() for b in model.blocks for p in b.attention.parameters())
    assert counts["mlp"] == sum(p.numel() for b in model.blocks for p in b.mlp.parameters())
    assert counts["head"] == (0 if model.config.tie_embeddings else model.head.weight.numel())


def test_gpt2_count_matches_hugging_face():
    from transformers import GPT2Config, GPT2LMHeadModel

    ours = count_parameters(GPT(CONFIGS["gpt2"]))
    theirs = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_layer=2, n_head=4, n_embd=32))
    assert ours["total"] == sum(p.numel() for p in theirs.parameters())
    assert ours["positions"] == theirs.transformer.wpe.weight.numel()


def test_llama_count_matches_hugging_face():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = CONFIGS["llama-gqa"]
    theirs = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=config.mlp_width,
                                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2))
    assert count_parameters(GPT(config))["total"] == sum(p.numel() for p in theirs.parameters())


@pytest.mark.parametrize("name", CONFIGS)
def test_matmul_parameters_are_the_weights_of_the_linear_layers(name):
    model = GPT(CONFIGS[name])
    linear_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert flops_per_token(model.config)["matmul_parameters"] == linear_weights  # the head counts, tied or not


@pytest.mark.parametrize("name", CONFIGS)
def test_flops_match_pytorchs_flop_counter(name):
    config = GPTConfig.from_dict(CONFIGS[name].to_dict() | {"fast_attention": False})  # explicit matmuls are counted
    model = GPT(config)
    batch, time = 2, 12
    idx = torch.randint(0, config.vocab_size, (batch, time))
    with FlopCounterMode(display=False) as forward_counter:
        logits, _ = model(idx)
    with FlopCounterMode(display=False) as training_counter:
        _, loss = model(idx, idx)
        loss.backward()
    estimate = flops_per_token(config, sequence_length=time)
    assert forward_counter.get_total_flops() == estimate["forward"] * batch * time
    assert training_counter.get_total_flops() == estimate["training"] * batch * time
