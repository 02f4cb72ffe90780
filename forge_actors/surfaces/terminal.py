"""The terminal views of a deliberation: a live rich display, or one JSON event per line.

Both consume recorded events (from ``deliberate``, ``resume`` or ``replay``: the view
cannot tell a live session from a re-streamed one) and fold them with ``state.apply``
into the state they show, so what the screen says is what the log says.

The live view has two parts. The live area at the bottom shows the round in progress, a
panel per participant with the tail of its text (wrapped, never cut; panels stack when
the terminal is too narrow for them side by side). Everything that is finished goes to
the scroll-back above it, where it stays: each contribution (in full, or one paragraph
with ``compact``), tool results, each round's scores or votes, and at the end the final
synthesis, the usage and what to do next.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from forge_actors.core.events import (
    ContentDelta,
    ContributionCompleted,
    ContributionFailed,
    CritiqueRecorded,
    HumanDraftAdded,
    PromptSent,
    RoundCompleted,
    RoundStarted,
    SessionEnded,
    SessionInterrupted,
    SessionResumed,
    ToolCalled,
    ToolResult,
    VoteRecorded,
)
from forge_actors.core.export import event_json
from forge_actors.core.pricing import Price, format_cost
from forge_actors.core.rounds import describe_agreement
from forge_actors.core.state import SessionState, apply
from forge_actors.core.usage import usage_report

if TYPE_CHECKING:
    from forge_actors.engine import RecordedEvent

PALETTE = ("cyan", "yellow", "magenta", "green", "blue", "red", "bright_cyan", "bright_magenta")
TAIL_LINES = 10
REDRAWS_PER_SECOND = 15
#: The narrowest a participant's panel gets side by side with others; narrower, they stack.
MIN_PANEL_WIDTH = 36
#: The fewest lines of text a panel shows, however many panels share the screen.
MIN_TAIL_LINES = 3
#: How long a --compact summary of a contribution gets (characters).
SUMMARY_CHARS = 280
#: Rounds whose contributions go to the scroll-back as written (Markdown). A critique or a vote
#: goes there as the engine read it (CritiqueRecorded, VoteRecorded): the raw reply may be JSON.
MARKDOWN_ROUNDS = frozenset({"draft", "synthesis"})


def summary_of(text: str, limit: int = SUMMARY_CHARS) -> str:
    """One paragraph that stands for ``text``: its first paragraph that is more than a heading,
    on one line, cut at a word near ``limit`` characters; "…" says that more was left out."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    if not paragraphs:
        return ""
    body = [p for p in paragraphs if not all(line.lstrip().startswith("#") for line in p.splitlines())]
    chosen = (body or paragraphs)[0]
    flat = " ".join(line.strip().lstrip("#").strip() for line in chosen.splitlines() if line.strip())
    flat = re.sub(r"\s+", " ", flat)
    more = len(body or paragraphs) > 1 or len(flat) > limit  # headings alone are not "more"
    if len(flat) > limit:
        cut = flat[:limit]
        flat = cut.rsplit(" ", 1)[0] if " " in cut[limit // 2:] else cut
        flat = flat.rstrip(" ,;:.")
    return flat + (" …" if more else "")


def next_steps(session_id: str, db: str | None = None) -> list[str]:
    """The commands that take a finished (or stopped) session further; ``db``: the log's
    ``--db`` when it is not the default one."""
    flag = f" --db {db}" if db else ""
    return [
        f"forge show {session_id}{flag}",
        f"forge export {session_id}{flag} --format md -o {session_id}.md",
        f"forge replay {session_id}{flag} --speed 4",
        f"forge serve{flag}   (then open http://127.0.0.1:8000/)",
    ]


def tool_call_line(event: ToolCalled) -> str:
    """``read_file(path="README.md")``, at most one line of 100 characters."""
    args = ", ".join(f"{key}={value!r}" for key, value in event.arguments.items())
    line = f"{event.tool}({args})".replace("\n", " ")
    return line if len(line) <= 100 else line[:97] + "..."


def tool_result_line(event: ToolResult) -> str:
    """What a tool answered, in one line: its error, or its size and first line."""
    if event.error:
        return f"{event.tool} failed: {event.error.splitlines()[0][:100] if event.error.strip() else 'error'}"
    first = next((line.strip() for line in event.output.splitlines() if line.strip()), "")
    size = f"{len(event.output)} chars{', truncated' if event.truncated else ''}, {event.duration_ms:.0f} ms"
    return f"{event.tool} → {size}: {first[:80]}"


class JsonLinesView:
    """One JSON object per event on ``out`` (for pipes and ``jq``)."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        #: The log position of the last event written (0: none yet).
        self.last_position = 0

    def run(self, events: Iterable[RecordedEvent]) -> None:
        for recorded in events:
            self.out.write(event_json(recorded) + "\n")
            self.out.flush()
            self.last_position = recorded.position


class LiveView:
    """A panel per participant streaming its text, the round in progress, tables after rounds."""

    def __init__(self, console: Console, state: SessionState | None = None,
                 prices: Mapping[str, Price] | None = None, *, compact: bool = False) -> None:
        self.console = console
        self.state = state or SessionState()
        self.prices = prices
        #: One paragraph per finished contribution in the scroll-back instead of its whole text.
        self.compact = compact
        self.texts: dict[str, str] = {}
        self.statuses: dict[str, str] = {}
        self._colours: dict[str, str] = {}
        self._last_draw = 0.0

    def colour(self, name: str) -> str:
        if name not in self._colours:
            self._colours[name] = PALETTE[len(self._colours) % len(PALETTE)]
        return self._colours[name]

    def run(self, events: Iterable[RecordedEvent]) -> SessionState:
        with Live(self._render(), console=self.console, auto_refresh=False, transient=True) as live:
            for recorded in events:
                self.handle(recorded, live)
                now = time.monotonic()
                if now - self._last_draw >= 1 / REDRAWS_PER_SECOND:
                    live.update(self._render(), refresh=True)
                    self._last_draw = now
            live.update(self._render(), refresh=True)
        return self.state

    # -- events -----------------------------------------------------------------------------------

    def handle(self, recorded: RecordedEvent, live: Live | None = None) -> None:
        event = recorded.event
        self.state = apply(self.state, event)
        say = live.console.print if live is not None else self.console.print
        if isinstance(event, RoundStarted):
            self.texts = {name: "" for name in event.participants}
            self.statuses = {name: "waiting" for name in event.participants}
        elif isinstance(event, PromptSent):
            if event.purpose != "initial" and self.texts.get(event.participant):
                self.texts[event.participant] += f"\n[{event.purpose}]\n"
            self.statuses[event.participant] = "streaming" if event.purpose == "initial" else event.purpose
        elif isinstance(event, ContentDelta):
            self.texts[event.participant] = self.texts.get(event.participant, "") + event.text
        elif isinstance(event, ToolCalled):
            self.texts[event.participant] = self.texts.get(event.participant, "") + f"\n⚙ {tool_call_line(event)}\n"
            self.statuses[event.participant] = f"calling {event.tool}"
        elif isinstance(event, ToolResult):
            say(Text.assemble(("⚙ ", "dim"), (event.participant, self.colour(event.participant)),
                              f" · {tool_result_line(event)}", style="dim"))
            self.statuses[event.participant] = "streaming"
        elif isinstance(event, ContributionCompleted):
            self.statuses[event.participant] = f"done · {event.usage.output_tokens} tokens · {event.latency_ms:.0f} ms"
            if self._kind_of(event.round) in MARKDOWN_ROUNDS:
                say(self.contribution(event))
        elif isinstance(event, CritiqueRecorded):
            say(self.critique(event))
        elif isinstance(event, VoteRecorded):
            say(self.vote(event))
        elif isinstance(event, HumanDraftAdded):
            say(self._finished(event.author, f"draft by a human{self._round_label(event.round)}", event.content,
                               markdown=True))
        elif isinstance(event, ContributionFailed):
            self.statuses[event.participant] = f"{'retrying' if event.will_retry else 'failed'}: {event.error_kind}"
        elif isinstance(event, RoundCompleted):
            say(self._round_summary(event))
        elif isinstance(event, SessionInterrupted):
            say(Text(f"interrupted: {event.reason}", style="bold yellow"))
        elif isinstance(event, SessionResumed):
            again = len(event.abandoned)
            say(Text(f"resumed: {again} contribution(s) in flight when it stopped run again" if again
                     else "resumed", style="bold yellow"))
        elif isinstance(event, SessionEnded):
            self.texts, self.statuses = {}, {}

    # -- the scroll-back ----------------------------------------------------------------------------

    def _kind_of(self, round_number: int) -> str:
        round_ = self.state.round_state(round_number)
        return round_.kind if round_ is not None else ""

    def contribution(self, event: ContributionCompleted) -> RenderableType:
        """A finished draft or synthesis as it stays in the scroll-back: a header, then its text."""
        kind = self._kind_of(event.round)
        seconds = f"{event.latency_ms / 1000:.1f} s"
        detail = f"round {event.round} · {kind} · {event.usage.output_tokens} tokens · {seconds}"
        if event.attempt > 1:
            detail += f" · attempt {event.attempt}"
        return self._finished(event.participant, detail, event.content, markdown=kind in MARKDOWN_ROUNDS)

    @staticmethod
    def _round_label(number: int) -> str:
        return f" · round {number}" if number else " · before the first round"

    def _finished(self, author: str, detail: str, content: str, *, markdown: bool) -> RenderableType:
        colour = self.colour(author)
        header = Text.assemble(("▍", colour), (author, f"bold {colour}"), (f" · {detail}", "dim"))
        if self.compact:
            return Group(header, Text(summary_of(content) or "(empty)", overflow="fold"))
        body: RenderableType = Markdown(content) if markdown else Text(content.strip(), overflow="fold")
        return Group(header, body, Text(""))

    def critique(self, event: CritiqueRecorded) -> RenderableType:
        """One critic's review of one draft: its score, then (unless compact) what it said."""
        critic, author = event.critic, event.proposal_author
        score = "unscored" if event.score is None else f"{event.score}"
        line = Text.assemble(("▍", self.colour(critic)), (critic, f"bold {self.colour(critic)}"), " on ",
                             (author, self.colour(author)), f"'s draft ({event.label}): ", (score, "bold"),
                             (f" · round {event.round} · critique", "dim"))
        if self.compact:
            return line
        items = [("+", event.strengths, "green"), ("−", event.weaknesses, "red"), ("→", event.suggestions, "cyan")]
        return Group(line, *[Text.assemble((f"  {mark} ", style), point)
                             for mark, points, style in items for point in points])

    def vote(self, event: VoteRecorded) -> RenderableType:
        """One vote: the choice, its confidence, then (unless compact) its reasons; concerns always."""
        colour = self.colour(event.voter)
        choice_style = {"AGREE": "bold green", "DISAGREE": "bold red"}.get(event.vote, "bold")
        confidence = "" if event.confidence is None else f" ({event.confidence:.0%} sure)"
        who = " (human)" if event.by_human else ""
        line = Text.assemble(("▍", colour), (event.voter, f"bold {colour}"), f"{who} votes ",
                             (event.vote, choice_style), confidence, (f" · round {event.round} · convergence", "dim"))
        points = ([] if self.compact else [("  · ", reason) for reason in event.reasons])
        points += [("  concern: ", concern) for concern in event.concerns]
        return Group(line, *[Text.assemble((mark, "dim"), point) for mark, point in points])

    # -- rendering ----------------------------------------------------------------------------------

    def _render(self) -> RenderableType:
        current = self.state.current_round
        if current is None or current.status != "running":
            return Text(f"session {self.state.session_id or '…'} · {self.state.status}", style="dim")
        header = Text.assemble(
            (f"round {current.round} · {current.kind}", "bold"),
            (f" · iteration {current.iteration}" if current.kind in ("synthesis", "convergence") else "", "bold"),
            (f"   session {self.state.session_id}", "dim"),
        )
        names = list(self.texts) or list(current.participants)
        return Group(header, *self.panels(names))

    def layout(self, count: int) -> tuple[int, int]:
        """(panels per row, lines of text per panel) for ``count`` panels on this console: side by
        side while each gets MIN_PANEL_WIDTH columns, else in rows; fewer lines when they are many,
        so that the live area fits the screen."""
        width, height = self.console.size
        per_row = max(1, min(count, (width + 1) // (MIN_PANEL_WIDTH + 1)))
        rows = -(-count // per_row) if count else 1
        lines = (height - 3) // rows - 2  # a header line, a spare line; each panel's two borders
        return per_row, max(MIN_TAIL_LINES, min(TAIL_LINES, lines))

    def panels(self, names: list[str]) -> list[RenderableType]:
        per_row, lines = self.layout(len(names))
        width = self.console.size.width
        panel_width = max(MIN_PANEL_WIDTH // 2, (width - (per_row - 1)) // per_row)
        rows: list[RenderableType] = []
        for start in range(0, len(names), per_row):
            grid = Table.grid(expand=True, padding=(0, 1))
            chunk = names[start:start + per_row]
            for _ in range(per_row):
                grid.add_column(ratio=1)
            cells: list[RenderableType] = [self._panel(name, panel_width, lines) for name in chunk]
            grid.add_row(*cells, *[Text("") for _ in range(per_row - len(chunk))])
            rows.append(grid)
        return rows

    def _panel(self, name: str, width: int, lines: int) -> Panel:
        """The tail of the participant's text, wrapped to the panel (a long line is folded,
        never cut), in a box of a fixed height so that the live area does not jump."""
        text = Text(self.texts.get(name, "").rstrip("\n") or "…", overflow="fold")
        wrapped = text.wrap(self.console, max(1, width - 4))  # the borders and padding take 4 columns
        body = Text("\n").join(list(wrapped)[-lines:])
        status = Text(self.statuses.get(name, ""), overflow="ellipsis", no_wrap=True)
        return Panel(body, title=Text(name, style=f"bold {self.colour(name)}"), border_style=self.colour(name),
                     subtitle=status, height=lines + 2)

    def _round_summary(self, event: RoundCompleted) -> RenderableType:
        style = {"completed": "green", "degraded": "yellow"}.get(event.status, "red")
        parts: list[RenderableType] = [Rule(Text(f"round {event.round} · {event.kind} · {event.status}", style=style))]
        if event.reason and event.status != "completed":
            parts.append(Text(event.reason, style=style))
        if event.kind == "critique":
            parts.append(self.score_table(event.round))
        elif event.kind == "convergence":
            parts.append(self.vote_table(event.round, event.score))
        return Group(*parts)

    def score_table(self, round_number: int) -> Table:
        critiques = self.state.critiques_in(round_number)
        critics = list(dict.fromkeys(c.critic for c in critiques))
        means = self.state.mean_scores(round_number)
        authors = sorted({c.proposal_author for c in critiques}, key=lambda a: -means.get(a, 0))
        # The title above the table, not in it: a narrow table would wrap a long title.
        table = Table(title="critique scores", caption="a row per draft, a column per critic",
                      title_justify="left", caption_justify="left")
        table.add_column("draft by")
        for critic in critics:
            table.add_column(critic, justify="right")
        table.add_column("mean", justify="right", style="bold")
        for author in authors:
            cells = []
            for critic in critics:
                score = next((c.score for c in critiques if c.critic == critic and c.proposal_author == author), "")
                cells.append("–" if score is None else str(score))
            table.add_row(Text(author, style=self.colour(author)), *cells,
                          f"{means[author]:.1f}" if author in means else "–")
        return table

    def vote_table(self, round_number: int, score: float | None) -> RenderableType:
        agreement = describe_agreement(score)
        threshold = self.state.settings.convergence_threshold
        table = Table()
        table.add_column("voter")
        table.add_column("vote")
        table.add_column("concerns")
        votes = self.state.votes_in(round_number)
        for voter in [p for p in self.state.participants if p in votes]:
            vote = votes[voter]
            style = {"AGREE": "green", "DISAGREE": "red"}.get(vote.vote, "dim")
            table.add_row(Text(voter, style=self.colour(voter)), Text(vote.vote, style=style), "; ".join(vote.concerns))
        return Group(Text(f"votes: {agreement} (threshold {threshold:.0%})", style="bold"), table)

    def print_outcome(self, db: str | None = None) -> None:
        """The final synthesis as Markdown, then the outcome, tokens and estimated cost per participant,
        then what to do next (``db``: the ``--db`` to name, when the log is not the default one)."""
        state = self.state
        if state.synthesis is not None:
            self.console.print(Rule(f"final synthesis by {state.synthesis.author}"))
            self.console.print(Markdown(state.synthesis.content))
        report = usage_report(state, self.prices)
        table = Table(title="usage (costs are estimates)", title_justify="left")
        for column in ("participant", "model", "input tokens", "output tokens", "est. cost"):
            table.add_column(column, justify="right" if "tokens" in column or "cost" in column else "left")
        for row in report.participants:
            table.add_row(Text(row.participant, style=self.colour(row.participant)), row.model,
                          str(row.usage.input_tokens), str(row.usage.output_tokens), format_cost(row.cost))
        table.add_row("total", "", str(report.total.input_tokens), str(report.total.output_tokens),
                      format_cost(report.total_cost), style="bold")
        self.console.print(table)
        style = {"converged": "bold green", "failed": "bold red"}.get(state.status, "bold yellow")
        self.console.print(Text.assemble(("session ", "bold"), (state.session_id, "bold"), ": ",
                                         (state.status, style), f" — {state.end_reason}" if state.end_reason else ""))
        if state.session_id:
            self.print_next_steps(db)

    def print_next_steps(self, db: str | None = None) -> None:
        self.console.print(Text("next:", style="bold"))
        for command in next_steps(self.state.session_id, db):
            self.console.print(Text(f"  {command}"), soft_wrap=True)
