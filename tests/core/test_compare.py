"""Two folded sessions compared: rounds aligned, the first difference found, the Markdown of it."""

from __future__ import annotations

import difflib
import json
import re

import msgspec
from msgspec.structs import replace

from forge_actors.core.compare import DIFF_MATCH_LINES, compare_sessions, diff_counts, text_diff
from forge_actors.core.events import (
    ContributionCompleted,
    CritiqueRecorded,
    Event,
    HumanDraftAdded,
    ParticipantInfo,
    RoundCompleted,
    RoundKind,
    RoundStarted,
    SessionCreated,
    SessionEnded,
    SessionSettings,
    TokenUsage,
    VoteRecorded,
)
from forge_actors.core.export import comparison_markdown, to_json
from forge_actors.core.pricing import Price
from forge_actors.core.state import SessionState, rebuild

NAMES = ("alice", "bob", "carol")
SYNTHESIS = "# Plan\n\nUse REST.\nKeep it small.\nShip on Friday.\n"
#: (critic, proposal author) -> score of the critique round.
SCORES = {("alice", "bob"): 7, ("alice", "carol"): 6, ("bob", "alice"): 8, ("bob", "carol"): 5,
          ("carol", "alice"): 9, ("carol", "bob"): 7}
AGREE = {"alice": "AGREE", "bob": "AGREE", "carol": "AGREE"}


class Counter:
    def __init__(self) -> None:
        self.next = 0

    def id(self) -> str:
        self.next += 1
        return f"c{self.next}"


def _round(number: int, kind: RoundKind, texts: dict[str, str], ids: Counter, iteration: int = 1,
           score: float | None = None, status: str = "completed") -> list[Event]:
    events: list[Event] = [RoundStarted(number, kind, iteration, tuple(texts))]
    events += [ContributionCompleted(ids.id(), name, number, 1, text, "stop", TokenUsage(100, 10 * len(text)), 5.0)
               for name, text in texts.items()]
    events.append(RoundCompleted(number, kind, status, tuple(texts), (), score))  # type: ignore[arg-type]
    return events


def session(session_id: str = "s-a", *, names: tuple[str, ...] = NAMES, seed: int = 0,
            drafts: dict[str, str] | None = None, scores: dict[tuple[str, str], int | None] | None = None,
            synthesis: str = SYNTHESIS, votes: dict[str, str] | None = None, iterations: int = 1,
            human_draft: str | None = None) -> SessionState:
    """A whole session: draft, critique, then ``iterations`` x (synthesis, convergence)."""
    ids = Counter()
    participants = tuple(ParticipantInfo(n, provider=f"mock:{n}", model=n) for n in names)
    if human_draft is not None:
        participants += (ParticipantInfo("hugo", kind="human"),)
    events: list[Event] = [SessionCreated(session_id, "TODO API", "Design a TODO API", SessionSettings(seed=seed),
                                          participants)]
    drafts = drafts if drafts is not None else {n: f"{n}'s draft\n\nendpoints: /todos" for n in names}
    events += _round(1, "draft", drafts, ids)
    if human_draft is not None:
        events.insert(-1, HumanDraftAdded(1, "hugo", human_draft))
    scores = scores if scores is not None else {pair: s for pair, s in SCORES.items() if pair[0] in names}
    events += _round(2, "critique", {n: f"{n} reviews" for n in names}, ids)[:-1]
    events += [CritiqueRecorded(2, critic, "A", author, score) for (critic, author), score in scores.items()]
    events.append(RoundCompleted(2, "critique", "completed", names))
    votes = votes if votes is not None else {n: "AGREE" for n in names}
    number = 2
    for iteration in range(1, iterations + 1):
        events += _round(number + 1, "synthesis", {names[0]: synthesis}, ids, iteration)
        agree = sum(1 for v in votes.values() if v == "AGREE") / len(votes)
        events += _round(number + 2, "convergence", {n: f"VOTE: {votes[n]}" for n in votes}, ids, iteration,
                         agree)[:-1]
        events += [VoteRecorded(number + 2, voter, vote) for voter, vote in votes.items()]  # type: ignore[arg-type]
        events.append(RoundCompleted(number + 2, "convergence", "completed", tuple(votes), (), agree))
        number += 2
    events.append(SessionEnded("converged", "all agree", 1.0))
    return rebuild(events)


def test_identical_sessions_have_no_difference():
    comparison = compare_sessions(session("s-a"), session("s-b"))
    assert comparison.first_difference is None
    assert [r.round for r in comparison.rounds] == [1, 2, 3, 4]
    assert all(r.differences == () for r in comparison.rounds)
    assert comparison.settings == ()
    assert comparison.a.session_id == "s-a" and comparison.b.session_id == "s-b"
    synthesis = comparison.rounds[2].synthesis
    assert synthesis is not None and synthesis.diff == () and synthesis.a == synthesis.b == SYNTHESIS
    assert "No round differs" in comparison_markdown(comparison)


