"""Following the log: every follower gives back what it opened, and concurrent first reads fold once."""

from __future__ import annotations

import json
import os
import threading
import time

import httpx
import pytest
from websockets.sync.client import connect

from forge_actors.core import state as state_module
from forge_actors.engine import Forge
from forge_actors.surfaces.server.app import API
from forge_actors.surfaces.server.runner import ServerThread

FAST = [f"mock:{name}?word_delay=0" for name in ("alice", "bob", "carol")]
#: Descriptors a settled server may still hold beyond its start (the pool's idle readers, a socket in teardown).
SLACK = 12


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def settled_fds(limit: int) -> int:
    """The descriptor count once it is at or under ``limit``, or what it is after a while.

    The server closes its side of a connection shortly after the client's side: this waits
    for that (it asserts nothing about how long it takes)."""
    deadline = time.monotonic() + 10
    count = open_fds()
    while count > limit and time.monotonic() < deadline:
        time.sleep(0.05)
        count = open_fds()
    return count


@pytest.fixture
def ended(tmp_path):
    """An engine, and one session of it that has run to its end."""
    forge = Forge(str(tmp_path / "forge.db"))
    session_id = forge.create_session("Design a TODO app API", FAST, max_rounds=1, seed=1)
    events = list(forge.deliberate(session_id))
    yield forge, session_id, events
    forge.close()


@pytest.fixture
def cancelled(tmp_path):
    """An engine, and a session of a few events that has ended (cancelled before its first round)."""
    forge = Forge(str(tmp_path / "forge.db"))
    session_id = forge.create_session("Design a TODO app API", FAST, max_rounds=1, seed=1)
    forge.cancel(session_id)
    yield forge, session_id, forge.events_page(session_id, 0)
    forge.close()


def ws_positions(base: str, session_id: str, query: str = "from=0", seen: threading.Event | None = None) -> list[int]:
    address = f"{base}{API}/sessions/{session_id}/stream?{query}".replace("http://", "ws://")
    positions = []
    with connect(address, open_timeout=10, max_queue=None) as ws:
        while True:
            try:
                positions.append(json.loads(ws.recv(timeout=30))["position"])
            except Exception:  # the server closed the stream after SessionEnded
                return positions
            if seen is not None:
                seen.set()


