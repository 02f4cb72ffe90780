"""Following a session live: its committed events until it ends, or until it stops short.

The events come from one ``eventstore.Subscription`` (stored ones, then the batches each commit
of this process hands it); what this module adds is knowing when to stop: at ``SessionEnded``,
at once for a stream opened at or past the end of an ended session, and with a typed error when
the session's actor stopped before the session ended (the log is intact: resume continues it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from eventstore import CorruptLogError, EventLog, EventStoreError, LogWriteError, RecordedEvent, Subscription
from forge_actors.core.errors import SessionStoppedError
from forge_actors.core.events import SessionEnded

#: How often a quiet follower looks whether the session stopped without ending (live events
#: do not wait for it: the writer hands them over as they commit).
STOP_CHECK_SECONDS = 0.25


@dataclass(frozen=True)
class Watch:
    """What following a session reads, for a follower that does not block in ``poll`` (the asyncio
    front door): the subscription and the three checks ``follow`` makes when it is quiet."""

    subscription: Subscription
    is_running: Callable[[], bool]
    has_ended: Callable[[], bool]
    write_failure: Callable[[], EventStoreError | None]


def ended_before(store: EventLog, session_id: str, position: int) -> bool:
    """Whether the session ended at or before log position ``position``: its last event is
    SessionEnded and nothing of it comes after ``position``. Reads one row, folds nothing (a
    follower of a live session must not pay for a fold of everything it is about to stream)."""
    version = store.stream_version(session_id)
    if version == 0 or store.version_at(session_id, position) < version:
        return False
    last = next(store.read_stream(session_id, after_version=version - 1), None)
    return last is not None and last.type == SessionEnded.__name__


def write_failure_for(lost: EventStoreError, session_id: str) -> EventStoreError:
    """The store's error that stopped a session, saying how to carry on with it."""
    if isinstance(lost, LogWriteError):
        return lost.with_next_step(f"resume session {session_id}")
    if isinstance(lost, CorruptLogError):
        return CorruptLogError(lost.path, lost.reason)
    return lost


def follow(watch: Watch, session_id: str) -> Iterator[RecordedEvent]:
    """The watched subscription's events until SessionEnded; closes the subscription however it ends.

    ``watch.is_running`` says whether this engine still drives the session, ``has_ended`` whether
    the log says it ended, ``write_failure`` what stopped its appends (if the log refused them).
    """
    subscription, is_running, has_ended, write_failure = (watch.subscription, watch.is_running,
                                                           watch.has_ended, watch.write_failure)
    try:
        while True:
            recorded = subscription.poll(STOP_CHECK_SECONDS)
            if recorded is not None:
                yield recorded
                if isinstance(recorded.event, SessionEnded):
                    return
                continue
            if subscription.closed:
                raise SessionStoppedError("the engine was closed while following the session")
            if not is_running():
                # Stopped: whatever it wrote is readable now; after that, it either ended or stopped short.
                for recorded in iter(lambda: subscription.poll(0), None):
                    yield recorded
                    if isinstance(recorded.event, SessionEnded):
                        return
                if has_ended():
                    return
                lost = write_failure()
                if lost is not None:  # the log could not take its appends: say why, as the store did
                    raise write_failure_for(lost, session_id)
                raise SessionStoppedError(f"session {session_id} stopped before it ended; its log is intact: resume it")
    finally:
        subscription.close()
