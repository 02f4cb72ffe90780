"""The event log on PostgreSQL: the same table and promises as the SQLite log, shared by many
processes on many hosts.

Layout: ``events(position, stream_id, version, type, data, recorded_at)`` with
``UNIQUE(stream_id, version)``, ``checkpoints``, ``eventstore_meta`` (what marks a schema as one
of our logs, and its layout version) and the function ``eventstore_append``, in the schema the
connection's ``search_path`` names first (``?options=-csearch_path%3Dmyschema`` in the URL puts a
log in a schema of its own).

**Commit order = position order.** PostgreSQL sequences hand out numbers at insert time, not
at commit: a transaction holding position 10 may commit after one holding 11, and a reader
that saw 11 and moved on would never see 10. So positions come from no sequence. Every append
transaction first takes the *log's commit lock* (``LOCK TABLE events IN EXCLUSIVE MODE``, which
plain reads do not wait for), then numbers its rows ``max(position) + 1, + 2, ...`` and holds
the lock until it has committed. The next writer's ``max(position)`` is read after that commit,
so positions are dense (no gap, even after a rollback) and visible in order: whoever sees
position N sees every position before it. Subscriptions depend on exactly that. The lock makes
appends from all processes one queue; the batching writer keeps that queue short (one
transaction per batch of deltas).

**One statement per append.** A batch of up to 128 rows is one call of
``eventstore_append`` (rows as a JSON array; versions from the store's cache, which
UNIQUE(stream_id, version) checks): the lock is taken, the rows numbered and inserted, the
notice sent and the transaction committed on the server, in one round trip. So the lock is
never held while the appending process waits for the network or for its GIL (with dozens of
busy threads, that wait was most of the time the lock was held, and every other process
waited with it). A larger batch (COPY inserts it for less than half the server's CPU), a stale
cache, or a log whose function cannot be made (opened with ``create=False``) takes the long way:
BEGIN with the lock, versions read under it, COPY, COMMIT.

**Fences.** A batch with fenced appends (``Fence``) passes its fences to ``eventstore_append``,
which locks each lease's row FOR SHARE under the commit lock and compares its epoch: if any moved
on it raises (SQLSTATE EF001) and writes nothing, and the batch goes the long way, where each
fenced append's lease row is read FOR SHARE and only the stale ones fail (FencedError). The row
lock is what makes the check hold until the commit: a new owner's ``acquire`` updates that row,
so it waits for the append's commit, or the append waits for the acquire's and reads its epoch.
A log made before fences gets the five-argument ``eventstore_append`` when it is next opened.

**Waking followers elsewhere.** Each append transaction also sends ``NOTIFY`` on the log's
channel, which PostgreSQL delivers at commit. A store with subscriptions keeps one connection
listening on it; a notice from another process wakes every subscription to read the log (its
own commits are handed to its subscriptions directly, as on SQLite, and their notices ignored).
A subscription still reads the log after a quiet spell, in case the listener was reconnecting.

**Other writes** (projections, leases, mailboxes: ``write_transaction``) take the log's
advisory transaction lock instead, so they are serialised among themselves as on SQLite but
never wait for appends (a lease's change waits only for an append fenced by that lease, holding
its row).

Connections, all autocommit: one write connection guarded by a lock (appends are one queue
anyway; the other writes say BEGIN), a ``psycopg_pool`` of read connections (each read is one
statement and its own snapshot, so nothing is held between pages), and the listener. The URL's
password never leaves the URL: ``path`` is the URL without it, and is what errors, logs and
``repr`` show.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import select
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Literal, NoReturn

import msgspec

from eventstore.base import SqlEventLog, StaleVersionCache, Statements, format_style
from eventstore.errors import (
    BackendMissingError,
    CorruptLogError,
    DiskFullError,
    EventStoreError,
    LogCopyError,
    LogUnavailableError,
    LogUnavailableWriteError,
    LogWriteError,
    NoEventLogError,
    NotAnEventLogError,
    StoreClosedError,
)
from eventstore.log import SCHEMA_VERSION, Dialect, PendingAppend, RecordedEvent, Row, stage_appends
from eventstore.open import printable_target, redact, url_secrets

try:
    import psycopg
    import psycopg.errors
    import psycopg.sql
    import psycopg_pool
except ImportError:  # pragma: no cover - the error below says what to install
    psycopg = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

#: Read connections at most (opened as needed).
READER_POOL_SIZE: Final = 8
INSTALL: Final = "pip install 'forge-actors[postgres]' (psycopg 3 and psycopg_pool)"
#: What ``eventstore_meta`` says of a schema that holds one of our logs.
APPLICATION: Final = "eventstore"
_SQL: Final = Statements("%s")
_COPY: Final = "COPY events (position, stream_id, version, type, data, recorded_at) FROM STDIN"
#: Rows at most inserted with one multi-row INSERT; more go through COPY, which costs the server
#: and the client less from a handful of rows on (a 14-row INSERT costs about twice a COPY).
_INSERT_ROWS_MAX: Final = 4
#: The usual append, as one statement: the server takes the commit lock, numbers the rows after the
#: last position and inserts them (given as a JSON array of [stream_id, version, type, data,
#: recorded_at]), with the commit's durability and notice. A function, because the position must be
#: read after the lock is granted: a single statement reads the table as it was when it began.
#: ``json``, not ``jsonb``: each element is read once, and converting the whole array to jsonb first
#: costs the server about half as much again.
_APPEND_FUNCTION: Final = """
CREATE OR REPLACE FUNCTION eventstore_append(new_rows json, channel text, notice text, durability text,
                                             fences json)
