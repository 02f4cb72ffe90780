"""What every backend of the event log shares: the records, the append's bookkeeping, the interface.

A log is an ordered sequence of events. Each has a *position* (global, dense: 1, 2, 3, ... with no
gap, in commit order) and belongs to one *stream* in which it has a *version* (1, 2, 3, ...).
``UNIQUE(stream_id, version)`` is the optimistic-concurrency guard. A backend (``eventstore.sqlite``,
``eventstore.postgres``) stores the same table, ``events(position, stream_id, version, type, data,
recorded_at)``, and keeps the same promises; ``EventLog`` is what callers may rely on.

SQL that callers write against a backend (projections, leases, mailboxes) uses ``?`` placeholders
and the SQL both SQLite and PostgreSQL speak; a ``Transaction`` or ``EventLog.query`` translates
placeholders for its database, and ``dialect`` says which one it is where DDL must differ.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import msgspec

from eventstore.errors import ConcurrencyError, CorruptEventError, FencedError

if TYPE_CHECKING:
    from eventstore.subscription import Subscription

#: ``expected_version`` value: append whatever the stream's current version is.
ANY: Final = "any"
#: ``expected_version`` value: the stream must not exist yet (its version is 0).
NO_STREAM: Final = "no_stream"

ExpectedVersion = int | Literal["any", "no_stream"]

#: Decodes a stored row's ``(type, data)`` into an object; raise anything to reject it.
Codec = Callable[[str, str], Any]

#: The layout's version (SQLite: PRAGMA user_version; PostgreSQL: the eventstore_meta table).
SCHEMA_VERSION: Final = 1
#: The events table's columns, in the order every read returns them.
EVENT_COLUMNS: Final = ("position", "stream_id", "version", "type", "data", "recorded_at")

Dialect = Literal["sqlite", "postgresql"]

class NewEvent(msgspec.Struct, frozen=True):
    """An event about to be appended: its type name and its JSON text."""

    type: str
    data: str

    @classmethod
    def from_bytes(cls, type: str, data: bytes) -> NewEvent:
        return cls(type, data.decode())


class Fence(msgspec.Struct, frozen=True):
    """An append's fencing token: it was decided under ``epoch`` of the lease ``lease``.

    The append transaction reads the lease's epoch (``eventstore.lease``) and refuses the append
    with FencedError, writing nothing of it, unless the lease is still at that epoch: an owner
    paused past its lease and overtaken meanwhile cannot land one more write."""

    lease: str
    epoch: int


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
    fence: Fence | None = None

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


def check_fence(fence: object) -> None:
    """A fence, if given, is a Fence: refused here, so that it fails this append alone."""
    if fence is not None and type(fence) is not Fence:
        raise TypeError(f"an append's fence is an eventstore.Fence or None, not {type(fence).__name__}")


def validate_append(
    stream_id: str, events: Iterable[NewEvent], expected_version: ExpectedVersion, now_ns: int
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
        # Text both logs can store, checked here so that it fails this append alone, not the batch it
        # would join: no NUL (PostgreSQL's text cannot hold one; the JSON escape \u0000 is fine) and
        # no lone surrogate (not UTF-8).
        if isinstance(event.data, str) and not _storable(event.data):
            raise ValueError(f"the data of an event of type {event.type!r} holds a NUL character or a lone "
                             "surrogate, which no log can store: escape it (a JSON encoder does)")
        if not _storable(event.type):
            raise ValueError(f"an event type holds a NUL character or a lone surrogate: {event.type!r}")
    if not _storable(stream_id):
        raise ValueError(f"stream_id holds a NUL character or a lone surrogate: {stream_id!r}")
    return stream_id, batch, expected_version, now_ns


def _storable(text: str) -> bool:
    """No NUL, and UTF-8 (no lone surrogate). ``isascii`` reads a flag CPython keeps, so most text
    costs only the scan for NUL; the rest is encoded once."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:  # silent: the failure is the answer (the caller raises a ValueError)
        return False
    return True


#: A row as a backend inserts it: ``(stream_id, version, type, data, recorded_at)``.
Row = tuple[str, int, str, str, int]


