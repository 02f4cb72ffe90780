"""Exports of a session — Markdown, JSON, YAML — made from its rebuilt state only.

JSON and YAML carry the same document, ``ExportDocument``, whose shape is the stable,
versioned schema ``forge_actors.session/1`` (documented in the README; a test pins
it). A change that would break readers gets a new schema version.

``event_json`` is the one wire form of a recorded event, used by every surface that
streams events (``forge run --json``, the server's SSE and WebSocket): the event's own
fields plus ``position``, ``version`` and ``recorded_at``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

import msgspec
import yaml

from eventstore import RecordedEvent
from forge_actors.core.budget import BudgetReport
from forge_actors.core.budget import report as budget_report
from forge_actors.core.compare import Comparison, RoundComparison, ScoreMatrix, SessionSide, SynthesisPair
from forge_actors.core.events import Persona, SessionSettings
from forge_actors.core.pricing import Price, format_cost
from forge_actors.core.state import SessionState
from forge_actors.core.usage import usage_report

SCHEMA = "forge_actors.session/1"
ExportFormat = Literal["md", "json", "yaml"]
FORMATS: tuple[str, ...] = ("md", "json", "yaml")
COST_NOTE = "estimated from list prices per million tokens; unknown models are null, never 0"


class ExportParticipant(msgspec.Struct, frozen=True):
    name: str
    kind: str
    provider: str
    model: str
    persona: Persona | None
    #: The tools it could call, and how (native, text or off).
    tools: tuple[str, ...] = ()
    tool_mode: str = "off"


class ExportCritique(msgspec.Struct, frozen=True):
    critic: str
    label: str
    proposal_author: str
    score: int | None
    strengths: tuple[str, ...]
    weaknesses: tuple[str, ...]
    suggestions: tuple[str, ...]


class ExportVote(msgspec.Struct, frozen=True):
    voter: str
    vote: str
    reasons: tuple[str, ...]
    concerns: tuple[str, ...]
    by_human: bool
    #: 0-1 when the voter gave one (structured replies); null otherwise.
    confidence: float | None


class ExportToolUse(msgspec.Struct, frozen=True):
    """A tool call behind a participant's text in a round, and what it answered."""

    participant: str
    tool: str
    arguments: dict[str, Any]
    output: str | None
    truncated: bool
    error: str | None


class ExportRound(msgspec.Struct, frozen=True):
    round: int
    kind: str
    iteration: int
    status: str
    participants: tuple[str, ...]
    succeeded: tuple[str, ...]
    failed: tuple[str, ...]
    reason: str
    #: Convergence rounds: AGREE / (AGREE + DISAGREE); null when no vote counted.
    score: float | None
    #: Each participant's completed text in this round (draft, critique, synthesis or vote reply).
    texts: dict[str, str]
    critiques: tuple[ExportCritique, ...]
    votes: tuple[ExportVote, ...]
    #: The tool calls behind the texts (each participant's answer of the round), in order.
    evidence: tuple[ExportToolUse, ...] = ()


class ExportSynthesis(msgspec.Struct, frozen=True):
    author: str
    round: int
    iteration: int
    content: str


class ExportUsage(msgspec.Struct, frozen=True):
    participant: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None


class ExportTotals(msgspec.Struct, frozen=True):
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    cost_note: str = COST_NOTE


class ExportLineage(msgspec.Struct, frozen=True):
    """Where a fork came from: its parent session, the round it was forked after, the parent's
    version and log position at that point."""

    parent_id: str
    round: int
    parent_version: int
    parent_position: int


class ExportDocument(msgspec.Struct, frozen=True):
    schema: str
    session_id: str
    title: str
    goal: str
    constraints: tuple[str, ...]
    #: The session's settings as recorded, with ``max_iterations`` first (``max_rounds`` is its old name).
    settings: dict[str, Any]
    status: str
    reason: str
    final_score: float | None
    participants: tuple[ExportParticipant, ...]
    #: The latest draft of each author, AI or human.
    drafts: dict[str, str]
    rounds: tuple[ExportRound, ...]
    synthesis: ExportSynthesis | None
    usage: tuple[ExportUsage, ...]
    totals: ExportTotals
    #: The spending budget and what was spent against it (None: the session had none).
    budget: BudgetReport | None = None
    #: The session it was forked from (``Forge.fork``); null for a session of its own.
    forked_from: ExportLineage | None = None


