"""The one mapping between the domain's events and the log's records, both ways.

The log (``eventstore``) stores each event as a type name and its JSON text and knows nothing of
what they mean; the domain knows the ``core.events`` types. Whatever writes a session's events (the
session actor, the engine's session creation and re-runs) makes its records with ``to_records``, and
whatever reads them (the engine's folds, reads, subscriptions and replays, the projections) decodes
them with ``EVENT_CODEC`` (the ``codec`` of the log's reads) or ``event_of``: a change to how events
are stored is made here, once.

Pure: it makes and reads the records' structs, and never opens a log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from eventstore import NewEvent, RecordedEvent
from forge_actors.core.events import Event, decode_event, encode_event, event_type

#: What the log's reads take as ``codec``: a stored row's type and JSON as its domain event. Raises
#: UnknownEventTypeError or msgspec's errors (the log reports them as a CorruptEventError).
EVENT_CODEC: Final[Callable[[str, str | bytes], Event]] = decode_event


def to_record(event: Event) -> NewEvent:
    """A domain event as the log stores it: its type name and its JSON."""
    return NewEvent.from_bytes(event_type(event), encode_event(event))


def to_records(events: Iterable[Event]) -> list[NewEvent]:
    """Domain events as the records of one append, in order."""
    return [NewEvent.from_bytes(event_type(event), encode_event(event)) for event in events]


def event_of(recorded: RecordedEvent) -> Event:
    """A stored event's domain event: the one its read decoded (``EVENT_CODEC``), else decoded now."""
    event = recorded.event
    return event if isinstance(event, Event) else decode_event(recorded.type, recorded.data)
