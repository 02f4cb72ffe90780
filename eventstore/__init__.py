"""A small, generic, append-only event log on SQLite.

It knows streams, versions, positions and bytes; nothing about what the events mean.
"""

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
    "NewEvent",
    "NotAnEventLogError",
    "Projection",
    "ProjectionRunner",
    "RecordedEvent",
    "StoreClosedError",
    "Subscription",
]
