"""The capstone's grader: each piece against minilm first (so a failure names the piece: tokenizer,
batches, model, initialisation, loop), then the assembled model trained on the story world against
minilm's run at the same budget and seed, and against a Kneser-Ney n-gram model on the same tokens.

The budget follows the preset: `./course exercise capstone` grades at the smoke preset (seconds);
`MINILM_PRESET=cpu ./course exercise capstone` grades a longer run (about 7 minutes on 2 cores).
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from minilm.data import END_OF_TEXT, StoryWorld
from minilm.evaluate import KneserNeyLM
from minilm.model import GPT, model_config
from minilm.presets import choose
from minilm.tokenizer import BPETokenizer
from minilm.train import TrainConfig, train
from tests.exercises.harness import load_chapter

capstone = load_chapter("capstone")

# preset -> (training stories, vocabulary, model size, training run, the Kneser-Ney order to beat);
# validation: 200 other stories. The story world is kind to n-grams: the smoke budget's few seconds of
# training beat a bigram model, not a 5-gram one; the cpu budget beats the 5-gram model.
BUDGETS = {
    "smoke": (1000, 512, "nano", TrainConfig(steps=300, batch_size=16, context_length=128, lr=1e-2, min_lr=1e-3,
                                            warmup_steps=30, eval_every=0, checkpoint_minutes=0), 2),
    "cpu": (5000, 1024, "tiny", TrainConfig(steps=800, batch_size=16, context_length=256, lr=1e-2, min_lr=1e-3,
                                           warmup_steps=80, eval_every=0, checkpoint_minutes=0), 5),
}
BUDGETS["gpu"] = BUDGETS["cpu"]  # the grader trains on the CPU, so a GPU machine grades the cpu budget
MARGIN_NATS = 0.1  # how far above minilm's validation loss yours may land (other batches, other noise)


def stories(n: int, seed: int) -> list[str]:
    return [story.text for story in StoryWorld().stories(n, seed=seed)]


def minilm_tokens(train_stories, other_stories, vocab_size):
    tokenizer = BPETokenizer.train(train_stories, vocab_size, special_tokens=(END_OF_TEXT,))
    end = tokenizer.special_tokens[END_OF_TEXT]
    encode = lambda texts: [t for text in texts for t in tokenizer.encode(text) + [end]]  # noqa: E731
    return encode(train_stories), encode(other_stories), end


def reference_batches(train_ids, config: TrainConfig):
    """minilm's run draws its own windows (a generator per index, seeded differently from yours)."""
    data = torch.tensor(train_ids)

    def get_batch(split, index):
        generator = torch.Generator().manual_seed(7919 * (index + 1))
        starts = torch.randint(0, len(data) - config.context_length, (config.batch_size,), generator=generator)
        windows = torch.stack([data[s:s + config.context_length + 1] for s in starts.tolist()])
        return windows[:, :-1], windows[:, 1:]

    return get_batch


@torch.no_grad()
def stream_loss(forward, ids: list[int], context_length: int) -> float:
    """Mean next-token loss over consecutive windows of the stream: every target counted once."""
    data = torch.tensor(ids)
    total, count = 0.0, 0
    for start in range(0, len(data) - 1, context_length):
        window = data[start:start + context_length + 1]
        logits = forward(window[None, :-1])  # (1, time, vocab)
        total += F.cross_entropy(logits[0], window[1:], reduction="sum").item()
        count += len(window) - 1
    return total / count


def test_tokenize_gives_minilm_bpe_ids():
    train_stories, other_stories = stories(150, seed=1), stories(20, seed=2)
    theirs = minilm_tokens(train_stories, other_stories, 300)
    ours = capstone.tokenize(train_stories, other_stories, 300)
    assert ours[2] == theirs[2], (f"the tokenizer is off: end of text is id {ours[2]}, minilm's is {theirs[2]} "
                                  f"(256 bytes, then the merges, then end of text)")
    for name, mine, reference in (("training", ours[0], theirs[0]), ("other", ours[1], theirs[1])):
        first = next((i for i, (a, b) in enumerate(zip(mine, reference)) if a != b), None)
        assert mine == reference, (f"the tokenizer is off: the {name} ids differ from minilm's BPETokenizer "
                                   f"(first at position {first}; lengths {len(mine)} vs {len(reference)}); "
                                   f"check train_bpe and bpe_encode with ./course exercise ch01_tokenizer")


def test_batches_are_shifted_windows_of_the_right_split():
    train_ids, validation_ids = list(range(1000)), list(range(5000, 5300))
    get_batch = capstone.batch_getter(train_ids, validation_ids, batch_size=6, context_length=16, seed=3)
    x, y = get_batch("train", 4)
    assert x.shape == y.shape == (6, 16) and x.dtype == torch.long, f"the batches are off: shape {tuple(x.shape)}"
    assert torch.equal(y[:, :-1], x[:, 1:]), "the batches are off: y must be x shifted one token on"
    assert torch.equal(y[:, -1], x[:, -1] + 1), "the batches are off: a window must be consecutive ids of the stream"
    assert ((x >= 0) & (x < 1000)).all(), "the batches are off: 'train' must draw from the training ids"
    xv, _ = get_batch("validation", 4)
    assert ((xv >= 5000) & (xv < 5300)).all(), "the batches are off: 'validation' must draw from the validation ids"
    assert torch.equal(get_batch("train", 4)[0], x), "the batches are off: the same index must give the same batch"
    assert not torch.equal(get_batch("train", 5)[0], x), "the batches are off: another index must give another batch"


