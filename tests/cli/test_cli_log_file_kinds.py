"""`forge` given a FIFO (or a socket, a folder, a device) as its log, by --db or FORGE_DB: one line
saying what the path is, exit 2, at once (the bug waited for the FIFO's writer for ever)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import clean_env
from fifo_support import guarded_fifo

FORGE = str(Path(sys.executable).with_name("forge"))


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    with guarded_fifo(tmp_path / "forge.db") as path:
        yield path


def refusal(err: str, path: Path | str, kind: str) -> None:
    lines = err.strip().splitlines()
    assert lines == [f"forge: {path} is not an event log: it is {kind}, not a regular file. Point to an event log "
                     "file, or to a path that does not exist yet to create one."], err


@pytest.mark.parametrize("command", [["sessions"], ["show", "abc"], ["run", "Plan a garden", "-p", "mock:alice"]])
def test_a_fifo_given_with_db_is_refused_in_one_line(cli, fifo, command):
    code, out, err = cli(*command, "--db", str(fifo))
    assert code == 2 and out == ""
    refusal(err, fifo, "a named pipe (FIFO)")


def test_a_fifo_given_in_forge_db_is_refused_too(cli, fifo):
    code, _, err = cli("sessions", env={"FORGE_DB": str(fifo)})
    assert code == 2
    refusal(err, fifo, "a named pipe (FIFO)")


def test_forge_serve_on_a_fifo_exits_2_instead_of_waiting(fifo):
    done = subprocess.run([FORGE, "serve", "--db", str(fifo), "--port", "0"], cwd=fifo.parent, env=clean_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    refusal(done.stderr, fifo, "a named pipe (FIFO)")


def test_a_folder_and_a_device_are_refused_too(cli, tmp_path):
    (tmp_path / "logs").mkdir()
    code, _, err = cli("sessions", "--db", "logs")
    assert code == 2
    refusal(err, "logs", "a folder")
    code, _, err = cli("run", "Plan a garden", "-p", "mock:alice", "--db", os.devnull)
    assert code == 2
    refusal(err, os.devnull, "a character device")
