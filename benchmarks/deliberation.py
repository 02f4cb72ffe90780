"""The engine under load: parallel rounds, live latency, many sessions at once.

    python benchmarks/deliberation.py [--latency-seconds 4] [--sessions 50]

Everything goes through the public engine API (``Forge``) on a fresh log in a temp
folder; the last line of output is one JSON object (fields in the README).

- parallelism: a draft round of 5 participants whose answers take L = 1 s each
  (a paced provider: 50 deltas evenly over 1 s). Round wall time / L, beside the same
  five contributions run one participant at a time (the baseline, about 5).
- live latency: 5 participants x 50 deltas/s for a few seconds; for every delta, the
  time from the provider handing it to its participant to a subscriber of the log
  receiving the committed ContentDelta (so it includes the batching writer's commit).
  Then the same end to end over the server: provider -> a WebSocket client in another
  process (uvicorn in this one), p50/p99.
- load: 50 sessions x 4 mock participants with no delay, all deliberating at once
  (max_iterations=2): durable deltas/s over the whole run, CPU seconds per 1,000 deltas,
  peak RSS and the most threads alive at any moment.
- tool calls: one participant whose draft calls the ``calculate`` tool 60 times (one call per
  reply, natively), against the same draft with no call; the difference per call, less the
  tool's own time through ``Toolbox.call`` directly (the baseline), is what the engine and the
  log add per call: the two messages to the session, ToolCalled + ToolResult appended, and a
  turn of the conversation.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forge_actors.core.events import ContentDelta  # noqa: E402
from forge_actors.engine import Forge  # noqa: E402
from forge_actors.providers import LlmRequest, StreamChunk, Usage, collect, register_provider  # noqa: E402
from forge_actors.providers.base import ToolCall  # noqa: E402
from forge_actors.surfaces.server.runner import ServerThread  # noqa: E402
from forge_actors.tools import Toolbox, ToolContext  # noqa: E402

#: (participant model, delta index) -> perf_counter when the provider handed the delta over.
HANDED_OVER: dict[tuple[str, int], float] = {}


class PacedProvider:
    """``paced:NAME?deltas=50&seconds=1``: deltas evenly spread over ``seconds``; abortable."""

    name = "paced"

    def __init__(self, model: str, *, deltas: int = 50, seconds: float = 1.0, **_ignored: object) -> None:
        self.model = model
        self.deltas = deltas
        self.seconds = seconds
        self._aborted = threading.Event()

    def stream(self, request: LlmRequest):
        self._aborted.clear()
        return self._chunks()

    def _chunks(self):
        start = time.perf_counter()
        for index in range(self.deltas):
            remaining = start + (index + 1) * self.seconds / self.deltas - time.perf_counter()
            if remaining > 0 and self._aborted.wait(remaining):
                return
            HANDED_OVER[(self.model, index)] = time.perf_counter()
            yield StreamChunk(f"w{index} ")
        yield StreamChunk("", True, "stop", Usage(10, self.deltas))

    def complete(self, request: LlmRequest):
        return collect(self.stream(request), self.model)

    def abort(self) -> None:
        self._aborted.set()

    def close(self) -> None:
        pass


register_provider("paced", PacedProvider, {"deltas": int, "seconds": float})


class ToolCallingProvider:
    """``toolcaller:NAME?calls=60``: a draft that calls ``calculate`` once per reply, ``calls`` times."""

    name = "toolcaller"
    supports_json = False
    supports_tools = True

    def __init__(self, model: str, *, calls: int = 60, **_ignored: object) -> None:
        self.model = model
        self.calls = calls

    def stream(self, request: LlmRequest):
        made = sum(len(m.tool_calls) for m in request.messages if m.role == "assistant")
        if made < self.calls and request.tools:
            yield StreamChunk(tool_call=ToolCall(f"c{made}", "calculate", {"expression": f"{made} * 7 + 1"}))
            yield StreamChunk("", True, "tool_calls", Usage(10, 1))
            return
        yield StreamChunk(f"the answer after {made} calls")
        yield StreamChunk("", True, "stop", Usage(10, 5))

    def complete(self, request: LlmRequest):
        return collect(self.stream(request), self.model)

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


register_provider("toolcaller", ToolCallingProvider, {"calls": int})
TOOL_CALLS = 60
NAMES = ("alice", "bob", "carol", "dave", "erin")


def bench_parallel(folder: str, latency_s: float) -> tuple[float, float]:
    with Forge(f"{folder}/parallel.db") as forge:
        five = forge.create_session("Plan a garden", [f"paced:{n}?deltas=50&seconds={latency_s}" for n in NAMES])
        start = time.perf_counter()
        forge.run_round(five, "draft")
        parallel = time.perf_counter() - start
        sequential = 0.0
        for name in NAMES:  # the same five contributions, one participant at a time
            alone = forge.create_session("Plan a garden", [f"paced:{name}?deltas=50&seconds={latency_s}"])
            start = time.perf_counter()
            forge.run_round(alone, "draft")
            sequential += time.perf_counter() - start
    return parallel / latency_s, sequential / latency_s


def bench_latency(folder: str, seconds: float) -> list[float]:
    HANDED_OVER.clear()
    deltas = int(50 * seconds)
    received: list[tuple[str, int, float]] = []
    with Forge(f"{folder}/latency.db") as forge:
        session_id = forge.create_session(
            "Plan a garden", [f"paced:{n}-lat?deltas={deltas}&seconds={seconds}" for n in NAMES]
        )
        live = forge.subscribe(session_id)

        def watch() -> None:
            for recorded in live:
                if isinstance(recorded.event, ContentDelta):
                    received.append((recorded.event.participant, int(recorded.event.text[1:]), time.perf_counter()))

        watcher = threading.Thread(target=watch)
        watcher.start()
        forge.run_round(session_id, "draft")
        time.sleep(0.1)
        live.close()
        watcher.join()
    return [(at - HANDED_OVER[(who, index)]) * 1000 for who, index, at in received]


WS_CLIENT = textwrap.dedent('''
    import json, sys, time
    from websockets.sync.client import connect
    address, expected = sys.argv[1], int(sys.argv[2])
    received = []
    with connect(address, max_queue=None, open_timeout=30) as socket:
        print("ready", flush=True)
        while len(received) < expected:
            event = json.loads(socket.recv(timeout=60))
            if event["type"] == "ContentDelta":
                # perf_counter is CLOCK_MONOTONIC: one clock for every process of the machine
                received.append((event["participant"], int(event["text"][1:]), time.perf_counter()))
    print(json.dumps(received), flush=True)
''')


def bench_ws_latency(folder: str, seconds: float) -> list[float]:
    """Provider delta -> WebSocket client (in another process), through the log and the server."""
    HANDED_OVER.clear()
    deltas = int(50 * seconds)
    with Forge(f"{folder}/ws-latency.db") as forge, ServerThread(forge) as server:
        session_id = forge.create_session(
            "Plan a garden", [f"paced:{n}-ws?deltas={deltas}&seconds={seconds}" for n in NAMES]
        )
        address = f"{server.url}/api/v1/forge/sessions/{session_id}/stream?from=0".replace("http://", "ws://")
        client = subprocess.Popen([sys.executable, "-c", WS_CLIENT, address, str(deltas * len(NAMES))],
                                  stdout=subprocess.PIPE, text=True)
        assert client.stdout is not None and client.stdout.readline().strip() == "ready"
        time.sleep(0.2)  # the server has subscribed it
        forge.run_round(session_id, "draft")
        received = json.loads(client.stdout.readline())
        client.wait()
    return [(at - HANDED_OVER[(who, index)]) * 1000 for who, index, at in received]


def create_load_sessions(forge: Forge, sessions: int, first: int = 0) -> list[str]:
    """The load's sessions ``first .. first + sessions - 1``: 4 mock participants each, max_iterations=2.
    (benchmarks/_load_coordinator.py makes a share of them in each coordinator process.)"""
    return [forge.create_session(f"Design service {i}", [f"mock:{n}" for n in NAMES[:4]], seed=i, max_iterations=2)
            for i in range(first, first + sessions)]


def drive_load(forge: Forge, ids: list[str]) -> None:
    """Deliberate every session at once, until each has finished."""
    followers = [forge.deliberate(session_id) for session_id in ids]  # all start now
    for follower in followers:
        for _ in follower:
            pass


def count_load(forge: Forge, ids: list[str]) -> tuple[int, list[str]]:
    """(durable ContentDelta events of the sessions, their distinct final statuses)."""
    deltas = sum(1 for session_id in ids for e in forge.events(session_id) if isinstance(e, ContentDelta))
    outcomes = {forge.state(session_id).status for session_id in ids}
    return deltas, sorted(outcomes)


def bench_load(folder: str, sessions: int) -> dict[str, float]:
    peak_threads = threading.active_count()
    sampling = True

    def sample() -> None:
        nonlocal peak_threads
        while sampling:
            peak_threads = max(peak_threads, threading.active_count())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    with Forge(f"{folder}/load.db") as forge:
        ids = create_load_sessions(forge, sessions)
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        drive_load(forge, ids)
        wall = time.perf_counter() - start
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        deltas, outcomes = count_load(forge, ids)
    sampling = False
    sampler.join()
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {
        "load_sessions": sessions,
        "load_deltas": deltas,
        "load_wall_s": round(wall, 2),
        "load_deltas_per_s": round(deltas / wall),
        "cpu_s_per_1k_deltas": round(cpu / deltas * 1000, 4),
        "threads_peak": peak_threads - 1,  # not counting the sampler itself
        "load_outcomes": outcomes,
    }


def bench_tool_calls(folder: str, repeats: int = 5) -> dict[str, float]:
    """Per tool call: the engine's time (the draft with 60 calls less the draft with none, / 60), the
    tool's own time called directly, and the difference, which is the engine's and the log's part."""
    def draft_seconds(forge: Forge, calls: int) -> float:
        session_id = forge.create_session("Count", [f"toolcaller:t?calls={calls}&tools=calculate"],
                                          max_tool_calls=TOOL_CALLS, max_tool_seconds=600)
        start = time.perf_counter()
        forge.run_round(session_id, "draft")
        return time.perf_counter() - start

    with Forge(f"{folder}/tools.db") as forge:
        draft_seconds(forge, 2)  # warm up: imports, the first actor threads
        with_calls = statistics.median(draft_seconds(forge, TOOL_CALLS) for _ in range(repeats))
        without = statistics.median(draft_seconds(forge, 0) for _ in range(repeats))
    toolbox = Toolbox("calculate", ToolContext())
    start = time.perf_counter()
    for index in range(TOOL_CALLS * repeats):
        toolbox.call("calculate", {"expression": f"{index} * 7 + 1"})
    direct_ms = (time.perf_counter() - start) * 1000 / (TOOL_CALLS * repeats)
    engine_ms = (with_calls - without) * 1000 / TOOL_CALLS
    return {"tool_call_engine_ms": round(engine_ms, 3), "tool_call_direct_ms": round(direct_ms, 3),
            "tool_call_overhead_ms": round(engine_ms - direct_ms, 3)}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-seconds", type=float, default=4.0)
    parser.add_argument("--sessions", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="forge-bench-") as folder:
        parallel, sequential = bench_parallel(folder, 1.0)
        latencies = bench_latency(folder, args.latency_seconds)
        ws_latencies = bench_ws_latency(folder, args.latency_seconds)
        load = bench_load(folder, args.sessions)
        tools = bench_tool_calls(folder)
    result = {
        "parallel_wall_over_L": round(parallel, 3),
        "sequential_wall_over_L": round(sequential, 3),
        "latency_samples": len(latencies),
        "latency_p50_ms": round(statistics.median(latencies), 2),
        "latency_p99_ms": round(percentile(latencies, 0.99), 2),
        "latency_max_ms": round(max(latencies), 2),
        "ws_latency_samples": len(ws_latencies),
        "ws_latency_p50_ms": round(statistics.median(ws_latencies), 2),
        "ws_latency_p99_ms": round(percentile(ws_latencies, 0.99), 2),
        "ws_latency_max_ms": round(max(ws_latencies), 2),
        **load,
        **tools,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(f"{'round of 5 in parallel, wall / L':<44}{result['parallel_wall_over_L']:>10}  (target <= 1.05)")
    print(f"{'the same 5 one at a time, wall / L':<44}{result['sequential_wall_over_L']:>10}  (baseline)")
    print(f"{'live latency p50 / p99 / max (ms)':<44}{result['latency_p50_ms']:>10} / {result['latency_p99_ms']} / "
          f"{result['latency_max_ms']}  ({result['latency_samples']} deltas; target p99 <= 25)")
    print(f"{'provider -> WebSocket client p50 / p99 / max':<44}{result['ws_latency_p50_ms']:>10} / "
          f"{result['ws_latency_p99_ms']} / {result['ws_latency_max_ms']}  ({result['ws_latency_samples']} deltas)")
    print(f"{'load: sessions x 4 participants':<44}{result['load_sessions']:>10}  "
          f"({result['load_deltas']} deltas in {result['load_wall_s']} s, outcomes {result['load_outcomes']})")
    print(f"{'load: durable deltas/s':<44}{result['load_deltas_per_s']:>10}")
    print(f"{'load: CPU s per 1,000 deltas':<44}{result['cpu_s_per_1k_deltas']:>10}")
    print(f"{'threads at peak':<44}{result['threads_peak']:>10}")
    print(f"{'tool call in a draft, per call (ms)':<44}{result['tool_call_engine_ms']:>10}  "
          f"(the tool alone: {result['tool_call_direct_ms']} ms; engine + log add "
          f"{result['tool_call_overhead_ms']} ms per call)")
    print(f"{'peak RSS (MB)':<44}{result['peak_rss_mb']:>10}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
