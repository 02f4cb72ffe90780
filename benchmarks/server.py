"""Live streaming to many clients: what 50 WebSocket + 50 SSE clients cost a deliberation.

    python benchmarks/server.py [--clients 50] [--trials 3] [--sequential 300] [--concurrent 100]
                                [--cold-events 25000] [--cold-readers 60] [--openai-trials 5] [--openai-only]

The server (uvicorn, in this process) serves one session of three mock participants
(word_delay 3 ms, max_iterations 2); the clients run in a separate process, so they do
not share this one's GIL. Each trial measures the deliberation's wall time with no
client, then with 2 x ``--clients`` clients following it live; the ratio is the cost
of the clients. Every client must receive every event exactly once, in order. The
last line of output is one JSON object.

Then what clients leave behind: ``--sequential`` stream clients one after the other, then
``--concurrent`` at once (half WebSocket, half SSE, each reading an ended session to its
end), with the server process's open file descriptors (``/proc/self/fd``) and RSS before
and after. And cold reads: ``--cold-readers`` concurrent ``GET /sessions/{id}`` of a
session of ``--cold-events`` events on a freshly opened engine (nothing cached), p50/p99.

And the OpenAI-compatible path (``/v1/chat/completions``, streamed) against the Python API on the
same deliberation: time to the first chunk, and the wall-time ratio (``--openai-only`` runs just
that, in well under a minute).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forge_actors.engine import Forge  # noqa: E402
from forge_actors.surfaces.server.runner import ServerThread  # noqa: E402

API = "/api/v1/forge"
PARTICIPANTS = [f"mock:{name}?word_delay=0.003" for name in ("alice", "bob", "carol")]

CLIENTS = textwrap.dedent('''
    import json, sys, threading, httpx
    from websockets.sync.client import connect
    base, session_id, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    api = base + "/api/v1/forge/sessions/" + session_id
    got = {}
    def ws(i):
        positions = []
        with connect(api.replace("http", "ws", 1) + "/stream?from=0", max_queue=None) as socket:
            while True:
                try:
                    positions.append(json.loads(socket.recv(timeout=120))["position"])
                except Exception:
                    break
        got["ws%d" % i] = positions
    def sse(i):
        positions = []
        with httpx.stream("GET", api + "/events", timeout=120) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    positions.append(event["position"])
                    if event["type"] == "SessionEnded":
                        break
        got["sse%d" % i] = positions
    threads = [threading.Thread(target=f, args=(i,)) for f in (ws, sse) for i in range(n)]
    for t in threads: t.start()
    print("ready", flush=True)
    for t in threads: t.join()
    print(json.dumps(got), flush=True)
''')


def run_session(server: ServerThread, forge: Forge, clients: int) -> dict:
    session_id = httpx.post(server.url + API + "/sessions",
                            json={"goal": "Design a TODO app API", "participants": PARTICIPANTS,
                                  "config": {"max_iterations": 2, "seed": 1}}).json()["session_id"]
    watchers = None
    if clients:
        watchers = subprocess.Popen([sys.executable, "-c", CLIENTS, server.url, session_id, str(clients)],
                                    stdout=subprocess.PIPE, text=True)
        assert watchers.stdout is not None and watchers.stdout.readline().strip() == "ready"
        time.sleep(1.0)  # every client connected
    start = time.perf_counter()
    httpx.post(f"{server.url}{API}/sessions/{session_id}/deliberate", json={})
    while not forge.state(session_id).ended:
        time.sleep(0.005)
    wall = time.perf_counter() - start
    result = {"wall_s": wall, "events": len(forge.events(session_id))}
    if watchers is not None:
        assert watchers.stdout is not None
        got = json.loads(watchers.stdout.readline())
        result["clients_done_s"] = time.perf_counter() - start
        watchers.wait()
        expected = [r.position for r in forge.events_page(session_id, 0, result["events"])]
        result["clients_exact"] = len(got) == 2 * clients and all(p == expected for p in got.values())
    return result


STREAMERS = textwrap.dedent('''
    import json, sys, threading, httpx
    from websockets.sync.client import connect
    base, session_id, sequential, concurrent = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    api = base + "/api/v1/forge/sessions/" + session_id
    def ws(counts):
        n = 0
        with connect(api.replace("http", "ws", 1) + "/stream?from=0", max_queue=None, open_timeout=60) as socket:
            while True:
                try:
                    json.loads(socket.recv(timeout=60)); n += 1
                except Exception:
                    break
        counts.append(n)
    def sse(counts):
        n = 0
        with httpx.stream("GET", api + "/events", timeout=60) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    n += 1
                    if json.loads(line[6:])["type"] == "SessionEnded":
                        break
        counts.append(n)
    counts = []
    for i in range(sequential):
        (ws if i % 2 else sse)(counts)
    threads = [threading.Thread(target=ws if i % 2 else sse, args=(counts,)) for i in range(concurrent)]
    for t in threads: t.start()
    for t in threads: t.join()
    print(json.dumps(counts), flush=True)
''')

COLD_READERS = textwrap.dedent('''
    import json, sys, threading, time, httpx
    base, session_id, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    times, statuses = [], []
    barrier = threading.Barrier(n)
    def read():
        with httpx.Client(timeout=300) as client:
            barrier.wait()
            start = time.perf_counter()
            statuses.append(client.get(base + "/api/v1/forge/sessions/" + session_id).status_code)
            times.append(time.perf_counter() - start)
    threads = [threading.Thread(target=read) for _ in range(n)]
    for t in threads: t.start()
    for t in threads: t.join()
    print(json.dumps({"times": times, "statuses": statuses}), flush=True)
''')


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _run_streamers(server: ServerThread, session_id: str, sequential: int, concurrent: int) -> list[int]:
    clients = subprocess.run([sys.executable, "-c", STREAMERS, server.url, session_id, str(sequential),
                              str(concurrent)], capture_output=True, text=True, timeout=1200)
    if clients.returncode != 0:
        print(clients.stderr[-2000:], file=sys.stderr)
        return []
    time.sleep(0.5)  # the server's side of the last connections winds down
    return json.loads(clients.stdout.strip().splitlines()[-1])


def stream_clients(folder: str, sequential: int, concurrent: int) -> dict:
    """File handles and RSS of the server before and after many stream clients came and went.

    Three readings: ``cold`` (after one request), ``warm`` (after a first burst of
    ``concurrent`` clients: the pool of read connections, worker threads and malloc arenas
    exist), ``after`` (after ``sequential`` more one by one, then ``concurrent`` at once).
    A leak shows as ``after`` growing past ``warm``."""
    forge = Forge(f"{folder}/streams.db")
    session_id = forge.create_session("Design a TODO app API", [p.replace("0.003", "0") for p in PARTICIPANTS],
                                      max_iterations=1, seed=1)
    events = sum(1 for _ in forge.deliberate(session_id))
    with ServerThread(forge) as server:
        httpx.get(f"{server.url}{API}/sessions/{session_id}")  # the first request's own setup is not a leak
        fds_cold, rss_cold = open_fds(), rss_mb()
        warmup = _run_streamers(server, session_id, 0, concurrent)
        fds_warm, rss_warm = open_fds(), rss_mb()
        start = time.perf_counter()
        counts = _run_streamers(server, session_id, sequential, concurrent)
        took = time.perf_counter() - start
        fds_after, rss_after = open_fds(), rss_mb()
    forge.close()
    return {"stream_clients": sequential + concurrent, "stream_clients_s": round(took, 2),
            "stream_clients_exact": len(counts) == sequential + concurrent and len(warmup) == concurrent
            and all(c == events for c in counts + warmup),
            "fds_cold": fds_cold, "fds_warm": fds_warm, "fds_after": fds_after,
            "rss_cold_mb": round(rss_cold, 1), "rss_warm_mb": round(rss_warm, 1), "rss_after_mb": round(rss_after, 1)}


def cold_reads(folder: str, events: int, readers: int) -> dict:
    """Concurrent first reads of a long session on an engine that has read nothing yet."""
    from eventstore import NewEvent
    from forge_actors.core.events import ContentDelta, encode_event

    path = f"{folder}/cold.db"
    forge = Forge(path)
    session_id = forge.create_session("Design a TODO app API", PARTICIPANTS, max_iterations=1)
    delta = NewEvent.from_bytes("ContentDelta", encode_event(
        ContentDelta(contribution_id="c1", participant="alice", round=1, attempt=1, text="word ")))
    for start in range(0, events - 1, 1000):
        forge._store.append(session_id, [delta] * min(1000, events - 1 - start))
    forge.close()
    forge = Forge(path)  # cold: nothing folded yet
    with ServerThread(forge) as server:
        done = subprocess.run([sys.executable, "-c", COLD_READERS, server.url, session_id, str(readers)],
                              capture_output=True, text=True, timeout=1200)
    forge.close()
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
        return {"cold_events": events, "cold_readers": readers, "cold_ok": False}
    got = json.loads(done.stdout.strip().splitlines()[-1])
    return {"cold_events": events, "cold_readers": readers, "cold_ok": all(s == 200 for s in got["statuses"]),
            "cold_p50_s": round(percentile(got["times"], 0.5), 3),
            "cold_p99_s": round(percentile(got["times"], 0.99), 3)}


OPENAI_COUNCIL = """
[forge.councils.bench]
participants = ["mock:alice?word_delay=0.003", "mock:bob?word_delay=0.003", "mock:carol?word_delay=0.003"]
settings = { max_iterations = 2, seed = 1 }
"""


def openai_overhead(folder: str, trials: int) -> dict:
    """The OpenAI-compatible path against the Python API, on the same deliberation (the council
    ``bench``): time to the first streamed chunk after the request, and wall time to ``[DONE]``
    vs ``create_session`` + ``deliberate`` to SessionEnded. The client (httpx) runs in this
    process, so it shares the server's GIL: a conservative figure."""
    from forge_actors.engine import load_config

    config_path = Path(folder) / "openai.toml"
    config_path.write_text(OPENAI_COUNCIL)
    forge = Forge(f"{folder}/openai.db", load_config(str(config_path), {}))
    council = forge.config.council("bench")
    body = {"model": "forge/bench", "stream": True, "messages": [{"role": "user", "content": "Plan the cache layer"}]}
    api_walls, http_walls, first_chunks = [], [], []
    with ServerThread(forge) as server, httpx.Client(timeout=120) as client:
        for trial in range(trials + 1):  # the first pair warms both paths up and is not counted
            started = time.perf_counter()
            session_id = forge.create_session("Plan the cache layer", list(council.participants),
                                              settings=council.settings)
            for _ in forge.deliberate(session_id):
                pass
            api_wall = time.perf_counter() - started
            first = None
            started = time.perf_counter()
            with client.stream("POST", f"{server.url}/v1/chat/completions", json=body) as response:
                for line in response.iter_lines():
                    if first is None and line.startswith("data: "):
                        first = time.perf_counter() - started
                    if line == "data: [DONE]":
                        break
            http_wall = time.perf_counter() - started
            if trial:
                api_walls.append(api_wall)
                http_walls.append(http_wall)
                first_chunks.append(first if first is not None else math.nan)
    forge.close()
    med = statistics.median
    return {"openai_first_chunk_ms": round(1000 * med(first_chunks), 1),
            "openai_wall_s": round(med(http_walls), 3), "python_api_wall_s": round(med(api_walls), 3),
            "openai_over_python_api": round(med(http_walls) / med(api_walls), 3)}


