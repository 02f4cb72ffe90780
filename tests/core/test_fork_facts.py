"""A fork's facts in the pure core: the fold of SessionForked and ParticipantRemoved, the decider for
a participant that joined or left at the fork, and the audit of a fork's copied prefix."""

from __future__ import annotations

import msgspec
import pytest

from eventstore import RecordedEvent
from forge_actors.core import rounds
from forge_actors.core.audit import check_fork
from forge_actors.core.decider import AddHumanDraft, Ask, CastVote, Mode, StartDeliberating, StartRound, decide
from forge_actors.core.errors import InvalidCommandError
from forge_actors.core.events import (
    ContributionCompleted,
    ParticipantAdded,
    ParticipantInfo,
    ParticipantRemoved,
    SessionCreated,
    SessionForked,
    SessionSettings,
    encode_event,
    event_type,
)
from forge_actors.core.state import STATUS_EVENTS, Lineage, next_status, rebuild
from tests.core.test_decider import Session, created

DRAFT = "A plan: REST endpoints for todos, with tags and due dates."
CRITIQUE = "Proposal A\nScore: 70\nStrengths: clear\n\nProposal B\nScore: 60\nWeaknesses: vague\n"


def after_drafts(*names: str, humans: tuple[str, ...] = ()) -> Session:
    """A session whose draft round (round 1) is over: everyone drafted."""
    session = Session(created(*names, humans=humans))
    session.give(StartRound("draft"))
    for name in names:
        session.reply(name, f"{DRAFT} ({name})")
    assert session.state.rounds[-1].status == "completed"
    return session


def forked(session: Session, *events, **settings: object) -> Session:
    """The session so far, then SessionForked (with ``settings``, the constraint "no SQL") and ``events``."""
    fork = SessionForked("parent", session.state.rounds[-1].round, len(session.log) + 1, 99,
                         SessionSettings(**settings), ("no SQL",))  # type: ignore[arg-type]
    return Session(rebuild([fork, *events], session.state))


def test_session_forked_sets_the_lineage_settings_and_constraints_and_waits_to_be_driven():
    session = after_drafts("alice", "bob")
    fork = forked(session, convergence_threshold=0.95, seed=3)
    state = fork.state
    assert state.forked_from == Lineage("parent", 1, len(session.log) + 1, 99)
    assert state.settings.convergence_threshold == 0.95 and state.settings.seed == 3
    assert state.constraints == ("no SQL",)
    assert state.status == "created" and state.drafts == session.state.drafts  # the copy's facts stay
    # the summaries projection folds the status by the same rule
    assert "SessionForked" in STATUS_EVENTS
    assert next_status("running", True, SessionForked("p", 1, 2, 3, SessionSettings())) == "created"


def test_a_removed_participant_is_asked_no_more_but_keeps_what_it_gave():
    session = after_drafts("alice", "bob", "carol")
    fork = forked(session, ParticipantRemoved("carol", "dropped by the fork"))
    assert fork.state.removed == ("carol",) and "carol" in fork.state.participants
    assert fork.state.ai_participants == ["alice", "bob"]
    assert rounds.round_participants(fork.state, "critique") == ["alice", "bob"]
    decision = fork.give(StartRound("critique"))
    asked = [effect.participant for effect in decision.effects if isinstance(effect, Ask)]
    assert asked == ["alice", "bob"]
    # carol's draft is still one of the proposals the others review
    prompt = fork.asked("alice").messages[-1].content
    assert "(carol)" in prompt and "(bob)" in prompt


def test_a_removed_participant_can_join_again():
    session = after_drafts("alice", "bob")
    state = rebuild([ParticipantRemoved("bob"), ParticipantAdded(ParticipantInfo("bob", provider="mock", model="b"))],
                    session.state)
    assert state.removed == () and state.ai_participants == ["alice", "bob"]


def test_a_participant_that_joined_at_the_fork_is_asked_from_the_next_round_with_the_sessions_history():
    session = after_drafts("alice", "bob")
    fork = forked(session, ParticipantAdded(ParticipantInfo("dave", provider="mock", model="dave")))
    decision = fork.give(StartDeliberating())
    assert fork.state.rounds[-1].kind == "critique" and fork.state.rounds[-1].round == 2
    asked = [effect.participant for effect in decision.effects if isinstance(effect, Ask)]
    assert asked == ["alice", "bob", "dave"]  # it has no draft, but it reviews the others'
    prompt = fork.asked("dave").messages[-1].content
    assert "Design a TODO app API" in prompt and "no SQL" in prompt  # the goal, the fork's constraints
    assert fork.asked("dave").proposal_labels.keys() == {"A", "B"}  # alice's and bob's drafts


def test_a_removed_human_may_give_no_draft_or_vote():
    session = after_drafts("alice", "bob", humans=("hana",))
    fork = forked(session, ParticipantRemoved("hana"), human_wait_seconds=60)
    with pytest.raises(InvalidCommandError, match="hana was removed"):
        decide(fork.state, Mode(), CastVote("hana", "AGREE"))
    with pytest.raises(InvalidCommandError, match="hana was removed"):
        decide(fork.state, Mode(), AddHumanDraft("hana", "late"))


def _records(events, stream: str, first_position: int = 1) -> list[RecordedEvent]:
    return [RecordedEvent(first_position + i, stream, i + 1, event_type(e), encode_event(e).decode(), 0, e)
            for i, e in enumerate(events)]


def test_the_audit_checks_a_forks_copy_against_its_parent_and_says_when_it_cannot():
    session = after_drafts("alice", "bob")
    opening = SessionCreated("parent", "t", "Design a TODO app API", SessionSettings(),
                             tuple(session.state.participants.values()))
    parent = _records([opening, *session.log], "parent")
    copy = [msgspec.structs.replace(opening, session_id="fork"), *session.log]
    fork = SessionForked("parent", 1, len(parent), parent[-1].position, SessionSettings())
    records = _records([*copy, fork], "fork", 100)
    checked = check_fork(records, parent)
    assert checked is not None and checked.checked and checked.violations == ()
    assert "match it" in checked.note
    # an edited copy is found, named at its place: here a draft's text
    at = next(i for i, r in enumerate(records) if isinstance(r.event, ContributionCompleted))
    edited = list(records)
    edited[at] = _records([msgspec.structs.replace(records[at].event, content="edited")], "fork", records[at].position)[0]
    found = check_fork(edited, parent)
    assert found is not None and [v.position for v in found.violations] == [records[at].position]
    assert f"differs from the parent's event {at + 1}" in str(found.violations[0]) and "do not match" in found.note
    # a fork that says it copied more than precedes it
    wrong = _records([*copy, msgspec.structs.replace(fork, parent_version=len(parent) - 1)], "fork", 100)
    assert any("precede it" in v.problem for v in check_fork(wrong, parent).violations)
    # a parent that is not in the log: said, not a violation
    missing = check_fork(records, None)
    assert missing is not None and not missing.checked and missing.violations == ()
    assert "not in this log" in missing.note
    assert check_fork(parent, None) is None  # no fork
