"""Helpers of the event-log contract suite (the fixtures are in conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from eventstore import EventLog


def write_raw(log: EventLog, sql: str, parameters: tuple[Any, ...] = ()) -> None:
    """Change the log's tables behind the store's back (``?`` placeholders, either backend), as a
    damaged row or another program would."""
    with log.write_transaction() as tx:
        tx.execute(sql, parameters)


def run_together(processes: Sequence[Any], start: Any, before_start: Callable[[], object] | None = None) -> None:
    """Start the processes, let them go at once (``start``: an Event they wait for; after
    ``before_start()`` when given, e.g. a follower's readiness), and wait for each to exit cleanly."""
    for process in processes:
        process.start()
    if before_start is not None:
        assert before_start()
    start.set()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
