"""Weight-only int8 quantisation, by hand: linear weights 4x smaller on disk, almost the same text.

A float32 weight takes 4 bytes. Most of a GPT's numbers sit in the weight matrices of its linear
layers, and each row of such a matrix (one output channel) can be stored as 8-bit whole numbers
plus one float scale per row, with the row's largest magnitude mapped to 127 ("absmax"):

    scale[o] = max_i |W[o, i]| / 127                   one float32 per output channel
    q[o, i]  = round(W[o, i] / scale[o])               in -127..127, one int8 per weight
    W[o, i] ≈ q[o, i] · scale[o]                       off by at most scale[o] / 2

The layer then computes y = x Wᵀ + b with W ≈ q · scale. Only the weights are quantised: the
activations, the embeddings and the norms stay float ("weight-only"), so the error is the rounding
of the weights alone.

    from minilm.deploy.quantize import quantize_model, save_quantized, load_quantized, saved_bytes
    small = quantize_model(model)               # a copy: every nn.Linear is now an Int8Linear
    small.generate(prompt, 50, temperature=0)   # generates, with the KV cache, as before
    save_quantized(small, "model-int8.safetensors")
    same = load_quantized("model-int8.safetensors")
    saved_bytes(model), saved_bytes(model.to(torch.bfloat16)), saved_bytes(small)   # file sizes

The validation loss of any of them comes from chapter 5, unchanged:
`minilm.evaluate.lm.token_losses(small, tokens.streams["validation"], block_size).mean()`.

What this buys is memory and disk, not speed: `Int8Linear` turns the int8 weight back into floats
inside every matmul. Serving engines get speed too from int8 matmul kernels (int8 × int8 → int32),
which also quantise the activations; `torch.ao.quantization.quantize_dynamic` is one (the tests
compare with it).
"""
from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from minilm.model import GPT, GPTConfig

FORMAT = "minilm-int8/1"  # written into the file's metadata, checked when it is loaded
LEVELS = 127  # the largest int8 magnitude used: -127..127, symmetric, so 0.0 is stored exactly


def absmax_quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel absmax: (q int8 (out, in), scale float32 (out,)) with weight ≈ q · scale."""
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or not weight.is_floating_point():
        what = f"a {weight.dtype} tensor of shape {tuple(weight.shape)}" if isinstance(weight, torch.Tensor) \
            else type(weight).__name__
        raise ValueError(f"absmax_quantize needs a 2-D float weight (out_features, in_features), got {what}.")
    w = weight.detach().float()  # (out, in)
    if not torch.isfinite(w).all():
        raise ValueError("the weight holds NaN or infinite values: there is no scale to store them with.")
    scale = w.abs().amax(dim=1) / LEVELS  # (out,): the row's largest magnitude becomes ±127
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # a row of zeros: any scale gives q = 0
    # multiply by the inverse, as PyTorch's quantisers do: w / scale rounds the other way on a near-tie
    inverse = 1.0 / scale  # (out,)
    q = torch.round(w * inverse[:, None]).clamp(-LEVELS, LEVELS).to(torch.int8)  # (out, in)
    return q, scale


def dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The float32 weight that q (out, in) and scale (out,) stand for: q · scale, row by row."""
    return q.float() * scale.float()[:, None]  # (out, in)