def _print_openai(result: dict) -> None:
    print(f"{'OpenAI-compatible stream: first chunk (ms)':<48}{result['openai_first_chunk_ms']:>10}")
    print(f"{'OpenAI-compatible / Python API, wall (s)':<48}{result['openai_wall_s']:>10} / "
          f"{result['python_api_wall_s']} = {result['openai_over_python_api']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="WebSocket clients, and as many SSE clients")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--sequential", type=int, default=300, help="stream clients one after the other")
    parser.add_argument("--concurrent", type=int, default=100, help="stream clients at once")
    parser.add_argument("--cold-events", type=int, default=25_000, help="events of the cold-read session")
    parser.add_argument("--cold-readers", type=int, default=60, help="concurrent cold GET /sessions/{id}")
    parser.add_argument("--openai-trials", type=int, default=5, help="deliberations per path (OpenAI vs Python API)")
    parser.add_argument("--openai-only", action="store_true", help="measure only the OpenAI-compatible path")
    args = parser.parse_args()
    if args.openai_only:
        with tempfile.TemporaryDirectory(prefix="forge-bench-") as folder:
            overhead = openai_overhead(folder, args.openai_trials)
        _print_openai(overhead)
        print(json.dumps(overhead))
        return
    alone, watched = [], []
    with tempfile.TemporaryDirectory(prefix="forge-bench-") as folder:
        forge = Forge(f"{folder}/server.db")
        with ServerThread(forge) as server:
            for _ in range(args.trials):
                alone.append(run_session(server, forge, 0))
                watched.append(run_session(server, forge, args.clients))
        forge.close()
        leaks = stream_clients(folder, args.sequential, args.concurrent)
        cold = cold_reads(folder, args.cold_events, args.cold_readers)
        overhead = openai_overhead(folder, args.openai_trials)
    med = statistics.median
    result = {
        "clients": 2 * args.clients,
        "events_per_session": watched[0]["events"],
        "wall_alone_s": round(med(r["wall_s"] for r in alone), 3),
        "wall_watched_s": round(med(r["wall_s"] for r in watched), 3),
        "watched_over_alone": round(med(r["wall_s"] for r in watched) / med(r["wall_s"] for r in alone), 2),
        "last_client_done_s": round(med(r["clients_done_s"] for r in watched), 3),
        "every_client_exact": all(r["clients_exact"] for r in watched),
        "events_delivered_per_s": round(2 * args.clients * watched[0]["events"]
                                        / med(r["clients_done_s"] for r in watched)),
        **leaks,
        **cold,
        **overhead,
    }
    print(f"{'deliberation alone, wall (s)':<48}{result['wall_alone_s']:>10}")
    print(f"{'with ' + str(result['clients']) + ' live clients (50% WS, 50% SSE), wall (s)':<48}{result['wall_watched_s']:>10}")
    print(f"{'ratio (the cost of the clients)':<48}{result['watched_over_alone']:>10}")
    print(f"{'last client done after (s)':<48}{result['last_client_done_s']:>10}")
    print(f"{'events delivered per second':<48}{result['events_delivered_per_s']:>10}")
    print(f"{'every client got every event once, in order':<48}{str(result['every_client_exact']):>10}")
    clients = f"{leaks['stream_clients']} stream clients"
    print(f"{clients + ' (s), every one exact':<48}{leaks['stream_clients_s']:>10} {leaks['stream_clients_exact']}")
    print(f"{'server file descriptors cold / warm / after':<48}{leaks['fds_cold']:>10} / {leaks['fds_warm']} / "
          f"{leaks['fds_after']}")
    print(f"{'server RSS cold / warm / after (MB)':<48}{leaks['rss_cold_mb']:>10} / {leaks['rss_warm_mb']} / "
          f"{leaks['rss_after_mb']}")
    reads = f"{cold['cold_readers']} cold reads of {cold['cold_events']} events"
    print(f"{reads + ', p50 / p99 (s)':<48}{cold.get('cold_p50_s', '-'):>10} / {cold.get('cold_p99_s', '-')}")
    _print_openai(overhead)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