def test_a_changed_score_is_the_first_difference_with_its_cell():
    scores = dict(SCORES)
    scores[("bob", "carol")] = 2
    comparison = compare_sessions(session(), session(scores=scores))
    first = comparison.first_difference
    assert first is not None and first.round == 2 and first.aspects == ("scores",)
    assert "bob on carol 5 → 2" in first.summary
    matrix = comparison.rounds[1].scores
    assert matrix is not None and matrix.proposals == ("alice", "bob", "carol")  # columns sorted, fixed
    assert [row.reviewer for row in matrix.rows] == ["alice", "bob", "carol"]
    bob = matrix.rows[1]
    assert bob.a == (8, None, 5) and bob.b == (8, None, 2)  # no self-review: no score
    assert matrix.means_a[2] == 5.5 and matrix.means_b[2] == 4.0
    assert "| bob | 8 | — | 5 → 2 |" in comparison_markdown(comparison)


def test_a_changed_vote_differs_in_votes_and_outcome():
    votes = dict(AGREE, carol="DISAGREE")
    comparison = compare_sessions(session(), session(votes=votes))
    first = comparison.first_difference
    assert first is not None and first.round == 4
    assert first.aspects == ("content", "votes", "outcome")  # the vote reply, the vote, the agreement
    assert "carol AGREE → DISAGREE" in first.summary and "100% → completed 67%" in first.summary
    assert [(v.voter, v.a, v.b) for v in comparison.rounds[3].votes] == [
        ("alice", "AGREE", "AGREE"), ("bob", "AGREE", "AGREE"), ("carol", "AGREE", "DISAGREE")]
    markdown = comparison_markdown(comparison)
    assert "| carol | AGREE | DISAGREE |" in markdown and "Agreement: 100% → 67%" in markdown


def test_different_round_counts_leave_the_extra_rounds_missing_in_one():
    comparison = compare_sessions(session(iterations=1), session("s-b", iterations=2))
    assert [r.round for r in comparison.rounds] == [1, 2, 3, 4, 5, 6]
    assert [r.differences for r in comparison.rounds] == [(), (), (), (), ("missing",), ("missing",)]
    extra = comparison.rounds[4]
    assert extra.a is None and extra.b is not None and extra.b.kind == "synthesis"
    assert comparison.first_difference is not None and comparison.first_difference.round == 5
    assert comparison.first_difference.summary == "round 5: only B has it (synthesis)"
    assert (comparison.a.rounds, comparison.b.rounds) == (4, 6)
    markdown = comparison_markdown(comparison)
    assert "## Round 5 — synthesis · only in B" in markdown and "### alice (only in B)" in markdown


def test_rounds_of_different_kinds_are_compared_no_further():
    b = session("s-b")
    rounds = list(b.rounds)
    rounds[3] = replace(rounds[3], kind="synthesis")
    comparison = compare_sessions(session(), replace(b, rounds=tuple(rounds)))
    assert comparison.rounds[3].differences == ("kind",)
    assert comparison.first_difference is not None
    assert comparison.first_difference.summary == "round 4: A ran a convergence round, B a synthesis round"
    assert "## Round 4 — convergence / synthesis · differs: kind" in comparison_markdown(comparison)


def test_a_synthesis_differs_with_a_readable_line_diff():
    other = SYNTHESIS.replace("Ship on Friday.", "Ship on Monday.\nWrite the docs.")
    comparison = compare_sessions(session(), session(synthesis=other))
    round_ = comparison.rounds[2]
    assert round_.differences == ("content",)
    synthesis = round_.synthesis
    assert synthesis is not None and (synthesis.author_a, synthesis.author_b) == ("alice", "alice")
    assert "-Ship on Friday." in synthesis.diff and "+Ship on Monday." in synthesis.diff
    assert "+Write the docs." in synthesis.diff and " Keep it small." in synthesis.diff  # context kept
    assert (synthesis.added, synthesis.removed) == (2, 1)
    markdown = comparison_markdown(comparison)
    assert "```diff\n--- A s-a round 3\n+++ B s-a round 3\n" in markdown
    assert "2 line(s) added, 1 removed from A to B" in markdown


def test_other_participants_and_settings_differ_from_the_first_draft():
    comparison = compare_sessions(session(seed=1), session(names=("alice", "bob", "dave"), seed=2))
    first = comparison.first_difference
    assert first is not None and first.round == 1 and first.aspects == ("content",)
    assert first.summary == "round 1 (draft): texts differ (carol only in A, dave only in B)"
    assert [(s.name, s.a, s.b) for s in comparison.settings] == [("seed", 1, 2)]
    texts = {t.participant: (t.a is None, t.b is None) for t in comparison.rounds[0].texts}
    assert texts == {"alice": (False, False), "bob": (False, False), "carol": (False, True), "dave": (True, False)}
    markdown = comparison_markdown(comparison)
    assert "**Settings that differ:** seed 1 → 2" in markdown
    assert "### alice (the same in both)" in markdown and "### dave (only in B)\n\ndave's draft" in markdown


