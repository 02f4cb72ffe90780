"""Reading replies (``core.reply_reading``) is lenient in form and strict in substance."""

from __future__ import annotations

import time

import pytest

from forge_actors.core import reply_format, reply_reading


@pytest.mark.parametrize("text, score", [
    ("Score: 82", 82), ("score: 82/100", 82), ("**Score:** 82", 82), ("**Score**: 82 / 100", 82),
    ("SCORE = 7/10", 70), ("Score - 100", 100), ("Score: 0", None), ("Score: 101", None),
    ("Score: high", None), ("no score here", None), ("Score: 8 out of 10", 80), ("Score: 77.6", 78),
])
def test_score_forms(text, score):
    assert reply_reading.parse_score(text) == score


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
    parsed = reply_reading.parse_critiques(text, ["A", "B", "C"])
    assert parsed["B"] == reply_format.ParsedCritique(91, ("clear API", "good tests"), ("no auth",), ("add OAuth",))
    assert parsed["A"].score is None and parsed["A"].strengths == ("concise",)
    assert parsed["C"] == reply_format.ParsedCritique(None)


def test_single_proposal_without_heading():
    parsed = reply_reading.parse_critiques("Score: 60\nWeaknesses:\n- slow", ["A"])
    assert parsed["A"].score == 60 and parsed["A"].weaknesses == ("slow",)


@pytest.mark.parametrize("text, vote", [
    ("VOTE: AGREE", "AGREE"), ("vote: disagree\nReasons:\n- x", "DISAGREE"), ("**VOTE:** Agree", "AGREE"),
    ("I agree with this", None), ("VOTE: maybe", None),
])
def test_votes(text, vote):
    parsed = reply_reading.parse_vote(text)
    assert (parsed.vote if parsed else None) == vote


def test_render_then_parse_round_trips():
    critique = reply_format.ParsedCritique(73, ("a", "b"), ("c",), ("d", "e"))
    assert reply_reading.parse_critiques(reply_format.render_critique("C", critique), ["C"])["C"] == critique
    vote = reply_format.ParsedVote("DISAGREE", ("r1",), ("c1", "c2"))
    assert reply_reading.parse_vote(reply_format.render_vote(vote)) == vote


# -- scores in their many shapes ------------------------------------------------------------------

@pytest.mark.parametrize("text, score", [
    ("Rating: 83/100", 83), ("Grade: 83", 83), ("Overall: 83/100", 83), ("Overall rating: 8/10", 80),
    ("Score: **85**", 85), ("Score: 85 / 100", 85), ("Score: 85%", 85), ("**Score:**\n\n81/100", 81),
    ("Score:\n**85**", 85), ("a score of 72", 72), ("Score 85", 85), ("Score: 8.5/10", 85),
    ("Score: 80-85", None), ("Score: 80 to 85", None), ("Score: 4/5", None), ("Score: 85/10", None),
    ("Grade: B+", None), ("I'd say 80", None), ("Score:\n1. Strengths", None), ("Overall:\n85% of it is fine", None),
    ("Score: 70\nScore: 75", None), ("Score: 70\nScore: 70", 70),
    ("Clarity score: 8/10\nOverall score: 76", 76), ("Clarity score: 8/10\nFeasibility score: 6/10", None),
    ("Initial score: 80\nFinal score — 88", 88), ("would score 10 points higher", None),
    ("<think>Score: 10</think>Score: 90", 90),
    # prose that only looks like a score
    ("Score: 80\nOverall is 2x faster", 80), ("Overall - 3 endpoints are missing", None), ("Rating of 4 stars", None),
    # a declared scale is honoured; one other than /10 or /100 is not read as /100
    ("Score (1-5): 4", None), ("Score (1-10): 8", 80), ("Score (1-100): 85", 85), ("Score (out of 10):\n7", 70),
    ("Score (1-5): 80/100", 80), ("Score (final): 88", 88),
    ("Score: 4 stars", None), ("the score is 3 times higher", None), ("Score: 85 points", None), ("a score of 79.", 79),
])
def test_score_shapes(text, score):
    assert reply_reading.parse_score(text) == score


