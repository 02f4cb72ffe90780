"""Which log a command uses (--db > $FORGE_DB > forge.toml's database > ./forge.db), for a file or a
PostgreSQL URL, and a URL's password never printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import clean_env, tools_replay

from forge_actors.engine import ConfigError, choose_log, has_password, printable_target
from forge_actors.engine.config import parse_config

ONE = ["-p", "mock:alice", "--max-iterations", "1", "--seed", "1"]


def _session_ids(out: str) -> list[str]:
    return [json.loads(line)["session_id"] for line in out.splitlines()]


def test_the_log_is_db_else_forge_db_else_forge_toml_else_forge_db_in_the_folder(cli, tmp_path, monkeypatch, capsys):
    (tmp_path / "forge.toml").write_text('[forge]\ndatabase = "from-toml.db"\n')
    cli("run", "goal", *ONE)
    assert (tmp_path / "from-toml.db").exists() and not (tmp_path / "forge.db").exists()
    cli("run", "goal", *ONE, env={"FORGE_DB": "from-env.db"})
    assert (tmp_path / "from-env.db").exists()
    cli("run", "goal", *ONE, "--db", "from-flag.db", env={"FORGE_DB": "from-env.db"})
    assert (tmp_path / "from-flag.db").exists()
    assert len(_session_ids(cli("sessions", env={"FORGE_DB": "from-env.db"})[1])) == 1  # each got one session
    assert len(_session_ids(cli("sessions")[1])) == 1  # forge.toml's, when neither --db nor FORGE_DB
    monkeypatch.setattr("os.environ", clean_env())
    session_id = _session_ids(cli("sessions")[1])[0]
    assert tools_replay().main([session_id, "--verify"]) == 0  # tools/replay.py chooses the same way
    assert "no violations" in capsys.readouterr().out
    (tmp_path / "forge.toml").unlink()
    code, _, err = cli("sessions")
    assert code == 2 and "no event log at forge.db" in err  # the default, once nothing names another


def test_forge_toml_database_is_relative_to_its_file_and_holds_no_password(tmp_path):
    config = parse_config({"forge": {"database": "logs/forge.db"}}, source=str(tmp_path / "conf" / "forge.toml"))
    assert config.database == str(tmp_path / "conf" / "logs" / "forge.db")
    url = "postgresql://forge@db.internal:5432/forge?options=-csearch_path%3Dteam"
    assert parse_config({"forge": {"database": url}}).database == url
    for secret in ("postgresql://forge:s3cret@db/forge", "postgresql://forge@db/forge?password=s3cret"):
        with pytest.raises(ConfigError, match="PGPASSWORD") as refused:
            parse_config({"forge": {"database": secret}})
        assert "s3cret" not in str(refused.value)
    for wrong in ("", "  ", 3, ["a.db"]):
        with pytest.raises(ConfigError, match="forge.database"):
            parse_config({"forge": {"database": wrong}})


def test_choose_log_reads_the_configuration_only_when_nothing_else_names_the_log():
    def configured() -> str:
        raise AssertionError("read the configuration although --db or FORGE_DB named the log")

    assert choose_log("a.db", {"FORGE_DB": "b.db"}, configured).source == "--db"
    assert choose_log(None, {"FORGE_DB": "b.db"}, configured).target == "b.db"
    assert choose_log("", {}, lambda: "c.db").source == "forge.toml"
    assert choose_log(None, {"FORGE_DB": ""}, lambda: None).target == "forge.db"
    secret = choose_log("postgresql://u:s3cret@h/d", {})
    assert secret.has_password and "s3cret" not in repr(secret) and secret.shown == "postgresql://u@h/d"
    assert not has_password("postgresql://u@h/d") and not has_password("weird:name.db")
    assert has_password("postgresql://u:p#w@h/d") and has_password("postgresql://u@h/d?password=x")
    assert printable_target(Path("x.db")) == "x.db"


def test_a_missing_driver_is_a_typed_error_with_the_install_command(cli, monkeypatch):
    import eventstore.postgres

    monkeypatch.setattr(eventstore.postgres, "psycopg", None)
    code, out, err = cli("sessions", "--db", "postgresql://forge:s3cret@127.0.0.1:1/forge")
    assert code == 2 and "driver is not installed" in err and "pip install" in err
    assert "s3cret" not in out + err


def test_a_database_without_a_log_is_no_event_log_and_stays_untouched(cli, postgres_url):
    for command in (["sessions"], ["show", "abc"], ["export", "abc"], ["replay", "abc", "--speed", "0"]):
        code, _, err = cli(*command, "--db", postgres_url)
        assert code == 2 and f"no event log at {postgres_url}" in err, err
    import psycopg

    with psycopg.connect(postgres_url) as conn:  # nothing was created by looking
        tables = conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        assert tables.fetchone() == (0,)


def test_an_unreachable_server_is_one_line_without_the_password(cli):
    code, out, err = cli("sessions", "--db", "postgresql://forge:s3cret@127.0.0.1:1/forge", "--log-level", "DEBUG")
    assert code == 2 and "cannot reach the event log at postgresql://forge@127.0.0.1:1/forge" in err
    assert "s3cret" not in out + err and "Traceback" not in err
