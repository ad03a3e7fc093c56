"""`python -m minilm serve`, tested with real HTTP requests to 127.0.0.1 on a free port: answers equal
to the model's own generate, streamed tokens that add up to the same text, and a clear 4xx JSON error
for every kind of bad request. Every request has a timeout and every server is stopped."""
import http.client
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from minilm.__main__ import main
from minilm.apps.chat import END_OF_MESSAGE, add_chat_tokens, chat_reply
from minilm.checkpoint import save_checkpoint
from minilm.data import END_OF_TEXT, StoryWorld
from minilm.generate import document_prompt
from minilm.model import GPT, GPTConfig
from minilm.apps.serve import running_server
from minilm.tokenizer import BPETokenizer

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 30  # seconds any request may take before the test fails
TOKENIZER = BPETokenizer.train([s.text for s in StoryWorld().stories(10, seed=65)], 350)
END = TOKENIZER.special_tokens[END_OF_TEXT]
CONTEXT = 48
LIMIT = 20  # the server's max_new_tokens


def tiny_model(vocab_size: int = TOKENIZER.vocab_size) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab_size, context_length=CONTEXT, n_layer=1, n_head=2, n_embd=32))


MODEL = tiny_model()


@pytest.fixture(scope="module")
def url():
    with running_server(MODEL, TOKENIZER, max_new_tokens=LIMIT) as address:
        yield address


def post(url: str, body, path: str = "/generate") -> tuple[int, bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url + path, data=data), timeout=TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def error_of(url: str, body, status: int = 400, path: str = "/generate") -> str:
    code, data = post(url, body, path)
    assert code == status, data
    payload = json.loads(data)
    assert set(payload) == {"error"}
    return payload["error"]


def model_text(prompt: str, max_new_tokens: int, **sampling) -> str:
    ids = torch.tensor([document_prompt(TOKENIZER, prompt)])  # a text starts after END_OF_TEXT
    out = MODEL.generate(ids, max_new_tokens, stop_tokens=[END], **sampling)[0, ids.shape[1]:].tolist()
    return TOKENIZER.decode(out[:out.index(END)] if END in out else out)


def test_health(url):
    with urllib.request.urlopen(url + "/health", timeout=TIMEOUT) as response:
        assert response.status == 200
        assert json.loads(response.read()) == {"status": "ok", "context_length": CONTEXT,
                                               "vocab_size": TOKENIZER.vocab_size, "max_new_tokens": LIMIT,
                                               "chat": False, "model": "minilm", "max_batch": 16}


def test_generate_answers_what_the_model_writes(url):
    code, data = post(url, {"prompt": "Once, a", "max_new_tokens": 12})
    answer = json.loads(data)
    assert code == 200 and answer["text"] == model_text("Once, a", 12, temperature=0)
    assert answer["prompt_tokens"] == len(TOKENIZER.encode("Once, a")) + 1  # END_OF_TEXT first
    assert answer["tokens"] == len(TOKENIZER.encode(answer["text"])) or answer["stopped"]
    sampled = {"prompt": "Once, a", "max_new_tokens": 12, "temperature": 1.0, "top_k": 20, "seed": 7}
    first, second = json.loads(post(url, sampled)[1]), json.loads(post(url, sampled)[1])
    assert first == second and first["text"] == model_text("Once, a", 12, temperature=1.0, top_k=20, seed=7)


