"""The generic event log: appends, concurrency, reads, subscriptions, bad input, leases.

The contract tests take ``store`` (or ``log_target``) and run on both backends (ids ``sqlite`` and
``postgresql``, see conftest.py); the ones about SQLite files (pragmas, file shapes, a full disk,
damaged pages) take ``sqlite_store`` or ``tmp_path`` and are marked SQLite-only in their names."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections import deque

import pytest
from eventstore_support import write_raw

from eventstore import (
    APPLICATION_ID,
    NO_STREAM,
    SCHEMA_VERSION,
    BatchingWriter,
    ConcurrencyError,
    CorruptEventError,
    CorruptLogError,
    DiskFullError,
    EventStore,
    Lease,
    LeaseHeldError,
    LeaseLostError,
    LogLeases,
    LogWriteError,
    NewEvent,
    NotAnEventLogError,
    StoreClosedError,
    open_log,
)


def ev(n: int, type_: str = "Thing") -> NewEvent:
    return NewEvent(type_, json.dumps({"n": n}))


def json_codec(type_: str, data: str) -> dict:
    if type_ not in ("Thing", "Other"):
        raise ValueError(f"unknown type {type_}")
    return json.loads(data)


def integrity_error(store) -> type[Exception]:
    """What the backend's driver raises for a row its table refuses (NOT NULL, say)."""
    if store.dialect == "sqlite":
        return sqlite3.IntegrityError
    import psycopg

    return psycopg.IntegrityError


def test_sqlite_schema_is_the_documented_table(sqlite_store):
    store = sqlite_store
    conn = sqlite3.connect(store.path)
    cols = [row[1] for row in conn.execute("PRAGMA table_info(events)")]
    assert cols == ["position", "stream_id", "version", "type", "data", "recorded_at"]
    indexes = conn.execute("PRAGMA index_list(events)").fetchall()
    unique = [i for i in indexes if i[2] == 1]
    assert unique and [r[2] for r in conn.execute(f"PRAGMA index_info({unique[0][1]!r})")] == ["stream_id", "version"]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_append_assigns_versions_and_positions(store):
    a = store.append("a", [ev(1), ev(2)], NO_STREAM)
    b = store.append("b", [ev(3)], 0)
    c = store.append("a", [ev(4)], 2)
    assert (a.first_version, a.last_version, a.first_position, a.last_position) == (1, 2, 1, 2)
    assert (b.first_version, b.first_position) == (1, 3)
    assert (c.first_version, c.last_position) == (3, 4)
    assert [e.version for e in store.read_stream("a")] == [1, 2, 3]
    assert [e.position for e in store.read_all()] == [1, 2, 3, 4]
    assert store.stream_version("a") == 3 and store.stream_version("zzz") == 0
    assert list(store.streams()) == [("a", 3), ("b", 1)]


def test_wrong_expected_version_writes_nothing(store):
    store.append("a", [ev(1)])
    for expected in (0, 5, NO_STREAM):
        with pytest.raises(ConcurrencyError) as info:
            store.append("a", [ev(2), ev(3)], expected)
        assert info.value.actual == 1 and "nothing was written" in str(info.value)
    assert store.stream_version("a") == 1
    assert store.last_position() == 1


def test_append_is_atomic_on_database_error(store, monkeypatch):
    store.append("a", [ev(1)])
    bad = NewEvent("Thing", None)  # type: ignore[arg-type]  # violates NOT NULL mid-batch
    with pytest.raises(integrity_error(store)):
        store.append("a", [ev(2), bad, ev(3)])
    assert [e.version for e in store.read_stream("a")] == [1]
    store.append("a", [ev(2)], 1)  # the store still works


