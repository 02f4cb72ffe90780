"""Token usage and estimated cost: per participant, per round, per session.

``usage_report(state, prices)``: one session, from its folded state, with costs. (The table of
every session's tokens is the engine's summary projection, ``forge_actors.engine.summaries``.)

Costs are never stored: prices change, and the report applies today's table.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from forge_actors.core.events import TokenUsage
from forge_actors.core.pricing import Price, estimate_cost, price_of
from forge_actors.core.state import SessionState


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
