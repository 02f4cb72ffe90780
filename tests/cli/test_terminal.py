"""The live view: what stays in the scroll-back, and panels that stay readable at any width."""

from __future__ import annotations

import io

import msgspec
import pytest
from rich.console import Console

from forge_actors.core.events import ContentDelta, CritiqueRecorded, RoundCompleted, RoundStarted, VoteRecorded
from forge_actors.engine import Forge, RecordedEvent
from forge_actors.surfaces.cli import _noting_waits
from forge_actors.surfaces.terminal import (
    MIN_PANEL_WIDTH,
    LiveView,
    command_lines,
    duration,
    next_steps,
    summary_of,
)

FOUR = ["mock:alice", "mock:bob", "mock:carol", "mock:dave"]
LONG_GOAL = "Design a TODO app API " + "with a goal line long enough to need wrapping " * 4


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> list[RecordedEvent]:
    """One whole mock deliberation (four participants, seed 7), as its recorded events."""
    with Forge(str(tmp_path_factory.mktemp("term") / "forge.db")) as forge:
        session_id = forge.create_session(LONG_GOAL, FOUR, seed=7, max_rounds=2)
        return list(forge.deliberate(session_id))


def console(width: int, height: int = 40) -> Console:
    return Console(width=width, height=height, record=True, file=io.StringIO(), color_system=None)


def played(events: list[RecordedEvent], width: int, *, compact: bool = False, db: str | None = None) -> str:
    screen = console(width)
    view = LiveView(screen, compact=compact)
    view.run(events)
    view.print_outcome(db)
    return screen.export_text()


def mid_draft(events: list[RecordedEvent], width: int, height: int = 40) -> tuple[LiveView, str]:
    """The live area while the first round streams: every participant has some text."""
    screen = console(width, height)
    view = LiveView(screen)
    for recorded in events:
        view.handle(recorded)
        if isinstance(recorded.event, ContentDelta) and all(len(view.texts.get(n, "")) > 200 for n in view.texts):
            break
    screen.print(view._render())
    return view, screen.export_text()


def test_every_finished_contribution_stays_in_the_scroll_back_in_full(recorded):
    text = played(recorded, 80)
    assert text.count("· round 1 · draft ·") == 4  # each draft, with a header
    assert "· round 3 · synthesis ·" in text
    for line in ("Risks and mitigations", "Implementation notes"):
        assert text.count(line) >= 4  # the drafts' whole text, not a tail of it
    # Critiques and votes appear as the engine read them, one line per review and per vote.
    assert text.count("'s draft (A): ") + text.count("'s draft (B): ") + text.count("'s draft (C): ") == 12
    assert text.count(" votes AGREE") + text.count(" votes DISAGREE") + text.count(" votes ABSTAIN") >= 4
    assert "  + " in text and "  − " in text  # strengths and weaknesses, in full mode
    assert '{"reviews"' not in text and '"vote":' not in text  # never the raw JSON of a structured reply


def test_compact_keeps_one_paragraph_per_contribution(recorded):
    full, compact = played(recorded, 80), played(recorded, 80, compact=True)
    assert compact.count("· round 1 · draft ·") == 4
    assert len(compact.splitlines()) < len(full.splitlines()) // 2
    assert "  + " not in compact  # critiques: the score line only
    assert "final synthesis by" in compact  # the answer itself is still printed in full at the end


@pytest.mark.parametrize("width", [80, 200])
def test_nothing_is_cut_at_80_or_200_columns(recorded, width):
    text = played(recorded, width)
    assert max(len(line) for line in text.splitlines()) <= width
    # The long goal, quoted in every draft, wraps rather than being cut: all its words are there.
    drafts = text.split("final synthesis by")[0]
    assert drafts.count("enough") >= 4 * 4


def test_panels_sit_side_by_side_when_wide_and_stack_when_narrow(recorded):
    wide, wide_text = mid_draft(recorded, 200)
    assert wide.layout(4)[0] == 4
    top_borders = [line for line in wide_text.splitlines() if line.startswith("╭")]
    assert len(top_borders) == 1 and all(name in top_borders[0] for name in ("alice", "bob", "carol", "dave"))

    narrow, narrow_text = mid_draft(recorded, 80)
    per_row, _ = narrow.layout(4)
    assert per_row == 2 and 80 // per_row >= MIN_PANEL_WIDTH
    assert len([line for line in narrow_text.splitlines() if line.startswith("╭")]) == 2
    assert max(len(line) for line in narrow_text.splitlines()) <= 80

    tiny, tiny_text = mid_draft(recorded, 60, height=30)
    per_row, lines = tiny.layout(4)
    assert per_row == 1 and lines >= 3
    assert len([line for line in tiny_text.splitlines() if line.startswith("╭")]) == 4


