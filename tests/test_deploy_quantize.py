"""minilm.deploy.quantize on tiny random models: the int8 values and scales against PyTorch's own
`torch.quantize_per_channel` given absmax scales worked out here in float64 (exactly equal), every
int8 value the nearest of the 255 levels (brute force), Int8Linear against float64 maths with the
dequantised weight, whole models (gpt2 with a tied head, llama with one key/value head) against
PyTorch's dynamic int8 quantisation and against the float model, generation through the KV cache,
the save/load round trip, and the file sizes against what the parameter counts say they must be."""
import json
import struct
import warnings

import pytest
import safetensors
import safetensors.torch
import torch
from torch import nn

from minilm.deploy.quantize import (Int8Linear, absmax_quantize, dequantize, load_quantized, quantize_model,
                                    save_quantized, saved_bytes)
from minilm.evaluate.lm import token_losses
from minilm.model import GPT, GPTConfig

VOCAB, CONTEXT = 300, 48
IDS = torch.randint(0, VOCAB, (2, CONTEXT), generator=torch.Generator().manual_seed(1))
FAMILIES = {"gpt2": {}, "llama": {"n_kv_head": 1}}  # gpt2: tied head, biases; llama: GQA, SwiGLU, RoPE


def tiny_model(family: str) -> GPT:
    """Weights far larger than GPT-2's 0.02 start, so the logits are sharp and a wrong formula shows."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB, context_length=CONTEXT, n_layer=1, n_head=2, n_embd=32,
                          family=family, **FAMILIES[family]))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() == 2:
                parameter.normal_(0.0, 0.2)
            elif name.endswith("norm.weight"):
                parameter.copy_(1 + 0.1 * torch.randn_like(parameter))
            else:
                parameter.normal_(0.0, 0.1)
    return model.eval()


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(ids)[0]


def test_values_and_scales_equal_torch_quantize_per_channel():
    torch.manual_seed(0)
    weights = [torch.randn(67, 129), torch.randn(5, 3) * 1e-4, torch.randn(40, 16) * 30]
    with_zero_row = torch.randn(8, 12)
    with_zero_row[3] = 0
    with_outlier = torch.randn(8, 12)
    with_outlier[2, 5] = 50.0
    for w in weights + [with_zero_row, with_outlier]:
        q, scale = absmax_quantize(w)
        assert q.dtype == torch.int8 and q.shape == w.shape and scale.dtype == torch.float32
        absmax = w.double().abs().amax(dim=1)  # (out,)
        expected_scale = torch.where(absmax > 0, absmax / 127, torch.ones_like(absmax))  # a zero row: scale 1
        assert torch.equal(scale, expected_scale.float())
        zeros = torch.zeros(w.shape[0], dtype=torch.long)
        with warnings.catch_warnings():  # torch 2.14 marks its quantized tensors deprecated; they still work
            warnings.simplefilter("ignore")
            reference = torch.quantize_per_channel(w, expected_scale, zeros, axis=0, dtype=torch.qint8)
            stored = torch.quantize_per_channel(w, scale.double(), zeros, axis=0, dtype=torch.qint8)
        assert torch.equal(q, reference.int_repr())
        # with the float32 scales the model stores, torch's dequantisation is ours to the last bit
        assert torch.equal(dequantize(q, scale), stored.dequantize())
        assert (q.abs().amax(dim=1)[absmax > 0] == 127).all()  # each row's largest weight becomes ±127


def test_every_value_is_the_nearest_level_and_off_by_at_most_half_a_step():
    torch.manual_seed(1)
    w = torch.randn(9, 23) * torch.logspace(-3, 1, 9)[:, None]  # rows of very different sizes
    q, scale = absmax_quantize(w)
    w64, s64 = w.double(), scale.double()
    levels = torch.arange(-127, 128, dtype=torch.float64)  # every value an int8 code may take
    for o in range(w.shape[0]):
        for i in range(w.shape[1]):
            distances = (w64[o, i] - levels * s64[o]).abs()  # (255,)
            assert distances[int(q[o, i]) + 127] <= distances.min() * (1 + 1e-6) + 1e-12  # the nearest level
            assert abs(w64[o, i] - int(q[o, i]) * s64[o]) <= s64[o] / 2 * (1 + 1e-6)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 24), (3, 7, 24)])  # (batch, in) and (batch, time, in)
def test_int8_linear_is_float64_maths_with_the_dequantised_weight(bias, shape):
    torch.manual_seed(2)
    linear = nn.Linear(24, 10, bias=bias)
    with torch.no_grad():
        linear.weight.normal_(0, 0.5)
        if bias:
            linear.bias.normal_(0, 1)
    layer = Int8Linear.from_linear(linear)
    x = torch.randn(*shape)
    q, scale = absmax_quantize(linear.weight)
    W = q.double() * scale.double()[:, None]  # (out, in), the dequantised weight in float64
    expected = x.double() @ W.T + (linear.bias.double() if bias else 0)
    # float32 sums of 24 products of size ~1: rounding error ~1e-6; 1e-5 leaves room, and is far
    # below the quantisation error itself (checked to be there: > 1e-3)
    torch.testing.assert_close(layer(x).double(), expected, rtol=0, atol=1e-5)
    assert (x.double() @ linear.weight.double().T - x.double() @ W.T).abs().max() > 1e-3
    assert layer(x).shape == (*shape[:-1], 10)


def dynamic_reference(model: GPT) -> nn.Module:
    """PyTorch's own int8 model: per-channel int8 weights, activations quantised on the fly."""
    with warnings.catch_warnings():  # deprecated in torch 2.14 (torchao replaces it), present in 2.13 and 2.14
        warnings.simplefilter("ignore")
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear: qconfig}, dtype=torch.qint8)


