"""Chapter 6: code completion — a small model trained on the standard library's code writes function bodies.

The standard library's files are split by a hash of their path: most train a code model (its own
BPE tokenizer, a GPT, chapter 4's loop), the rest hold the functions it is asked to complete.
Given a function's header (its def line and docstring), the model writes on; the body ends at the
first line that is not indented, and the completion counts as valid when the whole function parses:

    code = code_model()                                    # trained once per preset, then cached
    result = complete_functions(code.model, code.tokenizer, code.test_functions[:50])
    result.parse_rate, result.completions[0]

Parsing is a low bar (`pass` parses, and so does code that calls functions that do not exist),
but a model that has not learnt Python's indentation, brackets and colons cannot clear it.
"""
from __future__ import annotations

import hashlib
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from datasets import Dataset, DatasetDict

from minilm.cache import cached_artifact
from minilm.checkpoint import load_checkpoint, save_checkpoint
from minilm.data.documents import Document
from minilm.data.sources import stdlib_code
from minilm.data.splits import hash_fraction
from minilm.model import GPT, GPTConfig
from minilm.presets import choose
from minilm.runtime import choose_device, seed_everything
from minilm.apps.task_eval import generate_answers
from minilm.apps.tasks import Example, function_examples, parses
from minilm.tokens import prepare_tokens
from minilm.train import TokenBatches, TrainConfig, train


@dataclass(frozen=True)
class CodeSizes:
    """The code model and its data, for one preset."""

    train_chars: int  # characters of standard-library code to train on (files in hash order)
    vocab_size: int  # BPE vocabulary, learnt on the training files
    n_layer: int  # the GPT's blocks
    n_embd: int  # its width (n_embd / 64 heads, at least 2)
    context_length: int  # tokens read at once: a short function with its header fits
    steps: int  # optimizer steps
    batch_size: int  # sequences per step
    lr: float  # peak learning rate
    max_function_chars: int  # longest function (header and body) to complete
    completions: int  # held-out functions the notebook asks the model to complete


CODE_SIZES = {
    "smoke": CodeSizes(train_chars=150_000, vocab_size=512, n_layer=2, n_embd=64, context_length=128,
                       steps=30, batch_size=8, lr=3e-3, max_function_chars=300, completions=8),
    "cpu": CodeSizes(train_chars=1_500_000, vocab_size=1024, n_layer=2, n_embd=64, context_length=256,
                     steps=1000, batch_size=16, lr=6e-3, max_function_chars=500, completions=64),
    "gpu": CodeSizes(train_chars=20_000_000, vocab_size=8192, n_layer=8, n_embd=512, context_length=512,
                     steps=4000, batch_size=32, lr=1e-3, max_function_chars=1000, completions=200),
}
TEST_SHARE = 0.1  # the share of files (by a hash of their path) held out for completion


def is_test_file(document: Document) -> bool:
    """Whether a file is held out: decided by a hash of its path, so it never changes."""
    digest = hashlib.sha256(f"code-test:{document.meta['path']}".encode()).hexdigest()
    return hash_fraction(digest) < TEST_SHARE


def split_files(documents: Sequence[Document], train_chars: int) -> tuple[list[Document], list[Document]]:
    """(training files up to `train_chars` characters, held-out files): the files in hash order."""
    ordered = sorted(documents, key=lambda d: hashlib.sha256(d.meta["path"].encode()).hexdigest())
    train_files, test_files, total = [], [], 0
    for document in ordered:
        if is_test_file(document):
            test_files.append(document)
        elif total < train_chars:
            train_files.append(document)
            total += len(document.text)
    return train_files, test_files


def body_until_dedent(generated: str) -> str:
    """The generated text up to the first non-blank line that is not indented: the end of the body.

    `generated` starts where the header stopped, with the new line that ends it.
    """
    first, *lines = generated.split("\n")
    kept = []
    for line in lines:
        if line.strip() and not line[0].isspace():
            break
        kept.append(line)
    return "\n".join([first, *kept]).rstrip()


