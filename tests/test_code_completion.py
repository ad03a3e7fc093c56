"""Code completion: where a body ends, when a completion counts, held-out files that stay held out,
and the parse rate of the real bodies (all of them) and of an untrained model."""
import pytest
import torch

from minilm.apps.code_completion import (body_until_dedent, complete_functions, is_test_file, split_files,
                                    valid_completion)
from minilm.data.sources import stdlib_code
from minilm.model import GPT, GPTConfig
from minilm.apps.tasks import Example, function_examples
from minilm.tokenizer import BPETokenizer

FILES = list(stdlib_code(["json", "textwrap", "colorsys", "bisect", "keyword", "fnmatch", "glob"]))


def test_body_ends_at_the_first_line_that_is_not_indented():
    generated = "\n    x = 1\n\n    return x\ndef g():\n    pass\n"
    assert body_until_dedent(generated) == "\n    x = 1\n\n    return x"
    assert body_until_dedent("\n    return 1") == "\n    return 1"
    assert body_until_dedent("\nprint(1)") == ""


def test_a_completion_counts_when_it_adds_code_and_parses():
    header = 'def f(x):\n    """Twice x."""'
    assert valid_completion(header, "\n    return 2 * x")
    assert not valid_completion(header, "")  # a docstring alone parses, but nothing was written
    assert not valid_completion(header, "\n    return (2 *")
    assert not valid_completion("def f(x):", "\nreturn x")


def test_real_bodies_all_count():
    for example in function_examples(FILES):
        assert valid_completion(example.prompt, body_until_dedent(example.answer))


def test_held_out_files_never_train():
    train, test = split_files(FILES, train_chars=10**9)
    assert {d.meta["path"] for d in train}.isdisjoint(d.meta["path"] for d in test)
    assert len(train) + len(test) == len(FILES)
    assert all(is_test_file(d) for d in test) and not any(is_test_file(d) for d in train)
    few, _ = split_files(FILES, train_chars=1)
    assert len(few) == 1
    assert split_files(list(reversed(FILES)), 10**9) == (train, test)  # the order read does not matter


def test_complete_functions_with_an_untrained_model():
    functions = function_examples(FILES)[:4]
    tokenizer = BPETokenizer.train([d.text for d in FILES], 300)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, context_length=256, n_layer=1, n_head=2, n_embd=32))
    result = complete_functions(model, tokenizer, functions, max_new_tokens=8)
    assert len(result.completions) == len(result.valid) == len(functions)
    assert result.parse_rate == sum(result.valid) / len(result.valid)
    assert all(c == body_until_dedent(c) for c in result.completions)
    with pytest.raises(ValueError, match="no function header fits"):
        complete_functions(model, tokenizer, [Example("code", "def f():" + " " * 2000, "\n    pass")])

