"""Copying a log into another, e.g. from SQLite to PostgreSQL: every event with its position,
version and time of recording, so that the copy *is* the same log (exports, audits and re-runs
of it match the original's byte for byte).

Only the events are copied. Projections (summaries, the history index) rebuild themselves
from the events on first use; leases and mailboxes belong to the engines driving the source.
An interrupted copy goes on where it stopped: a target that already holds the first N events of
the source (checked, not assumed) receives the rest.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from eventstore.errors import LogCopyError
from eventstore.log import EventLog, RecordedEvent


class CopyReport(msgspec.Struct, frozen=True):
    """What ``copy_log`` did: events copied now, events the target already had, its last position."""

    copied: int
    already_there: int
    last_position: int


def _same(a: RecordedEvent, b: RecordedEvent) -> bool:
    return (a.position, a.stream_id, a.version, a.type, a.data, a.recorded_at) == (
        b.position, b.stream_id, b.version, b.type, b.data, b.recorded_at)


def copy_log(
    source: EventLog,
    target: EventLog,
    *,
    batch_size: int = 5000,
    on_batch: Callable[[int], None] | None = None,
) -> CopyReport:
    """Copy every event of ``source`` that ``target`` lacks, in batches of ``batch_size`` (one
    transaction each). ``on_batch`` is called with the last position copied after each batch.

    Raises LogCopyError when the target holds events that are not the start of the source.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    start = target.last_position()
    if start:
        # Its first and its last event must be the source's: a log that only happens to end like
        # the source (or to begin like it) is another log, and copying the rest would mix the two.
        for position in sorted({1, start}):
            theirs = next(iter(target.read_all(position - 1, page_size=1)), None)
            ours = next(iter(source.read_all(position - 1, page_size=1)), None)
            if theirs is None or ours is None or not _same(theirs, ours):
                raise LogCopyError(target.path, f"it holds {start} events that are not the start of {source.path} "
                                                f"(position {position} differs): copy into an empty log")
    copied = 0
    batch: list[RecordedEvent] = []
    for recorded in source.read_all(start, page_size=batch_size):
        batch.append(recorded)
        if len(batch) >= batch_size:
            copied += _flush(target, batch, on_batch)
    copied += _flush(target, batch, on_batch)
    return CopyReport(copied, start, target.last_position())


def _flush(target: EventLog, batch: list[RecordedEvent], on_batch: Callable[[int], None] | None) -> int:
    if not batch:
        return 0
    target.import_recorded(batch)
    count, last = len(batch), batch[-1].position
    batch.clear()
    if on_batch is not None:
        on_batch(last)
    return count
