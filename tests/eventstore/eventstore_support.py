"""Helpers of the event-log contract suite (the fixtures are in conftest.py)."""

from __future__ import annotations

from typing import Any

from eventstore import EventLog


def write_raw(log: EventLog, sql: str, parameters: tuple[Any, ...] = ()) -> None:
    """Change the log's tables behind the store's back (``?`` placeholders, either backend), as a
    damaged row or another program would."""
    with log.write_transaction() as tx:
        tx.execute(sql, parameters)
