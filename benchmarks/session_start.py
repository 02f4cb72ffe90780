"""How fast sessions start on real HTTP providers: one, then fifty at once.

    python benchmarks/session_start.py [--sessions 50] [--repeats 30]

A small OpenAI-compatible server (127.0.0.1, its own process) streams a canned reply to
every request, a delta every 20 ms (50 a second, as a model streams), and notes when each session's first request came
in. Everything goes through ``Forge`` on a fresh log; the baseline, measured in the same
run, is the same with offline mock participants (no HTTP at all).

- ``create_session`` with three OpenAI-compatible participants (the loopback base URL),
  one after another: median and 90th percentile, beside three mocks.
- ``start`` of such a session (its actors and providers built, the first round begun).
- ``--sessions`` sessions created at once (``create_session(start=True)`` from as many
  threads, released together): how far apart their first rounds start — the spread of
  their ``RoundStarted`` events, of their first streamed delta in the log, and (loopback
  only) of their first request reaching the server.

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forge_actors.core.events import ContentDelta, RoundStarted  # noqa: E402
from forge_actors.engine import Forge  # noqa: E402

NAMES = ("alice", "bob", "carol")
REPLY_WORDS = ("A small service with one queue, one worker pool and a retry budget; "
               "measure before adding caches. ").split(" ")
#: How long the benchmark waits for every session's first delta before calling it a failure.
WAIT_SECONDS = 60.0


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _canned_reply() -> list[bytes]:
    """The reply's HTTP chunks, rendered once: one SSE event each, then the end."""
    events = [{"choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]} for word in REPLY_WORDS]
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 10, "completion_tokens": len(REPLY_WORDS)}})
    chunks = [_chunked(b"data: " + json.dumps(event).encode() + b"\n\n") for event in events]
    return [*chunks, _chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n"]


async def _serve_async(ready, delta_gap: float) -> None:
    """One event loop serves every stream (a thread per stream would take more CPU than the engine measured)."""
    arrivals: dict[int, float] = {}  # session number -> time.monotonic() of its first request
    reply = _canned_reply()
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: one request after another on this connection
                request_head = await reader.readuntil(b"\r\n\r\n")
                now = time.monotonic()
                length = re.search(rb"(?i)content-length:\s*(\d+)", request_head)
                body = await reader.readexactly(int(length.group(1))) if length else b""
                if request_head.startswith(b"GET /arrivals"):
                    answer = json.dumps(arrivals).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\n\r\n%s" % (len(answer), answer))
                    continue
                found = re.search(rb"Session (\d+) of the start benchmark", body)
                if found:
                    arrivals.setdefault(int(found.group(1)), now)
                writer.write(head)
                for chunk in reply:
                    writer.write(chunk)
                    await writer.drain()
                    await asyncio.sleep(delta_gap)
        except (OSError, asyncio.IncompleteReadError):  # the engine closed the connection (or aborted the stream)
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)  # 150 streams connect at once
    ready.put(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


def _serve(ready, delta_gap: float) -> None:
    asyncio.run(_serve_async(ready, delta_gap))


class CannedServer:
    """The OpenAI-compatible server, in a process of its own (it takes no GIL time from the engine)."""

    def __init__(self, delta_gap: float = 0.02) -> None:
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Queue()
        self.process = ctx.Process(target=_serve, args=(ready, delta_gap), daemon=True)
        self.process.start()
        self.url = f"http://127.0.0.1:{ready.get(timeout=60)}"

    def arrivals(self) -> dict[int, float]:
        return {int(k): v for k, v in httpx.get(self.url + "/arrivals", timeout=10).json().items()}

    def close(self) -> None:
        self.process.terminate()
        self.process.join(10)


def loopback_specs(url: str) -> list[str]:
    return [f"openai:{name}?base_url={url}/v1&replies=text" for name in NAMES]


def mock_specs() -> list[str]:
    return [f"mock:{name}?word_delay=0.02&replies=text" for name in NAMES]  # paced as the server


def goal(number: int) -> str:
    return f"Session {number} of the start benchmark: design a small job queue service."


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def bench_create(folder: str, url: str, repeats: int) -> dict[str, float]:
    """create_session (not started), one after another, loopback and mocks interleaved; then start()."""
    times: dict[str, list[float]] = {"loopback": [], "mock": []}
    starts: dict[str, list[float]] = {"loopback": [], "mock": []}
    with Forge(f"{folder}/create.db") as forge:
        for specs in (loopback_specs(url), mock_specs()):  # warm-up
            forge.create_session(goal(-1), specs)
        for i in range(repeats):
            for kind, specs in (("loopback", loopback_specs(url)), ("mock", mock_specs())):
                began = time.perf_counter()
                session_id = forge.create_session(goal(-1), specs, max_iterations=1)
                times[kind].append(time.perf_counter() - began)
                if i < 5:  # a few starts: each leaves a session deliberating until the engine closes
                    began = time.perf_counter()
                    forge.start(session_id)
                    starts[kind].append(time.perf_counter() - began)
    result: dict[str, float] = {}
    for kind in times:
        ordered = sorted(times[kind])
        result[f"create_{kind}_ms_p50"] = ms(statistics.median(ordered))
        result[f"create_{kind}_ms_p90"] = ms(ordered[int(len(ordered) * 0.9) - 1])
        result[f"start_{kind}_ms_p50"] = ms(statistics.median(starts[kind]))
    result["create_loopback_vs_mock"] = round(result["create_loopback_ms_p50"] / result["create_mock_ms_p50"], 2)
    return result


def first_times(forge: Forge, session_id: str) -> tuple[float | None, float | None]:
    """(RoundStarted, first ContentDelta) of the session as recorded in the log, seconds since the epoch."""
    round_started = first_delta = None
    for record in forge.records(session_id):
        if round_started is None and isinstance(record.event, RoundStarted):
            round_started = record.recorded_at / 1e9
        if isinstance(record.event, ContentDelta):
            first_delta = record.recorded_at / 1e9
            break
    return round_started, first_delta


def bench_burst(folder: str, kind: str, specs: list[str], sessions: int,
                server: CannedServer | None) -> dict[str, float]:
    """``sessions`` create_session(start=True) released together; how far apart their first rounds start."""
    barrier = threading.Barrier(sessions + 1)
    ids: dict[int, str] = {}
    calls: list[float] = []
    errors: list[BaseException] = []

    with Forge(f"{folder}/burst-{kind}.db") as forge:
        def create(number: int) -> None:
            barrier.wait()
            began = time.perf_counter()
            try:
                ids[number] = forge.create_session(goal(number), specs, start=True, max_iterations=1)
            except BaseException as exc:  # reported below; the benchmark fails on it
                errors.append(exc)
            calls.append(time.perf_counter() - began)

        threads = [threading.Thread(target=create, args=(n,)) for n in range(sessions)]
        for thread in threads:
            thread.start()
        release = time.time()
        barrier.wait()
        for thread in threads:
            thread.join()
        if errors:
            raise SystemExit(f"{kind}: {len(errors)} create_session calls failed, the first: {errors[0]!r}")
        deadline = time.monotonic() + WAIT_SECONDS
        firsts: dict[int, tuple[float | None, float | None]] = {}
        while len(firsts) < sessions and time.monotonic() < deadline:
            for number, session_id in ids.items():
                if number not in firsts:
                    seen = first_times(forge, session_id)
                    if seen[1] is not None:
                        firsts[number] = seen
            time.sleep(0.05)
        if len(firsts) < sessions:
            raise SystemExit(f"{kind}: only {len(firsts)} of {sessions} sessions streamed within {WAIT_SECONDS:g} s")
        arrivals = server.arrivals() if server is not None else {}
    rounds = [started for started, _ in firsts.values() if started is not None]
    deltas = [delta for _, delta in firsts.values() if delta is not None]
    result = {
        f"burst_{kind}_create_ms_max": ms(max(calls)),
        f"burst_{kind}_round_started_spread_s": round(max(rounds) - min(rounds), 3),
        f"burst_{kind}_first_delta_spread_s": round(max(deltas) - min(deltas), 3),
        f"burst_{kind}_last_first_delta_after_s": round(max(deltas) - release, 3),
    }
    if server is not None:
        firsts_in = [arrivals[n] for n in range(sessions) if n in arrivals]
        result[f"burst_{kind}_first_request_spread_s"] = round(max(firsts_in) - min(firsts_in), 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    server = CannedServer()
    try:
        with tempfile.TemporaryDirectory() as folder:
            result: dict[str, float] = {"sessions": args.sessions}
            result.update(bench_create(folder, server.url, args.repeats))
            result.update(bench_burst(folder, "mock", mock_specs(), args.sessions, None))
            result.update(bench_burst(folder, "loopback", loopback_specs(server.url), args.sessions, server))
    finally:
        server.close()
    result["burst_spread_loopback_vs_mock"] = round(
        result["burst_loopback_first_delta_spread_s"] / max(result["burst_mock_first_delta_spread_s"], 1e-3), 2)

    print(f"create_session, 3 participants, one after another (median / p90; {args.repeats} each):")
    print(f"  OpenAI-compatible on loopback  {result['create_loopback_ms_p50']:>8} ms / {result['create_loopback_ms_p90']} ms"
          f"   (target <= 5 ms; {result['create_loopback_vs_mock']}x the mocks)")
    print(f"  mocks (baseline)               {result['create_mock_ms_p50']:>8} ms / {result['create_mock_ms_p90']} ms")
    print(f"start() of such a session: loopback {result['start_loopback_ms_p50']} ms, mocks {result['start_mock_ms_p50']} ms")
    print(f"\n{args.sessions} sessions created at once (create_session(start=True) from {args.sessions} threads):")
    for kind in ("loopback", "mock"):
        line = (f"  {kind:<9} first rounds started within {result[f'burst_{kind}_round_started_spread_s']} s, "
                f"first deltas within {result[f'burst_{kind}_first_delta_spread_s']} s "
                f"(the last {result[f'burst_{kind}_last_first_delta_after_s']} s after the release)")
        if kind == "loopback":
            line += f", first requests within {result['burst_loopback_first_request_spread_s']} s"
        print(line + f"; slowest create_session {result[f'burst_{kind}_create_ms_max']} ms")
    print(f"  spread loopback / mocks: {result['burst_spread_loopback_vs_mock']}x   (target: within 1 s)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
