"""The audit on corrupted logs, built by hand: what two engines driving one session leave behind.

The issue's three traces of a second driver are an event after SessionEnded, a delta after
its contribution completed, and a contribution sent and completed twice (mock replies are
deterministic, so the second completion's text equals the first's deltas). The audit
before this change flagged only the second of the three.
"""

from __future__ import annotations

import sys
from pathlib import Path

import msgspec
import pytest
from support import FAST_RETRIES, wait_until

from eventstore import EventStore, RecordedEvent
from forge_actors.core import audit
from forge_actors.core.events import (
    ContentDelta,
    ContributionAbandoned,
    ContributionCompleted,
    ContributionFailed,
    CritiqueRecorded,
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
    VoteRecorded,
    event_type,
)
from forge_actors.core.records import to_records
from forge_actors.engine import Forge

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


# -- critiques read again across a re-ask and its retry ----------------------------------------------


CAROL = ParticipantInfo("carol", provider="mock:carol", model="carol")
FIRST_REPLY = "## Proposal A\nScore: 70/100\nStrengths:\n- clear\n\n## Proposal B\nI cannot decide.\n"
SECOND_REPLY = "## Proposal A\nAs before.\n\n## Proposal B\nScore: 40/100\n"


def alice_critiques(third_purpose: str) -> list[Event]:
    """Three drafts, then alice's critique: a reply with no score for B, its re-ask, which fails and
    is tried again (``third_purpose``), and the reply that scores B only."""
    names = ("alice", "bob", "carol")
    events: list[Event] = [
        SessionCreated(session_id="s", title="t", goal="g", settings=SessionSettings(), participants=(ALICE, BOB, CAROL)),
        RoundStarted(round=1, kind="draft", iteration=1, participants=names),
    ]
    for name in names:
        events += [prompt(name), delta(name, f"{name}'s draft"), completed(name, f"{name}'s draft")]
    events.append(RoundCompleted(round=1, kind="draft", status="completed", succeeded=names))
    labels = {"A": "bob", "B": "carol"}

    def attempt(number: int, purpose: str) -> PromptSent:
        return msgspec.structs.replace(prompt("alice", number, round_=2), purpose=purpose, proposal_labels=labels)

    def reply(number: int, text: str) -> list[Event]:
        return [ContentDelta(contribution_id=f"r2.alice.{number}", participant="alice", round=2, attempt=number,
                             text=text),
                msgspec.structs.replace(completed("alice", text, number), contribution_id=f"r2.alice.{number}", round=2)]

    return [
        *events, RoundStarted(round=2, kind="critique", iteration=1, participants=names),
        attempt(1, "initial"), *reply(1, FIRST_REPLY),
        attempt(2, "reask"),
        ContributionFailed(contribution_id="r2.alice.2", participant="alice", round=2, attempt=2,
                           error_kind="server_error", message="503", retryable=True, will_retry=True),
        attempt(3, third_purpose), *reply(3, SECOND_REPLY),
        # the re-ask keeps what the first reply scored (A) and fills in the rest (B)
        CritiqueRecorded(round=2, critic="alice", label="A", proposal_author="bob", score=70, strengths=("clear",)),
        CritiqueRecorded(round=2, critic="alice", label="B", proposal_author="carol", score=40),
    ]


def test_the_retry_of_a_reask_is_read_as_a_reask_keeping_the_first_replys_scores():
    events = alice_critiques("retry")
    assert problems(events) == []
    events[-2] = msgspec.structs.replace(events[-2], score=None, strengths=())  # what the last reply alone gives
    assert problems(events) == [
        "alice's critique of proposal A (bob) in round 2, score None is not what r2.alice.3's reply (position 21) "
        "gives: score None recorded, 70 read; strengths () recorded, ('clear',) read"]


def test_a_rerun_starts_afresh_its_unreadable_reply_is_reasked_not_recorded():
    # Had the third attempt been a rerun (after a resume), its reply, unreadable for A, would be re-asked.
    assert problems(alice_critiques("rerun")) == [
        "alice's critique of proposal A (bob) in round 2, score 70: no completed reply just before it gives it",
        "alice's critique of proposal B (carol) in round 2, score 40: no completed reply just before it gives it",
    ]


# -- tools/replay.py --verify ---------------------------------------------------------------------


