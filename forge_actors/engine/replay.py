"""Replaying the log: recorded answers for a re-run, the plan of a re-run, paced re-streaming.

A re-run (``Forge.rerun``) is a new session whose AI participants are answered from the
recording of the original (``replay_provider``), running the original's rounds in order
(``RerunPlan``). A replay (``Forge.replay``) is the recorded events again, paced as they were
recorded (``paced``). Neither calls a model.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

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
    ParticipantRemoved,
    PromptSent,
    ProviderLimitFound,
    ProviderSwitched,
    RerunPlanned,
    RoundStarted,
    SessionCreated,
    SessionEnded,
    SessionForked,
    SimilarityMeasured,
    ToolCalled,
)
from forge_actors.core.events import ToolResult as EventToolResult
from forge_actors.core.state import SessionState, rebuild
from forge_actors.providers.base import ToolCall, Usage
from forge_actors.providers.errors import ReplayMismatchError
from forge_actors.providers.replay import RecordedAnswer, RecordedTurn, ReplayProvider, prompt_key
from forge_actors.tools import ToolBudget, ToolResult


def recorded_answers(events: Iterable[Event], participant: str) -> list[RecordedAnswer]:
    """The participant's attempts in the order their prompts were sent.

    An attempt abandoned by a crash is left out: it was run again, and that run is the answer.
    An attempt that called tools has its replies split into turns at its ``ToolCalled`` events
    (a turn's deltas come before the calls it made).
    """
    answers: dict[str, RecordedAnswer] = {}
    next_turn: dict[str, int] = {}  # the turn the next deltas of an attempt belong to (1: its first)
    abandoned: set[str] = set()
    for event in events:
        if isinstance(event, PromptSent):
            if event.participant == participant:
                answers[event.contribution_id] = RecordedAnswer(event.contribution_id, prompt_key(event.messages),
                                                                prompt_length=len(event.messages))
        elif isinstance(event, ContentDelta):
            answer = answers.get(event.contribution_id)
            if answer is not None:
                answer.deltas.append(event.text)
                if answer.turns:
                    _turn(answer, next_turn[event.contribution_id]).deltas.append(event.text)
        elif isinstance(event, ToolCalled):
            answer = answers.get(event.contribution_id)
            if answer is not None:
                if not answer.turns:  # the deltas so far were its first turn's
                    answer.turns.append(RecordedTurn(list(answer.deltas)))
                call = ToolCall(event.call_id, event.tool, dict(event.arguments), event.error)
                _turn(answer, event.turn).tool_calls.append(call)
                next_turn[event.contribution_id] = event.turn + 1
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
        elif isinstance(event, ProviderLimitFound) and event.limit == "streaming":
            answer = answers.get(event.contribution_id)
            if answer is not None:  # its stream failed, and it was answered without streaming
                answer.stream_failure, answer.stream_failure_kind = event.evidence, event.error_kind
                answer.answered_from_body = event.answered_from_body
    return [answer for cid, answer in answers.items() if cid not in abandoned]


def _turn(answer: RecordedAnswer, number: int) -> RecordedTurn:
    while len(answer.turns) < number:
        answer.turns.append(RecordedTurn())
    return answer.turns[number - 1]


class RecordedToolCall(msgspec.Struct, frozen=True):
    contribution_id: str
    tool: str
    arguments: dict[str, Any]
    result: ToolResult


def recorded_tool_calls(events: Iterable[Event], participant: str) -> list[RecordedToolCall]:
    """The participant's tool calls with their results, in order (those of abandoned attempts left out)."""
    calls: dict[tuple[str, str], ToolCalled] = {}
    found: list[RecordedToolCall] = []
    abandoned: set[str] = set()
    for event in events:
        if isinstance(event, ToolCalled) and event.participant == participant:
            if event.error is None:  # a call with unreadable arguments was never run: nothing to give back
                calls[(event.contribution_id, event.call_id)] = event
        elif isinstance(event, EventToolResult) and event.participant == participant:
            called = calls.get((event.contribution_id, event.call_id))
            if called is not None:
                result = ToolResult(event.output, event.truncated, event.error, event.duration_ms)
                found.append(RecordedToolCall(event.contribution_id, called.tool, dict(called.arguments), result))
        elif isinstance(event, ContributionAbandoned):
            abandoned.add(event.contribution_id)
    return [call for call in found if call.contribution_id not in abandoned]


class _RecordedBudget:
    """A re-run's budget: spent as the recorded calls spent the live one (a call, its recorded
    duration), so that the re-run's participant stops calling exactly where the recording did."""

    def __init__(self, max_calls: int, max_seconds: float) -> None:
        self.live = ToolBudget(max_calls, max_seconds)

    def refusal(self) -> str | None:
        return self.live.refusal()


class RecordedTools:
    """A participant's tool runner in a re-run: the recorded results, in order; never runs a tool.

    A call other than the next recorded one (another tool, other arguments) raises
    ReplayMismatchError: the re-run has left the recording, and the contribution fails saying so.
    """

    def __init__(self, participant: str, calls: Iterable[RecordedToolCall], max_calls: int, max_seconds: float) -> None:
        self.participant = participant
        self._calls = deque(calls)
        self._max_calls = max_calls
        self._max_seconds = max_seconds

    def budget(self) -> _RecordedBudget:
        return _RecordedBudget(self._max_calls, self._max_seconds)

    def call(self, name: str, arguments: Mapping[str, Any], budget: _RecordedBudget | None = None) -> ToolResult:
        if not self._calls:
            raise ReplayMismatchError(f"{self.participant} called {name} in the re-run; the recording has no more "
                                      "tool calls of it", provider="replay")
        recorded = self._calls[0]
        if recorded.tool != name or recorded.arguments != dict(arguments):
            raise ReplayMismatchError(
                f"{self.participant} called {name}({_short(arguments)}) in the re-run where the recording called "
                f"{recorded.tool}({_short(recorded.arguments)}); a re-run reproduces only the same calls",
                provider="replay")
        self._calls.popleft()
        if budget is not None:
            budget.live.calls += 1
            budget.live.seconds += recorded.result.duration_ms / 1000
        return recorded.result

    def use_provider(self, provider: object) -> None:
        pass  # recorded results ask no model

    def take_usage(self) -> Usage:
        return Usage()  # what the live tools spent is in the recorded contribution's usage

    def remaining(self) -> int:
        return len(self._calls)

    def __repr__(self) -> str:
        return f"RecordedTools({self.participant!r}, {len(self._calls)} left)"


def _short(arguments: Mapping[str, Any]) -> str:
    text = msgspec.json.encode(dict(arguments)).decode()
    return text if len(text) <= 120 else text[:117] + "..."


def replay_provider(events: Iterable[Event], participant: str, model: str = "") -> ReplayProvider:
    """The participant's recorded answers; of a fork, those of its own rounds (its copied ones were
    never asked: a re-run copies them too)."""
    return ReplayProvider(participant, recorded_answers(own_events(list(events)), participant), model)


def own_events(events: list[Event]) -> list[Event]:
    """A session's events after its last ``SessionForked`` (all of them for a session of its own)."""
    for index in range(len(events) - 1, -1, -1):
        if isinstance(events[index], SessionForked):
            return events[index + 1:]
    return events


#: Spec prefix of a participant re-run from a recorded session: ``replay:SESSION_ID``.
REPLAY_PREFIX = "replay:"


class RerunPlan(msgspec.Struct, frozen=True):
    """What a re-run of a recorded session records first: SessionCreated (replay participants), its
    plan (``RerunPlanned``: the original's rounds, in order, and how the original ended), and what came
    before the first round."""

    events: tuple[Event, ...]


def rerun_plan(events: list[Event], source_id: str, new_id: str) -> RerunPlan:
    """The re-run of the session ``source_id`` (its ``events``) as the new session ``new_id``."""
    created = events[0] if events else None
    if not isinstance(created, SessionCreated):
        raise ConfigError(f"session {source_id} does not start with SessionCreated; it cannot be re-run")
    own = own_events(events)
    if len(own) < len(events):
        return _fork_rerun_plan(events, len(events) - len(own), created, source_id, new_id)
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
    # A re-run is a session of its own: it does not join the original's trace.
    new_created = msgspec.structs.replace(created, session_id=new_id, participants=participants, trace=None)
    cancel_reason = ended.reason if ended is not None and ended.outcome == "cancelled" else None
    return RerunPlan((new_created, RerunPlanned(source_id, rounds, cancel_reason), *before_rounds))


def recorded_similarities(state: SessionState, events_of: Callable[[str], list[Event]],
                          ) -> tuple[SimilarityMeasured, ...] | None:
    """A re-run's similarities: those its original recorded, replayed instead of measured (no embedding
    call); None for a session that is no re-run, or whose rule measures none."""
    if state.settings.convergence == "votes":
        return None
    for info in state.participants.values():
        if info.provider.startswith(REPLAY_PREFIX):
            source = info.provider[len(REPLAY_PREFIX):]
            return tuple(e for e in events_of(source) if isinstance(e, SimilarityMeasured))
    return None


def _fork_rerun_plan(events: list[Event], own_from: int, created: SessionCreated, source_id: str,
                     new_id: str) -> RerunPlan:
    """The re-run of a fork: its events to its ``SessionForked`` and the changes after it, copied as the
    fork copied them (so the re-run is a fork of the same parent, and ``verify`` checks it the same);
    then each AI participant moved (``ProviderSwitched``) to the fork's recording, which answers the
    fork's own rounds, run again in order."""
    changes: list[Event] = []
    for event in events[own_from:]:
        if not isinstance(event, (ParticipantAdded, ParticipantRemoved, ProviderSwitched)):
            break
        changes.append(event)
    copied = [msgspec.structs.replace(created, session_id=new_id, trace=None), *events[1:own_from], *changes]
    state = rebuild(copied)
    recording = REPLAY_PREFIX + source_id
    switches = [ProviderSwitched(name, recording, state.participants[name].model, state.participants[name].provider,
                                 state.participants[name].model)
                for name in state.ai_participants]
    # The plan is read by the number of rounds started (RerunPlanned): every round of the fork, the
    # copied ones too, which the re-run starts with already.
    rounds = tuple(e.kind for e in events if isinstance(e, RoundStarted))
    ended = next((e for e in reversed(events) if isinstance(e, SessionEnded)), None)
    cancel_reason = ended.reason if ended is not None and ended.outcome == "cancelled" else None
    return RerunPlan((*copied, *switches, RerunPlanned(source_id, rounds, cancel_reason)))


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
