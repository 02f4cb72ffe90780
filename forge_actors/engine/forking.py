"""Forking a session (``Forge.fork``): its log to the end of a round, copied, then a way of its own.

A fork is a new stream: the parent's events up to and including the ``RoundCompleted`` of round N
(and the facts between rounds that directly follow it, ``BETWEEN_ROUNDS``: so a fork of a fork at
the round it was forked at keeps its changes), copied as they are stored (only the copy's
``SessionCreated`` names the new session: no other event carries a session id), then
``SessionForked`` (the parent, the round, the parent's version and log position at the cut, the
fork's settings and constraints), then the changes as facts (``ParticipantAdded``,
``ParticipantRemoved``, ``ProviderSwitched``). All of it is one append, so a fork exists whole or
not at all, and the parent is only read. Nothing here calls a provider: the copied rounds are facts,
not work; the fork's actor starts from their fold and the decider takes it on from round N+1.

The copy is of the stored JSON, not of decoded events: only the few event types that say who takes
part and how (``CUT_STATE_TYPES``) are decoded, so that forking a session of 10,000 events costs
about one read and one append of them (``benchmarks/fork.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import msgspec

from eventstore import NewEvent, RecordedEvent
from forge_actors.core.audit import BETWEEN_ROUNDS
from forge_actors.core.errors import ConfigError, InvalidCommandError
from forge_actors.core.events import (
    Event,
    ParticipantAdded,
    ParticipantInfo,
    ParticipantRemoved,
    Price,
    ProviderSwitched,
    RoundCompleted,
    SessionCreated,
    SessionForked,
    SessionSettings,
)
from forge_actors.core.records import event_of, to_record
from forge_actors.core.state import SessionState, rebuild

#: What a fork needs to know of its parent at the cut: who takes part (and on which provider), the
#: settings and constraints, and how the rounds went. Every other event is copied without decoding.
CUT_STATE_TYPES = frozenset({
    "SessionCreated", "ParticipantAdded", "ParticipantRemoved", "ProviderSwitched", "ProviderLimitFound",
    "SessionForked", "RoundStarted", "RoundCompleted",
})
#: A round a fork may start after: one that ended with something to go on from.
FORKABLE_STATUSES = ("completed", "degraded")


class Cut(msgspec.Struct, frozen=True):
    """Where a fork leaves its parent: the records it copies and the parent as they fold."""

    round: int
    records: tuple[RecordedEvent, ...]
    state: SessionState

    @property
    def last(self) -> RecordedEvent:
        return self.records[-1]


def cut_at(parent_id: str, records: Sequence[RecordedEvent], at_round: object) -> Cut:
    """The parent's records to the end of its round ``at_round`` (undecoded ``records``, in order).

    ConfigError for a round that is not a number of the session's; InvalidCommandError for a round
    still running, or one that failed or was cancelled (nothing to go on from)."""
    if isinstance(at_round, bool) or not isinstance(at_round, int) or at_round < 1:
        raise ConfigError(f"at_round is a round number (1 or more), not {at_round!r}")
    started = 0
    for index, record in enumerate(records):
        if record.type == "RoundStarted":
            started += 1
        elif record.type == "RoundCompleted":
            completed = event_of(record)
            assert isinstance(completed, RoundCompleted)
            if completed.round == at_round:
                if completed.status not in FORKABLE_STATUSES:
                    raise InvalidCommandError(
                        f"round {at_round} of session {parent_id} {completed.status}: a fork goes on from a completed "
                        "round; fork at an earlier one")
                end = index + 1
                while end < len(records) and records[end].type in BETWEEN_ROUNDS:
                    end += 1
                copied = tuple(records[:end])
                return Cut(at_round, copied, rebuild(_decoded(copied)))
    if at_round <= started:
        raise InvalidCommandError(f"round {at_round} of session {parent_id} is still running: fork at a completed "
                                  f"round (1 to {at_round - 1}), or once it is over" if at_round > 1 else
                                  f"round 1 of session {parent_id} is still running: fork once it is over")
    raise ConfigError(f"session {parent_id} has {started} round(s); round {at_round} is past its end"
                      + (f": fork at a round from 1 to {started}" if started else ": it has no round to fork from"))


def _decoded(records: Iterable[RecordedEvent]) -> list[Event]:
    return [event_of(r) for r in records if r.type in CUT_STATE_TYPES]


class ForkChanges(msgspec.Struct, frozen=True):
    """What a fork changes, as facts to record after its ``SessionForked``."""

    added: tuple[ParticipantInfo, ...] = ()
    removed: tuple[str, ...] = ()
    switched: tuple[ProviderSwitched, ...] = ()

    def events(self) -> list[Event]:
        return [*(ParticipantRemoved(name, "dropped by the fork") for name in self.removed),
                *(ParticipantAdded(info) for info in self.added), *self.switched]


def participant_changes(state: SessionState, described: Iterable[ParticipantInfo], drop: Iterable[str]) -> ForkChanges:
    """The changes to the parent's participants at the cut (``state``): ``drop`` names participants that
    stop; each of ``described`` (the given specs, as recorded) joins, or — named like a participant
    that takes part — moves it to its provider when that differs (else changes nothing).

    ConfigError for a name to drop that takes no part, a participant both dropped and given, or a
    human given the name of an AI participant (or the other way round)."""
    taking_part = {name: info for name, info in state.participants.items() if name not in state.removed}
    removed: list[str] = []
    for name in drop:
        if name not in taking_part:
            raise ConfigError(f"cannot drop {name!r}: the participants at that round are "
                              f"{', '.join(taking_part) or 'none'}")
        if name not in removed:
            removed.append(name)
    added: list[ParticipantInfo] = []
    switched: list[ProviderSwitched] = []
    for info in described:
        current = taking_part.get(info.name)
        if info.name in removed:
            raise ConfigError(f"{info.name} is both dropped and given: give it under another name to add a new "
                              "participant, or leave out --drop to move it to another provider")
        if current is None:
            added.append(info)
        elif current.kind != info.kind:
            raise ConfigError(f"{info.name} is {'an AI' if current.kind == 'ai' else 'a human'} participant of the "
                              "session: give the new one a name of its own")
        elif current.kind == "ai" and (current.provider, current.model) != (info.provider, info.model):
            switched.append(ProviderSwitched(info.name, info.provider, info.model, current.provider, current.model,
                                             info.replies, info.tool_mode if current.tools else None))
    return ForkChanges(tuple(added), tuple(removed), tuple(switched))


def fork_events(cut: Cut, new_id: str, settings: SessionSettings, constraints: tuple[str, ...],
                changes: ForkChanges, prices: Mapping[str, Price] | None = None) -> list[NewEvent]:
    """The fork's stream: the copy (its SessionCreated renamed), SessionForked, the changes."""
    first = cut.records[0]
    created = event_of(first)
    if not isinstance(created, SessionCreated):
        raise ConfigError(f"session {first.stream_id} does not start with SessionCreated; it cannot be forked")
    forked = SessionForked(first.stream_id, cut.round, cut.last.version,
                           cut.last.position, settings, constraints, dict(prices or {}))
    return [
        to_record(msgspec.structs.replace(created, session_id=new_id, trace=None)),  # a trace of its own
        *(NewEvent(r.type, r.data) for r in cut.records[1:]),
        to_record(forked),
        *(to_record(event) for event in changes.events()),
    ]




def asked_from_here(state: SessionState, changes: ForkChanges) -> list[ParticipantInfo]:
    """The fork's AI participants once its changes are made, each on the provider it is asked on from
    here (a moved one on its new provider): what its prices are looked up for."""
    moved = {switch.participant: switch for switch in changes.switched}
    asked = []
    for info in taking_part(state, changes):
        if info.kind != "ai":
            continue
        switch = moved.get(info.name)
        asked.append(info if switch is None else msgspec.structs.replace(info, provider=switch.provider,
                                                                          model=switch.model))
    return asked


def taking_part(state: SessionState, changes: ForkChanges) -> list[ParticipantInfo]:
    """Who takes part in the fork once its changes are made (for the participant cap, the synthesizer)."""
    kept = [info for name, info in state.participants.items() if name not in state.removed and name not in changes.removed]
    return [*kept, *changes.added]