def test_replay_verify_exits_1_naming_the_first_violation(tmp_path, capsys):
    db = tmp_path / "forge.db"
    with EventStore(str(db)) as store:
        store.append("s", to_records([*sound(), delta("alice", "!")]))
    assert replay_tool.main(["--db", str(db), "s", "--verify"]) == 1
    err = capsys.readouterr().err
    assert "2 violation(s); the first: position 12 (version 12): ContentDelta after SessionEnded" in err


# -- honest logs of real sessions, and each of them tampered with -----------------------------------
#
# Sessions of mock participants (no word delay) run by the engine, once for the module: verify
# passes every one of them, and catches each edit below, naming the edited fact's position.

THREE = ["mock:alice", "mock:bob", "mock:carol"]
GOAL = "Design a TODO app API"


def deliberated(forge: Forge, participants: list[str], **settings) -> str:
    session_id = forge.create_session(GOAL, participants, **settings)
    for _ in forge.deliberate(session_id):
        pass
    return session_id


def with_humans(forge: Forge) -> str:
    """Step by step: a human's draft, a human's vote on the synthesis, then the vote."""
    session_id = forge.create_session(GOAL, ["mock:alice", "mock:bob"], max_iterations=1, seed=1)
    forge.add_human_draft(session_id, "ada", "Raised beds along the south wall, drip irrigation.")
    for kind in ("draft", "critique", "synthesis"):
        forge.run_round(session_id, kind, timeout=30)
    forge.cast_vote(session_id, "ada", "DISAGREE", concerns=("the budget is missing",))
    forge.run_round(session_id, "convergence", timeout=30)
    return session_id


def cancelled_mid_round(forge: Forge) -> str:
    session_id = forge.create_session(GOAL, ["mock:alice?word_delay=0.01", "mock:bob?word_delay=0.01"])
    forge.run_round(session_id, "draft", timeout=30)
    forge.start_round(session_id, "critique")
    assert wait_until(lambda: any(isinstance(e, ContentDelta) and e.round == 2 for e in forge.events(session_id)))
    forge.cancel(session_id, "enough")
    return session_id


def resumed_after_a_stop(db: str) -> str:
    """An engine closed mid-round without interrupting the session (as a crash leaves it, lease
    released), then another that resumes it to its end."""
    with Forge(db) as first:
        session_id = first.create_session(GOAL, [f"{p}?word_delay=0.002" for p in THREE], max_iterations=1, seed=4)
        first.start(session_id)
        assert wait_until(lambda: any(isinstance(e, ContentDelta) for e in first.events(session_id)))
    with Forge(db, retry_policy=FAST_RETRIES) as second:
        for _ in second.resume(session_id):
            pass
    return session_id


@pytest.fixture(scope="module")
def honest(tmp_path_factory) -> dict[str, list[RecordedEvent]]:
    """Recorded sessions, by what they show."""
    db = str(tmp_path_factory.mktemp("honest") / "forge.db")
    sessions = {"resumed": resumed_after_a_stop(db)}
    with Forge(db, retry_policy=FAST_RETRIES) as forge:
        sessions |= {
            "max_rounds": deliberated(forge, THREE, seed=0, max_iterations=1),
            "converged": deliberated(forge, THREE, seed=0, max_iterations=2),
            "converged at once": deliberated(forge, THREE, seed=3, max_iterations=2),
            "max_rounds after two": deliberated(forge, THREE, seed=1, max_iterations=2),
            # bob's drafts all fail (retried once), alice's critique is re-asked then unscored, carol's
            # vote re-asked then an abstention; dave answers in text where the others answer in JSON
            "failures": deliberated(forge, ["mock:alice?garble=critique", "mock:bob?fail_on=draft",
                                            "mock:carol?garble=convergence", "mock:dave?replies=text"],
                                    seed=2, max_iterations=1, max_retries=1),
            "nobody drafts": deliberated(forge, ["mock:alice?fail_on=draft", "mock:bob?fail_on=all"], max_retries=0),
            "humans": with_humans(forge),
            "cancelled mid-round": cancelled_mid_round(forge),
        }
        cancelled = forge.create_session(GOAL, THREE)
        forge.run_round(cancelled, "draft", timeout=30)
        forge.cancel(cancelled, "the goal changed")
        sessions["cancelled between rounds"] = cancelled
        return {name: forge.records(session_id) for name, session_id in sessions.items()}