def test_a_panel_wraps_long_lines_instead_of_cutting_them():
    screen = console(80)
    view = LiveView(screen)
    view.texts = {"alice": "word " * 40 + "LASTWORD", "bob": ""}
    panel_lines = screen.render_lines(view._panel("alice", 39, 10), screen.options.update_width(39))
    body = "".join(segment.text for line in panel_lines for segment in line)
    assert "LASTWORD" in body and "…" not in body


def test_the_end_says_what_to_do_next_with_the_db_only_when_it_is_not_the_default(recorded):
    session_id = recorded[0].event.session_id
    default, other = played(recorded, 80), played(recorded, 80, db="forge-demo.db")
    assert f"forge show {session_id}\n" in default and "--db" not in default
    for command in (f"forge show {session_id} --db forge-demo.db", f"forge export {session_id} --db forge-demo.db",
                    "forge serve --db forge-demo.db"):
        assert command in other
    assert next_steps("abc")[0] == "forge show abc"


def test_summary_of_takes_the_first_real_paragraph():
    text = "# Title\n\nThe first paragraph\nspans two lines.\n\n## More\n\nrest"
    assert summary_of(text) == "The first paragraph spans two lines. …"
    assert summary_of("just this") == "just this"
    assert summary_of("# Ada\n\nUse REST.") == "Use REST."  # a heading alone is not more to read
    assert summary_of("") == ""
    long = summary_of("word " * 200, limit=50)
    assert len(long) <= 52 and long.endswith(" …")


def test_tool_calls_show_in_the_panel_and_their_results_stay_in_the_scroll_back(tmp_path):
    workspace = tmp_path / "repo"
    workspace.mkdir()
    (workspace / "notes.md").write_text("# Notes\nThe cache must be invalidated on every write.\n")
    with Forge(str(tmp_path / "forge.db")) as forge:
        session_id = forge.create_session("Review notes.md and propose a plan", ["mock:alice?tools=file", "mock:bob"],
                                          workspace=str(workspace), max_rounds=1, seed=3)
        events = list(forge.deliberate(session_id))
    screen = console(80)
    view = LiveView(screen)
    for recorded in events:
        view.handle(recorded)
        if type(recorded.event).__name__ == "ToolCalled":
            assert '⚙ read_file(path=\'notes.md\')' in view.texts["alice"]  # in alice's live panel
    text = screen.export_text()
    assert "⚙ alice · read_file → " in text and "# Notes" in text  # the result, kept in the scroll-back


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def with_ada(tmp_path_factory) -> list[RecordedEvent]:
    """A mock deliberation with a seated human, ada, who never answers; recorded with a short wait, then
    shown as if it had been 10 minutes (the view reads the wait from the session's settings)."""
    with Forge(str(tmp_path_factory.mktemp("ada") / "forge.db")) as forge:
        session_id = forge.create_session("Design a TODO app API", ["mock:alice", "mock:bob",
                                                                    {"kind": "human", "name": "ada"}],
                                          max_rounds=1, human_wait_seconds=0.05)
        records = list(forge.deliberate(session_id))
    created = records[0].event
    ten_minutes = msgspec.structs.replace(created.settings, human_wait_seconds=600.0)
    return [msgspec.structs.replace(records[0], event=msgspec.structs.replace(created, settings=ten_minutes)),
            *records[1:]]


def test_a_wait_for_a_human_is_shown_with_who_how_and_the_time_left(with_ada):
    session_id = with_ada[0].event.session_id
    clock = Clock()
    screen = console(80)
    view = LiveView(screen, clock=clock, db="h.db")
    convergence = next(i for i, r in enumerate(with_ada) if isinstance(r.event, RoundStarted)
                       and r.event.kind == "convergence")
    cut = next(i for i, r in enumerate(with_ada) if i > convergence and isinstance(r.event, ContentDelta))
    for recorded in with_ada[:cut + 1]:  # an AI vote streaming, cut off mid-JSON, while ada is awaited
        view.handle(recorded)
    clock.now += 48
    screen.print(view._render())
    text = screen.export_text(clear=False)
    assert ("▍ada · waiting up to 10m 00s for ada's vote in round 4; from another terminal:\n"
            f"  forge vote {session_id} --voter ada --db h.db agree|disagree --reason TEXT\n") in text
    live_area = text.split("round 4 · convergence · iteration 1")[-1]
    assert '"vote":' in live_area  # the AI votes streaming, cut off mid-JSON...
    assert "│ waiting for ada's vote (9m 12s left)" in live_area  # ...and ada's panel says what the round waits for
    assert f"│ forge vote {session_id} --voter ada --db h.db agree|disagree --reason TEXT" in live_area
    assert max(len(line) for line in text.splitlines()) <= 80

    clock.now += 600  # the time is out: the round ends, and says who did not answer
    for recorded in with_ada[cut + 1:]:
        view.handle(recorded)
    assert "no vote from ada in round 4 within 10m 00s: the round went on without it" in screen.export_text()


