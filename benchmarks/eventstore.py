"""Event log throughput: our batching writer and fold against raw sqlite3 and `eventsourcing`; PostgreSQL beside.

    python benchmarks/eventstore.py [--events 100000] [--trials 3] [--sessions 50] [--quick]

Every figure is measured in this run, on this machine, trials interleaved so that a
noisy neighbour hurts all contenders alike; the median trial is reported. The last
line of output is one JSON object (see the README for the fields).

- append: 100,000 ContentDelta events (~100 bytes of text each) handed one by one to
  a BatchingWriter, until flush() returns (all durable); and the same fenced (each append
  carries its lease's epoch, which every commit reads, as a driven session's appends do);
- raw: the same rows through one sqlite3 ``executemany`` in one transaction into a
  WAL file with the same schema: the practical ceiling for Python;
- eventsourcing: the same events through its SQLite application recorder, one
  ``insert_events`` call per event as they would arrive while streaming (and, for
  reference, in batches of 500);
- rebuild: read + decode + fold all events of the session into a SessionState.

PostgreSQL beside SQLite (skipped, with a line saying so, when PostgreSQL or psycopg is absent): a
throwaway server of the benchmark's own with the durable defaults (fsync on, synchronous_commit on),
or ``$FORGE_BENCH_POSTGRES_URL`` (benchmarks/_postgres.py); every log and raw table in a fresh
database (or schema) of that server.

- pg append: the same events through the BatchingWriter into a PostgresEventStore, against the
  same rows by raw ``COPY`` and raw psycopg ``executemany`` (one transaction) into a fresh table of
  the same layout; ours / the faster raw must be >= 0.5;
- pg rebuild: read + decode + fold of that log, as for SQLite;
- subscription latency across processes, each backend: a writer process appends (one transaction
  per event, paced), a subscriber in another process records each event's arrival;
  commit (the writer's append returned) -> delivery, p50/p99, on CLOCK_MONOTONIC (time.monotonic_ns,
  one clock for all processes). SQLite's subscriber finds others' commits by polling, PostgreSQL's
  by NOTIFY (benchmarks/_subscription_latency.py);
- multi-coordinator load: benchmarks/deliberation.py's load (50 sessions x 4 mock participants)
  split over 4 coordinator processes on one PostgreSQL database (benchmarks/_load_coordinator.py):
  durable deltas/s in total, against the same load in one process on SQLite; must exceed it.

``--quick``: 10,000 events, one trial, a short latency run and 12 load sessions: under a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _postgres import BenchPostgres, bench_postgres, settle  # noqa: E402

from eventstore import BatchingWriter, EventLog, EventStore, Fence, LogLeases, NewEvent, open_log  # noqa: E402
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


def writer_rate(store: EventLog, new_events: list[NewEvent], fenced: bool = False) -> float:
    """Events/s appended one by one through a BatchingWriter, until all are committed (closes the store);
    ``fenced``: each append carries the epoch of a lease taken first, as a driven session's do."""
    writer = BatchingWriter(store)
    append = writer.append
    if fenced:
        fence = Fence("bench", LogLeases(store).acquire("bench", "bench", 600).epoch)
        start = time.perf_counter()
        for event in new_events:
            append("bench", (event,), fence=fence)
    else:
        start = time.perf_counter()
        for event in new_events:
            append("bench", (event,))
    writer.flush()
    elapsed = time.perf_counter() - start
    writer.close()
    store.close()
    return len(new_events) / elapsed


def bench_ours_append(folder: str, new_events: list[NewEvent], fenced: bool = False) -> tuple[float, str]:
    path = os.path.join(folder, f"ours-{uuid.uuid4().hex}.db")
    return writer_rate(EventStore(path), new_events, fenced), path


def bench_ours_rebuild(path: str) -> tuple[float, int]:
    store = open_log(path, create=False)  # a SQLite file or a PostgreSQL URL
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