def rms(tensor: torch.Tensor) -> float:
    return tensor.double().pow(2).mean().sqrt().item()


@pytest.mark.parametrize("family", FAMILIES)
def test_quantised_logits_against_torch_dynamic_quantisation_and_the_float_model(family):
    model = tiny_model(family)
    quantized = quantize_model(model)
    assert not any(isinstance(m, nn.Linear) for m in quantized.modules())
    assert sum(isinstance(m, Int8Linear) for m in quantized.modules()) == len(
        [m for m in model.modules() if isinstance(m, nn.Linear)])
    assert quantized.token_embedding.weight.dtype == torch.float32  # embeddings and norms stay float
    exact, ours = logits(model), logits(quantized)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = logits(dynamic_reference(model))
    spread = exact.std().item()  # the logits' scale (about 1 here)
    # Dynamic quantisation also rounds every activation to 8 bits, per tensor (7 bits on x86, fbgemm's
    # reduce_range), so it sits further from the float model than weight-only int8 does: measured RMS
    # 0.04-0.08 of the logits' spread (0.02-0.05 under qnnpack) against ours 0.014-0.019. Its
    # difference from ours is therefore mostly its own activation error: 0.15 allows about 2x that.
    assert rms(ours - theirs) <= 0.15 * spread
    # Against the float model only the weights' rounding (at most scale/2 each) is left: measured
    # RMS 0.014-0.019 and max 0.10-0.12 of the spread.
    assert rms(ours - exact) <= 0.04 * spread
    assert (ours - exact).abs().max().item() <= 0.25 * spread
    assert (ours.argmax(-1) == exact.argmax(-1)).float().mean() >= 0.9
    assert rms(ours - exact) > 1e-4 * spread  # it did quantise


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_generation_with_the_kv_cache_equals_generation_without(family):
    quantized = quantize_model(tiny_model(family))
    prompt = IDS[:1, :5]
    cached = quantized.generate(prompt, 30, temperature=0, use_cache=True)
    uncached = quantized.generate(prompt, 30, temperature=0, use_cache=False)
    assert torch.equal(cached, uncached)
    assert cached.shape == (1, 35) and len(set(cached[0, 5:].tolist())) > 1


