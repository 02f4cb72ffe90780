"""Request bodies of the HTTP API: msgspec Structs, checked on decode (unknown fields refused)."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request

from forge_actors.core.events import VoteChoice
from forge_actors.engine import ParticipantSpec


class BodyTooLarge(Exception):
    """A request body over the server's limit (each surface answers it in its own error shape)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the request body is over the limit of {limit} bytes")


async def read_limited(request: Request, limit: int) -> bytes:
    """The request's body, refused (BodyTooLarge) once it is declared or read past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise BodyTooLarge(limit)
    return bytes(data)


def invalid_field(exc: msgspec.ValidationError) -> tuple[str, str | None]:
    """What a decode refused and where: ``("Expected `str`, got `int`", "goal")``."""
    message, _, where = str(exc).partition(" - at `")
    return message, where.rstrip("`").removeprefix("$").lstrip(".") or None


class CreateSession(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    goal: str
    #: Spec strings (``mock:alice``) or participant objects; empty: the council's (``council``), else
    #: the council ``forge`` if the server has one, else the server's default participants.
    participants: list[str | ParticipantSpec] = []
    #: A council of the server's forge.toml (``[forge.councils.NAME]``), instead of participants.
    council: str | None = None
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
