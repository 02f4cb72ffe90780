"""Two sessions side by side: their rounds aligned by number, and the first round where they differ.

``compare_sessions(a, b, prices)`` takes two folded ``SessionState``s and returns a ``Comparison``:
each session's setup, outcome, tokens and cost; the settings that differ; and for every round number
either session has, what each session did in it (the participants' texts, the critique score
matrix, the synthesis with a line diff against the other's, the votes, the round's outcome).

Rounds are aligned by number. A number only one session has is ``missing`` in the other; a number
whose rounds are of different kinds (the sessions took different paths) is compared no further
than that. Otherwise a round *differs* in each of these aspects, checked exactly (no whitespace or
case is forgiven):

- ``content``: a participant's completed text of the round (its last completed attempt; in the
  draft round, a human's draft too) is not the same, or is there in one session only;
- ``scores``: a cell of the critique score matrix (reviewer x proposal author) is not the same
  (a review without a readable score, and no review at all, are both no score);
- ``votes``: a voter's choice (AGREE, DISAGREE, ABSTAIN) is not the same, or is there in one only;
- ``outcome``: the round's status (completed, degraded...) or its score (a convergence round's
  share of AGREE) is not the same.

The first difference is the first round number with any of them. The setup (goal, participants,
settings) and the session's ending are shown side by side but are not round differences: two
sessions with another seed differ where their rounds do. So comparing a fork with its parent,
whose rounds up to the fork are copies, finds the first round the fork changed.

Everything is ordered so that equal inputs give equal comparisons: rounds by number, participants,
reviewers, voters and score columns by name.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from forge_actors.core.events import RoundKind, TokenUsage, VoteChoice
from forge_actors.core.pricing import Price
from forge_actors.core.state import SessionState
from forge_actors.core.usage import usage_report

SCHEMA = "forge_actors.comparison/1"
Aspect = Literal["missing", "kind", "content", "scores", "votes", "outcome"]
#: The order aspects are checked and listed in.
ASPECTS: tuple[Aspect, ...] = ("missing", "kind", "content", "scores", "votes", "outcome")
#: Lines of context around each change of a synthesis diff.
DIFF_CONTEXT = 2
#: Texts longer than this many lines are diffed as one replaced block (after the lines both share at their
#: start and end), without matching lines inside: difflib's matching grows faster than the square of the
#: lines on some texts (lines drawn from ~150 values: 5,000 take 0.06 s, 10,000 0.3 s; 1 MB of two-letter
#: lines 199 s), and a reply is a model's output, written by anyone. No synthesis comes near 5,000 lines.
DIFF_MATCH_LINES = 5_000


class ParticipantLine(msgspec.Struct, frozen=True):
    name: str
    kind: str
    provider: str
    model: str


class SessionSide(msgspec.Struct, frozen=True):
    """One session's setup and ending, as the comparison shows it."""

    session_id: str
    title: str
    goal: str
    constraints: tuple[str, ...]
    status: str
    reason: str
    final_score: float | None
    rounds: int
    participants: tuple[ParticipantLine, ...]
    tokens: TokenUsage
    #: Estimated US dollars; None when a participant's price is unknown.
    cost: float | None


class SettingDifference(msgspec.Struct, frozen=True):
    name: str
    a: Any
    b: Any


class RoundSide(msgspec.Struct, frozen=True):
    """One session's round of that number."""

    kind: RoundKind
    iteration: int
    status: str
    reason: str
    #: Convergence rounds: the share of AGREE among the counted votes.
    score: float | None
    participants: tuple[str, ...]
    tokens: TokenUsage
    cost: float | None


class TextPair(msgspec.Struct, frozen=True):
    """A participant's text of the round in each session (None: none there)."""

    participant: str
    a: str | None
    b: str | None

    @property
    def same(self) -> bool:
        return self.a == self.b


class ScoreRow(msgspec.Struct, frozen=True):
    """One reviewer's scores, one per column of the matrix (None: no score)."""

    reviewer: str
    a: tuple[int | None, ...]
    b: tuple[int | None, ...]


class ScoreMatrix(msgspec.Struct, frozen=True):
    #: The columns: the proposals' authors, sorted, the same for both sessions.
    proposals: tuple[str, ...]
    rows: tuple[ScoreRow, ...]
    #: Mean score of each column's proposal (None: not scored).
    means_a: tuple[float | None, ...]
    means_b: tuple[float | None, ...]