def _scores(text, labels=("A", "B")):
    return {label: c.score for label, c in reply_reading.parse_critiques(text, list(labels)).items()}


@pytest.mark.parametrize("text, scores", [
    # markdown tables: labels as A / Proposal A / **A**, scores as 85/100 or 8.5/10
    ("| Proposal | Score |\n|---|---|\n| A | 85/100 |\n| **B** | 8.5/10 |", {"A": 85, "B": 85}),
    ("| Proposal | Score (/10) |\n|:-|:-:|\n| Proposal A | 8 |\n| Proposal B | 6.5 |", {"A": 80, "B": 65}),
    ("| Proposal | Clarity | Overall |\n|---|---|---|\n| A | 9 | 80 |\n| B | 6 | 70 |", {"A": 80, "B": 70}),
    ("| Proposal | Design score | Risk score |\n|---|---|---|\n| A | 80 | 60 |\n| B | 70 | 75 |", {"A": None, "B": None}),
    ("| | A | B |\n|---|---|---|\n| Clarity | 8 | 7 |\n| Overall score | 82 | 71 |", {"A": 82, "B": 71}),
    ("| Proposal | Score |\n|---|---|\n| A | 80-85 |\n| B | n/a |", {"A": None, "B": None}),
    ("| Proposal | Score (1-5) |\n|---|---|\n| A | 4 |\n| B | 3 |", {"A": None, "B": None}),
    # headings and lists
    ("1. **Proposal A** — Score: 90/100\n   - Strengths: x\n2. **Proposal B** — Score: 70/100", {"A": 90, "B": 70}),
    ("### Review of Proposal A\nRating: 83/100\n### Review of Proposal B\nOverall: 6/10", {"A": 83, "B": 60}),
    ("Proposal A (score 78)\nfine\nProposal B (score 65)", {"A": 78, "B": 65}),
    ("## 1. Proposal A\n**Score: 77/100**\n## 2. Proposal B\n**Score: 73/100**", {"A": 77, "B": 73}),
    ("### A. Event store\nScore: 80\n### B) CRUD\nScore: 70", {"A": 80, "B": 70}),
    ("A: 84/100 — strong\nB: 7/10 — weak", {"A": 84, "B": 70}),
    ("**Proposal A Score:** 72\n**Proposal B Score:** 88", {"A": 72, "B": 88}),
    ("**A**\nScore: 81\n\n### B\nScore: 59", {"A": 81, "B": 59}),
    ("Proposal | Score\n--- | ---\nA | 90\nB | 70", {"A": 90, "B": 70}),
    # JSON, fenced or not, in the CritiqueReply shape and close variants
    ('```json\n{"reviews": [{"proposal": "A", "score": 80}, {"proposal": "B", "score": 81.0}]}\n```', {"A": 80, "B": 81}),
    ('{"A": {"score": 80}, "B": 70}', {"A": 80, "B": 70}),
    ('{"scores": {"Proposal A": "8/10", "Proposal B": 55.5}}', {"A": 80, "B": None}),
    ('[{"label": "A", "rating": 61}, {"label": "B", "rating": 62}]', {"A": 61, "B": 62}),
    # never guess
    ("## Proposal A\nScore: 82\n## Proposal B\nScore: 67\n| Proposal | Score |\n|---|---|\n| A | 80 |", {"A": None, "B": 67}),
    ("## Proposal A\nScore: 79\n### Comparison with Proposal B\nB is better.\n## Proposal B\nScore: 71", {"A": 79, "B": 71}),
    ("## Proposal A\nScore: 80\n## Proposal B\nScore: 70\n## Summary\nOverall score: 99", {"A": 80, "B": 70}),
    ("Proposal A is solid, I'd say 80. Proposal B maybe 65.", {"A": None, "B": None}),
    ("The first is good. Score: 80. The second is weaker. Score: 60.", {"A": None, "B": None}),
    ("## Proposal A vs Proposal B\nScore: 80", {"A": None, "B": None}),
    ("**A** is better than **B** here. Score: 80", {"A": None, "B": None}),
    ("**Proposal A** is solid.\nScore: 80", {"A": None, "B": None}),
    ("<think>## Proposal A\nScore: 10</think>\n## Proposal A\nScore: 50\n## Proposal B\nScore: 60", {"A": 50, "B": 60}),
    ("<think>## Proposal A\nScore: 10\n## Proposal B\nScore: 20", {"A": None, "B": None}),
])
def test_critique_shapes(text, scores):
    assert _scores(text) == scores


