"""A damaged SQLite log is found before anything is written to it (SQLite files only).

Opening looks at the file through a read-only connection first: its header against its size, then
SQLite's quick_check of every page (logs up to ``QUICK_CHECK_MAX_BYTES``; larger ones get both ends
of the table and of its index). Damage found later, by a read, stops every write from then on. Each
case checks the file byte for byte, and that no -wal with content appeared. (The command line on
such files: tests/cli/test_damaged_log_commands.py.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from damage_support import cut_mid_page, cut_to_half, fingerprint, overwrite_header, overwrite_pages

from eventstore import CorruptLogError, EventStore, NewEvent
from eventstore import sqlite as sqlite_backend
from forge_actors.engine import Forge


@pytest.fixture(scope="module")
def healthy_log(tmp_path_factory) -> Path:
    """A real log (a few finished mock sessions) that the tests copy, then damage."""
    path = tmp_path_factory.mktemp("healthy") / "forge.db"
    with Forge(str(path)) as engine:
        for seed in (1, 2, 3):
            session_id = engine.create_session("Plan a garden", ["mock:alice", "mock:bob"], max_iterations=2,
                                               seed=seed)
            for _ in engine.deliberate(session_id):
                pass
    return path


@pytest.fixture
def log_copy(healthy_log, tmp_path) -> Path:
    path = tmp_path / "forge.db"
    shutil.copyfile(healthy_log, path)
    return path


@pytest.mark.parametrize(("damage", "reason"), [
    (overwrite_pages, "database disk image is malformed"),
    (overwrite_header, "its header names no valid page size (3)"),
    (cut_to_half, "pages its header counts: it was cut short"),
    (cut_mid_page, "is not a whole number of 4096-byte pages: it was cut short"),
])
def test_a_damaged_log_is_refused_on_opening_and_left_as_it_was(log_copy, damage, reason):
    damage(log_copy)
    before = fingerprint(log_copy)
    for create in (True, False):
        with pytest.raises(CorruptLogError) as info:
            EventStore(log_copy, create=create)
        message = str(info.value)
        assert message.startswith(f"{log_copy} is damaged (") and reason in message
        assert f"sqlite3 {log_copy} .recover | sqlite3 recovered.db" in message
        with pytest.raises(CorruptLogError):
            Forge(str(log_copy), create=create)
    assert fingerprint(log_copy) == before


def corrupt_one_row(path: Path, marker: bytes, replacement: bytes) -> None:
    """Change the bytes of one row's data in place (the page's structure stays as it was)."""
    content = path.read_bytes()
    at = content.index(marker)
    with path.open("r+b") as file:
        file.seek(at)
        file.write(replacement)


def test_a_row_whose_text_is_no_longer_utf8_is_damage_and_stops_every_write(tmp_path):
    path = tmp_path / "forge.db"
    with EventStore(path) as store:
        store.append("s", [NewEvent("Thing", '{"n": "MARKER-1"}'), NewEvent("Thing", '{"n": "fine"}')])
    corrupt_one_row(path, b"MARKER-1", b"\xff\xfeRKER-1")
    before = fingerprint(path)
    with EventStore(path, create=False) as store:  # quick_check checks structure, not the bytes of a row
        with pytest.raises(CorruptLogError, match=r"a stored text is not UTF-8 \(in the column 'data'\)") as info:
            list(store.read_stream("s"))
        assert "\ufffd" not in str(info.value) and "RKER" not in str(info.value)  # the garbage is not quoted
        with pytest.raises(CorruptLogError, match="not UTF-8"):
            store.append("s", [NewEvent("Thing", "{}")])
        with pytest.raises(CorruptLogError, match="not UTF-8"):
            with store.write_transaction() as tx:
                tx.execute("CREATE TABLE IF NOT EXISTS later (x INTEGER)")
    assert fingerprint(path) == before


def test_a_large_log_gets_the_cheap_checks_and_stops_writing_at_the_first_damage_read(log_copy, monkeypatch):
    monkeypatch.setattr(sqlite_backend, "QUICK_CHECK_MAX_BYTES", 0)  # as if it were larger than the limit
    overwrite_pages(log_copy)
    before = fingerprint(log_copy)
    with EventStore(log_copy, create=False) as store:  # both ends of the table and its index are sound
        with pytest.raises(CorruptLogError, match="database disk image is malformed"):
            list(store.read_all())
        with pytest.raises(CorruptLogError, match="malformed"):
            store.append("new", [NewEvent("Thing", "{}")])
    assert fingerprint(log_copy) == before


def test_a_healthy_log_opens_and_takes_appends_through_either_check(log_copy, monkeypatch):
    for limit in (sqlite_backend.QUICK_CHECK_MAX_BYTES, 0):
        monkeypatch.setattr(sqlite_backend, "QUICK_CHECK_MAX_BYTES", limit)
        with EventStore(log_copy, create=False) as store:
            last = store.last_position()
            assert last > 0 and store.append(f"s{limit}", [NewEvent("Thing", "{}")]).last_position == last + 1
