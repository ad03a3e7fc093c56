"""minilm.posttrain.lora on tiny random models: LoRALinear against y = W x + b + (α/r)·B A x in float64, the
adapted and merged models against the original's logits, the trainable count against r·(in + out) summed over
the model's linear layers, an AdamW step that moves only A and B (its state: two float32 moments per trained
number), and the logits of Hugging Face `peft`'s LoRA on the same GPT-2 with the same A and B (max abs
difference <= 1e-5), before and after merging."""
import pytest
import torch
from torch import nn

from minilm.model import GPT, GPTConfig
from minilm.posttrain.lora import (LoRAConfig, LoRALinear, add_lora, merge_lora, optimizer_state_bytes,
                                   trainable_parameters)

VOCAB, CONTEXT = 50, 16
IDS = torch.randint(0, VOCAB, (2, CONTEXT), generator=torch.Generator().manual_seed(1))
ADAPTED_IN = {"gpt2": ("attention.qkv", "attention.out", "mlp.up", "mlp.out"),  # the defaults' targets, per block
              "llama": ("attention.qkv", "attention.out", "mlp.gate", "mlp.up", "mlp.out")}


def tiny_gpt(family, seed=0):
    """Every weight random and large (biases and norm gains too), so a wrong formula shows in the logits."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=VOCAB, context_length=CONTEXT, n_layer=2, n_head=2, n_embd=16, family=family))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    return model.eval()


def perturbed(adapted, seed=5):
    """The adapted model with every A and B random and non-zero, as after some training."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in adapted.modules():
            if isinstance(module, LoRALinear):
                module.A.copy_(torch.randn(module.A.shape, generator=generator) * 0.3)
                module.B.copy_(torch.randn(module.B.shape, generator=generator) * 0.3)
    return adapted


def lora_layers(model):
    return {name: module for name, module in model.named_modules() if isinstance(module, LoRALinear)}


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(ids)[0]


def test_lora_linear_is_the_base_output_plus_the_scaled_low_rank_product():
    torch.manual_seed(0)
    base = nn.Linear(6, 9)
    layer = LoRALinear(base, rank=3, alpha=5.0)
    with torch.no_grad():
        layer.B.normal_()
    x = torch.randn(4, 7, 6)
    W, b, A, B, x64 = (t.detach().double() for t in (base.weight, base.bias, layer.A, layer.B, x))
    expected = x64 @ W.T + b + (5.0 / 3) * (x64 @ A.T) @ B.T
    torch.testing.assert_close(layer(x).double(), expected, rtol=0, atol=1e-5)
    assert ((5.0 / 3) * (x64 @ A.T) @ B.T).abs().max() > 0.5  # the low-rank part is there to be got wrong


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_fresh_adapters_change_no_logit(family):
    model = tiny_gpt(family)
    adapted = add_lora(model, LoRAConfig(rank=2, alpha=4.0))
    layers = lora_layers(adapted)
    assert set(layers) == {f"blocks.{i}.{part}" for i in range(2) for part in ADAPTED_IN[family]}
    assert all(torch.count_nonzero(m.B) == 0 and torch.count_nonzero(m.A) == m.A.numel() for m in layers.values())
    assert torch.equal(logits(adapted), logits(model))
    assert not torch.equal(logits(perturbed(adapted)), logits(model))  # and non-zero B does change them


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("targets", [("qkv", "out", "up", "gate"), ("qkv",), ("out", "gate")])
def test_only_the_adapters_train_and_the_original_is_untouched(family, targets):
    model = tiny_gpt(family)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    adapted = add_lora(model, LoRAConfig(rank=3, targets=targets))  # GPT-2 has no gate: adapted where there is one
    linears = {name: m for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and name.startswith("blocks.") and name.split(".")[-1] in targets}
    trainable = {name for name, p in adapted.named_parameters() if p.requires_grad}
    assert trainable == {f"{name}.{matrix}" for name in linears for matrix in "AB"}
    assert trainable_parameters(adapted) == sum(3 * (m.in_features + m.out_features) for m in linears.values())
    assert not lora_layers(model)  # the original keeps its plain layers, its weights and its gradients
    assert all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(tensor, before[name]) for name, tensor in model.state_dict().items())


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_merging_folds_the_change_into_plain_linear_layers(family):
    model = tiny_gpt(family)
    adapted = perturbed(add_lora(model, LoRAConfig(rank=4, alpha=8.0)))
    merged = merge_lora(adapted)
    assert not lora_layers(merged) and lora_layers(adapted)  # adapted is left as it was
    torch.testing.assert_close(logits(merged), logits(adapted), rtol=0, atol=1e-5)
    assert (logits(merged) - logits(model)).abs().max() > 0.1  # the merge kept the change
    for name, layer in lora_layers(adapted).items():
        linear = merged.get_submodule(name)
        assert type(linear) is nn.Linear
        W, A, B = (t.detach().double() for t in (layer.base.weight, layer.A, layer.B))
        torch.testing.assert_close(linear.weight.double(), W + (8.0 / 4) * B @ A, rtol=0, atol=1e-6)
    plain = GPT(model.config)
    plain.load_state_dict(merged.state_dict())  # the same names as a GPT's (strict), so it saves and loads as one
    torch.testing.assert_close(logits(plain.eval()), logits(merged), rtol=0, atol=0)


