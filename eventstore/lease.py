"""Leases: who may act on a named thing, until when. Generic: a name is any string.

A lease is one row ``leases(name, owner, expires_at, acquired_at)`` in the log's database
(its SQLite file, or its PostgreSQL schema), times in wall-clock nanoseconds. ``acquire`` takes it when it is free, expired, already
the caller's, or held by an owner the caller's ``stale`` check calls dead; otherwise it
raises LeaseHeldError naming the holder. ``renew`` extends a lease still held;
``release`` gives it up. Every write runs in one ``write_transaction`` of the log, which
both backends serialise (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: the log's advisory lock),
so two processes (or hosts) sharing the log never both win.

Wall-clock time, not the store's event clock: leases are compared across processes
(tests fake the event clock for repeatable logs; a lease must keep real time). The
clock is injectable on its own for tests of expiry.

The table is created by the first lease write, not with the log's schema: a log that
never used a lease has none, and opening a log never writes.

``LeaseStore`` is the interface; ``LogLeases`` its implementation on any ``EventLog``.

A lease says who *may* drive; it cannot stop an owner that was paused past its expiry from
trying one more write. That write is refused by the stream's optimistic concurrency instead:
the next owner reads the stream after taking the lease and appends at the version it read,
so of two writers at one version exactly one commits (see ``ConcurrencyError``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

import msgspec

from eventstore.errors import LeaseHeldError, LeaseLostError
from eventstore.log import EventLog

# BIGINT: nanoseconds need 64 bits (SQLite reads it as INTEGER; PostgreSQL's INTEGER has 32).
_CREATE: Final = (
    "CREATE TABLE IF NOT EXISTS leases ("
    "name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at BIGINT NOT NULL, acquired_at BIGINT NOT NULL)"
)
_SELECT: Final = "SELECT name, owner, expires_at, acquired_at FROM leases WHERE name = ?"


class Lease(msgspec.Struct, frozen=True):
    """A lease as recorded: ``owner`` holds ``name`` until ``expires_at`` (wall-clock ns)."""

    name: str
    owner: str
    expires_at: int
    acquired_at: int

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

    def acquire(self, name: str, owner: str, ttl: float, *, stale: StaleCheck | None = None) -> Lease:
        """Take ``name`` for ``ttl`` seconds: free, expired, ours already, or ``stale``.

        Raises LeaseHeldError (changing nothing) when another owner holds it.
        """
        _check_names(name, owner)
        ttl_ns = _check_ttl(ttl)
        with self.store.write_transaction() as conn:
            conn.execute(_CREATE)
            now = self._clock()
            current = _lease(conn.execute(_SELECT, (name,)).fetchone())
            if current is not None and current.owner != owner and current.expires_at > now:
                if stale is None or not stale(current):
                    raise LeaseHeldError(name, current.owner, current.expires_in(now))
            acquired_at = current.acquired_at if current is not None and current.owner == owner else now
            lease = Lease(name, owner, now + ttl_ns, acquired_at)
            conn.execute(
                "INSERT INTO leases (name, owner, expires_at, acquired_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at, "
                "acquired_at = excluded.acquired_at",
                (lease.name, lease.owner, lease.expires_at, lease.acquired_at),
            )
            return lease

    def renew(self, name: str, owner: str, ttl: float) -> Lease:
        """Extend ``owner``'s lease to ``ttl`` seconds from now.

        Raises LeaseLostError when the row names another owner or is gone (someone
        took it after it expired, and maybe gave it up again): whatever ``owner``
        knew of the thing is out of date. A lease past its expiry that nobody took
        is still ours, and renewed.
        """
        _check_names(name, owner)
        ttl_ns = _check_ttl(ttl)
        with self.store.write_transaction() as conn:
            conn.execute(_CREATE)
            now = self._clock()
            current = _lease(conn.execute(_SELECT, (name,)).fetchone())
            if current is None or current.owner != owner:
                raise LeaseLostError(name, owner, current.owner if current is not None else None)
            conn.execute("UPDATE leases SET expires_at = ? WHERE name = ?", (now + ttl_ns, name))
            return msgspec.structs.replace(current, expires_at=now + ttl_ns)

    def release(self, name: str, owner: str) -> bool:
        """Give the lease up; False (changing nothing) when ``owner`` did not hold it."""
        _check_names(name, owner)
        with self.store.write_transaction() as conn:
            conn.execute(_CREATE)
            deleted = conn.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner)).rowcount
            return deleted > 0

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
        rows = self.store.query(_SELECT, (name,))
        return _lease(rows[0]) if rows else None

    def __repr__(self) -> str:
        return f"LogLeases({self.store.path!r})"


def _lease(row: tuple[Any, ...] | None) -> Lease | None:
    return Lease(*row) if row is not None else None
