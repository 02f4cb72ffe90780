"""`forge fork ID --at-round N`: a fork that deliberates (or, with --no-run, waits), its lineage in
`forge sessions` and `forge show`, and its mistakes told in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import clean_env

from forge_actors.engine import Forge
from forge_actors.surfaces.cli import main

GOAL = "Design a TODO app API"
TOOLS_REPLAY = str(Path(__file__).resolve().parents[2] / "tools" / "replay.py")


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> tuple[str, str]:
    db = str(tmp_path_factory.mktemp("fork") / "forge.db")
    with Forge(db) as engine:
        session_id = engine.create_session(GOAL, ["mock:alice", "mock:bob", "mock:carol"], seed=7, max_iterations=2)
        list(engine.deliberate(session_id))
    return db, session_id


def test_fork_deliberates_from_the_next_round_with_the_changes(cli, log):
    db, parent = log
    code, out, err = cli("fork", parent[:6], "--at-round", "2", "-p", "mock:dave", "--drop", "carol",
                         "--threshold", "0.9", "--constraint", "no SQL", "--db", db)
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert events[0]["type"] == "RoundStarted" and events[0]["round"] == 3  # no round 1..2 again
    assert events[-1]["type"] == "SessionEnded"
    assert f"forked {parent} after round 2 as " in err
    fork = err.split(" as ")[1].split()[0]
    with Forge(db) as engine:
        state = engine.state(fork)
        assert state.forked_from.parent_id == parent and state.removed == ("carol",)
        assert state.settings.convergence_threshold == 0.9 and state.constraints == ("no SQL",)
        assert "dave" in state.rounds[3].participants


def test_no_run_only_creates_it_and_sessions_and_show_tell_the_lineage(cli, capsys, monkeypatch, log):
    db, parent = log
    code, out, err = cli("fork", parent, "--at-round", "1", "--max-iterations", "3", "--no-run", "--db", db)
    assert code == 0, err
    created = json.loads(out)
    assert created["parent_id"] == parent and created["at_round"] == 1
    fork = created["session_id"]
    code, out, err = cli("sessions", "--db", db)
    rows = {row["session_id"]: row for row in map(json.loads, out.splitlines())}
    assert (rows[fork]["parent_id"], rows[fork]["forked_at_round"], rows[fork]["status"]) == (parent, 1, "created")
    assert rows[parent]["parent_id"] == ""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)  # the table, as a person reads it
    monkeypatch.setenv("COLUMNS", "200")
    code = main(["sessions", "--db", db], clean_env())
    table, _ = capsys.readouterr()
    assert code == 0 and "forked from" in table and f"{parent} @ round 1" in table
    code = main(["show", fork, "--db", db], clean_env())
    shown, _ = capsys.readouterr()
    assert code == 0 and f"forked from {parent} after its round 1" in shown


@pytest.mark.parametrize(("arguments", "says"), [
    (["--at-round", "9"], "round 9 is past its end: fork at a round from 1 to 4"),
    (["--at-round", "2", "--drop", "zed"], "cannot drop 'zed'"),
    (["--at-round", "2", "--threshold", "2"], "convergence_threshold must be between 0 and 1"),
])
def test_mistakes_are_one_line_and_write_nothing(cli, log, arguments, says):
    db, parent = log
    with Forge(db) as engine:
        before = engine.sessions()
    code, out, err = cli("fork", parent, *arguments, "--db", db)
    assert code == 2 and out == "" and says in err and len(err.strip().splitlines()) == 1
    with Forge(db) as engine:
        assert engine.sessions() == before


def test_replay_verify_checks_a_forks_copy_against_its_parent(log):
    db, parent = log
    with Forge(db) as engine:
        fork = engine.fork(parent, at_round=3)
    verified = subprocess.run([sys.executable, TOOLS_REPLAY, "--db", db, fork, "--verify"], capture_output=True,
                              text=True, env=clean_env())
    assert verified.returncode == 0, verified.stderr
    assert "a fork; the " in verified.stdout and f"events copied from {parent} (to the end of its round 3) match it" \
        in verified.stdout