def stage_appends(
    appends: Sequence[PendingAppend],
    next_position: int,
    cached_versions: dict[str, int],
    read_version: Callable[[str], int],
    read_epoch: Callable[[str], int | None] | None = None,
) -> tuple[list[Row], dict[str, int]]:
    """Inside a backend's write transaction (nobody else inserting): the rows to insert, in order.

    Each append gets its versions and positions (``first_version``, ``first_position``) or its
    ConcurrencyError; a failed one is skipped and the others still go in, except the stream's later
    appends that name a version: they were computed assuming the refused one landed, and could
    otherwise land by chance after another writer's events (``ANY`` appends still go in). ``cached_versions`` is
    only a hint (the last version this process knew of each stream): a mismatch re-reads the
    stream, and a stale hint that matched is caught by UNIQUE(stream_id, version) at insert, after
    which the backend starts over with no hint. Returns the rows and each stream's version after them.

    A fenced append (``Fence``) goes in only while its lease is at the fence's epoch; otherwise it gets
    FencedError and the others still go in. ``read_epoch`` reads a lease's epoch (None: no lease of
    that name) inside the same transaction, once per lease per batch; None when the backend checks
    the fences itself (PostgreSQL's one-statement append does, on the server).
    """
    rows: list[Row] = []
    append_row = rows.append
    staged: dict[str, int] = {}
    refused: dict[str, ConcurrencyError] = {}
    epochs: dict[str, int | None] = {}
    passed: Fence | None = None  # the last fence found current: a session's appends share one
    for pending in appends:
        pending.error = None
        sid = pending.stream_id
        fence = pending.fence
        if fence is not None and fence is not passed and read_epoch is not None:
            lease = fence.lease
            epoch = epochs[lease] if lease in epochs else epochs.setdefault(lease, read_epoch(lease))
            if epoch != fence.epoch:
                pending.error = FencedError(sid, fence.lease, fence.epoch, epoch)
                continue
            passed = fence
        if sid in refused and pending.expected_version != ANY:
            pending.error = ConcurrencyError(sid, pending.expected_version, refused[sid].actual)
            continue
        current = staged.get(sid)
        if current is None:
            current = cached_versions.get(sid)
            if current is None:
                current = read_version(sid)
            elif not _version_matches(pending.expected_version, current):
                current = read_version(sid)  # the cached one may be stale
        expected = pending.expected_version
        if expected != ANY and not _version_matches(expected, current):
            pending.error = refused[sid] = ConcurrencyError(sid, expected, current)
            staged[sid] = current
            continue
        pending.first_version = current + 1
        pending.first_position = next_position + len(rows)
        recorded_at = pending.recorded_at
        for event in pending.events:
            current += 1
            append_row((sid, current, event.type, event.data, recorded_at))
        staged[sid] = current
    return rows, staged


def decode_rows(rows: Iterable[tuple[Any, ...]], codec: Codec | None) -> Iterator[RecordedEvent]:
    """Stored rows as RecordedEvents; a row the codec rejects is a CorruptEventError naming its position."""
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


class Cursor(Protocol):
    """What a statement run in a Transaction returns (sqlite3's and psycopg's cursors both are one)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Transaction(Protocol):
    """One write transaction of a backend, as ``EventLog.write_transaction()`` yields it.

    Statements use ``?`` placeholders on either backend. Everything run in it commits together
    when the ``with`` block ends, or none of it when the block raises.
    """

    @property
    def dialect(self) -> Dialect: ...

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor: ...

    def has_table(self, name: str) -> bool:
        """Whether the log's database has this table, as this transaction sees it."""
        ...


class WriteTransaction(Protocol):
    """``with log.write_transaction() as tx:``: the block's statements commit together, or not at all."""

    def __enter__(self) -> Transaction: ...

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None: ...


class EventLog(Protocol):
    """The event log as its users see it, whichever database holds it."""

    #: Where the log is, fit to print: a file path, or a database URL without its password.
    path: str
    dialect: Dialect
    #: Appends a BatchingWriter commits at most in one transaction, unless told otherwise.
    batch_size: int

    @property
    def closed(self) -> bool: ...

    def append(
        self, stream_id: str, events: Iterable[NewEvent], expected_version: ExpectedVersion = ANY,
        *, fence: Fence | None = None,
    ) -> AppendResult: ...

    def validate_append(
        self, stream_id: str, events: Iterable[NewEvent], expected_version: ExpectedVersion
    ) -> tuple[str, tuple[NewEvent, ...], ExpectedVersion, int]: ...

    def commit(self, appends: Sequence[PendingAppend]) -> None: ...

    def import_recorded(self, events: Sequence[RecordedEvent]) -> None: ...

    def stream_version(self, stream_id: str) -> int: ...

    def last_position(self) -> int: ...

    def streams(self) -> Iterator[tuple[str, int]]: ...

    def read_all(
        self, after: int = 0, *, codec: Codec | None = None, page_size: int = 1000
    ) -> Iterator[RecordedEvent]: ...

    def read_stream(
        self, stream_id: str, after_version: int = 0, *, codec: Codec | None = None, page_size: int = 1000
    ) -> Iterator[RecordedEvent]: ...

    def version_at(self, stream_id: str, position: int) -> int: ...

    def subscribe(
        self,
        after: int = 0,
        *,
        stream_id: str | None = None,
        codec: Codec | None = None,
        poll_interval: float = 0.05,
        page_size: int = 500,
        expect_others: bool = True,
    ) -> Subscription: ...

    def subscriptions(self) -> int: ...

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def has_table(self, name: str) -> bool: ...

    def checkpoint(self, name: str) -> int: ...

    def write_transaction(self) -> WriteTransaction: ...

    def close(self) -> None: ...