@pytest.mark.parametrize("family", FAMILIES)
def test_save_and_load_give_identical_logits_and_store_a_tied_matrix_once(family, tmp_path):
    quantized = quantize_model(tiny_model(family))
    path = save_quantized(quantized, tmp_path / "model-int8.safetensors")
    loaded = load_quantized(path)
    assert torch.equal(logits(loaded), logits(quantized))
    assert torch.equal(loaded.generate(IDS[:1, :4], 10, temperature=0), quantized.generate(IDS[:1, :4], 10, temperature=0))
    with safetensors.safe_open(str(path), framework="pt") as file:
        names = set(file.keys())
    assert ("head.weight_int8" in names) == (family == "llama")  # gpt2's head is the embedding: stored once
    assert all(file_dtype == torch.int8 for file_dtype in
               (safetensors.torch.load_file(str(path))[name].dtype for name in names if name.endswith("weight_int8")))


def payload_bytes(path) -> int:
    """A safetensors file is 8 bytes (the header's length), the JSON header, then the tensors' bytes."""
    with open(path, "rb") as file:
        (header_length,) = struct.unpack("<Q", file.read(8))
        json.loads(file.read(header_length))  # it is a header
    return path.stat().st_size - 8 - header_length


@pytest.mark.parametrize("family", FAMILIES)
def test_file_sizes_are_what_the_parameter_counts_say(family, tmp_path):
    model = tiny_model(family)
    parameters = sum(p.numel() for p in model.parameters())  # a tied matrix is listed once
    linears = [m for name, m in model.named_modules() if isinstance(m, nn.Linear)
               and not (name == "head" and model.config.tie_embeddings)]  # a tied head is the embedding
    linear_weights = sum(m.weight.numel() for m in linears)
    scales = sum(m.out_features for m in linears)
    expected = {"float32": 4 * parameters, "bfloat16": 2 * parameters,
                "int8": 1 * linear_weights + 4 * scales + 4 * (parameters - linear_weights)}
    files = {"float32": tmp_path / "f32.safetensors", "bfloat16": tmp_path / "bf16.safetensors",
             "int8": tmp_path / "int8.safetensors"}
    safetensors.torch.save_model(model, str(files["float32"]))
    safetensors.torch.save_model(GPT(model.config).to(torch.bfloat16), str(files["bfloat16"]))
    save_quantized(quantize_model(model), files["int8"])
    for kind, path in files.items():
        assert payload_bytes(path) == expected[kind], kind
    assert saved_bytes(model) == files["float32"].stat().st_size
    assert saved_bytes(quantize_model(model)) == files["int8"].stat().st_size
    ratio = files["float32"].stat().st_size / files["int8"].stat().st_size
    assert ratio == pytest.approx(expected["float32"] / expected["int8"], rel=0.05)  # headers: a few kB
    assert 4 * linear_weights / (linear_weights + 4 * scales) > 3.5  # the linear weights alone: about 4x smaller


def test_the_validation_loss_of_chapter_5_reads_a_quantised_model():
    model = tiny_model("llama")
    ids = torch.randint(0, VOCAB, (500,), generator=torch.Generator().manual_seed(3))
    exact = token_losses(model, ids, block_size=CONTEXT).mean().item()
    quantized = token_losses(quantize_model(model), ids, block_size=CONTEXT).mean().item()
    assert quantized == pytest.approx(exact, rel=0.02)
    assert quantized != exact


def one_line_error(call, *args) -> str:
    with pytest.raises(ValueError) as error:
        call(*args)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_bad_inputs_give_one_clear_line(tmp_path):
    model = tiny_model("gpt2")
    assert "minilm GPT" in one_line_error(quantize_model, nn.Linear(3, 4))
    assert "quantised already" in one_line_error(quantize_model, quantize_model(model))
    assert "2-D" in one_line_error(absmax_quantize, torch.randn(2, 3, 4))
    assert "2-D float" in one_line_error(absmax_quantize, torch.ones(2, 3, dtype=torch.long))
    assert "NaN" in one_line_error(absmax_quantize, torch.tensor([[1.0, float("nan")]]))
    assert "nn.Linear" in one_line_error(Int8Linear.from_linear, nn.Conv1d(2, 2, 1))
    assert "quantize_model" in one_line_error(save_quantized, model, tmp_path / "x.safetensors")
    safetensors.torch.save_model(model, str(tmp_path / "float.safetensors"))
    assert "save_quantized" in one_line_error(load_quantized, tmp_path / "float.safetensors")
    assert "minilm GPT" in one_line_error(saved_bytes, nn.Linear(3, 4))
