"""The part of a SQL backend that does not depend on which database it is: appending through
``stage_appends``, paging reads, subscriptions, checkpoints.

A backend (``eventstore.sqlite``, ``eventstore.postgres``) subclasses ``SqlEventLog`` and gives it
four things: ``_read_rows`` (one read statement, its own typed errors), ``_commit_once`` (one write
transaction inserting ``stage_appends``' rows), ``has_table`` and ``write_transaction``, plus its
placeholder style. Everything a caller reads therefore means the same on either database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any, Final, NoReturn, cast

from eventstore.errors import EventStoreError, LogCopyError, StoreClosedError
from eventstore.log import (
    ANY,
    AppendResult,
    Codec,
    Dialect,
    ExpectedVersion,
    Fence,
    NewEvent,
    PendingAppend,
    RecordedEvent,
    Row,
    Transaction,
    check_fence,
    decode_rows,
    validate_append,
)
from eventstore.subscription import Subscribers, Subscription


class StaleVersionCache(Exception):
    """Raised by a backend's ``_commit_once`` (after rolling back) when UNIQUE(stream_id, version)
    refused a row: another process wrote to a stream this one had cached. Never leaves the store."""


class Statements:
    """The store's own statements, in one placeholder style (``?`` for SQLite, ``%s`` for psycopg)."""

    def __init__(self, mark: str) -> None:
        select = "SELECT position, stream_id, version, type, data, recorded_at FROM events "
        self.page_all: Final = select + f"WHERE position > {mark} ORDER BY position LIMIT {mark}"
        self.page_stream: Final = (
            select + f"WHERE stream_id = {mark} AND version > {mark} ORDER BY version LIMIT {mark}"
        )
        self.max_position: Final = "SELECT COALESCE(MAX(position), 0) FROM events"
        self.stream_version: Final = f"SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = {mark}"
        self.version_at: Final = (
            f"SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = {mark} AND position <= {mark}"
        )
        self.streams: Final = (
            "SELECT stream_id, MAX(version), MIN(position) AS first FROM events GROUP BY stream_id ORDER BY first"
        )
        self.checkpoint: Final = f"SELECT position FROM checkpoints WHERE name = {mark}"