def sse_positions(base: str, session_id: str, query: str = "", seen: threading.Event | None = None) -> list[int]:
    positions = []
    with httpx.stream("GET", f"{base}{API}/sessions/{session_id}/events?{query}", timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if "error" in event:  # the stream's last word: it cannot go on
                    break
                positions.append(event["position"])
                if seen is not None:
                    seen.set()
                if event["type"] == "SessionEnded":
                    break
    return positions


def test_stream_clients_leave_no_file_descriptors_behind(cancelled):
    forge, session_id, events = cancelled
    expected = [r.position for r in events]
    with ServerThread(forge) as server:
        ws_positions(server.url, session_id)  # the first client's one-off setup is not a leak
        sse_positions(server.url, session_id)
        start = open_fds()
        for _ in range(200):
            assert ws_positions(server.url, session_id) == expected
        for _ in range(50):
            assert sse_positions(server.url, session_id) == expected
        for _ in range(20):  # paced replays, as fast as they go
            assert ws_positions(server.url, session_id, "from=0&speed=0") == expected
            assert sse_positions(server.url, session_id, "speed=0") == expected
        assert settled_fds(start + SLACK) <= start + SLACK


def test_a_stream_opened_at_or_past_the_end_of_an_ended_session_ends_at_once(ended):
    forge, session_id, events = ended
    last = events[-1].position
    with ServerThread(forge) as server:
        assert ws_positions(server.url, session_id, f"from={last}") == []
        assert ws_positions(server.url, session_id, f"from={last + 1000}") == []
        assert sse_positions(server.url, session_id, f"from={last}") == []
        # ...also when a live hub for the session already exists and saw it end
        assert ws_positions(server.url, session_id, f"from={last - 1}") == [last]


def test_engine_followers_leave_no_file_descriptors_behind(ended):
    forge, session_id, events = ended
    expected = [r.position for r in events]

    def follow_in_a_thread_of_its_own() -> None:
        with forge.subscribe(session_id) as subscription:
            got = [next(subscription).position for _ in expected]
        assert got == expected
        assert [r.position for r in forge.deliberate(session_id)] == expected

    follow_in_a_thread_of_its_own()
    start = open_fds()
    for _ in range(100):  # short-lived threads, each reading: none may keep a connection
        thread = threading.Thread(target=follow_in_a_thread_of_its_own)
        thread.start()
        thread.join()
    assert open_fds() <= start + SLACK


def test_concurrent_first_reads_of_a_session_fold_it_once(tmp_path, monkeypatch):
    path = str(tmp_path / "forge.db")
    with Forge(path) as forge:
        session_id = forge.create_session("Design a TODO app API", FAST, max_rounds=1, seed=1)
        events = list(forge.deliberate(session_id))
    applied = []
    real_apply = state_module.apply

    def counting_apply(state, event):
        applied.append(event)
        return real_apply(state, event)

    import forge_actors.engine.states as engine_module

    monkeypatch.setattr(engine_module, "apply", counting_apply)
    with Forge(path) as forge:  # cold: it has folded nothing yet
        barrier = threading.Barrier(16)
        states = []

        def read() -> None:
            barrier.wait()
            states.append(forge.state(session_id))

        threads = [threading.Thread(target=read) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(applied) == len(events)  # one fold, shared by all sixteen
        assert len(states) == 16 and all(s == states[0] for s in states) and states[0].ended
        assert forge.state(session_id) is states[0]  # nothing new: the cached state itself
        assert len(applied) == len(events)


# -- the store's subscriptions: handed batches after the stored ones -------------------------------

from eventstore import BatchingWriter, EventStore, NewEvent  # noqa: E402


def ev(n: int) -> NewEvent:
    return NewEvent("E", json.dumps({"n": n}))


@pytest.fixture
def store(tmp_path):
    with EventStore(tmp_path / "log.db") as opened:
        yield opened


def test_a_live_subscription_takes_handed_batches_and_never_reads_back_what_was_just_written(store, monkeypatch):
    store.append("a", [ev(0)])
    sub = store.subscribe(poll_interval=60.0)  # no quiet-spell reads during the test
    assert sub.poll(1).position == 1  # the stored one, read from the log
    assert sub.poll(0) is None  # a short page: it is live now
    reads = []
    for name in ("_page_all", "_page_stream"):
        real = getattr(store, name)
        monkeypatch.setattr(store, name, lambda *args, real=real: reads.append(args) or real(*args))
    for n in range(1, 101):
        store.append("a" if n % 2 else "b", [ev(n)])
    assert [sub.poll(1).position for _ in range(100)] == list(range(2, 102))
    assert reads == []
    sub.close()
    assert store.subscriptions() == 0


def test_commits_racing_the_first_read_come_once_and_in_order(store):
    """Writers commit while subscriptions open and page through the log: none misses or repeats one."""
    total = 3000
    with BatchingWriter(store, max_batch=7, max_delay=0.0005) as writer:
        opened = threading.Event()

        def produce() -> None:
            for n in range(total):
                writer.append(f"s{n % 3}", [ev(n)])
                if n == 100:
                    opened.wait(10)

        producer = threading.Thread(target=produce)
        producer.start()
        subs = []
        while len(subs) < 20:  # opened at every moment of the run, at different positions
            subs.append(store.subscribe(after=store.last_position() // 2, page_size=13))
            if len(subs) == 5:
                opened.set()
        stream_sub = store.subscribe(stream_id="s1", page_size=5)
        producer.join()
    for sub in subs:
        start = sub.position
        got = [sub.poll(5).position for _ in range(total - start)]
        assert got == list(range(start + 1, total + 1))
        assert sub.poll(0) is None
    versions = [stream_sub.poll(5).version for _ in range(total // 3)]
    assert versions == list(range(1, total // 3 + 1)) and stream_sub.poll(0) is None


def test_a_consumer_that_falls_far_behind_reads_the_log_and_loses_nothing(store):
    sub = store.subscribe(page_size=10)
    assert sub.poll(0) is None  # live
    with BatchingWriter(store, max_batch=50) as writer:
        for n in range(10_000):
            writer.append("a", [ev(n)])
    assert len(sub._pending) <= sub._max_pending  # dropped, not grown
    assert [sub.poll(1).position for _ in range(10_000)] == list(range(1, 10_001))
    assert sub.poll(0) is None


def test_closing_the_store_ends_its_subscriptions(store):
    sub = store.subscribe()
    store.close()
    assert list(sub) == [] and sub.closed


def test_engine_followers_opened_past_the_end_of_an_ended_session_end_at_once(ended):
    forge, session_id, events = ended
    assert list(forge.deliberate(session_id, from_position=events[-1].position)) == []
    assert [r.position for r in forge.deliberate(session_id, from_position=events[-2].position)] == \
        [events[-1].position]
    assert forge._store.subscriptions() == 0  # each follower closed its subscription


def test_the_reader_pool_is_bounded_however_many_threads_read(tmp_path):
    from eventstore.sqlite import READER_POOL_SIZE

    with EventStore(tmp_path / "log.db") as store:
        store.append("a", [ev(n) for n in range(100)])
        barrier = threading.Barrier(32)

        def read() -> None:
            barrier.wait()
            for _ in range(20):
                assert sum(1 for _ in store.read_stream("a", page_size=7)) == 100

        threads = [threading.Thread(target=read) for _ in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.open_readers() <= READER_POOL_SIZE


def test_live_clients_end_when_the_engine_closes(tmp_path):
    forge = Forge(str(tmp_path / "forge.db"))
    session_id = forge.create_session("Design a TODO app API", FAST, max_rounds=1)  # never run: no end
    with ServerThread(forge) as server:
        got: list[list[int]] = []
        seen = [threading.Event(), threading.Event()]
        clients = [threading.Thread(target=lambda: got.append(ws_positions(server.url, session_id, seen=seen[0]))),
                   threading.Thread(target=lambda: got.append(sse_positions(server.url, session_id, seen=seen[1])))]
        for client in clients:
            client.start()
        assert all(event.wait(10) for event in seen)  # both have the stored event, and wait for more
        forge.close()
        for client in clients:
            client.join(timeout=20)
        assert not any(client.is_alive() for client in clients)
        assert got == [[1], [1]]  # the stored event, then the end of the stream


def _append_elsewhere(path: str, count: int, start) -> None:
    other = EventStore(path)
    start.wait()
    for n in range(count):
        other.append("elsewhere", [ev(n)])
    other.close()


def test_commits_of_another_process_between_handed_batches_are_read_from_the_log(tmp_path):
    """Handed batches that do not follow on from the subscription's position mean another process
    wrote in between: it reads those rows from the log rather than skip them."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    path = str(tmp_path / "log.db")
    with EventStore(path) as store:
        everything = store.subscribe(poll_interval=60.0)  # no quiet spells: only gaps make it read
        ours = store.subscribe(stream_id="here", poll_interval=60.0)
        assert everything.poll(0) is None and ours.poll(0) is None  # live: from here on, handed batches
        start = context.Event()
        other = context.Process(target=_append_elsewhere, args=(path, 300, start))
        other.start()
        start.set()
        ours_written = 0
        while other.is_alive() or ours_written < 10:  # ours and theirs interleave in the log
            store.append("here", [ev(ours_written)])
            ours_written += 1
            time.sleep(0.001)
        other.join(60)
        store.append("here", [ev(ours_written)])  # handed after all of the other process's rows
        total = store.last_position()
        assert total == 300 + ours_written + 1
        got = [everything.poll(5).position for _ in range(total)]
        assert got == list(range(1, total + 1))
        assert [ours.poll(5).version for _ in range(ours_written + 1)] == list(range(1, ours_written + 2))
