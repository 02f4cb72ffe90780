"""The terminal views of a deliberation: a live rich display, or one JSON event per line.

Both consume recorded events (from ``deliberate``, ``resume`` or ``replay``: the view
cannot tell a live session from a re-streamed one) and fold them with ``state.apply``
into the state they show, so what the screen says is what the log says.
"""

from __future__ import annotations

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
    PromptSent,
    RoundCompleted,
    RoundStarted,
    SessionEnded,
    SessionInterrupted,
    ToolCalled,
    ToolResult,
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

    def run(self, events: Iterable[RecordedEvent]) -> None:
        for recorded in events:
            self.out.write(event_json(recorded) + "\n")
            self.out.flush()


class LiveView:
    """A panel per participant streaming its text, the round in progress, tables after rounds."""

    def __init__(self, console: Console, state: SessionState | None = None,
                 prices: Mapping[str, Price] | None = None) -> None:
        self.console = console
        self.state = state or SessionState()
        self.prices = prices
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
        elif isinstance(event, ContributionFailed):
            self.statuses[event.participant] = f"{'retrying' if event.will_retry else 'failed'}: {event.error_kind}"
        elif isinstance(event, RoundCompleted):
            say(self._round_summary(event))
        elif isinstance(event, SessionInterrupted):
            say(Text(f"interrupted: {event.reason}", style="bold yellow"))
        elif isinstance(event, SessionEnded):
            self.texts, self.statuses = {}, {}

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
        grid = Table.grid(expand=True, padding=(0, 1))
        names = list(self.texts) or list(current.participants)
        for _ in names:
            grid.add_column(ratio=1)
        grid.add_row(*[self._panel(name) for name in names])
        return Group(header, grid)

    def _panel(self, name: str) -> Panel:
        lines = self.texts.get(name, "").rstrip("\n").splitlines()[-TAIL_LINES:]
        body = Text("\n".join(lines) or "…", overflow="ellipsis", no_wrap=True)
        return Panel(body, title=Text(name, style=f"bold {self.colour(name)}"), border_style=self.colour(name),
                     subtitle=self.statuses.get(name, ""), height=TAIL_LINES + 2)

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
        table = Table(title="critique scores (a row per draft, a column per critic)", title_justify="left")
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

    def print_outcome(self) -> None:
        """The final synthesis as Markdown, then the outcome, tokens and estimated cost per participant."""
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
