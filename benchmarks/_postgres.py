"""PostgreSQL for the benchmarks: a durable throwaway server of their own, or ``$FORGE_BENCH_POSTGRES_URL``.

    with bench_postgres() as pg:        # None (and a printed skip line) when PostgreSQL is absent
        url = pg.fresh_url()            # an empty log target of its own: a database, or a schema

The throwaway server keeps PostgreSQL's durable defaults (fsync on, synchronous_commit on, data
on disk, not in memory): the figures are those of a server that keeps what it acknowledged. With
``$FORGE_BENCH_POSTGRES_URL`` (a server you run, e.g. on another host), every ``fresh_url()`` is a
new schema in that database (its tables reached through ``search_path``), dropped at the end.
"""

from __future__ import annotations

import contextlib
import secrets
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import throwaway_postgres  # noqa: E402  (tools/throwaway_postgres.py)

from eventstore.open import printable_target  # noqa: E402

URL_ENV = "FORGE_BENCH_POSTGRES_URL"
PSYCOPG_HINT = "pip install -e '.[postgres]'"


class BenchPostgres:
    """Where the benchmarks' PostgreSQL logs go; ``where`` is fit to print (no password)."""

    def __init__(self, server: throwaway_postgres.ThrowawayPostgres | None, url: str | None) -> None:
        self._server = server
        self._url = url
        self._schemas: list[str] = []
        self.where = (f"throwaway server on 127.0.0.1:{server.port}, fsync on, synchronous_commit on"
                      if server is not None else f"{printable_target(url or '')} (${URL_ENV})")

    def fresh_url(self) -> str:
        """A target holding nothing yet: a new database on the throwaway server, a new schema otherwise."""
        if self._server is not None:
            return self._server.create_database()
        import psycopg

        assert self._url is not None
        schema = f"forge_bench_{secrets.token_hex(4)}"
        with psycopg.connect(self._url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        self._schemas.append(schema)
        return with_search_path(self._url, schema)

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            return
        if not self._schemas:
            return
        import psycopg

        with psycopg.connect(self._url or "", autocommit=True) as conn:
            for schema in self._schemas:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def settle(url: str, timeout: float = 60.0) -> None:
    """Before a timed run on the server at ``url``: a checkpoint, then no autovacuum worker still busy
    with what the earlier figures wrote (on a small host either would take CPU from the run)."""
    import time

    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        try:
            conn.execute("CHECKPOINT")
        except psycopg.errors.InsufficientPrivilege:
            print("(no CHECKPOINT before the load: the benchmark's role may not ask for one)")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'").fetchone()[0]:
            time.sleep(0.2)


def with_search_path(url: str, schema: str) -> str:
    """``url`` whose connections see ``schema`` first (libpq's ``options=-csearch_path=...``)."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k != "options"] + [("options", f"-csearch_path={schema}")]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def unavailable_reason() -> str | None:
    """Why PostgreSQL cannot be benchmarked here (with what to install), or None."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        return f"psycopg is not installed ({PSYCOPG_HINT})"
    import os

    if not os.environ.get(URL_ENV) and throwaway_postgres.find_binaries() is None:
        return f"PostgreSQL is not installed ({throwaway_postgres.INSTALL_HINT}) and ${URL_ENV} is not set"
    return None


@contextlib.contextmanager
def bench_postgres() -> Iterator[BenchPostgres | None]:
    """A BenchPostgres, or None after printing why the PostgreSQL figures are skipped."""
    import os

    reason = unavailable_reason()
    if reason is not None:
        print(f"SKIP PostgreSQL figures: {reason}")
        yield None
        return
    url = os.environ.get(URL_ENV) or None
    server = None if url else throwaway_postgres.ThrowawayPostgres().start()  # durable defaults
    pg = BenchPostgres(server, url)
    try:
        yield pg
    finally:
        pg.close()
