"""Projections: read models kept in tables of the log's own database, resumable from a checkpoint.

A projection's rows and its checkpoint are written in one transaction, so after a
crash it resumes exactly where its last committed batch ended: never an event twice,
never one skipped. A projection writes portable SQL with ``?`` placeholders through the
``Transaction`` it is given, and asks ``conn.dialect`` where the two databases differ.
"""

from __future__ import annotations

import time
from typing import Protocol

from eventstore.log import Codec, EventLog, RecordedEvent, Transaction


class Projection(Protocol):
    """A read model. ``name`` keys its checkpoint; ``apply`` writes through ``conn``."""

    name: str

    def setup(self, conn: Transaction) -> None:
        """Create the projection's tables if they do not exist (runs inside a transaction)."""

    def apply(self, conn: Transaction, event: RecordedEvent) -> None:
        """Fold one event into the projection's tables (runs inside a transaction)."""


class ProjectionRunner:
    """Feeds a projection every event after its checkpoint, in position order."""

    def __init__(
        self,
        store: EventLog,
        projection: Projection,
        *,
        codec: Codec | None = None,
        batch_size: int = 500,
    ) -> None:
        self.store = store
        self.projection = projection
        self.codec = codec
        self.batch_size = batch_size
        with store.write_transaction() as conn:
            projection.setup(conn)

    @property
    def position(self) -> int:
        """The last position this projection has applied."""
        return self.store.checkpoint(self.projection.name)

    def catch_up(self) -> int:
        """Apply every committed event after the checkpoint; returns how many were applied."""
        applied = 0
        while True:
            after = self.position
            batch = []
            for event in self.store.read_all(after, codec=self.codec, page_size=self.batch_size):
                batch.append(event)
                if len(batch) >= self.batch_size:
                    break
            if not batch:
                return applied
            self._apply_batch(after, batch)
            applied += len(batch)

    def _apply_batch(self, after: int, batch: list[RecordedEvent]) -> None:
        name = self.projection.name
        with self.store.write_transaction() as conn:
            row = conn.execute("SELECT position FROM checkpoints WHERE name = ?", (name,)).fetchone()
            if (row[0] if row else 0) != after:
                return  # another runner applied this batch meanwhile; read again from its checkpoint
            for event in batch:
                self.projection.apply(conn, event)
            conn.execute(
                "INSERT INTO checkpoints (name, position, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
                (name, batch[-1].position, time.time_ns()),
            )

    def reset(self) -> None:
        """Forget the checkpoint: the next catch_up replays the whole log (clear your tables first)."""
        with self.store.write_transaction() as conn:
            conn.execute("DELETE FROM checkpoints WHERE name = ?", (self.projection.name,))