def export_document(state: SessionState, prices: Mapping[str, Price] | None = None) -> ExportDocument:
    """The document of a session. Everything is listed in participant order, never in the order
    replies happened to arrive, so that equal sessions export byte for byte the same."""
    report = usage_report(state, prices)
    order = {name: index for index, name in enumerate(state.participants)}

    def rank(name: str) -> tuple[int, str]:
        return (order.get(name, len(order)), name)

    rounds = tuple(
        ExportRound(
            r.round, r.kind, r.iteration, r.status, r.participants, r.succeeded, r.failed, r.reason, r.score,
            {name: c.content for name, c in sorted(state.completed_in(r.round).items(), key=lambda kv: rank(kv[0]))},
            tuple(ExportCritique(c.critic, c.label, c.proposal_author, c.score, c.strengths, c.weaknesses,
                                 c.suggestions)
                  for c in sorted(state.critiques_in(r.round), key=lambda c: (rank(c.critic), c.label))),
            tuple(ExportVote(v.voter, v.vote, v.reasons, v.concerns, v.by_human, v.confidence)
                  for v in sorted(state.votes_in(r.round).values(), key=lambda v: rank(v.voter))),
            tuple(ExportToolUse(name, use.tool, use.arguments, use.output, use.truncated, use.error)
                  for name, c in sorted(state.completed_in(r.round).items(), key=lambda kv: rank(kv[0]))
                  for use in c.tool_uses),
        )
        for r in state.rounds
    )
    synthesis = state.synthesis
    return ExportDocument(
        SCHEMA, state.session_id, state.title, state.goal, state.constraints, settings_document(state.settings), state.status,
        state.end_reason, state.final_score,
        tuple(ExportParticipant(p.name, p.kind, p.provider, p.model, p.persona, p.tools, p.tool_mode)
              for p in state.participants.values()),
        dict(sorted(state.drafts.items())), rounds,
        ExportSynthesis(synthesis.author, synthesis.round, synthesis.iteration, synthesis.content) if synthesis else None,
        tuple(ExportUsage(u.participant, u.provider, u.model, u.usage.input_tokens, u.usage.output_tokens, u.cost)
              for u in report.participants),
        ExportTotals(report.total.input_tokens, report.total.output_tokens, report.total_cost),
        budget_report(state),
        ExportLineage(*msgspec.structs.astuple(state.forked_from)) if state.forked_from is not None else None,
    )


def settings_document(settings: SessionSettings) -> dict[str, Any]:
    """The settings as exports show them: ``max_iterations`` first, then every field as recorded."""
    return {"max_iterations": settings.max_rounds, **msgspec.to_builtins(settings)}


def to_json(document: msgspec.Struct) -> str:
    """An export document (or a comparison, ``core.compare``) as indented JSON."""
    return msgspec.json.format(msgspec.json.encode(document).decode(), indent=2) + "\n"


def to_yaml(document: ExportDocument) -> str:
    return yaml.safe_dump(msgspec.to_builtins(document), sort_keys=False, allow_unicode=True, width=100)


# -- markdown ----------------------------------------------------------------------------------------


def _nest(text: str, levels: int = 2) -> str:
    """Headings inside a participant's text, pushed down so they nest under the export's own."""
    return re.sub(r"^(#{1,6})(?=\s)", lambda m: "#" * min(6, len(m.group(1)) + levels), text.strip(), flags=re.M)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _percent(score: float | None) -> str:
    return "n/a" if score is None else f"{score:.0%}"


