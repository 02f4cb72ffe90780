"""Request bodies of the HTTP API: msgspec Structs, checked on decode (unknown fields refused)."""

from __future__ import annotations

from typing import Any

import msgspec

from forge_actors.core.events import VoteChoice
from forge_actors.engine import ParticipantSpec


class CreateSession(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    goal: str
    #: Spec strings (``mock:alice``) or participant objects; empty: the server's default participants.
    participants: list[str | ParticipantSpec] = []
    title: str | None = None
    #: Another word for ``title`` (the seed's); giving both, with different values, is a 422.
    name: str | None = None
    constraints: list[str] = []
    #: Session settings: max_rounds, convergence_threshold, round_timeout_seconds, seed, ...
    config: dict[str, Any] = {}
    #: Start deliberating at once (as POST .../deliberate would).
    deliberate: bool = False


class HumanDraft(msgspec.Struct, forbid_unknown_fields=True):
    author: str
    content: str


class HumanVote(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    voter: str
    vote: VoteChoice
    reasons: list[str] = []
    concerns: list[str] = []


class Cancel(msgspec.Struct, forbid_unknown_fields=True):
    reason: str = "cancelled through the API"


class StartRound(msgspec.Struct, forbid_unknown_fields=True):
    kind: str


class SwitchProvider(msgspec.Struct, forbid_unknown_fields=True):
    spec: str
