"""Replies as real models write them: the corpus, the issue's wrong reads, and round trips.

``tests/corpus/replies.json`` holds replies written in the habits of several model families
(preambles, markdown, tables, reasoning blocks, refusals, vote changes, JSON with and
without fences), each with the reading a careful human would make under the project's
rule: a score or vote that cannot be attributed with certainty is None. Every entry must
read exactly so; ``benchmarks/replies.py`` measures the same corpus.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forge_actors.core import formats

CORPUS = json.loads((Path(__file__).resolve().parents[1] / "corpus" / "replies.json").read_text(encoding="utf-8"))


def read(entry: dict):
    """What the parser reads from a corpus entry, in the shape of its ``expected``."""
    text = entry["text"]
    if entry["kind"] == "critique":
        if entry["format"] == "json":
            parsed = formats.parse_critique_json(text, entry["labels"])
            return None if parsed is None else {label: c.score for label, c in parsed.items()}
        return {label: c.score for label, c in formats.parse_critiques(text, entry["labels"]).items()}
    vote = formats.parse_vote_json(text) if entry["format"] == "json" else formats.parse_vote(text)
    return vote.vote if vote else None


@pytest.mark.parametrize("entry", CORPUS, ids=[entry["id"] for entry in CORPUS])
def test_corpus_entry_reads_as_expected(entry):
    assert read(entry) == entry["expected"]


def test_corpus_is_varied_enough_to_mean_something():
    assert len(CORPUS) >= 60 and len({entry["id"] for entry in CORPUS}) == len(CORPUS)
    kinds = [(entry["kind"], entry["format"]) for entry in CORPUS]
    assert kinds.count(("critique", "text")) >= 30 and kinds.count(("vote", "text")) >= 20
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
    assert formats.parse_vote(reply) == formats.ParsedVote("AGREE", ("ok",))


def test_a_vote_changed_at_the_end_reads_as_the_final_one():
    reply = "VOTE: AGREE\nReasons:\n- sound model\n\nActually, the hashing issue was not fixed.\n\nFinal vote: DISAGREE\n"
    assert formats.parse_vote(reply).vote == "DISAGREE"


# -- parse(render(x)) == x ---------------------------------------------------------------------

# Items that stay meaningful: words (including the parsers' own keywords, capitalised labels
# and punctuation), no newlines, no separators that would turn an item into a marker line.
WORDS = ["clear", "api", "tests", "auth", "slow", "design", "score", "vote", "agree", "disagree", "overall",
         "strengths", "proposal", "Proposal", "B", "the", "and", "with", "(beta)", "x/y", "e.g.", "well-tested",
         "naïve", "écrit", "东京", "100%"]
items = st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join)
item_lists = st.lists(items, max_size=3).map(tuple)
labels = st.lists(st.sampled_from("ABCDEFGH"), min_size=1, max_size=4, unique=True)
critiques = st.builds(formats.ParsedCritique, st.none() | st.integers(1, 100), item_lists, item_lists, item_lists)
votes = st.builds(formats.ParsedVote, st.sampled_from(["AGREE", "DISAGREE"]), item_lists, item_lists)


@settings(max_examples=80, deadline=None, derandomize=True)  # deterministic, untimed
@given(labels, st.data())
def test_text_critiques_round_trip(asked, data):
    expected = {label: data.draw(critiques) for label in asked}
    text = "\n".join(formats.render_critique(label, critique) for label, critique in expected.items())
    assert formats.parse_critiques(text, asked) == expected


@settings(max_examples=80, deadline=None, derandomize=True)  # deterministic, untimed
@given(votes)
def test_text_votes_round_trip(vote):
    assert formats.parse_vote(formats.render_vote(vote)) == vote


@settings(max_examples=80, deadline=None, derandomize=True)  # deterministic, untimed
@given(votes, votes)
def test_text_votes_round_trip_after_reasoning(vote, mused):
    reasoning = f"<think>\n{formats.render_vote(mused)}</think>\n"
    assert formats.parse_vote(reasoning + formats.render_vote(vote)) == vote


# JSON carries any text; the decoders trim items and drop empty ones, so items come trimmed.
json_items = st.lists(st.text(min_size=1).filter(lambda s: s.strip() == s), max_size=3).map(tuple)
json_critiques = st.builds(formats.ParsedCritique, st.integers(1, 100), json_items, json_items, json_items)
json_votes = st.builds(formats.ParsedVote, st.sampled_from(["AGREE", "DISAGREE"]), json_items, json_items,
                       st.none() | st.floats(0, 1))


@settings(max_examples=80, deadline=None, derandomize=True)  # deterministic, untimed
@given(labels, st.data())
def test_json_critiques_round_trip(asked, data):
    expected = {label: data.draw(json_critiques) for label in asked}
    assert formats.parse_critique_json(formats.render_critique_json(expected), asked) == expected


@settings(max_examples=80, deadline=None, derandomize=True)  # deterministic, untimed
@given(json_votes)
def test_json_votes_round_trip(vote):
    assert formats.parse_vote_json(formats.render_vote_json(vote)) == vote


@settings(max_examples=80, deadline=None, derandomize=True)  # deterministic, untimed
@given(json_votes)
def test_json_votes_round_trip_inside_a_fence(vote):
    assert formats.parse_vote_json(f"```json\n{formats.render_vote_json(vote)}\n```\n") == vote


plain = st.text(alphabet=st.characters(blacklist_characters="<>"))


@settings(max_examples=80, deadline=None, derandomize=True)  # deterministic, untimed
@given(plain, plain)
def test_strip_reasoning_keeps_plain_text_and_drops_blocks(before, after):
    assert formats.strip_reasoning(before + after) == before + after
    assert formats.strip_reasoning(f"{before}<think>{after}</think>{after}") == before + after
