"""Resume is live by construction: for every prefix of recorded sessions, the decider, given the fold
of the prefix, decides what the live run recorded next; and a resume there asks each participant
what the live run would have asked it, with its retries used still used.

The sessions are recorded by the engine with mock participants (plain; faulty: retries, re-asks,
deadlines, a failed participant; with humans; with tools). Each recorded decision's input is read
back from the log (a reply from its ContributionCompleted, a failure from its ContributionFailed,
a deadline from the failures it caused...), the decider is asked, and its events must be the log's
next events, exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import FAST_RETRIES

from forge_actors.actors.session import tool_context
from forge_actors.core import decider, rounds
from forge_actors.core.decider import Mode, Recover, RetryDue, StartRetryTimer, StartTimer, decide
from forge_actors.core.events import (
    ContentDelta,
    ContributionAbandoned,
    ContributionCompleted,
    ContributionFailed,
    Event,
    HumanDraftAdded,
    HumansWaitEnded,
    ParticipantAdded,
    PromptSent,
    ProviderLimitFound,
    ProviderSwitched,
    RoundStarted,
    SessionCreated,
    SessionEnded,
    SessionInterrupted,
    SessionResumed,
    SimilarityMeasured,
    ToolCalled,
    ToolResult,
    VoteRecorded,
)
from forge_actors.core.state import SessionState, apply, rebuild
from forge_actors.engine import Forge

GOAL = "Review notes.md and propose a plan for a TODO app API"


def _record(root: Path) -> dict[str, list[Event]]:
    workspace = root / "repo"
    workspace.mkdir()
    (workspace / "notes.md").write_text("# Notes\nThe cache must be invalidated on every write.\n")
    sessions: dict[str, list[Event]] = {}
    with Forge(str(root / "forge.db"), retry_policy=FAST_RETRIES) as forge:
        def deliberate(name: str, participants: list[str], **settings: object) -> str:
            session_id = forge.create_session(GOAL, participants, max_iterations=2, seed=5, **settings)
            sessions[name] = session_id
            return session_id

        for name in ("plain",):
            list(forge.deliberate(deliberate(name, ["mock:alice", "mock:bob", "mock:carol"])))
        faulty = deliberate("faulty", ["mock:alice?fail_on=draft&garble=critique", "mock:bob?garble=convergence",
                                       "mock:carol?word_delay=5", "mock:dave"],
                            max_retries=2, round_timeout_seconds=0.4)
        list(forge.deliberate(faulty))
        humans = deliberate("humans", ["mock:alice", "mock:bob"], human_wait_seconds=0.2)
        forge.add_human_draft(humans, "hana", "Use one SQLite table behind a small REST API.")
        list(forge.deliberate(humans))
        list(forge.deliberate(deliberate("tools", ["mock:alice?tools=file&tool_mode=text",
                                                   "mock:bob?tools=file&tool_mode=native", "mock:carol"],
                                         workspace=str(workspace))))
        for rule in ("similarity", "both"):  # measured lexically (the mock offers no embeddings)
            list(forge.deliberate(deliberate(rule, ["mock:alice", "mock:bob", "mock:carol"], convergence=rule,
                                             similarity_threshold=0.3)))
        return {name: [r.event for r in forge.records(session_id)] for name, session_id in sessions.items()}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Event]]:
    return _record(tmp_path_factory.mktemp("recorded"))


SESSIONS = ("plain", "faulty", "humans", "tools", "similarity", "both")


def _input(state: SessionState, events: list[Event], i: int) -> decider.Input:
    """The input that made the live session record ``events[i]`` (and what followed it in that decision)."""
    event = events[i]
    if isinstance(event, ProviderLimitFound):
        then = events[i + 1]
        if isinstance(then, ContributionCompleted):
            return decider.Replied(then.contribution_id, then.content, then.finish_reason, then.usage, then.latency_ms,
                                   then.served_by, then.fallback, event.limit, event.evidence, event.error_kind,
                                   event.answered_from_body)
        assert isinstance(then, ContributionFailed)
        return decider.ReplyFailed(then.contribution_id, then.error_kind, then.message, then.retryable,
                                   limit=event.limit)
    if isinstance(event, ContributionCompleted):
        return decider.Replied(event.contribution_id, event.content, event.finish_reason, event.usage,
                               event.latency_ms, event.served_by, event.fallback)
    if isinstance(event, ContributionFailed):
        if event.error_kind == "deadline":
            return decider.DeadlinePassed(event.round)
        if event.error_kind == "cancelled":
            return decider.CancelSession(event.message)
        return decider.ReplyFailed(event.contribution_id, event.error_kind, event.message, event.retryable)
    if isinstance(event, ToolCalled):
        return decider.ToolCallStarted(event.contribution_id, event.turn, event.call_id, event.tool,
                                       event.arguments, event.error)
    if isinstance(event, ToolResult):
        return decider.ToolCallFinished(event.contribution_id, event.call_id, event.tool, event.output,
                                        event.truncated, event.error, event.duration_ms)
    if isinstance(event, PromptSent):
        assert event.purpose == "retry", event  # only a retry after its backoff starts a decision
        return RetryDue(event.round, event.participant)
    if isinstance(event, HumansWaitEnded):
        return decider.HumansWaitOver(event.round)
    if isinstance(event, (ParticipantAdded, HumanDraftAdded, VoteRecorded)):
        human = next(e for e in events[i:] if isinstance(e, (HumanDraftAdded, VoteRecorded)))
        if isinstance(human, HumanDraftAdded):
            return decider.AddHumanDraft(human.author, human.content)
        return decider.CastVote(human.voter, human.vote, human.reasons, human.concerns)
    if isinstance(event, (ContributionAbandoned, SessionResumed, SessionInterrupted)):
        settled = next(e for e in events[i:] if isinstance(e, (SessionResumed, SessionInterrupted)))
        return Recover() if isinstance(settled, SessionResumed) else decider.Interrupt(settled.reason)
    if isinstance(event, ProviderSwitched):
        return decider.SwitchProvider(event.participant, event.provider, event.model, event.replies or "text",
                                      event.tool_mode)
    if isinstance(event, SimilarityMeasured):  # the actor's measure, given back as one input
        measured = []
        for then in events[i:]:
            if not isinstance(then, SimilarityMeasured):
                break
            measured.append(then)
        return decider.SimilaritiesMeasured(tuple(measured))
    if isinstance(event, (RoundStarted, SessionEnded)):
        return decider.StartDeliberating()
    raise AssertionError(f"no input starts a decision with {event}")


def decisions(events: list[Event]) -> Iterator[tuple[int, SessionState, Mode, decider.Decision]]:
    """Replays the log through the decider: at each decision's start, (its position, the fold of the
    prefix, the mode, the decision), after checking that the decision is what the log recorded next."""
    state = apply(SessionState(), events[0])
    assert isinstance(events[0], SessionCreated)
    tools = tool_context(state)
    mode, i = Mode(), 1
    while i < len(events):
        event = events[i]
        if isinstance(event, ContentDelta):  # the hot path: no decision, one event
            assert decider.delta_event(state, event.contribution_id, event.text) == event
            state, i = apply(state, event), i + 1
            continue
        decision = decide(state, mode, _input(state, events, i), tools)
        recorded = tuple(events[i:i + len(decision.events)])
        assert decision.events and decision.events == recorded, f"at {i}: decided {decision.events[:3]}, " \
                                                                f"recorded {recorded[:3]}"
        yield i, state, mode, decision
        state, mode, i = rebuild(decision.events, state), decision.mode, i + len(decision.events)


@pytest.mark.parametrize("name", SESSIONS)
def test_every_prefix_decides_what_the_live_run_recorded_next(recorded, name):
    events = recorded[name]
    steps = list(decisions(events))
    assert len(steps) > sum(1 for e in events if isinstance(e, ContributionCompleted))  # each reply, and the start
    assert isinstance(events[-1], SessionEnded)


def test_the_recorded_sessions_hold_what_they_are_meant_to(recorded):
    faulty = recorded["faulty"]
    assert [f.will_retry for f in faulty if isinstance(f, ContributionFailed) and f.participant == "alice"
            and f.round == 1] == [True, True, False]
    assert any(isinstance(p, PromptSent) and p.purpose == "reask" for p in faulty)
    assert any(isinstance(f, ContributionFailed) and f.error_kind == "deadline" for f in faulty)
    assert any(isinstance(e, HumansWaitEnded) for e in recorded["humans"])
    assert any(isinstance(e, ToolCalled) for e in recorded["tools"])
    for rule in ("similarity", "both"):
        ended = recorded[rule][-1]
        assert isinstance(ended, SessionEnded) and ended.outcome == "converged" and "similar" in ended.reason
        assert any(isinstance(e, SimilarityMeasured) and not e.pair for e in recorded[rule])
    assert not any(isinstance(e, RoundStarted) and e.kind == "convergence" for e in recorded["similarity"])


@pytest.mark.parametrize("name", SESSIONS)
def test_a_resume_at_every_prefix_asks_as_the_live_run_would_have(recorded, name):
    events = recorded[name]
    tools = tool_context(rebuild(events[:1]))
    checked = 0
    for i, state, _mode, _decision in decisions(events):
        current = state.current_round
        if current is None or current.status != "running":
            continue
        checked += 1
        _check_resume(state, events[i:], tools)
    assert checked > 5


def _check_resume(state: SessionState, tail: list[Event], tools: decider.ToolContext) -> None:
    number = state.current_round.round  # type: ignore[union-attr]
    resume = decide(state, Mode(), Recover(), tools)
    resumed = rebuild(resume.events, state)
    asked = [e for e in resume.events if isinstance(e, PromptSent)]
    by_participant = {p.participant: p for p in asked}
    assert len(by_participant) == len(asked), "a participant asked twice at once"
    waiting = {e.due.participant: e for e in resume.effects if isinstance(e, StartRetryTimer)}
    settled = rounds.participant_outcomes(state, number)
    for participant in state.round_state(number).participants:  # type: ignore[union-attr]
        used = decider.retries_used(state, number, participant)
        assert decider.retries_used(resumed, number, participant) == used, "a retry budget was reset"
        live_next = next((e for e in tail if isinstance(e, PromptSent) and e.participant == participant
                          and e.round == number), None)
        in_flight = [c for c in state.streaming.values() if c.participant == participant]
        if participant in settled:
            assert participant not in by_participant and participant not in waiting and live_next is None
        elif in_flight:  # asked again, the same way
            sent, again = state.round_prompts[participant], by_participant[participant]
            assert again.messages == sent.messages and again.response_schema == sent.response_schema
            assert again.purpose == ("reask" if in_flight[0].reasked else "rerun")
        elif participant in waiting:  # its retry after a backoff, as the live run's
            assert waiting[participant].retry == used
            retried = decide(resumed, Mode(), RetryDue(number, participant), tools).events
            assert live_next is not None and retried == (live_next,)
        else:  # its next prompt was due at once (a re-ask, a retry around a limit): the live run's
            again = by_participant[participant]
            assert live_next is not None
            assert (again.messages, again.purpose, again.attempt) == (live_next.messages, live_next.purpose,
                                                                     live_next.attempt)
    humans_timer = [e for e in resume.effects if isinstance(e, StartTimer)
                    and isinstance(e.due, decider.HumansWaitOver)]
    if state.round_state(number).humans_waited:  # type: ignore[union-attr]
        assert not humans_timer
