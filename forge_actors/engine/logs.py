"""Which event log a command uses, how it may be shown, and moving a log to another backend.

The log is named by what a person writes: a file path (SQLite) or a ``postgresql://`` URL
(PostgreSQL). Every surface chooses it the same way (``choose_log``)::

    --db PATH|URL   >   $FORGE_DB   >   forge.toml [forge] database = "..."   >   ./forge.db

A URL may hold a password. It is used to connect and shown nowhere: ``printable_target`` is
how a log is named in notes, hints, errors, banners and JSON (the URL without its password), and
``has_password`` tells a surface not to echo the target back (suggest ``export FORGE_DB=...``
without it, the password in ``PGPASSWORD`` or ``~/.pgpass``, instead).

``migrate_log`` copies one log into another (``forge migrate-log SRC DST``): every event with its
position, version and time, resumable (``eventstore.copy_log``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Literal

import msgspec

from eventstore import CopyReport, copy_log, is_database_url, open_log, printable_target, url_secrets

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_COPY_BATCH", "DEFAULT_LOG", "CopyReport", "LogChoice", "LogSource", "choose_log", "has_password", "is_database_url",
    "migrate_log", "printable_target", "same_log",
]

#: The log when nothing names one: ``forge.db`` in the current folder.
DEFAULT_LOG = "forge.db"
#: Where the chosen log came from.
LogSource = Literal["--db", "FORGE_DB", "forge.toml", "default"]
#: Events per transaction when copying a log.
DEFAULT_COPY_BATCH = 5000


class LogChoice(msgspec.Struct, frozen=True):
    """The log a command uses: ``target`` to open it (it may hold a password: never print it),
    ``source`` where it was named. ``shown`` is how to print it."""

    target: str
    source: LogSource

    @property
    def shown(self) -> str:
        return printable_target(self.target)

    @property
    def has_password(self) -> bool:
        return has_password(self.target)

    def __repr__(self) -> str:  # never the password, even in a traceback's locals
        return f"LogChoice({self.shown!r}, source={self.source!r})"


def choose_log(given: str | None, environ: dict[str, str] | os._Environ[str],
               configured: Callable[[], str | None] = lambda: None) -> LogChoice:
    """The log named by ``--db`` (``given``), else ``$FORGE_DB``, else forge.toml's ``database``
    (``configured`` is called only then: the configuration is read only when needed), else
    ``./forge.db``. An empty value counts as not given."""
    if given:
        return LogChoice(given, "--db")
    if environ.get("FORGE_DB"):
        return LogChoice(environ["FORGE_DB"], "FORGE_DB")
    from_file = configured()
    if from_file:
        return LogChoice(from_file, "forge.toml")
    return LogChoice(DEFAULT_LOG, "default")


def has_password(target: str | os.PathLike[str]) -> bool:
    """Whether ``target`` is a database URL that holds a password (in its user part, or as a
    ``password=`` parameter)."""
    # The store's own reading of a URL's passwords: urlsplit would end the user part at a '#' or
    # '?' inside the password, and call such a URL password-free.
    return bool(url_secrets(target))


def same_log(a: str, b: str) -> bool:
    """Whether two targets name the same log (the same file, or the same URL)."""
    if is_database_url(a) or is_database_url(b):
        return a == b
    return os.path.realpath(a) == os.path.realpath(b)


def migrate_log(source: str, target: str, *, batch_size: int = DEFAULT_COPY_BATCH,
                on_batch: Callable[[int, int], None] | None = None) -> CopyReport:
    """Copy every event of the log at ``source`` (which must exist) into the log at ``target``
    (created when missing), one transaction per ``batch_size`` events; ``on_batch(last copied
    position, source's last position)`` after each. A target holding the start of the source
    (an interrupted copy) receives the rest.

    Raises NotAnEventLogError (``source`` is not a log), LogCopyError (``target`` holds events that
    are not the start of ``source``), ValueError (both name the same log), and the logs' errors.
    """
    if same_log(source, target):
        raise ValueError(f"{printable_target(source)} is both the source and the target: name another target")
    with contextlib.closing(open_log(source, create=False)) as src:
        total = src.last_position()
        with contextlib.closing(open_log(target, create=True)) as dst:
            report = copy_log(src, dst, batch_size=batch_size,
                              on_batch=None if on_batch is None else (lambda last: on_batch(last, total)))
    logger.info("copied %d events from %s to %s (%d there already; last position %d)", report.copied,
                printable_target(source), printable_target(target), report.already_there, report.last_position)
    return report
