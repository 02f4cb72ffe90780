"""Projections resume from their checkpoint and apply each event exactly once."""

from __future__ import annotations

import json
import sqlite3

import pytest

from eventstore import EventStore, NewEvent, ProjectionRunner, RecordedEvent


class StreamCounts:
    """Counts events per stream into a table of its own."""

    name = "stream_counts"

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at

    def setup(self, conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS stream_counts (stream_id TEXT PRIMARY KEY, n INTEGER)")

    def apply(self, conn: sqlite3.Connection, event: RecordedEvent) -> None:
        if event.position == self.fail_at:
            raise RuntimeError("projection bug")
        conn.execute(
            "INSERT INTO stream_counts VALUES (?, 1) ON CONFLICT(stream_id) DO UPDATE SET n = n + 1",
            (event.stream_id,),
        )


def counts(store: EventStore) -> dict[str, int]:
    conn = sqlite3.connect(store.path)
    rows = dict(conn.execute("SELECT stream_id, n FROM stream_counts").fetchall())
    conn.close()
    return rows


def test_projection_catches_up_and_resumes(tmp_path):
    store = EventStore(tmp_path / "log.db")
    for i in range(30):
        store.append(f"s{i % 3}", [NewEvent("T", json.dumps(i))])
    runner = ProjectionRunner(store, StreamCounts(), batch_size=7)
    assert runner.catch_up() == 30
    assert runner.position == 30
    assert counts(store) == {"s0": 10, "s1": 10, "s2": 10}
    store.append("s0", [NewEvent("T", "1")] * 5)
    store.close()

    store = EventStore(tmp_path / "log.db")  # a new process would do the same
    runner = ProjectionRunner(store, StreamCounts(), batch_size=7)
    assert runner.catch_up() == 5  # only what is new
    assert counts(store)["s0"] == 15
    assert runner.catch_up() == 0
    store.close()


def test_a_failing_batch_leaves_tables_and_checkpoint_untouched(tmp_path):
    store = EventStore(tmp_path / "log.db")
    store.append("s", [NewEvent("T", "0")] * 10)
    runner = ProjectionRunner(store, StreamCounts(fail_at=8), batch_size=5)
    with pytest.raises(RuntimeError):
        runner.catch_up()
    assert runner.position == 5  # the first batch landed, the second rolled back whole
    assert counts(store) == {"s": 5}
    fixed = ProjectionRunner(store, StreamCounts(), batch_size=5)
    assert fixed.catch_up() == 5
    assert counts(store) == {"s": 10}
    fixed.reset()
    assert fixed.position == 0
    store.close()