def test_bad_arguments_are_rejected_early(store):
    with pytest.raises(ValueError):
        store.append("", [ev(1)])
    with pytest.raises(ValueError):
        store.append("a", [ev(1)], -1)
    with pytest.raises(TypeError):
        store.append("a", [{"not": "an event"}])  # type: ignore[list-item]
    # NUL: PostgreSQL's text cannot hold it, so neither backend takes it (every log can be copied);
    # the JSON escape for it is only text. A lone surrogate is not UTF-8: no log can store it.
    with pytest.raises(ValueError, match="NUL"):
        store.append("a", [NewEvent("Thing", '{"t": "\x00"}')])
    with pytest.raises(ValueError, match="NUL"):
        store.append("a\x00b", [ev(1)])
    with pytest.raises(ValueError, match="surrogate"):
        store.append("a", [NewEvent("Thing", '{"t": "\ud800"}')])
    with pytest.raises(ValueError, match="surrogate"):
        store.append("a", [NewEvent("Th\udfffing", "{}")])
    assert store.append("a", [NewEvent("Thing", '{"t": "\\u0000"}')]).first_version == 1
    assert store.append("a", [NewEvent("Thing", '{"t": "é ✓ 𝄞"}')]).first_version == 2
    assert [e.data for e in store.read_stream("a")] == ['{"t": "\\u0000"}', '{"t": "é ✓ 𝄞"}']


def test_sqlite_write_transactions_begin_immediate(sqlite_store):
    store = sqlite_store
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    store.append("a", [ev(1)])
    assert statements[0] == "BEGIN IMMEDIATE"


@pytest.mark.parametrize("mode, pragma", [("NORMAL", 1), ("FULL", 2)])
def test_sqlite_synchronous_is_a_setting(tmp_path, mode, pragma):
    with EventStore(tmp_path / f"{mode}.db", synchronous=mode) as s:
        assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == pragma
    with pytest.raises(ValueError):
        EventStore(tmp_path / "x.db", synchronous="SOMETIMES")


def test_reads_page_through_without_loading_everything(store):
    store.append("a", [ev(i) for i in range(2500)])
    it = store.read_stream("a", page_size=100)
    first = next(it)
    assert first.version == 1
    assert sum(1 for _ in it) == 2499
    assert [e.version for e in store.read_stream("a", after_version=2497)] == [2498, 2499, 2500]
    assert [e.position for e in store.read_all(after=2498, page_size=1)] == [2499, 2500]


def test_codec_decodes_and_corrupt_rows_name_their_position(store):
    store.append("a", [ev(1), ev(2), ev(3)])
    write_raw(store, "UPDATE events SET data = '{not json' WHERE position = 2")
    write_raw(store, "INSERT INTO events (position, stream_id, version, type, data, recorded_at) "
                     "VALUES (4, 'a', 4, 'Alien', '{}', 0)")
    after_bad = store.read_all(after=2, codec=json_codec, page_size=1)
    assert next(after_bad).event == {"n": 3}  # rows past a bad one still read
    events = store.read_all(codec=json_codec)
    assert next(events).event == {"n": 1}
    with pytest.raises(CorruptEventError) as info:
        next(events)
    assert info.value.position == 2 and "position 2" in str(info.value)
    with pytest.raises(CorruptEventError) as info:
        list(store.read_all(after=3, codec=json_codec))
    assert info.value.position == 4 and info.value.event_type == "Alien"
    # Without a codec the raw rows are all still there.
    assert [e.position for e in store.read_all()] == [1, 2, 3, 4]