def test_honest_logs_pass(honest):
    outcomes = {name: records[-1].event.outcome for name, records in honest.items()}
    assert outcomes == {
        "resumed": "converged", "max_rounds": "max_rounds", "converged": "converged",
        "converged at once": "converged", "max_rounds after two": "max_rounds", "failures": "max_rounds",
        "nobody drafts": "failed", "humans": "max_rounds", "cancelled mid-round": "cancelled",
        "cancelled between rounds": "cancelled",
    }
    events = {name: [r.event for r in records] for name, records in honest.items()}
    # what the logs show, so that passing means something
    assert any(isinstance(e, SessionResumed) and e.abandoned for e in events["resumed"])
    purposes = {e.purpose for e in events["failures"] if isinstance(e, PromptSent)}
    assert purposes == {"initial", "retry", "reask"}
    assert any(isinstance(e, VoteRecorded) and e.vote == "ABSTAIN" for e in events["failures"])
    assert any(isinstance(e, CritiqueRecorded) and e.score is None for e in events["failures"])
    assert any(isinstance(e, VoteRecorded) and e.by_human for e in events["humans"])
    assert any(isinstance(e, RoundCompleted) and e.status == "cancelled" for e in events["cancelled mid-round"])
    for name, records in honest.items():
        assert audit.verify(records) == [], name


def tampered(records: list[RecordedEvent], index: int, **changes) -> list[RecordedEvent]:
    """``records`` with the event at ``index`` changed as an editor of the log would change it."""
    edited = msgspec.structs.replace(records[index].event, **changes)
    return [*records[:index], msgspec.structs.replace(records[index], event=edited), *records[index + 1:]]


def index_of(records: list[RecordedEvent], cls: type, last: bool = False, **fields) -> int:
    found = [i for i, r in enumerate(records)
             if isinstance(r.event, cls) and all(getattr(r.event, k) == v for k, v in fields.items())]
    return found[-1] if last else found[0]


def only_violation(records: list[RecordedEvent]) -> audit.Violation:
    violations = audit.verify(records)
    assert len(violations) == 1, violations
    return violations[0]


def test_a_deleted_session_ended_is_caught_at_the_end_of_the_log(honest):
    for name in ("max_rounds", "converged", "nobody drafts", "cancelled mid-round"):
        records = honest[name][:-1]
        found = only_violation(records)
        assert (found.position, found.version) == (records[-1].position, records[-1].version)
        outcome = honest[name][-1].event.outcome
        assert found.problem.startswith(f"the log calls for the session to end {outcome} (")
        assert "no SessionEnded follows and no engine drives the session" in found.problem
        assert audit.verify(records, driven=True) == []  # its engine may be about to write it


def test_a_session_that_stopped_mid_round_lacks_no_ending():
    # Only the draft round's PromptSent: nothing calls for an ending yet.
    assert problems(opening()) == []


@pytest.mark.parametrize("name, recorded, due", [("max_rounds", "converged", "max_rounds"),
                                                 ("converged", "max_rounds", "converged")])
def test_an_ending_changed_to_another_outcome_is_caught(honest, name, recorded, due):
    records = honest[name]
    assert records[-1].event.outcome == due
    found = only_violation(tampered(records, len(records) - 1, outcome=recorded))
    assert found.position == records[-1].position
    assert found.problem.startswith(f"the session ended {recorded}, but the log calls for {due}: ")


def test_an_ending_where_the_rules_call_for_none_is_caught(honest):
    records = honest["converged"]
    # the first convergence round did not converge: end the session right after it
    cut = index_of(records, RoundCompleted, kind="convergence") + 1
    ended = msgspec.structs.replace(records[-1], position=records[cut].position, version=records[cut].version)
    found = only_violation([*records[:cut], ended])
    assert found.problem == ("the session ended converged, but the log calls for no ending there: "
                             "a synthesis round comes next")


def test_an_edited_final_score_is_caught(honest):
    records = honest["converged"]
    found = only_violation(tampered(records, len(records) - 1, final_score=0.5))
    assert found.problem == "the session ended with a final score of 0.5, but the log gives 1.0"


