"""Event log throughput: our batching writer and fold against raw sqlite3 and `eventsourcing`.

    python benchmarks/eventstore.py [--events 100000] [--trials 3]

Every figure is measured in this run, on this machine, trials interleaved so that a
noisy neighbour hurts all contenders alike; the median trial is reported. The last
line of output is one JSON object (see the README for the fields).

- append: 100,000 ContentDelta events (~100 bytes of text each) handed one by one to
  a BatchingWriter, until flush() returns (all durable);
- raw: the same rows through one sqlite3 ``executemany`` in one transaction into a
  WAL file with the same schema: the practical ceiling for Python;
- eventsourcing: the same events through its SQLite application recorder, one
  ``insert_events`` call per event as they would arrive while streaming (and, for
  reference, in batches of 500);
- rebuild: read + decode + fold all events of the session into a SessionState.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventstore import BatchingWriter, EventStore, NewEvent  # noqa: E402
from forge_actors.core.events import (  # noqa: E402
    ContentDelta,
    ContributionCompleted,
    ParticipantInfo,
    PromptMessage,
    PromptSent,
    RoundStarted,
    SessionCreated,
    SessionSettings,
    TokenUsage,
    decode_event,
    encode_event,
    event_type,
)
from forge_actors.core.state import rebuild  # noqa: E402

PARTICIPANTS = ("alice", "bob", "carol", "dave", "erin")
WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly box jugs".split()


def session_events(n_deltas: int) -> list:
    """A draft round of five participants whose deltas interleave, as they do live."""
    events: list = [
        SessionCreated(
            session_id="bench",
            title="bench",
            goal="Design a TODO app API",
            settings=SessionSettings(),
            participants=tuple(ParticipantInfo(p, provider=f"mock:{p}", model=p) for p in PARTICIPANTS),
        ),
        RoundStarted(round=1, kind="draft", iteration=1, participants=PARTICIPANTS),
    ]
    for p in PARTICIPANTS:
        events.append(
            PromptSent(
                contribution_id=f"r1.{p}.1", round=1, participant=p, attempt=1, model=p,
                messages=(PromptMessage("user", "Design a TODO app API"),), temperature=0.7, max_tokens=2048,
            )
        )
    for i in range(n_deltas):
        p = PARTICIPANTS[i % len(PARTICIPANTS)]
        text = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(18))[:100]
        events.append(ContentDelta(contribution_id=f"r1.{p}.1", participant=p, round=1, attempt=1, text=text))
    for p in PARTICIPANTS:
        events.append(
            ContributionCompleted(
                contribution_id=f"r1.{p}.1", participant=p, round=1, attempt=1, content="...",
                finish_reason="stop", usage=TokenUsage(100, n_deltas // 5), latency_ms=1000.0,
            )
        )
    return events


def make_raw_table(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(
        "CREATE TABLE events (position INTEGER PRIMARY KEY, stream_id TEXT NOT NULL, version INTEGER NOT NULL,"
        " type TEXT NOT NULL, data TEXT NOT NULL, recorded_at INTEGER NOT NULL)"
    )
    conn.execute("CREATE UNIQUE INDEX idx_stream_version ON events (stream_id, version)")
    return conn


def bench_raw(folder: str, rows: list[tuple]) -> float:
    conn = make_raw_table(os.path.join(folder, f"raw-{uuid.uuid4().hex}.db"))
    start = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO events (stream_id, version, type, data, recorded_at) VALUES (?, ?, ?, ?, ?)", rows
    )
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(rows) / elapsed


def bench_ours_append(folder: str, new_events: list[NewEvent]) -> tuple[float, str]:
    path = os.path.join(folder, f"ours-{uuid.uuid4().hex}.db")
    store = EventStore(path)
    writer = BatchingWriter(store)
    append = writer.append
    start = time.perf_counter()
    for event in new_events:
        append("bench", (event,))
    writer.flush()
    elapsed = time.perf_counter() - start
    writer.close()
    store.close()
    return len(new_events) / elapsed, path


def bench_ours_rebuild(path: str) -> tuple[float, int]:
    store = EventStore(path)
    start = time.perf_counter()
    state = rebuild(e.event for e in store.read_stream("bench", codec=decode_event))
    elapsed = time.perf_counter() - start
    store.close()
    assert not state.streaming  # every contribution completed
    return elapsed, len(state.contributions)


def bench_eventsourcing(folder: str, encoded: list[tuple[str, bytes]], batch: int) -> tuple[float, float]:
    """(append events/s, read+decode+fold seconds) through eventsourcing's SQLite recorder."""
    from eventsourcing.persistence import StoredEvent
    from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

    datastore = SQLiteDatastore(os.path.join(folder, f"es-{uuid.uuid4().hex}.db"), originator_id_type="text")
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    stored = [StoredEvent("bench", version, type_, data) for version, (type_, data) in enumerate(encoded, 1)]
    start = time.perf_counter()
    for i in range(0, len(stored), batch):
        recorder.insert_events(stored[i : i + batch])
    append_eps = len(stored) / (time.perf_counter() - start)
    start = time.perf_counter()
    state = rebuild(decode_event(e.topic, e.state) for e in recorder.select_events("bench"))
    read_s = time.perf_counter() - start
    assert len(state.contributions) == len(PARTICIPANTS)
    datastore.close()
    return append_eps, read_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="ContentDelta events per trial")
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()

    domain = session_events(args.events)
    encoded = [(event_type(e), encode_event(e)) for e in domain]
    new_events = [NewEvent.from_bytes(t, d) for t, d in encoded]
    now = time.time_ns()
    rows = [("bench", v, e.type, e.data, now) for v, e in enumerate(new_events, 1)]
    n = len(new_events)
    mean_bytes = sum(len(e.data) for e in new_events) / n
    print(f"{n:,} events ({args.events:,} ContentDelta), mean {mean_bytes:.0f} bytes of JSON each; "
          f"{args.trials} interleaved trials, medians reported")

    try:
        import eventsourcing  # noqa: F401
        have_es = True
    except ImportError:
        have_es = False
        print("eventsourcing is not installed (pip install -e '.[bench]'): its columns are skipped")

    raw, ours, rebuild_s, es_append, es_append_batched, es_read = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.trials):
            raw.append(bench_raw(folder, rows))
            eps, path = bench_ours_append(folder, new_events)
            ours.append(eps)
            elapsed, _ = bench_ours_rebuild(path)
            rebuild_s.append(elapsed)
            if have_es:
                eps, read_s = bench_eventsourcing(folder, encoded, batch=1)
                es_append.append(eps)
                es_read.append(read_s)
                eps, _ = bench_eventsourcing(folder, encoded, batch=500)
                es_append_batched.append(eps)

    med = statistics.median
    result = {
        "events": n,
        "append_eps": round(med(ours)),
        "raw_eps": round(med(raw)),
        "append_vs_raw": round(med(ours) / med(raw), 3),
        "rebuild_100k_s": round(med(rebuild_s) * 100_000 / n, 4),
        "rebuild_eps": round(n / med(rebuild_s)),
        "eventsourcing_append_eps": round(med(es_append)) if have_es else None,
        "eventsourcing_batched_append_eps": round(med(es_append_batched)) if have_es else None,
        "append_vs_eventsourcing": round(med(ours) / med(es_append), 2) if have_es else None,
        "eventsourcing_rebuild_s": round(med(es_read), 4) if have_es else None,
        "read_vs_eventsourcing": round(med(es_read) / med(rebuild_s), 2) if have_es else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print()
    print(f"{'append, batching writer':<42}{result['append_eps']:>12,} events/s")
    print(f"{'raw sqlite3 executemany (ceiling)':<42}{result['raw_eps']:>12,} events/s   ours/raw = {result['append_vs_raw']}")
    if have_es:
        print(f"{'eventsourcing, one insert per event':<42}{result['eventsourcing_append_eps']:>12,} events/s   "
              f"ours/it = {result['append_vs_eventsourcing']}")
        print(f"{'eventsourcing, batches of 500 (reference)':<42}{result['eventsourcing_batched_append_eps']:>12,} events/s")
    print(f"{'read + decode + fold, ours':<42}{result['rebuild_100k_s']:>12} s per 100k  ({result['rebuild_eps']:,} events/s)")
    if have_es:
        print(f"{'read + decode + fold, eventsourcing':<42}{result['eventsourcing_rebuild_s']:>12} s   "
              f"it/ours = {result['read_vs_eventsourcing']}")
    print(f"{'peak RSS':<42}{result['peak_rss_mb']:>12} MB")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