def test_streamed_tokens_add_up_to_the_answer(url):
    request = {"prompt": "One morning, Mia", "max_new_tokens": 15, "temperature": 0.9, "seed": 4}
    answer = json.loads(post(url, request)[1])
    with urllib.request.urlopen(urllib.request.Request(url + "/generate", data=json.dumps({**request, "stream": True})
                                                       .encode()), timeout=TIMEOUT) as response:
        assert response.headers["Content-Type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in response.read().decode().splitlines()]
    pieces, last = lines[:-1], lines[-1]
    assert all(set(piece) == {"token"} for piece in pieces)
    assert "".join(piece["token"] for piece in pieces) == answer["text"]
    assert last == {"done": True, **{key: answer[key] for key in ("tokens", "prompt_tokens", "stopped")}}


@pytest.mark.parametrize("body, message", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    ([1, 2], "must be a JSON object"),
    ({}, 'exactly one of "prompt"'),
    ({"max_new_tokens": 5}, 'exactly one of "prompt"'),
    ({"prompt": 42}, "prompt must be a string"),
    ({"prompt": ""}, "prompt is empty"),
    ({"prompt": "a", "max_new_tokens": "5"}, "max_new_tokens must be a whole number"),
    ({"prompt": "a", "max_new_tokens": True}, "max_new_tokens must be a whole number"),
    ({"prompt": "a", "max_new_tokens": 0}, "max_new_tokens must be a whole number of at least 1"),
    ({"prompt": "a", "max_new_tokens": LIMIT + 1}, rf"more than this server allows \({LIMIT}\)"),
    ({"prompt": "Long ago " * 30, "max_new_tokens": 5}, "more than the model's context of 48 tokens"),
    ({"prompt": "a", "temperature": -1}, "temperature must be a number >= 0"),
    ({"prompt": "a", "temperature": "hot"}, "temperature must be a number >= 0"),
    ({"prompt": "a", "top_k": 0}, "top_k must be null or a whole number >= 1"),
    ({"prompt": "a", "top_p": 1.5}, r"top_p must be null or a number in \(0, 1\]"),
    ({"prompt": "a", "seed": -3}, "seed must be null or a whole number"),
    ({"prompt": "a", "seed": 2**64}, "seed must be null or a whole number from 0 to"),
    ({"prompt": "a", "top_p": float("nan")}, "top_p must be null"),
    ({"prompt": "a", "stream": "yes"}, "stream must be true or false"),
    ({"prompt": "a", "temprature": 1}, "unknown field.*temprature"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "not trained to chat"),
])
def test_bad_requests_get_a_400_that_says_what_to_send(url, body, message):
    assert re.search(message, error_of(url, body))


def test_wrong_paths_sizes_and_headers(url):
    assert "POST to /generate" in error_of(url, {"prompt": "a"}, 404, path="/complete")
    try:
        urllib.request.urlopen(url + "/nowhere", timeout=TIMEOUT)
    except urllib.error.HTTPError as error:
        assert error.code == 404 and "/health" in json.loads(error.read())["error"]
    assert "at most" in error_of(url, b" " * (70 * 1024), 413)
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    connection.putrequest("POST", "/generate")
    connection.endheaders()  # no Content-Length, no body
    response = connection.getresponse()
    assert response.status == 411 and "Content-Length" in json.loads(response.read())["error"]
    connection.close()


def test_a_chat_checkpoint_answers_messages():
    tokenizer, model = add_chat_tokens(TOKENIZER, tiny_model())
    messages = [{"role": "user", "content": "Who is Mia?"}]
    with running_server(model, tokenizer, max_new_tokens=LIMIT) as address:
        answer = json.loads(post(address, {"messages": messages, "max_new_tokens": 10})[1])
        assert answer["text"].strip() == chat_reply(model, tokenizer, messages, max_new_tokens=10)
        assert "speak as the assistant" in error_of(address, {"messages": [{"role": "user", "content": END_OF_MESSAGE}]})
        assert "role 'robot'" in error_of(address, {"messages": [{"role": "robot", "content": "hi"}]})
        assert "must be a list" in error_of(address, {"messages": "hi"})


def test_the_command_line_serves_a_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "run", MODEL, tokenizer=TOKENIZER)
    command = [sys.executable, "-m", "minilm", "serve", "--checkpoint", str(tmp_path / "run"), "--port", "0",
               "--max-new-tokens", "8", "--device", "cpu"]
    env = {**os.environ, "MINILM_THREADS": "1"}
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = server.stdout.readline()  # "serving ... on http://127.0.0.1:PORT (...)"
        assert line.startswith("serving"), server.stderr.read() if server.poll() is not None else line
        address = line.split(" on ")[1].split(" ")[0]
        code, data = post(address, {"prompt": "Once, a", "max_new_tokens": 8})
        assert code == 200 and json.loads(data)["text"] == model_text("Once, a", 8, temperature=0)
        assert "more than this server allows (8)" in error_of(address, {"prompt": "a", "max_new_tokens": 9})
    finally:
        server.terminate()
        server.wait(timeout=TIMEOUT)


def test_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert main(["serve", "--checkpoint", str(tmp_path / "none")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("minilm serve:") and "does not exist" in error and error.count("\n") == 1
