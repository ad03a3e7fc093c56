"""minilm.interpret.internals and .lens: what the hooks record equals what Hugging Face's models
report for the same weights; ablating and patching change exactly what they should; no hook stays."""
import copy

import pytest
import torch
import torch.nn.functional as F

from minilm.interop import to_hf_gpt2, to_hf_llama
from minilm.interpret import (ablate_heads, lens_losses, lens_top_tokens, logit_lens, patch_residual,
                              record_internals)
from minilm.model import GPT, GPTConfig
from minilm.tokenizer import CharTokenizer

VOCAB, TIME = 40, 12


def tiny_model(family: str, n_kv_head=None, seed: int = 0) -> GPT:
    """A small GPT with weights large enough that attention is far from uniform."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=VOCAB, context_length=32, n_layer=3, n_head=4, n_embd=32, family=family,
                          n_kv_head=n_kv_head))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.15)
    return model.eval()


FAMILIES = {"gpt2": lambda: tiny_model("gpt2"), "llama-gqa": lambda: tiny_model("llama", n_kv_head=2)}


def tokens(seed: int = 1, batch: int = 2) -> torch.Tensor:
    return torch.randint(VOCAB, (batch, TIME), generator=torch.Generator().manual_seed(seed))


def hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("family", FAMILIES)
def test_streams_and_attention_equal_hugging_face(family):
    model = FAMILIES[family]()
    hf_model = (to_hf_gpt2 if family == "gpt2" else to_hf_llama)(model).eval()
    if hasattr(hf_model, "set_attn_implementation"):  # transformers 5: the kernel that returns the weights;
        hf_model.set_attn_implementation("eager")  # 4.x falls back to it when asked for the weights
    idx = tokens()
    with torch.no_grad(), record_internals(model) as seen:
        logits, _ = model(idx)
    with torch.no_grad():
        theirs = hf_model(idx, output_hidden_states=True, output_attentions=True)
    n_layer = model.config.n_layer
    assert len(seen.residual) == n_layer + 1 and len(seen.attention) == n_layer == len(seen.head_outputs)
    # HF's hidden_states[l] is the input of block l for l < n_layer; its last one is after the final norm
    for layer in range(n_layer):
        torch.testing.assert_close(seen.residual[layer], theirs.hidden_states[layer], atol=1e-5, rtol=0)
    torch.testing.assert_close(model.final_norm(seen.residual[n_layer]), theirs.hidden_states[n_layer],
                               atol=1e-5, rtol=0)
    for layer in range(n_layer):
        assert seen.attention[layer].shape == (2, 4, TIME, TIME)
        torch.testing.assert_close(seen.attention[layer], theirs.attentions[layer], atol=1e-5, rtol=0)
    assert seen.attention[0].max() > 0.5  # the weights are far from uniform, so the comparison means something
    torch.testing.assert_close(model.head(model.final_norm(seen.residual[-1])), logits, atol=1e-6, rtol=0)
    torch.testing.assert_close(logits, theirs.logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_head_outputs_mixed_by_out_give_the_attention_branch(family):
    model = FAMILIES[family]()
    idx = tokens()
    with torch.no_grad(), record_internals(model) as seen:
        model(idx)
    block = model.blocks[0]
    heads = seen.head_outputs[0]  # (batch, n_head, time, head_dim)
    mixed = block.attention.out(heads.transpose(1, 2).flatten(2))  # (batch, time, n_embd)
    after_attention = seen.residual[0] + mixed
    expected = seen.residual[1] - block.mlp(block.mlp_norm(after_attention))  # block 0 = x + attn + mlp
    torch.testing.assert_close(after_attention, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_recording_changes_nothing_and_leaves_no_hooks(family):
    model = FAMILIES[family]()
    idx = tokens()
    before = hook_count(model)
    plain, _ = model(idx)
    with record_internals(model) as seen:
        inside, _ = model(idx)
        model(idx[:1, :5])
    assert torch.equal(plain, inside)
    assert len(seen.passes) == 2 and seen.residual[0].shape == (1, 5, 32)  # the attributes read the last pass
    assert hook_count(model) == before == 0
    for context in (record_internals(model), ablate_heads(model, [(0, 1)]),
                    patch_residual(model, 1, [2], torch.zeros(1, 1, 32))):
        with pytest.raises(RuntimeError, match="inside"):
            with context:
                model(idx)
                raise RuntimeError("inside the block")
        assert hook_count(model) == 0
    assert torch.equal(model(idx)[0], plain)


def test_recording_refuses_a_kv_cache_only_when_asked_for_attention():
    model = tiny_model("llama")
    start = tokens()[:1, :3]
    with record_internals(model, attention=False) as seen:
        model.generate(start, max_new_tokens=2, temperature=0, use_cache=True)
    assert [p.residual[0].shape[1] for p in seen.passes] == [3, 1]  # the prompt, then one token at a time
    with pytest.raises(ValueError, match="use_cache=False"):
        with record_internals(model):
            model.generate(start, max_new_tokens=2, temperature=0, use_cache=True)
    assert hook_count(model) == 0


def with_head_zeroed(model: GPT, layer: int, head: int) -> GPT:
    """The independent reference: the head's columns of attention.out's weight set to zero."""
    other = copy.deepcopy(model)
    d = model.config.head_dim
    with torch.no_grad():
        other.blocks[layer].attention.out.weight[:, head * d:(head + 1) * d] = 0.0
    return other


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_ablation_equals_zeroed_out_weights(family):
    model = FAMILIES[family]()
    idx = tokens()
    plain, _ = model(idx)
    with ablate_heads(model, []):
        assert torch.equal(model(idx)[0], plain)
    for layer, head in [(0, 1), (2, 3)]:
        with record_internals(model, attention=False) as seen, ablate_heads(model, [(layer, head)]):
            ablated, _ = model(idx)
        assert (seen.head_outputs[layer][:, head] == 0).all()  # a recording sees the silenced head
        assert (seen.head_outputs[layer][:, head - 1] != 0).any()
        torch.testing.assert_close(ablated, with_head_zeroed(model, layer, head)(idx)[0], atol=1e-6, rtol=0)
        assert not torch.allclose(ablated, plain, atol=1e-4)
    both = with_head_zeroed(with_head_zeroed(model, 0, 1), 1, 2)
    with ablate_heads(model, [(0, 1), (1, 2)]):
        torch.testing.assert_close(model(idx)[0], both(idx)[0], atol=1e-6, rtol=0)


def test_mean_ablation_of_a_head_with_a_constant_output_changes_nothing():
    model = tiny_model("gpt2")
    c, layer, head = model.config, 1, 2
    rows = slice(2 * c.n_embd + head * c.head_dim, 2 * c.n_embd + (head + 1) * c.head_dim)  # its value rows
    with torch.no_grad():
        model.blocks[layer].attention.qkv.weight[rows] = 0.0  # every value is the bias: the head outputs it
        model.blocks[layer].attention.qkv.bias[rows] = torch.randn(c.head_dim)
    idx = tokens()
    plain, _ = model(idx)
    with ablate_heads(model, [(layer, head)], how="mean", mean_over=tokens(seed=5, batch=3)):
        torch.testing.assert_close(model(idx)[0], plain, atol=1e-5, rtol=0)
    with ablate_heads(model, [(layer, head)]):
        assert not torch.allclose(model(idx)[0], plain, atol=1e-3)


def test_ablation_and_patching_refuse_bad_arguments():
    model = tiny_model("gpt2")
    for heads in ([(3, 0)], [(0, 4)], [(0,)]):
        with pytest.raises(ValueError, match="not a head"):
            with ablate_heads(model, heads):
                pass
    with pytest.raises(ValueError, match="mean_over"):
        with ablate_heads(model, [(0, 0)], how="mean"):
            pass
    with pytest.raises(ValueError, match="'zero' or 'mean'"):
        with ablate_heads(model, [(0, 0)], how="resample"):
            pass
    with pytest.raises(ValueError, match="layer=4"):
        with patch_residual(model, 4, [0], torch.zeros(1, 1, 32)):
            pass
    with pytest.raises(ValueError, match=r"\(batch or 1, 2, 32\)"):
        with patch_residual(model, 1, [0, 1], torch.zeros(1, 1, 32)):
            pass
    with pytest.raises(ValueError, match="positions"):
        with patch_residual(model, 1, [TIME], torch.zeros(1, 1, 32)):
            model(tokens())
    assert hook_count(model) == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_patching_a_run_into_itself_changes_nothing(family):
    model = FAMILIES[family]()
    idx = tokens()
    with torch.no_grad(), record_internals(model, attention=False) as seen:
        plain, _ = model(idx)
    for layer in range(model.config.n_layer + 1):
        with torch.no_grad(), patch_residual(model, layer, [2, 7], seen.residual[layer][:, [2, 7]]):
            torch.testing.assert_close(model(idx)[0], plain, atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_patching_position_p_changes_only_what_comes_after(family):
    model = FAMILIES[family]()
    idx, other = tokens(seed=1), tokens(seed=2)
    with torch.no_grad(), record_internals(model, attention=False) as theirs:
        other_logits, _ = model(other)
    plain, _ = model(idx)
    p, last = 5, model.config.n_layer
    for layer in range(last + 1):
        with torch.no_grad(), record_internals(model, attention=False) as seen:
            with patch_residual(model, layer, [p], theirs.residual[layer][:, [p]]):
                patched, _ = model(idx)
        torch.testing.assert_close(seen.residual[layer][:, p], theirs.residual[layer][:, p])  # a recording sees it
        assert torch.equal(patched[:, :p], plain[:, :p])  # causality: earlier positions never see p
        assert not torch.allclose(patched[:, p], plain[:, p], atol=1e-4)
        later_changed = not torch.allclose(patched[:, p + 1:], plain[:, p + 1:], atol=1e-4)
        assert later_changed == (layer < last)  # after the last block no position reads another
        with torch.no_grad(), patch_residual(model, layer, range(TIME), theirs.residual[layer]):
            torch.testing.assert_close(model(idx)[0], other_logits, atol=1e-5, rtol=0)  # the whole other run


def test_patching_the_embeddings_of_one_token_equals_running_with_that_token():
    model = tiny_model("gpt2")
    idx = tokens()
    swapped = idx.clone()
    swapped[:, 4] = (idx[:, 4] + 1) % VOCAB
    with torch.no_grad(), record_internals(model, attention=False) as seen:
        expected, _ = model(swapped)
    with torch.no_grad(), patch_residual(model, 0, [4], seen.residual[0][:, [4]]):
        torch.testing.assert_close(model(idx)[0], expected, atol=1e-5, rtol=0)


# the logit lens


@pytest.mark.parametrize("family", FAMILIES)
def test_lens_of_the_last_stream_is_the_model_and_its_loss(family):
    model = FAMILIES[family]()
    idx = tokens(batch=3)
    inputs, targets = idx[:, :-1], idx[:, 1:].clone()
    targets[0, :4] = -100  # skipped targets are skipped by the lens too
    lens = logit_lens(model, inputs)
    logits, loss = model(inputs, targets)
    assert lens.shape == (model.config.n_layer + 1, 3, TIME - 1, VOCAB)
    torch.testing.assert_close(lens[-1], logits, atol=1e-6, rtol=0)
    losses = lens_losses(model, inputs, targets)
    reference = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
    assert losses.loss[-1].item() == pytest.approx(reference.item(), abs=1e-5)
    assert losses.loss[-1].item() == pytest.approx(loss.item(), abs=1e-5)
    assert losses.kl_to_final[-1].item() == pytest.approx(0.0, abs=1e-6)
    scored = targets != -100
    for layer in range(len(lens)):  # each stream against torch's cross-entropy and KL
        mine = F.cross_entropy(lens[layer][scored], targets[scored])
        kl = F.kl_div(F.log_softmax(lens[layer][scored], -1), F.log_softmax(logits[scored], -1),
                      log_target=True, reduction="batchmean")  # KL(final ‖ layer)
        assert losses.loss[layer].item() == pytest.approx(mine.item(), abs=1e-5)
        assert losses.kl_to_final[layer].item() == pytest.approx(kl.item(), abs=1e-5)
    assert (losses.kl_to_final[:-1] > 0).all()


def test_lens_of_a_model_whose_blocks_write_nothing_is_the_same_at_every_layer():
    model = tiny_model("gpt2")
    with torch.no_grad():
        for block in model.blocks:
            for out in (block.attention.out, block.mlp.out):
                out.weight.zero_()
                out.bias.zero_()
    idx = tokens()
    lens = logit_lens(model, idx)
    for layer in range(len(lens)):
        torch.testing.assert_close(lens[layer], model(idx)[0], atol=1e-6, rtol=0)


def test_lens_top_tokens_read_the_last_stream_like_the_model():
    text = "abcabcabd"
    tokenizer = CharTokenizer.train([text])
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, context_length=16, n_layer=2, n_head=2, n_embd=16)).eval()
    top = lens_top_tokens(model, tokenizer, text, position=-2, k=3)
    assert len(top) == 3 and all(len(row) == 3 for row in top)
    probs = model(torch.tensor([tokenizer.encode(text)]))[0][0, -2].softmax(-1)
    expected = probs.topk(3)
    assert [token for token, _ in top[-1]] == [tokenizer.decode([i]) for i in expected.indices.tolist()]
    assert [p for _, p in top[-1]] == pytest.approx(expected.values.tolist(), abs=1e-6)
    with pytest.raises(ValueError, match="position"):
        lens_top_tokens(model, tokenizer, text, position=len(text))
