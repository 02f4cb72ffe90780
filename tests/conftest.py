"""Fixtures shared by the test folders (helpers that are not fixtures: support.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres_support import ThrowawayPostgres, start_test_server
from support import FAST_RETRIES

from forge_actors.engine import Forge
from forge_actors.providers import registry


@pytest.fixture
def forge(tmp_path: Path) -> Iterator[Forge]:
    """An engine on a fresh log in ``tmp_path``, with fast retries; closed after the test."""
    with Forge(str(tmp_path / "forge.db"), retry_policy=FAST_RETRIES) as engine:
        yield engine


@pytest.fixture(autouse=True)
def _provider_registry_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kinds a test adds with register_provider() are gone after it: the registry is process-wide,
    and a test that lists the known kinds must not depend on which tests ran before it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[ThrowawayPostgres]:
    """One throwaway PostgreSQL server for the whole run (fsync off), started by the first test that
    asks; skipped when PostgreSQL or psycopg is missing, failed instead when FORGE_REQUIRE_POSTGRES=1."""
    server = start_test_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_server() -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL server of the test's own, to stop and start again (the run's shared one stays up)."""
    server = start_test_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: ThrowawayPostgres) -> Iterator[str]:
    """The URL of a new, empty database of this test's own on the run's server; dropped afterwards
    (connections the test left open are ended)."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(postgres_server.database_name(url))
