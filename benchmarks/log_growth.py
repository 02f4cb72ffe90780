"""What one request may make the log grow by: log bytes per request byte, hostile requests included.

    python benchmarks/log_growth.py [--iterations 10]

A server (uvicorn, in this process, the default configuration: no key, so mock participants)
takes requests as an untrusted client would send them, each creating and running a session
to its end (``"deliberate": true``), and the log's growth is measured: the bytes of the events
the session stored (stream id, type and JSON data of each row) and the growth of the log's
files (database and WAL). The baseline is an ordinary request (a short goal, the server's
default participants); the others are the largest an untrusted client may send:

- the longest goal (20,000 characters) with 8 mock participants, at the operator's iteration limit;
- 8 participants with the longest names (100 characters) and personas;
- an over-long goal (the 250,000 characters that once grew a log by 252 MB): refused, 0 bytes;
- two of the operator's participants on a server that streams without end (a broken or hostile
  OpenAI-compatible server): each contribution stops at ``max_reply_chars``; and the same with the
  operator's ``max_session_bytes`` at 1 MB, where the session ends ``budget_spent``.

Each line gives the request's bytes, the log's growth, their ratio, the number of events, the
session's ``log_bytes`` as its fold counts them (what ``max_session_bytes`` bounds) and the wall
time; the ratio of each hostile request's growth to the baseline's comes last. The last line of
output is one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from loopback import LoopbackServer, Reply  # noqa: E402

from forge_actors.engine import TEXT_CAPS, Forge  # noqa: E402
from forge_actors.engine.config import parse_config  # noqa: E402
from forge_actors.surfaces.server.runner import ServerThread  # noqa: E402

API = "/api/v1/forge"


def stored_bytes(db: Path, session_id: str | None = None) -> tuple[int, int]:
    """(bytes, events) stored: of one session, or of the whole log."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        where, args = ("WHERE stream_id = ?", (session_id,)) if session_id else ("", ())
        row = conn.execute(f"SELECT coalesce(sum(length(stream_id) + length(type) + length(data)), 0), count(*) "
                           f"FROM events {where}", args).fetchone()
    return int(row[0]), int(row[1])


def file_bytes(db: Path) -> int:
    return sum(os.path.getsize(p) for p in (db, Path(f"{db}-wal")) if p.exists())


def run(server: ServerThread, db: Path, label: str, body: dict) -> dict:
    request = json.dumps(body).encode()
    files_before = file_bytes(db)
    started = time.perf_counter()
    response = httpx.post(server.url + API + "/sessions", content=request, timeout=600,
                          headers={"content-type": "application/json"})
    session_id = response.json().get("session_id") if response.status_code == 201 else None
    while session_id is not None:
        state = httpx.get(f"{server.url}{API}/sessions/{session_id}", timeout=60).json()
        if state["status"] not in ("created", "running"):
            break
        time.sleep(0.05)
    wall = time.perf_counter() - started
    stored, events = stored_bytes(db, session_id) if session_id else (0, 0)
    counted = server.forge.state(session_id).log_bytes if session_id else 0
    row = {"request": label, "status": response.status_code, "request_bytes": len(request), "log_bytes": stored,
           "file_growth": file_bytes(db) - files_before, "events": events, "counted_bytes": counted,
           "wall_s": round(wall, 2), "ratio": round(stored / len(request), 1),
           "outcome": state["status"] if session_id else response.json().get("error", "")[:60]}
    print(f"{label:<44} {row['status']:>4} {row['request_bytes']:>9,} B -> {row['log_bytes']:>12,} B "
          f"({row['ratio']:>7.1f}x) {events:>8,} events {counted:>11,} counted {wall:>6.1f} s  {row['outcome']}",
          flush=True)
    return row


def endless_stream() -> Reply:
    chunk = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "word "}}]}
    return Reply(parts=itertools.repeat(f"data: {json.dumps(chunk)}\n\n".encode()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=10, help="max_iterations of the hostile requests "
                                                                    "(the operator's limit by default)")
    args = parser.parse_args()
    os.environ.pop("ANTHROPIC_API_KEY", None)
    goal_cap, name_cap = TEXT_CAPS["goal"].chars, TEXT_CAPS["name"].chars
    mocks = [f"mock:m{i}?word_delay=0" for i in range(8)]
    named = [{"spec": f"mock:m{i}?word_delay=0", "name": f"{i}" + "n" * (name_cap - 1),
              "persona": {"name": "p" * name_cap, "tone": "t" * TEXT_CAPS["persona.tone"].chars}} for i in range(8)]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "forge.db"
        with Forge(str(db)) as forge, ServerThread(forge) as server:
            baseline = run(server, db, "baseline: short goal, the defaults", {
                "goal": "Design a TODO app API", "participants": [p.replace("m0", "alice") for p in mocks[:3]],
                "config": {"max_iterations": 1}, "deliberate": True})
            rows.append(baseline)
            rows.append(run(server, db, f"longest goal ({goal_cap:,} chars), 8 mocks", {
                "goal": "Design " + "x" * (goal_cap - 7), "participants": mocks,
                "config": {"max_iterations": args.iterations, "convergence_threshold": 1.0}, "deliberate": True}))
            rows.append(run(server, db, f"8 names of {name_cap} chars, with personas", {
                "goal": "Design a TODO app API", "participants": named,
                "config": {"max_iterations": args.iterations, "convergence_threshold": 1.0}, "deliberate": True}))
            rows.append(run(server, db, "a goal of 250,000 chars (refused)", {
                "goal": "x" * 250_000, "participants": mocks, "deliberate": True}))
        for label, budget in (("2 operator's participants, endless streams", {}),
                              ("the same, max_session_bytes = 1,000,000", {"max_session_bytes": 1_000_000})):
            with LoopbackServer(*(endless_stream() for _ in range(400))) as endless:
                config = parse_config({"forge": {**budget, "participants": [
                    {"spec": f"openai:gpt-x?base_url={endless.url}", "name": f"endless{i}"} for i in range(2)]}},
                    source="operator.toml")
                with Forge(str(db), config) as forge, ServerThread(forge) as server:
                    rows.append(run(server, db, label, {
                        "goal": "Design a TODO app API",
                        "config": {"max_iterations": args.iterations, "convergence_threshold": 1.0},
                        "deliberate": True}))
    print()
    for row in rows[1:]:
        print(f"{row['request']:<44} log growth {row['log_bytes'] / max(baseline['log_bytes'], 1):>7.1f}x the "
              f"baseline's; {row['ratio']:.1f} log bytes per request byte (baseline {baseline['ratio']:.1f})")
    worst = max(r["log_bytes"] / r["counted_bytes"] for r in rows if r["counted_bytes"])
    print(f"stored bytes (stream id, type, data) per byte the fold counts: at most {worst:.3f}; a session stops "
          f"at max_session_bytes (default 100,000,000) plus its last round")
    print(json.dumps({"log_growth": rows}))


if __name__ == "__main__":
    main()