def test_an_adamw_step_moves_only_the_adapters_and_keeps_two_moments_for_them():
    adapted = perturbed(add_lora(tiny_gpt("llama"), LoRAConfig(rank=2)))
    before = {name: p.detach().clone() for name, p in adapted.named_parameters()}
    optimizer = torch.optim.AdamW(adapted.parameters(), lr=1e-2, weight_decay=0.1)  # frozen ones too: no grad, no step
    adapted.train()
    _, loss = adapted(IDS[:, :-1], IDS[:, 1:])
    loss.backward()
    optimizer.step()
    for name, p in adapted.named_parameters():
        moved = not torch.equal(p, before[name])
        assert moved == name.endswith((".A", ".B")), name
    adapters = [p for name, p in adapted.named_parameters() if name.endswith((".A", ".B"))]
    assert trainable_parameters(adapted) == sum(p.numel() for p in adapters)
    assert len(optimizer.state) == len(adapters)
    assert optimizer_state_bytes(optimizer) == 2 * 4 * trainable_parameters(adapted)  # exp_avg, exp_avg_sq in float32
    steps = [state["step"] for state in optimizer.state.values()]
    assert all(torch.is_tensor(step) and step.dim() == 0 for step in steps)  # the counters it leaves out
    everything = sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values())
    assert everything == optimizer_state_bytes(optimizer) + sum(step.element_size() for step in steps)


def test_bad_ranks_and_targets_are_refused_with_a_reason():
    model = tiny_gpt("gpt2")
    for rank in (0, -1):
        with pytest.raises(ValueError, match="rank"):
            LoRALinear(nn.Linear(4, 4), rank=rank, alpha=8.0)
        with pytest.raises(ValueError, match="rank"):
            add_lora(model, LoRAConfig(rank=rank))
    for targets in [("c_attn",), ("gate",), ("head",), ()]:  # GPT-2 has no gate; the head is not in a block
        with pytest.raises(ValueError, match="no linear layer"):
            add_lora(model, LoRAConfig(targets=targets))


# Against Hugging Face peft: the same adapters on the same GPT-2 give the same logits.

PEFT_TARGETS = [(("qkv",), ["c_attn"]), (("qkv", "out", "up"), ["c_attn", "c_proj", "c_fc"])]
HF_NAME = {"attention.qkv": "attn.c_attn", "attention.out": "attn.c_proj", "mlp.up": "mlp.c_fc", "mlp.out": "mlp.c_proj"}


def hf_name(name):
    """blocks.i.attention.qkv -> transformer.h.i.attn.c_attn (minilm.interop's mapping)."""
    _, block, layer = name.split(".", 2)
    return f"transformer.h.{block}.{HF_NAME[layer]}"


def hf_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel
    config = GPT2Config(vocab_size=60, n_positions=16, n_embd=16, n_layer=2, n_head=2,
                        bos_token_id=None, eos_token_id=None)
    torch.manual_seed(0)
    hf_model = GPT2LMHeadModel(config)
    with torch.no_grad():
        for parameter in hf_model.parameters():
            parameter.normal_(0.0, 0.3)
    return hf_model.eval()


@pytest.mark.parametrize("ours, theirs", PEFT_TARGETS)
def test_peft_lora_gives_the_same_logits_before_and_after_merging(ours, theirs):
    peft = pytest.importorskip("peft")
    from minilm.interop import load_hf_gpt2
    hf_model = hf_gpt2()
    model = load_hf_gpt2(hf_model).eval()
    adapted = perturbed(add_lora(model, LoRAConfig(rank=4, alpha=8.0, targets=ours)))
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=theirs, lora_dropout=0.0, fan_in_fan_out=True,
                             init_lora_weights=False)
    hf_adapted = peft.get_peft_model(hf_model, config).eval()
    hf_layers = {name.removeprefix("base_model.model."): module for name, module in hf_adapted.named_modules()
                 if hasattr(module, "lora_A") and "default" in module.lora_A}
    layers = lora_layers(adapted)
    assert set(hf_layers) == {hf_name(name) for name in layers}  # minilm's "out" is both of GPT-2's c_proj
    with torch.no_grad():
        for name, layer in layers.items():
            hf_layers[hf_name(name)].lora_A["default"].weight.copy_(layer.A)  # (r, in)
            hf_layers[hf_name(name)].lora_B["default"].weight.copy_(layer.B)  # (out, r)
    ids = torch.randint(0, 60, (3, 16), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = hf_adapted(ids).logits
    torch.testing.assert_close(logits(adapted, ids), expected, rtol=0, atol=1e-5)
    assert (logits(model, ids) - expected).abs().max() > 0.1  # the adapters matter to the logits
    hf_merged = hf_adapted.merge_and_unload().eval()
    with torch.no_grad():
        merged_expected = hf_merged(ids).logits
    torch.testing.assert_close(logits(merge_lora(adapted).eval(), ids), merged_expected, rtol=0, atol=1e-5)


def test_adapters_live_where_their_base_lives():
    base = torch.nn.Linear(8, 6).to(torch.bfloat16)
    layer = LoRALinear(base, rank=2, alpha=4.0)
    assert layer.A.dtype == layer.B.dtype == torch.bfloat16
    x = torch.randn(3, 8, dtype=torch.bfloat16)
    assert torch.equal(layer(x), base(x))  # B = 0 and the matmul runs in the base's dtype
