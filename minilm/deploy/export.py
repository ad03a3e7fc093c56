"""Chapter 6c: export a checkpoint as a Hugging Face model folder, for the servers other people run.

    python -m minilm export runs/stories exports/stories

vLLM (`vllm serve DIR`), Text Generation Inference and llama.cpp's convert_hf_to_gguf.py all read the
same format: the folder `save_pretrained` writes. So do `transformers` itself, and the Hub. This
command writes it from a minilm checkpoint (a folder a training run saved, with its tokenizer):

    config.json              GPT2LMHeadModel or LlamaForCausalLM, with the checkpoint's sizes
    model.safetensors        the weights, renamed by minilm.interop (to_hf_gpt2, to_hf_llama)
    generation_config.json   bos, eos and pad: the end-of-text id (and <|end|> also stops a chat model)
    tokenizer.json           a `tokenizers` tokenizer giving exactly minilm's ids (see below)
    tokenizer_config.json    special tokens, and a Jinja chat template if the tokenizer has chat tokens
    special_tokens_map.json

    from transformers import AutoModelForCausalLM, AutoTokenizer
    model, tokenizer = AutoModelForCausalLM.from_pretrained(DIR), AutoTokenizer.from_pretrained(DIR)

The tokenizer is rebuilt, not translated by a library: a BPE model over GPT-2's byte-to-character
alphabet holding minilm's vocab and merges (in rank order), after a pre-tokeniser that splits on
minilm's own regex (GPT2_PATTERN) and then maps bytes to characters (ByteLevel without its own
regex); a ByteLevel decoder; and the special tokens as added special tokens with their minilm ids.
minilm cuts special tokens out of any text before splitting it, and so do added tokens, so
"a<|endoftext|>b" gives the special id in both. A CharTokenizer becomes a WordLevel model over single
characters (every character split apart, no merges): an exact equivalent, which like minilm refuses
a character it has never seen (tokenizers raises an error) instead of dropping it.

Only models transformers can express are exported: interop's checks refuse the rest (sinusoidal
positions, say) with one line, as they refuse a folder that is not a checkpoint or an export
folder that is not empty.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from minilm.bpe_train import GPT2_PATTERN
from minilm.checkpoint import load_checkpoint
from minilm.data import END_OF_TEXT
from minilm.tokenizer import BPETokenizer, CharTokenizer, gpt2_byte_to_char

BYTE_TO_CHAR = gpt2_byte_to_char()
PARTIAL = ".partial"  # the export is written under DIR.partial, then renamed to DIR when complete


# The model ------------------------------------------------------------------------------------


def hf_model(model, end_of_text: int | None, stops: list[int]):
    """The transformers model holding `model`'s weights, its token ids for bos, eos and pad set."""
    from transformers import GenerationConfig

    from minilm.interop import to_hf_gpt2, to_hf_llama

    family = getattr(getattr(model, "config", None), "family", None)
    if family not in ("gpt2", "llama"):
        raise ValueError(f"cannot export a {type(model).__name__}: only a minilm GPT (family gpt2 or llama) maps "
                         f"onto a transformers model.")
    try:
        hf = (to_hf_gpt2 if family == "gpt2" else to_hf_llama)(model.cpu())
    except ValueError as error:
        raise ValueError(f"transformers cannot express this model: {error}") from None
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(hf.config, name, end_of_text)
    hf.generation_config = GenerationConfig(bos_token_id=end_of_text, pad_token_id=end_of_text,
                                            eos_token_id=stops[0] if len(stops) == 1 else (stops or None))
    return hf.eval()


def write_model(model, folder: Path, end_of_text: int | None, stops: list[int]) -> None:
    """config.json, generation_config.json and model.safetensors."""
    hf_model(model, end_of_text, stops).save_pretrained(folder, safe_serialization=True)
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    if model.config.family == "llama":  # transformers 5 keeps it in rope_parameters, 4.x and vLLM read rope_theta
        config["rope_theta"] = model.config.rope_theta
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


# The tokenizer --------------------------------------------------------------------------------


def byte_level(token: bytes) -> str:
    """A token's bytes written in GPT-2's alphabet: one printable character per byte (a space is "Ġ")."""
    return "".join(BYTE_TO_CHAR[b] for b in token)


def bpe_tokenizer(tokenizer: BPETokenizer):
    """A `tokenizers.Tokenizer` that gives the same ids as minilm's byte-level BPE."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    specials = {token_id: token for token, token_id in tokenizer.special_tokens.items()}
    vocab = {(specials[i] if i in specials else byte_level(token)): i for i, token in enumerate(tokenizer.vocab)}
    if len(vocab) != tokenizer.vocab_size:
        raise ValueError("a special token has the same text as an ordinary token's bytes; a Hugging Face "
                         "vocabulary cannot hold both.")
    merges = list(dict.fromkeys((byte_level(left), byte_level(right)) for left, right in tokenizer.merges))
    fast = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))  # the first of equal merges wins
    fast.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(GPT2_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    fast.decoder = decoders.ByteLevel()
    return fast


def char_tokenizer(tokenizer: CharTokenizer):
    """A `tokenizers.Tokenizer` over single characters: each its own word, looked up, never merged."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {c: i for i, c in enumerate(tokenizer.characters)} | tokenizer.special_tokens
    fast = Tokenizer(models.WordLevel(vocab=vocab, unk_token=None))
    fast.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    fast.decoder = decoders.Fuse()  # join the characters with nothing between them
    return fast


