"""Chapter 6 exercises: the small pieces every application of a language model is built from.

Write each function below (replace `raise NotImplementedError`), then check your answers with:

    ./course exercise ch06_applications

(or `pytest tests/exercises/test_ch06_applications.py --student`). The solutions are in
solutions/ch06_applications.py; notebooks/06_applications.ipynb explains each idea.
"""
import re
import string
from collections import Counter  # noqa: F401 (useful for counting words)

IGNORE = -100  # the target PyTorch's cross-entropy skips


def answer_only_targets(prompt_ids: list[int], answer_ids: list[int], end_id: int) -> tuple[list[int], list[int]]:
    """The inputs and targets that fine-tune a model on the answer only.

    The sequence is prompt + answer + [end_id]. The inputs are all its tokens but the last; the
    target at position t is the token at t + 1, except that it is IGNORE while that token still
    belongs to the prompt (the prompt is given, not learnt).
    >>> answer_only_targets([1, 2, 3], [7, 8], 0)
    ([1, 2, 3, 7, 8], [-100, -100, 7, 8, 0])
    """
    tokens = prompt_ids + answer_ids + [end_id]
    targets = [token if t + 1 >= len(prompt_ids) else IGNORE for t, token in enumerate(tokens[1:])]
    return tokens[:-1], targets


def chat_template(messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The course's chat transcript: each message as "<|ROLE|>\\n" + content + "<|end|>\\n".

    ROLE is the message's "role" ("system", "user" or "assistant"). With add_generation_prompt,
    the transcript ends with "<|assistant|>\\n", where the model starts writing its reply.
    >>> chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    '<|user|>\\nHi<|end|>\\n<|assistant|>\\n'
    """
    text = "".join(f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in messages)
    return text + ("<|assistant|>\n" if add_generation_prompt else "")


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, remove punctuation (string.punctuation), remove the
    words a, an and the, and join the remaining words with single spaces.
    >>> normalize_answer("The  Red kite!")
    'red kite'
    """
    text = "".join(c for c in text.lower() if c not in string.punctuation)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def exact_match(predictions: list[str], references: list[str]) -> float:
    """The share of predictions equal to their reference once both are normalised.
    >>> exact_match(["the cat", "Leo"], ["Cat.", "Mia"])
    0.5
    """
    return sum(normalize_answer(p) == normalize_answer(r) for p, r in zip(predictions, references)) / len(predictions)


def body_until_dedent(generated: str) -> str:
    """Cut a generated function body where the function ends.

    `generated` starts right after the function's header, with the new line that ends it. Keep the
    text up to (not including) the first line that is not blank and does not start with a space or
    a tab; drop trailing whitespace.
    >>> body_until_dedent("\\n    return x\\n\\nprint(f(1))\\n")
    '\\n    return x'
    """
    first, *lines = generated.split("\n")
    kept = []
    for line in lines:
        if line.strip() and not line[0].isspace():
            break
        kept.append(line)
    return "\n".join([first, *kept]).rstrip()


def bag_of_words(texts: list[str], vocabulary: list[str]) -> list[list[int]]:
    """For each text, how often each vocabulary word occurs in it (one row per text, one column per
    word, in the vocabulary's order). Words are the runs of letters a-z of the lower-cased text.
    >>> bag_of_words(["The cat saw the dog."], ["cat", "dog", "the", "bird"])
    [[1, 1, 2, 0]]
    """
    rows = []
    for text in texts:
        counts = Counter(re.findall(r"[a-z]+", text.lower()))
        rows.append([counts[word] for word in vocabulary])
    return rows
