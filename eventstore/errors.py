"""Typed errors of the event store. Each message says what went wrong and what to do."""

from __future__ import annotations

import shlex


class EventStoreError(Exception):
    """Base class of every error the event store raises."""


class NotAnEventLogError(EventStoreError):
    """The file exists but is not an event log (not SQLite, or SQLite with a foreign schema)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        where = ("Point to an event log's database (or schema), or to an empty one to create one there."
                 if "://" in path else
                 "Point to an event log file, or to a path that does not exist yet to create one.")
        super().__init__(f"{path} is not an event log: {reason}. {where}")


class NoEventLogError(NotAnEventLogError):
    """Opened with ``create=False``, and there is no log there: no file, or a database (or SQLite
    file) without an events table. Nothing was created."""


class ConcurrencyError(EventStoreError):
    """An append's expected version did not match the stream; nothing was written."""

    def __init__(self, stream_id: str, expected: object, actual: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream_id!r} is at version {actual}, but the append expected {expected}; "
            "nothing was written. Another writer got there first: re-read the stream and decide again."
        )


class CorruptEventError(EventStoreError):
    """A stored row could not be decoded. Names its position; no other row is affected."""

    def __init__(self, position: int, event_type: str, reason: str) -> None:
        self.position = position
        self.event_type = event_type
        self.reason = reason
        super().__init__(
            f"event at position {position} (type {event_type!r}) cannot be decoded: {reason}. "
            "The rest of the log is intact; inspect the row with "
            f"`select * from events where position={position}` (in `sqlite3 FILE`, or `psql URL`)."
        )


class StoreClosedError(EventStoreError):
    """The store or writer was closed; it takes no more work."""


class LogWriteError(EventStoreError):
    """The log file could not take a write (an I/O error, a read-only file...).

    Nothing that was committed before is affected: the appends of the failed
    transaction are simply not in the log. ``then`` says how to carry on once the cause
    is fixed; a caller that knows more (which session to resume) swaps it with
    ``with_next_step``.
    """

    def __init__(self, path: str, reason: str, then: str = "try again", *, remedy: str = "fix the cause") -> None:
        self.path = path
        self.reason = reason
        self.then = then
        self.remedy = remedy
        super().__init__(
            f"{reason} writing {path}: the last appends were not written; nothing committed was lost; "
            f"{remedy} and {then}"
        )

    def with_next_step(self, then: str) -> LogWriteError:
        """The same error, naming ``then`` (e.g. "resume (forge resume ID)") as the way on."""
        copy = type(self).__new__(type(self))
        LogWriteError.__init__(copy, self.path, self.reason, then, remedy=self.remedy)
        copy.__cause__ = self.__cause__
        return copy


class DiskFullError(LogWriteError):
    """The disk (or the file's size limit) is full: SQLite said SQLITE_FULL."""

    def __init__(self, path: str, then: str = "try again") -> None:
        super().__init__(path, "disk full", then, remedy="free space")


class LogReadError(EventStoreError):
    """The log file could not be read (an I/O error). Nothing was changed."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{reason} reading {path}: nothing was changed; check the disk and the file, then try again")


class LogUnavailableError(LogReadError):
    """The log's database server could not be reached or dropped the connection (PostgreSQL).

    Nothing was changed by the failed call; appends it covered were not written. ``path`` is
    the log's URL without its password.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        EventStoreError.__init__(
            self,
            f"cannot reach the event log at {path} ({reason}): nothing was changed; check that the "
            f"PostgreSQL server is up and the URL, user and password are right, then try again",
        )


class LogUnavailableWriteError(LogWriteError):
    """A write the log's database server was not there to take (PostgreSQL): it could not be reached,
    or it dropped the connection. The appends were not written; nothing committed was lost. Like
    LogUnavailableError for a read, it passes once the server is back: try again then."""


class BackendMissingError(EventStoreError):
    """The log is in a database whose driver is not installed (e.g. PostgreSQL without psycopg)."""

    def __init__(self, path: str, install: str) -> None:
        self.path = path
        self.install = install
        super().__init__(f"{path} is a PostgreSQL database, and its driver is not installed: {install}")


class CorruptLogError(EventStoreError):
    """SQLite found a damaged page (or a damaged header) in the log file; or PostgreSQL reported
    damaged data (SQLSTATE class XX: restore the database from a backup)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        if "://" in path:
            EventStoreError.__init__(self, f"the event log at {path} is damaged ({reason}): stop writing to it "
                                           f"and restore the database from a backup")
            return
        super().__init__(
            f"{path} is damaged ({reason}): stop writing to it, keep a copy, and recover what it holds with "
            f"`sqlite3 {shlex.quote(path)} .recover | sqlite3 recovered.db`, then use recovered.db (or restore a "
            f"backup of the file)"
        )


class LogCopyError(EventStoreError):
    """Copying a log into another was refused: nothing of the refused batch was written."""

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"cannot copy into {target}: {reason}")


class LeaseHeldError(EventStoreError):
    """Another owner holds the lease and it has not expired; nothing was changed."""

    def __init__(self, name: str, owner: str, expires_in: float) -> None:
        self.name = name
        self.owner = owner
        self.expires_in = expires_in
        super().__init__(
            f"lease {name!r} is held by {owner} for {max(expires_in, 0.0):.1f} s more; "
            "wait for its owner to release it or for it to expire, then try again."
        )


class LeaseLostError(EventStoreError):
    """A lease its owner meant to renew is no longer its own (taken after it expired, or released)."""

    def __init__(self, name: str, owner: str, holder: str | None) -> None:
        self.name = name
        self.owner = owner
        self.holder = holder
        now_held = f"now held by {holder}" if holder else "no longer recorded"
        super().__init__(
            f"lease {name!r} of {owner} was lost ({now_held}): it expired before it was renewed. "
            "Stop acting on it; what this owner knew of it may be out of date."
        )


class FencedError(EventStoreError):
    """An append made under a lease's epoch that is no longer the lease's (``Fence``): another owner
    took the lease since (its holder was paused past it, say). Nothing of the append was written."""

    def __init__(self, stream_id: str, lease: str, epoch: int, current: int | None) -> None:
        self.stream_id = stream_id
        self.lease = lease
        self.epoch = epoch
        self.current = current
        now = (f"is now at epoch {current}: another owner took it since" if current is not None
               else "is no longer recorded")
        super().__init__(
            f"append to stream {stream_id!r} refused: it was made under epoch {epoch} of lease {lease!r}, "
            f"which {now}; nothing of it was written. Stop acting on the stream here: whoever holds the "
            "lease now drives it (take the lease again and re-read the stream before deciding anything)."
        )
