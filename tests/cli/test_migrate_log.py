"""`forge migrate-log SRC DST`: a log copied between SQLite and PostgreSQL is the same log (its sessions,
exports and replays match), an interrupted copy goes on, and a target holding something else is refused."""

from __future__ import annotations

import json

import pytest

from forge_actors.surfaces import cli as cli_module

THREE = ["-p", "mock:alice", "-p", "mock:bob", "-p", "mock:carol", "--max-iterations", "2", "--seed", "7"]


def _report(out: str) -> dict:
    return json.loads(out.splitlines()[-1])


def _views(cli, db: str, session_id: str) -> tuple[str, ...]:
    """What the commands show of ``session_id`` in ``db``: its list, state, exports and replay."""
    shown = []
    for command in (["sessions"], ["show", session_id], *(["export", session_id, "--format", f] for f in
                                                          ("json", "md", "yaml")), ["replay", session_id, "--speed", "0"]):
        code, out, err = cli(*command, "--db", db)
        assert code == 0, (command, err)
        shown.append(out)
    return tuple(shown)


@pytest.fixture
def source(cli, tmp_path) -> tuple[str, str]:
    """A SQLite log with one finished session: (its path, the session id)."""
    code, out, err = cli("run", "Design a TODO app API", *THREE, "--db", "src.db")
    assert code in (0, 1), err
    return str(tmp_path / "src.db"), json.loads(out.splitlines()[0])["session_id"]


def test_a_log_copied_to_postgresql_and_back_is_the_same_log(cli, tmp_path, source, postgres_url):
    src, session_id = source
    code, out, err = cli("migrate-log", src, postgres_url)
    report = _report(out)
    assert code == 0, err
    assert report["copied"] == report["last_position"] > 0 and report["already_there"] == 0
    assert report["target"] == postgres_url and "copied up to position" in err
    assert _views(cli, postgres_url, session_id) == _views(cli, src, session_id)

    again = _report(cli("migrate-log", src, postgres_url)[1])  # nothing new: nothing copied, nothing doubled
    assert (again["copied"], again["already_there"]) == (0, report["last_position"])

    back = str(tmp_path / "back.db")
    assert cli("migrate-log", postgres_url, back)[0] == 0
    assert _views(cli, back, session_id) == _views(cli, src, session_id)


def test_an_interrupted_copy_goes_on_where_it_stopped(cli, tmp_path, source, monkeypatch):
    src, session_id = source
    real = cli_module.migrate_log

    def stopped_after_one_batch(source, target, *, batch_size, on_batch):
        def then_ctrl_c(last, total):
            on_batch(last, total)
            raise KeyboardInterrupt
        return real(source, target, batch_size=batch_size, on_batch=then_ctrl_c)

    monkeypatch.setattr(cli_module, "migrate_log", stopped_after_one_batch)
    dst = str(tmp_path / "dst.db")
    code, _, err = cli("migrate-log", src, dst, "--batch-size", "10")
    assert code == 130 and f"forge migrate-log {src} {dst}" in err
    monkeypatch.setattr(cli_module, "migrate_log", real)
    code, out, err = cli("migrate-log", src, dst, "--batch-size", "10")
    report = _report(out)
    assert code == 0 and report["already_there"] == 10 and report["copied"] == report["last_position"] - 10
    assert _views(cli, dst, session_id) == _views(cli, src, session_id)


def test_a_target_that_is_not_empty_nor_the_start_of_the_source_is_refused(cli, tmp_path, source):
    src, _ = source
    assert cli("run", "another goal", "-p", "mock:dave", "--max-iterations", "1", "--db", "other.db")[0] in (0, 1)
    other = tmp_path / "other.db"
    before = other.read_bytes()
    code, out, err = cli("migrate-log", src, str(other))
    assert code == 2 and "not the start of" in err and out == ""
    assert other.read_bytes() == before  # nothing written into it
    code, _, err = cli("migrate-log", src, src)
    assert code == 2 and "both SRC and DST" in err
    code, _, err = cli("migrate-log", str(tmp_path / "missing.db"), str(tmp_path / "new.db"))
    assert code == 2 and "no event log at" in err and not (tmp_path / "new.db").exists()
    code, _, err = cli("migrate-log", src, str(tmp_path / "new.db"), "--batch-size", "0")
    assert code == 2 and "--batch-size" in err