def test_a_human_draft_counts_in_the_draft_round():
    comparison = compare_sessions(session(human_draft="Hugo's plan"), session(human_draft="Hugo's other plan"))
    draft = comparison.rounds[0]
    assert draft.differences == ("content",)
    assert [(t.participant, t.a, t.b) for t in draft.texts if not t.same] == [
        ("hugo", "Hugo's plan", "Hugo's other plan")]


def test_tokens_and_costs_per_session_and_round():
    prices = {n: Price(1.0, 2.0) for n in NAMES}
    comparison = compare_sessions(session(), session(synthesis=SYNTHESIS + "More.\n"), prices)
    assert comparison.a.tokens.output_tokens + 60 == comparison.b.tokens.output_tokens  # 6 characters more, x10
    assert comparison.a.cost is not None and comparison.b.cost is not None and comparison.b.cost > comparison.a.cost
    synthesis_round = comparison.rounds[2]
    assert synthesis_round.a is not None and synthesis_round.b is not None
    assert synthesis_round.a.tokens == TokenUsage(100, 10 * len(SYNTHESIS))
    b = session()
    unpriced = replace(b, participants={n: replace(p, provider="openai:gpt-9", model="gpt-9")
                                        for n, p in b.participants.items()})
    unknown = compare_sessions(session(), unpriced)
    assert unknown.a.cost == 0.0 and unknown.b.cost is None  # mock is free; an unknown model is unknown, not 0
    assert unknown.rounds[0].b is not None and unknown.rounds[0].b.cost is None
    assert "| est. cost | $0.0000 | unknown |" in comparison_markdown(unknown)


def test_equal_inputs_give_the_same_json_and_it_round_trips():
    a, b = session(), session(votes=dict(AGREE, bob="DISAGREE"))
    first, again = to_json(compare_sessions(a, b)), to_json(compare_sessions(a, b))
    assert first == again
    document = json.loads(first)
    assert document["schema"] == "forge_actors.comparison/1"
    assert document["first_difference"]["round"] == 4
    assert msgspec.json.decode(first.encode())["rounds"][1]["scores"]["proposals"] == ["alice", "bob", "carol"]


def test_text_diff_counts_ignore_its_headers():
    diff = text_diff("--x\nsame\n", "++y\nsame\n")
    assert diff[:2] == ("--- A", "+++ B") and diff_counts(diff) == (1, 1)
    assert text_diff("same", "same") == ()


def test_a_long_text_is_diffed_as_one_hunk_the_same_as_difflib_would():
    """Past DIFF_MATCH_LINES lines the diff does not match lines (difflib took 199 s on 1 MB of two-letter
    lines); for one changed region it is exactly difflib's."""
    lines = [f"line {i}" for i in range(DIFF_MATCH_LINES + 10)]
    for changed in ({5: "new"}, {0: "new"}, {len(lines) - 1: "new"}):
        other = [changed.get(i, line) for i, line in enumerate(lines)]
        expected = tuple(difflib.unified_diff(lines, other, "A", "B", n=2, lineterm=""))
        assert text_diff("\n".join(lines), "\n".join(other)) == expected
    for cut in (lines[:-3], lines[3:], lines[:50] + lines[60:]):  # lines removed at the end, start, middle
        expected = tuple(difflib.unified_diff(lines, cut, "A", "B", n=2, lineterm=""))
        assert text_diff("\n".join(lines), "\n".join(cut)) == expected
        assert text_diff("\n".join(cut), "\n".join(lines)) == tuple(
            difflib.unified_diff(cut, lines, "A", "B", n=2, lineterm=""))
    assert text_diff("\n".join(lines), "\n".join(lines)) == ()
    two_places = [{100: "x", 103: "y"}.get(i, line) for i, line in enumerate(lines)]
    diff = text_diff("\n".join(lines), "\n".join(two_places))
    assert diff_counts(diff) == (4, 4) and patched(lines, diff) == two_places  # one hunk, lines 101-104


def patched(lines: list[str], diff: tuple[str, ...]) -> list[str]:
    """``lines`` with a one-hunk unified diff applied."""
    start, length = (int(n) for n in re.match(r"@@ -(\d+),(\d+) ", diff[2]).groups())  # type: ignore[union-attr]
    kept = [line[1:] for line in diff[3:] if line[:1] in (" ", "+")]
    return lines[:start - 1] + kept + lines[start - 1 + length:]


def test_a_long_text_of_short_lines_is_replaced_whole_between_its_common_start_and_end():
    a = ["head", *(f"{97 + i % 26:c}a" for i in range(DIFF_MATCH_LINES)), "tail"]
    b = ["head", *(f"{97 + i % 23:c}b" for i in range(DIFF_MATCH_LINES)), "tail"]
    diff = text_diff("\n".join(a), "\n".join(b))
    assert diff[:4] == ("--- A", "+++ B", f"@@ -1,{len(a)} +1,{len(b)} @@", " head")
    assert diff[-1] == " tail" and diff_counts(diff) == (DIFF_MATCH_LINES, DIFF_MATCH_LINES)
    assert patched(a, diff) == b
