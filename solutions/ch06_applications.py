"""Chapter 6 exercises, solved: the pieces of supervised fine-tuning, answer matching and code completion.

Check your own answers (exercises/ch06_applications.py) with:

    ./course exercise ch06_applications
"""
import re
import string

import torch
import torch.nn.functional as F

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


def answer_only_loss(logits: torch.Tensor, ids: torch.Tensor, prompt_lengths: list[int]) -> torch.Tensor:
    """The mean next-token cross-entropy over the answer tokens of a batch, in nats.

    ids: (batch, time) whole sequences, prompt then answer (rows of equal length, no padding);
    logits: (batch, time, vocab), the model's scores after reading ids, so logits[b, t] predicts
    ids[b, t + 1]; prompt_lengths[b]: how many of row b's first tokens are the prompt. Average
    −log p(ids[b, t + 1]) over every (b, t) whose next token is an answer token, that is
    t + 1 >= prompt_lengths[b]: mask the other targets with IGNORE and let F.cross_entropy skip them.
    Returns a 0-dimensional tensor that gradients flow through.
    Example: ids [[5, 6, 7, 8]] with prompt length 3 learns only 8, from logits[0, 2].
    """
    targets = ids[:, 1:].clone()  # (batch, time - 1): the token after each position
    positions = torch.arange(targets.shape[1], device=ids.device)  # (time - 1,)
    lengths = torch.tensor(prompt_lengths, device=ids.device)  # (batch,)
    targets[positions[None, :] + 1 < lengths[:, None]] = IGNORE  # the next token is still the prompt
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


def sft_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor,
             prompt_lengths: list[int]) -> float:
    """One step of supervised fine-tuning; returns the batch's answer-only loss (before the step).

    The model maps (batch, time) ids to (logits, loss) like minilm's GPT: call `model(ids)` and
    take the logits. Forward, answer_only_loss, backward, optimizer step, then zero the gradients.
    """
    logits, _ = model(ids)  # (batch, time, vocab)
    loss = answer_only_loss(logits, ids, prompt_lengths)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, remove punctuation (string.punctuation), remove the
    words a, an and the, and join the remaining words with single spaces.
    >>> normalize_answer("The  Red kite!")
    'red kite'
    """
    text = "".join(c for c in text.lower() if c not in string.punctuation)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


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