@lru_cache(maxsize=512)
def format_style(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (and a literal ``%`` doubled). Our callers' SQL holds
    no ``?`` inside string literals: they pass values as parameters."""
    return sql.replace("%", "%%").replace("?", "%s")


class SqlEventLog:
    """An event log in a SQL table; see ``eventstore.log`` for what it promises."""

    path: str
    dialect: Dialect
    _sql: Statements
    #: A BatchingWriter's default batch: SQLite's commits are cheap, so a batch need not be long.
    batch_size: int = 512
    #: Turns a caller's ``?``-style SQL into this backend's style.
    _caller_sql: Callable[[str], str] = staticmethod(lambda sql: sql)
    #: Whether a typed write error leaves the driver's own out of its chain (PostgreSQL: what the
    #: driver says may quote the URL, password included).
    _hide_driver_errors: bool = False

    def __init__(self, clock: Callable[[], int]) -> None:
        self._clock = clock
        self._closed = False
        self._write_lock = threading.RLock()
        # Last version of each stream as this process last wrote or read it. Only a hint:
        # UNIQUE(stream_id, version) is the real guard, and a mismatch re-reads the table.
        self._versions: dict[str, int] = {}
        self._subscribers = Subscribers()

    # -- what a backend provides ----------------------------------------------------------

    def _read_rows(self, sql: str, parameters: Sequence[Any]) -> list[tuple[Any, ...]]:
        """All rows of one read statement (in the backend's style), with the backend's typed errors."""
        raise NotImplementedError

    def _commit_once(self, appends: Sequence[PendingAppend], trust_cache: bool) -> tuple[int, list[Row]]:
        """One write transaction: ``stage_appends``' rows inserted; (last position, rows). Raises
        StaleVersionCache when the version cache was stale (nothing written)."""
        raise NotImplementedError

    def has_table(self, name: str) -> bool:
        """Whether the log's database has a table (or view) of that name, e.g. a projection's."""
        raise NotImplementedError

    def _rollback(self) -> None:
        """Roll back the write connection's open transaction, if any (never raises)."""
        raise NotImplementedError

    def _typed_write(self, exc: BaseException) -> EventStoreError | None:
        """The store's error for what the database said about a failed write; None for anything else."""
        raise NotImplementedError

    def _begin_write_transaction(self) -> Transaction:
        """Under the write lock: a transaction begun for ``write_transaction`` (with its backend's lock)."""
        raise NotImplementedError

    def _commit_write_transaction(self) -> None:
        raise NotImplementedError

    def _insert_recorded(self, events: Sequence[RecordedEvent]) -> None:
        """One write transaction inserting ``events`` verbatim, after checking (inside it, under the
        commit lock) that the first follows this log's last position (``check_follows``)."""
        raise NotImplementedError

    # -- writing ----------------------------------------------------------------------------

    def append(
        self,
        stream_id: str,
        events: Iterable[NewEvent],
        expected_version: ExpectedVersion = ANY,
        *,
        fence: Fence | None = None,
    ) -> AppendResult:
        """Append events to a stream in one transaction: all of them, or none.

        Raises ConcurrencyError (writing nothing) when the stream is not at
        ``expected_version``, and FencedError when ``fence`` names an epoch its lease has left.
        Use a BatchingWriter for high-rate small appends.
        """
        pending = self.pending_append(stream_id, events, expected_version, seq=0, fence=fence)
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
        fence: Fence | None = None,
    ) -> PendingAppend:
        """Validate an append and stamp it with the clock, without writing it yet."""
        check_fence(fence)
        return PendingAppend(seq, *self.validate_append(stream_id, events, expected_version), fence=fence)

    def validate_append(
        self, stream_id: str, events: Iterable[NewEvent], expected_version: ExpectedVersion
    ) -> tuple[str, tuple[NewEvent, ...], ExpectedVersion, int]:
        """Check an append's arguments; returns them normalised, with the time of recording."""
        return validate_append(stream_id, events, expected_version, self._clock())

    def commit(self, appends: Sequence[PendingAppend]) -> None:
        """Write several appends in one transaction; each gets its own result or error.

        An append whose expected version fails is skipped (its ``error`` is set) and the
        others still commit. Errors of the database itself fail every append.
        """
        with self._write_lock:
            self._check_open()
            try:
                last_position, rows = self._commit_once(appends, trust_cache=True)
            except StaleVersionCache:
                # Another process wrote to a stream we had cached: start over from the table.
                self._versions.clear()
                try:
                    last_position, rows = self._commit_once(appends, trust_cache=False)
                except StaleVersionCache as again:  # not the cache, then: the database's own refusal
                    assert again.__cause__ is not None
                    raise again.__cause__ from None
            if rows and self._subscribers:
                # Still under the write lock, so followers get the batches in commit order.
                self._subscribers.hand_over(rows, last_position - len(rows) + 1)

    def _failed_write(self, exc: BaseException, appends: Sequence[PendingAppend] = ()) -> NoReturn:
        """After a write transaction failed: roll back, and raise what the database said (a full disk,
        a lost server, a damaged page) as the store's own error, also each append's; any other error
        as it was."""
        self._rollback()
        typed = self._typed_write(exc)
        for pending in appends:
            pending.error = typed or exc
        if typed is None:
            raise exc
        raise typed from (None if self._hide_driver_errors else exc)

    def write_transaction(self) -> _WriteTransaction:
        """A ``with`` block holding the write lock inside one transaction (SQLite: BEGIN IMMEDIATE;
        PostgreSQL: one holding the log's advisory lock, serialised with other processes' write
        transactions, not with appends): what it writes commits together, or not at all."""
        return _WriteTransaction(self)

    def import_recorded(self, events: Sequence[RecordedEvent]) -> None:
        """Append events exactly as another log recorded them (positions, versions, times), in one
        transaction: for copying a log between backends (``eventstore.migrate``). The first must
        follow this log's last position and the positions must run on without a gap; a version
        this log already has is refused by UNIQUE(stream_id, version). Raises LogCopyError."""
        if not events:
            return
        first = events[0].position
        for offset, recorded in enumerate(events):
            if recorded.position != first + offset:
                raise LogCopyError(self.path, f"positions jump from {first + offset - 1} to {recorded.position}")
        with self._write_lock:
            self._check_open()
            self._insert_recorded(events)
            self._versions.clear()  # every stream's version may have moved
        if self._subscribers:
            rows = [(e.stream_id, e.version, e.type, e.data, e.recorded_at) for e in events]
            self._subscribers.hand_over(rows, first)

    def check_follows(self, last_position: int, first: int) -> None:
        """Inside ``_insert_recorded``: refuse a batch that does not start right after the last position."""
        if first != last_position + 1:
            raise LogCopyError(self.path, f"the log ends at position {last_position}, and the events to add start "
                                          f"at {first}: copy into an empty log, or go on from where it ends")

    # -- reading ------------------------------------------------------------------------------

    def _read_one(self, sql: str, parameters: Sequence[Any]) -> Any:
        rows = self._read_rows(sql, parameters)
        return rows[0][0] if rows else None

    def stream_version(self, stream_id: str) -> int:
        """The stream's last version, 0 when it has no events."""
        return cast(int, self._read_one(self._sql.stream_version, (stream_id,)))

    def last_position(self) -> int:
        """The position of the newest committed event, 0 for an empty log."""
        return cast(int, self._read_one(self._sql.max_position, ()))

    def streams(self) -> Iterator[tuple[str, int]]:
        """Every stream as ``(stream_id, last_version)``, in order of first appearance."""
        for stream_id, version, _ in self._read_rows(self._sql.streams, ()):
            yield stream_id, version

    def read_all(
        self, after: int = 0, *, codec: Codec | None = None, page_size: int = 1000
    ) -> Iterator[RecordedEvent]:
        """Every event with a position greater than ``after``, in position order."""
        while True:
            page = self._page_all(after, page_size)
            yield from decode_rows(page, codec)
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
            yield from decode_rows(page, codec)
            if len(page) < page_size:
                return
            after_version = page[-1][2]

    def _page_all(self, after: int, limit: int) -> list[tuple[Any, ...]]:
        return self._read_rows(self._sql.page_all, (after, limit))

    def _page_stream(self, stream_id: str, after_version: int, limit: int) -> list[tuple[Any, ...]]:
        return self._read_rows(self._sql.page_stream, (stream_id, after_version, limit))

    def version_at(self, stream_id: str, position: int) -> int:
        """The stream's version as of log position ``position`` (0 before its first event)."""
        return self._version_at(stream_id, position)

    def _version_at(self, stream_id: str, position: int) -> int:
        return cast(int, self._read_one(self._sql.version_at, (stream_id, position)))

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query with ``?`` placeholders, e.g. of a projection's tables."""
        self._check_open()
        return self._read_rows(self._caller_sql(sql), parameters)

    def checkpoint(self, name: str) -> int:
        """The last position the projection ``name`` has applied (0 before its first batch)."""
        position = self._read_one(self._sql.checkpoint, (name,))
        return position or 0

    # -- live -----------------------------------------------------------------------------------

    def subscribe(
        self,
        after: int = 0,
        *,
        stream_id: str | None = None,
        codec: Codec | None = None,
        poll_interval: float = 0.05,
        page_size: int = 500,
        expect_others: bool = True,
    ) -> Subscription:
        """Events after position ``after``: first what is stored, then live as they commit.

        Commits in this process are handed to the subscription as they happen (no read
        back); commits by other processes are found by reading the log every
        ``poll_interval`` seconds of quiet, or at once where the backend hears of them.
        ``expect_others=False`` says that this process writes what the subscription follows (a
        stream it holds the lease of): it need not be told of other processes' commits at once,
        and a backend may save the listening (their commits are still found at the next quiet read).
        It holds no connection: every read borrows one.
        """
        self._check_open()
        quiet = self._quiet_read_interval(poll_interval, expect_others)
        sub = Subscription(self, after, stream_id, codec, quiet, page_size)
        self._subscribers.add(sub)  # before its first read: a commit after this is handed to it
        if self._closed:
            sub.close()
        return sub

    def _quiet_read_interval(self, poll_interval: float, expect_others: bool) -> float:
        """How long a live subscription waits in silence before reading the log anyway."""
        return poll_interval

    def _forget(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def subscriptions(self) -> int:
        """How many subscriptions are open (for tests and diagnostics)."""
        return len(self._subscribers)

    # -- lifecycle --------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the event store {self.path} is closed")

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> SqlEventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError


class _WriteTransaction:
    """Lets a projection write its tables and its checkpoint in one atomic transaction."""

    def __init__(self, store: SqlEventLog) -> None:
        self._store = store

    def __enter__(self) -> Transaction:
        store = self._store
        store._write_lock.acquire()
        try:
            store._check_open()
            return store._begin_write_transaction()
        except BaseException as exc:
            try:
                store._failed_write(exc)
            finally:
                store._write_lock.release()

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        store = self._store
        try:
            if exc is None:
                try:
                    store._commit_write_transaction()
                except BaseException as error:
                    store._failed_write(error)
                return
            store._rollback()
            # What the database said (a full disk, a damaged file, a lost server) becomes the store's
            # error; anything else raised in the block goes on as it was.
            typed = store._typed_write(exc)
            if typed is not None:
                raise typed from (None if store._hide_driver_errors else exc)
        finally:
            store._write_lock.release()
