"""Replies as real models write them: the corpus, the issue's wrong reads, and round trips.

``tests/corpus/replies.json`` holds replies written in the habits of several model families
(preambles, markdown, tables, reasoning blocks, refusals, vote changes, JSON with and
without fences), each with the reading a careful human would make under the project's
rule: a score or vote that cannot be attributed with certainty is None. A vote entry may
say what its prompt showed: the session's participants (``names``, the ``voter`` among
them) and proposal labels (``labels``). Every entry must read exactly so, as the engine
reads it; ``benchmarks/replies.py`` measures the same corpus.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forge_actors.core import reply_format, reply_reading, rounds
from forge_actors.core.events import ParticipantInfo, PromptMessage, PromptSent, VoteRecorded
from forge_actors.core.state import SessionState
from forge_actors.providers import register_provider
from forge_actors.providers.mock import MockProvider

CORPUS = json.loads((Path(__file__).resolve().parents[1] / "corpus" / "replies.json").read_text(encoding="utf-8"))


def read(entry: dict):
    """What the parser reads from a corpus entry, in the shape of its ``expected``."""
    text = entry["text"]
    if entry["kind"] == "critique":
        if entry["format"] == "json":
            parsed = reply_reading.parse_critique_json(text, entry["labels"])
            return None if parsed is None else {label: c.score for label, c in parsed.items()}
        return {label: c.score for label, c in reply_reading.parse_critiques(text, entry["labels"]).items()}
    context = reply_reading.VoteContext(entry.get("voter", ""), tuple(entry.get("names", ())), tuple(entry.get("labels", ())))
    vote = rounds.read_vote(text, entry["format"] == "json", context)  # as the engine reads it: JSON first
    return vote.vote if vote else None


@pytest.mark.parametrize("entry", CORPUS, ids=[entry["id"] for entry in CORPUS])
def test_corpus_entry_reads_as_expected(entry):
    assert read(entry) == entry["expected"]


def test_corpus_is_varied_enough_to_mean_something():
    assert len(CORPUS) >= 60 and len({entry["id"] for entry in CORPUS}) == len(CORPUS)
    kinds = [(entry["kind"], entry["format"]) for entry in CORPUS]
    assert kinds.count(("critique", "text")) >= 30 and kinds.count(("vote", "text")) >= 100
    assert kinds.count(("critique", "json")) >= 5 and kinds.count(("vote", "json")) >= 5
    assert len({entry["family"] for entry in CORPUS}) >= 8
    for entry in CORPUS:
        assert entry["kind"] in ("critique", "vote") and entry["format"] in ("text", "json")
        if entry["kind"] == "critique" and entry["expected"] is not None:
            assert set(entry["expected"]) == set(entry["labels"])
        if entry["kind"] == "vote":
            assert entry["expected"] in ("AGREE", "DISAGREE", None)
    texts = " ".join(entry["text"] for entry in CORPUS)
    assert "<think>" in texts and "</think>" in texts and "```json" in texts and "|---" in texts


# -- the two wrong reads ---------------------------------------------------------------


def test_a_vote_inside_a_think_block_is_not_the_answer():
    reply = "<think>\nFirst instinct: VOTE: DISAGREE. But phase 2 covers it.\n</think>\n\nVOTE: AGREE\nReasons:\n- ok\n"
    assert reply_reading.parse_vote(reply) == reply_format.ParsedVote("AGREE", ("ok",))


def test_a_vote_changed_at_the_end_reads_as_the_final_one():
    reply = "VOTE: AGREE\nReasons:\n- sound model\n\nActually, the hashing issue was not fixed.\n\nFinal vote: DISAGREE\n"
    assert reply_reading.parse_vote(reply).vote == "DISAGREE"


# -- parse(render(x)) == x ---------------------------------------------------------------------

# Items that stay meaningful: words (including the parsers' own keywords, capitalised labels
# and punctuation), no newlines, no separators that would turn an item into a marker line.
WORDS = ["clear", "api", "tests", "auth", "slow", "design", "score", "vote", "agree", "disagree", "overall",
         "strengths", "proposal", "Proposal", "B", "the", "and", "with", "(beta)", "x/y", "e.g.", "well-tested",
         "naïve", "écrit", "东京", "100%"]
items = st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join)
item_lists = st.lists(items, max_size=3).map(tuple)
labels = st.lists(st.sampled_from("ABCDEFGH"), min_size=1, max_size=4, unique=True)
critiques = st.builds(reply_format.ParsedCritique, st.none() | st.integers(1, 100), item_lists, item_lists, item_lists)
votes = st.builds(reply_format.ParsedVote, st.sampled_from(["AGREE", "DISAGREE"]), item_lists, item_lists)


@settings(max_examples=80, deadline=None, derandomize=True)  # deterministic, untimed
@given(labels, st.data())
def test_text_critiques_round_trip(asked, data):
    expected = {label: data.draw(critiques) for label in asked}
    text = "\n".join(reply_format.render_critique(label, critique) for label, critique in expected.items())
    assert reply_reading.parse_critiques(text, asked) == expected


@settings(max_examples=80, deadline=None, derandomize=True)  # deterministic, untimed
@given(votes)
def test_text_votes_round_trip(vote):
    assert reply_reading.parse_vote(reply_format.render_vote(vote)) == vote


@settings(max_examples=80, deadline=None, derandomize=True)  # deterministic, untimed
@given(votes, votes)
def test_text_votes_round_trip_after_reasoning(vote, mused):
    reasoning = f"<think>\n{reply_format.render_vote(mused)}</think>\n"
    assert reply_reading.parse_vote(reasoning + reply_format.render_vote(vote)) == vote


# JSON carries any text; the decoders trim items and drop empty ones, so items come trimmed.
json_items = st.lists(st.text(min_size=1).filter(lambda s: s.strip() == s), max_size=3).map(tuple)
json_critiques = st.builds(reply_format.ParsedCritique, st.integers(1, 100), json_items, json_items, json_items)
json_votes = st.builds(reply_format.ParsedVote, st.sampled_from(["AGREE", "DISAGREE"]), json_items, json_items,
                       st.none() | st.floats(0, 1))


@settings(max_examples=80, deadline=None, derandomize=True)  # deterministic, untimed
@given(labels, st.data())
def test_json_critiques_round_trip(asked, data):
    expected = {label: data.draw(json_critiques) for label in asked}
    assert reply_reading.parse_critique_json(reply_format.render_critique_json(expected), asked) == expected


@settings(max_examples=80, deadline=None, derandomize=True)  # deterministic, untimed
@given(json_votes)
def test_json_votes_round_trip(vote):
    assert reply_reading.parse_vote_json(reply_format.render_vote_json(vote)) == vote


@settings(max_examples=80, deadline=None, derandomize=True)  # deterministic, untimed
@given(json_votes)
def test_json_votes_round_trip_inside_a_fence(vote):
    assert reply_reading.parse_vote_json(f"```json\n{reply_format.render_vote_json(vote)}\n```\n") == vote


plain = st.text(alphabet=st.characters(blacklist_characters="<>"))


@settings(max_examples=80, deadline=None, derandomize=True)  # deterministic, untimed
@given(plain, plain)
def test_strip_reasoning_keeps_plain_text_and_drops_blocks(before, after):
    assert reply_format.strip_reasoning(before + after) == before + after
    assert reply_format.strip_reasoning(f"{before}<think>{after}</think>{after}") == before + after


# -- whose vote: the engine and the audit read a reply with what its prompt showed ----------------

def test_corpus_votes_name_only_what_a_prompt_shows():
    votes = [entry for entry in CORPUS if entry["kind"] == "vote"]
    for entry in votes:
        assert set(entry) <= {"id", "family", "kind", "format", "text", "expected", "note", "voter", "names", "labels"}
        if "voter" in entry:
            assert entry["voter"] in entry["names"], entry["id"]
        assert all(len(label) <= 2 and label.isupper() for label in entry.get("labels", ())), entry["id"]
    assert sum(1 for entry in votes if "names" in entry) >= 10 and sum(1 for entry in votes if "labels" in entry) >= 3


QUOTING_REPLY = "VOTE: AGREE\nReasons:\n- the plan holds\n\nLast round, for the record:\n- bob: VOTE: DISAGREE\n"


class _Quoting(MockProvider):
    """A mock whose votes report bob's vote after its own, as models recap a previous round."""

    def _answer(self, request, prompt, kind):
        return QUOTING_REPLY if kind == "convergence" else super()._answer(request, prompt, kind)