def test_sqlite_not_an_event_log(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(NotAnEventLogError, match="not a SQLite database"):
        EventStore(garbage)
    other = tmp_path / "other.db"
    sqlite_file(other, "CREATE TABLE customers (id INTEGER)")
    with pytest.raises(NotAnEventLogError, match="other tables"):
        EventStore(other)
    with pytest.raises(NotAnEventLogError, match="does not exist"):
        EventStore(tmp_path / "missing.db", create=False)
    wrong = tmp_path / "wrong.db"
    sqlite_file(wrong, "CREATE TABLE events (id INTEGER)")
    with pytest.raises(NotAnEventLogError, match="lacks the columns"):
        EventStore(wrong)


def test_reopening_keeps_everything(log_target):
    with open_log(log_target) as s:
        s.append("a", [ev(1), ev(2)])
    with open_log(log_target, create=False) as s:
        assert s.stream_version("a") == 2
        assert s.append("a", [ev(3)], 2).last_position == 3


def test_closed_store_refuses_work(log_target):
    s = open_log(log_target)
    s.close()
    s.close()
    with pytest.raises(StoreClosedError):
        s.append("a", [ev(1)])
    with pytest.raises(StoreClosedError):
        list(s.read_all())


# -- batching writer --------------------------------------------------------------


def test_batching_writer_groups_appends_into_few_transactions(store):
    commits: list[int] = []
    original = store.commit
    store.commit = lambda batch: (commits.append(len(batch)), original(batch))[1]  # type: ignore[method-assign]
    with BatchingWriter(store, max_batch=100, max_delay=0.05) as writer:
        for i in range(1000):
            writer.append("s", [ev(i)])
        writer.flush()
        assert store.stream_version("s") == 1000
    assert len(commits) <= 20 and sum(commits) == 1000
    assert [e.event["n"] for e in store.read_stream("s", codec=json_codec)] == list(range(1000))


def test_flush_returns_only_when_durable(store, log_target):
    writer = BatchingWriter(store, max_delay=10)  # the timer alone would wait 10 s
    for i in range(10):
        writer.append("s", [ev(i)])
    start = time.monotonic()
    writer.flush()
    assert time.monotonic() - start < 5
    with open_log(log_target) as other:  # another connection sees it: it is committed
        assert other.last_position() == 10
    writer.close()


def test_timer_commits_a_lone_append(store):
    with BatchingWriter(store, max_delay=0.01) as writer:
        writer.append("s", [ev(1)])
        deadline = time.monotonic() + 5
        while store.last_position() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.last_position() == 1


def test_ticket_reports_its_own_conflict_without_hurting_others(store):
    store.append("taken", [ev(0)])
    with BatchingWriter(store, max_delay=10) as writer:
        bad = writer.append("taken", [ev(1)], NO_STREAM)
        good = writer.append("free", [ev(2)], NO_STREAM)
        with pytest.raises(ConcurrencyError):
            bad.wait()
        result = good.wait()
        assert result.first_version == 1 and result.stream_id == "free"
    assert store.stream_version("taken") == 1


def test_a_refused_append_takes_the_streams_next_appends_in_its_batch_with_it(store):
    """Two appends of one writer, queued together, expecting versions 1 and 2 (the second assumed the
    first landed), while another writer has put an event in: the first is refused, and so is the
    second, which would otherwise land at version 3 after the other writer's event (an interleaving).
    An append naming no version still goes in."""
    store.append("s", [ev(0)])
    with BatchingWriter(store, max_delay=10) as writer:  # nothing commits until the flush below
        store.append("s", [ev(1)])  # the other writer
        first = writer.append("s", [ev(2)], expected_version=1)
        second = writer.append("s", [ev(3)], expected_version=2)
        anyway = writer.append("s", [ev(4)])
        writer.flush()
    assert isinstance(first.error, ConcurrencyError) and isinstance(second.error, ConcurrencyError)
    assert anyway.error is None and [e.version for e in store.read_stream("s")] == [1, 2, 3]


def test_a_refused_append_takes_the_appends_queued_before_the_refusal_was_seen_with_it(store):
    """The same across the writer's batches: what was queued before the refusal was seen is refused
    too; an append submitted after it (a writer that has read the stream again) is judged as usual."""
    store.append("s", [ev(0)])
    writer = BatchingWriter(store, max_batch=1, max_delay=10)  # one append per transaction
    with writer._commit_lock:  # a commit in progress elsewhere: all three queue behind it
        tickets = [writer.append("s", [ev(v)], expected_version=v) for v in (0, 1, 2)]
    writer.flush()
    assert all(isinstance(t.error, ConcurrencyError) for t in tickets)
    assert [e.version for e in store.read_stream("s")] == [1]
    again = writer.append("s", [ev(5)], expected_version=1)
    assert again.wait().first_version == 2
    writer.close()


def test_an_append_no_log_can_store_fails_alone_not_the_batch_it_would_join(store):
    with BatchingWriter(store, max_delay=10) as writer:
        before = writer.append("a", [ev(1)])
        with pytest.raises(ValueError, match="NUL"):
            writer.append("b", [NewEvent("Thing", '{"t": "\x00"}')])
        after = writer.append("c", [ev(2)])
        writer.flush()
    assert before.error is None and after.error is None
    assert [e.stream_id for e in store.read_all()] == ["a", "c"]


def test_writer_from_many_threads_keeps_each_stream_contiguous(store):
    with BatchingWriter(store, max_batch=64) as writer:
        def produce(name: str) -> None:
            for i in range(500):
                writer.append(name, [ev(i)])

        threads = [threading.Thread(target=produce, args=(f"s{k}",)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        writer.flush()
    for k in range(4):
        events = list(store.read_stream(f"s{k}", codec=json_codec))
        assert [e.version for e in events] == list(range(1, 501))
        assert [e.event["n"] for e in events] == list(range(500))
    positions = [e.position for e in store.read_all()]
    assert positions == list(range(1, 2001))


def test_flush_covers_an_append_numbered_but_not_yet_queued(store):
    """A flush while another thread's append has its number but is not in the queue yet (a busy
    machine preempts it there) waits for it and commits it, rather than finding the queue empty and
    reporting the appends as not committed."""
    class SlowQueue(deque):
        def append(self, ticket):
            inside.set()
            go_on.wait(10)
            super().append(ticket)

    inside, go_on = threading.Event(), threading.Event()
    with BatchingWriter(store, max_delay=10) as writer:
        writer._queue = SlowQueue()
        producer = threading.Thread(target=writer.append, args=("s", [ev(0)]))
        producer.start()
        assert inside.wait(10)
        outcome: list[BaseException | None] = []

        def flush() -> None:
            try:
                writer.flush(timeout=10)
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        flusher = threading.Thread(target=flush)
        flusher.start()
        flusher.join(0.2)  # it waits for the append to be queued
        go_on.set()
        producer.join()
        flusher.join()
        assert outcome == [None]
        assert [e.version for e in store.read_stream("s")] == [1]


def test_closed_writer_refuses_appends(store):
    writer = BatchingWriter(store)
    writer.append("s", [ev(1)])
    writer.close()
    assert store.stream_version("s") == 1  # close committed what was queued
    with pytest.raises(StoreClosedError):
        writer.append("s", [ev(2)])


# -- subscriptions -------------------------------------------------------------------


def test_subscription_reads_history_then_live(store):
    store.append("a", [ev(1), ev(2)])
    sub = store.subscribe(after=1, codec=json_codec)
    got: list[int] = []

    def consume() -> None:
        for event in sub:
            got.append(event.event["n"])
            if len(got) == 4:
                sub.close()

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.05)
    store.append("b", [ev(3)])
    store.append("a", [ev(4), ev(5)])
    t.join(5)
    assert not t.is_alive()
    assert got == [2, 3, 4, 5]


def test_subscription_is_woken_by_commit_not_by_polling(store):
    sub = store.subscribe(poll_interval=30.0)  # polling alone would take 30 s
    threading.Timer(0.05, lambda: store.append("a", [ev(1)])).start()
    start = time.monotonic()
    event = sub.poll(timeout=10)
    assert event is not None and event.position == 1
    assert time.monotonic() - start < 5
    sub.close()


def test_stream_subscription_sees_only_its_stream(store):
    store.append("a", [ev(1)])
    store.append("b", [ev(2)])
    store.append("a", [ev(3)])
    sub = store.subscribe(after=1, stream_id="a")
    first = sub.poll(1)
    assert first is not None and (first.stream_id, first.version) == ("a", 2)
    store.append("b", [ev(4)])
    store.append("a", [ev(5)])
    second = sub.poll(1)
    assert second is not None and (second.version, json.loads(second.data)) == (3, {"n": 5})
    assert sub.poll(0.05) is None
    sub.close()


def test_concurrent_writers_give_gap_free_ordered_subscriptions(store):
    total = 3 * 400
    subs = [store.subscribe(page_size=37) for _ in range(3)]
    results: list[list[int]] = [[] for _ in subs]

    def consume(k: int) -> None:
        for event in subs[k]:
            results[k].append(event.position)
            if len(results[k]) == total:
                return

    consumers = [threading.Thread(target=consume, args=(k,)) for k in range(3)]
    for c in consumers:
        c.start()
    with BatchingWriter(store, max_batch=16, max_delay=0.001) as writer:
        def produce(name: str) -> None:
            for i in range(400):
                writer.append(name, [ev(i)])
                if i % 50 == 0:
                    time.sleep(0.001)

        producers = [threading.Thread(target=produce, args=(f"p{k}",)) for k in range(3)]
        for p in producers:
            p.start()
        for p in producers:
            p.join()
    for c in consumers:
        c.join(10)
    for result in results:
        assert result == list(range(1, total + 1))  # every position once, in order
    for sub in subs:
        sub.close()


@pytest.mark.parametrize("stream_id", ["a", None])
def test_a_subscription_consumed_late_takes_what_was_handed_over_without_reading_it_again(store, stream_id):
    """Events committed here after it subscribed, before its first poll, follow on from its position:
    it takes them as handed over (the log is read once they are used up, and finds nothing more)."""
    store.append("a", [ev(0)])
    with store.subscribe(after=1, stream_id=stream_id, expect_others=False) as sub:
        for n in range(1, 301):
            store.append("a", [ev(n)])
        read: list[int] = []
        for name in ("_page_stream", "_page_all"):
            page = getattr(store, name)

            def counted(*args, page=page):
                rows = page(*args)
                read.append(len(rows))
                return rows

            setattr(store, name, counted)
        got = [sub.poll(10) for _ in range(300)]
        assert [e.position for e in got] == list(range(2, 302))
        assert sum(read) == 0
        assert sub.poll(0.01) is None and sum(read) == 0  # the log was read, and had nothing more


def test_slow_subscriber_does_not_slow_the_writer_or_buffer_unboundedly(store):
    sub = store.subscribe(page_size=50)
    assert sub.poll(0.01) is None
    with BatchingWriter(store) as writer:
        for i in range(5000):
            writer.append("s", [ev(i)])
    assert store.last_position() == 5000  # the writer finished though nobody read
    first = sub.poll(1)
    assert first is not None and first.position == 1
    assert len(sub._buffer) <= 50  # it reads the log a page at a time
    assert sum(1 for _ in iter(lambda: sub.poll(0.01), None)) == 4999
    sub.close()


def test_close_ends_a_blocked_subscription(store):
    sub = store.subscribe()
    done = threading.Event()

    def consume() -> None:
        for _ in sub:
            pass
        done.set()

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.05)
    sub.close()
    assert done.wait(5)
    store.close()



def test_on_wake_is_called_for_each_commit_nudge_and_close_and_poll_zero_reads_without_waiting(store):
    """The hook a consumer that must not block (an event loop) relies on: told, from the committing
    thread, that there is something to read; it then reads with poll_batch(0), which never waits."""
    store.append("a", [ev(0)])
    sub = store.subscribe(after=1, stream_id="a", expect_others=False)
    woken: list[str] = []
    sub.on_wake(lambda: woken.append(threading.current_thread().name))
    assert sub.poll_batch(0) == []  # caught up: nothing, at once
    committer = threading.Thread(target=lambda: store.append("a", [ev(1), ev(2)]), name="committer")
    committer.start()
    committer.join()
    assert woken == ["committer"]  # one wake per commit, in the thread that committed
    assert [json.loads(r.data)["n"] for r in sub.poll_batch(0)] == [1, 2]
    store.append("b", [ev(9)])  # another stream's commit does not wake it
    assert len(woken) == 1
    sub.nudge()  # a backend's cross-process wake-up reaches it too
    assert len(woken) == 2 and sub.poll_batch(0) == []
    sub.on_wake(None)
    store.append("a", [ev(3)])
    assert len(woken) == 2  # removed: no more calls
    sub.on_wake(lambda: woken.append("closed"))
    sub.close()
    assert woken[-1] == "closed"


def test_a_failing_wake_callback_does_not_fail_the_commit_that_woke_it(store, caplog):
    sub = store.subscribe()

    def broken() -> None:
        raise RuntimeError("event loop is closed")

    sub.on_wake(broken)
    store.append("a", [ev(1)])  # committed despite the callback's failure
    assert store.last_position() == 1
    assert [r.position for r in sub.poll_batch(0)] == [1]
    assert "wake callback failed" in caplog.text
    sub.close()

# -- files that are not ours, full disks, damaged pages --------------------------------------------


def sqlite_file(path, *statements: str) -> bytes:
    conn = sqlite3.connect(path)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()
    return path.read_bytes()


EVENTS_TABLE = ("CREATE TABLE events (position INTEGER PRIMARY KEY, stream_id TEXT, version INTEGER, type TEXT, "
                "data TEXT, recorded_at INTEGER)")


@pytest.mark.parametrize("statements, reason", [
    ((EVENTS_TABLE,), "its events table was not made by forge_actors"),
    ((EVENTS_TABLE, "PRAGMA application_id = 7"), "another application (application_id 7)"),
    (("CREATE TABLE checkpoints (name TEXT)",), "other tables (checkpoints)"),
    (("CREATE TABLE customers (id INTEGER)",), "other tables (customers)"),
])
@pytest.mark.parametrize("create", [True, False])
def test_sqlite_a_refused_file_is_left_byte_for_byte_as_it_was(tmp_path, statements, reason, create):
    path = tmp_path / "theirs.db"
    before = sqlite_file(path, *statements)
    with pytest.raises(NotAnEventLogError, match=re.escape(reason)):
        EventStore(path, create=create)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["theirs.db"]  # no -wal, no -shm


def test_sqlite_an_empty_file_becomes_a_log_only_when_asked_to_create(tmp_path):
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    with pytest.raises(NotAnEventLogError, match="no events table"):
        EventStore(path, create=False)
    assert path.read_bytes() == b""
    with EventStore(path) as s:
        s.append("a", [ev(1)])


def test_sqlite_a_new_log_carries_the_marker_and_the_schema_version(tmp_path):
    with EventStore(tmp_path / "log.db") as s:
        s.append("a", [ev(1)])
    conn = sqlite3.connect(tmp_path / "log.db")
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.execute("PRAGMA user_version = 0")  # as logs made before the version was recorded
    conn.commit()
    conn.close()
    with EventStore(tmp_path / "log.db", create=False) as s:
        assert s.stream_version("a") == 1
    sqlite_file(tmp_path / "log.db", f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(NotAnEventLogError, match="newer layout"):
        EventStore(tmp_path / "log.db")


def test_sqlite_opening_a_complete_log_writes_nothing(tmp_path, monkeypatch):
    with EventStore(tmp_path / "log.db") as s:
        s.append("a", [ev(1)])
    statements: list[str] = []
    connect = EventStore._connect

    def traced(self, write=False):
        conn = connect(self, write)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(EventStore, "_connect", traced)
    with EventStore(tmp_path / "log.db", create=False) as s:
        assert s.last_position() == 1
    assert not [sql for sql in statements if sql.split()[0].upper() in ("BEGIN", "CREATE", "INSERT", "UPDATE")]


def full_disk(store: EventStore, free_pages: int = 0) -> None:
    """Let the store's file grow by ``free_pages`` pages only: then SQLite says SQLITE_FULL."""
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages + free_pages}")


def big(n: int) -> NewEvent:
    return NewEvent("Thing", json.dumps({"n": n, "pad": "x" * 3000}))


def test_sqlite_a_full_disk_is_a_typed_error_that_loses_nothing_committed(sqlite_store):
    store = sqlite_store
    store.append("a", [ev(1), ev(2)])
    full_disk(store)
    with pytest.raises(DiskFullError) as info:
        store.append("a", [big(i) for i in range(10)], 2)
    assert str(info.value) == (f"disk full writing {store.path}: the last appends were not written; nothing "
                               "committed was lost; free space and try again")
    assert isinstance(info.value, LogWriteError) and isinstance(info.value.__cause__, sqlite3.OperationalError)
    assert [e.version for e in store.read_stream("a")] == [1, 2]  # reads still work
    full_disk(store, 1000)  # space again: the same append goes in
    assert store.append("a", [big(i) for i in range(10)], 2).last_version == 12


def test_sqlite_a_write_transaction_on_a_full_disk_raises_typed_and_releases_the_lock(sqlite_store):
    store = sqlite_store
    full_disk(store)
    with pytest.raises(DiskFullError):
        with store.write_transaction() as conn:
            conn.execute("CREATE TABLE projection (x TEXT)")
            conn.executemany("INSERT INTO projection VALUES (?)", [("x" * 3000,)] * 10)
    full_disk(store, 1000)
    store.append("a", [ev(1)])  # neither the lock nor a transaction was left behind


def test_sqlite_the_writer_reports_the_full_disk_not_the_version_gap_it_leaves(sqlite_store):
    store = sqlite_store
    with BatchingWriter(store, max_delay=60) as writer:
        writer.append("s", [ev(1)], 0).wait()
        full_disk(store)
        lost = writer.append("s", [big(i) for i in range(5)], 1)
        with pytest.raises(DiskFullError):
            lost.wait()
        assert isinstance(writer.write_failure("s"), DiskFullError) and writer.write_failure("t") is None
        # The next append expects the versions that never landed: it fails for the same reason.
        with pytest.raises(DiskFullError):
            writer.append("s", [ev(7)], 6).wait()
        with pytest.raises(ConcurrencyError):
            writer.append("t", [ev(1)], 3).wait()  # another stream's own gap stays a ConcurrencyError
        full_disk(store, 1000)
        assert writer.append("s", [ev(2)], 1).wait().last_version == 2  # resumed from the log
        assert writer.write_failure("s") is None


def test_sqlite_a_log_locked_past_the_busy_timeout_is_a_typed_error_that_changes_nothing(tmp_path):
    path = tmp_path / "log.db"
    with EventStore(path) as first:
        first.append("a", [ev(1)])
    with EventStore(path, busy_timeout_ms=50) as store:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        try:
            with pytest.raises(LogWriteError, match="locked by another process") as info:
                store.append("a", [ev(2)], 1)
            assert "wait for the other process" in str(info.value)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert store.append("a", [ev(2)], 1).last_version == 2  # free again: the same append goes in


def test_sqlite_a_damaged_page_is_a_typed_error_naming_the_file(tmp_path):
    path = tmp_path / "log.db"
    with EventStore(path) as s:
        s.append("a", [big(i) for i in range(40)])
    pages = path.stat().st_size // 4096
    assert pages > 10
    with path.open("r+b") as file:  # clobber the b-tree headers of a few pages in the middle
        for page in range(pages // 2, pages // 2 + 3):
            file.seek(page * 4096)
            file.write(b"\xff" * 64)
    with pytest.raises(CorruptLogError) as info:  # at opening (quick_check; tests/eventstore/test_damaged_logs.py)
        EventStore(path, create=False)
    assert info.value.path == str(path) and ".recover" in str(info.value)


# -- leases -----------------------------------------------------------------------------------------


def lease_rows(store) -> list[tuple]:
    return store.query("SELECT name, owner, expires_at FROM leases ORDER BY name")


def test_the_lease_table_appears_with_the_first_lease_not_with_the_log(store, leases):
    assert not store.has_table("leases")
    assert leases.holder("x") is None  # reading writes nothing
    assert not store.has_table("leases")
    leases.acquire("x", "a", 5)
    assert store.has_table("leases")


def test_a_free_lease_is_taken_and_a_held_one_refused_naming_its_owner(store, leases):
    lease = leases.acquire("session:1", "engine-a", 5)
    assert lease == Lease("session:1", "engine-a", leases._clock() + 5 * 10**9, leases._clock(), epoch=1)
    leases._clock.advance(2)
    with pytest.raises(LeaseHeldError) as held:
        leases.acquire("session:1", "engine-b", 5)
    assert (held.value.name, held.value.owner, held.value.expires_in) == ("session:1", "engine-a", 3.0)
    assert "engine-a" in str(held.value) and "3.0 s" in str(held.value)
    assert leases.holder("session:1") == lease  # the refusal changed nothing
    assert leases.acquire("session:2", "engine-b", 5).owner == "engine-b"  # names are independent


def test_an_expired_lease_is_taken_by_another_owner(leases):
    leases.acquire("n", "a", 5)
    leases._clock.advance(5)
    assert leases.holder("n") is None
    taken = leases.acquire("n", "b", 5)
    assert taken.owner == "b" and taken.acquired_at == leases._clock()


def test_an_expired_lease_is_still_recorded_until_released(leases):
    assert leases.recorded("n") is None
    leases.acquire("n", "a", 5)
    leases._clock.advance(5)
    assert leases.holder("n") is None and leases.recorded("n").owner == "a"  # who drove it last
    assert leases.release("n", "a") and leases.recorded("n") is None


def test_acquiring_ones_own_lease_extends_it(leases):
    first = leases.acquire("n", "a", 5)
    leases._clock.advance(4)
    again = leases.acquire("n", "a", 5)
    assert again.acquired_at == first.acquired_at and again.expires_at == leases._clock() + 5 * 10**9


def test_a_stale_check_takes_a_lease_over_at_once_and_sees_only_live_foreign_ones(leases):
    seen: list[Lease] = []
    leases.acquire("n", "a", 5)
    with pytest.raises(LeaseHeldError):
        leases.acquire("n", "b", 5, stale=lambda lease: seen.append(lease) or False)
    assert [lease.owner for lease in seen] == ["a"]
    assert leases.acquire("n", "b", 5, stale=lambda lease: True).owner == "b"
    seen.clear()
    leases.acquire("n", "b", 5, stale=lambda lease: seen.append(lease) or False)  # ours: not asked
    leases.acquire("free", "b", 5, stale=lambda lease: seen.append(lease) or False)
    assert seen == []


def test_renew_extends_a_lease_still_held_even_past_expiry(leases):
    leases.acquire("n", "a", 5)
    leases._clock.advance(7)  # expired, but nobody took it
    renewed = leases.renew("n", "a", 5)
    assert renewed.expires_at == leases._clock() + 5 * 10**9 and leases.holder("n") == renewed


def test_renew_of_a_lease_taken_or_released_meanwhile_is_lost(leases):
    leases.acquire("n", "a", 5)
    leases._clock.advance(6)
    leases.acquire("n", "b", 5)
    with pytest.raises(LeaseLostError) as lost:
        leases.renew("n", "a", 5)
    assert (lost.value.name, lost.value.owner, lost.value.holder) == ("n", "a", "b")
    assert leases.holder("n").owner == "b"  # untouched
    leases.release("n", "b")
    with pytest.raises(LeaseLostError, match="no longer recorded"):
        leases.renew("n", "a", 5)


def test_release_frees_only_ones_own_lease(store, leases):
    leases.acquire("n", "a", 5)
    assert leases.release("n", "b") is False and leases.holder("n").owner == "a"
    assert leases.release("n", "a") is True and leases.holder("n") is None and leases.recorded("n") is None
    assert lease_rows(store) == [("n", "", 0)]  # the row stays, ownerless, for its epoch (tests/eventstore/test_fencing.py)
    assert leases.release("n", "a") is False
    assert leases.acquire("n", "b", 5).owner == "b"


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan"), "5", True])
def test_bad_lease_arguments_are_rejected(leases, ttl):
    with pytest.raises(ValueError, match="ttl"):
        leases.acquire("n", "a", ttl)
    with pytest.raises(ValueError, match="name"):
        leases.acquire("", "a", 5)
    with pytest.raises(ValueError, match="owner"):
        leases.renew("n", "", 5)


def test_leases_need_an_open_store(log_target):
    store = open_log(log_target)
    leases = LogLeases(store)
    store.close()
    with pytest.raises(StoreClosedError):
        leases.acquire("n", "a", 5)


def test_leases_use_the_wall_clock_not_the_event_clock(log_target):
    with open_log(log_target, clock=lambda: 1) as store:  # a faked event clock, as tests use
        lease = LogLeases(store).acquire("n", "a", 5)
        assert abs(lease.acquired_at - time.time_ns()) < 60 * 10**9