def _persona(persona: Persona | None) -> str:
    if persona is None:
        return ""
    parts = [persona.name, ", ".join(persona.traits), persona.tone, persona.approach, ", ".join(persona.specialties)]
    return "; ".join(p for p in parts if p)


def to_markdown(document: ExportDocument) -> str:
    d = document
    lines = [f"# {d.title}", "", f"**Goal:** {d.goal}", ""]
    if d.constraints:
        lines += ["**Constraints:**", *[f"- {c}" for c in d.constraints], ""]
    outcome = f"**Outcome:** {d.status}"
    if d.reason:
        outcome += f" — {d.reason}"
    lines += [outcome, "", f"Session `{d.session_id}` · at most {d.settings['max_iterations']} iteration(s) · "
              f"threshold {d.settings['convergence_threshold']:.0%} · seed {d.settings['seed']}", ""]
    if d.budget is not None:
        lines += [f"**Budget:** {d.budget.summary}", ""]
    if d.forked_from is not None:
        lines += [f"Forked from session `{d.forked_from.parent_id}` after its round {d.forked_from.round}.", ""]
    lines += ["## Participants", ""]
    lines += _table(["name", "kind", "provider", "model", "persona"],
                    [[p.name, p.kind, p.provider or "—", p.model or "—", _persona(p.persona) or "—"]
                     for p in d.participants])
    humans = {p.name for p in d.participants if p.kind == "human"}
    human_drafts = {author: text for author, text in d.drafts.items() if author in humans}
    if human_drafts:
        lines += ["## Human drafts", ""]
        for author, text in human_drafts.items():
            lines += [f"### {author}", "", _nest(text), ""]
    for r in d.rounds:
        lines += _round_markdown(r)
    lines += ["## Usage", ""]
    rows = [[u.participant, u.model, u.input_tokens, u.output_tokens, format_cost(u.cost_usd)] for u in d.usage]
    rows.append(["**total**", "", d.totals.input_tokens, d.totals.output_tokens, format_cost(d.totals.cost_usd)])
    lines += _table(["participant", "model", "input tokens", "output tokens", "est. cost"], rows)
    lines += [f"_Costs are {COST_NOTE}._", ""]
    return "\n".join(lines)


def _evidence_line(use: ExportToolUse) -> str:
    args = ", ".join(f"{key}={msgspec.json.encode(value).decode()}" for key, value in use.arguments.items())
    call = f"**{use.participant}** `{use.tool}({args})`".replace("\n", " ")
    if use.error:
        return f"{call} failed: {use.error.splitlines()[0] if use.error.strip() else 'error'}"
    first = next((line.strip() for line in (use.output or "").splitlines() if line.strip()), "")
    note = " (truncated)" if use.truncated else ""
    return f"{call} → {len(use.output or '')} chars{note}: {first[:120]}"


def _round_markdown(r: ExportRound) -> list[str]:
    title = f"## Round {r.round} — {r.kind}"
    if r.kind in ("synthesis", "convergence"):
        title += f" (iteration {r.iteration})"
    lines = [title, ""]
    if r.status != "completed":
        lines += [f"_{r.status}: {r.reason}_" if r.reason else f"_{r.status}_", ""]
    if r.kind in ("draft", "synthesis"):
        for name, text in r.texts.items():
            lines += [f"### {'Synthesis by ' if r.kind == 'synthesis' else ''}{name}", "", _nest(text), ""]
    elif r.kind == "critique":
        lines += _table(
            ["critic", "proposal", "author", "score", "strengths", "weaknesses", "suggestions"],
            [[c.critic, c.label, c.proposal_author, "unscored" if c.score is None else c.score,
              "; ".join(c.strengths), "; ".join(c.weaknesses), "; ".join(c.suggestions)] for c in r.critiques],
        )
        means: dict[str, list[int]] = {}
        for c in r.critiques:
            if c.score is not None:
                means.setdefault(c.proposal_author, []).append(c.score)
        if means:
            ranked = sorted(means.items(), key=lambda kv: -sum(kv[1]) / len(kv[1]))
            lines += ["Mean scores: " + ", ".join(f"{a} {sum(s) / len(s):.1f}" for a, s in ranked), ""]
    else:
        lines += [f"Agreement: **{_percent(r.score)}** of the counted votes", ""]
        lines += _table(["voter", "vote", "reasons", "concerns"],
                        [[v.voter + (" (human)" if v.by_human else ""), v.vote, "; ".join(v.reasons),
                          "; ".join(v.concerns)] for v in r.votes])
    if r.evidence:
        lines += ["### Evidence (tool calls)", ""]
        lines += [f"- {_evidence_line(use)}" for use in r.evidence]
        lines += [""]
    return lines


