"""The audit on corrupted logs, built by hand: what two engines driving one session leave behind.

The issue's three traces of a second driver are an event after SessionEnded, a delta after
its contribution completed, and a contribution sent and completed twice (mock replies are
deterministic, so the second completion's text equals the first's deltas). The audit
before this change flagged only the second of the three.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from eventstore import EventStore, RecordedEvent
from forge_actors.actors.session import as_new_event
from forge_actors.core import audit
from forge_actors.core.events import (
    ContentDelta,
    ContributionAbandoned,
    ContributionCompleted,
    ContributionFailed,
    Event,
    ParticipantInfo,
    PromptSent,
    RoundCompleted,
    RoundStarted,
    SessionCreated,
    SessionEnded,
    SessionResumed,
    SessionSettings,
    TokenUsage,
    event_type,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import replay as replay_tool  # noqa: E402  (tools/replay.py)

ALICE, BOB = (ParticipantInfo(n, provider=f"mock:{n}", model=n) for n in ("alice", "bob"))


def prompt(participant: str, attempt: int = 1, round_: int = 1) -> PromptSent:
    return PromptSent(contribution_id=f"r{round_}.{participant}.{attempt}", round=round_, participant=participant,
                      attempt=attempt, model=participant, messages=(), temperature=0.7, max_tokens=100)


def delta(participant: str, text: str, attempt: int = 1) -> ContentDelta:
    return ContentDelta(contribution_id=f"r1.{participant}.{attempt}", participant=participant, round=1,
                        attempt=attempt, text=text)


def completed(participant: str, content: str, attempt: int = 1) -> ContributionCompleted:
    return ContributionCompleted(contribution_id=f"r1.{participant}.{attempt}", participant=participant, round=1,
                                 attempt=attempt, content=content, finish_reason="stop", usage=TokenUsage(5, 2),
                                 latency_ms=1.0)


def failed(participant: str, attempt: int = 1, *, will_retry: bool = False, kind: str = "timeout") -> ContributionFailed:
    return ContributionFailed(contribution_id=f"r1.{participant}.{attempt}", participant=participant, round=1,
                              attempt=attempt, error_kind=kind, message="too slow", retryable=will_retry,
                              will_retry=will_retry)


def opening() -> list[Event]:
    return [
        SessionCreated(session_id="s", title="t", goal="g", settings=SessionSettings(), participants=(ALICE, BOB)),
        RoundStarted(round=1, kind="draft", iteration=1, participants=("alice", "bob")),
        prompt("alice"), prompt("bob"),
        delta("alice", "Hel"), delta("bob", "Hi"), delta("alice", "lo"),
    ]


def sound() -> list[Event]:
    return [
        *opening(),
        completed("alice", "Hello"), completed("bob", "Hi"),
        RoundCompleted(round=1, kind="draft", status="completed", succeeded=("alice", "bob")),
        SessionEnded(outcome="cancelled", reason="enough"),
    ]


def recorded(events: list[Event]) -> list[RecordedEvent]:
    return [RecordedEvent(n, "s", n, event_type(e), "", 0, e) for n, e in enumerate(events, 1)]


def problems(events: list[Event]) -> list[str]:
    return [v.problem for v in audit.verify(recorded(events))]


def test_the_sound_log_passes():
    assert problems(sound()) == []


# -- the three traces ---------------------------------------------------------------------


def test_an_event_after_session_ended_is_flagged():
    # The second driver, a step behind, starts the next round and ends the session again.
    events = [*sound(), RoundStarted(round=2, kind="critique", iteration=1, participants=("alice", "bob")),
              SessionEnded(outcome="failed", reason="the second driver")]
    found = audit.verify(recorded(events))
    assert [(v.position, v.problem) for v in found] == [
        (12, "RoundStarted after SessionEnded (at position 11)"),
        (13, "SessionEnded after SessionEnded (at position 11)"),
    ]


def test_a_delta_after_its_contribution_completed_is_flagged():
    events = sound()
    events.insert(8, delta("alice", " again"))  # after alice's completion (position 8)
    assert problems(events) == [
        "delta of r1.alice.1 after it completed (at position 8)",
        "round 1: recorded as over, but the log leaves ['alice'] unsettled",  # the fold reopens her draft
    ]


def test_a_contribution_sent_and_completed_twice_is_flagged():
    # The second driver resumed from the same state: same contribution id, same (deterministic) reply;
    # its deltas were lost to a ConcurrencyError, its completion landed.
    events = sound()
    events[9:9] = [prompt("alice"), completed("alice", "Hello")]
    assert problems(events) == [
        "PromptSent reuses the contribution id r1.alice.1 (first sent at position 3)",
        "r1.alice.1 completed a second time (it completed at position 8)",
    ]


# -- the other settlements ------------------------------------------------------------------------


@pytest.mark.parametrize("settle, word", [
    (failed("alice"), "failed"),
    (ContributionAbandoned(contribution_id="r1.alice.1", participant="alice", round=1, attempt=1, reason="killed"),
     "abandoned"),
])
def test_a_delta_after_a_failure_or_an_abandonment_is_flagged(settle, word):
    events = [*opening(), settle, delta("alice", "late")]
    assert problems(events) == [f"delta of r1.alice.1 after it {word} (at position 8)"]


def test_a_second_failure_or_a_failure_after_completion_is_flagged():
    events = [*opening(), completed("alice", "Hello"), failed("alice"), failed("bob"), failed("bob", kind="deadline")]
    assert problems(events) == [
        "r1.alice.1 failed a second time (it completed at position 8)",
        "r1.bob.1 failed a second time (it failed at position 10)",
    ]


def test_a_failure_awaiting_its_retry_may_be_made_final_once():
    # What the session actor records when the round deadline passes during a retry's backoff.
    events = [*opening(), completed("alice", "Hello"), failed("bob", will_retry=True), failed("bob", kind="deadline"),
              RoundCompleted(round=1, kind="draft", status="degraded", succeeded=("alice",), failed=("bob",))]
    assert problems(events) == []
    assert problems([*events[:-1], failed("bob", kind="deadline")]) == [
        "r1.bob.1 failed a second time (it failed at position 10)"]


def test_a_settlement_without_its_prompt_is_flagged():
    events = [*opening(), completed("alice", "Hello"), completed("carol", "")]
    assert problems(events) == ["r1.carol.1 completed without its prompt"]


def test_a_resume_that_reruns_with_a_new_attempt_is_sound():
    abandoned = ContributionAbandoned(contribution_id="r1.bob.1", participant="bob", round=1, attempt=1,
                                      reason="in flight when the process stopped")
    events = [*opening(), completed("alice", "Hello"), abandoned, SessionResumed(("r1.bob.1",)),
              prompt("bob", attempt=2), delta("bob", "Hey", attempt=2), completed("bob", "Hey", attempt=2),
              RoundCompleted(round=1, kind="draft", status="completed", succeeded=("alice", "bob"))]
    assert problems(events) == []


# -- tools/replay.py --verify ---------------------------------------------------------------------


def test_replay_verify_exits_1_naming_the_first_violation(tmp_path, capsys):
    db = tmp_path / "forge.db"
    with EventStore(str(db)) as store:
        store.append("s", [as_new_event(e) for e in [*sound(), delta("alice", "!")]])
    assert replay_tool.main(["--db", str(db), "s", "--verify"]) == 1
    err = capsys.readouterr().err
    assert "2 violation(s); the first: position 12 (version 12): ContentDelta after SessionEnded" in err