def test_an_edited_critique_score_is_caught_naming_the_reply(honest):
    records = honest["max_rounds"]
    index = index_of(records, CritiqueRecorded)
    critique = records[index].event
    reply = next(r for r in reversed(records[:index]) if isinstance(r.event, ContributionCompleted))
    found = only_violation(tampered(records, index, score=critique.score % 100 + 1))
    assert found.position == records[index].position
    assert found.problem == (
        f"{critique.critic}'s critique of proposal {critique.label} ({critique.proposal_author}) in round 2, "
        f"score {critique.score % 100 + 1} is not what {reply.event.contribution_id}'s reply (position "
        f"{reply.position}) gives: score {critique.score % 100 + 1} recorded, {critique.score} read")


def test_an_edited_unscored_critique_after_a_reask_is_caught(honest):
    records = honest["failures"]
    index = index_of(records, CritiqueRecorded, critic="alice")
    assert records[index].event.score is None  # unreadable even after the re-ask
    found = only_violation(tampered(records, index, score=90))
    assert "score 90 recorded, None read" in found.problem


def test_a_flipped_vote_is_caught(honest):
    records = honest["converged"]
    index = index_of(records, VoteRecorded, vote="AGREE", last=True)
    voter = records[index].event.voter
    found = only_violation(tampered(records, index, vote="DISAGREE"))
    assert found.position == records[index].position
    assert found.problem.startswith(f"{voter}'s vote DISAGREE in round 6 is not what r6.{voter}.1's reply (position ")
    assert found.problem.endswith("gives: vote 'DISAGREE' recorded, 'AGREE' read")


def test_a_deleted_critique_is_caught(honest):
    records = honest["max_rounds"]
    index = index_of(records, CritiqueRecorded)
    critique = records[index].event
    renumbered = [*records[:index], *(msgspec.structs.replace(r, version=r.version - 1) for r in records[index + 1:])]
    found = audit.verify(renumbered)
    assert found[0].position == renumbered[index + 1].position  # where the reply's critiques end
    assert found[0].problem.endswith(
        f"gives {critique.critic}'s critique of proposal {critique.label} ({critique.proposal_author}) in round 2, "
        f"score {critique.score}, which the log does not record after it")


def test_an_edited_round_score_is_caught(honest):
    records = honest["max_rounds"]
    index = index_of(records, RoundCompleted, kind="convergence")
    assert records[index].event.score == 2 / 3
    found = only_violation(tampered(records, index, score=1.0))  # the ending is judged by the votes' score
    assert (found.position, found.problem) == (
        records[index].position, "round 4: the votes give a score of 0.6666666666666666, the round recorded 1.0")


def test_an_edited_round_status_is_caught(honest):
    records = honest["failures"]
    index = index_of(records, RoundCompleted, kind="draft")
    assert records[index].event.status == "degraded"
    found = only_violation(tampered(records, index, status="completed"))
    assert found.problem == "round 1: the log gives the status degraded, the round recorded completed"


def test_an_iteration_edited_to_reach_the_limit_is_caught(honest):
    # The first convergence round of a two-iteration session said to be the second: the log would
    # then call for max_rounds after it, but the iteration does not follow from the log.
    records = honest["converged"]
    index = index_of(records, RoundStarted, kind="synthesis")
    found = only_violation(tampered(records, index, iteration=2))
    assert found.problem == "round 3 (synthesis) says iteration 2, the log gives 1"


def test_a_human_vote_is_checked_for_its_voter_and_round(honest):
    records = honest["humans"]
    index = index_of(records, VoteRecorded, by_human=True)
    assert problems_of(tampered(records, index, voter="alice"))[0] == (
        "a human's vote by alice, who is an AI participant of the session")
    assert problems_of(tampered(records, index, round=2))[0] == (
        "ada's vote is recorded in round 2, but a human's vote counts in round 4")
    # an AI's vote said to be a human's: the vote its reply gives is missing, and no human gave it
    ai_vote = index_of(records, VoteRecorded, by_human=False)
    vote = records[ai_vote].event
    assert problems_of(tampered(records, ai_vote, by_human=True))[:2] == [
        f"r4.{vote.voter}.1's reply (position {records[ai_vote - 1].position}) gives {vote.voter}'s vote {vote.vote} in "
        "round 4, which the log does not record after it",
        f"a human's vote by {vote.voter}, who is an AI participant of the session",
    ]


def problems_of(records: list[RecordedEvent]) -> list[str]:
    return [v.problem for v in audit.verify(records)]
