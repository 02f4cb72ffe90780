"""Leases: who may act on a named thing, until when, under which epoch. Generic: a name is any string.

A lease is one row ``leases(name, owner, expires_at, acquired_at, epoch)`` in the log's database
(its SQLite file, or its PostgreSQL schema), times in wall-clock nanoseconds. ``acquire`` takes it when
it is free, expired, already the caller's, or held by an owner the caller's ``stale`` check calls
dead; otherwise it raises LeaseHeldError naming the holder. ``renew`` extends a lease still held;
``release`` gives it up. Every write runs in one ``write_transaction`` of the log, which both
backends serialise (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: the log's advisory lock), so two
processes (or hosts) sharing the log never both win.

Wall-clock time, not the store's event clock: leases are compared across processes (tests fake the
event clock for repeatable logs; a lease must keep real time). The clock is injectable on its own
for tests of expiry.

The table is created by the first lease write, not with the log's schema: a log that never used a
lease has none, and opening a log never writes. A table made before epochs existed gets its
``epoch`` column the same way, at the first lease write (its rows start at epoch 0); reads of it
before then see epoch 0.

``LeaseStore`` is the interface; ``LogLeases`` its implementation on any ``EventLog``.

**Fencing.** A lease says who *may* act; it cannot stop an owner that was paused past its expiry
(a GC pause, SIGSTOP, a VM migration) from trying one more write when it wakes, before its own
renewal notices the loss. So every lease has an *epoch*, a fencing token that only grows: each
acquisition by another owner than the last, or after the lease expired or was released, adds one;
an owner extending its own live lease (``acquire`` again, ``renew``) keeps it. A released lease's
row stays, ownerless, so that its epoch survives. The owner puts ``Fence(name, lease.epoch)`` on
its appends (``EventLog.append``, ``BatchingWriter.append``), and the append transaction itself
reads the lease's epoch and refuses a stale one with FencedError, writing nothing of that append:
the check and the insert are one transaction, which a new owner's ``acquire`` cannot interleave
with (SQLite: both are write transactions; PostgreSQL: the append locks the lease's row FOR SHARE,
the acquire updates it). So after ``acquire`` returns, no append fenced by an earlier epoch lands.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, Protocol

import msgspec

from eventstore.errors import LeaseHeldError, LeaseLostError
from eventstore.log import EventLog, Transaction

# BIGINT: nanoseconds need 64 bits (SQLite reads it as INTEGER; PostgreSQL's INTEGER has 32).
_CREATE: Final = (
    "CREATE TABLE IF NOT EXISTS leases ("
    "name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at BIGINT NOT NULL, acquired_at BIGINT NOT NULL, "
    "epoch BIGINT NOT NULL DEFAULT 0)"
)
_ADD_EPOCH: Final = "ALTER TABLE leases ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0"
#: The leases table's columns, as either database lists them.
_COLUMNS: Final = {
    "sqlite": "SELECT name FROM pragma_table_info('leases')",
    "postgresql": "SELECT column_name FROM information_schema.columns "
                  "WHERE table_schema = current_schema() AND table_name = 'leases'",
}
_SELECT: Final = "SELECT name, owner, expires_at, acquired_at, epoch FROM leases WHERE name = ?"
#: A table made before epochs: every lease in it is at epoch 0.
_SELECT_BEFORE_EPOCHS: Final = "SELECT name, owner, expires_at, acquired_at, 0 FROM leases WHERE name = ?"
#: The owner of a released lease's row (no real owner is empty): the row stays for its epoch.
_RELEASED: Final = ""


class Lease(msgspec.Struct, frozen=True):
    """A lease as recorded: ``owner`` holds ``name`` until ``expires_at`` (wall-clock ns), under ``epoch``
    (the fencing token its appends carry: ``Fence(name, epoch)``)."""

    name: str
    owner: str
    expires_at: int
    acquired_at: int
    epoch: int = 0

    def expires_in(self, now_ns: int) -> float:
        """Seconds left at ``now_ns`` (negative once expired)."""
        return (self.expires_at - now_ns) / 1e9


#: Called with a lease another owner holds and has not let expire: True takes it over
#: at once (e.g. its owner is a process on this host that no longer exists).
StaleCheck = Callable[[Lease], bool]


class LeaseStore(Protocol):
    """What an engine needs of a lease backend."""

    def acquire(self, name: str, owner: str, ttl: float, *, stale: StaleCheck | None = None) -> Lease: ...

    def renew(self, name: str, owner: str, ttl: float) -> Lease: ...

    def release(self, name: str, owner: str) -> bool: ...

    def holder(self, name: str) -> Lease | None: ...

    def recorded(self, name: str) -> Lease | None: ...


def _check_ttl(ttl: float) -> int:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl) or ttl <= 0:
        raise ValueError(f"a lease's ttl is a number of seconds > 0, not {ttl!r}")
    return int(ttl * 1e9)


def _check_names(name: str, owner: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError("a lease's name must be a non-empty string")
    if not isinstance(owner, str) or not owner:
        raise ValueError("a lease's owner must be a non-empty string")


class LogLeases:
    """Leases in a table of the event log's own database, written in the log's write transactions."""

    def __init__(self, store: EventLog, *, clock: Callable[[], int] = time.time_ns) -> None:
        self.store = store
        self._clock = clock
        self._has_epochs = False  # the table is known to have its epoch column (it never loses it)

    def acquire(self, name: str, owner: str, ttl: float, *, stale: StaleCheck | None = None) -> Lease:
        """Take ``name`` for ``ttl`` seconds: free, expired, ours already, or ``stale``.

        Raises LeaseHeldError (changing nothing) when another owner holds it. The lease's epoch grows
        by one unless it was ours and still live.
        """
        _check_names(name, owner)
        ttl_ns = _check_ttl(ttl)
        with self._write() as conn:
            now = self._clock()
            row = conn.execute(_SELECT, (name,)).fetchone()
            current = _lease(row)
            if current is not None and current.owner != owner and current.expires_at > now:
                if stale is None or not stale(current):
                    raise LeaseHeldError(name, current.owner, current.expires_in(now))
            if current is not None and current.owner == owner and current.expires_at > now:
                lease = Lease(name, owner, now + ttl_ns, current.acquired_at, current.epoch)
            else:
                lease = Lease(name, owner, now + ttl_ns, now, (row[4] if row is not None else 0) + 1)
            conn.execute(
                "INSERT INTO leases (name, owner, expires_at, acquired_at, epoch) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at, "
                "acquired_at = excluded.acquired_at, epoch = excluded.epoch",
                (lease.name, lease.owner, lease.expires_at, lease.acquired_at, lease.epoch),
            )
            return lease

    def renew(self, name: str, owner: str, ttl: float) -> Lease:
        """Extend ``owner``'s lease to ``ttl`` seconds from now, at the same epoch.

        Raises LeaseLostError when the row names another owner or is gone (someone
        took it after it expired, and maybe gave it up again): whatever ``owner``
        knew of the thing is out of date. A lease past its expiry that nobody took
        is still ours, and renewed.
        """
        _check_names(name, owner)
        ttl_ns = _check_ttl(ttl)
        with self._write() as conn:
            now = self._clock()
            current = _lease(conn.execute(_SELECT, (name,)).fetchone())
            if current is None or current.owner != owner:
                raise LeaseLostError(name, owner, current.owner if current is not None else None)
            conn.execute("UPDATE leases SET expires_at = ? WHERE name = ?", (now + ttl_ns, name))
            return msgspec.structs.replace(current, expires_at=now + ttl_ns)

    def release(self, name: str, owner: str) -> bool:
        """Give the lease up; False (changing nothing) when ``owner`` did not hold it. Its row stays,
        ownerless, keeping its epoch: the next owner's is one more."""
        _check_names(name, owner)
        with self._write() as conn:
            released = conn.execute(
                "UPDATE leases SET owner = ?, expires_at = 0 WHERE name = ? AND owner = ?", (_RELEASED, name, owner)
            ).rowcount
            return released > 0

    def holder(self, name: str) -> Lease | None:
        """The lease on ``name`` if someone holds it now; None when free or expired. Writes nothing."""
        lease = self.recorded(name)
        if lease is None or lease.expires_at <= self._clock():
            return None
        return lease

    def recorded(self, name: str) -> Lease | None:
        """The lease on ``name`` as last written, expired or not (who held it last); None when there
        is none (never taken, or released). Writes nothing."""
        if not self.store.has_table("leases"):
            return None
        if not self._has_epochs and "epoch" not in {row[0] for row in self.store.query(_COLUMNS[self.store.dialect])}:
            rows = self.store.query(_SELECT_BEFORE_EPOCHS, (name,))
        else:
            rows = self.store.query(_SELECT, (name,))
        return _lease(rows[0]) if rows else None

    @contextmanager
    def _write(self) -> Iterator[Transaction]:
        """A write transaction of the log with the leases table made, or brought up to date (its epochs)."""
        with self.store.write_transaction() as conn:
            conn.execute(_CREATE)
            if not self._has_epochs and "epoch" not in {row[0] for row in conn.execute(_COLUMNS[conn.dialect]).fetchall()}:
                conn.execute(_ADD_EPOCH)
            yield conn
        self._has_epochs = True  # committed: the column is there for good

    def __repr__(self) -> str:
        return f"LogLeases({self.store.path!r})"


def _lease(row: tuple[Any, ...] | None) -> Lease | None:
    """The lease a row records; None for no row, or the row of a released lease."""
    return Lease(*row) if row is not None and row[1] != _RELEASED else None
