"""Checking a recorded session against the log's invariants.

Used by the tests, by ``tools/replay.py --verify``, and by anyone auditing a log:

- the stream's versions run 1, 2, 3... without a gap;
- every delta belongs to an attempt whose prompt was recorded before it, carries that
  attempt's number, and none comes after that attempt finished;
- every completed contribution's content is exactly the concatenation of its own deltas;
- folding the events reproduces every recorded round outcome (who succeeded, who
  failed, the convergence score).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from eventstore import RecordedEvent
from forge_actors import rounds
from forge_actors.events import (
    ContentDelta,
    ContributionAbandoned,
    ContributionCompleted,
    ContributionFailed,
    PromptSent,
    RoundCompleted,
)
from forge_actors.state import SessionState, apply


class Violation(msgspec.Struct, frozen=True):
    position: int
    version: int
    problem: str

    def __str__(self) -> str:
        return f"position {self.position} (version {self.version}): {self.problem}"


def verify(records: Iterable[RecordedEvent]) -> list[Violation]:
    """Every violation in a session's recorded events (decoded), in log order; empty when sound."""
    violations: list[Violation] = []
    state = SessionState()
    deltas: dict[str, list[str]] = {}
    attempts: dict[str, int] = {}
    finished: set[str] = set()
    expected_version = 1
    for record in records:
        event = record.event
        flag = _flagger(violations, record)

        if record.version != expected_version:
            flag(f"version {record.version} where {expected_version} was expected")
        expected_version = record.version + 1
        if isinstance(event, PromptSent):
            deltas.setdefault(event.contribution_id, [])
            attempts[event.contribution_id] = event.attempt
        elif isinstance(event, ContentDelta):
            if event.contribution_id not in deltas:
                flag(f"delta of {event.contribution_id} before its prompt")
            elif attempts[event.contribution_id] != event.attempt:
                flag(f"delta of {event.contribution_id} says attempt {event.attempt}, its prompt "
                     f"{attempts[event.contribution_id]}")
            elif event.contribution_id in finished:
                flag(f"delta of {event.contribution_id} after it finished")
            deltas.setdefault(event.contribution_id, []).append(event.text)
        elif isinstance(event, ContributionCompleted):
            joined = "".join(deltas.get(event.contribution_id, []))
            if joined != event.content:
                flag(f"{event.contribution_id}: the content ({len(event.content)} chars) is not its deltas "
                     f"joined ({len(joined)} chars)")
            finished.add(event.contribution_id)
        elif isinstance(event, (ContributionFailed, ContributionAbandoned)):
            finished.add(event.contribution_id)
        elif isinstance(event, RoundCompleted) and event.status in ("completed", "degraded", "failed"):
            problem = _round_outcome_problem(state, event)
            if problem:
                flag(problem)
        state = apply(state, event)
    return violations


def _flagger(violations: list[Violation], record: RecordedEvent):  # noqa: ANN202 - a small closure
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
