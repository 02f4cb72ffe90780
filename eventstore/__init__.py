"""A small, generic, append-only event log on SQLite.

It knows streams, versions, positions and bytes; nothing about what the events mean.
Leases (``SqliteLeases``) let one owner at a time act on a named thing, across processes.
"""

from eventstore.errors import (
    ConcurrencyError,
    CorruptEventError,
    CorruptLogError,
    DiskFullError,
    EventStoreError,
    LeaseHeldError,
    LeaseLostError,
    LogReadError,
    LogWriteError,
    NotAnEventLogError,
    StoreClosedError,
)
from eventstore.lease import Lease, LeaseStore, SqliteLeases, StaleCheck
from eventstore.mailbox import Letter, Mailbox, SqliteMailbox
from eventstore.projection import Projection, ProjectionRunner
from eventstore.store import (
    ANY,
    APPLICATION_ID,
    NO_STREAM,
    SCHEMA_VERSION,
    AppendResult,
    EventStore,
    NewEvent,
    RecordedEvent,
    Subscription,
)
from eventstore.writer import AppendTicket, BatchingWriter

__all__ = [
    "ANY",
    "APPLICATION_ID",
    "NO_STREAM",
    "SCHEMA_VERSION",
    "AppendResult",
    "AppendTicket",
    "BatchingWriter",
    "ConcurrencyError",
    "CorruptEventError",
    "CorruptLogError",
    "DiskFullError",
    "EventStore",
    "EventStoreError",
    "LogReadError",
    "LogWriteError",
    "Lease",
    "LeaseHeldError",
    "LeaseLostError",
    "LeaseStore",
    "Letter",
    "Mailbox",
    "NewEvent",
    "NotAnEventLogError",
    "Projection",
    "ProjectionRunner",
    "RecordedEvent",
    "SqliteLeases",
    "SqliteMailbox",
    "StaleCheck",
    "StoreClosedError",
    "Subscription",
]