# -- a comparison of two sessions in markdown ---------------------------------------------------------


def comparison_markdown(comparison: Comparison) -> str:
    """Two sessions side by side (``core.compare``): their setup and endings, the settings that differ, the
    first difference, then every round: texts, score matrix (``A → B`` where they differ), synthesis diff, votes."""
    c = comparison
    lines = ["# Comparison of two sessions", ""]
    lines += _table(["", "A", "B"], [[label, f"`{a}`", f"`{b}`"] if label == "session" else [label, a, b]
                                     for label, a, b in comparison_rows(c)])
    if c.settings:
        lines += [f"**Settings that differ:** {settings_changed(c)}", ""]
    if c.first_difference is None:
        lines += ["**No round differs:** every round either session has is the same in both.", ""]
    else:
        lines += [f"**First difference:** {c.first_difference.summary}", ""]
    for r in c.rounds:
        lines += _compared_round_markdown(r)
    lines += [f"_Costs are {COST_NOTE}._", ""]
    return "\n".join(lines)


def _participant_names(side: SessionSide) -> str:
    return ", ".join(p.name + (f" ({p.provider})" if p.provider else f" ({p.kind})") for p in side.participants)


def _outcome(side: SessionSide) -> str:
    return side.status + (f" — {side.reason}" if side.reason else "")


_SIDE_ROWS: tuple[tuple[str, Callable[[SessionSide], object]], ...] = (
    ("session", lambda s: s.session_id),
    ("title", lambda s: s.title),
    ("goal", lambda s: s.goal),
    ("participants", _participant_names),
    ("outcome", _outcome),
    ("final score", lambda s: _percent(s.final_score)),
    ("rounds", lambda s: s.rounds),
    ("tokens in / out", lambda s: f"{s.tokens.input_tokens:,} / {s.tokens.output_tokens:,}"),
    ("est. cost", lambda s: format_cost(s.cost)),
)


def comparison_rows(comparison: Comparison) -> list[tuple[str, str, str]]:
    """The two sessions' setup and ending, one (label, A, B) row per line: the head of every view of a comparison."""
    return [(label, str(value(comparison.a)), str(value(comparison.b))) for label, value in _SIDE_ROWS]


def settings_changed(comparison: Comparison) -> str:
    """The settings that differ, in a line: ``seed 7 → 8, convergence_threshold 0.8 → 0.9``."""
    return ", ".join(f"{s.name} {_setting(s.a)} → {_setting(s.b)}" for s in comparison.settings)


def _setting(value: object) -> str:
    return "none" if value is None else str(value)


def _either(a: object, b: object) -> str:
    """One cell for two values: the value when they are the same, ``a → b`` when not."""
    shown_a, shown_b = ("—" if a is None else a), ("—" if b is None else b)
    return str(shown_a) if a == b else f"{shown_a} → {shown_b}"


def _fenced(info: str, lines: tuple[str, ...] | list[str]) -> list[str]:
    """A code block whose fence is longer than any run of backticks inside it."""
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + info, *lines, fence, ""]


