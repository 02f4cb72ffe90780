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

import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, TextIO

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from forge_actors.core.budget import report as budget_report
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
    SimilarityMeasured,
    ToolCalled,
    ToolResult,
    VoteRecorded,
)
from forge_actors.core.export import event_json
from forge_actors.core.pricing import Price, format_cost
from forge_actors.core.rounds import describe_agreement
from forge_actors.core.similarity import describe as describe_similarity
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
#: The rounds that wait for the session's seated humans (as the session actor does), and what for.
HUMAN_WAITS = {"draft": "draft", "convergence": "vote"}
#: How often the live area redraws by itself, so that a wait's time left counts down with no event coming.
IDLE_REDRAWS_PER_SECOND = 1


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


def next_steps(session_id: str, db: str | None = None, program: str = "forge") -> list[str]:
    """The commands that take a finished (or stopped) session further; ``db``: the log's
    ``--db`` when it is not the default one; ``program``: how to call forge (``.venv/bin/forge``
    when it is not on the PATH). ``forge serve`` is followed by its page's URL, on a line of its own."""
    flag = f" --db {db}" if db else ""
    return [
        f"{program} show {session_id}{flag}",
        f"{program} export {session_id}{flag} --format md -o {session_id}.md",
        f"{program} replay {session_id}{flag} --speed 4",
        f"{program} serve{flag}",
    ]


#: Said after ``forge serve`` in the next steps (a URL on a line of its own: never broken).
SERVE_URL_LINE = "then open http://127.0.0.1:8000/"


def command_lines(command: str, width: int, indent: str = "  ") -> list[str]:
    """``command`` as lines of at most ``width`` columns, broken between words with a shell
    continuation (`` \\``), so that it runs as printed when pasted; a word is never broken (one
    longer than the line stays whole)."""
    lines: list[str] = []
    line = indent
    for word in command.split(" "):
        candidate = f"{line}{word}" if line.strip() == "" else f"{line} {word}"
        if line.strip() and len(candidate) + 2 > width:  # room for " \\"
            lines.append(f"{line} \\")
            line = f"{indent}    {word}"
        else:
            line = candidate
    lines.append(line)
    return lines


def human_command(what: str, session_id: str, name: str, db: str | None = None, program: str = "forge") -> str:
    """How a seated human answers a wait: their draft, or their vote."""
    flag = f" --db {db}" if db else ""
    if what == "draft":
        return f'{program} draft {session_id} --author {name}{flag} "TEXT"'
    return f"{program} vote {session_id} --voter {name}{flag} agree|disagree --reason TEXT"