def test_a_label_not_asked_for_is_ignored_and_closes_the_section():
    text = "## Proposal A\nScore: 74\n## Proposal B\nScore: 91\n## Proposal C\nScore: 58"
    assert _scores(text, ["A", "C"]) == {"A": 74, "C": 58}
    assert _scores("## Proposal B\nScore: 80", ["A"]) == {"A": None}


def test_lists_are_read_beside_the_new_shapes():
    text = ("1. **Proposal A** — Score: 90/100\n   - **Strengths:** clear\n   - **Weaknesses:** slow\n"
            "## Proposal B\nScore: 60\n### Strengths\n- simple\n### Improvements\n- add auth\n"
            "- Strengths are overstated\n")
    parsed = reply_reading.parse_critiques(text, ["A", "B"])
    assert parsed["A"] == reply_format.ParsedCritique(90, ("clear",), ("slow",), ())
    assert parsed["B"] == reply_format.ParsedCritique(60, ("simple",), (), ("add auth", "Strengths are overstated"))


def test_json_lists_are_read():
    text = '```json\n{"A": {"score": 80, "strengths": ["x"], "improvements": ["y"]}}\n```'
    assert reply_reading.parse_critiques(text, ["A"])["A"] == reply_format.ParsedCritique(80, ("x",), (), ("y",))


# -- votes in their many shapes --------------------------------------------------------------------

@pytest.mark.parametrize("text, vote", [
    ("VOTE: AGREE\nReasons:\n- ok\nFinal vote: DISAGREE", "DISAGREE"),  # the last explicit vote wins
    ("## Vote\nAGREE", "AGREE"), ("**Vote**\n\n**DISAGREE**", "DISAGREE"), ("Vote:\nagree.", "AGREE"),
    ("Final vote — AGREE", "AGREE"), ("Vote = agree", "AGREE"), ("My vote: **AGREE**", "AGREE"),
    ("VOTE: [DISAGREE]", "DISAGREE"), ("**Verdict: AGREE**", "AGREE"), ("### Vote: AGREE", "AGREE"),
    ("My vote is DISAGREE.", "DISAGREE"), ("VOTE: DISAGREE (I would AGREE if auth were fixed)", "DISAGREE"),
    ('```json\n{"vote": "AGREE", "reasons": ["a"]}\n```', "AGREE"),
    ('VOTE: AGREE\n\n{"vote": "disagree"}', "DISAGREE"),
    ("<think>VOTE: DISAGREE</think>\nVOTE: AGREE", "AGREE"),
    ("VOTE: DISAGREE maybe... </think>\n**Final Vote: AGREE**", "AGREE"),
    ("VOTE: AGREE or VOTE: DISAGREE", None), ("VOTE: AGREE/DISAGREE", None),
    ("Reply with `VOTE: AGREE` or `VOTE: DISAGREE`.\nVOTE: DISAGREE", "DISAGREE"),
    ("I can't help with that.", None), ("I agree with the synthesis.", None), ("I would vote to agree.", None),
    ("Vote: undecided", None), ("VOTE: AGREE\nVote: I am torn", None), ("## Vote\nI am not sure yet", None),
    ("> VOTE: DISAGREE\nMy vote: AGREE", "AGREE"), ("> VOTE: DISAGREE", None),
    ("<think>VOTE: AGREE", None), ("VOTE: NOT AGREE", None),
    ("Reasons for my vote:\n- fine\nVOTE: AGREE", "AGREE"),
    ('{"vote": "ABSTAIN"}', None),
    ("Bob's vote: DISAGREE", None), ("VOTE: AGREE\nunlike Bob, whose vote: DISAGREE", "AGREE"),
    ("I DISAGREE with X, but VOTE: AGREE overall", "AGREE"), ("after review my vote: disagree", "DISAGREE"),
    ("VOTE: AGREE (if auth is fixed) / DISAGREE (otherwise)", None), ("VOTE: ~~AGREE~~ DISAGREE", "DISAGREE"),
    ("Example:\n```\nVOTE: AGREE\n```\nMy actual vote: DISAGREE", "DISAGREE"), ("```\nVOTE: AGREE\n```", "AGREE"),
    ("Participant 2 wrote: VOTE: DISAGREE", None), ("TL;DR: VOTE: AGREE", "AGREE"),
    ('The schema wants something like {"vote": "AGREE"}.', None),
    ("Decision: DISAGREE", "DISAGREE"), ("Final answer: AGREE", "AGREE"), ("| Vote | **AGREE** |", "AGREE"),
    ('My answer: {"vote": "AGREE", "reasons": ["ok"]}', "AGREE"), ("VOTE AGREE", None),
])
def test_vote_shapes(text, vote):
    parsed = reply_reading.parse_vote(text)
    assert (parsed.vote if parsed else None) == vote


