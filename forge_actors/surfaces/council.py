"""A council for a caller from outside: who deliberates (``plan_deliberation``) and what to tell
them as it goes (``progress_line``). Shared by ``forge mcp`` and the OpenAI-compatible endpoint, so
that both apply the same rule: participants a caller names are untrusted; a council, and the
defaults, are the operator's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from forge_actors.core.events import RoundCompleted, RoundStarted, SessionEnded, VoteRecorded
from forge_actors.engine import ConfigError, Forge, check_untrusted_tools

#: The council a caller gets when it names neither participants nor a council.
DEFAULT_COUNCIL = "forge"
#: Longest goal or constraint taken from a caller (a goal is a prompt, not a document).
MAX_GOAL_CHARS = 20_000


class Plan(msgspec.Struct, frozen=True):
    """The arguments of ``create_session`` for one ``deliberate`` call, and who chose the participants."""

    participants: list[Any]
    trusted: bool
    settings: dict[str, Any]
    tools: str
    council: str | None
    #: Where the participants came from, for the caller: "participants", "council NAME", or the defaults' line.
    source: str


def plan_deliberation(forge: Forge, *, participants: Sequence[Any] | None = None, council: str | None = None,
                      max_iterations: int | None = None, convergence_threshold: float | None = None,
                      tools: str | None = None) -> Plan:
    """What to create for a caller's ``deliberate``; a ConfigError (or UntrustedSpecError) when it may not.

    Named participants are the caller's (untrusted: ``create_session`` checks them and the tools). A
    council, and the defaults (the council ``forge`` if configured, else ``Forge.default_participants()``),
    are the operator's: trusted as written, with the caller's tools checked here by the same rule.
    """
    config = forge.config
    asked = {k: v for k, v in (("max_iterations", max_iterations), ("convergence_threshold", convergence_threshold))
             if v is not None}
    wanted_tools = (tools or "").strip()
    if participants and council:
        raise ConfigError("give participants or a council, not both (a council names its own participants)")
    if participants:
        if any(isinstance(p, dict) and p.get("kind") == "human" for p in participants):
            raise ConfigError("a human cannot take part through MCP: nobody here can add their drafts or votes "
                              "(use forge serve's web page or the HTTP API for sessions with humans)")
        return Plan(list(participants), False, asked, wanted_tools, None, "participants")
    if council is None and DEFAULT_COUNCIL in config.councils:
        council = DEFAULT_COUNCIL
    if wanted_tools:  # the operator's participants, but the caller's tools: the untrusted rule applies to them
        check_untrusted_tools(config, wanted_tools, "the session's tools")
    if council is not None:
        chosen = config.council(council)
        return Plan(list(chosen.participants), True, {**chosen.settings, **asked}, wanted_tools or chosen.tools,
                    council, f"council {council}")
    defaults, line = forge.default_participants()
    return Plan(list(defaults), True, asked, wanted_tools, None, line)


def progress_line(event: Any) -> str | None:
    """One line of progress for the client, for the events worth one; None for the rest (deltas...)."""
    if isinstance(event, RoundStarted):
        label = f"round {event.round} ({event.kind}" + (f", iteration {event.iteration}" if event.kind in (
            "synthesis", "convergence") else "") + ")"
        return f"{label} started: {', '.join(event.participants)}"
    if isinstance(event, RoundCompleted):
        line = f"round {event.round} ({event.kind}) {event.status}"
        if event.score is not None:
            line += f", agreement {event.score:.0%}"
        if event.failed:
            line += f"; failed: {', '.join(event.failed)}"
        return line + (f" — {event.reason}" if event.reason else "")
    if isinstance(event, VoteRecorded):
        return f"{event.voter} votes {event.vote} (round {event.round})"
    if isinstance(event, SessionEnded):
        return f"session ended: {event.outcome}" + (f" — {event.reason}" if event.reason else "")
    return None
