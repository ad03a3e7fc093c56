"""Chapter 6 exercises against independent references: PyTorch's cross-entropy, Hugging Face's chat
templates, `ast` line numbers of real standard-library functions, and collections.Counter."""
import ast
import random
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from minilm.data.sources import stdlib_code
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


JINJA = ("{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '<|end|>\n' }}{% endfor %}"
         "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}")


@pytest.mark.parametrize("seed", range(5))
def test_chat_template_matches_hugging_face(seed):
    rng = random.Random(seed)
    messages = [{"role": rng.choice(["system", "user", "assistant"]),
                 "content": rng.choice(["Hi", "Who is Mia?\nTell me.", "", "Leo", "  spaces "])}
                for _ in range(rng.randrange(1, 5))]
    hf = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()))
    for generation_prompt in (False, True):
        expected = hf.apply_chat_template(messages, chat_template=JINJA, tokenize=False,
                                          add_generation_prompt=generation_prompt)
        assert ex.chat_template(messages, generation_prompt) == expected


@pytest.mark.parametrize("prediction, reference, same", [
    ("The red kite.", "red kite", True), ("In a snowy valley", "in the snowy valley", True),
    (" Mia ", "mia", True), ("Mia", "Leo", False), ("theme", "me", False), ("an owl", "owl!", True),
    ("red,kite", "redkite", True), ("it broke", "it broke down", False)])
def test_normalize_and_exact_match(prediction, reference, same):
    assert (ex.normalize_answer(prediction) == ex.normalize_answer(reference)) is same
    assert ex.exact_match([prediction, "x"], [reference, "x"]) == (2 if same else 1) / 2


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


def test_bag_of_words_counts_like_counter():
    rng = random.Random(0)
    words = ["cat", "Dog", "the", "bird", "a", "fox"]
    texts = [" ".join(rng.choices(words, k=rng.randrange(0, 12))) + rng.choice([".", "!", ""]) for _ in range(20)]
    vocabulary = ["the", "cat", "dog", "owl"]
    rows = ex.bag_of_words(texts, vocabulary)
    for text, row in zip(texts, rows):
        counts = Counter(word.strip(".!").lower() for word in text.split())
        assert row == [counts[word] for word in vocabulary]
