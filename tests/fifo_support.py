"""A named pipe for the tests that give one as a log: should anything wait to read it (the bug these
tests guard against), a guard feeds it after a while, again and again, so that a regression fails
its test instead of hanging the run."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path

#: A guard, not a measure: the bug waited for the FIFO's writer for ever.
UNBLOCK_AFTER_SECONDS = 30.0


@contextlib.contextmanager
def guarded_fifo(path: Path) -> Iterator[Path]:
    """A FIFO made at ``path``; on leaving, fails (AssertionError) if anything opened it to read."""
    os.mkfifo(path)
    stop = threading.Event()
    fed = threading.Event()

    def feed() -> None:
        if stop.wait(UNBLOCK_AFTER_SECONDS):
            return
        while not stop.wait(0.5):
            try:  # opening the writing end without waiting succeeds only while a reader has it open
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                continue
            fed.set()
            try:
                os.write(fd, bytes(4096))  # zeros: not a SQLite header, whatever reads them gives up
            except BlockingIOError:  # the pipe is full: the reader is not reading, closing will do
                pass
            finally:
                os.close(fd)

    guard = threading.Thread(target=feed, name="fifo-guard", daemon=True)
    guard.start()
    try:
        yield path
    finally:
        stop.set()
        guard.join()
    assert not fed.is_set(), f"{path} was opened for reading"
