"""What only the PostgreSQL backend has to get right: databases that are not ours, schemas, credentials,
a server that is gone or comes back, NOTIFY across processes, leases and projections shared by
processes, copying logs between the backends. (The contract both backends keep: test_eventstore.py.)"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import threading
import traceback
import urllib.parse
from pathlib import Path

import pytest
from eventstore_support import run_together
from postgres_support import ThrowawayPostgres, start_again, stop_keeping_data

from eventstore import (
    NO_STREAM,
    ConcurrencyError,
    EventStore,
    LeaseHeldError,
    LeaseLostError,
    LogCopyError,
    LogLeases,
    LogUnavailableError,
    LogWriteError,
    NewEvent,
    NotAnEventLogError,
    ProjectionRunner,
    RecordedEvent,
    StoreClosedError,
    Transaction,
    copy_log,
    open_log,
)
from eventstore import postgres as pg_backend
from eventstore.postgres import PostgresEventStore
from eventstore.subscription import Subscription

psycopg = pytest.importorskip("psycopg")

CTX = multiprocessing.get_context("spawn")


def ev(n: int) -> NewEvent:
    return NewEvent("Thing", json.dumps({"n": n}))


def tables_of(url: str, schema: str = "public") -> dict[str, list[tuple]]:
    """Every table of ``schema`` with its rows, read with a connection of our own."""
    with psycopg.connect(url, autocommit=True) as conn:
        names = [row[0] for row in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY table_name",
            (schema,))]
        return {name: conn.execute(f'SELECT * FROM "{schema}"."{name}" ORDER BY 1').fetchall() for name in names}


def run_sql(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def in_schema(url: str, schema: str) -> str:
    return f"{url}?options={urllib.parse.quote(f'-csearch_path={schema}')}"


# -- the layout, and databases that are not ours -----------------------------------------------------


def test_the_layout_is_the_documented_table(postgres_url):
    with open_log(postgres_url) as store:
        assert isinstance(store, PostgresEventStore) and store.dialect == "postgresql"
    with psycopg.connect(postgres_url) as conn:
        columns = [row[0] for row in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'events' ORDER BY ordinal_position")]
        assert columns == ["position", "stream_id", "version", "type", "data", "recorded_at"]
        unique = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'events'::regclass AND contype = 'u'"
        ).fetchall()
        assert unique == [("UNIQUE (stream_id, version)",)]
        meta = dict(conn.execute("SELECT key, value FROM eventstore_meta").fetchall())
        assert meta == {"application": "eventstore", "schema_version": "1"}


def test_an_append_waits_for_the_commit_lock_and_numbers_after_its_holder(postgres_url):
    """Commit order = position order: the PostgreSQL variant of SQLite's BEGIN IMMEDIATE test."""
    with open_log(postgres_url) as store, psycopg.connect(postgres_url) as holder:
        store.append("a", [ev(1)])
        holder.execute("LOCK TABLE events IN EXCLUSIVE MODE")
        holder.execute("INSERT INTO events VALUES (2, 'other', 1, 'Thing', '{}', 0)")
        results: list = []
        appender = threading.Thread(target=lambda: results.append(store.append("a", [ev(2)], 1)))
        appender.start()
        waiting = 0
        for _ in range(600):  # until the append waits for the lock (bounded; no timing asserted)
            waiting = holder.execute(
                "SELECT count(*) FROM pg_locks WHERE relation = 'events'::regclass AND NOT granted").fetchone()[0]
            if waiting:
                break
            threading.Event().wait(0.05)
        assert waiting == 1 and results == []
        assert store.last_position() == 1  # plain reads do not wait for the lock
        holder.commit()
        appender.join(30)
        assert results[0].first_position == 3  # numbered after the holder's row, which it could not see before
        assert [(e.position, e.stream_id) for e in store.read_all()] == [(1, "a"), (2, "other"), (3, "a")]


