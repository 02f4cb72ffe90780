"""Every `forge` command (and tools/replay.py) on a PostgreSQL log, named by a URL with a password
that appears nowhere: not in stdout, stderr, log records, exports, repr()."""

from __future__ import annotations

import json
import logging
import re
import sys

from cli_support import clean_env, tools_replay

from forge_actors.engine import Forge
from forge_actors.surfaces.cli import Context, _parse, main

THREE = ["-p", "mock:alice", "-p", "mock:bob", "-p", "mock:carol", "--max-iterations", "2", "--seed", "7"]
PASSWORD = "s3cret"


def with_password(url: str) -> str:
    """The test server trusts every local connection: a password in the URL is sent to nobody, and
    is only there to be kept out of every output."""
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@", 1)


def test_every_command_runs_on_postgresql_and_never_shows_the_password(cli, postgres_url, tmp_path, caplog,
                                                                      capsys, monkeypatch):
    caplog.set_level(logging.DEBUG)
    db = with_password(postgres_url)
    seen: list[str] = []

    def forge(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> tuple[int, str, str]:
        code, out, err = cli(*args, env=env, stdin=stdin)
        seen.append(out + err)
        assert code in (0, 1), (args, err)
        return code, out, err

    _, out, err = forge("run", "Design a TODO app API", *THREE, "--db", db)
    session_id = json.loads(out.splitlines()[0])["session_id"]
    assert f"log {postgres_url}" in err  # the log is named, without its password
    assert json.loads(forge("sessions", "--db", db)[1])["session_id"] == session_id
    assert json.loads(forge("sessions", env={"FORGE_DB": db})[1])["session_id"] == session_id
    assert json.loads(forge("show", session_id[:6], "--db", db)[1])["status"] == "converged"
    for fmt in ("md", "json", "yaml"):
        forge("export", session_id, "--format", fmt, "-o", str(tmp_path / f"export.{fmt}"), "--db", db)
        seen.append((tmp_path / f"export.{fmt}").read_text())
    assert json.loads((tmp_path / "export.json").read_text())["session_id"] == session_id
    replayed = [json.loads(line) for line in forge("replay", session_id, "--speed", "0", "--db", db)[1].splitlines()]
    assert replayed[0]["type"] == "SessionCreated" and replayed[-1]["type"] == "SessionEnded"
    _, _, err = forge("rerun", session_id, "--db", db)
    assert f"re-ran {session_id} as " in err

    # A human's session: a draft from the command line, rounds, a vote, then resumed to its end.
    with Forge(db) as engine:
        assert PASSWORD not in repr(engine) + engine.path
        human = engine.create_session("goal", ["mock:alice", "mock:bob", {"kind": "human", "name": "ada"}],
                                      seed=7, max_rounds=1)
    assert json.loads(forge("draft", human, "--author", "ada", "My plan: REST.", "--db", db)[1])["round"] == 0
    with Forge(db) as engine:
        for kind in ("draft", "critique", "synthesis"):
            engine.run_round(human, kind)  # type: ignore[arg-type]
    assert json.loads(forge("vote", human, "--voter", "ada", "agree", "--db", db)[1])["vote"] == "AGREE"
    forge("resume", human, "--db", db)
    with Forge(db, create=False) as engine:
        assert engine.state(human).ended and engine.state(human).votes_in(4)["ada"].by_human

    # forge serve's banner (the server itself is tested in tests/surfaces/test_postgres_surfaces.py).
    import forge_actors.surfaces.server.runner as runner

    monkeypatch.setattr(runner, "serve", lambda forge, host, port, token, orphan_scan=None, sock=None: None)
    _, _, err = forge("serve", "--db", db, "--port", "0")  # the port is bound first: any free one
    assert re.search(rf"serving {re.escape(postgres_url)} on http://127\.0\.0\.1:\d+/", err), err

    # tools/replay.py on the same log.
    replay = tools_replay()
    monkeypatch.setattr("os.environ", clean_env())
    assert replay.main(["--db", db, session_id, "--verify"]) == 0
    assert replay.main(["--db", db, human, "--state"]) == 0
    assert replay.main(["--db", db, "nosuchsession", "--verify"]) == 2
    seen.append("".join(capsys.readouterr()))
    assert "no violations" in seen[-1]

    everything = "\n".join(seen) + caplog.text + "".join(str(r.args) for r in caplog.records)
    assert PASSWORD not in everything


def test_on_a_terminal_the_next_steps_say_export_forge_db_and_never_the_password(postgres_url, capsys, monkeypatch):
    monkeypatch.setattr("signal.signal", lambda *args: None)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)  # the live view, not JSON lines
    code = main(["run", "goal", "-p", "mock:alice", "--max-iterations", "1", "--db", with_password(postgres_url)],
                clean_env())
    out, err = capsys.readouterr()
    assert code == 0 and "next:" in out and "forge show " in out and "--db" not in out
    assert f"export FORGE_DB='{postgres_url}'" in err and PASSWORD not in out + err


def test_a_next_step_hint_suggests_export_forge_db_without_the_password(postgres_url, capsys):
    db = with_password(postgres_url)
    ctx = Context(_parse(["show", "abc", "--db", db]), clean_env())
    assert ctx.db_flag is None and ctx.db_suffix() == "" and ctx.db_shown == postgres_url
    ctx.db_suffix()  # said once
    err = capsys.readouterr().err
    assert err.count(f"export FORGE_DB='{postgres_url}'") == 1 and PASSWORD not in err
    plain = Context(_parse(["show", "abc", "--db", postgres_url]), clean_env())
    assert plain.db_suffix() == f" --db {postgres_url}"  # no password: the URL is the flag
    from_env = Context(_parse(["show", "abc"]), clean_env(FORGE_DB=db))
    assert from_env.db_suffix() == "" and capsys.readouterr().err == ""  # the next command finds it the same way