class SynthesisPair(msgspec.Struct, frozen=True):
    """The round's synthesis in each session and a unified line diff from A's to B's."""

    author_a: str | None
    author_b: str | None
    a: str | None
    b: str | None
    #: ``difflib.unified_diff`` lines (empty when the texts are the same or one is missing).
    diff: tuple[str, ...]
    added: int
    removed: int


class VotePair(msgspec.Struct, frozen=True):
    voter: str
    a: VoteChoice | None
    b: VoteChoice | None


class RoundComparison(msgspec.Struct, frozen=True):
    round: int
    a: RoundSide | None
    b: RoundSide | None
    #: What differs in this round, in ASPECTS order; empty: the round is the same in both.
    differences: tuple[Aspect, ...]
    texts: tuple[TextPair, ...]
    #: When either side is a critique round.
    scores: ScoreMatrix | None
    #: When either side is a synthesis round.
    synthesis: SynthesisPair | None
    #: When either side is a convergence round.
    votes: tuple[VotePair, ...]


class FirstDifference(msgspec.Struct, frozen=True):
    round: int
    aspects: tuple[Aspect, ...]
    #: One line saying what differs, for people.
    summary: str


class Comparison(msgspec.Struct, frozen=True):
    schema: str
    a: SessionSide
    b: SessionSide
    settings: tuple[SettingDifference, ...]
    rounds: tuple[RoundComparison, ...]
    #: None: every round is the same in both sessions.
    first_difference: FirstDifference | None


def compare_sessions(a: SessionState, b: SessionState, prices: Mapping[str, Price] | None = None) -> Comparison:
    """The comparison of session ``a`` with session ``b`` (see the module's docstring)."""
    usage_a, usage_b = _round_usage(a, prices), _round_usage(b, prices)
    numbers = sorted({r.round for r in a.rounds} | {r.round for r in b.rounds})
    rounds = tuple(_compare_round(a, b, number, usage_a, usage_b) for number in numbers)
    first = next((r for r in rounds if r.differences), None)
    return Comparison(
        SCHEMA, _side(a, prices), _side(b, prices), _setting_differences(a, b), rounds,
        FirstDifference(first.round, first.differences, describe(first)) if first else None,
    )


# -- sessions ----------------------------------------------------------------------------------------


def _side(state: SessionState, prices: Mapping[str, Price] | None) -> SessionSide:
    report = usage_report(state, prices)
    participants = tuple(ParticipantLine(p.name, p.kind, p.provider, p.model)
                         for p in sorted(state.participants.values(), key=lambda p: p.name))
    return SessionSide(state.session_id, state.title, state.goal, state.constraints, state.status, state.end_reason,
                       state.final_score, len(state.rounds), participants, report.total, report.total_cost)


def _setting_differences(a: SessionState, b: SessionState) -> tuple[SettingDifference, ...]:
    settings_a, settings_b = msgspec.to_builtins(a.settings), msgspec.to_builtins(b.settings)
    return tuple(SettingDifference(name, settings_a.get(name), settings_b.get(name))
                 for name in sorted(settings_a.keys() | settings_b.keys())
                 if settings_a.get(name) != settings_b.get(name))


def _round_usage(state: SessionState, prices: Mapping[str, Price] | None) -> dict[int, tuple[TokenUsage, float | None]]:
    return {r.round: (r.usage, r.cost) for r in usage_report(state, prices).rounds}


# -- rounds ------------------------------------------------------------------------------------------


def _compare_round(a: SessionState, b: SessionState, number: int,
                   usage_a: dict[int, tuple[TokenUsage, float | None]],
                   usage_b: dict[int, tuple[TokenUsage, float | None]]) -> RoundComparison:
    side_a, side_b = _round_side(a, number, usage_a), _round_side(b, number, usage_b)
    kinds = {side.kind for side in (side_a, side_b) if side is not None}
    texts_a, texts_b = _texts(a, number), _texts(b, number)
    texts = tuple(TextPair(name, texts_a.get(name), texts_b.get(name)) for name in sorted(texts_a.keys() | texts_b.keys()))
    scores = _score_matrix(a, b, number) if "critique" in kinds else None
    synthesis = _synthesis_pair(a, b, number) if "synthesis" in kinds else None
    votes = _vote_pairs(a, b, number) if "convergence" in kinds else ()
    return RoundComparison(number, side_a, side_b, _differences(side_a, side_b, texts, scores, votes),
                           texts, scores, synthesis, votes)


