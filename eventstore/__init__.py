"""A small, generic, append-only event log on SQLite.

It knows streams, versions, positions and bytes; nothing about what the events mean.
Leases (``SqliteLeases``) let one owner at a time act on a named thing, across processes.
"""

from eventstore.errors import (
    ConcurrencyError,
    CorruptEventError,
    EventStoreError,
    LeaseHeldError,
    LeaseLostError,
    NotAnEventLogError,
    StoreClosedError,
)
from eventstore.lease import Lease, LeaseStore, SqliteLeases, StaleCheck
from eventstore.projection import Projection, ProjectionRunner
from eventstore.store import (
    ANY,
    NO_STREAM,
    AppendResult,
    EventStore,
    NewEvent,
    RecordedEvent,
    Subscription,
)
from eventstore.writer import AppendTicket, BatchingWriter

__all__ = [
    "ANY",
    "NO_STREAM",
    "AppendResult",
    "AppendTicket",
    "BatchingWriter",
    "ConcurrencyError",
    "CorruptEventError",
    "EventStore",
    "EventStoreError",
    "Lease",
    "LeaseHeldError",
    "LeaseLostError",
    "LeaseStore",
    "NewEvent",
    "NotAnEventLogError",
    "Projection",
    "ProjectionRunner",
    "RecordedEvent",
    "SqliteLeases",
    "StaleCheck",
    "StoreClosedError",
    "Subscription",
]
