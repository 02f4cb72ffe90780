"""The throwaway PostgreSQL server of the tests (tools/throwaway_postgres.py), started or skipped.

The fixtures are in conftest.py (``postgres_server``, ``postgres_url``); this holds the rule they
follow, importable by name so that its own test can call it: when PostgreSQL or psycopg is missing,
skip with the command that installs it, unless FORGE_REQUIRE_POSTGRES=1 (CI sets it in .ci/run),
where a skip would hide that nothing was tested: then fail.
"""

from __future__ import annotations

import sys
from pathlib import Path

import support

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import throwaway_postgres  # noqa: E402  (tools/throwaway_postgres.py)

REQUIRE_ENV = "FORGE_REQUIRE_POSTGRES"
ThrowawayPostgres = throwaway_postgres.ThrowawayPostgres
PSYCOPG_HINT = "pip install -e '.[postgres]'"


def missing_requirement() -> str | None:
    """What is missing to run a server and talk to it (with how to install it), or None."""
    if throwaway_postgres.find_binaries() is None:
        return f"PostgreSQL is not installed: {throwaway_postgres.INSTALL_HINT}"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return f"psycopg is not installed: {PSYCOPG_HINT}"
    return None


def unavailable(reason: str) -> None:
    """Skip the test, or fail it when REQUIRE_ENV says it must run here."""
    support.unavailable(reason, REQUIRE_ENV)


def skip_unless_available() -> None:
    """For a test that starts a server of its own (not the run's shared one)."""
    reason = missing_requirement()
    if reason is not None:
        unavailable(reason)


def start_test_server() -> throwaway_postgres.ThrowawayPostgres:
    """A started server set for speed: no fsync, no synchronous commit, data in memory when /dev/shm has room."""
    skip_unless_available()
    return throwaway_postgres.ThrowawayPostgres(
        fsync=False, synchronous_commit=False, parent=throwaway_postgres.memory_parent()).start()


def stop_keeping_data(server: throwaway_postgres.ThrowawayPostgres) -> None:
    """Stop ``server`` (fast shutdown) with its data kept, to start it again on the same port."""
    server._close_admin()
    result = server._pg_ctl(server.directory, "stop", "-m", "fast", "-w", "-t", "30")
    assert result.returncode == 0, result.stdout


def start_again(server: throwaway_postgres.ThrowawayPostgres) -> None:
    result = server._pg_ctl(server.directory, "start", "-w", "-t", "60", "-l", str(server.log_path),
                            "-o", f"-p {server.port}")
    assert result.returncode == 0, result.stdout
