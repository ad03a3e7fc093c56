"""Chapter 6: dialogue — a chat format with role tokens, instruction tuning, and a conversation.

A chat model is a language model that continues a transcript. Special tokens mark who speaks and
where each message ends, so the model can never confuse a user's words with its own:

    <|user|>
    Who is the friend of Mia?<|end|>
    <|assistant|>
    Leo<|end|>

To answer, the transcript so far is followed by "<|assistant|>\\n" (the generation prompt) and the
model writes until it produces <|end|>. Instruction tuning is chapter 6's fine-tuning (minilm.posttrain.finetune)
on such transcripts, the loss on the assistant's messages only (and their <|end|>, so it learns to
stop); in a multi-turn conversation every assistant message is learned, every user message given.

    tokenizer, model = add_chat_tokens(tokenizer, model)     # four new special tokens, a grown embedding
    tuned = instruction_tune(model, tokenizer, train_chats, validation_chats)
    reply = chat_reply(tuned.model, tokenizer, [{"role": "user", "content": "Who is ...?"}])

The new tokens' embeddings start at the mean of the existing ones: the model's first guesses about
them are then average, not arbitrary, and fine-tuning gives them their meaning.
"""
from __future__ import annotations

import random
from dataclasses import replace
from typing import Sequence

import torch

from minilm.data import END_OF_TEXT
from minilm.posttrain.finetune import IGNORE_INDEX, FineTuned, finetune_config, finetune_encoded, keep_fitting
from minilm.model import GPT
from minilm.apps.task_eval import TaskResult, evaluate_task, until_stop
from minilm.apps.tasks import Example
from minilm.tokenizer import BPETokenizer, CharTokenizer
from minilm.train import TrainConfig

ROLES = ("system", "user", "assistant")
ROLE_TOKENS = {role: f"<|{role}|>" for role in ROLES}  # starts a message of that role
END_OF_MESSAGE = "<|end|>"  # ends every message; the assistant's stop token
CHAT_TOKENS = (*ROLE_TOKENS.values(), END_OF_MESSAGE)
RESERVED = (*CHAT_TOKENS, END_OF_TEXT)  # special tokens no message may write: roles, ends, document breaks
Message = dict  # {"role": "user", "content": "..."}


def check_messages(messages: Sequence[Message]) -> None:
    """Each message a dict with a known role and a string content; none may contain a chat token or
    END_OF_TEXT (the tokenizer turns their exact text into their special ids)."""
    if not messages:
        raise ValueError("a conversation needs at least one message.")
    for number, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise ValueError(f"message {number} must be a dict with exactly the keys 'role' and 'content', "
                             f"got {message!r}.")
        if message["role"] not in ROLES:
            raise ValueError(f"message {number} has role {message['role']!r}; use one of {', '.join(ROLES)}.")
        if not isinstance(message["content"], str):
            raise ValueError(f"message {number}'s content must be a string, got {type(message['content']).__name__}.")
        if any(token in message["content"] for token in RESERVED):
            raise ValueError(f"message {number} contains a special token; a message cannot write "
                             f"{', '.join(RESERVED)} itself (that would let a user speak as the assistant, "
                             f"or end the document).")


def format_chat(messages: Sequence[Message], add_generation_prompt: bool = False) -> str:
    """The transcript: each message as <|role|>\\n content <|end|>\\n, then <|assistant|>\\n if asked."""
    check_messages(messages)
    text = "".join(f"{ROLE_TOKENS[m['role']]}\n{m['content']}{END_OF_MESSAGE}\n" for m in messages)
    return text + (f"{ROLE_TOKENS['assistant']}\n" if add_generation_prompt else "")


def encode_chat(tokenizer, messages: Sequence[Message]) -> tuple[list[int], list[int]]:
    """(inputs, targets) of a conversation: targets are -100 except for the assistant's messages.

    The text before each assistant message (ending with its generation prompt) is encoded in one
    piece, then the message and <|end|>: exactly what the model reads and writes when it chats.
    """
    check_messages(messages)
    missing = [token for token in CHAT_TOKENS if token not in tokenizer.special_tokens]
    if missing:
        raise ValueError(f"the tokenizer lacks the chat token(s) {', '.join(missing)}; call add_chat_tokens first.")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("the conversation has no assistant message: there is nothing to learn from it.")
    tokens, learned, given = [], [], ""
    for message in messages:
        if message["role"] != "assistant":
            given += format_chat([message])
            continue
        prompt_ids = tokenizer.encode(given + f"{ROLE_TOKENS['assistant']}\n")
        reply_ids = tokenizer.encode(message["content"]) + [tokenizer.special_tokens[END_OF_MESSAGE]]
        tokens += prompt_ids + reply_ids
        learned += [False] * len(prompt_ids) + [True] * len(reply_ids)
        given = "\n"  # the new line after the assistant's <|end|>
    targets = [token if learn else IGNORE_INDEX for token, learn in zip(tokens[1:], learned[1:])]
    return tokens[:-1], targets


