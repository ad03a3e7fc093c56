"""Chapter 6: serving a model — `python -m minilm serve` answers HTTP requests on this machine.

    python -m minilm serve --checkpoint runs/chat --port 8000
    curl -s http://127.0.0.1:8000/generate -d '{"prompt": "Long ago, a shy fox", "max_new_tokens": 20}'
    curl -N http://127.0.0.1:8000/generate -d '{"prompt": "Long ago, a shy fox", "stream": true}'

Endpoints (the standard library's http.server; one model; concurrent requests are decoded together
by chapter 6c's batching engine, minilm.deploy.batching):

    GET  /                       the chat page (minilm/deploy/chat.html)
    GET  /v1/models              the OpenAI-compatible API (minilm.deploy.openai_api): the model's id,
    POST /v1/completions         a prompt continued,
    POST /v1/chat/completions    a chat answered (chat checkpoints); "stream": true gives server-sent events

    GET  /health    {"status": "ok", "context_length": .., "vocab_size": .., "max_new_tokens": .., "chat": ..}
    POST /generate  a JSON object:
        prompt          string: the text to continue (or, for a chat checkpoint, "messages" instead:
                        a list of {"role": "system" | "user" | "assistant", "content": string})
        max_new_tokens  whole number from 1 to the server's limit (default: 64, or what fits)
        temperature     number >= 0 (default 0: greedy)
        top_k, top_p    null, or a whole number >= 1, and a number in (0, 1]
        seed            null or a whole number: the same request then gives the same text
        stream          false (default): one JSON answer {"text", "tokens", "prompt_tokens", "stopped"}
                        true: newline-delimited JSON, {"token": text} as each token is chosen, then
                        {"done": true, "tokens", "prompt_tokens", "stopped"}

A prompt is fed as a document start (END_OF_TEXT first, as `python -m minilm generate` does), so
the same greedy prompt writes the same text through either. Generation stops at the end-of-text
token (or, for chats, at <|end|>), which is not shown. Every bad request gets a 4xx status and
{"error": "what was wrong and what to send instead"}: a body that is not JSON (or nested too deeply,
or with a number too long to read), text that is not valid Unicode (a lone surrogate), a missing
prompt, fields of the wrong type or unknown fields (400), a prompt that with max_new_tokens does not
fit the model's context, or max_new_tokens over the limit (400), an unknown path (404), a body
without a plain decimal Content-Length (411) or over 64 KiB (413).

Hostile clients cannot hold the server: every read waits at most READ_TIMEOUT_S, a whole request
must arrive within REQUEST_TIMEOUT_S, and at most MAX_CONNECTIONS are served at once (the next
gets 503 with Retry-After), as does a request when the batching engine's waiting line is full;
each request has a time limit (--max-seconds). It listens on 127.0.0.1 unless told otherwise, and warns when told:
there is no authentication.
"""
from __future__ import annotations

import codecs
import contextlib
import errno
import io
import ipaddress
import json
import math
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator
from urllib.parse import urlsplit


from minilm.apps.chat import CHAT_TOKENS, END_OF_MESSAGE, format_chat
from minilm.checkpoint import load_checkpoint
from minilm.cli import whole_number
from minilm.data import END_OF_TEXT
from minilm.deploy import openai_api
from minilm.deploy.batching import BatchingConfig, BatchingEngine, Job, QueueFull
from minilm.deploy.openai_api import APIError as BadRequest  # a refused request: status, message, param
from minilm.generate import document_prompt
from minilm.runtime import choose_device

MAX_BODY_BYTES = 64 * 1024  # a request body larger than this is refused (413)
DEFAULT_NEW_TOKENS = 64  # when a request does not say
READ_TIMEOUT_S = 10.0  # the longest wait for the next bytes of a request
REQUEST_TIMEOUT_S = 30.0  # the longest a whole request (line, headers, body) may take to arrive
MAX_CONNECTIONS = 32  # connections served at once; one more is answered 503 at once
CHAT_PAGE = Path(__file__).resolve().parents[1] / "deploy" / "chat.html"  # served at GET /
FIELDS = ("prompt", "messages", "max_new_tokens", "temperature", "top_k", "top_p", "seed", "stream")