def test_your_gpt_gives_minilm_logits():
    chapter3 = load_chapter("ch03_transformer")
    config = model_config("nano", 300, context_length=32)
    torch.manual_seed(0)
    reference = GPT(config).eval()
    yours = chapter3.build_gpt(config)
    yours.load_state_dict(reference.state_dict())
    ids = torch.randint(0, 300, (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        difference = (yours.eval()(ids) - reference(ids)[0]).abs().max().item()
    assert difference < 1e-4, (f"the model is off: logits differ from minilm's GPT by up to {difference:.3g}; "
                               f"check build_gpt with ./course exercise ch03_transformer")


def test_initialise_gives_gpt2_statistics():
    config = model_config("tiny", 1000, context_length=64)
    torch.manual_seed(0)
    yours = load_chapter("ch03_transformer").build_gpt(config)
    capstone.initialise(yours, config.n_layer)
    reference = dict(GPT(config).named_parameters())  # minilm's GPT-2 initialisation
    for name, parameter in yours.named_parameters():
        expected = reference[name]
        if expected.numel() >= 1000:  # enough numbers for the spread to be measured
            ratio = parameter.std().item() / expected.std().item()
            assert 0.9 < ratio < 1.1, (f"the initialisation is off: {name} has std {parameter.std().item():.4f}, "
                                       f"GPT-2's is {expected.std().item():.4f}")
        else:
            assert torch.equal(parameter.detach(), expected.detach()), \
                f"the initialisation is off: {name} must start at {expected.flatten()[0].item():g} everywhere"


def test_your_loop_gives_minilm_losses():
    chapter4 = load_chapter("ch04_training")
    config = TrainConfig(steps=12, batch_size=4, context_length=16, lr=1e-2, min_lr=1e-3, warmup_steps=3,
                         eval_every=0, checkpoint_minutes=0)
    get_batch = reference_batches(list(range(300)) * 3, config)
    torch.manual_seed(0)
    model = GPT(model_config("nano", 300, context_length=16))
    copy = GPT(model.config)
    copy.load_state_dict(model.state_dict())
    expected = [r["train_loss"] for r in train(model, get_batch, config)]

    class LogitsOnly(torch.nn.Module):
        def __init__(self, gpt):
            super().__init__()
            self.gpt = gpt

        def forward(self, idx):
            return self.gpt(idx)[0]

    losses = chapter4.train_loop(LogitsOnly(copy), get_batch, config)
    gap = max(abs(a - b) for a, b in zip(losses, expected)) if len(losses) == len(expected) else math.inf
    assert gap < 1e-4, (f"the training loop is off: its losses differ from minilm.train.train's by up to {gap:.3g} "
                        f"({len(losses)} steps vs {len(expected)}); "
                        f"check train_loop with ./course exercise ch04_training")


def test_your_model_lands_near_minilm_and_beats_ngrams():
    n_train, vocab_size, size, config, order = choose(BUDGETS)
    train_stories, validation_stories = stories(n_train, seed=11), stories(200, seed=12)
    train_ids, validation_ids, _ = capstone.tokenize(train_stories, validation_stories, vocab_size)
    model, losses = capstone.train_model(train_ids, validation_ids, vocab_size, size, config)
    assert len(losses) == config.steps and all(math.isfinite(x) for x in losses), \
        "the training loop is off: it must return one finite loss per step"
    yours = stream_loss(model.eval(), validation_ids, config.context_length)

    ref_train, ref_validation, _ = minilm_tokens(train_stories, validation_stories, vocab_size)
    torch.manual_seed(config.seed)
    reference = GPT(model_config(size, vocab_size, context_length=config.context_length))
    train(reference, reference_batches(ref_train, config), config)
    minilm_loss = stream_loss(lambda x: reference(x)[0], ref_validation, config.context_length)
    ngram_loss = KneserNeyLM(vocab_size, max_order=order).fit(ref_train).loss(ref_validation, order=order)

    assert yours <= minilm_loss + MARGIN_NATS, (
        f"your model's validation loss {yours:.3f} is more than {MARGIN_NATS} above minilm's {minilm_loss:.3f} "
        f"at the same budget: each piece passed its own test, so look at how train_model puts them together "
        f"(seed, sizes, initialisation, batches)")
    assert yours < ngram_loss, (f"your model's validation loss {yours:.3f} does not beat the {order}-gram "
                                f"Kneser-Ney model's {ngram_loss:.3f}")
