"""`forge diff A B`: two mock deliberations in one log, compared as JSON, Markdown and on a terminal."""

from __future__ import annotations

import json
import re
import sys

import pytest
from cli_support import clean_env

from forge_actors.engine import Forge
from forge_actors.surfaces.cli import main

GOAL = "Design a TODO app API [/v2]"  # no rich markup: printed as it is


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> tuple[str, str, str, str]:
    """(the log, A, B, C): seed 7 with alice, bob and carol; seed 8 with alice, bob and dave; seed 8 with
    alice, bob and carol."""
    db = str(tmp_path_factory.mktemp("diff") / "forge.db")
    with Forge(db) as engine:
        ids = []
        for seed, third in ((7, "mock:carol"), (8, "mock:dave"), (8, "mock:carol")):
            session_id = engine.create_session(GOAL, ["mock:alice", "mock:bob", third], seed=seed, max_iterations=2)
            list(engine.deliberate(session_id))
            ids.append(session_id)
    return db, ids[0], ids[1], ids[2]


def forge(capsys, *args: str) -> tuple[int, str, str]:
    """``forge ARGS`` in this process as it is given (the ``cli`` fixture adds --json to everything)."""
    code = main(list(args), clean_env())
    out, err = capsys.readouterr()
    return code, out, err


def test_json_is_the_whole_comparison(cli, log):
    db, a, b, _ = log
    code, out, err = cli("diff", a[:6], b, "--db", db)  # a unique prefix names a session, as everywhere
    assert code == 0, err
    document = json.loads(out)
    assert document["schema"] == "forge_actors.comparison/1"
    assert (document["a"]["session_id"], document["b"]["session_id"]) == (a, b)
    assert document["settings"] == [{"name": "seed", "a": 7, "b": 8}]
    assert document["first_difference"]["round"] == 1
    assert document["first_difference"]["summary"] == "round 1 (draft): texts differ (carol only in A, dave only in B)"
    draft = document["rounds"][0]
    assert [t["participant"] for t in draft["texts"]] == ["alice", "bob", "carol", "dave"]
    assert draft["texts"][0]["a"] == draft["texts"][0]["b"]  # alice drafts alike in both
    critique = document["rounds"][1]
    assert critique["scores"]["proposals"] == ["alice", "bob", "carol", "dave"]


def test_markdown_has_every_section_and_goes_to_a_file(capsys, cli, log, tmp_path):
    db, a, b, _ = log
    code, out, err = forge(capsys, "diff", a, b, "--markdown", "--db", db)
    assert code == 0, err
    for section in ("# Comparison of two sessions", "| session | `" + a + "` | `" + b + "` |",
                    "**Settings that differ:** seed 7 → 8", "**First difference:** round 1 (draft)",
                    "## Round 1 — draft · differs: content", "### carol (only in A)", "### dave (only in B)",
                    "## Round 2 — critique · differs:", "| reviewer | alice | bob | carol | dave |",
                    "## Round 3 — synthesis", "## Round 4 — convergence", "| voter | A | B |", "_Costs are"):
        assert section in out, section
    code, out, err = forge(capsys, "diff", a, b, "-o", str(tmp_path / "diff.md"), "--db", db)
    assert code == 0 and out == "" and "wrote" in err
    assert (tmp_path / "diff.md").read_text().startswith("# Comparison of two sessions")
    code, _, _ = forge(capsys, "diff", a, b, "--json", "-o", str(tmp_path / "diff.json"), "--db", db)
    assert code == 0 and json.loads((tmp_path / "diff.json").read_text())["a"]["session_id"] == a


def test_a_session_with_itself_has_no_difference(cli, log):
    db, a, _, _ = log
    code, out, _ = cli("diff", a, a, "--db", db)
    document = json.loads(out)
    assert code == 0 and document["first_difference"] is None
    assert all(r["differences"] == [] for r in document["rounds"])


def test_on_a_terminal_the_first_difference_is_shown_in_detail(capsys, monkeypatch, cli, log):
    db, a, b, _ = log
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setenv("COLUMNS", "140")
    code, out, err = forge(capsys, "diff", a, b, "--db", db)
    assert code == 0, err
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)  # rich's colours
    assert '"schema"' not in out  # not JSON
    assert "settings that differ: seed 7 → 8" in out and "Design a TODO app API [/v2]" in out
    assert re.search(r"│ 1 │ draft completed +│ draft completed +│ content  ◀ first difference", out)
    assert "first difference: round 1 (draft): texts differ (carol only in A, dave only in B)" in out
    assert "carol's draft is only in A" in out and "dave's draft is only in B" in out
    assert f"every round: forge diff {a} {b} --markdown" in out


def test_on_a_terminal_changed_scores_are_shown_in_their_matrix(capsys, monkeypatch, log):
    db, a, _, c = log  # the same council, seeds 7 and 8: the mocks draft alike, and score otherwise
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setenv("COLUMNS", "140")
    code, out, err = forge(capsys, "diff", a, c, "--db", db)
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert code == 0, err
    assert re.search(r"│ 1 │ draft completed +│ draft completed +│ same", out)
    assert re.search(r"│ 2 │ critique completed +│ critique completed +│ content, scores  ◀ first difference", out)
    assert "scores, reviewer × proposal author (A → B where they differ):" in out
    changed = re.findall(r"(\d+) → (\d+)", out)
    assert changed and all(x != y for x, y in changed)


def test_unknown_sessions_and_two_formats_are_one_line_errors(capsys, cli, log):
    db, a, _, _ = log
    code, out, err = cli("diff", a, "nope", "--db", db)
    assert (code, out) == (2, "") and err.startswith("forge: no session 'nope'")
    assert len(err.strip().splitlines()) == 1
    code, out, err = forge(capsys, "diff", a, a, "--markdown", "--json", "--db", db)
    assert (code, out) == (2, "") and "give one" in err and len(err.strip().splitlines()) == 1


def test_on_a_terminal_show_prints_a_goal_with_brackets_as_written(capsys, monkeypatch, log):
    db, a, _, _ = log  # "[/v2]" in the goal once made rich raise MarkupError
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setenv("COLUMNS", "140")
    code, out, err = forge(capsys, "show", a, "--db", db)
    assert code == 0, err
    assert f"goal: {GOAL}" in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
