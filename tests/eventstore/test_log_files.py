"""Log files that are not ours, a disk that is full, a file that is damaged: SQLite files only
(the PostgreSQL counterparts, databases that are not ours and servers that go away, are in test_postgres.py).

Each case gives one clear line (CLI: ``forge: ...``, exit 2; API: a typed EventStoreError),
never a traceback, and never changes a file it refuses. A full disk is simulated with
``PRAGMA max_page_count`` on the store's write connection (tests/eventstore/full_disk_worker.py for the
command line), which makes SQLite answer SQLITE_FULL exactly as a full disk does.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from eventstore import CorruptLogError, DiskFullError, EventStore, LogWriteError, NotAnEventLogError
from forge_actors.engine import Forge

HERE = Path(__file__).resolve().parent
FORGE = str(Path(sys.executable).with_name("forge"))
WORKER = str(HERE / "full_disk_worker.py")
TWO = ["-p", "mock:alice", "-p", "mock:bob"]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "FORGE_DB", "FORGE_CONFIG")}


def forge(*args: str, cwd: Path, free_pages: int | None = None) -> subprocess.CompletedProcess:
    """The forge command; with ``free_pages``, on a disk that lets the log grow that many pages."""
    argv = [FORGE, *args] if free_pages is None else [sys.executable, WORKER, str(free_pages), *args]
    return subprocess.run(argv, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=120)


def one_line_error(done: subprocess.CompletedProcess) -> str:
    """The run's stderr ends with exactly one ``forge:`` line, and holds no traceback."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and "Error:" not in done.stderr.replace("forge:", ""), done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("forge: ") and done.stderr.count("forge: ") == 1, done.stderr
    return last


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def journal_mode(path: Path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()


def run_session(path: Path, max_rounds: int = 2) -> str:
    """A finished mock deliberation in the log at ``path``; returns its id."""
    with Forge(str(path)) as engine:
        session_id = engine.create_session("Plan a garden", ["mock:alice", "mock:bob"], max_rounds=max_rounds,
                                           seed=7)
        for _ in engine.deliberate(session_id):
            pass
        assert engine.state(session_id).ended
    return session_id


@pytest.fixture
def limited_disk(monkeypatch):
    """``limit(n)``: every store opened from now on may grow its file by ``n`` pages only."""
    connect = EventStore._connect
    free: list[int] = []

    def connect_on_a_full_disk(self: EventStore, write: bool = False) -> sqlite3.Connection:
        conn = connect(self, write)
        if write and free:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {max(pages + free[-1], 1)}")
        return conn

    monkeypatch.setattr(EventStore, "_connect", connect_on_a_full_disk)
    return free.append


# -- files that are not ours --------------------------------------------------------------------------


@pytest.fixture
def foreign_log(tmp_path) -> Path:
    """Another program's SQLite file: an events table with our very columns, but no marker; WAL off."""
    path = tmp_path / "theirs.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE events (position INTEGER PRIMARY KEY, stream_id TEXT, version INTEGER, "
                 "type TEXT, data TEXT, recorded_at INTEGER)")
    conn.execute("INSERT INTO events VALUES (1, 's', 1, 'SessionCreated', '{}', 0)")
    conn.commit()
    conn.close()
    assert journal_mode(path) == "delete"
    return path


def assert_untouched(path: Path, before: str) -> None:
    assert digest(path) == before
    assert journal_mode(path) == "delete"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no -wal, -shm, -journal


@pytest.mark.parametrize("command", [["sessions"], ["show", "s"], ["export", "s"]])
def test_read_only_commands_refuse_a_foreign_events_table_and_leave_it_as_it_was(foreign_log, command):
    before = digest(foreign_log)
    done = forge(*command, "--db", str(foreign_log), cwd=foreign_log.parent)
    line = one_line_error(done)
    assert "is not an event log" in line and "its events table was not made by forge_actors" in line
    assert_untouched(foreign_log, before)


