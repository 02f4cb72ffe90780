"""Human input for a session another engine drives: posted to its mailbox, applied by the driver with
the same checks, answered; the poster returns what the driver answered."""

from __future__ import annotations

import pytest
from support import wait_until

from eventstore import LogMailbox
from forge_actors.core.events import HumanDraftAdded
from forge_actors.engine import Forge, HumanInputQueuedError, InvalidCommandError, SessionBusyError, mail

SLOW = ["mock:alice?word_delay=0.02", "mock:bob?word_delay=0.02"]


def test_a_draft_given_to_another_engine_reaches_the_driver_and_counts(tmp_path):
    db = str(tmp_path / "forge.db")
    with Forge(db) as driver, Forge(db) as other:
        session_id = driver.create_session("Plan a garden", SLOW, max_iterations=1)
        driver.start_round(session_id, "draft")
        assert wait_until(lambda: driver.lease_holder(session_id) is not None)
        round_number = other.add_human_draft(session_id, "ada", "Raised beds, drip irrigation.")
        assert round_number == 1
        drafts = [e for e in driver.events(session_id) if isinstance(e, HumanDraftAdded)]
        assert [(d.author, d.round) for d in drafts] == [("ada", 1)]
        assert driver.state(session_id).participants["ada"].kind == "human"
        # The driver's checks apply, and its refusal comes back as the poster's error.
        with pytest.raises(InvalidCommandError, match="no synthesis up for a vote"):
            other.cast_vote(session_id, "ada", "AGREE")
        with pytest.raises(InvalidCommandError, match="empty"):
            other.add_human_draft(session_id, "ada", "   ")


def test_a_letter_nobody_answers_stays_queued_and_the_poster_says_so(tmp_path):
    db = str(tmp_path / "forge.db")
    with Forge(db) as forge:
        session_id = forge.create_session("g", ["mock:a"])
        mailbox = LogMailbox(forge._store)
        busy = SessionBusyError(session_id, "host:1:x", 5.0)
        request = mail.HumanRequest("vote", "ada", vote="AGREE")
        with pytest.raises(HumanInputQueuedError, match="the vote is queued"):
            mail.post_and_wait(mailbox, session_id, request, busy, timeout=0.2)
        letters = mailbox.unanswered(mail.box_of(session_id))
        assert len(letters) == 1 and '"vote":"AGREE"' in letters[0].payload
        assert mailbox.answer(letters[0].id, '{"ok":true,"round":4}') and not mailbox.answer(letters[0].id, "{}")
        assert mailbox.unanswered(mail.box_of(session_id)) == [] and mailbox.letter(letters[0].id).answer


def test_a_malformed_letter_is_answered_with_the_reason_not_a_crash(tmp_path):
    db = str(tmp_path / "forge.db")
    with Forge(db) as driver:
        session_id = driver.create_session("Plan a garden", SLOW, max_iterations=1)
        driver.start_round(session_id, "draft")
        mailbox = LogMailbox(driver._store)
        letter_id = mailbox.post(mail.box_of(session_id), '{"kind": "dance", "name": "ada"}')
        assert wait_until(lambda: mailbox.letter(letter_id).answer is not None)
        assert '"ok":false' in mailbox.letter(letter_id).answer


def test_a_round_waits_for_the_sessions_humans_and_their_input_from_another_engine_counts(tmp_path):
    from forge_actors.core.events import RoundCompleted, VoteRecorded

    db = str(tmp_path / "forge.db")
    with Forge(db) as driver, Forge(db) as other:
        session_id = driver.create_session("Plan a garden", ["mock:alice", "mock:bob", {"kind": "human", "name": "ada"}],
                                          max_iterations=1, human_wait_seconds=60, seed=3)
        events = driver.deliberate(session_id)

        def waiting_in(kind: str) -> bool:
            current = driver.state(session_id).current_round
            return current is not None and current.kind == kind and current.status == "running"

        assert wait_until(lambda: waiting_in("draft") and len(driver.state(session_id).drafts) == 2)
        assert other.add_human_draft(session_id, "ada", "Raised beds and a rain barrel.") == 1
        assert wait_until(lambda: waiting_in("convergence")
                          and len(driver.state(session_id).votes_in(driver.state(session_id).current_round.round)) == 2)
        other.cast_vote(session_id, "ada", "DISAGREE", concerns=("no budget",))
        recorded = [r.event for r in events]
        ada = [e for e in recorded if isinstance(e, VoteRecorded) and e.voter == "ada"]
        assert len(ada) == 1 and ada[0].by_human and ada[0].concerns == ("no budget",)
        draft_round = next(e for e in recorded if isinstance(e, RoundCompleted) and e.kind == "draft")
        assert draft_round.status == "completed"
        assert driver.state(session_id).drafts["ada"].startswith("Raised beds") and driver.verify(session_id) == []


def test_humans_who_never_answer_hold_a_round_only_human_wait_seconds(tmp_path):
    with Forge(str(tmp_path / "forge.db")) as forge:
        session_id = forge.create_session("Plan a garden", ["mock:alice", "mock:bob", {"kind": "human", "name": "ada"}],
                                          max_iterations=1, human_wait_seconds=0.2, seed=3)
        events = [r.event for r in forge.deliberate(session_id)]
        assert forge.state(session_id).ended and "ada" not in forge.state(session_id).drafts
        assert forge.verify(session_id) == [] and events