# -- the last explicit vote wins, whatever words lead into it --------------------------------------

@pytest.mark.parametrize("lead_in", [
    "Update:", "Actually, on second thought:", "Revised:", "Correction:", "Edit:", "After reflection:", "EDIT 2 —",
    "**Update:**", "P.S.", "Wait —", "On reflection,", "Bottom line:", "TL;DR (revised):", "Conclusion:",
    "Summary:", "Having re-read the rollback section:", "Second thoughts -", "🔄",
])
def test_a_revision_wins_whatever_leads_into_it(lead_in):
    for revision in ("VOTE: DISAGREE", "vote: disagree", "**Vote:** DISAGREE", "my vote is now DISAGREE"):
        reply = f"VOTE: AGREE\nReasons:\n- fine\n\n{lead_in} {revision}\n"
        assert reply_reading.parse_vote(reply, reply_reading.VoteContext("carol", ("alice", "bob", "carol"))).vote == "DISAGREE"


ALICE_BOB = reply_reading.VoteContext("carol", ("alice", "Bob", "carol", "gpt-4o-mini"), ("A", "B"))


@pytest.mark.parametrize("text, context, vote", [
    # a name or label the prompt showed, before a colon or dash: someone else's vote
    ("VOTE: AGREE\nLast round:\n- Alice: VOTE: DISAGREE\n- Bob's VOTE: DISAGREE", ALICE_BOB, "AGREE"),
    ("VOTE: AGREE\nLast round:\n- Alice: VOTE: DISAGREE", reply_reading.VoteContext(), "DISAGREE"),  # no such name
    ("VOTE: AGREE\n**BOB** — VOTE: DISAGREE", ALICE_BOB, "AGREE"),
    ("VOTE: AGREE\ngpt-4o-mini (last round): VOTE: DISAGREE", ALICE_BOB, "AGREE"),
    ("VOTE: DISAGREE\nProposal B: VOTE: AGREE", ALICE_BOB, "DISAGREE"),
    ("VOTE: DISAGREE\nProposal C: VOTE: AGREE", ALICE_BOB, "AGREE"),  # no label C was shown
    ("VOTE: AGREE\nmetal: VOTE: DISAGREE", reply_reading.VoteContext(names=("al",)), "DISAGREE"),  # a name, not a word's end
    ("carol: VOTE: AGREE", ALICE_BOB, "AGREE"),  # the voter's own name
    ("VOTE: AGREE\nReviewer 2: VOTE: DISAGREE\nanother member — VOTE: DISAGREE", ALICE_BOB, "AGREE"),
    ("VOTE: AGREE\nThe security reviewer wrote: VOTE: DISAGREE", ALICE_BOB, "AGREE"),
    ("VOTE: DISAGREE\nAs I said above: VOTE: AGREE", ALICE_BOB, "AGREE"),
    ("VOTE: AGREE\nHaving read it twice, I have voted: VOTE: DISAGREE", ALICE_BOB, "DISAGREE"),
    ("VOTE: AGREE\nthe previous round's VOTE: DISAGREE was about auth", ALICE_BOB, "AGREE"),
    ('My vote:\n{"vote": "AGREE"}\nalice: {"vote": "DISAGREE"}', ALICE_BOB, "AGREE"),
    # quotations
    ('VOTE: DISAGREE\nI would switch to "VOTE: AGREE" once backups exist.', ALICE_BOB, "DISAGREE"),
    ("VOTE: DISAGREE\nIf so, I’ll change it to “VOTE: AGREE”.", ALICE_BOB, "DISAGREE"),
    ("VOTE: DISAGREE\nThe format asks for `VOTE: AGREE` first.", ALICE_BOB, "DISAGREE"),
    ('Final answer: "VOTE: AGREE"', ALICE_BOB, "AGREE"), ("`VOTE: DISAGREE`", ALICE_BOB, "DISAGREE"),
    ("VOTE: \"DISAGREE\"", ALICE_BOB, "DISAGREE"), ("I can't say VOTE: AGREE isn't right: VOTE: DISAGREE", ALICE_BOB,
                                                    "DISAGREE"),
    ("VOTE: AGREE\n> alice: VOTE: DISAGREE", ALICE_BOB, "AGREE"),
    # examples
    ("For example: VOTE: AGREE\nI need more time.", ALICE_BOB, None),
    ("Here is the format:\n```\nVOTE: AGREE\n```\nI need more time.", ALICE_BOB, None),
    ('An example:\n```json\n{"vote": "AGREE"}\n```\nNot yet.', ALICE_BOB, None),
    ("Here is my vote in the format you asked for:\n```\nVOTE: DISAGREE\n```", ALICE_BOB, "DISAGREE"),
])
def test_someone_elses_vote_is_not_the_replys(text, context, vote):
    parsed = reply_reading.parse_vote(text, context)
    assert (parsed.vote if parsed else None) == vote