def fast_tokenizer(tokenizer):
    """minilm's tokenizer as a `tokenizers.Tokenizer`, its special tokens added with their own ids."""
    from tokenizers import AddedToken

    if isinstance(tokenizer, BPETokenizer):
        fast = bpe_tokenizer(tokenizer)
    elif isinstance(tokenizer, CharTokenizer):
        fast = char_tokenizer(tokenizer)
    else:
        raise ValueError(f"cannot export a {type(tokenizer).__name__}: only minilm's BPETokenizer and "
                         f"CharTokenizer have a Hugging Face equivalent here.")
    ordered = sorted(tokenizer.special_tokens, key=tokenizer.special_tokens.get)
    fast.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in ordered])
    for token, token_id in tokenizer.special_tokens.items():
        if fast.token_to_id(token) != token_id or fast.decode([token_id], skip_special_tokens=False) != token:
            raise ValueError(f"special token {token!r} does not keep its id {token_id} and its text in a "
                             f"Hugging Face tokenizer.")
    return fast


def chat_template() -> str:
    """Jinja that writes minilm.apps.chat.format_chat's transcript (and refuses what it refuses)."""
    from minilm.apps.chat import END_OF_MESSAGE, RESERVED, ROLE_TOKENS

    return ("{%- set roles = " + json.dumps(ROLE_TOKENS) + " -%}"
            "{%- for message in messages -%}"
            "{%- if message['role'] not in roles -%}"
            "{{ raise_exception('unknown role: ' + message['role']) }}{%- endif -%}"
            "{%- for token in " + json.dumps(list(RESERVED)) + " if token in message['content'] -%}"
            "{{ raise_exception('a message cannot contain the special token ' + token) }}{%- endfor -%}"
            "{{ roles[message['role']] + '\\n' + message['content'] + " + json.dumps(END_OF_MESSAGE + "\n") + " }}"
            "{%- endfor -%}"
            "{%- if add_generation_prompt -%}{{ " + json.dumps(ROLE_TOKENS["assistant"] + "\n") + " }}{%- endif -%}")


def has_chat_tokens(tokenizer) -> bool:
    from minilm.apps.chat import CHAT_TOKENS

    return all(token in tokenizer.special_tokens for token in CHAT_TOKENS)


def write_tokenizer(tokenizer, folder: Path, context_length: int) -> None:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json."""
    fast_tokenizer(tokenizer).save(str(folder / "tokenizer.json"))
    end = END_OF_TEXT if END_OF_TEXT in tokenizer.special_tokens else None
    others = [token for token in sorted(tokenizer.special_tokens, key=tokenizer.special_tokens.get) if token != end]
    special = {"bos_token": end, "eos_token": end, "pad_token": end, "unk_token": None}
    special_map = {k: v for k, v in special.items() if v is not None} | {"additional_special_tokens": others}
    added = {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                      "special": True} for t, i in sorted(tokenizer.special_tokens.items(), key=lambda item: item[1])}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", **special, "additional_special_tokens": others,
              "added_tokens_decoder": added, "model_max_length": context_length, "add_bos_token": False,
              "add_eos_token": False, "clean_up_tokenization_spaces": False}
    if has_chat_tokens(tokenizer):
        config["chat_template"] = chat_template()
    for name, payload in (("tokenizer_config.json", config), ("special_tokens_map.json", special_map)):
        (folder / name).write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# The folder -----------------------------------------------------------------------------------


def check_destination(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ValueError(f"{folder} already exists and is not an empty folder; export into a new folder, or "
                         f"delete it first.")


def stop_ids(tokenizer) -> list[int]:
    """The ids that end a reply: <|end|> for a chat model, then <|endoftext|>."""
    from minilm.apps.chat import END_OF_MESSAGE

    return [tokenizer.special_tokens[t] for t in (END_OF_MESSAGE, END_OF_TEXT) if t in tokenizer.special_tokens]


def export(checkpoint: str | Path, folder: str | Path) -> Path:
    """Write the Hugging Face folder of a minilm checkpoint into `folder` (new or empty); return it."""
    folder = Path(folder)
    check_destination(folder)
    loaded = load_checkpoint(checkpoint)
    tokenizer, model = loaded.tokenizer, loaded.model
    if tokenizer is None:
        raise ValueError(f"{checkpoint} holds no tokenizer; a served model needs one (save the checkpoint with "
                         f"save_checkpoint(..., tokenizer=...)).")
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                         f"{model.config.vocab_size}; this checkpoint's tokenizer is not the model's.")
    staging = folder.with_name(folder.name + PARTIAL)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        write_tokenizer(tokenizer, staging, model.config.context_length)
        end = tokenizer.special_tokens.get(END_OF_TEXT)
        write_model(model, staging, end, stop_ids(tokenizer))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if folder.exists():
        folder.rmdir()  # empty, as checked
    staging.rename(folder)
    return folder


def add_command(subparsers) -> None:
    """`python -m minilm export CHECKPOINT DIR`."""
    parser = subparsers.add_parser(
        "export", help="write a checkpoint as a Hugging Face folder (for transformers, vLLM, TGI, llama.cpp)",
        description="Write the checkpoint's model and tokenizer in the Hugging Face format: config.json, "
                    "model.safetensors, tokenizer.json, ... Load it with transformers' "
                    "AutoModelForCausalLM.from_pretrained(DIR), or serve it with `vllm serve DIR`.")
    parser.add_argument("checkpoint", help="the checkpoint folder (saved by training, with its tokenizer)")
    parser.add_argument("dir", help="the folder to write (new, or empty)")
    parser.set_defaults(run=run)


def run(args) -> int:
    folder = export(args.checkpoint, args.dir)
    print(f"exported {args.checkpoint} to {folder} (load it with AutoModelForCausalLM.from_pretrained)")
    return 0
