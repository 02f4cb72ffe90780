"""Replaying the log: recorded answers for a re-run, the plan of a re-run, paced re-streaming.

A re-run (``Forge.rerun``) is a new session whose AI participants are answered from the
recording of the original (``replay_provider``), running the original's rounds in order
(``RerunPlan``). A replay (``Forge.replay``) is the recorded events again, paced as they were
recorded (``paced``). Neither calls a model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import msgspec

from eventstore import RecordedEvent
from forge_actors.core.errors import ConfigError
from forge_actors.core.events import (
    ContentDelta,
    ContributionAbandoned,
    ContributionCompleted,
    ContributionFailed,
    Event,
    HumanDraftAdded,
    ParticipantAdded,
    PromptSent,
    RoundKind,
    RoundStarted,
    SessionCreated,
    SessionEnded,
)
from forge_actors.providers.base import Usage
from forge_actors.providers.replay import RecordedAnswer, ReplayProvider, prompt_key


def recorded_answers(events: Iterable[Event], participant: str) -> list[RecordedAnswer]:
    """The participant's attempts in the order their prompts were sent.

    An attempt abandoned by a crash is left out: it was run again, and that run is the answer.
    """
    answers: dict[str, RecordedAnswer] = {}
    abandoned: set[str] = set()
    for event in events:
        if isinstance(event, PromptSent):
            if event.participant == participant:
                answers[event.contribution_id] = RecordedAnswer(event.contribution_id, prompt_key(event.messages))
        elif isinstance(event, ContentDelta):
            if event.contribution_id in answers:
                answers[event.contribution_id].deltas.append(event.text)
        elif isinstance(event, ContributionCompleted):
            if event.contribution_id in answers:
                answer = answers[event.contribution_id]
                answer.content, answer.finish_reason = event.content, event.finish_reason
                answer.usage = Usage(event.usage.input_tokens, event.usage.output_tokens)
        elif isinstance(event, ContributionFailed):
            if event.contribution_id in answers:
                answers[event.contribution_id].error_kind = event.error_kind
                answers[event.contribution_id].error_message = event.message
        elif isinstance(event, ContributionAbandoned):
            abandoned.add(event.contribution_id)
    return [answer for cid, answer in answers.items() if cid not in abandoned]


def replay_provider(events: Iterable[Event], participant: str, model: str = "") -> ReplayProvider:
    return ReplayProvider(participant, recorded_answers(events, participant), model)


#: Spec prefix of a participant re-run from a recorded session: ``replay:SESSION_ID``.
REPLAY_PREFIX = "replay:"


class RerunPlan(msgspec.Struct, frozen=True):
    """What a re-run of a recorded session records first, and how it then runs."""

    events: tuple[Event, ...]  # SessionCreated (replay participants) and what came before the first round
    rounds: tuple[RoundKind, ...]  # the original's rounds, in order
    cancel_reason: str | None  # the original was cancelled (after its rounds) with this reason


def rerun_plan(events: list[Event], source_id: str, new_id: str) -> RerunPlan:
    """The re-run of the session ``source_id`` (its ``events``) as the new session ``new_id``."""
    created = events[0] if events else None
    if not isinstance(created, SessionCreated):
        raise ConfigError(f"session {source_id} does not start with SessionCreated; it cannot be re-run")
    rounds = tuple(e.kind for e in events if isinstance(e, RoundStarted))
    ended = next((e for e in reversed(events) if isinstance(e, SessionEnded)), None)
    before_rounds: list[Event] = []
    for event in events[1:]:
        if isinstance(event, RoundStarted):
            break
        if isinstance(event, (ParticipantAdded, HumanDraftAdded)):
            before_rounds.append(event)
    participants = tuple(
        msgspec.structs.replace(p, provider=REPLAY_PREFIX + source_id) if p.kind == "ai" else p
        for p in created.participants
    )
    new_created = msgspec.structs.replace(created, session_id=new_id, participants=participants)
    cancel_reason = ended.reason if ended is not None and ended.outcome == "cancelled" else None
    return RerunPlan((new_created, *before_rounds), rounds, cancel_reason)


def paced(records: Iterable[RecordedEvent], speed: float, sleep: Callable[[float], None],
          max_pause: float | None = None) -> Iterator[RecordedEvent]:
    """``records`` again, each after the pause that preceded it when recorded, ``speed`` times
    shorter (``speed=0``: no pauses); ``max_pause`` caps any one pause."""
    previous: int | None = None
    for recorded in records:
        if speed > 0 and previous is not None:
            pause = max(0, recorded.recorded_at - previous) / 1e9 / speed
            if max_pause is not None:
                pause = min(pause, max_pause)
            if pause > 0:
                sleep(pause)
        previous = recorded.recorded_at
        yield recorded