class Int8Linear(nn.Module):
    """A linear layer whose weight is stored as int8 with one float32 scale per output channel."""

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        if q.dtype != torch.int8 or q.dim() != 2 or scale.shape != (q.shape[0],):
            raise ValueError(f"Int8Linear needs an int8 weight (out, in) and a scale (out,), got {q.dtype} "
                             f"{tuple(q.shape)} and {tuple(scale.shape)}.")
        self.out_features, self.in_features = q.shape
        self.register_buffer("weight_int8", q)  # (out, in) int8: buffers, not parameters, as nothing trains them
        self.register_buffer("scale", scale.float())  # (out,) float32
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)  # (out,)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8Linear":
        """The int8 version of an nn.Linear: its weight absmax-quantised per row, its bias kept as is."""
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"Int8Linear.from_linear needs an nn.Linear, got {type(linear).__name__}.")
        q, scale = absmax_quantize(linear.weight)
        return cls(q, scale.to(linear.weight.device), linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # y[o] = Σ_i x[i] · q[o, i] · scale[o] = scale[o] · Σ_i x[i] · q[o, i]: the scale of an output
        # channel is the same for every term of its sum, so it comes out of the sum, after the matmul
        y = F.linear(x, self.weight_int8.to(x.dtype))  # (..., in) @ (in, out) -> (..., out)
        y = y * self.scale.to(x.dtype)  # (..., out) · (out,)
        return y if self.bias is None else y + self.bias.to(x.dtype)  # (..., out)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def _linear_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, module)


def quantize_model(model: GPT) -> GPT:
    """A copy of a minilm GPT with every nn.Linear (attention, MLP, head) an Int8Linear, in eval mode.

    Embeddings, positions and norms stay float. A head tied to the token embedding gets an int8 copy
    of that matrix, while the lookup keeps the float one (the file stores only the float one).
    """
    if not isinstance(model, GPT):
        raise ValueError(f"quantize_model needs a minilm GPT (minilm.model.GPT), got {type(model).__name__}.")
    names = _linear_names(model)
    if not names:
        raise ValueError("the model has no nn.Linear layer left to quantise: is it quantised already?")
    quantized = copy.deepcopy(model).eval()
    for name in names:
        _set_module(quantized, name, Int8Linear.from_linear(quantized.get_submodule(name)))
    return quantized


def _head_is_tied(model: GPT) -> bool:
    return bool(model.config.tie_embeddings)


def save_quantized(model: GPT, path: str | Path) -> Path:
    """Write a quantised GPT to one safetensors file: int8 weights, float32 scales, the config.

    A tied head's int8 matrix is not written: it is the absmax quantisation of the token embedding,
    which the file holds, and `load_quantized` makes it again (exactly: rounding is deterministic).
    """
    if not isinstance(model, GPT) or not any(isinstance(m, Int8Linear) for m in model.modules()):
        raise ValueError("save_quantized needs a quantised GPT: call quantize_model(model) first.")
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    if _head_is_tied(model):
        del tensors["head.weight_int8"], tensors["head.scale"]
    metadata = {"format": FORMAT, "config": json.dumps(model.config.to_dict())}
    path = Path(path)
    safetensors.torch.save_file(tensors, str(path), metadata=metadata)
    return path


def load_quantized(path: str | Path, device: torch.device | str = "cpu") -> GPT:
    """The quantised GPT that `save_quantized` wrote, in eval mode on `device`."""
    with safetensors.safe_open(str(path), framework="pt") as file:
        metadata = file.metadata() or {}
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is not a file save_quantized wrote (its format is {metadata.get('format')!r}, "
                         f"expected {FORMAT!r}).")
    config = GPTConfig.from_dict(json.loads(metadata["config"]))
    with torch.random.fork_rng(devices=[]):  # building the skeleton draws random weights: keep the caller's RNG
        model = quantize_model(GPT(config))
    tensors = safetensors.torch.load_file(str(path))
    if _head_is_tied(model):
        tensors["head.weight_int8"], tensors["head.scale"] = absmax_quantize(tensors["token_embedding.weight"])
    model.load_state_dict(tensors, strict=True)
    return model.to(device)


def saved_bytes(model: GPT) -> int:
    """The size in bytes of the safetensors file this model saves to, written to a temporary file.

    A quantised GPT is written by `save_quantized`; a float one (float32, or after
    `.to(torch.bfloat16)`) by `safetensors.torch.save_model`, which stores a tied matrix once.
    """
    if not isinstance(model, GPT):
        raise ValueError(f"saved_bytes needs a minilm GPT, got {type(model).__name__}.")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.safetensors")
        if any(isinstance(m, Int8Linear) for m in model.modules()):
            save_quantized(model, path)
        else:
            safetensors.torch.save_model(model, path)
        return os.path.getsize(path)