def _round_side(state: SessionState, number: int, usage: dict[int, tuple[TokenUsage, float | None]]) -> RoundSide | None:
    round_ = state.round_state(number)
    if round_ is None:
        return None
    tokens, cost = usage.get(number, (TokenUsage(), 0.0))
    return RoundSide(round_.kind, round_.iteration, round_.status, round_.reason, round_.score,
                     tuple(sorted(round_.participants)), tokens, cost)


def _texts(state: SessionState, number: int) -> dict[str, str]:
    """Each participant's completed text of the round; in the session's first draft round, the humans'
    drafts too (they are recorded apart from the AI contributions, and only while drafts are open)."""
    texts = {name: c.content for name, c in state.completed_in(number).items()}
    first_draft = next((r.round for r in state.rounds if r.kind == "draft"), None)
    if number == first_draft:
        texts |= {name: text for name, text in state.drafts.items()
                  if name in state.participants and state.participants[name].kind == "human"}
    return texts


def _scores(state: SessionState, number: int) -> dict[tuple[str, str], int | None]:
    """(reviewer, proposal author) -> score, the last review of each pair in the round."""
    return {(c.critic, c.proposal_author): c.score for c in state.critiques_in(number)}


def _score_matrix(a: SessionState, b: SessionState, number: int) -> ScoreMatrix:
    scores_a, scores_b = _scores(a, number), _scores(b, number)
    pairs = scores_a.keys() | scores_b.keys()
    proposals = tuple(sorted({author for _, author in pairs}))
    reviewers = sorted({reviewer for reviewer, _ in pairs})
    rows = tuple(ScoreRow(reviewer,
                          tuple(scores_a.get((reviewer, author)) for author in proposals),
                          tuple(scores_b.get((reviewer, author)) for author in proposals))
                 for reviewer in reviewers)
    means_a, means_b = a.mean_scores(number), b.mean_scores(number)
    return ScoreMatrix(proposals, rows, tuple(means_a.get(p) for p in proposals),
                       tuple(means_b.get(p) for p in proposals))


def _synthesis_pair(a: SessionState, b: SessionState, number: int) -> SynthesisPair:
    found_a = next((s for s in reversed(a.syntheses) if s.round == number), None)
    found_b = next((s for s in reversed(b.syntheses) if s.round == number), None)
    text_a = found_a.content if found_a else None
    text_b = found_b.content if found_b else None
    diff: tuple[str, ...] = ()
    if text_a is not None and text_b is not None and text_a != text_b:
        diff = text_diff(text_a, text_b, f"A {a.session_id} round {number}", f"B {b.session_id} round {number}")
    added, removed = diff_counts(diff)
    return SynthesisPair(found_a.author if found_a else None, found_b.author if found_b else None,
                         text_a, text_b, diff, added, removed)


def _vote_pairs(a: SessionState, b: SessionState, number: int) -> tuple[VotePair, ...]:
    votes_a, votes_b = a.votes_in(number), b.votes_in(number)
    return tuple(VotePair(voter, votes_a[voter].vote if voter in votes_a else None,
                          votes_b[voter].vote if voter in votes_b else None)
                 for voter in sorted(votes_a.keys() | votes_b.keys()))


def _differences(side_a: RoundSide | None, side_b: RoundSide | None, texts: tuple[TextPair, ...],
                 scores: ScoreMatrix | None, votes: tuple[VotePair, ...]) -> tuple[Aspect, ...]:
    if side_a is None or side_b is None:
        return ("missing",)
    if side_a.kind != side_b.kind:
        return ("kind",)
    found: list[Aspect] = []
    if any(not pair.same for pair in texts):
        found.append("content")
    if scores is not None and any(row.a != row.b for row in scores.rows):
        found.append("scores")
    if any(vote.a != vote.b for vote in votes):
        found.append("votes")
    if (side_a.status, side_a.score) != (side_b.status, side_b.score):
        found.append("outcome")
    return tuple(found)


# -- text diffs --------------------------------------------------------------------------------------


