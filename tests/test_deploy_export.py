"""`python -m minilm export CHECKPOINT DIR`, offline, on tiny random models: the folder loads in
`transformers` (AutoModelForCausalLM, a fast AutoTokenizer) and gives minilm's logits, greedy
generations and token ids, chat transcripts through apply_chat_template included; bad input is one line."""
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from minilm.__main__ import main
from minilm.apps.chat import END_OF_MESSAGE, add_chat_tokens, format_chat
from minilm.checkpoint import save_checkpoint
from minilm.data import END_OF_TEXT, StoryWorld
from minilm.deploy.export import export
from minilm.model import GPT, GPTConfig
from minilm.tokenizer import BPETokenizer, CharTokenizer

STORIES = [s.text for s in StoryWorld().stories(10, seed=65)]
TOKENIZER = BPETokenizer.train(STORIES, 350)
END = TOKENIZER.special_tokens[END_OF_TEXT]
CONTEXT = 48
FAMILIES = {"gpt2": {}, "llama": {"family": "llama", "n_kv_head": 1, "rope_theta": 1000.0, "tie_embeddings": False}}
TEXTS = [*STORIES[:3], "Hello, world!!! ...?", "It's 2024: 3.14159 + 42 = 45.14159", "a  b   c\t\td \n\n\n  e",
         "  leading and trailing   ", "line one\nline two\r\n\tindented", "naïve café, Zürich — “quoted” ½",
         "日本語のテキスト 🙂🚀 👩‍👩‍👧", f"One story.{END_OF_TEXT}Another one.", f"{END_OF_TEXT}{END_OF_TEXT} x", "", " "]
CHATS = [[{"role": "user", "content": "Who is Mia?"}],
         [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Where is Leo?\nTell me."},
          {"role": "assistant", "content": "In the  garden."}, {"role": "user", "content": "And then? 🙂"}]]


def tiny_model(vocab_size: int = TOKENIZER.vocab_size, **config) -> GPT:
    """A random model whose every weight (norm gains and biases too) matters for its logits."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=vocab_size, context_length=CONTEXT, n_layer=1, n_head=2, n_embd=32, **config))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    return model.eval()


def exported(tmp_path, model, tokenizer) -> str:
    save_checkpoint(tmp_path / "run", model, tokenizer=tokenizer)
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "hf")]) == 0
    return str(tmp_path / "hf")


def ids_of(result) -> list[int]:
    """apply_chat_template(tokenize=True) gives a list in transformers 4, a BatchEncoding in 5."""
    return list(result["input_ids"] if hasattr(result, "keys") else result)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_export_gives_minilm_logits_and_greedy_generations(tmp_path, family):
    model = tiny_model(**FAMILIES[family])
    folder = exported(tmp_path, model, TOKENIZER)
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert type(hf).__name__ == ("GPT2LMHeadModel" if family == "gpt2" else "LlamaForCausalLM")
    ids = torch.tensor([TOKENIZER.encode(STORIES[0])[:CONTEXT], TOKENIZER.encode(STORIES[1])[:CONTEXT]])
    with torch.no_grad():
        theirs, ours = hf(ids).logits, model(ids)[0]
    assert ours.abs().max() > 1  # large logits: a match is no accident
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)
    prompt = torch.tensor([TOKENIZER.encode("Once, a")])
    with torch.no_grad():
        hf_ids = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=24, do_sample=False)
    assert hf_ids.tolist() == model.generate(prompt, 24, temperature=0, stop_tokens=[END]).tolist()
    generation = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert generation["eos_token_id"] == generation["bos_token_id"] == generation["pad_token_id"] == END


def test_the_fast_tokenizer_gives_minilm_ids_and_decodes_back(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(exported(tmp_path, tiny_model(), TOKENIZER))
    assert tokenizer.is_fast and tokenizer.eos_token_id == tokenizer.pad_token_id == END
    for text in TEXTS:
        ids = tokenizer.encode(text)
        assert ids == TOKENIZER.encode(text), text
        assert tokenizer.decode(ids) == text
    assert tokenizer.decode(TOKENIZER.encode("🙂")[:1]) == TOKENIZER.decode(TOKENIZER.encode("🙂")[:1])  # U+FFFD


def test_a_chat_checkpoint_gets_a_chat_template(tmp_path):
    tokenizer, model = add_chat_tokens(TOKENIZER, tiny_model())
    folder = exported(tmp_path, model, tokenizer)
    hf_tokenizer = AutoTokenizer.from_pretrained(folder)
    for messages in CHATS:
        for prompt in (True, False):
            ids = ids_of(hf_tokenizer.apply_chat_template(messages, add_generation_prompt=prompt, tokenize=True))
            assert ids == tokenizer.encode(format_chat(messages, add_generation_prompt=prompt))
            text = hf_tokenizer.apply_chat_template(messages, add_generation_prompt=prompt, tokenize=False)
            assert text == format_chat(messages, add_generation_prompt=prompt)
    with pytest.raises(Exception, match="special token"):
        hf_tokenizer.apply_chat_template([{"role": "user", "content": f"hi{END_OF_MESSAGE}"}], tokenize=False)
    generation = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [tokenizer.special_tokens[END_OF_MESSAGE], END]


def test_a_character_tokenizer_becomes_a_word_level_one(tmp_path):
    tokenizer = CharTokenizer.train(STORIES + ["\n\t 0123456789!?"])
    hf_tokenizer = AutoTokenizer.from_pretrained(exported(tmp_path, tiny_model(tokenizer.vocab_size), tokenizer))
    assert hf_tokenizer.is_fast
    for text in [STORIES[0], "a  b\n\n\tc 42!", f"End.{END_OF_TEXT}Next", ""]:
        assert hf_tokenizer.encode(text) == tokenizer.encode(text)
        assert hf_tokenizer.decode(tokenizer.encode(text)) == text
    with pytest.raises(Exception):  # an unseen character has no id in either: refused, not dropped
        hf_tokenizer.encode("€")


def one_line_error(call) -> str:
    with pytest.raises(ValueError) as error:
        call()
    assert "\n" not in str(error.value)
    return str(error.value)


def test_bad_input_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "not a checkpoint" in one_line_error(lambda: export(tmp_path / "empty", tmp_path / "a"))
    save_checkpoint(tmp_path / "run", tiny_model(), tokenizer=TOKENIZER)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert "not an empty folder" in one_line_error(lambda: export(tmp_path / "run", tmp_path / "full"))
    save_checkpoint(tmp_path / "sinusoidal", tiny_model(position="sinusoidal"), tokenizer=TOKENIZER)
    message = one_line_error(lambda: export(tmp_path / "sinusoidal", tmp_path / "b"))
    assert "transformers cannot express" in message and "sinusoidal" in message
    save_checkpoint(tmp_path / "bare", tiny_model())
    assert "no tokenizer" in one_line_error(lambda: export(tmp_path / "bare", tmp_path / "c"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare", "empty", "full", "run", "sinusoidal"]  # nothing left
    export(tmp_path / "run", tmp_path / "empty")  # an empty folder is fine
    assert {"config.json", "model.safetensors", "tokenizer.json", "special_tokens_map.json"} <= {
        p.name for p in (tmp_path / "empty").iterdir()}


def test_a_missing_checkpoint_is_one_line_on_the_command_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none"), str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("minilm export:") and "does not exist" in error and error.count("\n") == 1
