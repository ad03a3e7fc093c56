"""The OpenAI-compatible endpoints, driven by the official `openai` client against a real server on
127.0.0.1: answers equal to `model.generate` at the same seed, streamed or not; stop strings, usage
counts and finish reasons; OpenAI's error body for bad requests; and the batching server's promises
(concurrent requests each equal to their solo run, a bounded queue answering 503 with Retry-After,
a client that leaves freeing its slot, the time limit)."""
import http.client
import json
import threading
import time
import urllib.parse

import openai
import pytest
import torch

from minilm.apps.chat import END_OF_MESSAGE, add_chat_tokens, format_chat
from minilm.apps.serve import running_server
from minilm.data import END_OF_TEXT, StoryWorld
from minilm.deploy import openai_api
from minilm.deploy.batching import BatchingConfig
from minilm.generate import document_prompt
from minilm.model import GPT, GPTConfig
from minilm.tokenizer import BPETokenizer

TIMEOUT = 30
TOKENIZER = BPETokenizer.train([s.text for s in StoryWorld().stories(10, seed=65)], 350)
END = TOKENIZER.special_tokens[END_OF_TEXT]
LIMIT = 24


def tiny_model(family: str = "gpt2", vocab_size: int = TOKENIZER.vocab_size) -> GPT:
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=vocab_size, context_length=64, n_layer=2, n_head=2, n_embd=32, family=family)
    return GPT(config).double()  # float64: a row's logits do not depend on the other rows of a batch


MODEL = tiny_model()
CHAT_TOKENIZER, CHAT_MODEL = add_chat_tokens(TOKENIZER, tiny_model("llama"))


@pytest.fixture(scope="module")
def url():
    with running_server(MODEL, TOKENIZER, max_new_tokens=LIMIT) as address:
        yield address


@pytest.fixture(scope="module")
def chat_url():
    with running_server(CHAT_MODEL, CHAT_TOKENIZER, max_new_tokens=LIMIT, model_id="chatty") as address:
        yield address


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", timeout=TIMEOUT, max_retries=0)


def generated(model, tokenizer, prompt_ids: list[int], max_new_tokens: int, stops: list[int], **sampling):
    """What model.generate writes for the prompt (the stop token cut off) and whether a stop ended it."""
    out = model.generate(torch.tensor([prompt_ids]), max_new_tokens, stop_tokens=stops, **sampling)
    new = out[0, len(prompt_ids):].tolist()
    ended = [i for i, token in enumerate(new) if token in stops]
    new = new[:ended[0]] if ended else new
    return tokenizer.decode(new), len(new), bool(ended)


SAMPLINGS = [{"temperature": 0.0}, {"temperature": 1.0, "seed": 3}, {"temperature": 0.7, "top_p": 0.9, "seed": 11}]


@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_completions_equal_generate(url, sampling):
    prompt = "Long ago, a shy fox"
    ids = document_prompt(TOKENIZER, prompt)
    text, count, stopped = generated(MODEL, TOKENIZER, ids, 20, [END], **sampling)
    answer = client(url).completions.create(model="minilm", prompt=prompt, max_tokens=20, **sampling)
    assert answer.choices[0].text == text
    assert answer.choices[0].finish_reason == ("stop" if stopped else "length")
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (len(ids), count)
    assert answer.usage.total_tokens == len(ids) + count and answer.object == "text_completion"

    stream = client(url).completions.create(model="minilm", prompt=prompt, max_tokens=20, stream=True,
                                            stream_options={"include_usage": True}, **sampling)
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == text
    assert len([c for c in chunks if c.choices and c.choices[0].text]) >= min(count, 2)  # it arrives in pieces
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == answer.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == count and chunks[-1].choices == []


@pytest.mark.parametrize("sampling", SAMPLINGS[:2])
def test_chat_completions_equal_generate(chat_url, sampling):
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Who is Mia?"}]
    ids = CHAT_TOKENIZER.encode(format_chat(messages, add_generation_prompt=True))
    stops = [CHAT_TOKENIZER.special_tokens[END_OF_MESSAGE], CHAT_TOKENIZER.special_tokens[END_OF_TEXT]]
    text, count, _ = generated(CHAT_MODEL, CHAT_TOKENIZER, ids, 16, stops, **sampling)
    answer = client(chat_url).chat.completions.create(model="chatty", messages=messages, max_tokens=16, **sampling)
    assert answer.choices[0].message.content == text and answer.choices[0].message.role == "assistant"
    assert answer.usage.completion_tokens == count and answer.object == "chat.completion"
    chunks = list(client(chat_url).chat.completions.create(model="chatty", messages=messages, max_tokens=16,
                                                          stream=True, **sampling))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text
    assert chunks[-1].choices[0].finish_reason == answer.choices[0].finish_reason


def test_models_lists_the_one_model(url):
    models = client(url).models.list().data
    assert [m.id for m in models] == ["minilm"] and models[0].object == "model"


