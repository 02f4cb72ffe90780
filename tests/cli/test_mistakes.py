"""The mistakes a new user makes on the command line, each answered by one line that says what to do,
exit 2, no traceback, and no log file left behind by a command that recorded nothing (issue 27)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import clean_env

from forge_actors.engine import SessionNotFoundError
from forge_actors.surfaces.cli import main
from forge_actors.surfaces.mcp import _for_client

REPO = Path(__file__).resolve().parents[2]
NO_LOG_HINT = "run `forge run GOAL` first, or give --db / FORGE_DB / forge.toml's [forge] database"


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("spec, message", [
    ("nosuch:model", "forge: unknown provider 'nosuch'; known providers: anthropic, cli, daemon, mock, ollama, "
                     "openai, pool. Write a spec as PROVIDER:MODEL, e.g. anthropic:claude-sonnet-4-20250514 or "
                     "mock:alice."),
    ("openai:gpt-4o", "forge: openai: no API key: set OPENAI_API_KEY in the environment of the process that runs "
                      "the deliberation."),
])
def test_a_run_that_fails_before_recording_leaves_no_log_and_show_then_says_there_is_none(cli, tmp_path, spec,
                                                                                          message):
    code, out, err = cli("run", "Plan a garden", "-p", spec)
    assert (code, out, one_line(err)) == (2, "", message)
    assert sorted(os.listdir(tmp_path)) == []  # no forge.db, no -wal or -shm
    code, _, err = cli("show", "x")
    assert (code, one_line(err)) == (2, f"forge: no event log at forge.db: {NO_LOG_HINT}")


def test_a_failed_run_leaves_a_log_that_was_there_before(cli, tmp_path):
    assert cli("run", "seed", "-p", "mock:a", "--max-iterations", "1")[0] in (0, 1)
    assert cli("run", "Plan a garden", "-p", "nosuch:model")[0] == 2
    assert (tmp_path / "forge.db").exists()
    code, out, _ = cli("sessions")
    assert code == 0 and len(out.splitlines()) == 1


def test_an_unknown_session_names_the_cli_command_that_lists_them(cli):
    assert cli("run", "seed", "-p", "mock:a", "--max-iterations", "1", "--db", "other.db")[0] in (0, 1)
    code, _, err = cli("show", "nope", "--db", "other.db")
    assert (code, one_line(err)) == (2, "forge: no session 'nope' in this log; list them with "
                                        "`forge sessions --db other.db`")
    # MCP names its own tool, never a CLI command or the Python API
    assert _for_client(SessionNotFoundError("nope")) == "no session 'nope' in this log; the list_sessions tool lists them"


@pytest.mark.parametrize("given, env, source", [
    (["--db", "/missing/dir/forge.db"], {}, "--db"),
    ([], {"FORGE_DB": "/missing/dir/forge.db"}, "FORGE_DB"),
])
def test_a_log_in_a_missing_folder_names_the_folder(cli, given, env, source):
    code, _, err = cli("run", "Plan a garden", "-p", "mock:a", *given, env=env)
    assert (code, one_line(err)) == (
        2, f"forge: the folder /missing/dir does not exist, so the log /missing/dir/forge.db (from {source}) cannot "
           "be created in it: create the folder first (mkdir -p /missing/dir), or name a log in a folder that exists")


PASSWORD_IN_TOML = ("forge: forge.toml: forge.database (postgresql://ada@db.example/forge): a password does not "
                    "belong in the configuration file: give it in PGPASSWORD or ~/.pgpass, or put the whole URL in "
                    "FORGE_DB")


@pytest.mark.parametrize("command, then", [
    (["sessions"], ". The log comes from this file when neither --db nor FORGE_DB names one: fix the file, or name "
                   "the log with --db or FORGE_DB"),
    (["show", "x"], ". The log comes from this file when neither --db nor FORGE_DB names one: fix the file, or name "
                    "the log with --db or FORGE_DB"),
    (["run", "Plan a garden", "-p", "mock:a"], " (`forge run` needs the configuration: fix the file, or name another "
                                              "with --config / FORGE_CONFIG)"),
])
def test_a_forge_toml_whose_database_cannot_be_used_is_an_error_not_another_log(cli, tmp_path, command, then):
    (tmp_path / "forge.toml").write_text('[forge]\ndatabase = "postgresql://ada:secret@db.example/forge"\n')
    code, out, err = cli(*command)
    assert (code, out, one_line(err)) == (2, "", PASSWORD_IN_TOML + then)
    assert not (tmp_path / "forge.db").exists()
    code, _, err = cli("sessions", "--db", "elsewhere.db")  # a log named otherwise needs nothing of the file
    assert (code, one_line(err)) == (2, f"forge: no event log at elsewhere.db: {NO_LOG_HINT}")


def test_run_dash_reads_the_goal_from_stdin(cli):
    code, out, _ = cli("run", "-", "-p", "mock:a", "--max-iterations", "1", stdin="Plan a garden\nwith roses\n")
    assert code in (0, 1)
    assert json.loads(out.splitlines()[0])["goal"] == "Plan a garden\nwith roses"
    code, _, err = cli("run", "-", "-p", "mock:a", stdin="  \n")
    assert (code, one_line(err)) == (2, "forge: the goal read from stdin is empty: pipe it in (echo GOAL | forge "
                                        "run -), or give it as GOAL")


@pytest.mark.parametrize("argv, said", [
    (["run", "--partcipant", "mock:a", "Plan a garden"],
     "forge run: unknown option --partcipant (did you mean --participant?); `forge run --help` lists the options"),
    (["show", "abc", "--dbb", "x.db"],
     "forge show: unknown option --dbb (did you mean --db?); `forge show --help` lists the options"),
    (["sessons"], "forge: unknown command 'sessons': did you mean `forge sessions`? (`forge --help` lists the "
                  "commands)"),
])
def test_a_typo_gets_did_you_mean_in_one_line(capsys, argv, said):
    with pytest.raises(SystemExit) as exit_:
        main(argv, clean_env())
    assert exit_.value.code == 2
    assert one_line(capsys.readouterr().err) == said


def test_a_word_close_to_nothing_keeps_argparses_own_message(capsys):
    with pytest.raises(SystemExit):
        main(["run", "goal", "--zzzz"], clean_env())
    assert capsys.readouterr().err.splitlines()[-1] == "forge run: error: unrecognized arguments: --zzzz"


def test_serve_on_a_port_that_is_not_one_says_so_and_creates_no_log(cli, tmp_path):
    code, _, err = cli("serve", "--port", "80000")
    assert (code, one_line(err)) == (2, "forge: --port 80000 is not a port: give one from 1 to 65535 (or 0 for any "
                                        "free one)")
    assert os.listdir(tmp_path) == []


def test_serve_on_a_port_in_use_says_so_before_serving_anything(cli, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = cli("serve", "--port", str(port))
    assert (code, out) == (2, "")
    assert one_line(err) == (f"forge: cannot serve on 127.0.0.1:{port}: the port is in use (another `forge "
                             f"serve`?): stop what listens there, or give another port, e.g. --port {port + 1}")
    assert os.listdir(tmp_path) == []  # nothing said to be served, no log created


def test_search_finds_past_contributions(cli):
    assert cli("run", "Design a TODO app API", "-p", "mock:alice", "--max-iterations", "1")[0] in (0, 1)
    code, out, _ = cli("search", "rate", "limiter", "-n", "2")
    hits = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and 1 <= len(hits) <= 2
    assert hits[0]["participant"] == "alice" and "rate limiter" in hits[0]["excerpt"].lower()
    code, _, err = cli("search", "rate", "-n", "50")
    assert (code, one_line(err)) == (2, "forge: --limit is a number of hits from 1 to 20, not 50")


def test_tools_replay_runs_as_its_usage_writes_it(tmp_path):
    script = REPO / "tools" / "replay.py"
    assert script.read_text().startswith("#!/usr/bin/env python3\n")
    assert script.stat().st_mode & stat.S_IXUSR
    tracked = subprocess.run(["git", "ls-files", "-s", "tools/replay.py"], cwd=REPO, capture_output=True, text=True)
    assert tracked.stdout.startswith("100755"), tracked.stdout  # executable in the repository too, not only here
    env = clean_env(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run([str(script), "--db", "missing.db", "abc", "--verify"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr.strip()) == (2, f"replay.py: no event log at missing.db: {NO_LOG_HINT}")


def test_migrate_log_into_a_missing_folder_names_it(cli):
    assert cli("run", "seed", "-p", "mock:a", "--max-iterations", "1")[0] in (0, 1)
    code, _, err = cli("migrate-log", "forge.db", "/missing/dir/copy.db")
    assert (code, one_line(err)) == (2, "forge: the folder /missing/dir does not exist, so the log /missing/dir/copy.db "
                                        "cannot be created in it: create the folder first (mkdir -p /missing/dir), or "
                                        "name a log in a folder that exists")