RETURNS bigint LANGUAGE plpgsql AS $append$
DECLARE
    last_position bigint;
BEGIN
    PERFORM set_config('synchronous_commit', durability, true);
    LOCK TABLE events IN EXCLUSIVE MODE;
    IF fences IS NOT NULL THEN
        -- Each fence's lease row locked FOR SHARE (a new owner's acquire waits for this commit, or
        -- this waits for its), then its epoch compared: any moved on, and nothing is written.
        IF to_regclass('leases') IS NULL THEN
            RAISE EXCEPTION 'fenced append: no leases table' USING ERRCODE = 'EF001';
        END IF;
        PERFORM 1 FROM leases WHERE name IN (SELECT f->>0 FROM json_array_elements(fences) AS f)
            ORDER BY name FOR SHARE;
        IF EXISTS (SELECT 1 FROM json_array_elements(fences) AS f
                   WHERE (f->>1)::bigint IS DISTINCT FROM (SELECT epoch FROM leases WHERE name = f->>0)) THEN
            RAISE EXCEPTION 'fenced append: a lease moved on' USING ERRCODE = 'EF001';
        END IF;
    END IF;
    PERFORM pg_notify(channel, notice);
    SELECT COALESCE(MAX(position), 0) INTO last_position FROM events;
    INSERT INTO events (position, stream_id, version, type, data, recorded_at)
    SELECT last_position + row.n, row.e->>0, (row.e->>1)::bigint, row.e->>2, row.e->>3, (row.e->>4)::bigint
    FROM json_array_elements(new_rows) WITH ORDINALITY AS row(e, n);
    RETURN last_position;