def test_the_engine_refuses_a_foreign_events_table_even_when_it_may_create(foreign_log):
    before = digest(foreign_log)
    for create in (True, False):
        with pytest.raises(NotAnEventLogError, match="not made by forge_actors"):
            Forge(str(foreign_log), create=create)
    assert_untouched(foreign_log, before)


def test_forge_run_does_not_take_over_a_foreign_file(foreign_log):
    before = digest(foreign_log)
    line = one_line_error(forge("run", "Plan a garden", *TWO, "--db", str(foreign_log), cwd=foreign_log.parent))
    assert "not made by forge_actors" in line
    assert_untouched(foreign_log, before)


def test_our_own_logs_keep_opening_read_only_and_writable(tmp_path):
    path = tmp_path / "forge.db"
    session_id = run_session(path)
    for create in (False, True):
        with Forge(str(path), create=create) as engine:
            assert engine.state(session_id).status in ("converged", "max_rounds")
            assert [s.session_id for s in engine.summaries()] == [session_id]


# -- a full disk -------------------------------------------------------------------------------------------


def test_a_full_disk_at_create_is_one_line_and_exit_2(tmp_path):
    line = one_line_error(forge("run", "Plan a garden", *TWO, cwd=tmp_path, free_pages=0))
    assert line == ("forge: disk full writing forge.db: the last appends were not written; nothing committed "
                    "was lost; free space and try again")
    # Once there is space, the same command simply works on the same (empty) file.
    done = forge("run", "Plan a garden", *TWO, "--max-iterations", "1", cwd=tmp_path)
    assert done.returncode in (0, 1), done.stderr


def test_a_full_disk_mid_run_stops_cleanly_and_resume_finishes_once_there_is_space(tmp_path):
    done = forge("run", "Plan a garden", *TWO, "--seed", "7", "--max-iterations", "2", cwd=tmp_path, free_pages=14)
    line = one_line_error(done)
    events = [json.loads(text) for text in done.stdout.splitlines()]
    session_id = events[0]["session_id"]
    assert line == (f"forge: disk full writing forge.db: the last appends were not written; nothing committed was "
                    f"lost; free space and resume (forge resume {session_id})")
    assert events[-1]["type"] != "SessionEnded"
    with Forge(str(tmp_path / "forge.db"), create=False) as engine:
        state = engine.state(session_id)
        # Stopped, not failed: before or after its first round began, as the batches fell.
        assert state.status in ("created", "running") and not state.ended
        committed = [r.position for r in engine._store.read_stream(session_id)]
    assert [e["position"] for e in events] == committed  # what it showed is what the log holds

    resumed = forge("resume", session_id, cwd=tmp_path)
    assert resumed.returncode in (0, 1), resumed.stderr
    with Forge(str(tmp_path / "forge.db"), create=False) as engine:
        assert engine.state(session_id).status in ("converged", "max_rounds")
        assert engine.verify(session_id) == []


def test_read_only_commands_read_a_valid_log_on_a_full_disk(tmp_path):
    session_id = run_session(tmp_path / "forge.db")
    before = digest(tmp_path / "forge.db")
    # The summary projection has never run on this log, so `sessions` would have to write it.
    listed = forge("sessions", cwd=tmp_path, free_pages=0)
    assert listed.returncode == 0, listed.stderr
    row = json.loads(listed.stdout)
    assert row["session_id"] == session_id and row["status"] in ("converged", "max_rounds") and row["rounds"] >= 1
    assert "Traceback" not in listed.stderr and "read them from the log instead" in listed.stderr
    exported = forge("export", session_id, "--format", "md", cwd=tmp_path, free_pages=0)
    assert exported.returncode == 0 and "Plan a garden" in exported.stdout
    assert digest(tmp_path / "forge.db") == before