def test_stop_strings_cut_the_text_before_them(url):
    full = client(url).completions.create(model="minilm", prompt="Once, a", max_tokens=20, temperature=0).choices[0]
    assert len(full.text) > 6
    stop = full.text[3:5]  # a piece from the middle: the text must end just before its first occurrence
    expected = full.text[:full.text.find(stop)]
    for stream in (False, True):
        answer = client(url).completions.create(model="minilm", prompt="Once, a", max_tokens=20, temperature=0,
                                                stop=[stop, "never seen"], stream=stream)
        if stream:
            chunks = list(answer)
            assert "".join(c.choices[0].text for c in chunks) == expected
            assert chunks[-1].choices[0].finish_reason == "stop"
        else:
            assert answer.choices[0].text == expected and answer.choices[0].finish_reason == "stop"


def error_of(call) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        call()
    error = caught.value
    assert set(error.body) >= {"message", "type", "param", "code"}, error.body  # the client unwraps "error"
    return error


def test_bad_requests_get_openai_error_bodies(url, chat_url):
    c = client(url)
    unknown = error_of(lambda: c.completions.create(model="gpt-4", prompt="a"))
    assert unknown.status_code == 404 and unknown.body["code"] == "model_not_found" and "minilm" in unknown.message
    too_many = error_of(lambda: c.completions.create(model="minilm", prompt="a", max_tokens=LIMIT + 1))
    assert too_many.status_code == 400 and too_many.body["param"] == "max_tokens"
    for field, value in [("temperature", 2.5), ("top_p", 0), ("n", 2), ("seed", -1), ("stop", ["a"] * 5),
                         ("presence_penalty", 1.0)]:
        error = error_of(lambda: c.completions.create(model="minilm", prompt="a", **{field: value}))
        assert error.status_code == 400 and error.body["param"] == field, (field, error.body)
    extra = error_of(lambda: c.completions.create(model="minilm", prompt="a", extra_body={"best_of": 3}))
    assert extra.body["param"] == "best_of" and extra.body["type"] == "invalid_request_error"
    not_chat = error_of(lambda: c.chat.completions.create(model="minilm", messages=[{"role": "user", "content": "a"}]))
    assert not_chat.status_code == 400 and "/v1/completions" in not_chat.message
    bad_role = error_of(lambda: client(chat_url).chat.completions.create(
        model="chatty", messages=[{"role": "robot", "content": "a"}]))
    assert bad_role.status_code == 400 and bad_role.body["param"] == "messages"


def raw_post(url: str, path: str, body: bytes, headers: dict | None = None) -> tuple[int, dict, dict]:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    connection.request("POST", path, body=body, headers=headers or {"Content-Type": "application/json"})
    response = connection.getresponse()
    status, answer, head = response.status, json.loads(response.read()), dict(response.getheaders())
    connection.close()
    return status, answer, head


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"model": "minilm", "prompt": "\\ud800"}',
                                  b'{"model": "minilm"}', b'{"model": "minilm", "prompt": 3}'])
def test_malformed_bodies_get_the_standard_error_body(url, body):
    status, answer, _ = raw_post(url, "/v1/completions", body)
    assert status == 400 and set(answer) == {"error"}
    assert set(answer["error"]) == {"message", "type", "param", "code"} and answer["error"]["message"]


class SlowModel(GPT):
    """The tiny model, with a pause in every forward pass: requests then overlap for certain."""

    def forward(self, *args, **kwargs):
        time.sleep(0.02)
        return super().forward(*args, **kwargs)


def slow_model() -> GPT:
    model = SlowModel(MODEL.config).double()
    model.load_state_dict(MODEL.state_dict())
    return model


def test_concurrent_requests_are_batched_and_each_equals_its_solo_run():
    model = slow_model()
    prompts = [("Long ago", 6, {"temperature": 0.0}), ("Once, a fox", 20, {"temperature": 1.0, "seed": 1}),
               ("The wind", 12, {"temperature": 0.9, "top_p": 0.8, "seed": 2}), ("A", 17, {"temperature": 0.0}),
               ("Mia and Leo went", 9, {"temperature": 1.2, "seed": 5}), ("Far", 20, {"temperature": 1.0, "seed": 9})]
    expected = [generated(MODEL, TOKENIZER, document_prompt(TOKENIZER, p), n, [END], **s)[0] for p, n, s in prompts]
    answers = [None] * len(prompts)
    with running_server(model, TOKENIZER, max_new_tokens=LIMIT, batching=BatchingConfig(max_batch=4)) as address:
        def ask(i):
            prompt, n, sampling = prompts[i]
            answers[i] = client(address).completions.create(model="minilm", prompt=prompt, max_tokens=n,
                                                            **sampling).choices[0].text
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
        engine = engine_of(address)
    assert answers == expected
    assert 2 <= engine.largest_batch <= 4  # they shared decoding steps, never more than the slots


ENGINES = {}