END
$append$
"""
#: What ``eventstore_append`` raises when a fence of the batch is stale (or names no lease): nothing
#: was written, and the batch goes again the long way, where each append's fence is judged on its own.
_FENCE_REFUSED: Final = "EF001"
#: Rows at most appended through ``eventstore_append``: the server inserts them one by one, where COPY
#: inserts many at a time, so past about a hundred rows the transaction with COPY costs less (a
#: 2048-row batch: 10 µs of server CPU per row against 22), and its longer hold of the lock is
#: spread over as many rows.
_ONE_STATEMENT_ROWS_MAX: Final = 128
_CALL_APPEND: Final = "SELECT eventstore_append(%s::json, %s::text, %s::text, %s::text, %s::json)"
_HAS_APPEND_FUNCTION: Final = (  # this very signature, in the log's own schema
    "SELECT 1 FROM pg_proc WHERE oid = to_regprocedure(quote_ident(current_schema()) "
    "|| '.eventstore_append(json, text, text, text, json)')"
)
_HAS_TABLE: Final = (
    "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = %s"
)
#: NOTIFY payloads hold at most 8000 bytes; a longer list of streams is sent as "every stream".
_NOTICE_STREAMS_MAX: Final = 7000
#: ``synchronous`` (SQLite's names, SQLite's promises) as an append transaction's synchronous_commit.
#: NORMAL: a commit survives any crash of the process that made it (the server has it), and a crash
#: of the server or its host may lose the last few hundred milliseconds of commits (never part of
#: one, never out of order) — SQLite's NORMAL, where a power loss may lose the last commits. FULL
#: (and EXTRA): the commit is on the server's disk before append returns.
_SYNCHRONOUS_COMMIT: Final = {"OFF": "off", "NORMAL": "off", "FULL": "on", "EXTRA": "on"}
#: A live subscription's read of the log after silence: NOTIFY wakes it sooner.
QUIET_READ_SECONDS: Final = 1.0
#: How long a read waits for a pooled connection (all busy, or the pool reconnecting after an outage)
#: before it connects on its own, and how long that connection may take (libpq's least: 2 s). A read
#: serves a request whose client is waiting: a server that is up accepts a connection within
#: milliseconds and one that is down refuses it at once, so only a host that drops the packets makes a
#: read wait this long, twice at most (never the store's ``connect_timeout``, 10 s by default, per read).
READ_WAIT_SECONDS: Final = 2.0

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS eventstore_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS events ("
    "position BIGINT PRIMARY KEY, stream_id TEXT NOT NULL, version BIGINT NOT NULL, type TEXT NOT NULL, "
    "data TEXT NOT NULL, recorded_at BIGINT NOT NULL, CONSTRAINT events_stream_version UNIQUE (stream_id, version))",
    "CREATE TABLE IF NOT EXISTS checkpoints (name TEXT PRIMARY KEY, position BIGINT NOT NULL, "
    "updated_at BIGINT NOT NULL)",
)


class PostgresTransaction:
    """The write connection inside one transaction (a ``Transaction``): ``?`` placeholders welcome."""

    dialect: Final = "postgresql"

    __slots__ = ("connection",)

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Any:
        return self.connection.execute(format_style(sql), parameters)

    def has_table(self, name: str) -> bool:
        return self.connection.execute(_HAS_TABLE, (name,)).fetchone() is not None


class PostgresEventStore(SqlEventLog):
    """An append-only event log in a PostgreSQL database (see the module's notes)."""

    _sql = _SQL
    _caller_sql = staticmethod(format_style)
    _hide_driver_errors = True
    #: Each commit waits for the server: longer batches (one COPY each) cost less per event
    #: (about 15% more appends/s than 512 in benchmarks/eventstore.py).
    batch_size = 2048

    def __init__(
        self,
        url: str,
        *,
        create: bool = True,
        clock: Callable[[], int] = time.time_ns,
        pool_size: int = READER_POOL_SIZE,
        connect_timeout: float = 10.0,
        synchronous: str = "NORMAL",
    ) -> None:
        super().__init__(clock)
        self.dialect: Dialect = "postgresql"
        self.path = printable_target(url)
        mode = synchronous.upper()
        if mode not in _SYNCHRONOUS_COMMIT:
            raise ValueError(f"synchronous must be one of {', '.join(_SYNCHRONOUS_COMMIT)}, not {synchronous!r}")
        self.synchronous = mode
        if psycopg is None:
            raise BackendMissingError(self.path, INSTALL)
        self.__url = url  # name-mangled, and never printed: it may hold the password
        #: The URL's password as written and decoded: scrubbed from whatever the driver says.
        self.__secrets = url_secrets(url)
        self._connect_timeout = connect_timeout
        # libpq takes whole seconds, and 0 means "wait for ever": 0.5 s must not become that.
        self._libpq_timeout = max(1, math.ceil(connect_timeout))
        self._read_wait = min(connect_timeout, READ_WAIT_SECONDS)
        #: The server could not be reached at the last try: reads and reconnections do not wait on the
        #: pool (it backs off between attempts) nor longer than READ_WAIT_SECONDS to connect, until one
        #: gets through. (A hint that races are harmless to: each read tries the server anyway.)
        self._server_missing = False
        #: Sent with this store's NOTIFYs, so that its listener knows its own commits.
        self._token = secrets.token_hex(8)
        self._listener: threading.Thread | None = None
        self._listener_stop = threading.Event()
        # Autocommit: an append is one statement, its own transaction; the other writes say BEGIN.
        self._conn = self._connect(autocommit=True)
        self._appends_in_one_statement = False  # until the schema is found to have eventstore_append
        self._pool: Any = None
        try:
            self._channel, self._lock_key = self._identify()
            self._ensure_schema(create)
            self._pool = psycopg_pool.ConnectionPool(
                url, min_size=1, max_size=pool_size, open=False, name="eventstore-readers",
                kwargs={"autocommit": True, "connect_timeout": self._libpq_timeout},
                timeout=connect_timeout,
            )
            self._pool.open(wait=True, timeout=connect_timeout)
        except psycopg_pool.PoolTimeout as exc:
            self._abandon()
            raise LogUnavailableError(self.path, f"no read connection within {connect_timeout:g} s") from exc
        except BaseException:
            self._abandon()
            raise

    def _abandon(self) -> None:
        """A store that failed to open leaves nothing running: its pool would go on trying to
        connect in its own threads (and logging each failure) for minutes."""
        self._conn.close()
        if self._pool is not None:
            self._pool.close(timeout=1)

    # -- connections and schema -------------------------------------------------------

    def _connect(self, *, autocommit: bool, timeout: float | None = None) -> Any:
        """A new connection, waiting at most ``timeout`` seconds (default: the store's connect_timeout)."""
        seconds = self._libpq_timeout if timeout is None else max(1, math.ceil(timeout))
        try:
            return psycopg.connect(self.__url, autocommit=autocommit, connect_timeout=seconds)
        except psycopg.OperationalError as exc:
            unavailable = LogUnavailableError(self.path, self._said(exc))
            # No SQLSTATE: the server never answered (refused, timed out, no such host); one that answered
            # is there, only full ("too many connections") or refusing us, and reads keep using the pool.
            self._server_missing = getattr(exc, "sqlstate", None) is None
            raise unavailable from None
        except psycopg.ProgrammingError as exc:  # e.g. a URL libpq cannot parse
            raise NotAnEventLogError(self.path, f"it is not a usable PostgreSQL URL ({self._said(exc)})") from None

    def _said(self, exc: BaseException) -> str:
        """The first line of what the driver said, without the password: libpq quotes the part of
        the URL it could not parse (an invalid percent-encoding in the password, say)."""
        return redact(_first_line(exc), self.__secrets)

    def _identify(self) -> tuple[str, int]:
        """The log's NOTIFY channel and advisory-lock key, both derived from its schema: two logs in
        one database (different schemas) neither wake nor block each other."""
        schema = self._conn.execute("SELECT current_schema()").fetchone()[0]
        if schema is None:
            raise NotAnEventLogError(self.path, "its search_path names no schema that exists")
        digest = hashlib.sha256(f"eventstore:{schema}".encode()).digest()
        return f"eventstore_{digest[:8].hex()}", int.from_bytes(digest[8:16], "big", signed=True)

    def _ensure_schema(self, create: bool) -> None:
        """Refuse a schema that is not one of our logs; make what is missing (only then writing)."""
        conn = self._conn
        try:
            with conn.transaction():
                complete = self._shape_is_complete(conn, create)
                has_function = complete and self._has_append_function(conn)
                if has_function or (complete and not create):  # nothing to make, or not ours to make
                    self._appends_in_one_statement = has_function
                    return
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))  # two processes creating one log
                if not self._shape_is_complete(conn, create):
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO eventstore_meta (key, value) VALUES ('application', %s), ('schema_version', %s) "
                        "ON CONFLICT (key) DO NOTHING", (APPLICATION, str(SCHEMA_VERSION)),
                    )
                if not self._has_append_function(conn):  # a log made before the function (or fences) gets it
                    conn.execute(_APPEND_FUNCTION)
                self._appends_in_one_statement = True
        except BaseException as exc:
            self._failed_write(exc)

    @staticmethod
    def _has_append_function(conn: Any) -> bool:
        return conn.execute(_HAS_APPEND_FUNCTION).fetchone() is not None

    def _shape_is_complete(self, conn: Any, create: bool) -> bool:
        """Whether the schema holds a complete log; raises NotAnEventLogError for one we must not touch."""
        tables = {row[0] for row in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_name IN ('events', 'checkpoints', 'eventstore_meta')"
        )}
        meta: dict[str, str] = {}
        if "eventstore_meta" in tables:
            meta = dict(conn.execute("SELECT key, value FROM eventstore_meta").fetchall())
        if "events" in tables and meta.get("application") != APPLICATION:
            raise NotAnEventLogError(
                self.path, "its events table was not made by forge_actors (no eventstore_meta marker), so it is "
                           "left alone: point the URL at another database or schema")
        if meta and meta.get("application") != APPLICATION:
            raise NotAnEventLogError(self.path, f"its eventstore_meta names another application "
                                                f"({meta.get('application')!r})")
        version = int(meta.get("schema_version", "0") or 0)
        if version > SCHEMA_VERSION:
            raise NotAnEventLogError(
                self.path, f"it has a newer layout (schema version {version}; this version of the event store "
                           f"reads up to {SCHEMA_VERSION}): upgrade forge_actors to open it")
        if "events" not in tables and not create:
            raise NoEventLogError(self.path, "it has no event log (no events table)")
        return {"events", "checkpoints", "eventstore_meta"} <= tables

    def _rollback(self) -> None:
        conn = self._conn
        if conn.closed:
            return
        try:
            conn.rollback()
        except psycopg.Error as exc:  # the transaction's own error is the one worth raising
            logger.warning("rolling back a failed transaction on %s failed too: %s", self.path, self._said(exc))

    def _typed_write(self, exc: BaseException) -> EventStoreError | None:
        return self._typed(exc, "writing")

    def _begin_write_transaction(self) -> PostgresTransaction:
        # Leases, mail and checkpoints are few and small: always committed to disk before returning.
        conn, cursor = self._begun("SELECT set_config('synchronous_commit', 'on', true), "
                                   f"pg_advisory_xact_lock({int(self._lock_key)})")
        cursor.close()
        return PostgresTransaction(conn)

    def _commit_write_transaction(self) -> None:
        self._conn.commit()

    def _typed(self, exc: BaseException, doing: Literal["reading", "writing"]) -> EventStoreError | None:
        """The store's error for what PostgreSQL said; None for anything else (a bug of ours, say)."""
        return _typed_error(self.path, exc, doing, self._said(exc))

    def _writable_connection(self) -> Any:
        """The write connection, opened again if the last one broke (a server restart, say)."""
        if self._conn.closed or self._conn.broken:
            logger.warning("the connection to %s was lost; connecting again", self.path)
            try:
                self._conn = self._connect(autocommit=True,
                                           timeout=self._read_wait if self._server_missing else None)
            except LogUnavailableError as exc:
                # A write that cannot reach the server is a failed write, like one cut off mid-way:
                # callers of append catch LogWriteError, whichever of the two it was.
                raise LogUnavailableWriteError(self.path, f"cannot reach the database ({exc.reason})",
                                               remedy="check that the PostgreSQL server is up") from None
        return self._conn

    # -- writing ----------------------------------------------------------------------

    def _begun(self, first_statement: str) -> tuple[Any, Any]:
        """(the write connection, a cursor on it) inside a transaction begun with ``first_statement``
        (sent with the BEGIN, in one round trip: so it takes no parameters).

        A write connection that turns out dead at that first statement (the server restarted while
        it sat idle) is replaced once and the statement run again: nothing of the transaction had
        happened yet. A connection lost later in a transaction is the caller's LogWriteError."""
        for attempt in (1, 2):
            conn = self._writable_connection()
            cursor = conn.cursor()
            try:
                cursor.execute(f"BEGIN; {first_statement}")
            except psycopg.OperationalError as exc:
                cursor.close()
                if attempt == 1 and conn.broken:
                    logger.warning("the connection to %s was found lost (%s); connecting again", self.path,
                                   self._said(exc))
                    continue
                raise
            return conn, cursor
        raise AssertionError("unreachable")  # pragma: no cover

    def _begin_append_transaction(self, stream_ids: Iterable[str]) -> tuple[Any, Any, int]:
        """(connection, cursor, last position) inside an append transaction holding the commit lock.

        Its first statement, one round trip, takes the lock, sends the notice (delivered at commit)
        and reads the last position."""
        notice = psycopg.sql.Literal(self._notice(stream_ids)).as_string(None)
        conn, cursor = self._begun(
            f"{self._durability}LOCK TABLE events IN EXCLUSIVE MODE; NOTIFY {self._channel}, {notice}; "
            f"{_SQL.max_position}"
        )
        while cursor.nextset():  # to the last statement's result
            pass
        return conn, cursor, int(cursor.fetchone()[0])

    @property
    def _durability(self) -> str:
        """How an append transaction commits (see ``_SYNCHRONOUS_COMMIT``)."""
        return f"SET LOCAL synchronous_commit = {_SYNCHRONOUS_COMMIT[self.synchronous]}; "

    def _notice(self, stream_ids: Iterable[str]) -> str:
        """A commit's NOTIFY payload: this store's token (its listener skips its own commits), then the
        streams written (``*`` when too many to list: a payload holds 8000 bytes), so that other
        processes wake only the subscriptions they concern."""
        streams = ",".join(sorted(set(stream_ids)))
        if len(streams) > _NOTICE_STREAMS_MAX or "\n" in streams:
            streams = "*"
        return f"{self._token}\n{streams}"

    def _commit_once(self, appends: Sequence[PendingAppend], trust_cache: bool) -> tuple[int, list[Row]]:
        if trust_cache and self._appends_in_one_statement \
                and sum(len(p.events) for p in appends) <= _ONE_STATEMENT_ROWS_MAX:
            return self._commit_in_one_statement(appends)
        try:
            conn, cursor, last_position = self._begin_append_transaction(p.stream_id for p in appends)
            with cursor:
                next_position = last_position + 1
                rows, staged = self._stage(cursor, appends, next_position, self._versions if trust_cache else {})
                if rows:
                    self._insert(cursor, next_position, rows)
            conn.commit()
        except psycopg.errors.UniqueViolation as exc:
            self._rollback()
            raise StaleVersionCache from exc
        except BaseException as exc:
            self._failed_write(exc, appends)
        self._versions.update(staged)
        return (next_position + len(rows) - 1 if rows else 0), rows

    def _stage(self, cursor: Any, appends: Sequence[PendingAppend], first_position: int,
               known: dict[str, int], *, check_fences: bool = True) -> tuple[list[Row], dict[str, int]]:
        """``stage_appends`` with the versions of the streams ``known`` lacks read in one statement first;
        the fences checked here, under the commit lock, unless ``check_fences`` is False (the server's
        ``eventstore_append`` checks them)."""
        fetched = self._read_versions(cursor, {p.stream_id for p in appends} - known.keys())
        return stage_appends(
            appends, first_position, known,
            lambda sid: fetched[sid] if sid in fetched else self._read_version(cursor, sid),
            _EpochReader(cursor) if check_fences else None,
        )

    def _commit_in_one_statement(self, appends: Sequence[PendingAppend]) -> tuple[int, list[Row]]:
        """The usual commit: one statement (``eventstore_append``), one round trip, its own transaction.

        The versions come from this process's cache (a stream it has not written yet is read first,
        before any lock): a stale one is caught by UNIQUE(stream_id, version) at insert, and
        ``commit`` starts over under the lock with no cache. The server numbers the positions once it
        holds the commit lock, and commits at once: no work of this process (nor its wait for the
        GIL, under load) happens while other processes wait for the lock."""
        try:
            conn = self._live_write_connection()
            with conn.cursor() as cursor:
                # The server adds the last position, and checks the fences.
                rows, staged = self._stage(cursor, appends, 0, self._versions, check_fences=False)
                if not rows:
                    return 0, rows
                last_position = int(cursor.execute(_CALL_APPEND, (
                    msgspec.json.encode(rows).decode(), self._channel, self._notice(p.stream_id for p in appends),
                    _SYNCHRONOUS_COMMIT[self.synchronous], _fences(appends),
                )).fetchone()[0])
        except psycopg.errors.UniqueViolation as exc:
            raise StaleVersionCache from exc
        except psycopg.Error as exc:
            if exc.sqlstate != _FENCE_REFUSED:
                self._failed_write(exc, appends)
            # A stale fence: nothing was written. The long way judges each append's fence on its own.
            raise StaleVersionCache from exc
        except BaseException as exc:
            self._failed_write(exc, appends)
        for pending in appends:
            if pending.error is None:
                pending.first_position += last_position + 1
        self._versions.update(staged)
        return last_position + len(rows), rows

    def _live_write_connection(self) -> Any:
        """The write connection, replaced first if the server spoke on it while it sat idle: that is
        its goodbye (a restart, an administrator ending the session), which would otherwise be found
        only in answer to the append's statement, leaving unknown whether the server had run it."""
        conn = self._writable_connection()
        if select.select([conn.fileno()], [], [], 0)[0]:
            logger.warning("the server hung up on the idle connection to %s (a restart, say); connecting again",
                           self.path)
            conn.close()
            conn = self._writable_connection()
        return conn

    def _insert_recorded(self, events: Sequence[RecordedEvent]) -> None:
        try:
            conn, cursor, last_position = self._begin_append_transaction({e.stream_id for e in events})
            with cursor:
                self.check_follows(last_position, events[0].position)
                rows = [(e.stream_id, e.version, e.type, e.data, e.recorded_at) for e in events]
                self._insert(cursor, events[0].position, rows)
            conn.commit()
        except psycopg.errors.UniqueViolation as exc:
            self._rollback()
            raise LogCopyError(self.path, f"a stream's version is there already ({self._said(exc)})") from None
        except BaseException as exc:
            self._failed_write(exc)

    @staticmethod
    def _insert(cursor: Any, first_position: int, rows: list[Row]) -> None:
        if len(rows) <= _INSERT_ROWS_MAX:
            marks = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(rows))
            values = [value for index, row in enumerate(rows) for value in (first_position + index, *row)]
            cursor.execute(f"INSERT INTO events (position, stream_id, version, type, data, recorded_at) "
                           f"VALUES {marks}", values)
            return
        with cursor.copy(_COPY) as copy:
            for index, row in enumerate(rows):
                copy.write_row((first_position + index, *row))

    @staticmethod
    def _read_versions(cursor: Any, stream_ids: set[str]) -> dict[str, int]:
        """The current version of each stream, in one statement (0 for a new stream)."""
        if not stream_ids:
            return {}
        found = dict(cursor.execute(
            "SELECT stream_id, MAX(version) FROM events WHERE stream_id = ANY(%s) GROUP BY stream_id",
            (list(stream_ids),),
        ).fetchall())
        return {sid: found.get(sid, 0) for sid in stream_ids}

    @staticmethod
    def _read_version(cursor: Any, stream_id: str) -> int:
        return int(cursor.execute(_SQL.stream_version, (stream_id,)).fetchone()[0])

    # -- reading ----------------------------------------------------------------------

    def _read_rows(self, sql: str, parameters: Sequence[Any]) -> list[tuple[Any, ...]]:
        self._check_open()
        if self._server_missing:  # the pool backs off between its attempts: ask the server now
            return self._read_on_own_connection(sql, parameters)
        used: Any = None
        try:
            with self._pool.connection(timeout=self._read_wait) as conn:
                used = conn
                rows: list[tuple[Any, ...]] = conn.execute(sql, parameters).fetchall()
                return rows
        except psycopg_pool.PoolClosed:  # close() ran after this read had begun
            raise StoreClosedError(f"the event store {self.path} is closed") from None
        except psycopg_pool.PoolTimeout:
            # Every pooled connection is busy, or the pool is backing off after an outage: read on a
            # connection of its own (LogUnavailableError, saying why, when the server is down).
            pass
        except psycopg.Error as exc:
            if not (isinstance(exc, psycopg.OperationalError) and used is not None and used.broken):
                self._failed_read(exc)
            # A pooled connection that sat idle through a server restart is dead, and the pool only
            # finds out by using it (and drops it): read again on a connection of its own (reads change
            # nothing), which also says at once whether the server is there at all.
            logger.info("a pooled connection to %s was lost (%s); reading with another", self.path, self._said(exc))
        return self._read_on_own_connection(sql, parameters)

    def _read_on_own_connection(self, sql: str, parameters: Sequence[Any]) -> list[tuple[Any, ...]]:
        conn = self._connect(autocommit=True, timeout=self._read_wait)  # marks the server missing when it is
        self._server_missing = False
        try:
            rows: list[tuple[Any, ...]] = conn.execute(sql, parameters).fetchall()
            return rows
        except psycopg.Error as exc:
            self._failed_read(exc)
        finally:
            conn.close()

    def _failed_read(self, exc: psycopg.Error) -> NoReturn:
        """Raise what the server said of a read as the store's own error (the driver's, if none fits)."""
        typed = self._typed(exc, "reading")
        if typed is None:
            raise exc
        raise typed from None

    def has_table(self, name: str) -> bool:
        return bool(self._read_rows(_HAS_TABLE, (name,)))

    # -- live -------------------------------------------------------------------------

    def _quiet_read_interval(self, poll_interval: float, expect_others: bool) -> float:
        # A listener costs every other process's commit a wake-up here (and the server a signal):
        # only subscriptions that expect other processes' commits start one.
        if expect_others:
            self._start_listener()
        return max(poll_interval, QUIET_READ_SECONDS)

    def _start_listener(self) -> None:
        with self._write_lock:
            if self._listener is None and not self._closed:
                self._listener = threading.Thread(target=self._listen, name="eventstore-listener", daemon=True)
                self._listener.start()

    def _listen(self) -> None:
        """The listener thread: every other process's commit wakes this store's subscriptions."""
        backoff = 0.1
        while not self._listener_stop.is_set():
            try:
                conn = self._connect(autocommit=True)
            except LogUnavailableError as exc:
                logger.warning("cannot listen for commits to %s (%s); trying again in %g s", self.path,
                               exc.reason, backoff)
                self._listener_stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            try:
                conn.execute(f"LISTEN {self._channel}")
                backoff = 0.1
                self._subscribers.nudge_all()  # commits made while nobody listened: read the log
                while not self._listener_stop.is_set():
                    for notice in conn.notifies(timeout=0.25):
                        token, _, streams = notice.payload.partition("\n")
                        if token != self._token:
                            self._subscribers.nudge(None if streams in ("*", "") else streams.split(","))
            except psycopg.Error as exc:
                if not self._listener_stop.is_set():
                    logger.warning("stopped listening for commits to %s (%s); connecting again", self.path,
                                   self._said(exc))
            finally:
                conn.close()

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection and end every subscription. Safe to call twice."""
        if self._closed:
            return
        with self._write_lock:
            self._closed = True
            self._listener_stop.set()
            self._conn.close()
        self._subscribers.close_all()
        self._pool.close()
        if self._listener is not None:
            self._listener.join(timeout=2)

    def open_readers(self) -> int:
        """Idle pooled read connections (for tests and diagnostics)."""
        return int(self._pool.get_stats().get("pool_available", 0))

    def __repr__(self) -> str:
        return f"PostgresEventStore({self.path!r})"


class _EpochReader:
    """Reads fenced appends' leases' epochs inside the append transaction, each row locked FOR SHARE
    (an acquire by a new owner waits for this commit): ``stage_appends``' ``read_epoch``."""

    __slots__ = ("_cursor", "_has_table")

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor
        self._has_table: bool | None = None  # looked up at the first fence: a failed read would end the transaction

    def __call__(self, lease: str) -> int | None:
        if self._has_table is None:
            self._has_table = self._cursor.execute(_HAS_TABLE, ("leases",)).fetchone() is not None
        if not self._has_table:
            return None
        row = self._cursor.execute("SELECT epoch FROM leases WHERE name = %s FOR SHARE", (lease,)).fetchone()
        return int(row[0]) if row is not None else None