@dataclass
class Request:
    """A checked /generate request."""

    prompt_ids: list[int]  # the prompt (or chat transcript) as token ids
    max_new_tokens: int  # at most this many tokens are written
    temperature: float  # 0: greedy
    top_k: int | None
    top_p: float | None
    seed: int | None
    stream: bool  # answer token by token
    stop_ids: list[int]  # generation ends at any of these


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not the number 1


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _valid_unicode(text: str) -> bool:
    """False for a string holding a lone surrogate (JSON's "\\ud800"), which no UTF-8 text can contain."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _strings_in(value) -> Iterator[str]:
    """Every string inside a parsed JSON value, keys included."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


class ModelServer:
    """A model, its tokenizer and the server's limits; checks requests and writes their text."""

    def __init__(self, model, tokenizer, max_new_tokens: int = 256, model_id: str = "minilm",
                 batching: BatchingConfig | None = None):
        if tokenizer is None:
            raise ValueError("serving needs the tokenizer saved with the checkpoint; this one has none "
                             "(save_checkpoint(..., tokenizer=tokenizer) stores it).")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens  # the most a request may ask for
        self.context = model.config.context_length
        self.chat = all(token in tokenizer.special_tokens for token in CHAT_TOKENS)
        self.model_id = model_id  # the name /v1/models gives, which OpenAI requests must send as "model"
        self.engine = BatchingEngine(self.model, batching)  # decodes concurrent requests together
        longest_token = max(len(tokenizer.token_bytes(i)) for i in range(tokenizer.vocab_size))
        self.max_prompt_bytes = self.context * longest_token  # more bytes than this cannot fit the context

    def health(self) -> dict:
        return {"status": "ok", "model": self.model_id, "context_length": self.context,
                "vocab_size": self.model.config.vocab_size, "max_new_tokens": self.max_new_tokens, "chat": self.chat,
                "max_batch": self.engine.config.max_batch}

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.model_id, "object": "model", "created": 0,
                                            "owned_by": "minilm"}]}

    def read_json(self, body: bytes):
        """The parsed body; BadRequest unless it is valid JSON of valid Unicode."""
        try:
            payload = json.loads(body.decode("utf-8"))
        except (ValueError, RecursionError) as error:  # bad UTF-8 or JSON, a number of 5000 digits, deep nesting
            reason = "it is nested too deeply" if isinstance(error, RecursionError) else str(error)[:200]
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"the body is not valid JSON ({reason}); send an object "
                                                     f'such as {{"prompt": "Once upon a time"}}.') from None
        self._check(all(map(_valid_unicode, _strings_in(payload))),
                    "the body holds a string that is not valid Unicode (a lone surrogate such as \\ud800); "
                    "send text only")
        return payload

    def parse(self, body: bytes) -> Request:
        """Check a /generate body; raise BadRequest saying what is wrong."""
        payload = self.read_json(body)
        if not isinstance(payload, dict):
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"the body must be a JSON object, not {type(payload).__name__}.")
        unknown = sorted(set(payload) - set(FIELDS))
        if unknown:
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"unknown field(s) {', '.join(unknown)}; the fields are "
                                                     f"{', '.join(FIELDS)}.")
        prompt_ids, stop_ids = self._prompt(payload)
        max_new = self._max_new(payload.get("max_new_tokens"), len(prompt_ids), "max_new_tokens")
        temperature = payload.get("temperature", 0.0)
        self._check(_number(temperature) and temperature >= 0, "temperature must be a number >= 0 (0: greedy)")
        top_k, top_p, seed = payload.get("top_k"), payload.get("top_p"), payload.get("seed")
        self._check(top_k is None or (_whole(top_k) and top_k >= 1), "top_k must be null or a whole number >= 1")
        self._check(top_p is None or (_number(top_p) and 0 < top_p <= 1), "top_p must be null or a number in (0, 1]")
        self._check(seed is None or (_whole(seed) and 0 <= seed < 2**63), "seed must be null or a whole number "
                                                                           "from 0 to 2**63 - 1")
        stream = payload.get("stream", False)
        self._check(isinstance(stream, bool), "stream must be true or false")
        return Request(prompt_ids, max_new, float(temperature), top_k, top_p, seed, stream, stop_ids)

    def _max_new(self, asked, prompt_tokens: int, name: str) -> int:
        """The tokens to write: as asked, else the default (64, or what fits); BadRequest when it cannot fit."""
        if asked is None:
            return max(1, min(DEFAULT_NEW_TOKENS, self.max_new_tokens, self.context - prompt_tokens))
        openai_api.require(_whole(asked) and 1 <= asked, f"{name} must be a whole number of at least 1.", name)
        openai_api.require(asked <= self.max_new_tokens,
                           f"{name}={asked} is more than this server allows ({self.max_new_tokens}).", name)
        openai_api.require(prompt_tokens + asked <= self.context,
                           f"the prompt has {prompt_tokens} tokens and {name} is {asked}: together more than the "
                           f"model's context of {self.context} tokens; shorten the prompt or ask for fewer tokens.",
                           name)
        return asked

    def openai_job(self, endpoint: str, payload) -> tuple[Job, openai_api.Settings]:
        """Check an OpenAI-format body (/v1/completions or /v1/chat/completions); the job it asks for."""
        openai_api.check_fields(payload, endpoint, self.model_id)
        settings = openai_api.settings(payload)
        if endpoint == "chat.completions":
            openai_api.require(self.chat, "this checkpoint was not trained to chat (its tokenizer has no chat "
                                          "tokens); use /v1/completions.", "messages")
            prompt = {"messages": openai_api.chat_messages(payload)}
        else:
            prompt = {"prompt": openai_api.completion_prompt(payload)}
        try:
            prompt_ids, stop_ids = self._prompt(prompt)
        except BadRequest as error:
            raise BadRequest(error.status, str(error), next(iter(prompt))) from None
        name = "max_completion_tokens" if "max_completion_tokens" in payload else "max_tokens"
        max_new = self._max_new(settings.max_tokens, len(prompt_ids), name)
        job = Job(prompt_ids, max_new, settings.temperature, None, settings.top_p, settings.seed, stop_ids)
        return job, settings

    @staticmethod
    def _check(condition: bool, message: str) -> None:
        if not condition:
            raise BadRequest(HTTPStatus.BAD_REQUEST, message + ".")

    def _prompt(self, payload: dict) -> tuple[list[int], list[int]]:
        """The prompt's token ids and the stop tokens, from "prompt" or (chat checkpoints) "messages"."""
        specials = self.tokenizer.special_tokens
        self._check(("prompt" in payload) != ("messages" in payload),
                    'send exactly one of "prompt" (a string to continue) and "messages" (a chat)')
        if "messages" in payload:
            self._check(self.chat, 'this checkpoint was not trained to chat (its tokenizer has no chat tokens); '
                                   'send "prompt" instead')
            self._check(isinstance(payload["messages"], list), "messages must be a list of "
                                                               '{"role": ..., "content": ...} objects')
            try:
                text = format_chat(payload["messages"], add_generation_prompt=True)
            except ValueError as error:
                raise BadRequest(HTTPStatus.BAD_REQUEST, str(error)) from None
            stops, encode = [END_OF_MESSAGE, END_OF_TEXT], self.tokenizer.encode
        else:
            text = payload["prompt"]
            self._check(isinstance(text, str), f"prompt must be a string, not {type(text).__name__}")
            self._check(text != "", "prompt is empty; send some text to continue")
            stops, encode = [END_OF_TEXT], lambda text: document_prompt(self.tokenizer, text)
        size = len(text.encode("utf-8"))  # checked before encoding: a huge prompt costs nothing to refuse
        self._check(size <= self.max_prompt_bytes, f"the prompt has {size:,} bytes, more than the model's "
                                                   f"context of {self.context} tokens can hold; shorten it")
        ids = encode(text)
        return ids, [specials[token] for token in stops if token in specials]

    def text(self, job: Job) -> Iterator[str]:
        """A submitted job's text, each token decoded as soon as its UTF-8 bytes are complete. Closing
        this early (a client that went away) cancels the job."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        with contextlib.closing(self.engine.tokens(job)) as tokens:
            for token in tokens:
                yield decoder.decode(self.tokenizer.token_bytes(token))
        yield decoder.decode(b"", final=True)  # an unfinished character becomes U+FFFD


class DeadlineReader(io.RawIOBase):
    """A socket to read from until a deadline: each read waits at most read_timeout, and at most the
    time left of total (then TimeoutError, which http.server answers by closing the connection)."""

    def __init__(self, connection: socket.socket, read_timeout: float, total: float):
        self.connection, self.read_timeout = connection, read_timeout
        self.deadline = time.monotonic() + total

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self.connection.settimeout(min(self.read_timeout, left))
        return self.connection.recv_into(buffer)


OPENAI_ENDPOINTS = {"/v1/completions": "completions", "/v1/chat/completions": "chat.completions"}


def summary_of(job: Job) -> dict:
    """/generate's closing fields: tokens written (the stop token not counted), prompt tokens, and
    whether a stop token ended the text."""
    return {"tokens": job.written, "prompt_tokens": len(job.prompt_ids), "stopped": job.finish_reason == "stop"}


def make_handler(server: ModelServer, log_requests: bool = True, read_timeout: float = READ_TIMEOUT_S,
                 request_timeout: float = REQUEST_TIMEOUT_S) -> type[BaseHTTPRequestHandler]:
    """The request handler class for `server` (http.server makes one handler object per request)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the connection closes after each answer, which ends a stream
        timeout = read_timeout  # every read and write of the socket waits at most this long

        def log_message(self, format, *args):  # one line per request on stderr, unless asked not to
            if log_requests:
                super().log_message(format, *args)

        def setup(self):
            super().setup()
            # A whole request must arrive in request_timeout: a client that trickles one byte at a time
            # would otherwise hold its thread for ever. Each read waits at most the time that is left.
            self.rfile = io.BufferedReader(DeadlineReader(self.connection, read_timeout, request_timeout))

        def _arrived(self):
            self.rfile.raw.deadline = math.inf  # the answer may take as long as generation takes
            self.connection.settimeout(read_timeout)  # each write still waits at most this long

        def do_GET(self):
            self._arrived()
            path = urlsplit(self.path).path  # "/?model=x" is the page too: a query string is not a new path
            if path == "/health":
                self._send_json(HTTPStatus.OK, server.health())
            elif path == "/v1/models":
                self._send_json(HTTPStatus.OK, server.models())
            elif path in ("/", "/index.html") and CHAT_PAGE.is_file():
                self._send_bytes(HTTPStatus.OK, CHAT_PAGE.read_bytes(), "text/html; charset=utf-8")
            else:
                self._send_error(BadRequest(HTTPStatus.NOT_FOUND, f"no page {path[:100]}; use GET / (the chat page), "
                                                                  f"/health or /v1/models."), path.startswith("/v1/"))

        def do_POST(self):
            path = urlsplit(self.path).path
            openai = path in OPENAI_ENDPOINTS
            try:
                if path != "/generate" and not openai:
                    raise BadRequest(HTTPStatus.NOT_FOUND, f"no endpoint {path[:100]}; POST to /generate, "
                                                           f"/v1/completions or /v1/chat/completions.")
                body = self._body()
                if openai:
                    endpoint = OPENAI_ENDPOINTS[path]
                    job, settings = server.openai_job(endpoint, server.read_json(body))
                else:
                    request = server.parse(body)
                    job = Job(request.prompt_ids, request.max_new_tokens, request.temperature, request.top_k,
                              request.top_p, request.seed, request.stop_ids)
                server.engine.submit(job)
            except QueueFull as error:
                self._send_error(BadRequest(HTTPStatus.SERVICE_UNAVAILABLE, f"the server is busy: {error}"), openai,
                                 {"Retry-After": "1"})
                return
            except BadRequest as error:
                self._send_error(error, openai)
                return
            except Exception as error:  # a bug must still answer, and the server go on
                self.log_error("could not handle a request: %r", error)
                self._send_error(BadRequest(HTTPStatus.INTERNAL_SERVER_ERROR, f"the server failed on this request "
                                            f"({type(error).__name__}); please report it."), openai)
                return
            if openai:
                self._answer_openai(endpoint, job, settings)
            elif request.stream:
                self._stream(job)
            else:
                text = "".join(server.text(job))
                self._send_json(HTTPStatus.OK, {"text": text, **summary_of(job)})

        def _body(self) -> bytes:
            length = self.headers.get("Content-Length", "").strip()
            if not re.fullmatch(r"[0-9]+", length):  # plain ASCII digits: int() would also take "²" or "１"
                raise BadRequest(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length header "
                                                             "(its size in bytes, as decimal digits).")
            if len(length) > len(str(MAX_BODY_BYTES)) or int(length) > MAX_BODY_BYTES:  # no int() of 5000 digits
                raise BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body has {length[:20]}"
                                 f"{'...' if len(length) > 20 else ''} bytes; this server takes at most "
                                 f"{MAX_BODY_BYTES:,}.")
            body = self.rfile.read(int(length))
            self._arrived()
            return body

        def _stream(self, job: Job) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/x-ndjson")
            self.end_headers()
            with contextlib.closing(server.text(job)) as pieces:  # frees the job's slot if the client leaves
                for text in pieces:
                    if text:
                        self._write(json.dumps({"token": text}).encode() + b"\n")
            self._write(json.dumps({"done": True, **summary_of(job)}).encode() + b"\n")

        def _answer_openai(self, endpoint: str, job: Job, settings) -> None:
            """The answer in OpenAI's format: one JSON object, or server-sent events as tokens are chosen."""
            head, stops = openai_api.header(endpoint, server.model_id), openai_api.StopStrings(settings.stop)
            text_event = openai_api.text_events(endpoint, head)
            if settings.stream:
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                if endpoint == "chat.completions":
                    self._write(openai_api.event(openai_api.chunk(endpoint, head, role=True)))
            texts = []
            with contextlib.closing(server.text(job)) as pieces:  # frees the job's slot if the client leaves
                for piece in pieces:
                    text = stops.feed(piece)
                    if text and settings.stream:
                        self._write(text_event(text))
                    texts.append(text)
                    if stops.stopped:
                        break  # closing the pieces cancels the job
            texts.append(tail := stops.flush())
            finish = "stop" if stops.stopped or job.finish_reason == "stop" else "length"
            counts = openai_api.usage(len(job.prompt_ids), job.written)
            if not settings.stream:
                self._send_json(HTTPStatus.OK, openai_api.response(endpoint, head, "".join(texts), finish, counts))
                return
            closing = [openai_api.chunk(endpoint, head, tail)] if tail else []  # sent in one write
            closing.append(openai_api.chunk(endpoint, head, finish_reason=finish))
            if settings.include_usage:
                closing.append(openai_api.chunk(endpoint, head, counts=counts))
            self._write(b"".join(openai_api.event(c) for c in closing + ["[DONE]"]))

        def _write(self, data: bytes) -> None:
            self.wfile.write(data)
            self.wfile.flush()

        def _send_json(self, status: HTTPStatus, payload: dict, headers: dict | None = None) -> None:
            self._send_bytes(status, json.dumps(payload).encode(), "application/json", headers)

        def _send_bytes(self, status: HTTPStatus, data: bytes, content_type: str, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _send_error(self, error: BadRequest, openai: bool = False, headers: dict | None = None) -> None:
            """OpenAI's error body on the /v1 endpoints; {"error": message} on /generate (chapter 6's format)."""
            self._send_json(error.status, error.body() if openai else {"error": str(error)}, headers)

    return Handler


BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
        b"Connection: close\r\n\r\n"
        b'{"error": "the server is serving as many connections as it can; try again in a second."}')


class BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` at once; a connection over the cap is told 503."""

    daemon_threads = True  # a stuck client never keeps Python from exiting
    request_queue_size = 128  # connections the kernel holds until they are accepted (socketserver's default: 5)

    def __init__(self, address, handler, max_connections: int = MAX_CONNECTIONS, log_requests: bool = True):
        self.slots = threading.BoundedSemaphore(max_connections)
        self.log_requests = log_requests
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.settimeout(1.0)
                request.sendall(BUSY)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)  # starts the connection's thread
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def server_close(self):
        super().server_close()
        if hasattr(self, "engine"):
            self.engine.close()

    def handle_error(self, request, client_address):
        """A client that vanished mid-answer is one line in the log (none when log_requests is off), not a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            if self.log_requests:
                print(f"{client_address[0]}: connection lost ({type(error).__name__})", file=sys.stderr)
        else:
            super().handle_error(request, client_address)


def make_server(model, tokenizer, host: str = "127.0.0.1", port: int = 8000, max_new_tokens: int = 256,
                log_requests: bool = True, max_connections: int = MAX_CONNECTIONS,
                read_timeout: float = READ_TIMEOUT_S, request_timeout: float = REQUEST_TIMEOUT_S,
                model_id: str = "minilm", batching: BatchingConfig | None = None) -> BoundedHTTPServer:
    """An HTTP server for the model (not started: call serve_forever). Port 0 picks a free port.
    `batching`: how many requests are decoded together, how many may wait, and each one's time limit.

    A port out of range, in use, or an address this machine does not have raises ValueError with one line."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range; give one from 1 to 65535 (or 0 for any free port).")
    model_server = ModelServer(model, tokenizer, max_new_tokens, model_id, batching)
    handler = make_handler(model_server, log_requests, read_timeout, request_timeout)
    try:
        httpd = BoundedHTTPServer((host, port), handler, max_connections, log_requests)
        httpd.engine = model_server.engine  # stopped by server_close
        return httpd
    except OSError as error:
        model_server.engine.close()
        hint = ("another program (or another server) is using it; pick another --port, or --port 0 for any free one"
                if error.errno == errno.EADDRINUSE else "check --host and --port")
        raise ValueError(f"cannot listen on {host}:{port} ({error.strerror or error}); {hint}.") from None


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only (127.0.0.1, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


@contextlib.contextmanager
def running_server(model, tokenizer, max_new_tokens: int = 256, log_requests: bool = False,
                   **limits) -> Iterator[str]:
    """Serve on 127.0.0.1 at a free port in a background thread; yield its URL; stop it on exit.
    `limits`: make_server's max_connections, read_timeout, request_timeout, model_id and batching."""
    httpd = make_server(model, tokenizer, port=0, max_new_tokens=max_new_tokens, log_requests=log_requests, **limits)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def add_command(subparsers) -> None:
    """`python -m minilm serve`: serve a checkpoint over HTTP."""
    parser = subparsers.add_parser(
        "serve", help="answer HTTP requests with a trained checkpoint (POST /generate, GET /health)",
        description="Load a checkpoint (a folder saved by training, with its tokenizer) and answer HTTP "
                    "requests on this machine. Try: curl -s http://127.0.0.1:8000/generate "
                    "-d '{\"prompt\": \"Long ago\", \"max_new_tokens\": 20}'")
    parser.add_argument("--checkpoint", required=True, help="the checkpoint folder to serve")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=whole_number(0, 65535), default=8000,
                        help="the port (default 8000; 0 picks a free one)")
    parser.add_argument("--max-new-tokens", type=whole_number(1), default=256,
                        help="the most tokens one request may ask for (default 256)")
    parser.add_argument("--max-batch", type=whole_number(1), default=BatchingConfig.max_batch,
                        help=f"requests decoded together (default {BatchingConfig.max_batch}; 1: one at a time)")
    parser.add_argument("--max-waiting", type=whole_number(1), default=BatchingConfig.max_waiting,
                        help=f"requests that may wait for a free slot; more get 503 (default {BatchingConfig.max_waiting})")
    parser.add_argument("--max-connections", type=whole_number(1), default=MAX_CONNECTIONS,
                        help=f"connections served at once; one more gets 503 (default {MAX_CONNECTIONS})")
    parser.add_argument("--max-seconds", type=whole_number(1), default=int(BatchingConfig.max_seconds),
                        help=f"a request's time limit in seconds (default {int(BatchingConfig.max_seconds)})")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the first available)")
    parser.set_defaults(run=run)


def run(args) -> int:
    checkpoint = load_checkpoint(args.checkpoint, device=choose_device(args.device))
    batching = BatchingConfig(args.max_batch, args.max_waiting, float(args.max_seconds))
    httpd = make_server(checkpoint.model, checkpoint.tokenizer, args.host, args.port, args.max_new_tokens,
                        max_connections=args.max_connections, model_id=Path(args.checkpoint).resolve().name, batching=batching)
    host, port = httpd.server_address[:2]
    if not is_loopback(args.host):
        print(f"warning: listening on {args.host} makes this server reachable from other machines, and it has no "
              f"authentication: anyone who can reach port {port} can use it. Use --host 127.0.0.1 unless you "
              f"mean that (and then put it behind a proxy that checks who is calling).", file=sys.stderr, flush=True)
    print(f"serving {args.checkpoint} on http://{host}:{port} (chat page at /, OpenAI API at /v1; Ctrl+C stops)",
          flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0
