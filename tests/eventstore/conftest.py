"""Fixtures of the event-log contract suite: every contract test runs on both backends.

``log_target`` is where a log lives (a SQLite file path, or the URL of a fresh PostgreSQL database
of the test's own on the run's throwaway server); ``store`` is a log opened there with ``open_log``.
Their ids are ``sqlite`` and ``postgresql`` (``pytest -k sqlite`` runs one backend). A test about
SQLite files only (pragmas, file shapes, a full disk, damaged pages) asks for ``sqlite_store`` or
``tmp_path`` instead, and says so in its name or docstring.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import FakeWallClock

from eventstore import EventLog, EventStore, LogLeases, open_log

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def log_target(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Where a new, empty log may be made: a file path, or a fresh database's URL (the server is
    started, or the test skipped, only when a PostgreSQL case asks)."""
    if backend == "sqlite":
        return str(tmp_path / "log.db")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(log_target: str) -> Iterator[EventLog]:
    log = open_log(log_target)
    yield log
    log.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[EventStore]:
    """For the tests about SQLite files alone."""
    log = EventStore(tmp_path / "log.db")
    yield log
    log.close()



@pytest.fixture
def leases(store: EventLog) -> LogLeases:
    """The leases of ``store``, on a wall clock that moves only when a test says so."""
    return LogLeases(store, clock=FakeWallClock())