def valid_completion(header: str, completion: str) -> bool:
    """True when the completion adds at least one line of code and the function then parses."""
    return any(line.strip() for line in completion.split("\n")[1:]) and parses(header + completion)


@dataclass
class CompletionResult:
    """Completed functions and the share that parse."""

    parse_rate: float  # completions that add code and parse, over all
    headers: list[str]  # the prompts
    completions: list[str]  # what the model wrote, cut at the end of the body
    references: list[str]  # the real bodies
    valid: list[bool]  # whether each completion parses


def complete_functions(model, tokenizer, functions: Sequence[Example], max_new_tokens: int = 96) -> CompletionResult:
    """Greedy completions of each function's header, cut at the end of the body, and their parse rate."""
    context = model.config.context_length
    kept = [f for f in functions if len(tokenizer.encode(f.prompt)) < context]
    if not kept:
        raise ValueError(f"no function header fits the model's context of {context} tokens; pick shorter functions.")
    raw = generate_answers(model, tokenizer, [f.prompt for f in kept], max_new_tokens)
    completions = [body_until_dedent(text) for text in raw]
    valid = [valid_completion(f.prompt, c) for f, c in zip(kept, completions)]
    return CompletionResult(sum(valid) / len(valid), [f.prompt for f in kept], completions,
                            [f.answer for f in kept], valid)


@dataclass
class CodeModel:
    """The trained code model, its tokenizer, and the held-out functions to complete."""

    model: GPT  # in eval mode, on the chosen device
    tokenizer: object  # the BPE tokenizer learnt on the training files
    history: list[dict]  # chapter 4's training history
    test_functions: list[Example]  # `completions` functions spread over the held-out files
    folder: Path  # the cached checkpoint


def code_model(preset: str | None = None, device=None) -> CodeModel:
    """Train (once per preset; then load from the cache) a GPT on standard-library code."""
    sizes = choose(CODE_SIZES, preset)
    train_files, test_files = split_files(list(stdlib_code()), sizes.train_chars)

    def build(folder: Path) -> None:
        texts = [d.text for d in train_files]
        cut = max(1, len(texts) // 20)  # a twentieth of the training files to watch the validation loss
        corpus = DatasetDict({"train": Dataset.from_dict({"text": texts[cut:]}),
                              "validation": Dataset.from_dict({"text": texts[:cut]})})
        tokens = prepare_tokens(corpus, sizes.vocab_size)
        seed_everything(0)
        model = GPT(GPTConfig(vocab_size=tokens.tokenizer.vocab_size, context_length=sizes.context_length,
                              n_layer=sizes.n_layer, n_head=max(2, sizes.n_embd // 64), n_embd=sizes.n_embd))
        place = device or choose_device()
        model.to(place)
        config = TrainConfig(steps=sizes.steps, batch_size=sizes.batch_size, context_length=sizes.context_length,
                             lr=sizes.lr, min_lr=sizes.lr / 10, warmup_steps=max(1, sizes.steps // 20),
                             eval_every=max(1, sizes.steps // 10), eval_batches=4)
        history = train(model, TokenBatches(tokens.streams, config, place), config)  # batches beside the model
        save_checkpoint(folder, model, train_config=asdict(config), step=sizes.steps, history=history,
                        tokenizer=tokens.tokenizer)

    inputs = {"sizes": asdict(sizes), "python": platform.python_version(),  # each Python has its own stdlib
              "train_files": [d.meta["path"] for d in train_files]}
    folder = cached_artifact("code-model", inputs, build)
    checkpoint = load_checkpoint(folder, device=device or choose_device())
    return CodeModel(checkpoint.model, checkpoint.tokenizer, checkpoint.history,
                     held_out_functions(test_files, sizes), folder)


def held_out_functions(test_files: Sequence[Document], sizes: CodeSizes) -> list[Example]:
    """`sizes.completions` functions to complete, spread over the held-out files."""
    functions = function_examples(test_files, max_chars=sizes.max_function_chars)
    return functions[::max(1, len(functions) // sizes.completions)][:sizes.completions]  # from many files
