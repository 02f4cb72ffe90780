"""Mailboxes: letters posted to a named box, answered once, seen by every store on the same file."""

from __future__ import annotations

import pytest

from eventstore import LogMailbox, open_log


def test_a_letter_is_posted_answered_once_and_seen_from_another_connection(log_target):
    with open_log(log_target) as poster_store, open_log(log_target) as holder_store:
        poster, holder = LogMailbox(poster_store, clock=lambda: 5), LogMailbox(holder_store)
        assert holder.unanswered("box") == [] and poster.letter(1) is None  # no table yet: nothing written
        first = poster.post("box", '{"n": 1}')
        second = poster.post("box", '{"n": 2}')
        poster.post("other", "x")
        waiting = holder.unanswered("box")
        assert [(letter.id, letter.payload, letter.posted_at) for letter in waiting] == [
            (first, '{"n": 1}', 5), (second, '{"n": 2}', 5)]
        assert holder.answer(first, "done") and not holder.answer(first, "again")  # once
        assert poster.letter(first).answer == "done" and poster.letter(second).answer is None
        assert [letter.id for letter in holder.unanswered("box")] == [second]
        assert not holder.answer(999, "nobody")


def test_opening_a_log_creates_no_mailbox_table(log_target):
    with open_log(log_target) as store:
        LogMailbox(store).unanswered("box")
        assert not store.has_table("mailbox")
        with pytest.raises(ValueError, match="non-empty"):
            LogMailbox(store).post("", "x")