def engine_of(address: str):
    return ENGINES[address]


@pytest.fixture(autouse=True)
def record_engines(monkeypatch):
    """Keep each test server's batching engine, by URL, so a test can look at what it did."""
    import minilm.apps.serve as serve
    original = serve.make_server

    def recording(*args, **kwargs):
        httpd = original(*args, **kwargs)
        ENGINES[f"http://127.0.0.1:{httpd.server_address[1]}"] = httpd.engine
        return httpd

    monkeypatch.setattr(serve, "make_server", recording)


def test_a_full_queue_answers_503_with_retry_after():
    body = json.dumps({"model": "minilm", "prompt": "Long ago", "max_tokens": LIMIT, "temperature": 0}).encode()
    with running_server(slow_model(), TOKENIZER, max_new_tokens=LIMIT,
                        batching=BatchingConfig(max_batch=1, max_waiting=1)) as address:
        results = []
        busy = [threading.Thread(target=lambda: results.append(raw_post(address, "/v1/completions", body)[0]))
                for _ in range(2)]  # one decoding, one waiting
        for thread in busy:
            thread.start()
            time.sleep(0.1)
        status, answer, headers = raw_post(address, "/v1/completions", body)
        for thread in busy:
            thread.join(TIMEOUT)
    assert status == 503 and headers.get("Retry-After") == "1"
    assert answer["error"]["type"] == "server_error" and "busy" in answer["error"]["message"]
    assert results == [200, 200]


def test_a_client_that_leaves_frees_its_slot():
    with running_server(slow_model(), TOKENIZER, max_new_tokens=LIMIT,
                        batching=BatchingConfig(max_batch=1)) as address:
        stream = client(address).completions.create(model="minilm", prompt="Long ago", max_tokens=LIMIT,
                                                    temperature=0, stream=True)
        next(iter(stream))
        stream.close()  # gone after one chunk
        started = time.monotonic()
        answer = client(address).completions.create(model="minilm", prompt="Once", max_tokens=2, temperature=0)
        waited = time.monotonic() - started
    assert answer.usage.completion_tokens == 2
    assert waited < LIMIT * 0.02  # less than the abandoned request would have taken to finish


def test_the_time_limit_ends_a_long_request():
    with running_server(slow_model(), TOKENIZER, max_new_tokens=LIMIT,
                        batching=BatchingConfig(max_seconds=0.15)) as address:
        answer = client(address).completions.create(model="minilm", prompt="Long ago", max_tokens=LIMIT,
                                                    temperature=0)
    assert answer.choices[0].finish_reason == "length" and answer.usage.completion_tokens < LIMIT


def test_streamed_chunks_share_one_id_and_creation_time(url, chat_url):
    for address, create in ((url, lambda c: c.completions.create(model="minilm", prompt="Once", max_tokens=8,
                                                                temperature=0, stream=True)),
                            (chat_url, lambda c: c.chat.completions.create(
                                model="chatty", messages=[{"role": "user", "content": "Hi"}], max_tokens=8,
                                temperature=0, stream=True))):
        chunks = list(create(client(address)))
        assert len(chunks) >= 2
        assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    first = client(url).completions.create(model="minilm", prompt="Once", max_tokens=2, temperature=0)
    second = client(url).completions.create(model="minilm", prompt="Once", max_tokens=2, temperature=0)
    assert first.id != second.id  # each completion its own id


@pytest.mark.parametrize("path", ["/health?check=1", "/v1/models?x", "/?model=minilm"])
def test_a_query_string_does_not_change_the_page(url, path):
    host, port = urllib.parse.urlsplit(url).netloc.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    connection.request("GET", path)
    reply = connection.getresponse()
    assert reply.status == 200, reply.read()[:200]


def test_a_vanished_client_is_silent_when_logging_is_off(capfd):
    with running_server(slow_model(), TOKENIZER, max_new_tokens=LIMIT, log_requests=False,
                        batching=BatchingConfig(max_batch=1)) as address:
        stream = client(address).completions.create(model="minilm", prompt="Long ago", max_tokens=LIMIT,
                                                    temperature=0, stream=True)
        next(iter(stream))
        stream.close()
        client(address).completions.create(model="minilm", prompt="Once", max_tokens=2, temperature=0)
    captured = capfd.readouterr()
    assert "connection lost" not in captured.err and "Traceback" not in captured.err


@pytest.mark.parametrize("endpoint", ["completions", "chat.completions"])
def test_the_streamed_text_template_writes_the_chunk_bytes(endpoint):
    head = openai_api.header(endpoint, "minilm")
    text_event = openai_api.text_events(endpoint, head)
    for text in ["", "a", 'say "hi" \\ now', "naïve ✓ \u2028", "\n\t", "\0"]:
        assert text_event(text) == openai_api.event(openai_api.chunk(endpoint, head, text))
        payload = json.loads(text_event(text).decode().removeprefix("data: "))
        assert payload["id"] == head["id"]