def test_a_reply_reporting_another_participants_vote_is_recorded_and_audited_as_its_own(forge):
    assert reply_reading.parse_vote(QUOTING_REPLY).vote == "DISAGREE"  # without the session's names: bob's is last
    register_provider("quoting", lambda model, **options: _Quoting(model))
    session_id = forge.create_session("Design a TODO app API", ["quoting:alice?replies=text", "mock:bob"],
                                      max_iterations=1)
    for _ in forge.deliberate(session_id):
        pass
    votes = {r.event.voter: r.event.vote for r in forge.records(session_id) if isinstance(r.event, VoteRecorded)}
    assert votes["alice"] == "AGREE"
    assert forge.verify(session_id) == []  # the audit read alice's reply with bob's name too


def test_vote_context_is_the_sessions_names_and_the_labels_its_prompt_showed():
    state = SessionState(participants={name: ParticipantInfo(name) for name in ("alice", "bob", "ada")})
    shown = "Here is the group's current synthesis:\n\nIt keeps Proposal B's cache and proposal A's schema."
    prompt = PromptSent(contribution_id="r4.alice.1", round=4, participant="alice", attempt=1, model="m",
                        messages=(PromptMessage("system", "You are alice"), PromptMessage("user", shown),
                                  PromptMessage("assistant", "Proposal C: VOTE: AGREE")),  # its own reply, re-asked
                        temperature=0.7, max_tokens=100, proposal_labels={"D": "bob"})
    assert rounds.vote_context(state, prompt) == reply_reading.VoteContext("alice", ("alice", "bob", "ada"), ("D", "B", "A"))
