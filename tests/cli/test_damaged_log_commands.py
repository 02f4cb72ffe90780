"""Every command on a damaged SQLite log (pages overwritten with garbage, a damaged header, a file cut
short): one line saying what is wrong and how to recover it, exit 2, no traceback, and the file left
byte for byte as it was, with no -wal holding anything (the bug wrote to it first, then failed with a
traceback and exit 1). The store's side: tests/eventstore/test_damaged_logs.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cli_support import tools_replay
from damage_support import DAMAGES, fingerprint

from forge_actors.engine import Forge
from forge_actors.surfaces.server import runner

COMMANDS = {
    "sessions": ["sessions"],
    "show": ["show", "ID"],
    "export": ["export", "ID", "--format", "md"],
    "diff": ["diff", "ID", "ID"],
    "run": ["run", "Plan a garden", "-p", "mock:alice", "-p", "mock:bob"],
    "resume": ["resume", "ID"],
    "serve": ["serve", "--port", "0"],
}


@pytest.fixture(scope="module")
def healthy_log(tmp_path_factory) -> tuple[Path, str]:
    """A real log (two finished mock sessions) and the id of one; the tests damage copies of it."""
    path = tmp_path_factory.mktemp("healthy") / "forge.db"
    with Forge(str(path)) as engine:
        for seed in (1, 2):
            session_id = engine.create_session("Plan a garden", ["mock:alice", "mock:bob"], max_iterations=2,
                                               seed=seed)
            for _ in engine.deliberate(session_id):
                pass
    return path, session_id


@pytest.fixture(params=sorted(DAMAGES))
def damaged(request, healthy_log, tmp_path) -> tuple[Path, str]:
    source, session_id = healthy_log
    path = tmp_path / "damaged.db"
    shutil.copyfile(source, path)
    DAMAGES[request.param](path)
    return path, session_id


@pytest.fixture
def no_serving(monkeypatch):
    """`forge serve` must fail at opening the log: serving at all would be the bug (and block the test)."""
    def serve(*args, **kwargs):
        raise AssertionError("forge serve opened a damaged log and started serving it")
    monkeypatch.setattr(runner, "serve", serve)


def one_line(code: int, err: str, path: Path, prefix: str = "forge") -> str:
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prefix}: {path} is damaged ("), err
    assert f"sqlite3 {path} .recover | sqlite3 recovered.db" in lines[0], err
    return lines[0]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_on_a_damaged_log_says_so_in_one_line_and_writes_nothing(cli, damaged, no_serving, command):
    path, session_id = damaged
    before = fingerprint(path)
    code, out, err = cli(*[session_id if arg == "ID" else arg for arg in COMMANDS[command]], "--db", str(path))
    one_line(code, err, path)
    assert out == ""
    assert fingerprint(path) == before


def test_replay_verify_on_a_damaged_log_says_so_and_writes_nothing(damaged, capsys):
    path, session_id = damaged
    before = fingerprint(path)
    code = tools_replay().main(["--db", str(path), session_id, "--verify"])
    one_line(code, capsys.readouterr().err, path, prefix="replay.py")
    assert fingerprint(path) == before


def test_migrate_log_from_a_damaged_log_copies_nothing_and_writes_nothing(cli, damaged, tmp_path):
    path, _ = damaged
    before = fingerprint(path)
    target = tmp_path / "copy.db"
    code, out, err = cli("migrate-log", str(path), str(target))
    assert code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith(f"forge: {path} is damaged ("), err
    assert fingerprint(path) == before and not target.exists()
