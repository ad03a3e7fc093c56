"""`python -m minilm serve` under hostile input: each attack gets a 4xx JSON error (never a closed
connection or a traceback), held connections are bounded and time out, rejected prompts cost no
memory, and after every one of them the server still serves."""
import gc
import json
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.request
from pathlib import Path

import pytest
import torch

from minilm.__main__ import main
from minilm.checkpoint import save_checkpoint
from minilm.data import StoryWorld
from minilm.model import GPT, GPTConfig
from minilm.apps.serve import running_server
from minilm.tokenizer import BPETokenizer

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 30
TOKENIZER = BPETokenizer.train([s.text for s in StoryWorld().stories(10, seed=66)], 320)
torch.manual_seed(0)
MODEL = GPT(GPTConfig(vocab_size=TOKENIZER.vocab_size, context_length=32, n_layer=1, n_head=2, n_embd=16))
MAX_CONNECTIONS = 8
READ_TIMEOUT = 1.5
REQUEST_TIMEOUT = 3.0


@pytest.fixture(scope="module")
def address():
    with running_server(MODEL, TOKENIZER, max_new_tokens=8, max_connections=MAX_CONNECTIONS,
                        read_timeout=READ_TIMEOUT, request_timeout=REQUEST_TIMEOUT) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


def raw(address, data: bytes) -> tuple[int, dict, bytes]:
    """Send raw bytes; return the status, the headers and the body of the answer."""
    with socket.create_connection(address, timeout=TIMEOUT) as connection:
        connection.sendall(data)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    assert answer, "the server closed the connection without an answer"
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def post(address, body: bytes, length: str | None = None) -> tuple[int, dict]:
    length = str(len(body)) if length is None else length
    status, _, data = raw(address, b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Length: " + length.encode() +
                          b"\r\n\r\n" + body)
    return status, json.loads(data)


def still_serves(address) -> None:
    status, _, body = raw(address, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, answer = post(address, json.dumps({"prompt": "Once, a", "max_new_tokens": 3}).encode())
    assert status == 200 and "text" in answer


@pytest.mark.parametrize("body,expected", [
    (b'{"prompt": "\\ud800"}', "not valid Unicode"),  # a lone surrogate
    (b'{"messages": [{"role": "user", "content": "\\udfff"}]}', "not valid Unicode"),
    (b'{"prompt": "a", "max_new_tokens": ' + b"7" * 5000 + b"}", "not valid JSON"),  # a 5000-digit integer
    (b"[" * 60_000, "nested too deeply"),  # JSON nested 60,000 deep (60 KB, under the body limit)
    (b'{"prompt": {"a": ' * 2_000 + b"1" + b"}" * 2_000 + b"}", "not valid JSON|must be a string"),
    (b"\xff\xfe{}", "not valid JSON"),  # not UTF-8
])
def test_hostile_bodies_get_a_400_json_error(address, body, expected):
    status, answer = post(address, body)
    assert status == 400 and set(answer) == {"error"}
    assert any(part in answer["error"] for part in expected.split("|")), answer
    still_serves(address)


@pytest.mark.parametrize("length,status", [("²", 411), ("１２", 411), ("-1", 411), ("1e3", 411),
                                           ("9" * 5000, 413), ("99999999999", 413)])
def test_hostile_content_lengths_get_a_4xx_json_error(address, length, status):
    got, answer = post(address, b'{"prompt": "a"}', length=length)
    assert got == status and set(answer) == {"error"}, answer
    still_serves(address)


def test_half_sent_requests_are_bounded_and_time_out(address):
    baseline = threading.active_count()
    held = []
    for _ in range(60):  # far more than the cap: each sends half a request line and waits
        connection = socket.create_connection(address, timeout=TIMEOUT)
        connection.sendall(b"POST /generate HTTP/1.1\r\nContent-Le")
        held.append(connection)
    # at most one thread (and one deadline timer) per allowed connection
    assert threading.active_count() <= baseline + 2 * MAX_CONNECTIONS
    status, headers, body = raw(address, b"GET /health HTTP/1.1\r\n\r\n")  # over the cap: told to come back
    assert status == 503 and headers.get("Retry-After") == "1" and "error" in json.loads(body)
    time.sleep(READ_TIMEOUT * 2)  # the held connections time out and are closed
    still_serves(address)
    for connection in held:
        connection.close()
    time.sleep(0.2)
    assert threading.active_count() <= baseline + 1


def test_a_trickling_client_is_cut_off_by_the_request_deadline(address):
    started = time.monotonic()
    with socket.create_connection(address, timeout=TIMEOUT) as connection:
        try:
            for byte in b"POST /generate HTTP/1.1\r\nContent-Length: 100\r\n\r\n" + b"x" * 100:
                connection.sendall(bytes([byte]))  # each byte comes well within the read timeout
                time.sleep(READ_TIMEOUT / 5)
                if time.monotonic() - started > 4 * REQUEST_TIMEOUT:
                    break
        except OSError:
            pass  # the server shut the connection
    assert time.monotonic() - started < 2 * REQUEST_TIMEOUT  # the request deadline, not the 45 s the bytes take
    still_serves(address)


def test_rejected_long_prompts_cost_no_memory(address):
    words = [" ".join(f"w{i}x{j}" for j in range(7_000))[:60_000] for i in range(40)]  # 60 KB each, all different
    post(address, json.dumps({"prompt": words[0]}).encode())  # warm up (buffers, lazily built objects)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for prompt in words[1:]:
        status, answer = post(address, json.dumps({"prompt": prompt}).encode())
        assert status == 400 and "bytes, more than the model's context" in answer["error"]
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 1 << 20, f"{grown:,} bytes kept after 39 rejected prompts"
    still_serves(address)


def test_the_tokenizer_cache_is_bounded_in_bytes():
    from minilm import tokenizer as tokenizer_module

    tokenizer = BPETokenizer.train(["the cat sat on the mat"] * 3, 270)
    texts = [" ".join(f"q{i}z{j}" for j in range(8_000)) for i in range(60)] + ["y" * 60_000] * 3
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for text in texts:  # 480,000 distinct words and three 60,000-character ones
        tokenizer.encode(text)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 1.5 * tokenizer_module.WORD_CACHE_BYTES, f"{grown:,} bytes"
    assert tokenizer.decode(tokenizer.encode("the cat q1z2")) == "the cat q1z2"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    save_checkpoint(folder, MODEL, tokenizer=TOKENIZER)
    return folder


def test_a_port_in_use_is_one_line(checkpoint, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["serve", "--checkpoint", str(checkpoint), "--port", str(busy.getsockname()[1])]) == 2
    error = capsys.readouterr().err
    assert error.startswith("minilm serve: cannot listen on 127.0.0.1:") and "pick another --port" in error
    assert error.count("\n") == 1


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_a_port_out_of_range_is_refused(checkpoint, port, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["serve", "--checkpoint", str(checkpoint), "--port", port])
    assert stop.value.code == 2 and "argument --port:" in capsys.readouterr().err


def test_listening_beyond_this_machine_warns(checkpoint):
    server = subprocess.Popen([sys.executable, "-m", "minilm", "serve", "--checkpoint", str(checkpoint), "--host",
                               "0.0.0.0", "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        warning = server.stderr.readline()
        assert warning.startswith("warning: listening on 0.0.0.0") and "no authentication" in warning
        assert "serving" in server.stdout.readline()
    finally:
        server.terminate()
        server.wait(timeout=TIMEOUT)