def text_diff(a: str, b: str, a_name: str = "A", b_name: str = "B") -> tuple[str, ...]:
    """A unified diff of two texts, line by line (``diff -u``'s form, without line ends): difflib's, or past
    ``DIFF_MATCH_LINES`` lines one hunk replacing whatever lies between their common start and end."""
    a_lines, b_lines = a.splitlines(), b.splitlines()
    if max(len(a_lines), len(b_lines)) <= DIFF_MATCH_LINES:
        return tuple(difflib.unified_diff(a_lines, b_lines, a_name, b_name, n=DIFF_CONTEXT, lineterm=""))
    return _one_hunk(a_lines, b_lines, a_name, b_name)


def _one_hunk(a: list[str], b: list[str], a_name: str, b_name: str) -> tuple[str, ...]:
    """The unified diff of ``a`` into ``b`` as one hunk: the lines between their common first and last lines,
    removed then added, with context. Linear in the lines; a true diff, if not always the shortest."""
    if a == b:
        return ()
    shortest = min(len(a), len(b))
    start = next((i for i in range(shortest) if a[i] != b[i]), shortest)
    end = next((i for i in range(shortest - start) if a[-1 - i] != b[-1 - i]), shortest - start)
    before = a[max(0, start - DIFF_CONTEXT):start]
    after = a[len(a) - end:len(a) - end + DIFF_CONTEXT]
    removed, added = a[start:len(a) - end], b[start:len(b) - end]
    first = start - len(before)
    header = (f"@@ -{_hunk_range(first, len(before) + len(removed) + len(after))} "
              f"+{_hunk_range(first, len(before) + len(added) + len(after))} @@")
    return (f"--- {a_name}", f"+++ {b_name}", header, *(" " + line for line in before),
            *("-" + line for line in removed), *("+" + line for line in added), *(" " + line for line in after))


def _hunk_range(start: int, length: int) -> str:
    """A hunk's line range as ``diff -u`` writes it (as difflib does): 1-based, the count left out when 1,
    and an empty range named by the line before it."""
    if length == 1:
        return str(start + 1)
    return f"{start if length == 0 else start + 1},{length}"


def diff_counts(diff: tuple[str, ...]) -> tuple[int, int]:
    """(lines added, lines removed) of a unified diff; its two header lines are not counted."""
    body = diff[2:]
    return (sum(1 for line in body if line.startswith("+")), sum(1 for line in body if line.startswith("-")))


# -- saying it ---------------------------------------------------------------------------------------


def _vote_name(vote: str | None) -> str:
    return vote or "no vote"


def _score_name(score: int | None) -> str:
    return "none" if score is None else str(score)


def _percent(score: float | None) -> str:
    return "n/a" if score is None else f"{score:.0%}"


def _some(items: list[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _whose(text: TextPair) -> str:
    return text.participant + (" only in B" if text.a is None else " only in A" if text.b is None else "")


def describe(round_: RoundComparison) -> str:
    """One line saying how the round differs ("" when it does not)."""
    a, b = round_.a, round_.b
    if "missing" in round_.differences:
        only, side = ("A", a) if b is None else ("B", b)
        return f"round {round_.round}: only {only} has it ({side.kind if side else '?'})"
    if "kind" in round_.differences and a is not None and b is not None:
        return f"round {round_.round}: A ran a {a.kind} round, B a {b.kind} round"
    kind = a.kind if a is not None else ""
    parts = []
    if "content" in round_.differences:
        parts.append("texts differ (" + _some([_whose(t) for t in round_.texts if not t.same]) + ")")
    if "scores" in round_.differences and round_.scores is not None:
        matrix = round_.scores
        cells = [f"{row.reviewer} on {author} {_score_name(x)} → {_score_name(y)}"
                 for row in matrix.rows for author, x, y in zip(matrix.proposals, row.a, row.b, strict=True) if x != y]
        parts.append("scores differ (" + _some(cells) + ")")
    if "votes" in round_.differences:
        changed = [f"{v.voter} {_vote_name(v.a)} → {_vote_name(v.b)}" for v in round_.votes if v.a != v.b]
        parts.append("votes differ (" + _some(changed) + ")")
    if "outcome" in round_.differences and a is not None and b is not None:
        parts.append(f"outcome differs ({a.status} {_percent(a.score)} → {b.status} {_percent(b.score)})"
                     if a.kind == "convergence" else f"outcome differs ({a.status} → {b.status})")
    return f"round {round_.round} ({kind}): " + "; ".join(parts) if parts else ""