@pytest.mark.parametrize("text, vote", [
    ("VOTE: AGREE\nI retract my AGREE: hashing is still SHA-1.\nVOTE: DISAGREE", "DISAGREE"),
    ("VOTE: AGREE\nPlease ignore my earlier vote; I need the cost figures first.", None),
    ("VOTE: AGREE\nI withdraw my vote.", None), ("VOTE: AGREE. Scratch that — not sure yet.", None),
    ("VOTE: DISAGREE\nDisregard the vote above.\nVOTE: AGREE", "AGREE"),
    ("VOTE: AGREE\nI retract my VOTE: AGREE — the auth section contradicts itself.", None),
    ("Vote: AGREE\nCancel my previous vote. Vote: DISAGREE", "DISAGREE"),
    ("VOTE: AGREE\nI won't retract my AGREE: p99 is within budget.", "AGREE"),
    ("VOTE: AGREE\nYou might expect me to withdraw my vote, but no.", "AGREE"),
    ("VOTE: AGREE\nI'd retract my AGREE if the tests were dropped.", "AGREE"),
    ('VOTE: AGREE\nHe said "ignore my earlier vote" to the team.', "AGREE"),
    ("VOTE: AGREE\nThe synthesis cannot ignore the earlier vote's concerns.", "AGREE"),
    ("<think>I'll retract my AGREE</think>\nVOTE: AGREE", "AGREE"),
    ('{"vote": "AGREE"}\n\nSorry, ignore that — I misread the goal.', None),
    ("VOTE: DISAGREE\nUpdate: having read the appendix, my vote is unchanged.", "DISAGREE"),
    ("VOTE: AGREE\nUpdate: my vote is pending the cost figures.", None),
    ("VOTE: AGREE\nSummary: my decision is to back the plan.", "AGREE"),
])
def test_a_withdrawn_vote_leaves_the_next_one_or_none(text, vote):
    parsed = reply_reading.parse_vote(text)
    assert (parsed.vote if parsed else None) == vote


