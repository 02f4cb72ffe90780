"""Streaming throughput: our providers against the official SDKs and bare httpx loops.

    python benchmarks/providers.py [--deltas 20000] [--trials 9]

A loopback server (127.0.0.1, ephemeral port, its own process) writes a pre-rendered
stream of ``--deltas`` text deltas in 64 KiB chunks, so the client is the bottleneck. Each
contender consumes the whole stream; we report deltas per second (median of the
interleaved trials). Two comparisons:

- the decode alone: our provider built once, before timing, and reused, against a bare
  httpx ``iter_lines`` + msgspec loop over the same wire doing the same parsing (the
  ``data:`` lines decoded into the fields that carry the text, the deltas counted), its
  client reused too. One per wire (OpenAI, Anthropic).
- end to end, client construction included: build, stream, close, for our providers and
  for the official SDKs (``pip install -e '.[bench]'``).

The last line of output is one JSON object.
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


def ours_built(make: Callable[[], object]) -> int:
    """End to end: the provider built (its client with it), used once, closed."""
    provider = make()
    try:
        return ours(provider)
    finally:
        provider.close()  # type: ignore[attr-defined]


def sdk_anthropic(make: Callable[[], object]) -> int:
    with make() as client:  # type: ignore[attr-defined]
        stream = client.messages.create(model="claude-bench", max_tokens=100_000, stream=True,
                                        messages=[{"role": "user", "content": "go"}])
        return sum(1 for event in stream if event.type == "content_block_delta")


def sdk_openai(make: Callable[[], object]) -> int:
    with make() as client:  # type: ignore[attr-defined]
        stream = client.chat.completions.create(model="gpt-bench", stream=True,
                                                messages=[{"role": "user", "content": "go"}])
        return sum(1 for chunk in stream if chunk.choices and chunk.choices[0].delta.content)


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = []


class _TextDelta(msgspec.Struct):
    type: str = ""
    text: str = ""


class _AnthropicEvent(msgspec.Struct):
    type: str = ""
    delta: _TextDelta | None = None


def bare_openai(client: httpx.Client, url: str) -> int:
    decode = msgspec.json.Decoder(_Chunk).decode
    count = 0
    with client.stream("POST", url, json={"stream": True}) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                for choice in decode(line[6:]).choices:
                    if choice.delta is not None and choice.delta.content:
                        count += 1
    return count


def bare_anthropic(client: httpx.Client, url: str) -> int:
    decode = msgspec.json.Decoder(_AnthropicEvent).decode
    count = 0
    with client.stream("POST", url, json={"stream": True}) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                event = decode(line[6:])
                if event.type == "content_block_delta" and event.delta is not None and event.delta.text:
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
    parser.add_argument("--trials", type=int, default=9)
    args = parser.parse_args()
    n = args.deltas
    server = Server({"/v1/messages": anthropic_wire(n), "/v1/chat/completions": openai_wire(n)})

    def make_anthropic() -> AnthropicProvider:
        return AnthropicProvider("claude-bench", api_key="bench-key", base_url=server.url, max_retries=0)

    def make_openai() -> OpenAIProvider:
        return OpenAIProvider("gpt-bench", base_url=server.url + "/v1", max_retries=0)

    reused_anthropic, reused_openai = make_anthropic(), make_openai()
    bare_client = httpx.Client()
    contenders: dict[str, Callable[[], int]] = {
        "ours_anthropic": lambda: ours(reused_anthropic),
        "bare_anthropic": lambda: bare_anthropic(bare_client, server.url + "/v1/messages"),
        "ours_openai": lambda: ours(reused_openai),
        "bare_openai": lambda: bare_openai(bare_client, server.url + "/v1/chat/completions"),
        "e2e_ours_anthropic": lambda: ours_built(make_anthropic),
        "e2e_ours_openai": lambda: ours_built(make_openai),
    }
    try:
        import anthropic
        import openai

        contenders["e2e_sdk_anthropic"] = lambda: sdk_anthropic(
            lambda: anthropic.Anthropic(api_key="bench-key", base_url=server.url, max_retries=0))
        contenders["e2e_sdk_openai"] = lambda: sdk_openai(
            lambda: openai.OpenAI(api_key="bench-key", base_url=server.url + "/v1", max_retries=0))
        versions = f"anthropic {anthropic.__version__}, openai {openai.__version__}"
    except ImportError:
        versions = "official SDKs not installed (pip install -e '.[bench]'): their columns are skipped"
    print(f"{n:,} deltas per stream, {args.trials} interleaved trials, medians reported; {versions}")

    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for run in contenders.values():  # warm-up: imports, connections, decoders, the SSL context
        timed(run, n)
    for _ in range(args.trials):
        for name, run in contenders.items():
            rates[name].append(timed(run, n))
    server.close()

    dps = {name: statistics.median(values) for name, values in rates.items()}

    def ratio(a: str, b: str, digits: int = 2) -> float | None:
        return round(dps[a] / dps[b], digits) if a in dps and b in dps else None

    result: dict[str, float | None] = {"deltas": n, **{f"{name}_dps": round(value) for name, value in dps.items()}}
    result["decode_anthropic_vs_bare"] = ratio("ours_anthropic", "bare_anthropic", 3)
    result["decode_openai_vs_bare"] = ratio("ours_openai", "bare_openai", 3)
    result["e2e_vs_sdk_anthropic"] = ratio("e2e_ours_anthropic", "e2e_sdk_anthropic")
    result["e2e_vs_sdk_openai"] = ratio("e2e_ours_openai", "e2e_sdk_openai")
    print()
    for name in contenders:
        spread = f"{min(rates[name]):>11,.0f} - {max(rates[name]):,.0f}"
        print(f"{name:<20}{dps[name]:>12,.0f} deltas/s   (trials {spread})")
    print(f"\ndecode alone, ours / bare loop on the same wire: anthropic {result['decode_anthropic_vs_bare']}, "
          f"openai {result['decode_openai_vs_bare']}   (target >= 0.85)")
    print(f"end to end, client built: ours / SDK anthropic {result['e2e_vs_sdk_anthropic']}x (target >= 10), "
          f"openai {result['e2e_vs_sdk_openai']}x (target >= 30)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
