"""Several real processes on one log: a SQLite file, or a PostgreSQL database (``log_target``)."""

from __future__ import annotations

import json
import multiprocessing
import time

from eventstore_support import run_together, write_raw

from eventstore import ANY, BatchingWriter, ConcurrencyError, NewEvent, open_log

CTX = multiprocessing.get_context("spawn")


def _append_many(path: str, stream_id: str, count: int, start, expected_mode: str) -> None:
    store = open_log(path)
    start.wait()
    for i in range(count):
        expected = ANY if expected_mode == "any" else i  # this process owns its stream
        store.append(stream_id, [NewEvent("Thing", json.dumps({"i": i}))], expected)
    store.close()


def _race_once(path: str, start, results) -> None:
    store = open_log(path)
    start.wait()
    try:
        store.append("contested", [NewEvent("Thing", "{}"), NewEvent("Thing", "{}")], 3)
        results.put("won")
    except ConcurrencyError:
        results.put("lost")
    store.close()


def _write_later(path: str, delay: float) -> None:
    time.sleep(delay)
    store = open_log(path)
    store.append("remote", [NewEvent("Thing", '{"from": "elsewhere"}')])
    store.close()


def test_two_processes_on_different_streams_lose_nothing(log_target):
    path = log_target
    open_log(path).close()
    start = CTX.Event()
    procs = [
        CTX.Process(target=_append_many, args=(path, f"s{k}", 300, start, mode))
        for k, mode in enumerate(("expected", "any"))
    ]
    run_together(procs, start)
    with open_log(path) as store:
        for k in range(2):
            events = list(store.read_stream(f"s{k}"))
            assert [e.version for e in events] == list(range(1, 301))
            assert [json.loads(e.data)["i"] for e in events] == list(range(300))
        assert [e.position for e in store.read_all()] == list(range(1, 601))


def test_same_expected_version_exactly_one_process_wins(log_target):
    path = log_target
    with open_log(path) as store:
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
        with open_log(path) as store:
            assert outcomes == ["lost", "won"]
            assert store.stream_version("contested") == 5
            # reset for the next trial: a fresh stream at version 3
            write_raw(store, "DELETE FROM events WHERE version > 3")
            store._versions.clear()


def test_subscriber_catches_up_with_another_process(log_target):
    path = log_target
    with open_log(path) as store:
        sub = store.subscribe(poll_interval=0.02)
        writer = CTX.Process(target=_write_later, args=(path, 0.3))
        writer.start()
        event = sub.poll(timeout=30)
        writer.join(30)
        assert event is not None and event.stream_id == "remote"
        sub.close()


# -- the gap rule: many writer processes, a follower in another -------------------------------------

WRITERS = 3
APPENDS_PER_WRITER = 100


def _events_of(writer: int, index: int) -> list[NewEvent]:
    """One or two events (so that appends of several rows interleave with single ones)."""
    return [NewEvent("Thing", json.dumps({"w": writer, "i": index, "k": k})) for k in range(1 + index % 2)]


def _write_concurrently(path: str, writer: int, start) -> None:
    store = open_log(path)
    start.wait()
    if writer % 2:  # half of them batch, as a live session's deltas are
        with BatchingWriter(store, max_batch=8, max_delay=0.002) as batching:
            for i in range(APPENDS_PER_WRITER):
                batching.append(f"w{writer}", _events_of(writer, i))
    else:
        for i in range(APPENDS_PER_WRITER):
            store.append(f"w{writer}", _events_of(writer, i))
    store.close()


def _follow(path: str, total: int, ready, results) -> None:
    store = open_log(path)
    sub = store.subscribe(page_size=29)
    ready.set()
    seen: list[tuple[int, str, int]] = []
    while len(seen) < total:
        event = sub.poll(timeout=30)
        if event is None:
            break  # the parent sees the short list
        seen.append((event.position, event.stream_id, event.version))
    extra = sub.poll(timeout=0.05)  # nothing after the last one
    results.put((seen, None if extra is None else extra.position))
    sub.close()
    store.close()


def test_a_follower_process_sees_every_position_once_in_order_while_many_processes_write(log_target):
    open_log(log_target).close()
    total = sum(len(_events_of(w, i)) for w in range(WRITERS) for i in range(APPENDS_PER_WRITER))
    start, ready, results = CTX.Event(), CTX.Event(), CTX.Queue()
    follower = CTX.Process(target=_follow, args=(log_target, total, ready, results))
    follower.start()
    writers = [CTX.Process(target=_write_concurrently, args=(log_target, w, start)) for w in range(WRITERS)]
    run_together(writers, start, before_start=lambda: ready.wait(60))
    seen, extra = results.get(timeout=60)
    follower.join(30)
    assert [position for position, _, _ in seen] == list(range(1, total + 1))  # dense, once, in order
    assert extra is None
    with open_log(log_target) as store:
        assert [(e.position, e.stream_id, e.version) for e in store.read_all()] == seen  # what is stored
        for w in range(WRITERS):
            assert [e.version for e in store.read_stream(f"w{w}")] == list(range(1, total // WRITERS + 1))
