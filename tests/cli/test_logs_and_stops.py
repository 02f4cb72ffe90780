"""Finding the log (FORGE_DB, --db), a broken forge.toml, and stopping: Ctrl-C in replay, resume --json."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import clean_env

from forge_actors.core.events import ContentDelta
from forge_actors.engine import Forge
from forge_actors.surfaces.cli import main

FORGE = str(Path(sys.executable).with_name("forge"))


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_forge_db_is_the_log_of_every_command(cli, tmp_path):
    env = {"FORGE_DB": "elsewhere.db"}
    code, out, err = cli("run", "Design a TODO app API", "-p", "mock:alice", "-p", "mock:bob", "--max-iterations", "1",
                         "--seed", "7", env=env)
    assert code in (0, 1), err
    session_id = json_lines(out)[0]["session_id"]
    assert "log " in err and "elsewhere.db" in err
    for args in (["sessions"], ["show", session_id], ["export", session_id], ["replay", session_id, "--speed", "0"],
                 ["resume", session_id], ["rerun", session_id]):
        code, out, err = cli(*args, env=env)
        assert code in (0, 1), (args, err)
        assert session_id in out or "already ended" in err, args
    with Forge(str(tmp_path / "elsewhere.db")) as engine:  # a session open for drafts and a vote
        open_id = engine.create_session("goal", ["mock:alice", "mock:bob"], seed=7)
        engine.run_round(open_id, "draft")
    code, out, err = cli("draft", open_id, "--author", "ada", "a plan", env=env)
    assert code == 0, err
    code, out, err = cli("switch", open_id, "alice", "mock:alicia", env=env)
    assert code == 0, err
    with Forge(str(tmp_path / "elsewhere.db")) as engine:
        for kind in ("critique", "synthesis"):
            engine.run_round(open_id, kind)  # type: ignore[arg-type]
    code, out, err = cli("vote", open_id, "--voter", "ada", "agree", env=env)
    assert code == 0, err
    assert not (tmp_path / "forge.db").exists()  # nothing ever looked at the default log
    code, out, err = cli("sessions", "--db", "forge.db", env=env)  # --db wins over FORGE_DB
    assert code == 2 and "no event log at forge.db" in err


def test_serve_uses_forge_db_too(tmp_path):
    server = subprocess.Popen([FORGE, "serve", "--port", "0"], cwd=tmp_path, env=clean_env(FORGE_DB="served.db"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        first = server.stderr.readline()
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    assert "serving" in first and "served.db" in first, first
    assert not (tmp_path / "forge.db").exists()


BROKEN = "[forge\nmax_rounds = 3\n"


@pytest.fixture
def broken_config_log(cli, tmp_path) -> str:
    """A log with one ended session, then a malformed ./forge.toml next to it."""
    code, out, err = cli("run", "goal", "-p", "mock:alice", "--max-iterations", "1")
    (tmp_path / "forge.toml").write_text(BROKEN)
    return json_lines(out)[0]["session_id"]


@pytest.mark.parametrize("named", [{"args": ["--db", "forge.db"]}, {"env": {"FORGE_DB": "forge.db"}}])
def test_a_broken_forge_toml_does_not_stop_the_commands_that_only_read_a_log_named_otherwise(cli, broken_config_log,
                                                                                          named):
    for args in (["sessions"], ["show", broken_config_log], ["export", broken_config_log, "--format", "json"],
                 ["replay", broken_config_log, "--speed", "0"], ["search", "goal"]):
        code, out, err = cli(*args, *named.get("args", []), env=named.get("env"))
        assert code == 0, (args, err)
        assert out.strip() and "ignoring the configuration" in err and "forge.toml: not valid TOML" in err


def test_a_broken_forge_toml_that_would_name_the_log_stops_even_those(cli, broken_config_log):
    """The log would come from the file: going on with ./forge.db could show another log than the one meant."""
    code, out, err = cli("show", broken_config_log)
    assert code == 2 and not out
    assert err.startswith("forge: forge.toml: not valid TOML") and len(err.strip().splitlines()) == 1
    assert err.strip().endswith("The log comes from this file when neither --db nor FORGE_DB names one: fix the "
                                "file, or name the log with --db or FORGE_DB")


@pytest.mark.parametrize("args", [["run", "goal"], ["resume", "ID"], ["providers"], ["draft", "ID", "--author", "a",
                                                                                       "x"]])
def test_a_broken_forge_toml_stops_the_others_naming_the_file_and_the_error(cli, broken_config_log, args):
    args = [broken_config_log if a == "ID" else a for a in args]
    code, out, err = cli(*args)
    assert code == 2 and not out
    assert "forge.toml: not valid TOML" in err and f"`forge {args[0]}` needs the configuration" in err
    assert len(err.strip().splitlines()) == 1


def test_ctrl_c_during_replay_says_nothing_about_resume(tmp_path):
    with Forge(str(tmp_path / "forge.db")) as engine:
        session_id = engine.create_session("Design a TODO app API", ["mock:alice?word_delay=0.002"], max_rounds=1)
        recorded = list(engine.deliberate(session_id))
    replay = subprocess.Popen([FORGE, "replay", session_id, "--speed", "0.01"], cwd=tmp_path, env=clean_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert replay.stdout is not None
    replay.stdout.readline()  # it has started
    replay.send_signal(signal.SIGINT)
    out, err = replay.communicate(timeout=60)
    assert replay.returncode == 130
    assert "replay stopped; the log is unchanged" in err and "resume" not in err
    with Forge(str(tmp_path / "forge.db"), create=False) as engine:
        assert len(engine.records(session_id)) == len(recorded)  # nothing recorded: not even an interruption
        assert engine.state(session_id).status == recorded[-1].event.outcome  # type: ignore[attr-defined]


def test_ctrl_c_in_a_json_run_ends_its_stream_with_what_the_interruption_recorded(tmp_path):
    run = subprocess.Popen([FORGE, "run", "Design a TODO app API", "--max-iterations", "2",
                            *[arg for name in ("alice", "bob") for arg in ("-p", f"mock:{name}?word_delay=0.01")]],
                           cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert run.stdout is not None
    deltas = 0
    for line in run.stdout:
        deltas += json.loads(line)["type"] == "ContentDelta"
        if deltas >= 10:
            break
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    tail = json_lines(out)
    assert tail[-1]["type"] == "SessionInterrupted"
    assert {e["type"] for e in tail[-3:-1]} == {"ContributionAbandoned"}  # both drafts were in flight
    positions = [e["position"] for e in tail]
    assert positions == sorted(positions)


def test_resume_json_first_repeats_how_the_interrupted_run_ended(cli, tmp_path):
    with Forge(str(tmp_path / "forge.db")) as engine:
        session_id = engine.create_session("Design a TODO app API",
                                           ["mock:alice?word_delay=0.005", "mock:bob?word_delay=0.005"], max_rounds=1)
        for recorded in engine.deliberate(session_id):  # stop once both are streaming, as a closed pipe does
            if isinstance(recorded.event, ContentDelta) and len(engine.state(session_id).streaming) == 2:
                break
        engine.interrupt(session_id, "the output pipe was closed")
        interruption = [r for r in engine.records(session_id)
                        if type(r.event).__name__ in ("ContributionAbandoned", "SessionInterrupted")]
    code, out, err = cli("resume", session_id)
    assert code in (0, 1), err
    events = json_lines(out)
    head = events[:len(interruption)]
    assert [e["position"] for e in head] == [r.position for r in interruption]
    assert [e["type"] for e in head] == ["ContributionAbandoned", "ContributionAbandoned", "SessionInterrupted"]
    assert events[len(interruption)]["type"] == "SessionResumed" and events[-1]["type"] == "SessionEnded"
    assert len({e["position"] for e in events}) == len(events)  # nothing twice


def test_resume_help_documents_the_rule(capsys):
    with pytest.raises(SystemExit):
        main(["resume", "--help"], clean_env())
    text = capsys.readouterr().out
    assert "SessionInterrupted" in text and "ContributionAbandoned" in text and "`position`" in text