def add_special_tokens(tokenizer, tokens: Sequence[str]):
    """A copy of the tokenizer with extra special tokens after its vocabulary (existing ids unchanged)."""
    new = [token for token in dict.fromkeys(tokens) if token not in tokenizer.special_tokens]
    if isinstance(tokenizer, CharTokenizer):
        return CharTokenizer(tokenizer.characters, [*tokenizer.special_tokens, *new])
    if not isinstance(tokenizer, BPETokenizer):
        raise TypeError(f"add_special_tokens takes a minilm BPETokenizer or CharTokenizer, not {type(tokenizer).__name__}.")
    ids = {token: tokenizer.vocab_size + i for i, token in enumerate(new)}
    return BPETokenizer(tokenizer.vocab + [token.encode("utf-8") for token in new], tokenizer.merges,
                        {**tokenizer.special_tokens, **ids})


def grow_vocabulary(model: GPT, vocab_size: int) -> GPT:
    """A copy of `model` with room for `vocab_size` tokens: old rows kept, new rows the mean of the old."""
    old = model.config.vocab_size
    if vocab_size < old:
        raise ValueError(f"vocab_size={vocab_size} is smaller than the model's {old}; a vocabulary can only grow.")
    grown = GPT(replace(model.config, vocab_size=vocab_size)).to(next(model.parameters()).device)
    state = model.state_dict()
    for name in ("token_embedding.weight", "head.weight"):
        rows = state[name]  # (old vocab, n_embd)
        mean = rows.mean(dim=0, keepdim=True).expand(vocab_size - old, -1)  # (new tokens, n_embd)
        state[name] = torch.cat([rows, mean])  # (vocab_size, n_embd)
    grown.load_state_dict(state)
    return grown.train(model.training)


def add_chat_tokens(tokenizer, model: GPT):
    """The tokenizer with the chat's special tokens, and a copy of the model with embeddings for them."""
    chat_tokenizer = add_special_tokens(tokenizer, CHAT_TOKENS)
    return chat_tokenizer, grow_vocabulary(model, chat_tokenizer.vocab_size)


def conversation(example: Example) -> list[Message]:
    """One exchange: the example's instruction from the user, its answer from the assistant."""
    if not example.instruction:
        raise ValueError(f"this {example.task} example has no instruction to chat with.")
    return [{"role": "user", "content": example.instruction},
            {"role": "assistant", "content": example.answer.strip()}]


def two_question_chats(stories, seed: int = 0) -> list[list[Message]]:
    """Multi-turn conversations: the story and a first question, the answer, a second question, its answer.

    The second question does not repeat the story: the model must look back across the first turn.
    """
    rng = random.Random(seed)
    chats = []
    for story in stories:
        (q1, a1), (q2, a2) = rng.sample(story.facts.qa, 2)
        chats.append([{"role": "user", "content": f"{story.text}\n{q1}"}, {"role": "assistant", "content": a1},
                      {"role": "user", "content": q2}, {"role": "assistant", "content": a2}])
    return chats


def instruction_tune(model: GPT, tokenizer, train_chats: Sequence[Sequence[Message]],
                     validation_chats: Sequence[Sequence[Message]], config: TrainConfig | None = None) -> FineTuned:
    """Fine-tune a copy of `model` on conversations, the loss on the assistant's messages only.

    Without `config`, the preset's instruction-tuning run (finetune_config("chat")). Conversations longer than the model's context are left out (FineTuned.examples counts the rest).
    """
    context = model.config.context_length
    splits = {"train": keep_fitting([encode_chat(tokenizer, chat) for chat in train_chats], context),
              "validation": keep_fitting([encode_chat(tokenizer, chat) for chat in validation_chats], context)}
    return finetune_encoded(model, splits, tokenizer.special_tokens[END_OF_MESSAGE], config or finetune_config("chat"))


def chat_reply(model: GPT, tokenizer, messages: Sequence[Message], max_new_tokens: int = 48,
               temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
               seed: int | None = None) -> str:
    """The assistant's next message after `messages` (greedy by default), without its <|end|>."""
    ids = tokenizer.encode(format_chat(messages, add_generation_prompt=True))
    context = model.config.context_length
    if len(ids) >= context:
        raise ValueError(f"the conversation has {len(ids)} tokens, leaving no room in the model's context of "
                         f"{context}; drop early messages.")
    stop = tokenizer.special_tokens[END_OF_MESSAGE]
    idx = torch.tensor([ids], device=next(model.parameters()).device)  # (1, prompt)
    out = model.generate(idx, min(max_new_tokens, context - len(ids)), temperature=temperature, top_k=top_k,
                         top_p=top_p, stop_tokens=[stop], seed=seed)
    return tokenizer.decode(until_stop(out[0, len(ids):].tolist(), [stop])).strip()


def evaluate_chat(model: GPT, tokenizer, examples: Sequence[Example]) -> TaskResult:
    """A task's metric when its examples are asked as one-turn chats (the instruction as the user)."""
    def prompt_of(example: Example) -> str:
        return format_chat(conversation(example)[:1], add_generation_prompt=True)

    return evaluate_task(model, tokenizer, examples, prompt_of=prompt_of, stop_tokens=(END_OF_MESSAGE,))
