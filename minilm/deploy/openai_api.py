"""The OpenAI-compatible wire format: what /v1/completions and /v1/chat/completions read and write.

Tools and people already speak this format (the `openai` client, LangChain, curl scripts), and
vLLM and TGI serve it too, so a program written against this server moves to them unchanged:

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    client.completions.create(model="minilm", prompt="Long ago", max_tokens=20, seed=1)
    for chunk in client.chat.completions.create(model="minilm", messages=[...], stream=True): ...

This module is the protocol alone (checking fields, shaping answers); `minilm.apps.serve` wires it
to the batching engine. Supported: model, prompt (a string) or messages, max_tokens (chat also
max_completion_tokens), temperature, top_p, seed, stop (a string or up to 4), stream,
stream_options.include_usage, n = 1, user; frequency and presence penalties only at 0. Any other
field is refused, as is a bad value: status 400 and OpenAI's error body
{"error": {"message", "type": "invalid_request_error", "param", "code"}}.
Streams are server-sent events, `data: {chunk}` then `data: [DONE]`.
"""
from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Callable

COMMON_FIELDS = {"model", "max_tokens", "temperature", "top_p", "seed", "stop", "stream", "stream_options",
                 "n", "user", "frequency_penalty", "presence_penalty"}
FIELDS = {"completions": COMMON_FIELDS | {"prompt"},
          "chat.completions": COMMON_FIELDS | {"messages", "max_completion_tokens"}}
MAX_STOPS = 4  # OpenAI's limit on stop sequences


class APIError(ValueError):
    """A refused request: its HTTP status, a message saying what to send instead, and the field at fault."""

    def __init__(self, status: HTTPStatus, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.param, self.code = status, param, code

    def body(self) -> dict:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": str(self), "type": kind, "param": self.param, "code": self.code}}


def require(condition: bool, message: str, param: str | None = None) -> None:
    if not condition:
        raise APIError(HTTPStatus.BAD_REQUEST, message, param)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class Settings:
    """A checked request's generation settings."""

    max_tokens: int | None  # None: the server's default
    temperature: float = 1.0  # OpenAI's default
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)  # the text ends before the first of these
    stream: bool = False
    include_usage: bool = False  # a last streamed chunk with the token counts


def check_fields(payload, endpoint: str, model_id: str) -> None:
    """The body is an object of known fields naming this server's model."""
    require(isinstance(payload, dict), f"the body must be a JSON object, not {type(payload).__name__}.")
    unknown = sorted(set(payload) - FIELDS[endpoint])
    require(not unknown, f"unrecognized request argument(s): {', '.join(unknown)}; this server reads "
                         f"{', '.join(sorted(FIELDS[endpoint]))}.", unknown[0] if unknown else None)
    require("model" in payload, f'"model" is required; this server has one model: "{model_id}".', "model")
    if payload["model"] != model_id:
        raise APIError(HTTPStatus.NOT_FOUND, f"the model {str(payload['model'])[:80]!r} does not exist; "
                                             f'this server has one model: "{model_id}" (GET /v1/models).',
                       "model", "model_not_found")


def settings(payload: dict) -> Settings:
    """The sampling fields, checked against OpenAI's ranges."""
    max_tokens = payload.get("max_completion_tokens", payload.get("max_tokens"))
    param = "max_completion_tokens" if "max_completion_tokens" in payload else "max_tokens"
    require(max_tokens is None or (_whole(max_tokens) and max_tokens >= 1),
            f"{param} must be a whole number of at least 1.", param)
    temperature = payload.get("temperature", 1.0)
    require(temperature is None or (_number(temperature) and 0 <= temperature <= 2),
            "temperature must be a number from 0 to 2 (0: always the likeliest token).", "temperature")
    top_p = payload.get("top_p")
    require(top_p is None or (_number(top_p) and 0 < top_p <= 1), "top_p must be a number in (0, 1].", "top_p")
    seed = payload.get("seed")
    require(seed is None or (_whole(seed) and 0 <= seed < 2**63), "seed must be a whole number from 0 to "
                                                                  "2**63 - 1.", "seed")
    stop = payload.get("stop")
    stop = [stop] if isinstance(stop, str) else stop or []
    require(isinstance(stop, list) and len(stop) <= MAX_STOPS and all(isinstance(s, str) and s for s in stop),
            f"stop must be a non-empty string or a list of up to {MAX_STOPS} of them.", "stop")
    require(payload.get("n", 1) in (1, None) and not isinstance(payload.get("n"), bool),
            "n must be 1: this server writes one answer per request.", "n")
    for penalty in ("frequency_penalty", "presence_penalty"):
        require(payload.get(penalty) in (0, None) and not isinstance(payload.get(penalty), bool),
                f"{penalty} is not supported; leave it out (or 0).", penalty)
    require(payload.get("user") is None or isinstance(payload["user"], str), "user must be a string.", "user")
    stream = payload.get("stream", False)
    require(isinstance(stream, bool), "stream must be true or false.", "stream")
    options = payload.get("stream_options") or {}
    require(isinstance(options, dict) and set(options) <= {"include_usage"}
            and isinstance(options.get("include_usage", False), bool),
            'stream_options must be an object such as {"include_usage": true}.', "stream_options")
    require(stream or not options, "stream_options is only allowed with stream: true.", "stream_options")
    return Settings(max_tokens, 1.0 if temperature is None else float(temperature), top_p, seed, stop, stream,
                    options.get("include_usage", False))


