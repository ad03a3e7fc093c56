"""The chat page of `python -m minilm serve` (minilm/deploy/chat.html), driven in a real headless Chromium
(Playwright, Debian's /usr/bin/chromium) against the real server with a tiny chat model: the model's name,
an answer streamed delta by delta that equals the server's own non-streamed answer, a second turn that
sends the whole conversation, an error shown in the page, Stop, New chat, and the notice for a checkpoint
that cannot chat. Every wait has a timeout of a few seconds; every server and browser is stopped."""
import json
import os
import urllib.request
from pathlib import Path

import pytest
import torch

from minilm.apps.chat import add_chat_tokens
from minilm.apps.serve import running_server
from minilm.model import GPT, GPTConfig
from tests.test_serve import TOKENIZER

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # no sandbox as root; nothing reaching the network
WAIT_MS = 5000  # the longest any step of the page may take
TIMEOUT = 30  # seconds a direct request may take
LIMIT = 24  # the server's max_new_tokens
SEED = 3


def tiny_model(tokenizer) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=tokenizer.vocab_size, context_length=160, n_layer=1, n_head=2, n_embd=32))


CHAT_TOKENIZER, CHAT_MODEL = add_chat_tokens(TOKENIZER, tiny_model(TOKENIZER))


def missing_browser() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no {CHROMIUM}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "no playwright package"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = missing_browser()
    if reason:
        message = f"{reason}: the chat page's browser test needs `apt-get install chromium; pip install playwright`"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(message + " (CI is set: CI must run the browser test, never skip it)")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS, timeout=30_000)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def chat_url():
    with running_server(CHAT_MODEL, CHAT_TOKENIZER, max_new_tokens=LIMIT) as url:
        yield url


@pytest.fixture
def page(browser, chat_url):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(chat_url + "/")
    yield page
    context.close()
    assert errors == [], f"the page's JavaScript failed: {errors}"


def model_id(url: str) -> str:
    with urllib.request.urlopen(url + "/v1/models", timeout=TIMEOUT) as response:
        return json.loads(response.read())["data"][0]["id"]


