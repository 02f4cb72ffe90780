"""Request bodies of the HTTP API: msgspec Structs, checked on decode (unknown fields refused).

Every JSON body the server decodes (the API's, /v1's, and a form-encoded ``curl -d`` body) first
has its nesting checked: at most ``MAX_NESTING`` arrays and objects inside one another. msgspec
decodes nested input by recursing, and stops with RecursionError wherever the interpreter's
recursion limit happens to fall (about 900 levels, fewer the deeper the caller's stack), which
surfaced as a 500; no body of the API needs more than a handful of levels.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from starlette.requests import Request

from forge_actors.core.events import ConvergenceRule, RoundKind, VoteChoice
from forge_actors.engine import (
    DEPRECATED_ITERATIONS_KEY,
    ITERATIONS_KEY,
    ForgeConfig,
    ParticipantSpec,
    untrusted_setting_ranges,
)

#: How many arrays and objects a request body may hold inside one another (``{"config": {"a": [1]}}`` is 3).
MAX_NESTING = 32
#: Every byte but the brackets, which is all the nesting check reads outside strings.
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_OPENING = frozenset(b"[{")


class TooDeep(Exception):
    """A body whose arrays and objects nest past MAX_NESTING (each surface answers it in its own shape)."""

    def __init__(self, limit: int = MAX_NESTING) -> None:
        self.limit = limit
        super().__init__(f"the JSON nests arrays and objects more than {limit} levels deep; "
                         "no request needs that many: flatten it")


def too_deep(data: bytes, limit: int = MAX_NESTING) -> bool:
    """Whether the arrays and objects of the JSON text ``data`` nest more than ``limit`` deep, read
    outside its strings (their escapes dropped first, ``\\\\`` then ``\\"``, so that the quotes left
    are the strings' own). Text that is not JSON gets some answer too: the decoder refuses it anyway.

    Most bodies hold too few brackets to nest that deep and cost two counts; the others one pass
    in Python over their brackets (about 35 ms for 1 MiB of ``[],``; it stops at the first too deep)."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    outside = b"".join(data.replace(b"\\\\", b"").replace(b'\\"', b"").split(b'"')[::2])
    depth = 0
    for byte in outside.translate(None, _NOT_BRACKETS):
        if byte in _OPENING:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def decode(data: bytes, type_: type) -> Any:
    """``data`` decoded as ``type_``: TooDeep past MAX_NESTING, else msgspec's own errors."""
    if too_deep(data):
        raise TooDeep()
    try:
        return msgspec.json.decode(data, type=type_)
    except RecursionError:  # (cannot happen below MAX_NESTING; kept so that it can never be a 500)
        raise TooDeep() from None


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


#: Text that must say something: the schema says at least one character (the engine also refuses blank text).
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


def _settings_struct() -> type:
    """The settings an API caller may give in ``config``, with their JSON types (from the engine's
    table: ``untrusted_setting_ranges``), so that a mistyped value is refused as the document says
    (``"3"`` is no integer here, though the engine would convert it). Their bounds, and names this
    does not know (``workspace``, which an API caller may not set, among them) are the engine's to
    refuse, with its own messages."""
    fields: list[tuple[str, Any, Any]] = [("synthesizer", NonEmpty | None, None),
                                          ("convergence", ConvergenceRule | None, None)]
    for name, allowed in untrusted_setting_ranges(ForgeConfig()).items():
        kind = int if allowed.kind == "integer" else float
        fields.append((ITERATIONS_KEY if name == DEPRECATED_ITERATIONS_KEY else name, kind | None, None))
    fields.append((DEPRECATED_ITERATIONS_KEY, int | None, None))  # the old name of max_iterations, still taken
    return msgspec.defstruct("Settings", fields, kw_only=True)


Settings = _settings_struct()
#: Settings an API caller may give but that the document does not list (old names).
UNDOCUMENTED_SETTINGS = (DEPRECATED_ITERATIONS_KEY,)


def check_settings(config: dict[str, Any]) -> None:
    """ValidationError (its path under ``config``) for a known setting of the wrong type."""
    try:
        msgspec.convert(config, Settings, strict=True)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `$")
        raise msgspec.ValidationError(f"{message} - at `$.config{where}" if where else message) from None


class CreateSession(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    goal: NonEmpty
    #: Spec strings (``mock:alice``) or participant objects; empty: the council's (``council``), else
    #: the council ``forge`` if the server has one, else the server's default participants.
    participants: list[str | ParticipantSpec] = []
    #: A council of the server's forge.toml (``[forge.councils.NAME]``), instead of participants.
    council: str | None = None
    title: str | None = None
    #: Another word for ``title`` (the seed's); giving both, with different values, is a 422.
    name: str | None = None
    constraints: list[str] = []
    #: Session settings: max_iterations, convergence_threshold, round_timeout_seconds, seed, ... (Settings)
    config: dict[str, Any] = {}
    #: Start deliberating at once (as POST .../deliberate would).
    deliberate: bool = False

    def __post_init__(self) -> None:
        check_settings(self.config)


class ForkSession(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A fork of a session after its round ``at_round`` (``Forge.fork``, untrusted)."""

    at_round: Annotated[int, msgspec.Meta(ge=1)]
    #: Participants that join at the next round (spec strings or objects); one named like a participant
    #: of the session moves it to that provider.
    participants: list[str | ParticipantSpec] = []
    #: Names of participants that take no part from the next round on.
    drop: list[str] = []
    #: Names of humans that join.
    humans: list[str] = []
    #: Constraints added to the session's.
    constraints: list[str] = []
    #: Session settings changed (as CreateSession's ``config``).
    config: dict[str, Any] = {}
    #: Start deliberating at once.
    deliberate: bool = False

    def __post_init__(self) -> None:
        check_settings(self.config)


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
    kind: RoundKind


class SwitchProvider(msgspec.Struct, forbid_unknown_fields=True):
    spec: NonEmpty


class NoBody(msgspec.Struct, forbid_unknown_fields=True):
    """What the routes that take nothing take: ``{}`` (a POST must still be JSON, see guards.py)."""
