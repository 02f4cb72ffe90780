"""Several real processes on one log file."""

from __future__ import annotations

import json
import multiprocessing
import time

from eventstore import ANY, ConcurrencyError, EventStore, NewEvent

CTX = multiprocessing.get_context("spawn")


def _append_many(path: str, stream_id: str, count: int, start, expected_mode: str) -> None:
    store = EventStore(path)
    start.wait()
    for i in range(count):
        expected = ANY if expected_mode == "any" else i  # this process owns its stream
        store.append(stream_id, [NewEvent("Thing", json.dumps({"i": i}))], expected)
    store.close()


def _race_once(path: str, start, results) -> None:
    store = EventStore(path)
    start.wait()
    try:
        store.append("contested", [NewEvent("Thing", "{}"), NewEvent("Thing", "{}")], 3)
        results.put("won")
    except ConcurrencyError:
        results.put("lost")
    store.close()


def _write_later(path: str, delay: float) -> None:
    time.sleep(delay)
    store = EventStore(path)
    store.append("remote", [NewEvent("Thing", '{"from": "elsewhere"}')])
    store.close()


def test_two_processes_on_different_streams_lose_nothing(tmp_path):
    path = str(tmp_path / "log.db")
    EventStore(path).close()
    start = CTX.Event()
    procs = [
        CTX.Process(target=_append_many, args=(path, f"s{k}", 300, start, mode))
        for k, mode in enumerate(("expected", "any"))
    ]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with EventStore(path) as store:
        for k in range(2):
            events = list(store.read_stream(f"s{k}"))
            assert [e.version for e in events] == list(range(1, 301))
            assert [json.loads(e.data)["i"] for e in events] == list(range(300))
        assert [e.position for e in store.read_all()] == list(range(1, 601))


def test_same_expected_version_exactly_one_process_wins(tmp_path):
    path = str(tmp_path / "log.db")
    with EventStore(path) as store:
        store.append("contested", [NewEvent("Thing", "{}")] * 3)
    for _ in range(3):
        start, results = CTX.Event(), CTX.Queue()
        procs = [CTX.Process(target=_race_once, args=(path, start, results)) for _ in range(2)]
        for p in procs:
            p.start()
        start.set()
        for p in procs:
            p.join(60)
        outcomes = sorted(results.get(timeout=10) for _ in procs)
        with EventStore(path) as store:
            assert outcomes == ["lost", "won"]
            assert store.stream_version("contested") == 5
            # reset for the next trial: a fresh stream at version 3
            store._conn.execute("DELETE FROM events WHERE version > 3")
            store._versions.clear()


def test_subscriber_catches_up_with_another_process(tmp_path):
    path = str(tmp_path / "log.db")
    with EventStore(path) as store:
        sub = store.subscribe(poll_interval=0.02)
        writer = CTX.Process(target=_write_later, args=(path, 0.3))
        writer.start()
        event = sub.poll(timeout=30)
        writer.join(30)
        assert event is not None and event.stream_id == "remote"
        sub.close()
