"""Supervised fine-tuning: the loss mask against PyTorch's cross-entropy on the answer positions alone,
padding that changes nothing, batches drawn by number, and a model that learns to answer."""
import pytest
import torch
import torch.nn.functional as F

from minilm.data import END_OF_TEXT, StoryWorld
from minilm.posttrain.finetune import (IGNORE_INDEX, SFT_SIZES, ExampleBatches, encode_example, encode_fitting, finetune,
                             finetune_config, pad_batch)
from minilm.model import GPT, GPTConfig
from minilm.presets import choose
from minilm.apps.tasks import Example, story_examples
from minilm.tokenizer import BPETokenizer

STORIES = StoryWorld().stories(20, seed=61)
EXAMPLES = story_examples("qa", STORIES)
TOKENIZER = BPETokenizer.train([e.prompt + e.answer for e in EXAMPLES], 400)
END = TOKENIZER.special_tokens[END_OF_TEXT]


def tiny_model(context: int = 256, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=TOKENIZER.vocab_size, context_length=context, n_layer=1, n_head=2, n_embd=32))


def test_encode_example_learns_the_answer_and_the_end_only():
    for example in EXAMPLES[:16]:
        inputs, targets = encode_example(TOKENIZER, example.prompt, example.answer)
        prompt, answer = TOKENIZER.encode(example.prompt), TOKENIZER.encode(example.answer)
        assert inputs + [targets[-1]] == prompt + answer + [END]
        assert [t for t in targets if t != IGNORE_INDEX] == answer + [END]
        assert targets[:len(prompt) - 1] == [IGNORE_INDEX] * (len(prompt) - 1)
        assert targets[len(prompt) - 1:] == (inputs + [END])[len(prompt):]  # shifted by one


def test_masked_loss_is_the_mean_cross_entropy_over_answer_tokens():
    model = tiny_model()
    example = EXAMPLES[3]
    inputs, targets = encode_example(TOKENIZER, example.prompt, example.answer)
    x, y = torch.tensor([inputs]), torch.tensor([targets])
    logits, loss = model(x, y)
    prompt_length = len(TOKENIZER.encode(example.prompt))
    full = torch.tensor([TOKENIZER.encode(example.prompt) + TOKENIZER.encode(example.answer) + [END]])
    positions = range(prompt_length - 1, full.shape[1] - 1)  # each predicts an answer token or the end
    by_hand = torch.stack([F.cross_entropy(logits[0, t], full[0, t + 1]) for t in positions]).mean()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_right_padding_changes_no_loss():
    model = tiny_model()
    encoded = [encode_example(TOKENIZER, e.prompt, e.answer) for e in EXAMPLES[:5]]
    x, y = pad_batch(encoded, pad_id=END)
    assert x.shape == y.shape == (5, max(len(i) for i, _ in encoded))
    _, batch_loss = model(x, y)
    total, count = 0.0, 0
    for inputs, targets in encoded:  # one at a time, no padding at all
        logits, _ = model(torch.tensor([inputs]))
        total += F.cross_entropy(logits[0], torch.tensor(targets), ignore_index=-100, reduction="sum").item()
        count += sum(t != IGNORE_INDEX for t in targets)
    assert batch_loss.item() == pytest.approx(total / count, rel=1e-5)


def test_batches_are_drawn_by_number():
    encoded = [encode_example(TOKENIZER, e.prompt, e.answer) for e in EXAMPLES]
    batches = ExampleBatches({"train": encoded, "validation": encoded[:3]}, batch_size=4, pad_id=END, seed=1)
    a, b = batches.get_batch("train", 7), batches.get_batch("train", 7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(batches.get_batch("train", 8)[0][:, :5], a[0][:, :5]) or len(encoded) == 1
    with pytest.raises(ValueError, match="validation"):
        ExampleBatches({"train": encoded, "validation": []}, 4, END)


def test_examples_longer_than_the_context_are_left_out_or_refused():
    lengths = [len(encode_example(TOKENIZER, e.prompt, e.answer)[0]) for e in EXAMPLES]
    cut = sorted(lengths)[len(lengths) // 2]
    kept = encode_fitting(TOKENIZER, EXAMPLES, cut)
    assert len(kept) == sum(length <= cut for length in lengths)
    with pytest.raises(ValueError, match="none of the .* examples fits the model's context of 10 tokens"):
        encode_fitting(TOKENIZER, EXAMPLES, 10)
    with pytest.raises(ValueError, match="no special token"):
        encode_example(TOKENIZER, "a", " b", end_token="<|missing|>")


def test_finetune_config_follows_the_preset_and_the_task():
    for preset in ("smoke", "cpu", "gpu"):
        sizes = choose(SFT_SIZES, preset)
        for task in ("translation", "qa", "summary", "mood", "chat"):
            config = finetune_config(task, preset)
            assert (config.steps, config.batch_size, config.lr) == (sizes.steps[task], sizes.batch_size, sizes.lr)
    assert finetune_config("qa", "smoke", steps=3).steps == 3
    with pytest.raises(ValueError, match="no fine-tuning length for task 'poetry'"):
        finetune_config("poetry")


def test_finetuning_teaches_an_answer_and_leaves_the_original_alone():
    model = tiny_model(context=32)
    before = {name: p.clone() for name, p in model.state_dict().items()}
    examples = [Example("qa", "Who is it?\nAnswer:", " Mia"), Example("qa", "Where?\nAnswer:", " home")]
    config = finetune_config("qa", "smoke", steps=60, batch_size=2, lr=1e-2, warmup_steps=5)
    tuned = finetune(model, TOKENIZER, examples, examples, config)
    assert all(torch.equal(before[name], p) for name, p in model.state_dict().items())
    assert tuned.examples == {"train": 2, "validation": 2}
    assert tuned.history[-1]["val_loss"] < tuned.history[0]["val_loss"] / 4
    for example in examples:
        prompt = torch.tensor([TOKENIZER.encode(example.prompt)])
        out = tuned.model.generate(prompt, 8, temperature=0, stop_tokens=[END])
        assert TOKENIZER.decode(out[0, prompt.shape[1]:].tolist()) == example.answer + END_OF_TEXT


def test_without_a_config_each_task_gets_its_presets_run():
    tuned = finetune(tiny_model(), TOKENIZER, EXAMPLES[:4], EXAMPLES[:2])
    steps = [record["step"] for record in tuned.history if "train_loss" in record]
    assert steps[-1] == choose(SFT_SIZES).steps["qa"] == len(steps)
