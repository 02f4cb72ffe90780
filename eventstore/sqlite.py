"""The event log on SQLite: one table in one file, append-only, read by position or by stream. The default backend.

Layout (see the README): ``events(position, stream_id, version, type, data, recorded_at)``
with UNIQUE(stream_id, version) as the optimistic-concurrency guard, in WAL mode so
readers in any process never block the one writer.

Opening: the path is looked at first (``stat``): anything but a regular file (a FIFO, whose
opening waits for a writer, a socket, a folder, a device) is refused before anything opens it.
An existing file is then looked at through a read-only connection (its
header, ``application_id``, ``user_version``, tables); a file that is not one of our
logs is refused with NotAnEventLogError and left byte for byte as it was; one of ours that
is damaged (its header against its size; quick_check of every page when the log is small
enough, ``QUICK_CHECK_MAX_BYTES``) with CorruptLogError, and left so too. Only then is
the write connection opened (WAL) and whatever is missing created. Damage a read finds
later stops every write of the store from then on. What SQLite says
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
import re
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal, cast

import msgspec
import sqlite_utils

from eventstore.base import SqlEventLog, StaleVersionCache, Statements
from eventstore.errors import (
    CorruptLogError,
    DiskFullError,
    EventStoreError,
    LogCopyError,
    LogReadError,
    LogWriteError,
    NoEventLogError,
    NotAnEventLogError,
)
from eventstore.log import (
    EVENT_COLUMNS,
    SCHEMA_VERSION,
    Dialect,
    PendingAppend,
    RecordedEvent,
    Row,
    stage_appends,
)

logger = logging.getLogger(__name__)

# 'EVLG' — marks a SQLite file as one of our event logs (PRAGMA application_id).
APPLICATION_ID: Final = 0x45564C47

_NO_EVENTS_TABLE: Final = "it has no events table"
_SQLITE_HEADER: Final = b"SQLite format 3\x00"
#: The database header's length: the page size, the page count and its validity are in it.
_HEADER_BYTES: Final = 100
#: A log up to this size (file and -wal) gets SQLite's ``PRAGMA quick_check`` on opening, before
#: anything writes to it: the structure of every page, read once (about 1.7 ms per MiB on a 2-core
#: host with the file cached, so at most about 55 ms; a full integrity_check costs three times as
#: much). A larger log gets the cheap checks only (its header against its size; the first and last
#: pages of the table and of its index): damage deep inside it is found when it is read, and from
#: then on the store writes nothing more to it.
QUICK_CHECK_MAX_BYTES: Final = 32 << 20
# Primary result codes (an extended code carries one in its low byte).
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB, _SQLITE_READONLY = 10, 11, 13, 26, 8
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
#: What a log locked past the busy timeout says: another process holds the file's write lock.
_LOCKED = "the file stayed locked by another process past the busy timeout"

_INSERT: Final = (
    "INSERT INTO events (stream_id, version, type, data, recorded_at) VALUES (?, ?, ?, ?, ?)"
)
_SQL: Final = Statements("?")
#: A fenced append's check (``eventstore.lease``): the primary key makes it one indexed read.
_LEASE_EPOCH: Final = "SELECT epoch FROM leases WHERE name = ?"
_HAS_TABLE: Final = "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?"
_SYNCHRONOUS_MODES: Final = ("OFF", "NORMAL", "FULL", "EXTRA")
#: Read connections at most (opened as needed); a read finding all of them busy waits for one.
#: Each read is one statement, and SQLite reads on two cores do not go faster with more.
READER_POOL_SIZE: Final = 8



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
            missing = [c for c in EVENT_COLUMNS if c not in self.event_columns]
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
            return _NO_EVENTS_TABLE
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


#: What a path that is not a regular file is, by its ``st_mode`` type bits.
_FILE_KINDS: Final = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _not_a_file(path: str, mode: int) -> NotAnEventLogError:
    kind = next((name for is_kind, name in _FILE_KINDS if is_kind(mode)), "something other than a file")
    return NotAnEventLogError(path, f"it is {kind}, not a regular file")


def _regular_file_exists(path: str) -> bool:
    """Whether there is a file at ``path`` (False: nothing, so one may be created); anything else there
    is refused with NotAnEventLogError before anything opens it: opening a FIFO waits for a writer for
    ever, and a device, a socket or a folder is no log. Only the path is looked at (``stat``).

    A symbolic link is followed, so a log may live elsewhere (SQLite puts its -wal and -shm beside the
    file it leads to); one that leads nowhere is refused rather than creating a log at its far end."""
    try:
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise NotAnEventLogError(path, f"it is a symbolic link to {_link_target(path)}, which does not "
                                           "exist (no log is created through a link)") from None
        return False
    except OSError as exc:
        raise NotAnEventLogError(path, f"it cannot be looked at ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(mode):
        raise _not_a_file(path, mode)
    return True


def _link_target(path: str) -> str:
    try:
        return repr(os.readlink(path))
    except OSError:  # it changed meanwhile: the refusal stands, without naming where it led
        return "a path"


def _read_header(path: str) -> tuple[bytes, int]:
    """The file's database header and its size, read without waiting: a path that became a FIFO or
    a device since it was looked at is refused, not opened for a read that blocks."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise NotAnEventLogError(path, f"it cannot be read ({exc.strerror or exc})") from exc
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise _not_a_file(path, status.st_mode)
        with os.fdopen(fd, "rb", closefd=False) as file:
            return file.read(_HEADER_BYTES), status.st_size
    except OSError as exc:
        raise NotAnEventLogError(path, f"it cannot be read ({exc.strerror or exc})") from exc
    finally:
        os.close(fd)


