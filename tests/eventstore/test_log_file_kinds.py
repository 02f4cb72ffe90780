"""A SQLite log is a regular file: a FIFO, a socket, a folder or a device given as the log is refused
with NotAnEventLogError before SQLite (or anything else) opens it, so nothing waits for ever on a
FIFO's writer; a symbolic link is followed to the file it leads to, and one leading nowhere is refused.
(The command line's side: tests/cli/test_cli_log_file_kinds.py.)"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fifo_support import guarded_fifo

from eventstore import EventStore, NewEvent, NotAnEventLogError, open_log
from forge_actors.engine import Forge


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    with guarded_fifo(tmp_path / "forge.db") as path:
        yield path


def a_socket(tmp_path: Path) -> Path:
    path = tmp_path / "forge.db"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
    return path


def a_folder(tmp_path: Path) -> Path:
    path = tmp_path / "forge.db"
    path.mkdir()
    return path


def a_device(tmp_path: Path) -> Path:
    return Path(os.devnull)


@pytest.mark.parametrize("create", [True, False])
def test_a_fifo_is_refused_without_being_opened(fifo, create):
    with pytest.raises(NotAnEventLogError, match=r"it is a named pipe \(FIFO\), not a regular file"):
        EventStore(fifo, create=create)
    with pytest.raises(NotAnEventLogError, match="named pipe"):
        Forge(str(fifo), create=create)
    assert fifo.is_fifo() and sorted(p.name for p in fifo.parent.iterdir()) == ["forge.db"]


@pytest.mark.parametrize(("make", "kind"), [(a_socket, "a socket"), (a_folder, "a folder"),
                                             (a_device, "a character device")])
def test_other_things_that_are_not_files_are_refused(tmp_path, make: Callable[[Path], Path], kind):
    path = make(tmp_path)
    for create in (True, False):
        with pytest.raises(NotAnEventLogError, match=f"it is {kind}, not a regular file") as info:
            open_log(path, create=create)
        assert info.value.path == str(path) and "Point to an event log file" in str(info.value)
    assert not Path(f"{path}-wal").exists() and not Path(f"{path}-journal").exists()


def test_a_symbolic_link_to_a_log_is_followed_and_its_wal_lives_beside_the_file(tmp_path):
    target = tmp_path / "data" / "forge.db"
    target.parent.mkdir()
    with EventStore(target) as store:
        store.append("s", [NewEvent("Thing", "{}")])
    link = tmp_path / "forge.db"
    link.symlink_to(target)
    with EventStore(link, create=False) as store:
        store.append("s", [NewEvent("Thing", "{}")])
        assert [e.version for e in store.read_stream("s")] == [1, 2]
        assert Path(f"{target}-wal").exists() and not Path(f"{link}-wal").exists()
    assert link.is_symlink()


def test_a_symbolic_link_that_leads_nowhere_is_refused_and_nothing_is_created(tmp_path):
    link = tmp_path / "forge.db"
    link.symlink_to(tmp_path / "gone.db")
    for create in (True, False):
        with pytest.raises(NotAnEventLogError, match="it is a symbolic link to '.*gone.db', which does not exist"):
            EventStore(link, create=create)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forge.db"]
