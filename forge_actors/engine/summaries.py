"""The session-summary projection: one row per session (title, status, rounds, tokens) and a
usage row per (session, round, participant), kept in the log's own file by the eventstore's
ProjectionRunner, so that listing a thousand sessions reads a table instead of folding every
delta of every session. The status is the fold's own rule (``state.next_status``).
"""

from __future__ import annotations

import logging
import sqlite3
import threading

import msgspec

from eventstore import EventLog, LogWriteError, ProjectionRunner, RecordedEvent, SqliteTransaction, Transaction
from forge_actors.core.events import RoundStarted, SessionCreated, SessionForked, TokenUsage
from forge_actors.core.records import event_of
from forge_actors.core.state import STATUS_EVENTS, next_status

logger = logging.getLogger(__name__)

class SessionSummary(msgspec.Struct, frozen=True):
    session_id: str
    title: str
    status: str
    rounds: int
    created_at: int
    input_tokens: int
    output_tokens: int
    #: A fork's parent session and the round it was forked after ("" and 0 for a session of its own).
    parent_id: str = ""
    forked_at_round: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class _Completed(msgspec.Struct):
    participant: str
    round: int
    usage: TokenUsage


_decode_completed = msgspec.json.Decoder(_Completed).decode


class SummaryProjection:
    """Tables ``session_summaries`` and ``session_usage``; reads only the event types it needs."""

    name = "forge.session_summaries"

    def setup(self, conn: Transaction) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS session_summaries (session_id TEXT PRIMARY KEY, title TEXT NOT NULL, "
            "status TEXT NOT NULL, rounds INTEGER NOT NULL DEFAULT 0, created_at BIGINT NOT NULL, "
            "input_tokens BIGINT NOT NULL DEFAULT 0, output_tokens BIGINT NOT NULL DEFAULT 0)"
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS session_usage (session_id TEXT NOT NULL, round INTEGER NOT NULL, "
            "participant TEXT NOT NULL, input_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL, "
            "PRIMARY KEY (session_id, round, participant))"
        )
        # A table of its own (not columns of session_summaries): logs made before forks keep their table.
        conn.execute(
            "CREATE TABLE IF NOT EXISTS session_lineage (session_id TEXT PRIMARY KEY, parent_id TEXT NOT NULL, "
            "round INTEGER NOT NULL)"
        )

    def apply(self, conn: Transaction, event: RecordedEvent) -> None:
        if event.type in STATUS_EVENTS:
            self._fold_status(conn, event)
        elif event.type == "ContributionCompleted":
            self._add_usage(conn, event)

    @staticmethod
    def _fold_status(conn: Transaction, recorded: RecordedEvent) -> None:
        # The status comes from state.next_status, the rule SessionState's fold applies, fed with
        # the two things it reads (the previous status, whether a round had started): a second
        # implementation here once drifted (SessionResumed before any round said "running").
        sid = recorded.stream_id
        event = event_of(recorded)
        row = conn.execute("SELECT status, rounds FROM session_summaries WHERE session_id = ?", (sid,)).fetchone()
        if isinstance(event, SessionCreated):
            if row is None:
                conn.execute("INSERT INTO session_summaries (session_id, title, status, created_at) "
                             "VALUES (?, ?, ?, ?)", (sid, event.title, next_status("new", False, event),
                                                     recorded.recorded_at))
                return
        elif row is None:
            logger.warning("event %s at position %d of stream %s comes before its SessionCreated; left out of the "
                           "session summaries", recorded.type, recorded.position, sid)
            return
        status, rounds = row
        if isinstance(event, SessionForked):  # a fork's copy may hold its parent's own: the last one counts
            conn.execute("INSERT INTO session_lineage VALUES (?, ?, ?) ON CONFLICT (session_id) DO UPDATE SET "
                         "parent_id = excluded.parent_id, round = excluded.round", (sid, event.parent_id, event.round))
        # Round numbers start at 1, so "a round had started" is rounds > 0.
        rounds_after = max(rounds, event.round) if isinstance(event, RoundStarted) else rounds
        conn.execute("UPDATE session_summaries SET status = ?, rounds = ? WHERE session_id = ?",
                     (next_status(status, rounds > 0, event), rounds_after, sid))

    @staticmethod
    def _add_usage(conn: Transaction, recorded: RecordedEvent) -> None:
        done = _decode_completed(recorded.data)
        tokens = (done.usage.input_tokens, done.usage.output_tokens)
        sid = recorded.stream_id
        conn.execute(
            "INSERT INTO session_usage VALUES (?, ?, ?, ?, ?) ON CONFLICT (session_id, round, participant) "
            "DO UPDATE SET input_tokens = session_usage.input_tokens + excluded.input_tokens, "
            "output_tokens = session_usage.output_tokens + excluded.output_tokens",
            (sid, done.round, done.participant, *tokens),
        )
        conn.execute("UPDATE session_summaries SET input_tokens = input_tokens + ?, "
                     "output_tokens = output_tokens + ? WHERE session_id = ?", (*tokens, sid))


def read_summaries(store: EventLog) -> list[SessionSummary]:
    rows = store.query(
        "SELECT s.session_id, title, status, rounds, created_at, input_tokens, output_tokens, "
        "COALESCE(l.parent_id, ''), COALESCE(l.round, 0) "
        "FROM session_summaries s LEFT JOIN session_lineage l ON l.session_id = s.session_id "
        "ORDER BY created_at, s.session_id"
    )
    return [SessionSummary(*row) for row in rows]


class _MemoryRows:
    """Rows of an in-memory SQLite database, read the way ``read_summaries`` reads a store."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def query(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        return self._conn.execute(sql, parameters).fetchall()


def summaries_without_writing(store: EventLog) -> list[SessionSummary]:
    """What the summary projection holds, folded in memory from the whole log: for a log
    that cannot take the projection's writes (the same fold, so the same rows)."""
    projection = SummaryProjection()
    conn = sqlite3.connect(":memory:")
    try:
        memory = SqliteTransaction(conn)
        projection.setup(memory)
        for recorded in store.read_all():
            projection.apply(memory, recorded)
        return read_summaries(_MemoryRows(conn))  # type: ignore[arg-type]
    finally:
        conn.close()


class Summaries:
    """The projection of one engine's log, caught up on each read."""

    def __init__(self, store: EventLog) -> None:
        self._store = store
        self._runner: ProjectionRunner | None = None
        self._lock = threading.Lock()

    def read(self) -> list[SessionSummary]:
        with self._lock:
            try:
                if self._runner is None:
                    self._runner = ProjectionRunner(self._store, SummaryProjection())
                self._runner.catch_up()
            except LogWriteError as exc:  # e.g. a full disk: the log is still there to read
                logger.warning("could not save the session summaries in %s (%s); read them from the log instead",
                               exc.path, exc.reason)
                return summaries_without_writing(self._store)
        return read_summaries(self._store)
