"""Weights in and out of Hugging Face `transformers`: GPT-2 (GPT2LMHeadModel) and Llama (LlamaForCausalLM).

minilm's GPT holds the same numbers as those models under other names, so a checkpoint moves
across by renaming tensors. Two twists:

    GPT-2   stores its linear layers as `Conv1D`, weight (in, out): the transpose of nn.Linear's
    Llama   keeps q_proj, k_proj, v_proj apart; minilm stacks them into one `qkv` layer [q | k | v]

    from minilm.interop import load_hf_gpt2, to_hf_gpt2, load_hf_llama, to_hf_llama
    model = load_hf_gpt2(hf_model)            # a GPT2LMHeadModel -> minilm GPT, same logits
    hf_model = to_hf_gpt2(model)              # and back
    model = load_pretrained_gpt2("gpt2")      # OpenAI's GPT-2 (124M) from the Hub: needs the internet

The mapping (minilm name <- Hugging Face names), per block i:

    GPT-2                                           Llama
    token_embedding      transformer.wte            model.embed_tokens
    positions.table      transformer.wpe            (RoPE: no weights)
    attention_norm       transformer.h.i.ln_1       model.layers.i.input_layernorm
    attention.qkv        transformer.h.i.attn.c_attn (T)   self_attn.q_proj, k_proj, v_proj (stacked)
    attention.out        transformer.h.i.attn.c_proj (T)   self_attn.o_proj
    mlp_norm             transformer.h.i.ln_2       model.layers.i.post_attention_layernorm
    mlp.gate             -                          mlp.gate_proj
    mlp.up               transformer.h.i.mlp.c_fc (T)      mlp.up_proj
    mlp.out              transformer.h.i.mlp.c_proj (T)    mlp.down_proj
    final_norm           transformer.ln_f           model.norm
    head                 lm_head                    lm_head
(T: transposed.) The tests check both directions offline on tiny random models: same logits, same
greedy generations. Hugging Face's Llama pairs RoPE features as (i, i + head_dim/2), as minilm does.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from minilm.model import GPT, GPTConfig

GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")  # the tanh form of GELU that minilm's GPT-2 MLP uses


@dataclass(frozen=True)
class MappedTensor:
    """One minilm tensor and the Hugging Face tensors it is made of."""

    ours: str  # minilm's name
    theirs: tuple[str, ...]  # Hugging Face's names; several are stacked along dim 0 (Llama's q, k, v)
    transposed: bool = False  # GPT-2's Conv1D stores (in, out), nn.Linear (out, in)


def gpt2_tensor_map(config: GPTConfig) -> list[MappedTensor]:
    """Every tensor of a GPT-2-style minilm model and the GPT2LMHeadModel tensor it comes from."""
    names = [MappedTensor("token_embedding.weight", ("transformer.wte.weight",)),
             MappedTensor("positions.table.weight", ("transformer.wpe.weight",)),
             MappedTensor("final_norm.weight", ("transformer.ln_f.weight",)),
             MappedTensor("final_norm.bias", ("transformer.ln_f.bias",))]
    pairs = [("attention_norm", "ln_1", False), ("attention.qkv", "attn.c_attn", True),
             ("attention.out", "attn.c_proj", True), ("mlp_norm", "ln_2", False),
             ("mlp.up", "mlp.c_fc", True), ("mlp.out", "mlp.c_proj", True)]
    for i in range(config.n_layer):
        for ours, theirs, transposed in pairs:
            names.append(MappedTensor(f"blocks.{i}.{ours}.weight", (f"transformer.h.{i}.{theirs}.weight",), transposed))
            names.append(MappedTensor(f"blocks.{i}.{ours}.bias", (f"transformer.h.{i}.{theirs}.bias",)))
    if not config.tie_embeddings:
        names.append(MappedTensor("head.weight", ("lm_head.weight",)))
    return names


def llama_tensor_map(config: GPTConfig) -> list[MappedTensor]:
    """Every tensor of a Llama-style minilm model and the LlamaForCausalLM tensors it comes from."""
    names = [MappedTensor("token_embedding.weight", ("model.embed_tokens.weight",)),
             MappedTensor("final_norm.weight", ("model.norm.weight",))]
    if not config.tie_embeddings:
        names.append(MappedTensor("head.weight", ("lm_head.weight",)))
    kinds = ["weight", "bias"] if config.bias else ["weight"]
    for i in range(config.n_layer):
        layer = f"model.layers.{i}"
        names += [MappedTensor(f"blocks.{i}.attention_norm.weight", (f"{layer}.input_layernorm.weight",)),
                  MappedTensor(f"blocks.{i}.mlp_norm.weight", (f"{layer}.post_attention_layernorm.weight",))]
        for kind in kinds:
            names += [
                MappedTensor(f"blocks.{i}.attention.qkv.{kind}", tuple(f"{layer}.self_attn.{p}_proj.{kind}" for p in "qkv")),
                MappedTensor(f"blocks.{i}.attention.out.{kind}", (f"{layer}.self_attn.o_proj.{kind}",)),
                MappedTensor(f"blocks.{i}.mlp.gate.{kind}", (f"{layer}.mlp.gate_proj.{kind}",)),
                MappedTensor(f"blocks.{i}.mlp.up.{kind}", (f"{layer}.mlp.up_proj.{kind}",)),
                MappedTensor(f"blocks.{i}.mlp.out.{kind}", (f"{layer}.mlp.down_proj.{kind}",)),
            ]
    return names


def _from_theirs(names: list[MappedTensor], state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    ours = {}
    for tensor in names:
        parts = [state[name].t() if tensor.transposed else state[name] for name in tensor.theirs]
        ours[tensor.ours] = torch.cat(parts, dim=0).clone() if len(parts) > 1 else parts[0].clone()
    if "head.weight" not in ours:  # a tied head is the embedding matrix itself
        ours["head.weight"] = ours["token_embedding.weight"]
    return ours


def _to_theirs(names: list[MappedTensor], state: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    qkv_sizes = [config.n_embd, config.kv_heads * config.head_dim, config.kv_heads * config.head_dim]
    theirs = {}
    for tensor in names:
        value = state[tensor.ours]
        parts = value.split(qkv_sizes, dim=0) if len(tensor.theirs) == 3 else [value]
        for name, part in zip(tensor.theirs, parts):
            theirs[name] = (part.t() if tensor.transposed else part).contiguous().clone()
    return theirs


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


# GPT-2


def gpt2_config_from_hf(hf_config) -> GPTConfig:
    """The GPTConfig of a transformers GPT2Config (errors name the settings minilm does not build)."""
    _require(hf_config.activation_function in GPT2_ACTIVATIONS,
             f"activation_function={hf_config.activation_function!r}: minilm's GPT-2 uses the tanh GELU "
             f"({' or '.join(GPT2_ACTIVATIONS)}).")
    _require(hf_config.scale_attn_weights and not hf_config.scale_attn_by_inverse_layer_idx,
             "minilm scales attention scores by 1/√head_dim only; this GPT-2 config scales them otherwise.")
    return GPTConfig(vocab_size=hf_config.vocab_size, context_length=hf_config.n_positions,
                     n_layer=hf_config.n_layer, n_head=hf_config.n_head, n_embd=hf_config.n_embd,
                     family="gpt2", intermediate_size=hf_config.n_inner,
                     norm_eps=hf_config.layer_norm_epsilon, tie_embeddings=hf_config.tie_word_embeddings,
                     dropout=hf_config.resid_pdrop)


def gpt2_state_dict_from_hf(hf_model) -> dict[str, torch.Tensor]:
    """minilm's state dict from a GPT2LMHeadModel (its tensors copied, renamed, Conv1D transposed)."""
    config = gpt2_config_from_hf(hf_model.config)
    return _from_theirs(gpt2_tensor_map(config), hf_model.state_dict())