def duration(seconds: float) -> str:
    """``9m 12s``, ``45s``, ``1h 5m``: a wait as people say it (whole seconds, rounded up)."""
    total = max(0, int(-(-seconds // 1)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


class HumanWaits:
    """Which seated humans the round in progress waits for, and until when, as the events tell it.

    The session actor waits ``human_wait_seconds`` for the humans' drafts in a draft round and for
    their votes in each convergence round, from the round's start (or from a resume); the log records
    no event for the wait itself, so the view follows it from the round's events and its own clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        #: The round that waits (0: none), what for ("draft" or "vote"), and its deadline on ``clock``.
        self.round = 0
        self.what = ""
        self.deadline = 0.0

    def opened(self, state: SessionState, event: object) -> list[str]:
        """The humans a wait that ``event`` opens waits for (none: no wait opened)."""
        current = state.current_round
        if not isinstance(event, (RoundStarted, SessionResumed)) or current is None or current.status != "running":
            return []
        wait = state.settings.human_wait_seconds
        if current.kind not in HUMAN_WAITS or wait <= 0 or not self._humans(state):
            return []
        self.round, self.what, self.deadline = current.round, HUMAN_WAITS[current.kind], self.clock() + wait
        return self.pending(state)

    def pending(self, state: SessionState) -> list[str]:
        """The humans the wait still waits for: not yet answered, and the time not yet out."""
        current = state.current_round
        if not self.round or current is None or current.round != self.round or self.left() <= 0:
            return []
        answered = state.drafts if self.what == "draft" else state.votes_in(self.round)
        return [name for name in self._humans(state) if name not in answered]

    def closed(self, state: SessionState, event: object) -> list[str]:
        """When ``event`` ends the wait's round: the humans who did not answer in it."""
        if not isinstance(event, RoundCompleted) or event.round != self.round or not self.round:
            return []
        answered = state.drafts if self.what == "draft" else state.votes_in(self.round)
        self.round = 0
        return [name for name in self._humans(state) if name not in answered]

    def left(self) -> float:
        return self.deadline - self.clock()

    @staticmethod
    def _humans(state: SessionState) -> list[str]:
        return [name for name, info in state.participants.items() if info.kind == "human"]

    def waiting_line(self, name: str, state: SessionState) -> str:
        """"waiting up to 10m 00s for ada's vote in round 4; ada can vote from another terminal with"."""
        wait = duration(state.settings.human_wait_seconds)
        return f"waiting up to {wait} for {name}'s {self.what} in round {self.round}; from another terminal"

    def missed_line(self, name: str, round_number: int, state: SessionState) -> str:
        wait = duration(state.settings.human_wait_seconds)
        return f"no {self.what} from {name} in round {round_number} within {wait}: the round went on without it"


class _TimeLeft:
    """"waiting for ada's vote (9m 12s left)", worked out each time it is drawn, so that the live
    area, redrawn IDLE_REDRAWS_PER_SECOND times a second, counts down with no event coming."""

    def __init__(self, name: str, what: str, deadline: float, clock: Callable[[], float], timed: bool) -> None:
        self.name, self.what, self.deadline, self.clock, self.timed = name, what, deadline, clock, timed

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        seconds = self.deadline - self.clock()
        left = "" if not self.timed else f" ({duration(seconds)} left)" if seconds > 0 else " (no time left)"
        yield Text(f"waiting for {self.name}'s {self.what}{left}", style="bold yellow")


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


def similarity_line(event: SimilarityMeasured, threshold: float) -> str:
    """A measured similarity in one line: of two drafts, or of a synthesis to the previous one."""
    how = f"embeddings of {event.model}" if event.method == "embedding" else "lexical measure"
    if event.pair:
        return f"≈ the drafts of {' and '.join(event.pair)}: {describe_similarity(event.value)} ({how})"
    return (f"≈ the synthesis of round {event.round} is {describe_similarity(event.value)} to round "
            f"{event.compared_with_round}'s (threshold {threshold:.0%}, {how})")


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
                 prices: Mapping[str, Price] | None = None, *, compact: bool = False, db: str | None = None,
                 program: str = "forge", replaying: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.state = state or SessionState()
        self.prices = prices
        #: One paragraph per finished contribution in the scroll-back instead of its whole text.
        self.compact = compact
        #: The ``--db`` the commands it prints need (None: the default log), and how to call forge.
        self.db = db
        self.program = program
        #: A recording: its waits for humans are shown, without a time left (they passed long ago).
        self.replaying = replaying
        self.waits = HumanWaits(clock)
        self.texts: dict[str, str] = {}
        self.statuses: dict[str, str] = {}
        self._colours: dict[str, str] = {}
        self._last_draw = 0.0
        self._lock = threading.RLock()
        #: This round's participants whose panel shows what was read of their reply (``_read_back``).
        self._read: set[str] = set()

    def colour(self, name: str) -> str:
        if name not in self._colours:
            self._colours[name] = PALETTE[len(self._colours) % len(PALETTE)]
        return self._colours[name]

    def run(self, events: Iterable[RecordedEvent]) -> SessionState:
        # The live area is drawn after events (REDRAWS_PER_SECOND at most) and, by rich's refresh thread,
        # IDLE_REDRAWS_PER_SECOND times a second from the view as it is then: with no event coming (a wait
        # for a human, a stalled stream) it shows the latest events and counts the wait down. The view's
        # lock keeps that thread from drawing it halfway through an event.
        with Live(console=self.console, auto_refresh=True, refresh_per_second=IDLE_REDRAWS_PER_SECOND,
                  transient=True, get_renderable=self._locked_render) as live:
            for recorded in events:
                self.handle(recorded, live)
                now = time.monotonic()
                # Text streaming in is drawn REDRAWS_PER_SECOND times a second at most; anything else (a
                # round starting, a wait, a contribution done: a few per participant and round) at once.
                if now - self._last_draw >= 1 / REDRAWS_PER_SECOND or not isinstance(recorded.event, ContentDelta):
                    live.refresh()
                    self._last_draw = now
            live.refresh()
        return self.state

    def _locked_render(self) -> RenderableType:
        with self._lock:
            return self._render()

    # -- events -----------------------------------------------------------------------------------

    def handle(self, recorded: RecordedEvent, live: Live | None = None) -> None:
        """Fold one event into the view; what it finished goes to the scroll-back (printed outside
        the view's lock: a print waits for the live area, whose refresh may be waiting for the lock)."""
        with self._lock:
            finished = self._fold(recorded)
        say = live.console.print if live is not None else self.console.print
        for renderable in finished:
            say(renderable)

    def _fold(self, recorded: RecordedEvent) -> list[RenderableType]:
        """The view after ``recorded``; returns what goes to the scroll-back."""
        event = recorded.event
        self.state = apply(self.state, event)
        finished: list[RenderableType] = []
        say = finished.append
        if isinstance(event, RoundStarted):
            self.texts = {name: "" for name in event.participants}
            self.statuses = {name: "waiting" for name in event.participants}
            self._read = set()
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
            self._read_back(event.critic, f"{event.label} ({event.proposal_author}): "
                                          f"{'unscored' if event.score is None else event.score}")
        elif isinstance(event, VoteRecorded):
            say(self.vote(event))
            confidence = "" if event.confidence is None else f" ({event.confidence:.0%} sure)"
            self._read_back(event.voter, f"votes {event.vote}{confidence}", *event.concerns)
        elif isinstance(event, HumanDraftAdded):
            say(self._finished(event.author, f"draft by a human{self._round_label(event.round)}", event.content,
                               markdown=True))
        elif isinstance(event, ContributionFailed):
            self.statuses[event.participant] = f"{'retrying' if event.will_retry else 'failed'}: {event.error_kind}"
        elif isinstance(event, RoundCompleted):
            for name in self.waits.closed(self.state, event):
                say(Text(self.waits.missed_line(name, event.round, self.state), style="yellow"))
            say(self._round_summary(event))
        elif isinstance(event, SimilarityMeasured):
            say(Text(similarity_line(event, self.state.settings.similarity_threshold), style="dim"))
        elif isinstance(event, SessionInterrupted):
            say(Text(f"interrupted: {event.reason}", style="bold yellow"))
        elif isinstance(event, SessionResumed):
            again = len(event.abandoned)
            say(Text(f"resumed: {again} contribution(s) in flight when it stopped run again" if again
                     else "resumed", style="bold yellow"))
        elif isinstance(event, SessionEnded):
            self.texts, self.statuses = {}, {}
        for name in self.waits.opened(self.state, event):
            say(self._waiting(name))
        return finished

    def _read_back(self, participant: str, *lines: str) -> None:
        """A finished critique or vote's panel shows what the engine read in it, not the raw reply's last
        lines (often cut mid-JSON by the panel's height): the first read replaces the reply's text."""
        if participant not in self.texts:
            return  # a human's vote: no panel of its own
        if participant not in self._read:
            self._read.add(participant)
            self.texts[participant] = ""
        self.texts[participant] += "".join(f"{line}\n" for line in lines)

    # -- the scroll-back ----------------------------------------------------------------------------

    def _waiting(self, name: str) -> RenderableType:
        """The start of a wait for a human: who, for what, how long, and the command that answers it
        (on lines of its own, broken only between words)."""
        command = human_command(self.waits.what, self.state.session_id, name, self.db, self.program)
        lines = command_lines(command, self.console.size.width)
        return Group(Text.assemble(("▍", self.colour(name)), (name, f"bold {self.colour(name)}"),
                                   (f" · {self.waits.waiting_line(name, self.state)}:", "yellow")),
                     *(Text(line, no_wrap=True, overflow="ignore") for line in lines))

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
        # A human the round waits for: a panel across the screen, below the AI participants' panels.
        awaited = [name for name in self.waits.pending(self.state) if name not in names]
        width = self.console.size.width
        return Group(header, *self.panels(names), *(self._waiting_panel(name, width) for name in awaited))

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
        never cut), in a box of a fixed height so that the live area does not jump. A human the
        round waits for gets the wait instead: for what, the time left, and how to answer."""
        if name in self.waits.pending(self.state):
            return self._waiting_panel(name, width, lines + 2)
        text = Text(self.texts.get(name, "").rstrip("\n") or "…", overflow="fold")
        wrapped = text.wrap(self.console, max(1, width - 4))  # the borders and padding take 4 columns
        body = Text("\n").join(list(wrapped)[-lines:])
        status = Text(self.statuses.get(name, ""), overflow="ellipsis", no_wrap=True)
        return Panel(body, title=Text(name, style=f"bold {self.colour(name)}"), border_style=self.colour(name),
                     subtitle=status, height=lines + 2)

    def _waiting_panel(self, name: str, width: int, height: int | None = None) -> Panel:
        """"waiting for ada's vote (9m 12s left)", counting down, and the command that answers."""
        waits = self.waits
        command = human_command(waits.what, self.state.session_id, name, self.db, self.program)
        how = Text(command, style="dim")  # wrapped to the panel; the scroll-back has it to copy
        body = Group(_TimeLeft(name, waits.what, waits.deadline, waits.clock, timed=not self.replaying), how)
        return Panel(body, title=Text(name, style=f"bold {self.colour(name)}"), border_style=self.colour(name),
                     subtitle=Text("human", no_wrap=True), width=width, height=height)

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
        # Critics in the session's participant order (not the order their replies came in): the same
        # columns every run and in every view; drafts by mean score, ties in participant order.
        order = list(self.state.participants)
        critics = sorted({c.critic for c in critiques}, key=lambda n: order.index(n) if n in order else len(order))
        means = self.state.mean_scores(round_number)
        authors = sorted(sorted({c.proposal_author for c in critiques},
                                key=lambda n: order.index(n) if n in order else len(order)),
                         key=lambda a: -means.get(a, 0))
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
        spending = budget_report(state)
        if spending is not None and state.status != "budget_exhausted":  # that ending's reason says it already
            self.console.print(Text(f"budget: {spending.summary}"))
        if state.session_id:
            self.print_next_steps(db)

    def print_next_steps(self, db: str | None = None) -> None:
        """What to do next: each command on lines of its own, broken only between words (with a
        shell continuation), so that it runs as printed; the page's URL on a line of its own."""
        self.console.print(Text("next:", style="bold"))
        width = self.console.size.width
        for command in next_steps(self.state.session_id, db, self.program):
            for line in command_lines(command, width):
                self.console.print(Text(line), soft_wrap=True)
        self.console.print(Text(f"  {SERVE_URL_LINE}", style="dim"), soft_wrap=True)
        if self.program != "forge":  # called by its path: say how to put it on the PATH
            activate = f"source {os.path.dirname(self.program)}/activate"
            self.console.print(Text(f"  (`{activate}` puts forge on your PATH)", style="dim"))