def has_append_function(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_proc WHERE proname = 'eventstore_append'").fetchone() is not None


def test_a_log_without_the_append_function_gets_it_or_appends_the_long_way(postgres_url):
    """A log made before ``eventstore_append`` existed: opened with create=False it is left as it is
    and appends in a transaction of its own (the lock, the numbering, the notice, the same result);
    opened to create, it gets the function."""
    with open_log(postgres_url) as store:
        store.append("a", [ev(1)])
    assert has_append_function(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP FUNCTION eventstore_append")
    with open_log(postgres_url, create=False) as store:
        assert store.append("a", [ev(2)], 1).first_position == 2
        assert store.append("b", [ev(1), ev(2)], NO_STREAM).last_position == 4
    assert not has_append_function(postgres_url)
    with open_log(postgres_url) as store:
        assert store.append("a", [ev(3)], 2).first_position == 5
        assert [(e.position, e.stream_id, e.version) for e in store.read_all()] == [
            (1, "a", 1), (2, "a", 2), (3, "b", 1), (4, "b", 2), (5, "a", 3)]
    assert has_append_function(postgres_url)


def test_an_append_with_a_stale_version_cache_starts_over_under_the_lock(postgres_url):
    """Another store wrote to a stream this one has cached: the one-statement append fails on
    UNIQUE(stream_id, version) and is made again from the table, its expected version still checked."""
    with open_log(postgres_url) as ours, open_log(postgres_url) as theirs:
        ours.append("a", [ev(1)])
        theirs.append("a", [ev(2)], 1)
        assert ours.append("a", [ev(3)]).first_version == 3  # ANY: lands after theirs
        theirs.append("a", [ev(4)], 3)
        with pytest.raises(ConcurrencyError):
            ours.append("a", [ev(5)], 3)  # the cache said 3: the table says 4
        assert [e.version for e in ours.read_stream("a")] == [1, 2, 3, 4]


FOREIGN_EVENTS = ("CREATE TABLE events (id SERIAL PRIMARY KEY, what TEXT)",
                  "INSERT INTO events (what) VALUES ('theirs'), ('also theirs')")


@pytest.mark.parametrize("create", [True, False])
def test_a_foreign_events_table_is_refused_and_left_untouched(postgres_url, create):
    run_sql(postgres_url, *FOREIGN_EVENTS)
    before = tables_of(postgres_url)
    with pytest.raises(NotAnEventLogError, match="was not made by forge_actors"):
        open_log(postgres_url, create=create)
    assert tables_of(postgres_url) == before  # no eventstore_meta, no checkpoints, their rows as they were


def test_a_newer_schema_version_is_refused(postgres_url):
    open_log(postgres_url).close()
    run_sql(postgres_url, "UPDATE eventstore_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(NotAnEventLogError, match=r"newer layout \(schema version 99"):
        open_log(postgres_url)
    with pytest.raises(NotAnEventLogError, match="newer layout"):
        open_log(postgres_url, create=False)


def test_another_applications_meta_table_is_refused(postgres_url):
    run_sql(postgres_url, "CREATE TABLE eventstore_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "INSERT INTO eventstore_meta VALUES ('application', 'someone-else')")
    before = tables_of(postgres_url)
    with pytest.raises(NotAnEventLogError, match="another application"):
        open_log(postgres_url)
    assert tables_of(postgres_url) == before


def test_create_false_on_an_empty_database_is_refused_and_writes_nothing(postgres_url):
    with pytest.raises(NotAnEventLogError, match="no events table"):
        open_log(postgres_url, create=False)
    assert tables_of(postgres_url) == {}
    with open_log(postgres_url) as store:  # asked to create: it does
        store.append("a", [ev(1)])
    with open_log(postgres_url, create=False) as store:
        assert store.last_position() == 1


def test_stores_opening_one_empty_database_at_once_make_one_log(postgres_url):
    start = threading.Barrier(4)
    opened: list = []
    failures: list[BaseException] = []

    def open_and_append(k: int) -> None:
        start.wait()
        try:
            store = open_log(postgres_url)
            store.append(f"s{k}", [ev(k)], NO_STREAM)
            opened.append(store)
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=open_and_append, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert failures == []
        assert sorted(e.position for e in opened[0].read_all()) == [1, 2, 3, 4]
        assert tables_of(postgres_url)["eventstore_meta"] == [("application", "eventstore"), ("schema_version", "1")]
    finally:
        for store in opened:
            store.close()


def test_a_search_path_naming_no_schema_is_refused(postgres_url):
    with pytest.raises(NotAnEventLogError, match="no schema"):
        open_log(in_schema(postgres_url, "nowhere"))


# -- two logs in two schemas of one database ------------------------------------------------------------


def test_a_notice_wakes_only_the_subscriptions_of_the_streams_it_names(postgres_url, monkeypatch):
    """Another process's commit to stream b does not make this store's subscription of stream a read
    the log; a commit to a does, and a whole-log subscription is woken by both."""
    monkeypatch.setattr(pg_backend, "QUIET_READ_SECONDS", 3600.0)
    woken: list[str] = []
    nudge = Subscription.nudge

    def counted(subscription: Subscription) -> None:
        woken.append(subscription._stream_id or "all")
        nudge(subscription)

    monkeypatch.setattr(Subscription, "nudge", counted)
    with open_log(postgres_url) as writer, open_log(postgres_url) as follower:
        listening = threading.Event()
        nudge_all = follower._subscribers.nudge_all

        def first_nudge() -> None:  # the listener's nudge once it is LISTENing (maybe before both exist)
            nudge_all()
            listening.set()

        follower._subscribers.nudge_all = first_nudge
        of_a = follower.subscribe(stream_id="a", poll_interval=3600.0)
        everything = follower.subscribe(poll_interval=3600.0)
        assert of_a.poll(0.01) is None and everything.poll(0.01) is None
        assert listening.wait(30)
        woken.clear()  # from here on only notices wake anyone
        writer.append("b", [ev(1)])
        assert everything.poll(timeout=60).stream_id == "b"
        writer.append("a", [ev(2)])
        assert of_a.poll(timeout=60).stream_id == "a"
        assert everything.poll(timeout=60).stream_id == "a"
        assert sorted(woken) == ["a", "all", "all"]  # b's notice (handled first) woke only "all"


def test_a_subscription_that_expects_no_other_writer_starts_no_listener(postgres_url, monkeypatch):
    """Following a stream this process writes (expect_others=False) costs other processes' commits
    nothing here: no LISTEN. Its own commits arrive at once; another process's at the quiet read."""
    monkeypatch.setattr(pg_backend, "QUIET_READ_SECONDS", 0.2)
    with open_log(postgres_url) as mine, open_log(postgres_url) as other:
        sub = mine.subscribe(stream_id="s", poll_interval=0.01, expect_others=False)
        assert sub.poll(0.01) is None
        mine.append("s", [ev(1)])
        assert sub.poll(timeout=5).version == 1
        other.append("s", [ev(2)])
        assert sub.poll(timeout=30).version == 2  # found by reading the log after a quiet spell
        assert mine._listener is None
        mine.subscribe(stream_id="s")  # one that expects others starts it
        assert mine._listener is not None


def test_two_logs_in_two_schemas_are_isolated(postgres_url, monkeypatch):
    monkeypatch.setattr(pg_backend, "QUIET_READ_SECONDS", 3600.0)  # only NOTIFY wakes a subscription here
    run_sql(postgres_url, "CREATE SCHEMA alpha", "CREATE SCHEMA beta")
    alpha_url, beta_url = in_schema(postgres_url, "alpha"), in_schema(postgres_url, "beta")
    with open_log(alpha_url) as alpha, open_log(beta_url) as beta, open_log(alpha_url) as alpha_follower:
        assert alpha._channel != beta._channel and alpha._lock_key != beta._lock_key
        nudges: list[int] = []
        listening = threading.Event()
        original = alpha_follower._subscribers.nudge_all

        def counted() -> None:
            nudges.append(1)
            listening.set()
            original()

        original_nudge = alpha_follower._subscribers.nudge

        def counted_nudge(streams: list[str] | None) -> None:
            nudges.append(1)
            original_nudge(streams)

        monkeypatch.setattr(alpha_follower._subscribers, "nudge_all", counted)
        monkeypatch.setattr(alpha_follower._subscribers, "nudge", counted_nudge)
        sub = alpha_follower.subscribe(poll_interval=3600.0)
        assert sub.poll(0.01) is None
        assert listening.wait(30)  # the listener's first nudge comes once it is LISTENing
        beta.append("b", [ev(1), ev(2)])
        alpha.append("a", [ev(3)])
        received = sub.poll(timeout=60)
        assert received is not None and (received.stream_id, received.position) == ("a", 1)
        assert len(nudges) == 2  # its start, and alpha's commit: beta's commit woke nobody here
        assert [e.stream_id for e in alpha.read_all()] == ["a"]
        assert [(e.stream_id, e.position) for e in beta.read_all()] == [("b", 1), ("b", 2)]
        sub.close()
    assert set(tables_of(postgres_url, "alpha")) == set(tables_of(postgres_url, "beta")) == {
        "checkpoints", "eventstore_meta", "events"}
    assert tables_of(postgres_url, "public") == {}


# -- credentials ----------------------------------------------------------------------------------------

SECRET = "Zq7-unguessable-Pw-41"
ROLE = "forge_pw_user"


@pytest.fixture(scope="module")
def password_server(postgres_server: ThrowawayPostgres) -> ThrowawayPostgres:
    """The run's server, asking ROLE (a superuser of the tests) for its password over TCP (the
    other users keep trust authentication)."""
    hba = postgres_server.directory / "data" / "pg_hba.conf"
    lines = hba.read_text()
    rule = f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n"
    if rule not in lines:
        hba.write_text(rule + lines)  # the first matching line wins
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone():
            admin.execute(f"CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD '{SECRET}'")
        admin.execute("SELECT pg_reload_conf()")
    # The reload is a signal: wait until the server asks for the password (a bounded wait, no timing).
    for _ in range(200):
        try:
            psycopg.connect(f"postgresql://{ROLE}:wrong@127.0.0.1:{postgres_server.port}/postgres").close()
        except psycopg.OperationalError as exc:
            if "password authentication failed" in str(exc):
                return postgres_server
        threading.Event().wait(0.05)
    raise AssertionError("the server never asked for the password")


def with_password(url: str, password: str = SECRET) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts._replace(netloc=f"{ROLE}:{urllib.parse.quote(password)}@{parts.hostname}:{parts.port}").geturl()


def everything_said(exc: BaseException) -> str:
    """The error as a user or a log could see it: its message, its causes and the traceback."""
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(getattr(exc, "path", ""))


def test_the_password_is_in_no_repr_path_error_or_log_record(password_server, postgres_url, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, psycopg's and psycopg_pool's included
    for name in ("psycopg", "psycopg.pool", "psycopg_pool", "eventstore"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    url = with_password(postgres_url)
    query_url = f"{postgres_url.replace('postgres@', f'{ROLE}@')}?password={SECRET}&application_name=t"
    said: list[str] = []
    for target in (url, query_url):
        with open_log(target) as store:
            said += [repr(store), store.path, str(store)]
            sub = store.subscribe(after=store.last_position())
            store.append("a", [ev(1)])
            assert sub.poll(5) is not None
            sub.close()
            said.append(repr(LogLeases(store)))
    assert all(ROLE in text for text in said[:2])  # the user stays: it says where the log is
    with pytest.raises(LogUnavailableError) as bad_password:
        open_log(with_password(postgres_url, "not-" + SECRET))
    assert "password authentication failed" in str(bad_password.value)
    said.append(everything_said(bad_password.value))
    gone = with_password(f"postgresql://postgres@127.0.0.1:{closed_port()}/nowhere")
    with pytest.raises(LogUnavailableError) as no_server:
        open_log(gone, connect_timeout=5)
    said.append(everything_said(no_server.value))
    records = [record.getMessage() + repr(record.args) for record in caplog.records]
    said += records
    assert not [text for text in said if SECRET in text]


@pytest.mark.parametrize("url", [
    "postgresql://u:p%zzSECRET@127.0.0.1:1/db",  # libpq quotes the bad percent-encoding: the password
    "postgresql://u@127.0.0.1:1/db?password=SE%zzCRET",
    "postgresql://u:SECRET@[::1/db",  # an unclosed bracket: libpq quotes the whole URL
    "postgresql://u:SEC#RET@127.0.0.1:1/db",  # a '#' in the password must not end the authority
    "postgresql://u:SEC?RET@127.0.0.1:1/db",
])
def test_a_url_the_driver_cannot_use_is_refused_without_quoting_its_password(url, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises((NotAnEventLogError, LogUnavailableError)) as info:
        open_log(url, connect_timeout=2)
    said = everything_said(info.value) + "".join(record.getMessage() for record in caplog.records)
    for fragment in ("SECRET", "SE%zzCRET", "SEC", "RET"):
        assert fragment not in said


# -- a server that is not there, or goes away ----------------------------------------------------------


def closed_port() -> int:
    """A loopback port nobody listens on (bound then released: the kernel hands it out no sooner)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_server_is_a_typed_error_saying_what_to_do():
    with pytest.raises(LogUnavailableError) as info:
        open_log(f"postgresql://postgres@127.0.0.1:{closed_port()}/forge", connect_timeout=5)
    message = str(info.value)
    assert message.startswith("cannot reach the event log at postgresql://postgres@127.0.0.1:")
    assert "check that the PostgreSQL server is up" in message and "try again" in message


def test_a_store_whose_readers_cannot_connect_leaves_no_pool_behind(postgres_url, monkeypatch):
    import psycopg_pool

    pools: list = []
    real_open = psycopg_pool.ConnectionPool.open

    def never_ready(pool, wait: bool = False, timeout: float = 30.0) -> None:
        real_open(pool, wait=False)  # its workers start, as when the server refuses more connections
        pools.append(pool)
        raise psycopg_pool.PoolTimeout("pool initialization incomplete")

    monkeypatch.setattr(psycopg_pool.ConnectionPool, "open", never_ready)
    with pytest.raises(LogUnavailableError, match="no read connection"):
        open_log(postgres_url, connect_timeout=0.5)
    assert pools and pools[0].closed


def test_a_timeout_under_a_second_is_not_libpqs_wait_for_ever(postgres_url):
    with open_log(postgres_url, connect_timeout=0.5) as store:
        assert store._libpq_timeout == 1


def test_a_server_stopped_mid_use_gives_typed_errors_loses_nothing_and_the_store_reconnects(own_server, monkeypatch):
    monkeypatch.setattr(pg_backend, "QUIET_READ_SECONDS", 3600.0)  # the follower below relies on its listener
    url = own_server.create_database()
    with open_log(url, connect_timeout=1) as store, open_log(url, connect_timeout=1) as follower_store:
        store.append("a", [ev(1), ev(2)], NO_STREAM)
        assert [e.version for e in store.read_stream("a")] == [1, 2]  # the pool holds a reader now
        follower = follower_store.subscribe(poll_interval=3600.0)
        assert [follower.poll(30).position for _ in range(2)] == [1, 2]
        stop_keeping_data(own_server)
        with pytest.raises(LogWriteError) as lost_write:  # the connection is cut mid-way
            store.append("a", [ev(3)], 2)
        assert "check that the PostgreSQL server is up" in str(lost_write.value)
        with pytest.raises(LogWriteError):  # no server to connect again to: the same kind of error
            store.append("a", [ev(3)], 2)
        with pytest.raises(LogWriteError):
            with store.write_transaction() as tx:
                tx.execute("SELECT 1")
        with pytest.raises(LogUnavailableError):
            list(store.read_all())
        with pytest.raises(LogUnavailableError):
            store.last_position()
        start_again(own_server)
        assert [e.version for e in store.read_stream("a")] == [1, 2]  # nothing committed was lost
        assert store.append("a", [ev(3)], 2).last_position == 3  # and nothing of the failed appends landed
        assert [(e.position, e.version) for e in store.read_all()] == [(1, 1), (2, 2), (3, 3)]
        # The other store's listener connected again: its subscription gets the new event (no quiet read).
        got = follower.poll(timeout=60)
        assert got is not None and got.position == 3
        # A restart while nobody used the store: its idle connections are dead, which it finds out
        # only by using them; appends, reads and the follower carry on as if nothing happened.
        stop_keeping_data(own_server)
        start_again(own_server)
        assert store.append("a", [ev(4)], 3).last_position == 4
        with store.write_transaction() as tx:
            tx.execute("CREATE TABLE IF NOT EXISTS after_restart (x BIGINT)")
        assert store.last_position() == 4 and follower_store.last_position() == 4
        got = follower.poll(timeout=60)
        assert got is not None and got.position == 4
        follower.close()


# -- NOTIFY across processes -------------------------------------------------------------------------


def _append_one(url: str) -> None:
    with open_log(url) as store:
        store.append("remote", [NewEvent("Thing", '{"from": "elsewhere"}')])


def test_notify_wakes_a_subscriber_in_another_process(postgres_url, monkeypatch):
    # No quiet read for an hour and a poll that waits as long: only the NOTIFY can deliver it in time.
    monkeypatch.setattr(pg_backend, "QUIET_READ_SECONDS", 3600.0)
    with open_log(postgres_url) as store:
        sub = store.subscribe(poll_interval=3600.0)
        got: list[RecordedEvent] = []
        consumer = threading.Thread(target=lambda: got.append(sub.poll(timeout=3600.0)), daemon=True)
        consumer.start()
        writer = CTX.Process(target=_append_one, args=(postgres_url,))
        writer.start()
        writer.join(60)
        assert writer.exitcode == 0
        consumer.join(60)  # a guard against hanging, not a measure: NOTIFY is what makes it return
        sub.close()
        assert got and got[0] is not None and got[0].stream_id == "remote"


# -- projections: rows and checkpoint in one transaction ----------------------------------------------


class CrashingCounts:
    """Counts events per stream; the process dies (no exception, no rollback of ours) at ``crash_at``."""

    name = "crashing_counts"

    def __init__(self, crash_at: int | None = None) -> None:
        self.crash_at = crash_at

    def setup(self, conn: Transaction) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS crashing_counts (stream_id TEXT PRIMARY KEY, n BIGINT)")

    def apply(self, conn: Transaction, event: RecordedEvent) -> None:
        if event.position == self.crash_at:
            os._exit(3)
        conn.execute("INSERT INTO crashing_counts VALUES (?, 1) ON CONFLICT(stream_id) "
                     "DO UPDATE SET n = crashing_counts.n + 1", (event.stream_id,))


def _project_and_crash(url: str, crash_at: int) -> None:
    store = open_log(url)
    ProjectionRunner(store, CrashingCounts(crash_at), batch_size=5).catch_up()


def test_a_projection_process_dying_mid_batch_rolls_back_rows_and_checkpoint_together(postgres_url):
    with open_log(postgres_url) as store:
        store.append("s", [ev(i) for i in range(12)])
    crashed = CTX.Process(target=_project_and_crash, args=(postgres_url, 8))
    crashed.start()
    crashed.join(60)
    assert crashed.exitcode == 3
    with open_log(postgres_url) as store:
        assert store.checkpoint("crashing_counts") == 5  # the first batch committed, the second never did
        assert store.query("SELECT stream_id, n FROM crashing_counts") == [("s", 5)]
        runner = ProjectionRunner(store, CrashingCounts(), batch_size=5)
        assert runner.catch_up() == 7
        assert store.query("SELECT n FROM crashing_counts") == [(12,)] and runner.position == 12


# -- leases shared by stores and processes -------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000 * 10**9

    def __call__(self) -> int:
        return self.now


def _try_lease(url: str, owner: str, start, results) -> None:
    with open_log(url) as store:
        leases = LogLeases(store)
        start.wait()
        try:
            leases.acquire("session:contested", owner, 60)
            results.put(("won", owner))
        except LeaseHeldError as exc:
            results.put(("held", exc.owner))


def test_of_processes_racing_for_one_lease_exactly_one_wins(postgres_url):
    open_log(postgres_url).close()
    start, results = CTX.Event(), CTX.Queue()
    procs = [CTX.Process(target=_try_lease, args=(postgres_url, f"engine-{k}", start, results)) for k in range(3)]
    run_together(procs, start)
    outcomes = [results.get(timeout=10) for _ in procs]
    winners = [owner for outcome, owner in outcomes if outcome == "won"]
    assert len(winners) == 1
    assert all(owner == winners[0] for outcome, owner in outcomes if outcome == "held")  # the losers name it
    with open_log(postgres_url) as store:
        assert LogLeases(store).holder("session:contested").owner == winners[0]


def test_a_lease_expires_into_another_stores_hands_and_the_first_owner_loses_it(postgres_url):
    clock = Clock()
    with open_log(postgres_url) as first_store, open_log(postgres_url) as second_store:
        first, second = LogLeases(first_store, clock=clock), LogLeases(second_store, clock=clock)
        first.acquire("session:1", "engine-a", 5)
        with pytest.raises(LeaseHeldError, match="engine-a"):
            second.acquire("session:1", "engine-b", 5)
        clock.now += 5 * 10**9  # expired
        assert second.acquire("session:1", "engine-b", 5).owner == "engine-b"
        with pytest.raises(LeaseLostError) as lost:
            first.renew("session:1", "engine-a", 5)
        assert lost.value.holder == "engine-b"
        assert first.holder("session:1").owner == "engine-b"


# -- copying logs between the backends -----------------------------------------------------------------


def recorded(store) -> list[tuple]:
    return [(e.position, e.stream_id, e.version, e.type, e.data, e.recorded_at) for e in store.read_all()]


def sample_log(path: Path) -> EventStore:
    times = iter(range(1_000, 10_000, 7))
    store = EventStore(path, clock=lambda: next(times))
    for i in range(25):
        store.append(f"s{i % 4}", [ev(i), ev(i + 100)][: 1 + i % 2])
    return store


def test_a_log_copied_sqlite_to_postgresql_to_sqlite_is_the_same_log(tmp_path, postgres_url):
    with sample_log(tmp_path / "source.db") as source, open_log(postgres_url) as middle, \
            EventStore(tmp_path / "back.db") as back:
        first = copy_log(source, middle, batch_size=7)
        assert (first.copied, first.already_there, first.last_position) == (source.last_position(), 0,
                                                                             source.last_position())
        copy_log(middle, back, batch_size=1000)
        assert recorded(source) == recorded(middle) == recorded(back)
        assert list(source.streams()) == list(middle.streams()) == list(back.streams())
        # The copy is a live log: appends go on from the copied versions and positions.
        result = middle.append("s0", [ev(999)], source.stream_version("s0"))
        assert result.first_position == source.last_position() + 1


def test_copying_into_a_log_that_is_not_a_prefix_is_refused(tmp_path, postgres_url):
    with sample_log(tmp_path / "source.db") as source, open_log(postgres_url) as target:
        target.append("other", [ev(1), ev(2)])
        before = recorded(target)
        with pytest.raises(LogCopyError, match="not the start of"):
            copy_log(source, target)
        assert recorded(target) == before


def test_copying_into_a_log_that_only_ends_like_the_source_is_refused(tmp_path, postgres_url):
    with sample_log(tmp_path / "source.db") as source, open_log(postgres_url) as target:
        copy_log(source, target)
        last = target.last_position()
        run_sql(postgres_url, "UPDATE events SET data = '{\"n\": -1}' WHERE position = 1")  # another history
        more = EventStore(tmp_path / "more.db")
        copy_log(source, more)
        more.append("s0", [ev(500)])
        with pytest.raises(LogCopyError, match="position 1 differs"):
            copy_log(more, target)
        assert target.last_position() == last
        more.close()


def test_a_read_racing_close_is_a_store_closed_error(postgres_url):
    store = open_log(postgres_url)
    store._pool.close()  # as close() does, after this read passed its check that the store was open
    with pytest.raises(StoreClosedError):
        store.last_position()
    store.close()


def test_an_interrupted_copy_resumes_where_it_stopped(tmp_path, postgres_url):
    class Interrupted(Exception):
        pass

    def stop_after_two(last: int) -> None:
        if last >= 14:
            raise Interrupted

    with sample_log(tmp_path / "source.db") as source, open_log(postgres_url) as target:
        with pytest.raises(Interrupted):
            copy_log(source, target, batch_size=7, on_batch=stop_after_two)
        assert target.last_position() == 14  # two whole batches, nothing of a third
        report = copy_log(source, target, batch_size=7)
        assert (report.already_there, report.copied) == (14, source.last_position() - 14)
        assert recorded(target) == recorded(source)
        again = copy_log(source, target)
        assert (again.copied, again.already_there) == (0, source.last_position())