def _fences(appends: Sequence[PendingAppend]) -> str | None:
    """The batch's fences for ``eventstore_append``, as a JSON array of [lease, epoch]; None without any."""
    fences = {(p.fence.lease, p.fence.epoch) for p in appends if p.fence is not None}
    return msgspec.json.encode(sorted(fences)).decode() if fences else None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _typed_error(
    path: str, exc: BaseException, doing: Literal["reading", "writing"], reason: str
) -> EventStoreError | None:
    """The store's error for ``exc`` (``reason``: its first line, already without the password)."""
    if psycopg is None or not isinstance(exc, psycopg.Error):
        return None
    sqlstate = exc.sqlstate or ""
    if sqlstate.startswith("XX"):  # internal errors: data_corrupted, index_corrupted
        return CorruptLogError(path, reason)
    if sqlstate == "53100":  # disk_full
        return DiskFullError(path) if doing == "writing" else LogUnavailableError(path, "the server's disk is full")
    if isinstance(exc, psycopg.OperationalError) or sqlstate.startswith(("08", "57")):
        # connection lost, server shutting down, too many connections, query cancelled
        if doing == "writing":
            return LogUnavailableWriteError(path, f"lost the database ({reason})",
                                            remedy="check that the PostgreSQL server is up")
        return LogUnavailableError(path, reason)
    if sqlstate == "42501":  # insufficient_privilege
        return LogWriteError(path, f"no permission ({reason})", remedy="grant the user the rights on the log's tables")
    if sqlstate == "25006" and doing == "writing":  # read_only_sql_transaction: a standby
        return LogWriteError(path, f"the server is read-only ({reason})", remedy="point the URL at the primary")
    return None
