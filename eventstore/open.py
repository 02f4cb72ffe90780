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
    # The password goes first, by the same reading as url_secrets: a '#' or '?' in it would
    # otherwise end the URL's authority for urlsplit and show the rest as a fragment or a query.
    scheme, _, rest = text.partition("://")
    head, slash, tail = rest.partition("/")
    userinfo, at, hostinfo = head.rpartition("@")
    if at:
        user = userinfo.partition(":")[0]
        text = f"{scheme}://{user}@{hostinfo}{slash}{tail}" if user else f"{scheme}://{hostinfo}{slash}{tail}"
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:  # e.g. an unclosed IPv6 bracket: nothing of it can be shown safely
        return f"{text.partition('://')[0]}://(a URL that cannot be parsed)"
    # The query as written (libpq reads it back), but for a password parameter's value.
    query = "&".join(
        f"{piece.partition('=')[0]}=***" if urllib.parse.unquote(piece.partition("=")[0]).lower() == "password"
        else piece
        for piece in parts.query.split("&")
    ) if parts.query else ""
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def url_secrets(target: str | os.PathLike[str]) -> tuple[str, ...]:
    """The password(s) a database URL holds, as written and decoded (for ``redact``); () for a path."""
    text = os.fspath(target)
    if not is_database_url(text):
        return ()
    found: set[str] = set()
    userinfo, at, _ = text.partition("://")[2].partition("/")[0].rpartition("@")
    if at and ":" in userinfo:
        found.add(userinfo.partition(":")[2])
    query = text.partition("?")[2].partition("#")[0]
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if urllib.parse.unquote(key).lower() == "password":
            found.add(value)
    found |= {urllib.parse.unquote(secret) for secret in found}
    # Longest first: a password that contains another candidate is hidden whole.
    return tuple(sorted((secret for secret in found if secret), key=len, reverse=True))


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every one of ``secrets`` replaced by ``***``: for messages of the driver,
    which may quote the part of a URL it could not parse (the password included)."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def open_log(target: str | os.PathLike[str], *, create: bool = True, **options: Any) -> EventLog:
    """The log at ``target``: a PostgreSQL database for a ``postgresql://`` URL, else a SQLite file.

    ``options`` go to the backend (``EventStore`` or ``PostgresEventStore``); ``synchronous`` keeps
    SQLite's meaning on both (on PostgreSQL it sets the append transactions' ``synchronous_commit``).
    """
    if is_database_url(target):
        from eventstore.postgres import PostgresEventStore  # psycopg is only needed for PostgreSQL

        return PostgresEventStore(os.fspath(target), create=create, **options)
    from eventstore.sqlite import EventStore

    return EventStore(target, create=create, **options)
