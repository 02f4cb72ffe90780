"""A small, generic, append-only event log, on SQLite (embedded, the default) or PostgreSQL.

It knows streams, versions, positions and bytes; nothing about what the events mean.
``open_log(target)`` opens either backend from a file path or a ``postgresql://`` URL; both
keep the promises of ``EventLog`` (``eventstore.log``). Leases (``LogLeases``) let one owner at
a time act on a named thing, across processes and hosts; mailboxes carry requests to that owner.
"""

from eventstore.errors import (
    BackendMissingError,
    ConcurrencyError,
    CorruptEventError,
    CorruptLogError,
    DiskFullError,
    EventStoreError,
    FencedError,
    LeaseHeldError,
    LeaseLostError,
    LogCopyError,
    LogReadError,
    LogUnavailableError,
    LogUnavailableWriteError,
    LogWriteError,
    NoEventLogError,
    NotAnEventLogError,
    StoreClosedError,
)
from eventstore.lease import Lease, LeaseStore, LogLeases, StaleCheck
from eventstore.log import (
    ANY,
    NO_STREAM,
    SCHEMA_VERSION,
    AppendResult,
    EventLog,
    ExpectedVersion,
    Fence,
    NewEvent,
    RecordedEvent,
    Transaction,
)
from eventstore.mailbox import Letter, LogMailbox, Mailbox
from eventstore.migrate import CopyReport, copy_log
from eventstore.open import is_database_url, open_log, printable_target, url_secrets
from eventstore.projection import Projection, ProjectionRunner
from eventstore.sqlite import APPLICATION_ID, EventStore, SqliteTransaction
from eventstore.subscription import Subscription
from eventstore.writer import Appender, AppendTicket, BatchingWriter

__all__ = [
    "ANY",
    "APPLICATION_ID",
    "NO_STREAM",
    "SCHEMA_VERSION",
    "AppendResult",
    "Appender",
    "AppendTicket",
    "BatchingWriter",
    "BackendMissingError",
    "ConcurrencyError",
    "CopyReport",
    "CorruptEventError",
    "CorruptLogError",
    "DiskFullError",
    "EventLog",
    "EventStore",
    "EventStoreError",
    "ExpectedVersion",
    "Fence",
    "FencedError",
    "LogCopyError",
    "LogReadError",
    "LogUnavailableError",
    "LogUnavailableWriteError",
    "LogWriteError",
    "Lease",
    "LeaseHeldError",
    "LeaseLostError",
    "LeaseStore",
    "LogLeases",
    "LogMailbox",
    "Letter",
    "Mailbox",
    "NewEvent",
    "NoEventLogError",
    "NotAnEventLogError",
    "Projection",
    "ProjectionRunner",
    "RecordedEvent",
    "SqliteTransaction",
    "StaleCheck",
    "StoreClosedError",
    "Subscription",
    "Transaction",
    "copy_log",
    "is_database_url",
    "open_log",
    "printable_target",
    "url_secrets",
]