@pytest.mark.parametrize("text, vote", [
    ("**VOTE:** AGREE → DISAGREE", "DISAGREE"), ("VOTE: ~~AGREE~~ → DISAGREE", "DISAGREE"),
    ("VOTE: AGREE\nI'm changing my vote to DISAGREE: no backups.", "DISAGREE"),
    ("VOTE: AGREE\nI would change my vote to DISAGREE if backups were dropped.", "AGREE"),
    ("VOTE: AGREE\n## Updated Vote\nDISAGREE", "DISAGREE"), ("Revised vote: DISAGREE", "DISAGREE"),
    ("**Final answer (revised):** DISAGREE", "DISAGREE"), ("__VOTE__: agree", "AGREE"), ("VoTe: DisAgree!", "DISAGREE"),
    ("***Vote:*** ***DISAGREE***", "DISAGREE"), ("### 🗳️ Vote: **AGREE** ✅", "AGREE"), ("VOTE: AGREE; :)", "AGREE"),
    ("My vote is still AGREE.", "AGREE"), ("Between AGREE or DISAGREE, my vote: AGREE", "AGREE"),
    ("| Vote | ~~AGREE~~ DISAGREE |", "DISAGREE"),
])
def test_vote_changes_case_and_decoration(text, vote):
    parsed = reply_reading.parse_vote(text)
    assert (parsed.vote if parsed else None) == vote


def test_mentioned_labels():
    assert reply_reading.mentioned_labels("Proposal B's cache, proposal A's schema; Proposal B again; Proposals") == ["B", "A"]


