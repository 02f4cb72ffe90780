"""Token usage and estimated cost: per participant, per round, per session.

Two views of the same facts (``ContributionCompleted.usage``):

- ``usage_report(state, prices)``: one session, from its folded state, with costs;
- ``SummaryProjection``: a table row per session (title, status, rounds, tokens) and a
  usage row per (session, round, participant), kept in the log's own file by the
  eventstore's ProjectionRunner, so listing a thousand sessions reads a table instead
  of folding every delta of every session.

Costs are never stored: prices change, and the report applies today's table.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping

import msgspec

from eventstore import EventStore, RecordedEvent
from forge_actors.config import Price
from forge_actors.events import Event, RoundStarted, SessionCreated, TokenUsage, decode_event
from forge_actors.pricing import estimate_cost, price_of
from forge_actors.state import STATUS_EVENTS, SessionState, next_status

logger = logging.getLogger(__name__)


class ParticipantUsage(msgspec.Struct, frozen=True):
    participant: str
    provider: str
    model: str
    usage: TokenUsage
    #: Estimated US dollars; None when the model's price is unknown.
    cost: float | None


class RoundUsage(msgspec.Struct, frozen=True):
    round: int
    kind: str
    usage: TokenUsage
    cost: float | None


class UsageReport(msgspec.Struct, frozen=True):
    participants: tuple[ParticipantUsage, ...]
    rounds: tuple[RoundUsage, ...]
    total: TokenUsage
    #: None as soon as one participant's price is unknown: a partial sum would mislead.
    total_cost: float | None


def _sum_costs(costs: list[float | None]) -> float | None:
    return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)


def usage_report(state: SessionState, prices: Mapping[str, Price] | None = None) -> UsageReport:
    price_by_participant = {
        name: price_of(info.provider, info.model, prices) for name, info in state.participants.items()
    }
    participants = tuple(
        ParticipantUsage(name, info.provider, info.model, state.usage.get(name, TokenUsage()),
                         estimate_cost(state.usage.get(name, TokenUsage()), price_by_participant[name]))
        for name, info in state.participants.items() if info.kind == "ai"
    )
    per_round: dict[int, list] = {}
    for contribution in state.contributions.values():
        if contribution.status == "completed":
            per_round.setdefault(contribution.round, []).append(contribution)
    rounds = []
    for round_state in state.rounds:
        done = per_round.get(round_state.round, [])
        usage = sum((c.usage for c in done), TokenUsage())
        cost = _sum_costs([estimate_cost(c.usage, price_by_participant.get(c.participant)) for c in done])
        rounds.append(RoundUsage(round_state.round, round_state.kind, usage, cost))
    return UsageReport(participants, tuple(rounds), state.total_usage, _sum_costs([p.cost for p in participants]))


# -- the projection --------------------------------------------------------------------------------


class SessionSummary(msgspec.Struct, frozen=True):
    session_id: str
    title: str
    status: str
    rounds: int
    created_at: int
    input_tokens: int
    output_tokens: int

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

    def setup(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS session_summaries (session_id TEXT PRIMARY KEY, title TEXT NOT NULL, "
            "status TEXT NOT NULL, rounds INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, "
            "input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0)"
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS session_usage (session_id TEXT NOT NULL, round INTEGER NOT NULL, "
            "participant TEXT NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, "
            "PRIMARY KEY (session_id, round, participant))"
        )

    def apply(self, conn: sqlite3.Connection, event: RecordedEvent) -> None:
        if event.type in STATUS_EVENTS:
            self._fold_status(conn, event)
        elif event.type == "ContributionCompleted":
            self._add_usage(conn, event)

    @staticmethod
    def _fold_status(conn: sqlite3.Connection, recorded: RecordedEvent) -> None:
        # The status comes from state.next_status, the rule SessionState's fold applies, fed with
        # the two things it reads (the previous status, whether a round had started): a second
        # implementation here once drifted (SessionResumed before any round said "running").
        sid = recorded.stream_id
        event = recorded.event if isinstance(recorded.event, Event) else decode_event(recorded.type, recorded.data)
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
        # Round numbers start at 1, so "a round had started" is rounds > 0.
        rounds_after = max(rounds, event.round) if isinstance(event, RoundStarted) else rounds
        conn.execute("UPDATE session_summaries SET status = ?, rounds = ? WHERE session_id = ?",
                     (next_status(status, rounds > 0, event), rounds_after, sid))

    @staticmethod
    def _add_usage(conn: sqlite3.Connection, recorded: RecordedEvent) -> None:
        done = _decode_completed(recorded.data)
        tokens = (done.usage.input_tokens, done.usage.output_tokens)
        sid = recorded.stream_id
        conn.execute(
            "INSERT INTO session_usage VALUES (?, ?, ?, ?, ?) ON CONFLICT (session_id, round, participant) "
            "DO UPDATE SET input_tokens = input_tokens + excluded.input_tokens, "
            "output_tokens = output_tokens + excluded.output_tokens",
            (sid, done.round, done.participant, *tokens),
        )
        conn.execute("UPDATE session_summaries SET input_tokens = input_tokens + ?, "
                     "output_tokens = output_tokens + ? WHERE session_id = ?", (*tokens, sid))


def read_summaries(store: EventStore) -> list[SessionSummary]:
    rows = store.query(
        "SELECT session_id, title, status, rounds, created_at, input_tokens, output_tokens "
        "FROM session_summaries ORDER BY created_at, session_id"
    )
    return [SessionSummary(*row) for row in rows]