def completion_prompt(payload: dict) -> str:
    """/v1/completions' prompt: a non-empty string (or a list holding one)."""
    prompt = payload.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    require(isinstance(prompt, str) and prompt != "", "prompt must be a non-empty string (one prompt per "
                                                      "request).", "prompt")
    return prompt


def chat_messages(payload: dict) -> list[dict]:
    """/v1/chat/completions' messages, with string contents (a list of text parts is joined)."""
    messages = payload.get("messages")
    require(isinstance(messages, list) and messages, 'messages must be a non-empty list of {"role": ..., '
                                                     '"content": ...} objects.', "messages")
    checked = []
    for i, message in enumerate(messages):
        require(isinstance(message, dict) and set(message) <= {"role", "content", "name"},
                f'messages[{i}] must be an object with "role" and "content".', "messages")
        content = message.get("content")
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...], as newer clients send
            require(all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                        for p in content), f"messages[{i}].content may hold text parts only.", "messages")
            content = "".join(part["text"] for part in content)
        checked.append({"role": message.get("role"), "content": content})
    return checked


class StopStrings:
    """Cuts a stream of text before the first stop string, holding back any tail that could begin one."""

    def __init__(self, stops: list[str]):
        self.stops, self.held, self.stopped = stops, "", False

    def feed(self, piece: str) -> str:
        """The text that is now safe to pass on ("" once a stop string has been seen)."""
        if self.stopped:
            return ""
        if not self.stops:
            return piece
        self.held += piece
        found = [i for i in (self.held.find(stop) for stop in self.stops) if i >= 0]
        if found:
            self.stopped = True
            return self.held[:min(found)]
        keep = max((n for stop in self.stops for n in range(1, len(stop)) if self.held.endswith(stop[:n])), default=0)
        out, self.held = self.held[:len(self.held) - keep], self.held[len(self.held) - keep:]
        return out

    def flush(self) -> str:
        out, self.held = ("" if self.stopped else self.held), ""
        return out


def header(endpoint: str, model: str) -> dict:
    """The id, creation time and model of one completion: the same in its answer and in each of its chunks."""
    id_ = ("chatcmpl-" if endpoint == "chat.completions" else "cmpl-") + uuid.uuid4().hex[:24]
    return {"id": id_, "created": int(time.time()), "model": model}


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def response(endpoint: str, head: dict, text: str, finish_reason: str, counts: dict) -> dict:
    """The whole (non-streamed) answer."""
    if endpoint == "chat.completions":
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                  "finish_reason": finish_reason}
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
    return {**head, "object": "chat.completion" if endpoint == "chat.completions" else "text_completion",
            "choices": [choice], "usage": counts}


def chunk(endpoint: str, head: dict, text: str | None = None, finish_reason: str | None = None,
          role: bool = False, counts: dict | None = None) -> dict:
    """One streamed event: a piece of text, the first (role) or last (finish_reason) chunk, or usage."""
    if endpoint == "chat.completions":
        delta = {"role": "assistant", "content": ""} if role else ({} if text is None else {"content": text})
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        kind = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
        kind = "text_completion"
    body = {**head, "object": kind, "choices": [] if counts is not None else [choice]}
    if counts is not None:
        body["usage"] = counts
    return body


def text_events(endpoint: str, head: dict) -> Callable[[str], bytes]:
    """piece of text -> its streamed event, the same bytes as event(chunk(endpoint, head, text)), made
    by filling a template: a stream sends one per token, and the rest of the chunk never changes."""
    before, after = event(chunk(endpoint, head, "\0")).split(json.dumps("\0").encode())
    return lambda text: before + json.dumps(text).encode() + after


def event(payload: dict | str) -> bytes:
    """One server-sent event: `data: ...` and a blank line."""
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()