# -- PostgreSQL ------------------------------------------------------------------------------------

PG_LAYOUT = (
    "CREATE TABLE events (position BIGINT PRIMARY KEY, stream_id TEXT NOT NULL, version BIGINT NOT NULL,"
    " type TEXT NOT NULL, data TEXT NOT NULL, recorded_at BIGINT NOT NULL,"
    " CONSTRAINT events_stream_version UNIQUE (stream_id, version))"
)  # eventstore/postgres.py's events table, as it is
PG_COLUMNS = "events (position, stream_id, version, type, data, recorded_at)"


def bench_pg_raw(url: str, rows: list[tuple], how: str) -> float:
    """Raw psycopg into a fresh table of the log's layout, one transaction: ``copy`` or ``executemany``."""
    import psycopg

    numbered = [(position, *row) for position, row in enumerate(rows, 1)]
    with psycopg.connect(url) as conn:
        conn.execute(PG_LAYOUT)
        conn.commit()
        start = time.perf_counter()
        with conn.cursor() as cursor:
            if how == "copy":
                with cursor.copy(f"COPY {PG_COLUMNS} FROM STDIN") as copy:
                    for row in numbered:
                        copy.write_row(row)
            else:
                cursor.executemany(f"INSERT INTO {PG_COLUMNS} VALUES (%s, %s, %s, %s, %s, %s)", numbered)
        conn.commit()
        elapsed = time.perf_counter() - start
    return len(rows) / elapsed


def bench_pg_append(url: str, new_events: list[NewEvent], fenced: bool = False) -> float:
    return writer_rate(open_log(url), new_events, fenced)


HELPER = str(Path(__file__).resolve().parent / "_subscription_latency.py")
COORDINATOR = str(Path(__file__).resolve().parent / "_load_coordinator.py")


