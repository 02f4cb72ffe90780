"""Reply parsing is lenient in form and strict in substance."""

from __future__ import annotations

import pytest

from forge_actors import formats


@pytest.mark.parametrize("text, score", [
    ("Score: 82", 82), ("score: 82/100", 82), ("**Score:** 82", 82), ("**Score**: 82 / 100", 82),
    ("SCORE = 7/10", 70), ("Score - 100", 100), ("Score: 0", None), ("Score: 101", None),
    ("Score: high", None), ("no score here", None), ("Score: 8 out of 10", 80), ("Score: 77.6", 78),
])
def test_score_forms(text, score):
    assert formats.parse_score(text) == score


def test_critiques_split_by_proposal_with_bullet_styles():
    text = """Here is my review.

**Proposal B**
Score: 91/100
**Strengths:**
* clear API
* good tests
Weaknesses:
1. no auth
Suggestions:
- add OAuth

### Proposal A
Score: n/a
Strengths: concise
"""
    parsed = formats.parse_critiques(text, ["A", "B", "C"])
    assert parsed["B"] == formats.ParsedCritique(91, ("clear API", "good tests"), ("no auth",), ("add OAuth",))
    assert parsed["A"].score is None and parsed["A"].strengths == ("concise",)
    assert parsed["C"] == formats.ParsedCritique(None)


def test_single_proposal_without_heading():
    parsed = formats.parse_critiques("Score: 60\nWeaknesses:\n- slow", ["A"])
    assert parsed["A"].score == 60 and parsed["A"].weaknesses == ("slow",)


@pytest.mark.parametrize("text, vote", [
    ("VOTE: AGREE", "AGREE"), ("vote: disagree\nReasons:\n- x", "DISAGREE"), ("**VOTE:** Agree", "AGREE"),
    ("I agree with this", None), ("VOTE: maybe", None),
])
def test_votes(text, vote):
    parsed = formats.parse_vote(text)
    assert (parsed.vote if parsed else None) == vote


def test_render_then_parse_round_trips():
    critique = formats.ParsedCritique(73, ("a", "b"), ("c",), ("d", "e"))
    assert formats.parse_critiques(formats.render_critique("C", critique), ["C"])["C"] == critique
    vote = formats.ParsedVote("DISAGREE", ("r1",), ("c1", "c2"))
    assert formats.parse_vote(formats.render_vote(vote)) == vote


def test_prompt_markers():
    prompt = "Round: Critique\nIteration: 3\nGoal: Build {{a}} thing\n### Proposal A\n...\n### Proposal B\n"
    assert formats.find_round_kind(prompt) == "critique"
    assert formats.find_iteration(prompt) == 3
    assert formats.find_goal(prompt) == "Build {{a}} thing"
    assert formats.find_proposal_labels(prompt) == ["A", "B"]