def _compared_round_markdown(r: RoundComparison) -> list[str]:
    kinds = [side.kind for side in (r.a, r.b) if side is not None]
    kind = kinds[0] if len(set(kinds)) == 1 else " / ".join(kinds)
    if r.a is None or r.b is None:
        state = f"only in {'B' if r.a is None else 'A'}"
    else:
        state = "differs: " + ", ".join(r.differences) if r.differences else "same"
    lines = [f"## Round {r.round} — {kind} · {state}", ""]
    if r.a is not None and r.b is not None and r.a.kind != r.b.kind:
        lines += [f"A ran a {r.a.kind} round ({r.a.status}), B a {r.b.kind} round ({r.b.status}).", ""]
    elif r.a is not None and r.b is not None:
        if r.a.status != "completed" or r.b.status != "completed":
            lines += [f"Status: {_either(r.a.status, r.b.status)}"
                      + (f" (A: {r.a.reason}; B: {r.b.reason})" if r.a.reason or r.b.reason else ""), ""]
        lines += [f"Tokens: A {r.a.tokens.total_tokens:,} ({format_cost(r.a.cost)}) · "
                  f"B {r.b.tokens.total_tokens:,} ({format_cost(r.b.cost)})", ""]
    if kind == "draft" or (r.a is None or r.b is None):
        lines += _compared_texts(r)
    elif "content" in r.differences:
        lines += ["Texts that differ: " + ", ".join(t.participant for t in r.texts if not t.same), ""]
    if r.scores is not None and r.scores.rows:
        lines += _compared_scores(r.scores)
    if r.synthesis is not None and r.a is not None and r.b is not None:
        lines += _compared_synthesis(r.synthesis)
    if r.votes:
        lines += _table(["voter", "A", "B"], [[v.voter, v.a or "—", v.b or "—"] for v in r.votes])
        if r.a is not None and r.b is not None:
            lines += [f"Agreement: {_either(_percent(r.a.score), _percent(r.b.score))}", ""]
    return lines


def _compared_scores(m: ScoreMatrix) -> list[str]:
    rows: list[list[object]] = [[row.reviewer, *(_either(x, y) for x, y in zip(row.a, row.b, strict=True))]
                                for row in m.rows]
    rows.append(["**mean**", *(_either(_mean(x), _mean(y)) for x, y in zip(m.means_a, m.means_b, strict=True))])
    return ["Scores (reviewer × proposal author; `A → B` where they differ):", "",
            *_table(["reviewer", *m.proposals], rows)]


def _compared_synthesis(s: SynthesisPair) -> list[str]:
    if s.diff:
        return [f"Synthesis by {_either(s.author_a, s.author_b)}: {s.added} line(s) added, {s.removed} removed "
                "from A to B", "", *_fenced("diff", s.diff)]
    if s.a == s.b and s.a is not None:
        return [f"Synthesis by {_either(s.author_a, s.author_b)} (the same text in both)", "", _nest(s.a), ""]
    return [f"Synthesis by {_either(s.author_a, s.author_b)}", ""]


def _mean(value: float | None) -> str | None:
    return None if value is None else f"{value:.1f}"


def _compared_texts(r: RoundComparison) -> list[str]:
    lines: list[str] = []
    for text in r.texts:
        if text.same and text.a is not None:
            lines += [f"### {text.participant} (the same in both)", "", _nest(text.a), ""]
            continue
        for name, body in (("A", text.a), ("B", text.b)):
            if body is not None:
                only = text.a is None or text.b is None
                lines += [f"### {text.participant} ({'only in ' if only else ''}{name})", "", _nest(body), ""]
    return lines


def render(document: ExportDocument, fmt: str) -> str:
    if fmt == "md":
        return to_markdown(document)
    if fmt == "json":
        return to_json(document)
    if fmt == "yaml":
        return to_yaml(document)
    raise ValueError(f"unknown export format {fmt!r}; the formats are {', '.join(FORMATS)}")


# -- events on the wire --------------------------------------------------------------------------------


def event_json(recorded: RecordedEvent) -> str:
    """One recorded event as one JSON object: position, version, recorded_at, then the event's
    own fields (``type`` first). Built around the stored JSON text, which is already the event."""
    head = f'{{"position":{recorded.position},"version":{recorded.version},"recorded_at":{recorded.recorded_at},'
    return head + recorded.data[1:]
