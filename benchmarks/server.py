"""Live streaming to many clients: what 50 WebSocket + 50 SSE clients cost a deliberation.

    python benchmarks/server.py [--clients 50] [--trials 3]

The server (uvicorn, in this process) serves one session of three mock participants
(word_delay 3 ms, max_rounds 2); the clients run in a separate process, so they do
not share this one's GIL. Each trial measures the deliberation's wall time with no
client, then with 2 x ``--clients`` clients following it live; the ratio is the cost
of the clients. Every client must receive every event exactly once, in order. The
last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
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
from forge_actors.server.runner import ServerThread  # noqa: E402

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
                                  "config": {"max_rounds": 2, "seed": 1}}).json()["session_id"]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="WebSocket clients, and as many SSE clients")
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    alone, watched = [], []
    with tempfile.TemporaryDirectory(prefix="forge-bench-") as folder:
        forge = Forge(f"{folder}/server.db")
        with ServerThread(forge) as server:
            for _ in range(args.trials):
                alone.append(run_session(server, forge, 0))
                watched.append(run_session(server, forge, args.clients))
        forge.close()
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
    }
    print(f"{'deliberation alone, wall (s)':<48}{result['wall_alone_s']:>10}")
    print(f"{'with ' + str(result['clients']) + ' live clients (50% WS, 50% SSE), wall (s)':<48}{result['wall_watched_s']:>10}")
    print(f"{'ratio (the cost of the clients)':<48}{result['watched_over_alone']:>10}")
    print(f"{'last client done after (s)':<48}{result['last_client_done_s']:>10}")
    print(f"{'events delivered per second':<48}{result['events_delivered_per_s']:>10}")
    print(f"{'every client got every event once, in order':<48}{str(result['every_client_exact']):>10}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