def _check_header(path: str, header: bytes, size: int, wal_bytes: int) -> None:
    """Refuse a SQLite file whose header or size shows it damaged (CorruptLogError): a page size
    SQLite never writes, a size that is not whole pages, fewer pages than the header counts."""
    if len(header) < _HEADER_BYTES:
        raise CorruptLogError(path, f"it ends inside its database header ({size} bytes): it was cut short")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise CorruptLogError(path, f"its header names no valid page size ({page_size})")
    if wal_bytes:  # with frames in the -wal, the file alone may lag behind (a checkpoint under way, or cut short)
        return
    if size % page_size:
        raise CorruptLogError(path, f"its size ({size} bytes) is not a whole number of {page_size}-byte pages: "
                                    "it was cut short")
    pages = int.from_bytes(header[28:32], "big")
    # The count is valid when the change counter matches "version valid for" (the file format's rule).
    if pages and header[24:28] == header[92:96] and size < pages * page_size:
        raise CorruptLogError(path, f"it holds {size // page_size} of the {pages} pages its header counts: "
                                    "it was cut short")


def _check_pages(path: str, conn: sqlite3.Connection, size: int) -> None:
    """Before anything writes to the file: SQLite's quick_check of every page when the log is small
    enough (``QUICK_CHECK_MAX_BYTES``), else a read of both ends of the events table and of its index."""
    if size <= QUICK_CHECK_MAX_BYTES:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise CorruptLogError(path, _first_problem(problems))
        return
    # One aggregate per statement: each is then a walk down one edge of the b-tree, not a scan.
    for end in ("MIN(position)", "MAX(position)", "MIN(stream_id)", "MAX(stream_id)"):  # stream_id: the index
        conn.execute(f"SELECT {end} FROM events").fetchone()


def _first_problem(problems: list[str]) -> str:
    lines = [line for problem in problems for line in problem.splitlines()
             if line and not line.startswith("***") and line != "database disk image is malformed"]
    more = f", and {len(lines) - 1} more problems" if len(lines) > 1 else ""
    return f"database disk image is malformed: {lines[0]}{more}" if lines else "database disk image is malformed"


