"""The event log: one SQLite table, append-only, read by position or by stream.

Layout (see the README): ``events(position, stream_id, version, type, data, recorded_at)``
with UNIQUE(stream_id, version) as the optimistic-concurrency guard, in WAL mode so
readers in any process never block the one writer.

Opening: an existing file is first looked at through a read-only connection (its
header, ``application_id``, ``user_version``, tables); a file that is not one of our
logs is refused with NotAnEventLogError and left byte for byte as it was. Only then is
the write connection opened (WAL) and whatever is missing created. What SQLite says
about the file itself becomes a typed error: a full disk DiskFullError, a failed write
LogWriteError, a failed read LogReadError, a damaged page CorruptLogError.

Threading: one write connection guarded by a lock (SQLite has one writer anyway);
readers get a connection per thread. Every read pages through the table with keyset
pagination and holds no transaction open between pages, so an iterator over a huge
log uses little memory and never pins the WAL.
"""

from __future__ import annotations

import logging
import os
import pathlib
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final, Literal, cast

import msgspec
import sqlite_utils

from eventstore.errors import (
    ConcurrencyError,
    CorruptEventError,
    CorruptLogError,
    DiskFullError,
    EventStoreError,
    LogReadError,
    LogWriteError,
    NotAnEventLogError,
    StoreClosedError,
)

logger = logging.getLogger(__name__)

#: ``expected_version`` value: append whatever the stream's current version is.
ANY: Final = "any"
#: ``expected_version`` value: the stream must not exist yet (its version is 0).
NO_STREAM: Final = "no_stream"

ExpectedVersion = int | Literal["any", "no_stream"]

#: Decodes a stored row's ``(type, data)`` into an object; raise anything to reject it.
Codec = Callable[[str, str], Any]

# 'EVLG' — marks a SQLite file as one of our event logs (PRAGMA application_id).
APPLICATION_ID: Final = 0x45564C47
#: The layout's version (PRAGMA user_version). Logs made before it was recorded say 0.
SCHEMA_VERSION: Final = 1

_SQLITE_HEADER: Final = b"SQLite format 3\x00"
# Primary result codes (an extended code carries one in its low byte).
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB, _SQLITE_READONLY = 10, 11, 13, 26, 8

_EVENT_COLUMNS: Final = ("position", "stream_id", "version", "type", "data", "recorded_at")
_SELECT: Final = "SELECT position, stream_id, version, type, data, recorded_at FROM events "
_PAGE_ALL: Final = _SELECT + "WHERE position > ? ORDER BY position LIMIT ?"
_PAGE_STREAM: Final = _SELECT + "WHERE stream_id = ? AND version > ? ORDER BY version LIMIT ?"
_INSERT: Final = (
    "INSERT INTO events (stream_id, version, type, data, recorded_at) VALUES (?, ?, ?, ?, ?)"
)
_MAX_POSITION: Final = "SELECT COALESCE(MAX(position), 0) FROM events"
_STREAM_VERSION: Final = "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = ?"
_SYNCHRONOUS_MODES: Final = ("OFF", "NORMAL", "FULL", "EXTRA")


class NewEvent(msgspec.Struct, frozen=True):
    """An event about to be appended: its type name and its JSON text."""

    type: str
    data: str

    @classmethod
    def from_bytes(cls, type: str, data: bytes) -> NewEvent:
        return cls(type, data.decode())


class RecordedEvent(msgspec.Struct, frozen=True):
    """A stored event. ``event`` holds the decoded object when a codec was given."""

    position: int
    stream_id: str
    version: int
    type: str
    data: str
    recorded_at: int
    event: Any = None


class AppendResult(msgspec.Struct, frozen=True):
    """Where an append landed."""

    stream_id: str
    first_version: int
    last_version: int
    first_position: int
    last_position: int


class PendingAppend(msgspec.Struct):
    """One append waiting for (or done with) its transaction. Shared by the store and the writer.

    A Struct rather than a plain class: its constructor runs in C, and the batching
    writer makes one per streamed delta. A commit sets ``first_version`` and
    ``first_position`` (or ``error``); ``result`` is built from them when asked for.
    """

    seq: int
    stream_id: str
    events: tuple[NewEvent, ...]
    expected_version: ExpectedVersion
    recorded_at: int
    first_version: int = 0
    first_position: int = 0
    error: BaseException | None = None

    @property
    def result(self) -> AppendResult | None:
        if self.first_version == 0 or self.error is not None:
            return None
        count = len(self.events)
        return AppendResult(
            self.stream_id,
            self.first_version,
            self.first_version + count - 1,
            self.first_position,
            self.first_position + count - 1 if count else 0,
        )


