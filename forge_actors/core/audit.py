"""Checking a recorded session against the log's invariants.

Used by the tests, by ``tools/replay.py --verify``, and by anyone auditing a log:

- the stream's versions run 1, 2, 3... without a gap;
- nothing follows SessionEnded;
- each contribution id is sent once (one PromptSent), and settled at most once: completed,
  failed or abandoned (a failure awaiting its retry may be made final once, at the deadline);
- every delta belongs to an attempt whose prompt was recorded before it, carries that
  attempt's number, and none comes after that attempt was settled;
- every completed contribution's content is exactly the concatenation of its own deltas (of its
  last turn, when it called tools: what the model wrote after the last tool result);
- every tool call of a contribution has a call id of its own and exactly one result, after it and
  before the contribution is settled; a completed contribution has no call left unanswered;
- folding the events reproduces every recorded round outcome (who succeeded, who
  failed, the convergence score).

Two engines driving one session at once leave exactly such traces (the lease keeps
that from happening; the audit is how a log proves it did).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import msgspec

from eventstore import RecordedEvent
from forge_actors.core import rounds
from forge_actors.core.events import (
    ContentDelta,
    ContributionAbandoned,
    ContributionCompleted,
    ContributionFailed,
    PromptSent,
    RoundCompleted,
    SessionEnded,
    ToolCalled,
    ToolResult,
)
from forge_actors.core.state import SessionState, apply


class Violation(msgspec.Struct, frozen=True):
    position: int
    version: int
    problem: str

    def __str__(self) -> str:
        return f"position {self.position} (version {self.version}): {self.problem}"


_SETTLED_AS = {ContributionCompleted: "completed", ContributionFailed: "failed", ContributionAbandoned: "abandoned"}


class _Contribution(msgspec.Struct):
    """What the audit has seen of one contribution id so far."""

    prompted_at: int
    attempt: int
    deltas: list[str] = []
    settled: str | None = None  # "completed", "failed", "abandoned"
    settled_at: int = 0
    retry_pending: bool = False  # failed with will_retry: the deadline may still make it final
    calls: dict[str, bool] = {}  # call id -> whether its result came
    tools_since_delta: bool = False  # a tool event came after the last delta: the next delta starts a turn


def verify(records: Iterable[RecordedEvent]) -> list[Violation]:
    """Every violation in a session's recorded events (decoded), in log order; empty when sound."""
    violations: list[Violation] = []
    state = SessionState()
    contributions: dict[str, _Contribution] = {}
    ended_at: int | None = None
    expected_version = 1
    for record in records:
        event = record.event
        flag = _flagger(violations, record)

        if record.version != expected_version:
            flag(f"version {record.version} where {expected_version} was expected")
        expected_version = record.version + 1
        if ended_at is not None:
            flag(f"{type(event).__name__} after SessionEnded (at position {ended_at})")
        if isinstance(event, SessionEnded) and ended_at is None:
            ended_at = record.position
        elif isinstance(event, PromptSent):
            _check_prompt(contributions, event, record.position, flag)
        elif isinstance(event, ContentDelta):
            _check_delta(contributions.get(event.contribution_id), event, flag)
        elif isinstance(event, (ToolCalled, ToolResult)):
            _check_tool_event(contributions.get(event.contribution_id), event, flag)
        elif isinstance(event, (ContributionCompleted, ContributionFailed, ContributionAbandoned)):
            _check_settlement(contributions.get(event.contribution_id), event, record.position, flag)
        elif isinstance(event, RoundCompleted) and event.status in ("completed", "degraded", "failed"):
            problem = _round_outcome_problem(state, event)
            if problem:
                flag(problem)
        state = apply(state, event)
    return violations


def _check_prompt(contributions: dict[str, _Contribution], event: PromptSent, position: int,
                  flag: Callable[[str], None]) -> None:
    seen = contributions.get(event.contribution_id)
    if seen is not None:
        # Keep the first one's record: its deltas and settlement are what later events are checked against.
        flag(f"PromptSent reuses the contribution id {event.contribution_id} (first sent at position "
             f"{seen.prompted_at})")
        return
    contributions[event.contribution_id] = _Contribution(position, event.attempt)