def _inspect_read_only(path: str, timeout: float) -> _FileShape:
    """Look at an existing file without changing a byte of it (its header, then read-only SQL): what
    it holds, and, when it is one of our logs, whether SQLite finds it damaged (CorruptLogError)."""
    header, size = _read_header(path)
    if header and not header.startswith(_SQLITE_HEADER):  # an empty file is an empty database
        raise NotAnEventLogError(path, "it is not a SQLite database (its first bytes are not a SQLite header)")
    wal_bytes = _size_of(os.path.realpath(path) + "-wal")
    if header:
        _check_header(path, header, size, wal_bytes)
    uri = pathlib.Path(path).resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout)
    except sqlite3.Error as exc:
        raise NotAnEventLogError(path, f"SQLite cannot open it ({exc})") from exc
    try:
        shape = _inspect(conn)
        if shape.ours and "events" in shape.tables:
            _check_pages(path, conn, size + wal_bytes)
        return shape
    except sqlite3.DatabaseError as exc:
        typed = _typed_error(path, exc, "reading")
        raise typed or NotAnEventLogError(path, f"SQLite cannot read it ({exc})") from exc
    finally:
        conn.close()


def _size_of(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:  # no -wal: nothing in it
        return 0


def _typed_error(path: str, exc: sqlite3.Error, doing: Literal["reading", "writing"]) -> EventStoreError | None:
    """The store's error for what SQLite said about the file itself; None for anything else."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return _undecodable_text(path, exc)
    primary = code & 0xFF
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return CorruptLogError(path, str(exc))
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
        if doing == "reading":
            return LogReadError(path, f"{_LOCKED} ({exc.sqlite_errorname})")
        return LogWriteError(path, f"{_LOCKED} ({exc.sqlite_errorname})",
                             remedy="wait for the other process's write to end, or stop that process")
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


def _undecodable_text(path: str, exc: sqlite3.Error) -> CorruptLogError | None:
    """sqlite3's own error for a stored text that is not UTF-8, as a damaged file: the store writes
    only UTF-8 (``validate_append`` refuses the rest), so such bytes were changed on the disk."""
    found = re.match(r"Could not decode to UTF-8 column '([^']*)'", str(exc))
    if found is None:
        return None
    return CorruptLogError(path, f"a stored text is not UTF-8 (in the column {found[1]!r})")


class EventStore(SqlEventLog):
    """An append-only event log in one SQLite file (the default backend; see ``eventstore.log``).

    ``synchronous="NORMAL"`` (default): a committed append survives a crash of the
    process; a power loss may lose the last few commits. ``"FULL"``: a committed append
    also survives a power loss, at the cost of an fsync per commit.
    """

    _sql = _SQL

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 10_000,
        create: bool = True,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__(clock)
        self.dialect: Dialect = "sqlite"
        mode = synchronous.upper()
        if mode not in _SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(_SYNCHRONOUS_MODES)}, not {synchronous!r}")
        self.path = os.fspath(path)
        self.synchronous = mode
        self._busy_timeout_ms = busy_timeout_ms
        self._readers_lock = threading.Lock()
        self._idle_readers: list[sqlite3.Connection] = []  # guarded by _readers_lock
        self._reader_slots = threading.BoundedSemaphore(READER_POOL_SIZE)
        #: The damage a read or a write found in the file: from then on nothing more is written to it.
        self._damage: CorruptLogError | None = None

        exists = _regular_file_exists(self.path)
        if not create and not exists:
            raise NoEventLogError(self.path, "the file does not exist")
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
        if reason == _NO_EVENTS_TABLE:
            raise NoEventLogError(self.path, reason)
        if reason is not None:
            raise NotAnEventLogError(self.path, reason)
        return not shape.complete

    def _begin_write(self) -> None:
        """BEGIN IMMEDIATE on the write connection, unless the file was found damaged: then the write
        is refused with that CorruptLogError, and the file is left as it is, for recovering it."""
        if self._damage is not None:
            raise CorruptLogError(self.path, self._damage.reason)
        self._conn.execute("BEGIN IMMEDIATE")

    def _ensure_schema(self, create: bool) -> None:
        conn = self._conn
        try:
            self._begin_write()  # IMMEDIATE: two processes creating one new file must not race
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
            self._failed_write(exc)

    def _rollback(self) -> None:
        """Roll back what is open; SQLite has already done so after some errors (a full disk)."""
        conn = self._conn
        if self._closed or not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:  # the transaction's own error is the one worth raising
            logger.warning("rolling back a failed transaction on %s failed too: %s", self.path, exc)

    def _typed_write(self, exc: BaseException) -> EventStoreError | None:
        return self._typed(exc, "writing") if isinstance(exc, sqlite3.DatabaseError) else None

    def _begin_write_transaction(self) -> SqliteTransaction:
        self._begin_write()
        return SqliteTransaction(self._conn)

    def _commit_write_transaction(self) -> None:
        self._conn.execute("COMMIT")

    def _typed(self, exc: sqlite3.Error, doing: Literal["reading", "writing"]) -> EventStoreError | None:
        typed = _typed_error(self.path, exc, doing)
        if isinstance(typed, CorruptLogError):
            self._damage = typed
        return typed

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

    @staticmethod
    def _max_position(conn: sqlite3.Connection) -> int:
        return cast(int, conn.execute(_SQL.max_position).fetchone()[0])

    # -- writing ------------------------------------------------------------------

    def _commit_once(self, appends: Sequence[PendingAppend], trust_cache: bool) -> tuple[int, list[Row]]:
        conn = self._conn
        try:
            self._begin_write()
            # Inside the write transaction nobody else inserts, and a new rowid is
            # max(rowid) + 1: so each row's position is known before it is written.
            next_position = self._max_position(conn) + 1
            rows, staged = stage_appends(
                appends, next_position, self._versions if trust_cache else {},
                lambda sid: self._read_version(conn, sid), lambda lease: self._read_epoch(conn, lease),
            )
            last_position = 0
            if rows:
                conn.executemany(_INSERT, rows)
                last_position = next_position + len(rows) - 1
            conn.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            self._rollback()
            raise StaleVersionCache from exc
        except BaseException as exc:
            self._failed_write(exc, appends)
        self._versions.update(staged)
        return last_position, rows

    def _insert_recorded(self, events: Sequence[RecordedEvent]) -> None:
        conn = self._conn
        try:
            self._begin_write()
            self.check_follows(self._max_position(conn), events[0].position)
            conn.executemany(
                "INSERT INTO events (position, stream_id, version, type, data, recorded_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(e.position, e.stream_id, e.version, e.type, e.data, e.recorded_at) for e in events],
            )
            conn.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            self._rollback()
            raise LogCopyError(self.path, f"a stream's version is there already ({exc})") from None
        except BaseException as exc:
            self._failed_write(exc)

    @staticmethod
    def _read_version(conn: sqlite3.Connection, stream_id: str) -> int:
        return cast(int, conn.execute(_SQL.stream_version, (stream_id,)).fetchone()[0])

    @staticmethod
    def _read_epoch(conn: sqlite3.Connection, lease: str) -> int | None:
        """A fenced append's lease's epoch, in the append's own transaction (BEGIN IMMEDIATE: no lease
        changes hands meanwhile); None when there is no such lease."""
        try:
            row = conn.execute(_LEASE_EPOCH, (lease,)).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such" not in str(exc):
                raise
            return None  # no leases table (or one from before epochs): the fence names no lease there
        return cast(int, row[0]) if row is not None else None

    # -- reading ------------------------------------------------------------------
    # Every read goes through _read_rows, which turns what SQLite says about a damaged
    # or unreadable file into the store's typed errors (SqlEventLog has the reads themselves).

    def has_table(self, name: str) -> bool:
        """Whether the log's database has a table (or view) of that name, e.g. a projection's."""
        return bool(self.query(_HAS_TABLE, (name,)))

    # -- lifecycle ----------------------------------------------------------------

    def close(self) -> None:
        """Close every connection and end every subscription. Safe to call twice."""
        if self._closed:
            return
        with self._write_lock:
            self._closed = True
            self._conn.close()
        with self._readers_lock:
            readers, self._idle_readers = self._idle_readers, []
        self._subscribers.close_all()
        for conn in readers:
            conn.close()

    def __repr__(self) -> str:
        return f"EventStore({self.path!r}, synchronous={self.synchronous!r})"


class SqliteTransaction:
    """The write connection inside one transaction (a ``Transaction``); ``connection`` is sqlite3's own."""

    dialect: Final = "sqlite"

    __slots__ = ("connection",)

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.connection.execute(sql, parameters)

    def has_table(self, name: str) -> bool:
        return self.connection.execute(_HAS_TABLE, (name,)).fetchone() is not None