def _version_matches(expected: ExpectedVersion, current: int) -> bool:
    if expected == ANY:
        return True
    if expected == NO_STREAM:
        return current == 0
    return expected == current


def _check_expected_version(expected: object) -> None:
    if expected in (ANY, NO_STREAM):
        return
    if not isinstance(expected, int) or isinstance(expected, bool) or expected < 0:
        raise ValueError(
            f"expected_version must be an int >= 0, ANY or NO_STREAM, not {expected!r}"
        )


class _FileShape(msgspec.Struct, frozen=True):
    """What an existing SQLite file holds, as far as telling one of our logs from other files goes."""

    application_id: int
    user_version: int
    tables: frozenset[str]
    event_columns: frozenset[str]

    @property
    def ours(self) -> bool:
        return self.application_id == APPLICATION_ID

    @property
    def complete(self) -> bool:
        """One of our logs with every table: opening it needs to write nothing."""
        return self.ours and {"events", "checkpoints"} <= self.tables

    def refusal(self, create: bool) -> str | None:
        """Why this file cannot be used as an event log; None when it can."""
        if not self.ours and self.application_id != 0:
            return f"it belongs to another application (application_id {self.application_id})"
        if "events" in self.tables:
            missing = [c for c in _EVENT_COLUMNS if c not in self.event_columns]
            if missing:
                return f"its events table lacks the columns {', '.join(missing)}"
        if not self.ours:
            # Only an empty database is taken over; tables without our marker belong to someone else.
            if "events" in self.tables:
                return ("its events table was not made by forge_actors (the file lacks the event log's "
                        "application_id marker), so it is left alone")
            if self.tables:
                return f"it is a SQLite database with other tables ({', '.join(sorted(self.tables))})"
        if self.user_version > SCHEMA_VERSION:
            return (f"it has a newer layout (schema version {self.user_version}; this version of the event "
                    f"store reads up to {SCHEMA_VERSION}): upgrade forge_actors to open it")
        if "events" not in self.tables and not create:
            return "it has no events table"
        return None


def _inspect(conn: sqlite3.Connection) -> _FileShape:
    tables = frozenset(
        row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        )
    )
    columns: frozenset[str] = frozenset()
    if "events" in tables:
        columns = frozenset(row[1] for row in conn.execute("PRAGMA table_info(events)"))
    return _FileShape(
        conn.execute("PRAGMA application_id").fetchone()[0],
        conn.execute("PRAGMA user_version").fetchone()[0],
        tables,
        columns,
    )


def _inspect_read_only(path: str, timeout: float) -> _FileShape:
    """Look at an existing file without changing a byte of it (its header, then read-only SQL)."""
    try:
        with open(path, "rb") as file:
            header = file.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise NotAnEventLogError(path, f"it cannot be read ({exc.strerror or exc})") from exc
    if header and header != _SQLITE_HEADER:  # an empty file is an empty database
        raise NotAnEventLogError(path, "it is not a SQLite database (its first bytes are not a SQLite header)")
    uri = pathlib.Path(path).resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout)
    except sqlite3.Error as exc:
        raise NotAnEventLogError(path, f"SQLite cannot open it ({exc})") from exc
    try:
        return _inspect(conn)
    except sqlite3.DatabaseError as exc:
        typed = _typed_error(path, exc, "reading")
        raise typed or NotAnEventLogError(path, f"SQLite cannot read it ({exc})") from exc
    finally:
        conn.close()