def _check_delta(seen: _Contribution | None, event: ContentDelta, flag: Callable[[str], None]) -> None:
    cid = event.contribution_id
    if seen is None:
        flag(f"delta of {cid} before its prompt")
        return
    if seen.settled is not None:
        flag(f"delta of {cid} after it {seen.settled} (at position {seen.settled_at})")
    elif seen.attempt != event.attempt:
        flag(f"delta of {cid} says attempt {event.attempt}, its prompt {seen.attempt}")
    if seen.tools_since_delta:  # a new turn: the content is what the last turn wrote
        seen.deltas, seen.tools_since_delta = [], False
    seen.deltas.append(event.text)


def _check_tool_event(seen: _Contribution | None, event: ToolCalled | ToolResult, flag: Callable[[str], None]) -> None:
    cid, what = event.contribution_id, type(event).__name__
    if seen is None:
        flag(f"{what} of {cid} before its prompt")
        return
    if seen.settled is not None:
        flag(f"{what} {event.call_id} of {cid} after it {seen.settled} (at position {seen.settled_at})")
    seen.tools_since_delta = True
    if isinstance(event, ToolCalled):
        if event.call_id in seen.calls:
            flag(f"{cid} calls a tool with the call id {event.call_id} a second time")
        seen.calls[event.call_id] = False
    elif event.call_id not in seen.calls:
        flag(f"ToolResult {event.call_id} of {cid} answers no call")
    elif seen.calls[event.call_id]:
        flag(f"ToolResult {event.call_id} of {cid} answers a call already answered")
    else:
        seen.calls[event.call_id] = True


def _check_settlement(seen: _Contribution | None, event: ContributionCompleted | ContributionFailed |
                      ContributionAbandoned, position: int, flag: Callable[[str], None]) -> None:
    cid = event.contribution_id
    settled = _SETTLED_AS[type(event)]
    if seen is None:
        flag(f"{cid} {settled} without its prompt")
        return
    if seen.settled is not None:
        finalises_a_retry = seen.retry_pending and isinstance(event, ContributionFailed) and not event.will_retry
        if not finalises_a_retry:
            flag(f"{cid} {settled} a second time (it {seen.settled} at position {seen.settled_at})")
            return
    elif isinstance(event, ContributionCompleted):
        unanswered = sorted(call for call, answered in seen.calls.items() if not answered)
        if unanswered:
            flag(f"{cid} completed with tool call(s) {', '.join(unanswered)} unanswered")
        joined = "" if seen.tools_since_delta else "".join(seen.deltas)
        if joined != event.content:
            flag(f"{cid}: the content ({len(event.content)} chars) is not its deltas joined ({len(joined)} chars)")
    seen.settled, seen.settled_at = settled, position
    seen.retry_pending = isinstance(event, ContributionFailed) and event.will_retry


def _flagger(violations: list[Violation], record: RecordedEvent) -> Callable[[str], None]:
    """Records a problem at ``record``'s place in the log."""
    return lambda problem: violations.append(Violation(record.position, record.version, problem))


def _round_outcome_problem(state: SessionState, event: RoundCompleted) -> str | None:
    """The outcome the log gives (``rounds.round_result``, which the session actor records) against the recorded one."""
    result = rounds.round_result(state, event.round)
    if result is None:
        started = state.round_state(event.round)
        if started is None:
            return f"round {event.round}: recorded as over, but it never started"
        unsettled = sorted(set(started.participants) - set(rounds.participant_outcomes(state, event.round)))
        return f"round {event.round}: recorded as over, but the log leaves {unsettled} unsettled"
    if set(result.succeeded) != set(event.succeeded) or set(result.failed) != set(event.failed):
        return (f"round {event.round}: the log gives succeeded={sorted(result.succeeded)} failed={sorted(result.failed)}, "
                f"the round recorded succeeded={sorted(event.succeeded)} failed={sorted(event.failed)}")
    if result.score != event.score:
        return f"round {event.round}: the votes give a score of {result.score}, the round recorded {event.score}"
    return None