def load_hf_gpt2(hf_model) -> GPT:
    """A minilm GPT holding the weights of a transformers GPT2LMHeadModel (same logits)."""
    model = GPT(gpt2_config_from_hf(hf_model.config))
    model.load_state_dict(gpt2_state_dict_from_hf(hf_model))
    return model.to(next(hf_model.parameters()).device)


def _check_gpt2_shaped(config: GPTConfig) -> None:
    _require((config.position, config.norm, config.mlp, config.bias) == ("learned", "layernorm", "gelu", True),
             "only a GPT-2-style config (learned positions, LayerNorm, GELU, biases) maps onto GPT2LMHeadModel; "
             f"this one has position={config.position}, norm={config.norm}, mlp={config.mlp}, bias={config.bias}.")
    _require(config.kv_heads == config.n_head, "GPT2LMHeadModel has no grouped-query attention: set n_kv_head=None.")


def gpt2_state_dict_to_hf(model: GPT) -> dict[str, torch.Tensor]:
    """A GPT2LMHeadModel state dict from a GPT-2-style minilm model (the tied head included)."""
    _check_gpt2_shaped(model.config)
    state = _to_theirs(gpt2_tensor_map(model.config), model.state_dict(), model.config)
    if model.config.tie_embeddings:
        state["lm_head.weight"] = state["transformer.wte.weight"]
    return state