def _typed_error(path: str, exc: sqlite3.Error, doing: Literal["reading", "writing"]) -> EventStoreError | None:
    """The store's error for what SQLite said about the file itself; None for anything else."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return None
    primary = code & 0xFF
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return CorruptLogError(path, str(exc))
    if doing == "reading":
        if primary in (_SQLITE_IOERR, _SQLITE_FULL):  # a full disk fails reads that need temporary space
            return LogReadError(path, f"{exc} ({exc.sqlite_errorname})")
        return None
    if primary == _SQLITE_FULL:
        return DiskFullError(path)
    if primary == _SQLITE_IOERR:
        return LogWriteError(path, f"I/O error ({exc.sqlite_errorname})", remedy="check the disk")
    if primary == _SQLITE_READONLY:
        return LogWriteError(path, f"no permission ({exc})", remedy="make the file and its folder writable")
    return None


class EventStore:
    """An append-only event log in one SQLite file.

    ``synchronous="NORMAL"`` (default): a committed append survives a crash of the
    process; a power loss may lose the last few commits. ``"FULL"``: a committed append
    also survives a power loss, at the cost of an fsync per commit.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 10_000,
        create: bool = True,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        mode = synchronous.upper()
        if mode not in _SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(_SYNCHRONOUS_MODES)}, not {synchronous!r}")
        self.path = os.fspath(path)
        self.synchronous = mode
        self._busy_timeout_ms = busy_timeout_ms
        self._clock = clock
        self._closed = False
        self._write_lock = threading.RLock()
        # Last version of each stream as this process last wrote or read it. Only a hint:
        # UNIQUE(stream_id, version) is the real guard, and a mismatch re-reads the table.
        self._versions: dict[str, int] = {}
        self._readers_lock = threading.Lock()
        self._readers: list[sqlite3.Connection] = []
        self._local = threading.local()
        self._subscriptions: set[Subscription] = set()
        self._committed = threading.Condition(threading.Lock())

        exists = os.path.exists(self.path)
        if not create and not exists:
            raise NotAnEventLogError(self.path, "the file does not exist")
        # A file that is there is looked at through a read-only connection first, so that one
        # we refuse leaves exactly as it came (no WAL switch, no table, no -wal file).
        needs_setup = True
        if exists:
            shape = _inspect_read_only(self.path, busy_timeout_ms / 1000)
            needs_setup = self._check_shape(shape, create)
        self._conn = self._connect(write=True)
        try:
            if needs_setup:
                self._ensure_schema(create)
            self._last_committed = cast(int, self._read_one(self._conn, _MAX_POSITION, ()))
        except BaseException:
            self._conn.close()
            raise

    # -- connections and schema -------------------------------------------------

    def _connect(self, write: bool = False) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
                check_same_thread=False,
                timeout=self._busy_timeout_ms / 1000,
            )
        except sqlite3.Error as exc:
            raise NotAnEventLogError(self.path, f"SQLite cannot open it ({exc})") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            if write:  # the mode is a property of the file: readers find it set
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise self._typed(exc, "writing") or NotAnEventLogError(
                self.path, f"it is not a SQLite database ({exc})"
            ) from exc
        return conn

    def _check_shape(self, shape: _FileShape, create: bool) -> bool:
        """Refuse a file that is not one of our logs; True when its tables still have to be made."""
        reason = shape.refusal(create)
        if reason is not None:
            raise NotAnEventLogError(self.path, reason)
        return not shape.complete

    def _ensure_schema(self, create: bool) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")  # two processes creating one new file must not race
            # Looked at again inside the transaction: another process may have made it meanwhile.
            shape = _inspect(conn)
            self._check_shape(shape, create)
            db = sqlite_utils.Database(conn)
            if "events" not in shape.tables:
                db.table("events").create(
                    {
                        "position": int,
                        "stream_id": str,
                        "version": int,
                        "type": str,
                        "data": str,
                        "recorded_at": int,
                    },
                    pk="position",
                    not_null={"stream_id", "version", "type", "data", "recorded_at"},
                )
                db.table("events").create_index(["stream_id", "version"], unique=True)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            if "checkpoints" not in shape.tables:
                db.table("checkpoints").create(
                    {"name": str, "position": int, "updated_at": int},
                    pk="name",
                    not_null={"position", "updated_at"},
                )
            conn.execute("COMMIT")
        except BaseException as exc:
            self._rollback(conn)
            typed = self._typed(exc, "writing") if isinstance(exc, sqlite3.DatabaseError) else None
            if typed is None:
                raise
            raise typed from exc

    def _rollback(self, conn: sqlite3.Connection) -> None:
        """Roll back what is open; SQLite has already done so after some errors (a full disk)."""
        if not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:  # the transaction's own error is the one worth raising
            logger.warning("rolling back a failed transaction on %s failed too: %s", self.path, exc)

    def _typed(self, exc: sqlite3.Error, doing: Literal["reading", "writing"]) -> EventStoreError | None:
        return _typed_error(self.path, exc, doing)

    def _read_rows(self, conn: sqlite3.Connection, sql: str, parameters: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            return conn.execute(sql, parameters).fetchall()
        except sqlite3.DatabaseError as exc:
            typed = self._typed(exc, "reading")
            if typed is None:
                raise
            raise typed from exc

    def _read_one(self, conn: sqlite3.Connection, sql: str, parameters: Sequence[Any]) -> Any:
        rows = self._read_rows(conn, sql, parameters)
        return rows[0][0] if rows else None

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection (opened on first use, closed by close())."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self._check_open()
            conn = self._connect()
            conn.execute("PRAGMA query_only = 1")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the event store {self.path} is closed")

    @staticmethod
    def _max_position(conn: sqlite3.Connection) -> int:
        return cast(int, conn.execute(_MAX_POSITION).fetchone()[0])

    # -- writing ------------------------------------------------------------------

    def append(
        self,
        stream_id: str,
        events: Iterable[NewEvent],
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        """Append events to a stream in one transaction: all of them, or none.

        Raises ConcurrencyError (writing nothing) when the stream is not at
        ``expected_version``. Use a BatchingWriter for high-rate small appends.
        """
        pending = self.pending_append(stream_id, events, expected_version, seq=0)
        self.commit([pending])
        if pending.error is not None:
            raise pending.error
        result = pending.result
        assert result is not None
        return result

    def pending_append(
        self,
        stream_id: str,
        events: Iterable[NewEvent],
        expected_version: ExpectedVersion,
        seq: int,
    ) -> PendingAppend:
        """Validate an append and stamp it with the clock, without writing it yet."""
        return PendingAppend(seq, *self.validate_append(stream_id, events, expected_version))

    def validate_append(
        self, stream_id: str, events: Iterable[NewEvent], expected_version: ExpectedVersion
    ) -> tuple[str, tuple[NewEvent, ...], ExpectedVersion, int]:
        """Check an append's arguments; returns them normalised, with the time of recording."""
        if expected_version != ANY:
            _check_expected_version(expected_version)
        if not isinstance(stream_id, str) or not stream_id:
            raise ValueError("stream_id must be a non-empty string")
        batch = tuple(events)
        for event in batch:
            if type(event) is not NewEvent:
                raise TypeError(f"append takes NewEvent objects, not {type(event).__name__}")
        return stream_id, batch, expected_version, self._clock()

    def commit(self, appends: Sequence[PendingAppend]) -> None:
        """Write several appends in one transaction; each gets its own result or error.

        An append whose expected version fails is skipped (its ``error`` is set) and the
        others still commit. Errors of the database itself fail every append.
        """
        with self._write_lock:
            self._check_open()
            try:
                last_position = self._commit_once(appends, trust_cache=True)
            except sqlite3.IntegrityError:
                # Another process wrote to a stream we had cached: start over from the table.
                self._versions.clear()
                last_position = self._commit_once(appends, trust_cache=False)
        if last_position:
            with self._committed:
                self._last_committed = max(self._last_committed, last_position)
                self._committed.notify_all()

    def _commit_once(self, appends: Sequence[PendingAppend], trust_cache: bool) -> int:
        conn = self._conn
        rows: list[tuple[str, int, str, str, int]] = []
        append_row = rows.append
        staged: dict[str, int] = {}
        versions = self._versions if trust_cache else {}
        try:
            conn.execute("BEGIN IMMEDIATE")
            # Inside the write transaction nobody else inserts, and a new rowid is
            # max(rowid) + 1: so each row's position is known before it is written.
            next_position = self._max_position(conn) + 1
            for pending in appends:
                pending.error = None
                sid = pending.stream_id
                current = staged.get(sid)
                if current is None:
                    current = versions.get(sid)
                    if current is None:
                        current = self._read_version(conn, sid)
                    elif not _version_matches(pending.expected_version, current):
                        current = self._read_version(conn, sid)  # the cached one may be stale
                expected = pending.expected_version
                if expected != ANY and not _version_matches(expected, current):
                    pending.error = ConcurrencyError(sid, expected, current)
                    staged[sid] = current
                    continue
                pending.first_version = current + 1
                pending.first_position = next_position + len(rows)
                recorded_at = pending.recorded_at
                for event in pending.events:
                    current += 1
                    append_row((sid, current, event.type, event.data, recorded_at))
                staged[sid] = current
            last_position = 0
            if rows:
                conn.executemany(_INSERT, rows)
                last_position = next_position + len(rows) - 1
            conn.execute("COMMIT")
        except sqlite3.IntegrityError:
            self._rollback(conn)
            raise
        except BaseException as exc:
            self._rollback(conn)
            # A full disk, a damaged page, an I/O error: the store's own error, for every append.
            typed = self._typed(exc, "writing") if isinstance(exc, sqlite3.DatabaseError) else None
            for pending in appends:
                pending.error = typed or exc
            if typed is None:
                raise
            raise typed from exc
        self._versions.update(staged)
        return last_position

    @staticmethod
    def _read_version(conn: sqlite3.Connection, stream_id: str) -> int:
        return cast(int, conn.execute(_STREAM_VERSION, (stream_id,)).fetchone()[0])

    # -- reading ------------------------------------------------------------------
    # Every read goes through _read_rows, which turns what SQLite says about a damaged
    # or unreadable file into the store's typed errors.

    def stream_version(self, stream_id: str) -> int:
        """The stream's last version, 0 when it has no events."""
        return cast(int, self._read_one(self._reader(), _STREAM_VERSION, (stream_id,)))

    def last_position(self) -> int:
        """The position of the newest committed event, 0 for an empty log."""
        return cast(int, self._read_one(self._reader(), _MAX_POSITION, ()))

    def streams(self) -> Iterator[tuple[str, int]]:
        """Every stream as ``(stream_id, last_version)``, in order of first appearance."""
        rows = self._read_rows(
            self._reader(),
            "SELECT stream_id, MAX(version), MIN(position) AS first FROM events "
            "GROUP BY stream_id ORDER BY first",
            (),
        )
        for stream_id, version, _ in rows:
            yield stream_id, version

    def read_all(
        self, after: int = 0, *, codec: Codec | None = None, page_size: int = 1000
    ) -> Iterator[RecordedEvent]:
        """Every event with a position greater than ``after``, in position order."""
        while True:
            page = self._page_all(after, page_size)
            yield from _decode_rows(page, codec)
            if len(page) < page_size:
                return
            after = page[-1][0]

    def read_stream(
        self,
        stream_id: str,
        after_version: int = 0,
        *,
        codec: Codec | None = None,
        page_size: int = 1000,
    ) -> Iterator[RecordedEvent]:
        """One stream's events with a version greater than ``after_version``, in order."""
        while True:
            page = self._page_stream(stream_id, after_version, page_size)
            yield from _decode_rows(page, codec)
            if len(page) < page_size:
                return
            after_version = page[-1][2]

    def _page_all(self, after: int, limit: int) -> list[tuple[Any, ...]]:
        return self._read_rows(self._reader(), _PAGE_ALL, (after, limit))

    def _page_stream(self, stream_id: str, after_version: int, limit: int) -> list[tuple[Any, ...]]:
        return self._read_rows(self._reader(), _PAGE_STREAM, (stream_id, after_version, limit))

    def version_at(self, stream_id: str, position: int) -> int:
        """The stream's version as of log position ``position`` (0 before its first event)."""
        return self._version_at(stream_id, position)

    def _version_at(self, stream_id: str, position: int) -> int:
        return cast(int, self._read_one(
            self._reader(),
            "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = ? AND position <= ?",
            (stream_id, position),
        ))

    # -- live ---------------------------------------------------------------------

    def subscribe(
        self,
        after: int = 0,
        *,
        stream_id: str | None = None,
        codec: Codec | None = None,
        poll_interval: float = 0.05,
        page_size: int = 500,
    ) -> Subscription:
        """Events after position ``after``: first what is stored, then live as they commit.

        In this process a commit wakes the subscriber at once; commits by other
        processes are seen within ``poll_interval`` seconds.
        """
        self._check_open()
        sub = Subscription(self, after, stream_id, codec, poll_interval, page_size)
        with self._readers_lock:
            self._subscriptions.add(sub)
        return sub

    def _wait_for_commit_after(self, seen: int, timeout: float, sub: Subscription) -> None:
        with self._committed:
            if self._last_committed <= seen and not sub.closed and not self._closed:
                self._committed.wait(timeout)

    def _committed_position(self) -> int:
        with self._committed:
            return self._last_committed

    def _forget(self, sub: Subscription) -> None:
        with self._readers_lock:
            self._subscriptions.discard(sub)
        with self._committed:
            self._committed.notify_all()

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query, e.g. of a projection's tables (on this thread's reader)."""
        self._check_open()
        return self._read_rows(self._reader(), sql, parameters)

    # -- checkpoints (used by projections) ----------------------------------------

    def checkpoint(self, name: str) -> int:
        position = self._read_one(self._reader(), "SELECT position FROM checkpoints WHERE name = ?", (name,))
        return position or 0

    def write_transaction(self) -> _WriteTransaction:
        """A ``with`` block holding the write lock inside BEGIN IMMEDIATE ... COMMIT."""
        return _WriteTransaction(self)

    # -- lifecycle ----------------------------------------------------------------

    def close(self) -> None:
        """Close every connection and end every subscription. Safe to call twice."""
        if self._closed:
            return
        with self._write_lock:
            self._closed = True
            self._conn.close()
        with self._readers_lock:
            subs = list(self._subscriptions)
            readers, self._readers = self._readers, []
        for sub in subs:
            sub.close()
        for conn in readers:
            conn.close()
        with self._committed:
            self._committed.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EventStore({self.path!r}, synchronous={self.synchronous!r})"


class _WriteTransaction:
    """Lets a projection write its tables and its checkpoint in one atomic transaction."""

    def __init__(self, store: EventStore) -> None:
        self._store = store

    def __enter__(self) -> sqlite3.Connection:
        store = self._store
        store._write_lock.acquire()
        try:
            store._check_open()
            store._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            store._write_lock.release()
            typed = store._typed(exc, "writing")
            if typed is None:
                raise
            raise typed from exc
        except BaseException:
            store._write_lock.release()
            raise
        return store._conn

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        store = self._store
        try:
            if exc is None:
                try:
                    store._conn.execute("COMMIT")
                except sqlite3.DatabaseError as error:
                    exc = error
            if exc is not None:
                store._rollback(store._conn)
                # What SQLite said about the file (full, damaged) becomes the store's error;
                # anything else raised in the block goes on as it was.
                typed = store._typed(exc, "writing") if isinstance(exc, sqlite3.DatabaseError) else None
                if typed is not None:
                    raise typed from exc
                if exc_type is None:
                    raise exc
        finally:
            store._write_lock.release()


def _decode_rows(rows: list[tuple[Any, ...]], codec: Codec | None) -> Iterator[RecordedEvent]:
    if codec is None:
        for row in rows:
            yield RecordedEvent(*row)
        return
    for position, stream_id, version, type_, data, recorded_at in rows:
        try:
            decoded = codec(type_, data)
        except Exception as exc:
            raise CorruptEventError(position, type_, str(exc)) from exc
        yield RecordedEvent(position, stream_id, version, type_, data, recorded_at, decoded)


class Subscription:
    """An iterator over stored, then live, events. Blocks while there is nothing new.

    It keeps no buffer beyond one page: a slow consumer simply reads the log later,
    so it never slows the writer nor grows memory. ``close()`` (from any thread) ends
    the iteration.
    """

    def __init__(
        self,
        store: EventStore,
        after: int,
        stream_id: str | None,
        codec: Codec | None,
        poll_interval: float,
        page_size: int,
    ) -> None:
        self._store = store
        self._stream_id = stream_id
        self._codec = codec
        self._poll_interval = poll_interval
        self._page_size = page_size
        self._buffer: deque[RecordedEvent] = deque()
        self.closed = False
        #: Position of the last event this subscription has handed out (or skipped past).
        self.position = after
        self._after_version = store._version_at(stream_id, after) if stream_id is not None else 0

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> RecordedEvent:
        while True:
            event = self.poll(self._poll_interval)
            if event is not None:
                return event
            if self.closed:
                raise StopIteration

    def poll(self, timeout: float) -> RecordedEvent | None:
        """The next event, waiting at most ``timeout`` seconds; None if none came (or closed)."""
        if self._buffer:
            return self._take()
        deadline = time.monotonic() + timeout
        while not self.closed:
            seen = self._store._committed_position()
            if self._fill():
                return self._take()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._store._wait_for_commit_after(seen, min(remaining, self._poll_interval), self)
        return None

    def _take(self) -> RecordedEvent:
        event = self._buffer.popleft()
        self.position = event.position
        return event

    def _fill(self) -> bool:
        if self._store.closed:
            self.close()
            return False
        if self._stream_id is None:
            last = self._buffer[-1].position if self._buffer else self.position
            rows = self._store._page_all(last, self._page_size)
        else:
            rows = self._store._page_stream(self._stream_id, self._after_version, self._page_size)
            if rows:
                self._after_version = rows[-1][2]
        self._buffer.extend(_decode_rows(rows, self._codec))
        return bool(rows)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._store._forget(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
