"""A council for a caller from outside: who deliberates (``plan_deliberation``) and what to tell
them as it goes (``progress_line``). Shared by ``forge mcp`` and the OpenAI-compatible endpoint.

Nothing here decides what a caller may name: every plan goes to ``Forge.create_session(trusted=False)``,
where one policy (``engine.trust``) checks each field the caller gave and uses a council, or the
operator's defaults, as the operator wrote them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from forge_actors.core.events import RoundCompleted, RoundStarted, SessionEnded, VoteRecorded
from forge_actors.engine import DEFAULT_COUNCIL, ConfigError, Forge

__all__ = ["DEFAULT_COUNCIL", "Plan", "plan_deliberation", "progress_line"]


class Plan(msgspec.Struct, frozen=True):
    """The arguments of ``create_session(trusted=False)`` for one ``deliberate`` call."""

    #: The participants the caller named; None: the council's, or the operator's defaults.
    participants: list[Any] | None
    council: str | None
    settings: dict[str, Any]
    tools: str
    #: Where the participants come from, for the server's log: "participants", "council NAME", or the defaults' line.
    source: str

    def create(self, forge: Forge, goal: str, constraints: Sequence[str] = ()) -> str:
        """Record the session for an untrusted caller and start it: its id (nothing recorded on a refusal)."""
        return forge.create_session(goal, self.participants, constraints=list(constraints), settings=self.settings,
                                    tools=self.tools, council=self.council, trusted=False, start=True)


def plan_deliberation(forge: Forge, *, participants: Sequence[Any] | None = None, council: str | None = None,
                      max_iterations: int | None = None, convergence_threshold: float | None = None,
                      tools: str | None = None) -> Plan:
    """What to create for a caller's ``deliberate``; a ConfigError when the arguments contradict each other.

    Participants the caller names are its own; with none, the council it names, else the council
    ``forge`` if configured, else ``Forge.default_participants()`` — the operator's."""
    asked = {k: v for k, v in (("max_iterations", max_iterations), ("convergence_threshold", convergence_threshold))
             if v is not None}
    wanted_tools = (tools or "").strip()
    if participants and council:
        raise ConfigError("give participants or a council, not both (a council names its own participants)")
    if participants:
        if any(isinstance(p, dict) and p.get("kind") == "human" for p in participants):
            raise ConfigError("a human cannot take part through MCP: nobody here can add their drafts or votes "
                              "(use forge serve's web page or the HTTP API for sessions with humans)")
        return Plan(list(participants), None, asked, wanted_tools, "participants")
    if council is None and DEFAULT_COUNCIL in forge.config.councils:
        council = DEFAULT_COUNCIL
    if council is not None:
        forge.config.council(council)  # a ConfigError naming the known ones, before anything else
        return Plan(None, council, asked, wanted_tools, f"council {council}")
    return Plan(None, None, asked, wanted_tools, forge.default_participants()[1])


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
