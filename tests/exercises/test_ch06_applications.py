"""Chapter 6 exercises against independent references: PyTorch's cross-entropy on the answer positions
found by brute force, minilm's tested fine-tuning pieces and training loop, and `ast` line numbers of
real standard-library functions."""
import ast
import copy
import random

import pytest
import torch
import torch.nn.functional as F

from minilm.data import END_OF_TEXT
from minilm.data.sources import stdlib_code
from minilm.posttrain.finetune import encode_example, pad_batch
from minilm.model import GPT, GPTConfig
from minilm.train import TrainConfig, train
from tests.exercises.harness import load_chapter

ex = load_chapter("ch06_applications")


@pytest.mark.parametrize("seed", range(5))
def test_answer_only_targets_give_the_answers_cross_entropy(seed):
    rng = random.Random(seed)
    prompt = [rng.randrange(1, 30) for _ in range(rng.randrange(1, 8))]
    answer = [rng.randrange(1, 30) for _ in range(rng.randrange(1, 5))]
    inputs, targets = ex.answer_only_targets(prompt, answer, 0)
    sequence = prompt + answer + [0]
    assert inputs == sequence[:-1] and len(targets) == len(inputs)
    logits = torch.randn(len(inputs), 30, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    masked = F.cross_entropy(logits, torch.tensor(targets), ignore_index=-100)
    # by hand: -log p(next token) at each position whose next token is an answer token or the end
    positions = range(len(prompt) - 1, len(sequence) - 1)
    by_hand = -sum(torch.log_softmax(logits[t], dim=-1)[sequence[t + 1]] for t in positions) / len(positions)
    assert masked.item() == pytest.approx(by_hand.item(), rel=1e-12)


def random_batch(seed, batch=4, time=9, vocab=13):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(vocab, (batch, time), generator=generator)  # (batch, time)
    prompt_lengths = torch.randint(1, time, (batch,), generator=generator).tolist()
    return ids, prompt_lengths


@pytest.mark.parametrize("seed", range(5))
def test_answer_only_loss_is_cross_entropy_on_the_answer_positions(seed):
    ids, prompt_lengths = random_batch(seed)
    logits = torch.randn(*ids.shape, 13, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 100),
                         requires_grad=True)  # (batch, time, vocab)
    rows, targets = [], []
    for b in range(ids.shape[0]):  # brute force: every position whose next token is an answer token
        for t in range(ids.shape[1] - 1):
            if t + 1 >= prompt_lengths[b]:
                rows.append(logits[b, t])
                targets.append(ids[b, t + 1])
    expected = F.cross_entropy(torch.stack(rows), torch.stack(targets))
    loss = ex.answer_only_loss(logits, ids, prompt_lengths)
    assert loss.dim() == 0 and loss.item() == pytest.approx(expected.item(), rel=1e-12)
    loss.backward()
    for b in range(ids.shape[0]):  # no gradient reaches a position that only predicts the prompt
        assert torch.all(logits.grad[b, :prompt_lengths[b] - 1] == 0)
        assert torch.all(logits.grad[b, -1] == 0)  # nothing comes after the last token


class WordTokenizer:
    """Token ids written as words ("5 3 7"), with the end of text as id 0: enough for encode_example."""

    special_tokens = {END_OF_TEXT: 0}

    def encode(self, text):
        return [int(word) for word in text.split()]


def tiny_model(seed=0, vocab=20, context=16):
    """No biases: a key bias gets a zero gradient in exact arithmetic, and Adam would turn the two
    loops' different rounding of that zero into different steps."""
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, context_length=context, n_layer=1, n_head=2, n_embd=16, bias=False))


@pytest.mark.parametrize("seed", range(3))
def test_sft_steps_equal_minilms_training_loop(seed):
    rng = random.Random(seed)
    length, batch, lr, steps = 10, 4, 1e-2, 3
    prompts, answers = [], []
    for _ in range(batch):  # rows of equal length: prompt + answer + end
        split = rng.randrange(2, length - 1)
        prompts.append([rng.randrange(1, 20) for _ in range(split)])
        answers.append([rng.randrange(1, 20) for _ in range(length - 1 - split)])
    ids = torch.tensor([p + a + [0] for p, a in zip(prompts, answers)])  # (batch, length)
    # minilm: encode_example masks each prompt, chapter 4's loop trains on the batch
    encoded = [encode_example(WordTokenizer(), " ".join(map(str, p)), " ".join(map(str, a))) for p, a in zip(prompts, answers)]
    x, y = pad_batch(encoded, pad_id=0)
    theirs = tiny_model(seed)
    config = TrainConfig(steps=steps, batch_size=batch, context_length=length - 1, lr=lr, min_lr=lr, warmup_steps=0,
                         weight_decay=0.0, grad_clip=0.0, eval_every=0, precision="fp32")
    history = train(theirs, lambda split, index: (x, y), config)
    mine = copy.deepcopy(tiny_model(seed)).train()
    optimizer = torch.optim.AdamW(mine.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    losses = [ex.sft_step(mine, optimizer, ids, [len(p) for p in prompts]) for _ in range(steps)]
    assert losses == pytest.approx([record["train_loss"] for record in history], rel=1e-5)
    assert losses[-1] < losses[0]
    for (name, a), b in zip(mine.named_parameters(), theirs.parameters()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), name
        assert a.grad is None or torch.all(a.grad == 0), f"{name}: zero the gradients after the step"


@pytest.mark.parametrize("prediction, reference, same", [
    ("The red kite.", "red kite", True), ("In a snowy valley", "in the snowy valley", True),
    (" Mia ", "mia", True), ("Mia", "Leo", False), ("theme", "me", False), ("an owl", "owl!", True),
    ("red,kite", "redkite", True), ("it broke", "it broke down", False)])
def test_normalize_answer(prediction, reference, same):
    assert (ex.normalize_answer(prediction) == ex.normalize_answer(reference)) is same


def test_body_until_dedent_finds_where_real_functions_end():
    """Each top-level function of a standard-library module, followed by the rest of the file:
    the cut must end with the function's last statement, which `ast` knows (or with indented
    comments right after it)."""
    checked = 0
    for document in stdlib_code(["textwrap", "colorsys", "bisect"]):
        lines = document.text.splitlines()
        for node in ast.parse(document.text).body:
            if not isinstance(node, ast.FunctionDef) or node.decorator_list:
                continue
            header_end = node.body[0].lineno - 1  # the line before the first statement
            if ast.get_docstring(node):
                header_end = node.body[0].end_lineno
            generated = "\n" + "\n".join(lines[header_end:])  # the body, then everything after it
            end = node.end_lineno  # the last statement; indented comments or blank lines may follow
            while end < len(lines) and (not lines[end].strip() or lines[end][0].isspace()):
                end += 1
            expected = "\n".join(lines[header_end:end]).rstrip()
            assert expected and ex.body_until_dedent(generated) == "\n" + expected
            checked += 1
    assert checked > 10
    assert ex.body_until_dedent("\nprint(1)\n    x = 1") == ""  # nothing indented before the first dedent