def server_answer(url: str, body: dict) -> tuple[str, int]:
    """What the server answers for `body` not streamed, and how many content deltas it streams for it."""
    def ask(stream: bool) -> bytes:
        request = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps({**body, "stream": stream}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.read()
    text = json.loads(ask(False))["choices"][0]["message"]["content"]
    events = [e.removeprefix("data: ") for e in ask(True).decode().split("\n\n") if e]
    assert events[-1] == "[DONE]"
    deltas = [json.loads(e)["choices"][0]["delta"] for e in events[:-1] if json.loads(e)["choices"]]
    return text, sum(1 for delta in deltas if delta.get("content"))


def settle(page, assistant_turns: int):
    """Wait until the page has `assistant_turns` finished answers."""
    from playwright.sync_api import expect
    expect(page.locator('.message[data-role="assistant"]')).to_have_count(assistant_turns)
    expect(page.locator("body")).to_have_attribute("data-generating", "false")


def test_the_page_streams_a_conversation_and_sends_it_whole(page, chat_url):
    from playwright.sync_api import expect
    expect(page.locator("#model-name")).to_have_text(model_id(chat_url))
    for name, default in {"temperature": "0.8", "top_p": "0.95", "max_tokens": str(LIMIT), "seed": ""}.items():
        expect(page.locator(f"#{name}")).to_have_value(default)  # max_tokens: 64, lowered to the server's limit
    page.fill("#max_tokens", "16")
    page.fill("#seed", str(SEED))
    sent = []
    page.on("request", lambda r: sent.append(r.post_data_json) if r.url.endswith("/v1/chat/completions") else None)

    page.fill("#prompt", "Who is the friend of Mia?")
    page.click("#send")
    settle(page, 1)
    first = sent[0]
    assert first == {"model": model_id(chat_url), "messages": [{"role": "user", "content": "Who is the friend of Mia?"}],
                     "stream": True, "temperature": 0.8, "top_p": 0.95, "max_tokens": 16, "seed": SEED}
    expected, deltas = server_answer(chat_url, {k: v for k, v in first.items() if k != "stream"})
    assert deltas >= 2  # else this test could not tell streaming from one lump
    reply = page.locator('.message[data-role="assistant"]').nth(0)
    assert reply.text_content() == expected
    # the page appended one delta at a time, as many as the server streams for this request
    assert page.evaluate("window.minilmChat.deltas") == deltas == int(reply.get_attribute("data-deltas"))
    expect(page.locator('.message[data-role="user"]')).to_have_text(["Who is the friend of Mia?"])

    page.fill("#prompt", "And where does Leo live?")
    page.press("#prompt", "Enter")  # Enter sends too
    settle(page, 2)
    second = sent[1]
    assert second["messages"] == [{"role": "user", "content": "Who is the friend of Mia?"},
                                  {"role": "assistant", "content": expected},
                                  {"role": "user", "content": "And where does Leo live?"}]
    expected_second, _ = server_answer(chat_url, {k: v for k, v in second.items() if k != "stream"})
    assert page.locator('.message[data-role="assistant"]').nth(1).text_content() == expected_second
    expect(page.locator("#error")).to_be_hidden()

    page.click("#new-chat")
    expect(page.locator(".message")).to_have_count(0)
    page.fill("#prompt", "Hello")
    page.click("#send")
    settle(page, 1)
    assert [m["role"] for m in sent[2]["messages"]] == ["user"]


def test_an_error_is_shown_and_the_turn_given_back(page):
    from playwright.sync_api import expect
    page.fill("#max_tokens", "1000")
    page.fill("#prompt", "Hi there")
    page.click("#send")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error")).to_contain_text(f"max_tokens=1000 is more than this server allows ({LIMIT})")
    expect(page.locator("#error")).to_contain_text("400")
    expect(page.locator(".message")).to_have_count(0)  # the failed turn is taken back ...
    expect(page.locator("#prompt")).to_have_value("Hi there")  # ... and its text kept to send again
    assert page.locator(".message").count() == 0 and page.input_value("#prompt") == "Hi there"
    page.fill("#max_tokens", "4")
    page.click("#send")
    settle(page, 1)
    expect(page.locator("#error")).to_be_hidden()


def test_stop_aborts_the_stream_and_keeps_what_was_written(page):
    """The server's tiny model answers in milliseconds, too fast to stop; here fetch answers with a stream that
    never ends on its own (its first event split across two reads), as a long answer would."""
    from playwright.sync_api import expect
    page.evaluate("""() => {
      const realFetch = window.fetch, encoder = new TextEncoder();
      window.fetch = (url, options) => {
        if (!String(url).endsWith("/v1/chat/completions")) return realFetch(url, options);
        const body = new ReadableStream({ start(controller) {
          controller.enqueue(encoder.encode('data: {"choices": [{"index": 0, "delta": {"content": "Once up'));
          controller.enqueue(encoder.encode('on"}, "finish_reason": null}]}\\n\\n'));
          options.signal.addEventListener("abort", () => controller.error(new DOMException("stopped", "AbortError")));
        } });
        return Promise.resolve(new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream" } }));
      };
    }""")
    page.fill("#prompt", "Tell me a story")
    page.click("#send")
    expect(page.locator('.message[data-role="assistant"]')).to_have_text("Once upon")
    expect(page.locator("body")).to_have_attribute("data-generating", "true")
    expect(page.locator("#send")).to_be_disabled()
    page.click("#stop")
    expect(page.locator("body")).to_have_attribute("data-generating", "false")
    expect(page.locator('.message[data-role="assistant"]')).to_have_attribute("data-finish", "stopped")
    assert page.evaluate("window.minilmChat.messages") == [{"role": "user", "content": "Tell me a story"},
                                                          {"role": "assistant", "content": "Once upon"}]
    expect(page.locator("#error")).to_be_hidden()


def test_a_checkpoint_that_cannot_chat_shows_a_notice(browser):
    from playwright.sync_api import expect
    with running_server(tiny_model(TOKENIZER), TOKENIZER, max_new_tokens=LIMIT) as url:
        context = browser.new_context()
        try:
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)
            page.goto(url + "/")
            expect(page.locator("#notice")).to_be_visible()
            expect(page.locator("#notice")).to_contain_text("not a chat model")
            expect(page.locator("#model-name")).to_have_text(model_id(url))
            expect(page.locator("#send")).to_be_disabled()
            expect(page.locator("#prompt")).to_be_disabled()
        finally:
            context.close()