def test_a_replayed_wait_is_shown_without_a_time_left(with_ada):
    screen = console(80)
    view = LiveView(screen, replaying=True)
    convergence = next(i for i, r in enumerate(with_ada) if isinstance(r.event, RoundStarted)
                       and r.event.kind == "convergence")
    for recorded in with_ada[:convergence + 1]:
        view.handle(recorded)
    screen.print(view._render())
    assert "│ waiting for ada's vote  " in screen.export_text()


def test_a_long_command_breaks_between_words_with_a_shell_continuation():
    command = "forge export 0123456789ab --db /tmp/a/rather/long/path/to/the/forge.db --format md -o 0123456789ab.md"
    lines = command_lines(command, 60)
    assert all(len(line) <= 60 for line in lines) and len(lines) == 3
    assert lines[0].endswith(" \\") and lines[1].startswith("      ")
    assert " ".join(line.removesuffix(" \\").strip() for line in lines) == command
    assert command_lines("forge show abc", 80) == ["  forge show abc"]
    assert duration(552) == "9m 12s" and duration(0.3) == "1s" and duration(3900) == "1h 5m"


def test_with_json_the_waits_are_said_on_stderr(with_ada):
    """``forge run --json --human ada``: the events go to stdout untouched, the waits to stderr."""
    class Notes:
        db_flag = "h.db"
        said: list[str] = []

        def note_command(self, message: str, command: str) -> None:
            self.said.append(f"{message}: {command}")

    notes = Notes()
    notes.note = notes.said.append  # type: ignore[attr-defined]
    assert list(_noting_waits(notes, with_ada, None)) == with_ada  # type: ignore[arg-type]
    session_id = with_ada[0].event.session_id
    assert notes.said == [
        f'waiting up to 10m 00s for ada\'s draft in round 1; from another terminal: forge draft {session_id} '
        '--author ada --db h.db "TEXT"',
        "no draft from ada in round 1 within 10m 00s: the round went on without it",
        f"waiting up to 10m 00s for ada's vote in round 4; from another terminal: forge vote {session_id} --voter "
        "ada --db h.db agree|disagree --reason TEXT",
        "no vote from ada in round 4 within 10m 00s: the round went on without it",
    ]


def test_a_finished_vote_panel_shows_what_was_read_not_the_raw_reply(with_ada):
    screen = console(80)
    view = LiveView(screen)
    first_vote = next(i for i, r in enumerate(with_ada) if isinstance(r.event, VoteRecorded))
    for recorded in with_ada[:first_vote + 1]:
        view.handle(recorded)
    vote = with_ada[first_vote].event
    assert view.texts[vote.voter].startswith(f"votes {vote.vote} ({vote.confidence:.0%} sure)\n")
    assert '"vote"' not in view.texts[vote.voter]


def test_the_score_table_lists_critics_in_participant_order_whatever_order_they_replied_in(recorded):
    critique_round = next(r.event.round for r in recorded if isinstance(r.event, CritiqueRecorded))
    reviews = [r for r in recorded if isinstance(r.event, CritiqueRecorded)]
    rest = [r for r in recorded if not isinstance(r.event, CritiqueRecorded)]
    at = next(i for i, r in enumerate(rest) if isinstance(r.event, RoundCompleted) and r.event.round == critique_round)
    for order in (reviews, reviews[::-1]):  # the critics' replies in two different orders
        screen = console(120)
        view = LiveView(screen)
        for event in [*rest[:at], *order, rest[at]]:  # the round ends once every review is in
            view.handle(event)
        header = next(line for line in screen.export_text(clear=False).splitlines() if "draft by" in line)
        assert [word for word in header.split() if word.isalpha()][2:] == ["alice", "bob", "carol", "dave", "mean"]


def test_each_measured_similarity_stays_in_the_scroll_back_with_its_threshold(tmp_path):
    with Forge(str(tmp_path / "forge.db")) as forge:
        session_id = forge.create_session("Design a TODO app API", ["mock:alice", "mock:bob"], seed=5,
                                          convergence="similarity", similarity_threshold=0.5)
        text = played(list(forge.deliberate(session_id)), 120)
    assert "≈ the drafts of alice and bob: " in text and "% similar (lexical measure)" in text
    assert "≈ the synthesis of round 4 is " in text and "to round 3's (threshold 50%, lexical measure)" in text
