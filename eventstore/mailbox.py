"""Mailboxes: requests for whoever holds a named thing, answered once. Generic: a box is any string.

A process that may not act on a thing itself (another process holds its lease) posts a
letter to the thing's box; the holder takes the unanswered letters, acts, and answers each.
The poster waits for the answer. A letter is one row
``mailbox(id, box, payload, posted_at, answer, answered_at)`` in the log's database; payloads and
answers are opaque text (the caller's JSON). A letter nobody answers stays for the next
holder: the request survives the holder's crash.

Like leases, the table is created by the first write, so opening a log never writes.
``Mailbox`` is the interface; ``LogMailbox`` its implementation on any ``EventLog``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, Protocol

import msgspec

from eventstore.log import Dialect, EventLog

# The letter's id counts up and is never reused: SQLite's AUTOINCREMENT, PostgreSQL's identity column.
_ID: Final[dict[Dialect, str]] = {
    "sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "postgresql": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
}
_CREATE: Final = (
    "CREATE TABLE IF NOT EXISTS mailbox ("
    "id {id}, box TEXT NOT NULL, payload TEXT NOT NULL, posted_at BIGINT NOT NULL, "
    "answer TEXT, answered_at BIGINT)"
)
_INDEX: Final = "CREATE INDEX IF NOT EXISTS mailbox_open ON mailbox (box) WHERE answer IS NULL"


class Letter(msgspec.Struct, frozen=True):
    """A request posted to ``box``; ``answer`` is None until its box's holder answers it."""

    id: int
    box: str
    payload: str
    posted_at: int
    answer: str | None = None


class Mailbox(Protocol):
    """What an engine needs of a mailbox backend."""

    def post(self, box: str, payload: str) -> int: ...

    def unanswered(self, *boxes: str) -> list[Letter]: ...

    def answer(self, letter_id: int, answer: str) -> bool: ...

    def letter(self, letter_id: int) -> Letter | None: ...


class LogMailbox:
    """Mailboxes in a table of the event log's own database, written in the log's write transactions."""

    def __init__(self, store: EventLog, *, clock: Callable[[], int] = time.time_ns) -> None:
        self.store = store
        self._clock = clock
        self._table_seen = False

    def post(self, box: str, payload: str) -> int:
        """Post ``payload`` to ``box``; returns the letter's id (to wait for its answer with ``letter``)."""
        if not isinstance(box, str) or not box:
            raise ValueError("a mailbox's name must be a non-empty string")
        with self.store.write_transaction() as conn:
            conn.execute(_CREATE.format(id=_ID[conn.dialect]))
            conn.execute(_INDEX)
            row = conn.execute("INSERT INTO mailbox (box, payload, posted_at) VALUES (?, ?, ?) RETURNING id",
                               (box, payload, self._clock())).fetchone()
            return int(row[0])

    def unanswered(self, *boxes: str) -> list[Letter]:
        """The letters of these boxes nobody answered yet, oldest first, in one read. Writes nothing.

        A holder of many things polls all their boxes at once: one indexed query, whatever their number."""
        if not boxes or not self._exists():
            return []
        marks = ", ".join("?" * len(boxes))
        rows = self.store.query(f"SELECT id, box, payload, posted_at, answer FROM mailbox "
                                f"WHERE answer IS NULL AND box IN ({marks}) ORDER BY id", tuple(boxes))
        return [Letter(*row) for row in rows]

    def answer(self, letter_id: int, answer: str) -> bool:
        """Answer a letter once; False (changing nothing) when it was answered already or is unknown."""
        with self.store.write_transaction() as conn:
            conn.execute(_CREATE.format(id=_ID[conn.dialect]))
            updated = conn.execute("UPDATE mailbox SET answer = ?, answered_at = ? WHERE id = ? AND answer IS NULL",
                                   (answer, self._clock(), letter_id)).rowcount
            return updated > 0

    def letter(self, letter_id: int) -> Letter | None:
        """The letter as it stands (its answer, once there is one). Writes nothing."""
        if not self._exists():
            return None
        rows = self.store.query("SELECT id, box, payload, posted_at, answer FROM mailbox WHERE id = ?", (letter_id,))
        return Letter(*rows[0]) if rows else None

    def _exists(self) -> bool:
        # Once made, the table stays: after the first yes, no more catalogue reads.
        if not self._table_seen:
            self._table_seen = self.store.has_table("mailbox")
        return self._table_seen

    def __repr__(self) -> str:
        return f"LogMailbox({self.store.path!r})"
