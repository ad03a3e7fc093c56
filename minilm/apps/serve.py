"""Chapter 6: serving a model — `python -m minilm serve` answers HTTP requests on this machine.

    python -m minilm serve --checkpoint runs/chat --port 8000
    curl -s http://127.0.0.1:8000/generate -d '{"prompt": "Long ago, a shy fox", "max_new_tokens": 20}'
    curl -N http://127.0.0.1:8000/generate -d '{"prompt": "Long ago, a shy fox", "stream": true}'

Endpoints (the standard library's http.server; one model, requests answered one at a time):

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
gets 503 with Retry-After). It listens on 127.0.0.1 unless told otherwise, and warns when told:
there is no authentication.
"""
from __future__ import annotations

import codecs
import contextlib
import errno
import ipaddress
import json
import re
import socket
import sys
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import torch

from minilm.apps.chat import CHAT_TOKENS, END_OF_MESSAGE, format_chat
from minilm.checkpoint import load_checkpoint
from minilm.cli import whole_number
from minilm.data import END_OF_TEXT
from minilm.generate import document_prompt, generate_steps
from minilm.runtime import choose_device

MAX_BODY_BYTES = 64 * 1024  # a request body larger than this is refused (413)
DEFAULT_NEW_TOKENS = 64  # when a request does not say
READ_TIMEOUT_S = 10.0  # the longest wait for the next bytes of a request
REQUEST_TIMEOUT_S = 30.0  # the longest a whole request (line, headers, body) may take to arrive
MAX_CONNECTIONS = 32  # connections served at once; one more is answered 503 at once
FIELDS = ("prompt", "messages", "max_new_tokens", "temperature", "top_k", "top_p", "seed", "stream")


class BadRequest(ValueError):
    """A request the server refuses: its HTTP status and a message saying what to send instead."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


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


@torch.no_grad()
def stream_tokens(model, prompt_ids: list[int], max_new_tokens: int, temperature: float = 0.0,
                  top_k: int | None = None, top_p: float | None = None, stop_ids=(),
                  seed: int | None = None) -> Iterator[int]:
    """Yield the tokens `model.generate` would write for one prompt, each as soon as it is chosen
    (chapter 3's `generate_steps`, with its KV cache). A stop token ends the stream and is yielded last."""
    device = next(model.parameters()).device
    prompt = torch.tensor([prompt_ids], device=device)  # (1, prompt)
    for chosen in generate_steps(model, prompt, max_new_tokens, temperature, top_k, top_p, stop_ids, seed):
        yield chosen.item()


class ModelServer:
    """A model, its tokenizer and the server's limits; checks requests and writes their text."""

    def __init__(self, model, tokenizer, max_new_tokens: int = 256):
        if tokenizer is None:
            raise ValueError("serving needs the tokenizer saved with the checkpoint; this one has none "
                             "(save_checkpoint(..., tokenizer=tokenizer) stores it).")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens  # the most a request may ask for
        self.context = model.config.context_length
        self.chat = all(token in tokenizer.special_tokens for token in CHAT_TOKENS)
        self.lock = threading.Lock()  # one generation at a time: the model is shared
        longest_token = max(len(tokenizer.token_bytes(i)) for i in range(tokenizer.vocab_size))
        self.max_prompt_bytes = self.context * longest_token  # more bytes than this cannot fit the context

    def health(self) -> dict:
        return {"status": "ok", "context_length": self.context, "vocab_size": self.model.config.vocab_size,
                "max_new_tokens": self.max_new_tokens, "chat": self.chat}

    def parse(self, body: bytes) -> Request:
        """Check a /generate body; raise BadRequest saying what is wrong."""
        try:
            payload = json.loads(body.decode("utf-8"))
        except (ValueError, RecursionError) as error:  # bad UTF-8 or JSON, a number of 5000 digits, deep nesting
            reason = "it is nested too deeply" if isinstance(error, RecursionError) else str(error)[:200]
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"the body is not valid JSON ({reason}); send an object "
                                                     f'such as {{"prompt": "Once upon a time"}}.') from None
        if not isinstance(payload, dict):
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"the body must be a JSON object, not {type(payload).__name__}.")
        self._check(all(map(_valid_unicode, _strings_in(payload))),
                    "the body holds a string that is not valid Unicode (a lone surrogate such as \\ud800); "
                    "send text only")
        unknown = sorted(set(payload) - set(FIELDS))
        if unknown:
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"unknown field(s) {', '.join(unknown)}; the fields are "
                                                     f"{', '.join(FIELDS)}.")
        prompt_ids, stop_ids = self._prompt(payload)
        default = max(1, min(DEFAULT_NEW_TOKENS, self.max_new_tokens, self.context - len(prompt_ids)))
        max_new = payload.get("max_new_tokens", default)
        self._check(_whole(max_new) and 1 <= max_new, "max_new_tokens must be a whole number of at least 1")
        self._check(max_new <= self.max_new_tokens,
                    f"max_new_tokens={max_new} is more than this server allows ({self.max_new_tokens})")
        self._check(len(prompt_ids) + max_new <= self.context,
                    f"the prompt has {len(prompt_ids)} tokens and max_new_tokens is {max_new}: together more "
                    f"than the model's context of {self.context} tokens; shorten the prompt or ask for fewer tokens")
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

    def pieces(self, request: Request, summary: dict) -> Iterator[str]:
        """The text of each token written, decoded as soon as its UTF-8 bytes are complete.

        When the pieces run out, summary holds "tokens" (written, the stop token not counted),
        "prompt_tokens" and "stopped" (whether a stop token ended the text).
        """
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        summary.update(tokens=0, prompt_tokens=len(request.prompt_ids), stopped=False)
        with self.lock:
            for token in stream_tokens(self.model, request.prompt_ids, request.max_new_tokens, request.temperature,
                                       request.top_k, request.top_p, request.stop_ids, request.seed):
                if token in request.stop_ids:
                    summary["stopped"] = True
                    break
                summary["tokens"] += 1
                yield decoder.decode(self.tokenizer.token_bytes(token))
        yield decoder.decode(b"", final=True)  # an unfinished character becomes U+FFFD


