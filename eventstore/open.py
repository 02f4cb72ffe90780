"""Opening a log by what a user writes: a file path (SQLite) or a ``postgresql://`` URL.

``printable_target`` is how a target may be shown anywhere (logs, errors, the CLI, exports):
a URL loses its password, whether given in the URL or as a ``password=`` parameter. The
password itself stays in the caller's string and the driver's connection, nowhere else.
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any

from eventstore.log import EventLog

_SCHEMES = ("postgresql", "postgres")


def is_database_url(target: str | os.PathLike[str]) -> bool:
    """Whether ``target`` names a PostgreSQL database rather than a SQLite file."""
    text = os.fspath(target)
    return isinstance(text, str) and text.partition("://")[0].lower() in _SCHEMES and "://" in text


def printable_target(target: str | os.PathLike[str]) -> str:
    """``target`` fit to print: a file path as it is, a URL without its password."""
    text = os.fspath(target)
    if not is_database_url(text):
        return str(text)
    parts = urllib.parse.urlsplit(text)
    netloc = parts.netloc
    userinfo, at, hostinfo = netloc.rpartition("@")
    if at:
        user = userinfo.partition(":")[0]
        netloc = f"{user}@{hostinfo}" if user else hostinfo
    # The query as written (libpq reads it back), but for a password parameter's value.
    query = "&".join(
        f"{piece.partition('=')[0]}=***" if urllib.parse.unquote(piece.partition("=")[0]).lower() == "password"
        else piece
        for piece in parts.query.split("&")
    ) if parts.query else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def open_log(target: str | os.PathLike[str], *, create: bool = True, **options: Any) -> EventLog:
    """The log at ``target``: a PostgreSQL database for a ``postgresql://`` URL, else a SQLite file.

    ``options`` go to the backend (``EventStore`` or ``PostgresEventStore``); ``synchronous`` is
    SQLite's alone (PostgreSQL's durability is the server's ``synchronous_commit``).
    """
    if is_database_url(target):
        from eventstore.postgres import PostgresEventStore  # psycopg is only needed for PostgreSQL

        options.pop("synchronous", None)
        return PostgresEventStore(os.fspath(target), create=create, **options)
    from eventstore.sqlite import EventStore

    return EventStore(target, create=create, **options)