def test_deliberate_raises_the_full_disk_and_the_session_is_not_recorded_as_failed(tmp_path, limited_disk):
    path = str(tmp_path / "forge.db")
    limited_disk(12)
    with Forge(path) as engine:
        session_id = engine.create_session("Plan a garden", ["mock:alice", "mock:bob"], max_rounds=2, seed=7)
        seen = []
        with pytest.raises(DiskFullError) as info:
            for recorded in engine.deliberate(session_id):
                seen.append(recorded.position)
        assert str(info.value).endswith(f"free space and resume session {session_id}")
        assert session_id not in engine.running_sessions()
        state = engine.state(session_id)
        # Stopped where the disk filled (before or after its first round began, as the batches
        # fell): neither ended nor failed.
        assert not state.ended and state.status in ("created", "running")
        assert engine._writer.write_failure(session_id) is not None
    limited_disk(10_000)  # space again
    with Forge(path) as engine:
        for _ in engine.resume(session_id):
            pass
        assert engine.state(session_id).ended and engine.state(session_id).status != "failed"
        assert engine._writer.write_failure(session_id) is None
        assert engine.verify(session_id) == []


def test_summaries_that_cannot_be_saved_are_folded_from_the_log(tmp_path, monkeypatch, caplog):
    path = tmp_path / "forge.db"
    first = run_session(path)
    with Forge(str(path)) as engine:
        engine.summaries()  # the projection holds the first session...
    second = run_session(path)  # ...and is behind the second
    with Forge(str(path)) as engine:
        def full(*args: object) -> None:
            raise DiskFullError(str(path))

        monkeypatch.setattr(engine._store, "write_transaction", full)
        folded = engine.summaries()
    assert "could not save the session summaries" in caplog.text
    with Forge(str(path)) as engine:
        projected = engine.summaries()
    assert folded == projected and [s.session_id for s in folded] == [first, second]


# -- damaged files -----------------------------------------------------------------------------------------


def damage(path: Path, page_size: int = 4096) -> None:
    """Overwrite the start of a few pages in the middle of the file (their b-tree headers)."""
    pages = path.stat().st_size // page_size
    assert pages >= 8, "the log should span several pages"
    with path.open("r+b") as file:
        for page in range(pages // 3, pages // 3 + 3):
            file.seek(page * page_size)
            file.write(b"\xff" * 64)


@pytest.fixture(scope="module")
def damaged_log(tmp_path_factory) -> tuple[Path, str]:
    """One log for the module (the tests only read it): a whole session, then a few pages clobbered."""
    path = tmp_path_factory.mktemp("damaged") / "forge.db"
    session_id = run_session(path, max_rounds=3)
    damage(path)
    return path, session_id


@pytest.mark.parametrize("command", [["sessions"], ["show", "ID"], ["export", "ID"], ["resume", "ID"]])
def test_commands_on_a_damaged_log_say_so_in_one_line(damaged_log, command):
    path, session_id = damaged_log
    done = forge(*[session_id if arg == "ID" else arg for arg in command], "--db", str(path), cwd=path.parent)
    line = one_line_error(done)
    assert f"{path} is damaged (database disk image is malformed)" in line and ".recover" in line


def test_the_api_on_a_damaged_log_raises_a_typed_error(damaged_log):
    path, _ = damaged_log
    with pytest.raises(CorruptLogError) as info:  # at opening: quick_check reads every page
        Forge(str(path), create=False)
    assert info.value.path == str(path) and "sqlite3" in str(info.value)


def test_a_sqlite_header_over_garbage_is_a_damaged_file(tmp_path):
    path = tmp_path / "forge.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 5000)
    for create in (False, True):
        with pytest.raises(CorruptLogError, match=r"is damaged \(its header names no valid page size \(65535\)\)"):
            EventStore(path, create=create)


def test_with_next_step_keeps_the_kind_and_the_cause():
    error = DiskFullError("forge.db")
    error.__cause__ = sqlite3.OperationalError("database or disk is full")
    again = error.with_next_step("resume (forge resume abc)")
    assert type(again) is DiskFullError and again.__cause__ is error.__cause__
    assert str(again).endswith("free space and resume (forge resume abc)")
    assert isinstance(again, LogWriteError) and again.path == "forge.db"
