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

import sqlite3
from collections.abc import Mapping

import msgspec

from eventstore import EventStore, RecordedEvent
from forge_actors.config import Price
from forge_actors.events import TokenUsage
from forge_actors.pricing import estimate_cost, price_of
from forge_actors.state import SessionState


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


class _Created(msgspec.Struct):
    session_id: str
    title: str


class _RoundStarted(msgspec.Struct):
    round: int


class _Completed(msgspec.Struct):
    participant: str
    round: int
    usage: TokenUsage


class _Ended(msgspec.Struct):
    outcome: str


_decode_created = msgspec.json.Decoder(_Created).decode
_decode_round = msgspec.json.Decoder(_RoundStarted).decode
_decode_completed = msgspec.json.Decoder(_Completed).decode
_decode_ended = msgspec.json.Decoder(_Ended).decode


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
        sid, kind = event.stream_id, event.type
        if kind == "SessionCreated":
            created = _decode_created(event.data)
            conn.execute("INSERT OR IGNORE INTO session_summaries (session_id, title, status, created_at) "
                         "VALUES (?, ?, 'created', ?)", (sid, created.title, event.recorded_at))
        elif kind == "RoundStarted":
            conn.execute("UPDATE session_summaries SET rounds = MAX(rounds, ?), status = 'running' "
                         "WHERE session_id = ?", (_decode_round(event.data).round, sid))
        elif kind == "ContributionCompleted":
            done = _decode_completed(event.data)
            tokens = (done.usage.input_tokens, done.usage.output_tokens)
            conn.execute(
                "INSERT INTO session_usage VALUES (?, ?, ?, ?, ?) ON CONFLICT (session_id, round, participant) "
                "DO UPDATE SET input_tokens = input_tokens + excluded.input_tokens, "
                "output_tokens = output_tokens + excluded.output_tokens",
                (sid, done.round, done.participant, *tokens),
            )
            conn.execute("UPDATE session_summaries SET input_tokens = input_tokens + ?, "
                         "output_tokens = output_tokens + ? WHERE session_id = ?", (*tokens, sid))
        elif kind == "SessionEnded":
            conn.execute("UPDATE session_summaries SET status = ? WHERE session_id = ?",
                         (_decode_ended(event.data).outcome, sid))
        elif kind in ("SessionInterrupted", "SessionResumed"):
            status = "interrupted" if kind == "SessionInterrupted" else "running"
            conn.execute("UPDATE session_summaries SET status = ? WHERE session_id = ?", (status, sid))


def read_summaries(store: EventStore) -> list[SessionSummary]:
    rows = store.query(
        "SELECT session_id, title, status, rounds, created_at, input_tokens, output_tokens "
        "FROM session_summaries ORDER BY created_at, session_id"
    )
    return [SessionSummary(*row) for row in rows]
