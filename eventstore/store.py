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
reads borrow a connection from a small bounded pool for the one statement they run and
give it back (a connection per thread would pile up file handles with every short-lived
thread that ever read: a server's per-client threads, say; and opening and closing
connections on demand leaves SQLite holding the closed ones' handles while others lock). Every read pages through the table with keyset
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
#: Read connections at most (opened as needed); a read finding all of them busy waits for one.
#: Each read is one statement, and SQLite reads on two cores do not go faster with more.
READER_POOL_SIZE: Final = 8


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
        self._idle_readers: list[sqlite3.Connection] = []  # guarded by _readers_lock
        self._reader_slots = threading.BoundedSemaphore(READER_POOL_SIZE)
        self._subscriptions: set[Subscription] = set()

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
            self._max_position(self._conn)  # a file SQLite cannot read fails here, not at the first read
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

    def _read_rows(self, sql: str, parameters: Sequence[Any]) -> list[tuple[Any, ...]]:
        """All rows of one read statement, on a pooled read connection."""
        conn = self._borrow_reader()
        try:
            return conn.execute(sql, parameters).fetchall()
        except sqlite3.DatabaseError as exc:
            typed = self._typed(exc, "reading")
            if typed is None:
                raise
            raise typed from exc
        finally:
            self._give_back(conn)

    def _read_one(self, sql: str, parameters: Sequence[Any]) -> Any:
        rows = self._read_rows(sql, parameters)
        return rows[0][0] if rows else None

    def _borrow_reader(self) -> sqlite3.Connection:
        """An idle read connection, a new one while the pool is not full, else the next one given back."""
        self._reader_slots.acquire()
        try:
            with self._readers_lock:
                self._check_open()
                if self._idle_readers:
                    return self._idle_readers.pop()
            conn = self._connect()
            conn.execute("PRAGMA query_only = 1")
            return conn
        except BaseException:
            self._reader_slots.release()
            raise

    def _give_back(self, conn: sqlite3.Connection) -> None:
        # fetchall() has ended the statement, so the connection holds no read transaction.
        try:
            with self._readers_lock:
                if not self._closed:
                    self._idle_readers.append(conn)
                    return
            conn.close()  # the store closed while it was out
        finally:
            self._reader_slots.release()

    def open_readers(self) -> int:
        """Idle pooled read connections (for tests and diagnostics)."""
        with self._readers_lock:
            return len(self._idle_readers)

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
                last_position, rows = self._commit_once(appends, trust_cache=True)
            except sqlite3.IntegrityError:
                # Another process wrote to a stream we had cached: start over from the table.
                self._versions.clear()
                last_position, rows = self._commit_once(appends, trust_cache=False)
            if rows and self._subscriptions:
                # Still under the write lock, so followers get the batches in commit order.
                self._hand_over(rows, last_position - len(rows) + 1)

    def _hand_over(self, rows: list[tuple[str, int, str, str, int]], first_position: int) -> None:
        """Give the rows just committed to this process's subscriptions: they need not read them back."""
        batch = [RecordedEvent(first_position + index, *row) for index, row in enumerate(rows)]
        with self._readers_lock:
            subs = list(self._subscriptions)
        by_stream: dict[str, list[RecordedEvent]] | None = None
        for sub in subs:
            if sub._stream_id is None:
                sub._committed(batch)
                continue
            if by_stream is None:  # once per commit, not once per subscription
                by_stream = {}
                for recorded in batch:
                    by_stream.setdefault(recorded.stream_id, []).append(recorded)
            mine = by_stream.get(sub._stream_id)
            if mine:
                sub._committed(mine)

    def _commit_once(self, appends: Sequence[PendingAppend], trust_cache: bool) -> tuple[int, list[tuple[Any, ...]]]:
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
        return last_position, rows

    @staticmethod
    def _read_version(conn: sqlite3.Connection, stream_id: str) -> int:
        return cast(int, conn.execute(_STREAM_VERSION, (stream_id,)).fetchone()[0])

    # -- reading ------------------------------------------------------------------
    # Every read goes through _read_rows, which turns what SQLite says about a damaged
    # or unreadable file into the store's typed errors.

    def stream_version(self, stream_id: str) -> int:
        """The stream's last version, 0 when it has no events."""
        return cast(int, self._read_one(_STREAM_VERSION, (stream_id,)))

    def last_position(self) -> int:
        """The position of the newest committed event, 0 for an empty log."""
        return cast(int, self._read_one(_MAX_POSITION, ()))

    def streams(self) -> Iterator[tuple[str, int]]:
        """Every stream as ``(stream_id, last_version)``, in order of first appearance."""
        rows = self._read_rows(
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
        return self._read_rows(_PAGE_ALL, (after, limit))

    def _page_stream(self, stream_id: str, after_version: int, limit: int) -> list[tuple[Any, ...]]:
        return self._read_rows(_PAGE_STREAM, (stream_id, after_version, limit))

    def version_at(self, stream_id: str, position: int) -> int:
        """The stream's version as of log position ``position`` (0 before its first event)."""
        return self._version_at(stream_id, position)

    def _version_at(self, stream_id: str, position: int) -> int:
        return cast(int, self._read_one(
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

        Commits in this process are handed to the subscription as they happen (no read
        back); commits by other processes are found by reading the log every
        ``poll_interval`` seconds. It holds no connection: every read borrows one.
        """
        self._check_open()
        sub = Subscription(self, after, stream_id, codec, poll_interval, page_size)
        with self._readers_lock:
            self._check_open()
            self._subscriptions.add(sub)  # before its first read: a commit after this is handed to it
        return sub

    def _forget(self, sub: Subscription) -> None:
        with self._readers_lock:
            self._subscriptions.discard(sub)

    def subscriptions(self) -> int:
        """How many subscriptions are open (for tests and diagnostics)."""
        with self._readers_lock:
            return len(self._subscriptions)

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query, e.g. of a projection's tables (on a pooled reader)."""
        self._check_open()
        return self._read_rows(sql, parameters)

    # -- checkpoints (used by projections) ----------------------------------------

    def checkpoint(self, name: str) -> int:
        position = self._read_one("SELECT position FROM checkpoints WHERE name = ?", (name,))
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
            readers, self._idle_readers = self._idle_readers, []
        for sub in subs:
            sub.close()
        for conn in readers:
            conn.close()

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

    Two sources, one order. It first pages through the log after its position; once a
    page comes back short it is *live*: it takes the batches this process's commits hand
    it (``_committed``), and reads the log again only every ``poll_interval`` seconds of
    quiet (commits by other processes) or when it fell behind. It is registered before
    its first read, so a commit is either in what it reads or in a handed batch, maybe
    both: everything at or before its position is skipped, so nothing comes twice and
    nothing is missed.

    Memory stays bounded: a consumer that lets more than ``max_pending`` handed events
    pile up loses them and reads the log instead, a page at a time, so a slow consumer
    never slows the writer nor grows memory. ``close()`` (from any thread) ends it.
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
        self._max_pending = max(4 * page_size, 2048)
        self._buffer: deque[RecordedEvent] = deque()
        self._wake = threading.Condition(threading.Lock())
        self._pending: deque[RecordedEvent] = deque()  # handed over, not yet taken; guarded by _wake
        self._live = False  # caught up with the log: handed batches are enough
        self._drops = 0  # how often handed events were dropped (too many pending); guarded by _wake
        self.closed = False
        #: Position of the last event this subscription has handed out (or skipped past).
        self.position = after
        self._after_version = store._version_at(stream_id, after) if stream_id is not None else 0

    # -- the writer's side ----------------------------------------------------------------

    def _committed(self, batch: list[RecordedEvent]) -> None:
        """Called under the store's write lock with each committed batch (of its stream): wake up."""
        mine = batch
        with self._wake:
            if len(self._pending) + len(mine) > self._max_pending:
                self._pending.clear()  # too far behind: it reads the log instead
                self._live = False
                self._drops += 1
            else:
                self._pending.extend(mine)
            self._wake.notify_all()

    # -- the consumer's side --------------------------------------------------------------

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
        if not self._buffer and not self._fill(timeout):
            return None
        return self._take()

    def poll_batch(self, timeout: float) -> list[RecordedEvent]:
        """Every event available now (up to a page), waiting at most ``timeout`` seconds for the
        first; empty if none came (or closed)."""
        if not self._buffer and not self._fill(timeout):
            return []
        batch = list(self._buffer)
        self._buffer.clear()
        self.position = batch[-1].position
        return batch

    def _take(self) -> RecordedEvent:
        event = self._buffer.popleft()
        self.position = event.position
        return event

    def _fill(self, timeout: float) -> bool:
        """Put the next events in the buffer, waiting at most ``timeout``; False if none came."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            if self._store.closed:
                self.close()
                return False
            if not self._live:
                if self._read_log():
                    return True
                continue
            with self._wake:
                if not self._pending and self._live and not self.closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    if not self._wake.wait(min(remaining, self._poll_interval)):
                        self._live = False  # a quiet spell: look at the log for other processes' commits
                        continue
                taken = self._take_pending()
                if taken is None:  # another process committed in between: the log has those rows
                    self._live = False
                    continue
            if taken:
                try:
                    self._buffer.extend(self._decoded(taken))
                    self._after_version = taken[-1].version  # (only a stream's reads use it)
                except CorruptEventError:
                    with self._wake:  # read it from the log: the sound events before it come first
                        self._live = False
                        self._pending.clear()
                    continue
                return True
        return False

    def _take_pending(self) -> list[RecordedEvent] | None:
        """Up to a page of the handed events that follow on from our position without a gap (older
        ones we read from the log); None when not even the first does: another process wrote
        rows in between, which only the log has."""
        pending = self._pending
        taken: list[RecordedEvent] = []
        position = self.position
        while pending and pending[0].position <= position:
            pending.popleft()
        everything = self._stream_id is None
        version = self._after_version
        while pending and len(taken) < self._page_size:
            recorded = pending[0]
            if recorded.position <= position:  # (a batch handed twice is impossible, but cheap to skip)
                pending.popleft()
                continue
            if (recorded.position != position + 1) if everything else (recorded.version != version + 1):
                break
            taken.append(pending.popleft())
            position, version = recorded.position, recorded.version
        return taken or (None if pending else [])

    def _decoded(self, taken: list[RecordedEvent]) -> list[RecordedEvent]:
        codec = self._codec
        if codec is None:
            return taken
        decoded = []
        for r in taken:
            try:
                event = codec(r.type, r.data)
            except Exception as exc:
                raise CorruptEventError(r.position, r.type, str(exc)) from exc
            decoded.append(RecordedEvent(r.position, r.stream_id, r.version, r.type, r.data, r.recorded_at, event))
        return decoded

    def _read_log(self) -> bool:
        """A page of the log after our position; a short one means we are live again."""
        with self._wake:
            drops = self._drops
        last = self.position
        if self._stream_id is None:
            rows = self._store._page_all(last, self._page_size)
        else:
            rows = self._store._page_stream(self._stream_id, self._after_version, self._page_size)
            if rows:
                self._after_version = rows[-1][2]
        if len(rows) < self._page_size:
            with self._wake:
                # Unless handed events were dropped meanwhile: those may be past this page.
                self._live = self._drops == drops
        if rows:
            self._buffer.extend(_decode_rows(rows, self._codec))
        return bool(rows)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._store._forget(self)
            with self._wake:
                self._pending.clear()
                self._wake.notify_all()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
