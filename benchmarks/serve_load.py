"""Load on the server: 1, 4, 16 and 64 concurrent clients, one request at a time against batching.

    MINILM_THREADS=1 python benchmarks/serve_load.py
    python benchmarks/serve_load.py --checkpoint runs/stories --clients 1 4 16 64 --new-tokens 128

The server runs in its own process (`python -m minilm serve` on 127.0.0.1, a free port), once with
`--max-batch 1` (requests answered one after another, as chapter 6's first server did) and once
with `--max-batch 64` (continuous batching); everything else is the same. Each client is a thread
sending streamed /v1/completions requests one after another (seeded sampling at temperature 1).
Reported per setting: throughput (completion tokens per second, all clients together), p50 and
p95 latency of a whole request, and p50 time to the first token. A third row gives the batching
engine alone, fed by as many threads in this process with no HTTP in between: the ceiling that the
server's connections, threads and JSON take their share of. Without --checkpoint the cpu
preset's model is used with random weights (speed does not depend on what the weights say).
128 new tokens per request is the usual output length of serving benchmarks; shorter answers pay
the per-request costs (a connection, a thread, parsing) over fewer tokens (try --new-tokens 32).
Goal: >= 4x the throughput at 16 clients, p95 latency no worse at 1 client.
"""
from __future__ import annotations

import argparse
import functools
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable

import torch

from minilm.checkpoint import load_checkpoint, save_checkpoint
from minilm.data import StoryWorld
from minilm.deploy.batching import BatchingConfig, BatchingEngine, Job
from minilm.generate import document_prompt
from minilm.model import GPT, config_for_preset
from minilm.report import cpu_name
from minilm.runtime import set_threads
from minilm.tokenizer import BPETokenizer


PROMPT = "Long ago, a shy fox"
ENGINE = "engine alone, no HTTP"


def random_checkpoint(folder: str) -> str:
    """The cpu preset's model, random weights, with a BPE tokenizer of 1024 tokens."""
    tokenizer = BPETokenizer.train([s.text for s in StoryWorld().stories(300, seed=0)], 1024)
    torch.manual_seed(0)
    model = GPT(config_for_preset(tokenizer.vocab_size, preset="cpu"))
    save_checkpoint(folder, model, tokenizer=tokenizer)
    return folder


def start_server(checkpoint: str, max_batch: int, threads: int) -> tuple[subprocess.Popen, int]:
    command = [sys.executable, "-m", "minilm", "serve", "--checkpoint", checkpoint, "--port", "0", "--device", "cpu",
               "--max-batch", str(max_batch), "--max-waiting", "256", "--max-connections", "256"]
    env = {**os.environ, "MINILM_THREADS": str(threads)}
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    line = server.stdout.readline()  # "serving ... on http://127.0.0.1:PORT (...)"
    return server, int(line.split("http://127.0.0.1:")[1].split()[0])


def one_request(port: int, model: str, new_tokens: int, seed: int) -> tuple[float, float, int]:
    """(latency s, time to first token s, completion tokens) of one streamed completion."""
    body = json.dumps({"model": model, "prompt": PROMPT, "max_tokens": new_tokens, "temperature": 1.0,
                       "seed": seed, "stream": True, "stream_options": {"include_usage": True}})
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    connection.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    first, tokens = None, 0
    for line in response:
        if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk["choices"] and chunk["choices"][0]["text"] and first is None:
            first = time.perf_counter() - started
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
    connection.close()
    return time.perf_counter() - started, first or 0.0, tokens


def engine_request(engine: BatchingEngine, prompt_ids: list[int], new_tokens: int, seed: int) -> tuple[float, float, int]:
    """The same request given to the batching engine in this process: no HTTP, no JSON, no threads per request."""
    started = time.perf_counter()
    job = engine.submit(Job(prompt_ids, new_tokens, temperature=1.0, seed=seed))
    first = None
    for _ in engine.tokens(job):
        first = first or time.perf_counter() - started
    return time.perf_counter() - started, first or 0.0, job.written


def load(request: Callable[[int], tuple[float, float, int]], clients: int, requests_each: int) -> dict:
    """`clients` threads each sending `requests_each` requests one after another; request(seed) -> (latency
    s, time to first token s, completion tokens)."""
    results: list[tuple[float, float, int]] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        for r in range(requests_each):
            outcome = request(index * 1000 + r)
            with lock:
                results.append(outcome)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies = sorted(r[0] for r in results)
    return {"tokens/s": sum(r[2] for r in results) / wall, "p50": statistics.median(latencies),
            "p95": latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))],
            "ttft": statistics.median(r[1] for r in results), "requests": len(results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="a checkpoint folder (default: a random cpu-preset model)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--requests", type=int, default=2, help="requests each client sends (at least 8 in all)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("MINILM_THREADS", "1")),
                        help="torch threads of the server (default $MINILM_THREADS or 1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = args.checkpoint or random_checkpoint(os.path.join(scratch, "model"))
        model = os.path.basename(os.path.abspath(checkpoint))
        table, each = {}, {clients: max(args.requests, -(-8 // clients)) for clients in args.clients}
        for name, max_batch in (("one at a time", 1), ("batching", 64)):
            server, port = start_server(checkpoint, max_batch, args.threads)
            try:
                one_request(port, model, 4, seed=0)  # warm up
                for clients in args.clients:
                    ask = functools.partial(one_request, port, model, args.new_tokens)
                    table[name, clients] = load(ask, clients, each[clients])
            finally:
                server.terminate()
                server.wait(timeout=30)
        set_threads(args.threads)  # the engine alone runs here, once the servers have stopped
        loaded = load_checkpoint(checkpoint, device="cpu")
        engine = BatchingEngine(loaded.model, BatchingConfig(max_batch=64, max_waiting=256))
        prompt_ids = document_prompt(loaded.tokenizer, PROMPT)
        for clients in args.clients:
            ask = functools.partial(engine_request, engine, prompt_ids, args.new_tokens)
            table[ENGINE, clients] = load(ask, clients, each[clients])
        engine.close()
    print(f"\n{args.new_tokens} new tokens per request, streamed /v1/completions on 127.0.0.1; server with "
          f"{args.threads} torch thread(s); {os.cpu_count()} CPU cores ({cpu_name()}); torch {torch.__version__}\n")
    print("| clients | server | requests | tokens/s | p50 latency s | p95 latency s | p50 first token s | throughput vs one at a time |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for clients in args.clients:
        for name in ("one at a time", "batching", ENGINE):
            row = table[name, clients]
            ratio = row["tokens/s"] / table["one at a time", clients]["tokens/s"]
            print(f"| {clients} | {name} | {row['requests']} | {row['tokens/s']:.0f} | {row['p50']:.3f} | "
                  f"{row['p95']:.3f} | {row['ttft']:.3f} | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