# A model's reply is attacker input. Seven of these took more than 15 s (backtracking quadratic or
# worse) with the reader before this one; each takes 0.01-0.3 s of CPU now. The bound is a liveness
# bound (a regression to backtracking takes orders of magnitude longer), in CPU time so that other
# processes on a loaded machine do not make it flake.
_MB = 1_000_000
HOSTILE = {
    "spaces after a marker": "vote" + " " * _MB + "x", "a long word before a vote": "a" * _MB + " VOTE: AGREE",
    "a line of spaces": " " * _MB, "emphasis": "# " + "*" * _MB, "markers": "VOTE: " * (_MB // 6),
    "votes on one line": "VOTE: AGREE " * (_MB // 12), "votes on lines": "VOTE: AGREE\n" * (_MB // 12),
    "lead-ins": "ab: " * (_MB // 4) + "VOTE: AGREE", "quotes": '"a ' * (_MB // 3) + "VOTE: AGREE",
    "quoted votes": '"VOTE: AGREE" ' * (_MB // 14), "apostrophes": " 'a" * (_MB // 3) + "VOTE: AGREE",
    "withdrawals": "ignore my " * (_MB // 10), "options": "AGREE or " * (_MB // 9), "fences": "```\n" * (_MB // 4),
    "quote lines": "> VOTE: AGREE\n" * (_MB // 14), "braces": '{"' * (_MB // 2), "open tags": "<think" * (_MB // 6),
    "names": "alice: " * (_MB // 7) + "VOTE: AGREE", "numbered list": "1. " + " " * _MB,
}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_one_megabyte_reply_is_read_in_linear_time(name):
    started = time.process_time()
    reply_reading.parse_vote(HOSTILE[name], ALICE_BOB)
    assert time.process_time() - started < 5.0


def test_vote_lists_and_confidence():
    parsed = reply_reading.parse_vote("VOTE: AGREE\nReasons for my vote:\n- clear\nConcerns:\n- [none]\nConfidence: 80%")
    assert parsed == reply_format.ParsedVote("AGREE", ("clear",), (), 0.8)
    parsed = reply_reading.parse_vote('```json\n{"vote": "DISAGREE", "reasons": ["x"], "concerns": ["y"], "confidence": 0.4}\n```')
    assert parsed == reply_format.ParsedVote("DISAGREE", ("x",), ("y",), 0.4)


# -- structured (JSON) replies ------------------------------------------------------------------

_REVIEWS = '{"reviews": [{"proposal": "A", "score": 85.0, "strengths": ["s"], "weaknesses": [], "suggestions": []}]}'


@pytest.mark.parametrize("text", [
    _REVIEWS, f"\n  {_REVIEWS}  \n", f"```json\n{_REVIEWS}\n```", f"<think>schema...</think>\n{_REVIEWS}",
    f"Here it is:\n{_REVIEWS}", _REVIEWS.replace('"score"', '"extra": {"x": 1}, "score"'),
])
def test_critique_json_tolerates_what_servers_send(text):
    assert reply_reading.parse_critique_json(text, ["A"]) == {"A": reply_format.ParsedCritique(85, ("s",))}


@pytest.mark.parametrize("score, read", [(85.5, None), (0, None), (101, None), ('"85"', None), ("true", None), (1, 1)])
def test_critique_json_scores_are_never_invented(score, read):
    text = '{"reviews": [{"proposal": "A", "score": %s}]}' % score  # noqa: UP031 (JSON braces)
    assert reply_reading.parse_critique_json(text, ["A"])["A"].score == read


def test_critique_json_labels():
    text = ('{"reviews": [{"proposal": "Proposal A", "score": 70}, {"proposal": "C", "score": 90},'
            ' {"proposal": "B", "score": 60}, {"proposal": "B", "score": 65}]}')
    assert {k: v.score for k, v in reply_reading.parse_critique_json(text, ["A", "B"]).items()} == {"A": 70, "B": None}


@pytest.mark.parametrize("text", ["I can't do that.", "", "{}", '{"vote": "AGREE"}', "[1, 2]", '{"reviews": "none"}'])
def test_critique_json_none_when_not_a_document(text):
    assert reply_reading.parse_critique_json(text, ["A"]) is None


@pytest.mark.parametrize("text, expected", [
    ('{"vote": "AGREE", "reasons": ["r"], "concerns": [], "confidence": 0.9}', reply_format.ParsedVote("AGREE", ("r",), (), 0.9)),
    ('<think>hm</think>\n```json\n{"vote": "disagree", "model": "x"}\n```', reply_format.ParsedVote("DISAGREE")),
    ('{"vote": "AGREE", "confidence": 85}', reply_format.ParsedVote("AGREE")),
    ('{"vote": "AGREE", "confidence": 1}', reply_format.ParsedVote("AGREE", confidence=1.0)),
    ('{"vote": "ABSTAIN"}', None), ("I agree.", None), ('{"reasons": []}', None),
])
def test_vote_json(text, expected):
    assert reply_reading.parse_vote_json(text) == expected


@pytest.mark.parametrize("shape", [
    "### Proposal {label}\nScore: {score}\nStrengths:\n- ok\n",
    "Proposal {label}\nScore: {score}\n",
    "**Proposal {label}**: {score}/100 good\n",
])
def test_labels_past_z_are_read_after_the_word_proposal(shape):
    labels = [chr(ord("A") + i) for i in range(26)] + ["AA", "AB"]
    text = "\n".join(shape.format(label=label, score=50 + i) for i, label in enumerate(labels))
    parsed = reply_reading.parse_critiques(text, labels)
    assert {label: parsed[label].score for label in ("A", "Z", "AA", "AB")} == {"A": 50, "Z": 75, "AA": 76, "AB": 77}
