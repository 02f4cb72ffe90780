"""The throwaway PostgreSQL server the PostgreSQL backend's tests and benchmarks run against
(tools/throwaway_postgres.py), its fixtures (tests/conftest.py) and their skip-or-fail rule."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import postgres_support
import pytest
from postgres_support import ThrowawayPostgres, throwaway_postgres


def tables(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url) as connection:
        rows = connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").fetchall()
    return [row[0] for row in rows]


@pytest.fixture
def open_parent() -> Iterator[Path]:
    """A folder the server user can enter when we are root (pytest's tmp_path is closed to others),
    in memory when it can be: these tests start servers of their own, and a busy disk makes that slow."""
    folder = Path(tempfile.mkdtemp(prefix="forge-pg-test-", dir=throwaway_postgres.memory_parent()))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# ----- the server -----

def test_databases_are_new_empty_and_isolated(postgres_server: ThrowawayPostgres) -> None:
    import psycopg

    first, second = postgres_server.create_database(), postgres_server.create_database("forge_named_database")
    assert second == f"postgresql://postgres@127.0.0.1:{postgres_server.port}/forge_named_database"
    assert first != second and first.startswith(f"postgresql://postgres@127.0.0.1:{postgres_server.port}/")
    with psycopg.connect(first) as connection:
        connection.execute("CREATE TABLE events (id bigint PRIMARY KEY, body text)")
        connection.execute("INSERT INTO events VALUES (1, 'only in the first')")
    assert tables(first) == ["events"]
    assert tables(second) == []
    with psycopg.connect(second) as connection:
        assert connection.execute("SHOW server_encoding").fetchone() == ("UTF8",)
        assert connection.execute("SHOW fsync").fetchone() == ("off",)  # the tests' server: fast, not durable
        assert connection.execute("SHOW max_connections").fetchone() == ("200",)
    for url in (first, second):
        postgres_server.drop_database(postgres_server.database_name(url))
    assert tables(postgres_server.create_database("forge_named_database")) == []  # dropped: the name is free
    postgres_server.drop_database("forge_named_database")


def test_any_database_name_makes_a_working_url(postgres_server: ThrowawayPostgres) -> None:
    url = postgres_server.create_database("Événements / 2026?")
    assert postgres_server.database_name(url) == "Événements / 2026?"
    assert tables(url) == []
    postgres_server.drop_database("Événements / 2026?")


def test_the_maintenance_connection_comes_back_after_being_ended(postgres_server: ThrowawayPostgres) -> None:
    import psycopg

    postgres_server.create_database()  # the maintenance connection is open
    with psycopg.connect(postgres_server.url, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = 'postgres' AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
    assert tables(postgres_server.create_database()) == []


def test_the_unix_socket_is_in_the_servers_directory(postgres_server: ThrowawayPostgres) -> None:
    import psycopg

    sockets = [path for path in postgres_server.socket_dir.iterdir() if stat.S_ISSOCK(path.lstat().st_mode)]
    assert [path.name for path in sockets] == [f".s.PGSQL.{postgres_server.port}"]
    with psycopg.connect(host=str(postgres_server.socket_dir), port=postgres_server.port, user="postgres",
                         dbname="postgres") as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)


def test_postgres_url_is_a_fresh_database_per_test(postgres_url: str) -> None:
    import psycopg

    assert tables(postgres_url) == []
    with psycopg.connect(postgres_url) as connection:  # left with a table: the fixture drops the database
        connection.execute("CREATE TABLE left_behind (x int)")


def test_postgres_url_again_sees_nothing_of_the_previous_test(postgres_url: str) -> None:
    assert tables(postgres_url) == []


def test_a_durable_server_starts_past_a_taken_port_and_stops_leaving_nothing(
        open_parent: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    postgres_support.skip_unless_available()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()  # someone took the "free" port between the probe and the server's bind
    ports = iter([taken.getsockname()[1], throwaway_postgres.free_port()])
    monkeypatch.setattr(throwaway_postgres, "free_port", lambda: next(ports))
    with taken, ThrowawayPostgres(parent=open_parent) as server:  # the benchmarks' defaults: durable
        assert server.port != taken.getsockname()[1]
        assert "could not bind" in server.log_path.read_text()
        directory, url = server.directory, server.url
        with psycopg.connect(url) as connection:
            assert connection.execute("SHOW fsync").fetchone() == ("on",)
            assert connection.execute("SHOW synchronous_commit").fetchone() == ("on",)
        if os.geteuid() == 0:  # initdb and postgres refuse root: the data belongs to the server user
            assert (directory / "data").stat().st_uid == throwaway_postgres.pwd.getpwnam("postgres").pw_uid
        assert directory.parent == open_parent
    assert not directory.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=5)
    server.stop()  # again: nothing to do


def test_a_server_whose_owner_is_killed_is_stopped_and_removed_by_its_watchdog(open_parent: Path) -> None:
    postgres_support.skip_unless_available()
    script = ("import sys, time; sys.path.insert(0, sys.argv[1]); import throwaway_postgres as t; "
              "s = t.ThrowawayPostgres(fsync=False, parent=sys.argv[2]).start(); "
              "print(s.directory, s.port, flush=True); time.sleep(600)")
    owner = subprocess.Popen([sys.executable, "-c", script, str(Path(throwaway_postgres.__file__).parent),
                              str(open_parent)], stdout=subprocess.PIPE, text=True)
    try:
        directory, port = owner.stdout.readline().split()  # type: ignore[union-attr]
        assert Path(directory).exists()
    finally:
        owner.kill()  # no __exit__, no atexit: only the watchdog is left to clean up
        owner.wait()
    deadline = time.monotonic() + 60  # a bound on waiting, not a speed claim: the watchdog is asynchronous
    while Path(directory).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(directory).exists()
    with socket.socket() as probe:  # and nothing listens on its port any more
        assert probe.connect_ex(("127.0.0.1", int(port))) != 0


def test_a_server_that_cannot_start_says_why(open_parent: Path) -> None:
    postgres_support.skip_unless_available()
    server = ThrowawayPostgres(parent=open_parent, settings={"max_connections": "many"})
    with pytest.raises(throwaway_postgres.PostgresStartError) as failure:
        server.start()
    assert 'invalid value for parameter "max_connections"' in str(failure.value)  # the server log's tail
    assert list(open_parent.iterdir()) == []  # and its directory is gone


# ----- absent PostgreSQL or psycopg: skip, or fail where it is required -----

def test_missing_binaries_skip_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throwaway_postgres, "find_binaries", lambda: None)
    monkeypatch.delenv("FORGE_REQUIRE_POSTGRES", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        postgres_support.start_test_server()
    assert str(skipped.value) == "PostgreSQL is not installed: apt-get install -y postgresql"


def test_missing_binaries_fail_when_postgres_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throwaway_postgres, "find_binaries", lambda: None)
    monkeypatch.setenv("FORGE_REQUIRE_POSTGRES", "1")
    with pytest.raises(pytest.fail.Exception) as failed:
        postgres_support.start_test_server()
    assert "PostgreSQL is not installed: apt-get install -y postgresql" in str(failed.value)
    assert "FORGE_REQUIRE_POSTGRES is set" in str(failed.value)


def test_missing_psycopg_skips_or_fails_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throwaway_postgres, "find_binaries", lambda: Path("/usr/lib/postgresql/15/bin"))
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg raises ImportError
    monkeypatch.delenv("FORGE_REQUIRE_POSTGRES", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"psycopg is not installed: pip install"):
        postgres_support.start_test_server()
    monkeypatch.setenv("FORGE_REQUIRE_POSTGRES", "1")
    with pytest.raises(pytest.fail.Exception, match=r"psycopg is not installed"):
        postgres_support.start_test_server()


def test_starting_without_binaries_is_a_typed_error_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throwaway_postgres, "find_binaries", lambda: None)
    with pytest.raises(throwaway_postgres.PostgresNotInstalled, match="apt-get install -y postgresql"):
        ThrowawayPostgres().start()


# ----- finding the binaries -----

def test_find_binaries_prefers_path_then_the_newest_debian_version(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def programs(folder: Path) -> Path:
        folder.mkdir(parents=True)
        for name in ("initdb", "pg_ctl"):
            (folder / name).write_text("#!/bin/sh\n")
            (folder / name).chmod(0o755)
        return folder

    for version in ("9.6", "10", "15"):
        programs(tmp_path / "usr/lib/postgresql" / version / "bin")
    (tmp_path / "usr/lib/postgresql/16/bin").mkdir(parents=True)  # a client-only install: no initdb
    monkeypatch.setattr(throwaway_postgres, "DEBIAN_BIN_DIRS", str(tmp_path / "usr/lib/postgresql/*/bin"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert throwaway_postgres.find_binaries() == tmp_path / "usr/lib/postgresql/15/bin"
    on_path = programs(tmp_path / "opt/pg/bin")
    monkeypatch.setenv("PATH", str(on_path))
    assert throwaway_postgres.find_binaries() == on_path
