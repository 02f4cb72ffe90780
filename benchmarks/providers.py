"""Streaming throughput: our providers against the official SDKs and a bare httpx loop.

    python benchmarks/providers.py [--deltas 20000] [--trials 3]

A loopback server (127.0.0.1, ephemeral port, its own process) writes a pre-rendered
stream of ``--deltas`` text deltas in 64 KiB chunks, so the client is the bottleneck. Each
contender consumes the whole stream; we report deltas per second (median of the
interleaved trials). The ceiling is a bare httpx ``iter_lines`` + msgspec loop over
the OpenAI wire that does nothing but count deltas. The last line of output is one
JSON object (see the README).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import msgspec  # noqa: E402

from forge_actors.providers import AnthropicProvider, LlmRequest, Message, OpenAIProvider  # noqa: E402

WORDS = "the quick brown fox jumps over the lazy dog ".split(" ")


def sse(event: str | None, data: str) -> str:
    return (f"event: {event}\n" if event else "") + f"data: {data}\n\n"


def anthropic_wire(n: int) -> bytes:
    parts = [sse("message_start", json.dumps({"type": "message_start", "message": {
        "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-bench", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 1}}})),
        sse("content_block_start", json.dumps({"type": "content_block_start", "index": 0,
                                               "content_block": {"type": "text", "text": ""}}))]
    for i in range(n):
        parts.append(sse("content_block_delta", json.dumps({"type": "content_block_delta", "index": 0,
                                                            "delta": {"type": "text_delta", "text": WORDS[i % 9] + " "}})))
    parts += [sse("content_block_stop", json.dumps({"type": "content_block_stop", "index": 0})),
              sse("message_delta", json.dumps({"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                               "stop_sequence": None}, "usage": {"output_tokens": n}})),
              sse("message_stop", json.dumps({"type": "message_stop"}))]
    return "".join(parts).encode()


def openai_wire(n: int) -> bytes:
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "gpt-bench"}
    parts = []
    for i in range(n):
        parts.append(sse(None, json.dumps({**head, "choices": [{"index": 0, "delta": {"content": WORDS[i % 9] + " "},
                                                                "finish_reason": None}]})))
    parts.append(sse(None, json.dumps({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})))
    parts.append(sse(None, json.dumps({**head, "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": n,
                                                                         "total_tokens": n + 10}})))
    parts.append(sse(None, "[DONE]"))
    return "".join(parts).encode()


def _serve(routes: dict[str, bytes], ready) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            body = routes[self.path]
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            for i in range(0, len(body), 65536):
                self.wfile.write(body[i : i + 65536])

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    ready.put(httpd.server_address[1])
    httpd.serve_forever()


class Server:
    """The loopback server, in a process of its own so it takes no GIL time from the clients measured."""

    def __init__(self, routes: dict[str, bytes]) -> None:
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Queue()
        self.process = ctx.Process(target=_serve, args=(routes, ready), daemon=True)
        self.process.start()
        self.url = f"http://127.0.0.1:{ready.get(timeout=60)}"

    def close(self) -> None:
        self.process.terminate()
        self.process.join(10)


REQUEST = LlmRequest(messages=(Message("user", "go"),), max_tokens=100_000)


def ours(provider) -> int:
    return sum(1 for chunk in provider.stream(REQUEST) if chunk.delta)


def sdk_anthropic(client) -> int:
    stream = client.messages.create(model="claude-bench", max_tokens=100_000, stream=True,
                                    messages=[{"role": "user", "content": "go"}])
    return sum(1 for event in stream if event.type == "content_block_delta")


def sdk_openai(client) -> int:
    stream = client.chat.completions.create(model="gpt-bench", stream=True, messages=[{"role": "user", "content": "go"}])
    return sum(1 for chunk in stream if chunk.choices and chunk.choices[0].delta.content)


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = []


def bare_loop(client: httpx.Client, url: str) -> int:
    decode = msgspec.json.Decoder(_Chunk).decode
    count = 0
    with client.stream("POST", url, json={"stream": True}) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                for choice in decode(line[6:]).choices:
                    if choice.delta is not None and choice.delta.content:
                        count += 1
    return count


def timed(run: Callable[[], int], expected: int) -> float:
    start = time.perf_counter()
    got = run()
    elapsed = time.perf_counter() - start
    if got != expected:
        raise SystemExit(f"a contender counted {got} deltas, expected {expected}")
    return got / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deltas", type=int, default=20_000)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    n = args.deltas
    server = Server({"/v1/messages": anthropic_wire(n), "/v1/chat/completions": openai_wire(n)})
    ours_anthropic = AnthropicProvider("claude-bench", api_key="bench-key", base_url=server.url, max_retries=0)
    ours_openai = OpenAIProvider("gpt-bench", base_url=server.url + "/v1", max_retries=0)
    bare_client = httpx.Client()
    contenders: dict[str, Callable[[], int]] = {
        "ours_anthropic": lambda: ours(ours_anthropic),
        "ours_openai": lambda: ours(ours_openai),
        "bare": lambda: bare_loop(bare_client, server.url + "/v1/chat/completions"),
    }
    try:
        import anthropic
        import openai

        sdk_a = anthropic.Anthropic(api_key="bench-key", base_url=server.url, max_retries=0)
        sdk_o = openai.OpenAI(api_key="bench-key", base_url=server.url + "/v1", max_retries=0)
        contenders["sdk_anthropic"] = lambda: sdk_anthropic(sdk_a)
        contenders["sdk_openai"] = lambda: sdk_openai(sdk_o)
        versions = f"anthropic {anthropic.__version__}, openai {openai.__version__}"
    except ImportError:
        versions = "official SDKs not installed (pip install -e '.[bench]'): their columns are skipped"
    print(f"{n:,} deltas per stream, {args.trials} interleaved trials, medians reported; {versions}")

    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for run in contenders.values():  # warm-up: imports, connections, decoders
        timed(run, n)
    for _ in range(args.trials):
        for name, run in contenders.items():
            rates[name].append(timed(run, n))
    server.close()

    dps = {name: statistics.median(values) for name, values in rates.items()}
    result: dict[str, float | None] = {
        "deltas": n,
        "ours_anthropic_dps": round(dps["ours_anthropic"]),
        "ours_openai_dps": round(dps["ours_openai"]),
        "sdk_anthropic_dps": round(dps["sdk_anthropic"]) if "sdk_anthropic" in dps else None,
        "sdk_openai_dps": round(dps["sdk_openai"]) if "sdk_openai" in dps else None,
        "bare_dps": round(dps["bare"]),
        "ours_vs_sdk_anthropic": round(dps["ours_anthropic"] / dps["sdk_anthropic"], 2) if "sdk_anthropic" in dps else None,
        "ours_vs_sdk_openai": round(dps["ours_openai"] / dps["sdk_openai"], 2) if "sdk_openai" in dps else None,
        "ours_vs_bare": round(min(dps["ours_anthropic"], dps["ours_openai"]) / dps["bare"], 3),
    }
    print()
    for name in ("ours_anthropic", "sdk_anthropic", "ours_openai", "sdk_openai", "bare"):
        if name in dps:
            print(f"{name:<18}{dps[name]:>12,.0f} deltas/s")
    print(f"\nours/sdk anthropic {result['ours_vs_sdk_anthropic']}x, ours/sdk openai {result['ours_vs_sdk_openai']}x, "
          f"ours/bare loop {result['ours_vs_bare']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