def _start(arguments: list[str], target: str) -> subprocess.Popen:
    """A helper process; the target goes on its stdin (a URL's password never shows in ``ps``)."""
    process = subprocess.Popen([sys.executable, *arguments], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    assert process.stdin is not None
    process.stdin.write(target + "\n")
    process.stdin.flush()
    return process


def _expect_ready(process: subprocess.Popen) -> None:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line != "ready":
        process.kill()
        raise RuntimeError(f"a helper process failed to start (said {line!r}; exit {process.wait()})")


def _last_json(process: subprocess.Popen) -> dict:
    out, _ = process.communicate(timeout=300)
    if process.returncode != 0:
        raise RuntimeError(f"a helper process failed (exit {process.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def bench_cross_process_latency(target: str, count: int, per_second: float) -> list[float]:
    """Commit -> delivery (ms) of ``count`` paced appends, writer and subscriber in two other processes."""
    subscriber = _start([HELPER, "subscribe", str(count)], target)
    _expect_ready(subscriber)
    writer = _start([HELPER, "write", str(count), str(per_second)], target)
    _expect_ready(writer)
    assert writer.stdin is not None
    writer.stdin.write("go\n")
    writer.stdin.flush()
    committed = _last_json(writer)
    delivered = _last_json(subscriber)
    missing = set(committed) - set(delivered)
    if missing:
        raise RuntimeError(f"{len(missing)} of {count} committed events never reached the other process")
    return [(delivered[position] - committed[position]) / 1e6 for position in committed]


def bench_pg_load(url: str, sessions: int, coordinators: int) -> dict:
    """deliberation.py's load split over ``coordinators`` processes on one database, started together."""
    shares = [sessions // coordinators + (1 if i < sessions % coordinators else 0) for i in range(coordinators)]
    firsts = [sum(shares[:i]) for i in range(coordinators)]
    processes = [_start([COORDINATOR, "-", str(share), str(first)], url) for share, first in zip(shares, firsts, strict=True)]
    for process in processes:
        _expect_ready(process)
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    reports = [_last_json(process) for process in processes]
    wall = (max(r["end_ns"] for r in reports) - min(r["start_ns"] for r in reports)) / 1e9
    deltas = sum(r["deltas"] for r in reports)
    return {
        "pg_load_coordinators": coordinators,
        "pg_load_deltas": deltas,
        "pg_load_wall_s": round(wall, 2),
        "pg_load_deltas_per_s": round(deltas / wall),
        "pg_load_cpu_s_per_1k_deltas": round(sum(r["cpu_s"] for r in reports) / deltas * 1000, 4),
        "pg_load_outcomes": sorted({o for r in reports for o in r["outcomes"]}),
    }


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=None, help="ContentDelta events per trial (100,000)")
    parser.add_argument("--trials", type=int, default=None, help="interleaved trials (3)")
    parser.add_argument("--sessions", type=int, default=None, help="sessions of the load comparison (50)")
    parser.add_argument("--coordinators", type=int, default=4, help="PostgreSQL coordinator processes")
    parser.add_argument("--latency-events", type=int, default=None, help="paced appends per latency run (1,000)")
    parser.add_argument("--quick", action="store_true", help="small sizes: the whole run under a minute")
    args = parser.parse_args()
    quick = {"events": 10_000, "trials": 1, "sessions": 12, "latency_events": 200}
    full = {"events": 100_000, "trials": 3, "sessions": 50, "latency_events": 1_000}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    latency_rate = 100.0  # appends per second, one transaction each

    domain = session_events(args.events)
    encoded = [(event_type(e), encode_event(e)) for e in domain]
    new_events = [NewEvent.from_bytes(t, d) for t, d in encoded]
    now = time.time_ns()
    rows = [("bench", v, e.type, e.data, now) for v, e in enumerate(new_events, 1)]
    n = len(new_events)
    mean_bytes = sum(len(e.data) for e in new_events) / n
    print(f"{n:,} events ({args.events:,} ContentDelta), mean {mean_bytes:.0f} bytes of JSON each; "
          f"{args.trials} interleaved trials, medians reported{' (--quick)' if args.quick else ''}")

    try:
        import eventsourcing  # noqa: F401
        have_es = True
    except ImportError:
        have_es = False
        print("eventsourcing is not installed (pip install -e '.[bench]'): its columns are skipped")

    raw, ours, rebuild_s, es_append, es_append_batched, es_read = [], [], [], [], [], []
    fenced: list[float] = []
    pg_copy, pg_many, pg_ours, pg_rebuild_s = [], [], [], []
    pg_fenced: list[float] = []
    pg_result: dict = {}
    with tempfile.TemporaryDirectory() as folder, bench_postgres() as pg:
        if pg is not None:
            print(f"PostgreSQL: {pg.where}; the logs append with synchronous=NORMAL (synchronous_commit off per "
                  "transaction: a commit survives its process, like SQLite's NORMAL)")
        for _ in range(args.trials):
            raw.append(bench_raw(folder, rows))
            eps, path = bench_ours_append(folder, new_events)
            ours.append(eps)
            elapsed, _ = bench_ours_rebuild(path)
            rebuild_s.append(elapsed)
            fenced.append(bench_ours_append(folder, new_events, fenced=True)[0])
            if have_es:
                eps, read_s = bench_eventsourcing(folder, encoded, batch=1)
                es_append.append(eps)
                es_read.append(read_s)
                eps, _ = bench_eventsourcing(folder, encoded, batch=500)
                es_append_batched.append(eps)
            if pg is not None:
                pg_copy.append(bench_pg_raw(pg.fresh_url(), rows, "copy"))
                pg_many.append(bench_pg_raw(pg.fresh_url(), rows, "executemany"))
                url = pg.fresh_url()
                pg_ours.append(bench_pg_append(url, new_events))
                elapsed, _ = bench_ours_rebuild(url)
                pg_rebuild_s.append(elapsed)
                pg_fenced.append(bench_pg_append(pg.fresh_url(), new_events, fenced=True))
        sqlite_latency = bench_cross_process_latency(os.path.join(folder, "latency.db"), args.latency_events,
                                                     latency_rate)
        from deliberation import bench_load  # registers its benchmark providers too

        sqlite_load = bench_load(folder, args.sessions)
        if pg is not None:
            pg_latency = bench_cross_process_latency(pg.fresh_url(), args.latency_events, latency_rate)
            pg_result = pg_figures(pg, args, n, pg_copy, pg_many, pg_ours, pg_rebuild_s, pg_latency, sqlite_load,
                                   rebuild_s, pg_fenced)

    med = statistics.median
    result = {
        "events": n,
        "append_eps": round(med(ours)),
        "append_fenced_eps": round(med(fenced)),
        "raw_eps": round(med(raw)),
        "append_vs_raw": round(med(ours) / med(raw), 3),
        "rebuild_100k_s": round(med(rebuild_s) * 100_000 / n, 4),
        "rebuild_eps": round(n / med(rebuild_s)),
        "eventsourcing_append_eps": round(med(es_append)) if have_es else None,
        "eventsourcing_batched_append_eps": round(med(es_append_batched)) if have_es else None,
        "append_vs_eventsourcing": round(med(ours) / med(es_append), 2) if have_es else None,
        "eventsourcing_rebuild_s": round(med(es_read), 4) if have_es else None,
        "read_vs_eventsourcing": round(med(es_read) / med(rebuild_s), 2) if have_es else None,
        "sqlite_sub_latency_samples": len(sqlite_latency),
        "sqlite_sub_latency_p50_ms": round(statistics.median(sqlite_latency), 2),
        "sqlite_sub_latency_p99_ms": round(percentile(sqlite_latency, 0.99), 2),
        "sqlite_load_sessions": sqlite_load["load_sessions"],
        "sqlite_load_deltas": sqlite_load["load_deltas"],
        "sqlite_load_deltas_per_s": sqlite_load["load_deltas_per_s"],
        "postgresql": pg is not None,
        **pg_result,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print()
    print(f"{'append, batching writer':<42}{result['append_eps']:>12,} events/s")
    print(f"{'append, batching writer, fenced':<42}{result['append_fenced_eps']:>12,} events/s")
    print(f"{'raw sqlite3 executemany (ceiling)':<42}{result['raw_eps']:>12,} events/s   ours/raw = {result['append_vs_raw']}"
          f"  (target >= 0.5: {verdict(result['append_vs_raw'] >= 0.5)})")
    if have_es:
        print(f"{'eventsourcing, one insert per event':<42}{result['eventsourcing_append_eps']:>12,} events/s   "
              f"ours/it = {result['append_vs_eventsourcing']}")
        print(f"{'eventsourcing, batches of 500 (reference)':<42}{result['eventsourcing_batched_append_eps']:>12,} events/s")
    print(f"{'read + decode + fold, ours':<42}{result['rebuild_100k_s']:>12} s per 100k  ({result['rebuild_eps']:,} events/s)")
    if have_es:
        print(f"{'read + decode + fold, eventsourcing':<42}{result['eventsourcing_rebuild_s']:>12} s   "
              f"it/ours = {result['read_vs_eventsourcing']}")
    print(f"{'SQLite: commit -> other process p50/p99':<42}{result['sqlite_sub_latency_p50_ms']:>12} / "
          f"{result['sqlite_sub_latency_p99_ms']} ms  (polling; {result['sqlite_sub_latency_samples']} events "
          f"at {latency_rate:g}/s)")
    print(f"{'SQLite: load, one process':<42}{result['sqlite_load_deltas_per_s']:>12,} durable deltas/s  "
          f"({result['sqlite_load_sessions']} sessions, {result['sqlite_load_deltas']} deltas)")
    if pg_result:
        print_pg(result, latency_rate)
    print(f"{'peak RSS':<42}{result['peak_rss_mb']:>12} MB")
    print(json.dumps(result))


def pg_figures(pg: BenchPostgres, args: argparse.Namespace, n: int, copy: list[float], many: list[float],
               ours: list[float], rebuild_s: list[float], latency: list[float], sqlite_load: dict,
               sqlite_rebuild_s: list[float], fenced: list[float]) -> dict:
    """The PostgreSQL figures (the load runs here, last: it is the longest)."""
    med = statistics.median
    target = pg.fresh_url()
    settle(target)  # the figures above left a checkpoint and autovacuum work due: not the load's to pay
    load = bench_pg_load(target, args.sessions, args.coordinators)
    best_raw = max(med(copy), med(many))
    return {
        "pg_append_eps": round(med(ours)),
        "pg_append_fenced_eps": round(med(fenced)),
        "pg_copy_eps": round(med(copy)),
        "pg_executemany_eps": round(med(many)),
        "pg_append_vs_copy": round(med(ours) / med(copy), 3),
        "pg_append_vs_executemany": round(med(ours) / med(many), 3),
        "pg_append_vs_raw": round(med(ours) / best_raw, 3),
        "pg_rebuild_100k_s": round(med(rebuild_s) * 100_000 / n, 4),
        "pg_rebuild_eps": round(n / med(rebuild_s)),
        "pg_rebuild_vs_sqlite": round(med(rebuild_s) / med(sqlite_rebuild_s), 2),
        "pg_sub_latency_samples": len(latency),
        "pg_sub_latency_p50_ms": round(statistics.median(latency), 2),
        "pg_sub_latency_p99_ms": round(percentile(latency, 0.99), 2),
        **load,
        "pg_load_vs_sqlite": round(load["pg_load_deltas_per_s"] / sqlite_load["load_deltas_per_s"], 3),
    }


def print_pg(result: dict, latency_rate: float) -> None:
    print()
    print(f"{'PostgreSQL: append, batching writer':<42}{result['pg_append_eps']:>12,} events/s")
    print(f"{'PostgreSQL: append, fenced':<42}{result['pg_append_fenced_eps']:>12,} events/s")
    print(f"{'PostgreSQL: raw COPY':<42}{result['pg_copy_eps']:>12,} events/s   ours/it = {result['pg_append_vs_copy']}")
    print(f"{'PostgreSQL: raw executemany':<42}{result['pg_executemany_eps']:>12,} events/s   "
          f"ours/it = {result['pg_append_vs_executemany']}")
    print(f"{'PostgreSQL: ours / the faster raw':<42}{result['pg_append_vs_raw']:>12}  "
          f"(target >= 0.5: {verdict(result['pg_append_vs_raw'] >= 0.5)})")
    print(f"{'PostgreSQL: read + decode + fold':<42}{result['pg_rebuild_100k_s']:>12} s per 100k  "
          f"({result['pg_rebuild_eps']:,} events/s; PG/SQLite time = {result['pg_rebuild_vs_sqlite']})")
    print(f"{'PostgreSQL: commit -> other process p50/p99':<42}{result['pg_sub_latency_p50_ms']:>12} / "
          f"{result['pg_sub_latency_p99_ms']} ms  (NOTIFY; {result['pg_sub_latency_samples']} events "
          f"at {latency_rate:g}/s)")
    print(f"{'PostgreSQL: load, ' + str(result['pg_load_coordinators']) + ' coordinator processes':<42}"
          f"{result['pg_load_deltas_per_s']:>12,} durable deltas/s  ({result['pg_load_deltas']} deltas in "
          f"{result['pg_load_wall_s']} s, outcomes {result['pg_load_outcomes']})")
    print(f"{'PostgreSQL load / SQLite load':<42}{result['pg_load_vs_sqlite']:>12}  "
          f"(target > 1: {verdict(result['pg_load_vs_sqlite'] > 1)})")


if __name__ == "__main__":
    main()