def to_hf_gpt2(model: GPT):
    """A transformers GPT2LMHeadModel with this model's weights (same logits)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    c = model.config
    _check_gpt2_shaped(c)
    hf_config = GPT2Config(vocab_size=c.vocab_size, n_positions=c.context_length, n_embd=c.n_embd,
                           n_layer=c.n_layer, n_head=c.n_head, n_inner=c.mlp_width,
                           activation_function="gelu_new", layer_norm_epsilon=c.norm_eps,
                           resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.dropout,
                           tie_word_embeddings=c.tie_embeddings, bos_token_id=None, eos_token_id=None)
    hf_model = GPT2LMHeadModel(hf_config)
    hf_model.load_state_dict(gpt2_state_dict_to_hf(model))
    return hf_model.to(next(model.parameters()).device)


def load_pretrained_gpt2(name: str = "gpt2") -> GPT:
    """OpenAI's GPT-2 weights through `transformers` ("gpt2", "gpt2-medium", ...), or any GPT-2 saved
    in a local folder with `save_pretrained`. A Hub name needs the internet the first time (or a copy
    in the Hugging Face cache); the tests load a tiny model from a folder, offline."""
    from transformers import GPT2LMHeadModel

    try:
        hf_model = GPT2LMHeadModel.from_pretrained(name)
    except OSError as error:
        raise RuntimeError(f"could not load {name!r} from the Hugging Face Hub ({error}). It needs the internet "
                           f"once (unset HF_HUB_OFFLINE), or a copy in the Hugging Face cache.") from error
    return load_hf_gpt2(hf_model)


# Llama


def _rope_parameters(hf_config) -> dict:
    return getattr(hf_config, "rope_parameters", None) or {"rope_type": "default", "rope_theta": hf_config.rope_theta}


def llama_config_from_hf(hf_config) -> GPTConfig:
    """The GPTConfig of a transformers LlamaConfig (errors name the settings minilm does not build)."""
    rope = _rope_parameters(hf_config)
    _require(rope.get("rope_type", "default") == "default",
             f"rope_type={rope.get('rope_type')!r}: minilm builds plain RoPE only (rope_type 'default').")
    _require(hf_config.hidden_act == "silu", f"hidden_act={hf_config.hidden_act!r}: minilm's SwiGLU uses silu.")
    _require(hf_config.attention_bias == hf_config.mlp_bias,
             "minilm has one `bias` switch: attention_bias and mlp_bias must agree.")
    head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads
    _require(head_dim * hf_config.num_attention_heads == hf_config.hidden_size,
             f"head_dim={head_dim} × {hf_config.num_attention_heads} heads must equal hidden_size={hf_config.hidden_size}.")
    return GPTConfig(vocab_size=hf_config.vocab_size, context_length=hf_config.max_position_embeddings,
                     n_layer=hf_config.num_hidden_layers, n_head=hf_config.num_attention_heads,
                     n_embd=hf_config.hidden_size, family="llama", intermediate_size=hf_config.intermediate_size,
                     n_kv_head=hf_config.num_key_value_heads, norm_eps=hf_config.rms_norm_eps,
                     rope_theta=rope["rope_theta"], bias=hf_config.attention_bias,
                     tie_embeddings=hf_config.tie_word_embeddings, dropout=hf_config.attention_dropout)


def llama_state_dict_from_hf(hf_model) -> dict[str, torch.Tensor]:
    """minilm's state dict from a LlamaForCausalLM (q, k, v stacked into one qkv layer)."""
    config = llama_config_from_hf(hf_model.config)
    return _from_theirs(llama_tensor_map(config), hf_model.state_dict())


def load_hf_llama(hf_model) -> GPT:
    """A minilm GPT holding the weights of a transformers LlamaForCausalLM (same logits)."""
    model = GPT(llama_config_from_hf(hf_model.config))
    model.load_state_dict(llama_state_dict_from_hf(hf_model))
    return model.to(next(hf_model.parameters()).device)


def _check_llama_shaped(config: GPTConfig) -> None:
    _require((config.position, config.norm, config.mlp) == ("rope", "rmsnorm", "swiglu"),
             "only a Llama-style config (RoPE, RMSNorm, SwiGLU) maps onto LlamaForCausalLM; this one has "
             f"position={config.position}, norm={config.norm}, mlp={config.mlp}.")


def llama_state_dict_to_hf(model: GPT) -> dict[str, torch.Tensor]:
    """A LlamaForCausalLM state dict from a Llama-style minilm model (qkv split into q, k, v)."""
    _check_llama_shaped(model.config)
    state = _to_theirs(llama_tensor_map(model.config), model.state_dict(), model.config)
    if model.config.tie_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    return state


def to_hf_llama(model: GPT):
    """A transformers LlamaForCausalLM with this model's weights (same logits)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    c = model.config
    _check_llama_shaped(c)
    hf_config = LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.n_embd, intermediate_size=c.mlp_width,
                            num_hidden_layers=c.n_layer, num_attention_heads=c.n_head, num_key_value_heads=c.kv_heads,
                            head_dim=c.head_dim, max_position_embeddings=c.context_length, rms_norm_eps=c.norm_eps,
                            rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta},
                            attention_bias=c.bias, mlp_bias=c.bias, attention_dropout=c.dropout,
                            tie_word_embeddings=c.tie_embeddings, bos_token_id=None, eos_token_id=None)
    hf_model = LlamaForCausalLM(hf_config)
    hf_model.load_state_dict(llama_state_dict_to_hf(model))
    return hf_model.to(next(model.parameters()).device)