def make_handler(server: ModelServer, log_requests: bool = True, read_timeout: float = READ_TIMEOUT_S,
                 request_timeout: float = REQUEST_TIMEOUT_S) -> type[BaseHTTPRequestHandler]:
    """The request handler class for `server` (http.server makes one handler object per request)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the connection closes after each answer, which ends a stream
        timeout = read_timeout  # every read and write of the socket waits at most this long

        def log_message(self, format, *args):  # one line per request on stderr, unless asked not to
            if log_requests:
                super().log_message(format, *args)

        def handle(self):
            # A whole request must arrive in request_timeout: a client that trickles one byte at a time
            # would otherwise hold its thread for ever. At the deadline the socket is shut, which ends the read.
            self.deadline = threading.Timer(request_timeout, self._give_up)
            self.deadline.daemon = True
            self.deadline.start()
            try:
                super().handle()
            finally:
                self.deadline.cancel()

        def _give_up(self):
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        def do_GET(self):
            self.deadline.cancel()  # the request has arrived
            if self.path == "/health":
                self._send_json(HTTPStatus.OK, server.health())
            else:
                self._send_error(BadRequest(HTTPStatus.NOT_FOUND, f"no page {self.path}; use GET /health or POST /generate."))

        def do_POST(self):
            try:
                if self.path != "/generate":
                    raise BadRequest(HTTPStatus.NOT_FOUND, f"no endpoint {self.path}; POST to /generate.")
                request = server.parse(self._body())
            except BadRequest as error:
                self._send_error(error)
                return
            except Exception as error:  # a bug must still answer, and the server go on
                self.log_error("could not handle a request: %r", error)
                self._send_error(BadRequest(HTTPStatus.INTERNAL_SERVER_ERROR, f"the server failed on this request "
                                            f"({type(error).__name__}); please report it."))
                return
            if request.stream:
                self._stream(request)
                return
            summary = {}
            text = "".join(server.pieces(request, summary))
            self._send_json(HTTPStatus.OK, {"text": text, **summary})

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
            self.deadline.cancel()  # the request has arrived
            return body

        def _stream(self, request: Request) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/x-ndjson")
            self.end_headers()
            summary = {}
            with contextlib.closing(server.pieces(request, summary)) as pieces:  # frees the model if the client leaves
                for text in pieces:
                    if text:
                        self._write_line({"token": text})
            self._write_line({"done": True, **summary})

        def _write_line(self, payload: dict) -> None:
            self.wfile.write(json.dumps(payload).encode() + b"\n")
            self.wfile.flush()

        def _send_json(self, status: HTTPStatus, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _send_error(self, error: BadRequest) -> None:
            self._send_json(error.status, {"error": str(error)})

    return Handler


BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
        b"Connection: close\r\n\r\n"
        b'{"error": "the server is serving as many connections as it can; try again in a second."}')


class BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` at once; a connection over the cap is told 503."""

    daemon_threads = True  # a stuck client never keeps Python from exiting
    request_queue_size = 128  # connections the kernel holds until they are accepted (socketserver's default: 5)

    def __init__(self, address, handler, max_connections: int = MAX_CONNECTIONS):
        self.slots = threading.BoundedSemaphore(max_connections)
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

    def handle_error(self, request, client_address):
        """A client that vanished mid-answer is one line in the log, not a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            print(f"{client_address[0]}: connection lost ({type(error).__name__})", file=sys.stderr)
        else:
            super().handle_error(request, client_address)


def make_server(model, tokenizer, host: str = "127.0.0.1", port: int = 8000, max_new_tokens: int = 256,
                log_requests: bool = True, max_connections: int = MAX_CONNECTIONS,
                read_timeout: float = READ_TIMEOUT_S, request_timeout: float = REQUEST_TIMEOUT_S) -> BoundedHTTPServer:
    """An HTTP server for the model (not started: call serve_forever). Port 0 picks a free port.

    A port out of range, in use, or an address this machine does not have raises ValueError with one line."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range; give one from 1 to 65535 (or 0 for any free port).")
    handler = make_handler(ModelServer(model, tokenizer, max_new_tokens), log_requests, read_timeout, request_timeout)
    try:
        return BoundedHTTPServer((host, port), handler, max_connections)
    except OSError as error:
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
    `limits`: make_server's max_connections, read_timeout and request_timeout."""
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
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the first available)")
    parser.set_defaults(run=run)


def run(args) -> int:
    checkpoint = load_checkpoint(args.checkpoint, device=choose_device(args.device))
    httpd = make_server(checkpoint.model, checkpoint.tokenizer, args.host, args.port, args.max_new_tokens)
    host, port = httpd.server_address[:2]
    if not is_loopback(args.host):
        print(f"warning: listening on {args.host} makes this server reachable from other machines, and it has no "
              f"authentication: anyone who can reach port {port} can use it. Use --host 127.0.0.1 unless you "
              f"mean that (and then put it behind a proxy that checks who is calling).", file=sys.stderr, flush=True)
    print(f"serving {args.checkpoint} on http://{host}:{port} (POST /generate, GET /health; Ctrl+C stops)",
          flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0
