"""The data every tool shares: its result, its limits, the context it runs in, its typed errors.

Nothing here knows of sessions, events or actors: the engine hands a tool a ``ToolContext``
(a workspace, a history, a summarizer, allowlists, limits) and gets a ``ToolResult`` back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

if TYPE_CHECKING:
    from forge_actors.tools.workspace import Workspace

#: The categories a tool belongs to; an operator enables tools by name or by category.
CATEGORIES = ("file", "search", "git", "edit", "shell", "advanced")


class ToolResult(msgspec.Struct, frozen=True):
    """What the model sees of one call. An error is a result too: the model reads it and adapts."""

    output: str
    truncated: bool = False
    error: str | None = None
    duration_ms: float = 0.0


class ToolSpec(msgspec.Struct, frozen=True):
    """One tool as a provider's tool definition needs it."""

    name: str
    description: str
    parameters: dict[str, Any]


class HistoryHit(msgspec.Struct, frozen=True):
    """One match of a search over earlier sessions."""

    session_id: str
    title: str
    round_kind: str
    participant: str
    excerpt: str


class SessionHistory(Protocol):
    """Earlier deliberations, as the engine exposes them to the history tools."""

    def search(self, query: str, limit: int) -> list[HistoryHit]: ...

    def final_synthesis(self, session_id: str) -> str | None: ...


@dataclass(frozen=True)
class ToolLimits:
    timeout_seconds: float = 10.0  # per call
    max_output_chars: int = 16_000  # what the model is shown of one result
    max_file_bytes: int = 1 << 20  # read cap per file
    max_entries: int = 500  # listing, tree and grep cap
    max_calls: int = 8  # per contribution
    max_total_seconds: float = 60.0  # per contribution


class ToolError(Exception):
    """A failure the model caused or can work around; its message is shown to the model as is."""


class ToolTimeout(ToolError):
    pass


@dataclass(frozen=True)
class ToolContext:
    workspace: Workspace | None = None
    history: SessionHistory | None = None
    summarize: Callable[[str], str] | None = None  # the participant's own model, supplied by the engine
    http_allowed_hosts: frozenset[str] = frozenset()
    shell_programs: frozenset[str] = frozenset()  # the allowlist of run_command, by bare name
    limits: ToolLimits = field(default_factory=ToolLimits)
    #: time.monotonic() after which a running tool must stop; Toolbox.call sets it for each call.
    deadline: float | None = None

    def with_deadline(self, deadline: float) -> ToolContext:
        return replace(self, deadline=deadline)

    def remaining(self) -> float:
        """Seconds left for this call (the per-call timeout when no deadline was set)."""
        if self.deadline is None:
            return self.limits.timeout_seconds
        return max(0.0, self.deadline - time.monotonic())

    def check_deadline(self) -> None:
        """Raise ToolTimeout once the deadline has passed: Python tools call it between units of work."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise ToolTimeout(timeout_message(self.limits.timeout_seconds))

    def require_workspace(self) -> Workspace:
        if self.workspace is None:
            raise ToolError("no workspace is configured for this session, so file tools are unavailable")
        return self.workspace


def timeout_message(seconds: float) -> str:
    return (f"the tool ran out of time (limit {seconds:g}s per call) and was stopped; "
            "narrow the request (a smaller path, a more specific pattern) and try again")


#: What a tool's function returns: plain output, or a full result (to flag truncation itself).
ToolOutput = str | ToolResult


@dataclass(frozen=True)
class Tool:
    name: str
    description: str  # one or two sentences, for a model
    parameters: Mapping[str, Any]  # a JSON Schema object (the subset registry.validate_arguments checks)
    category: str
    read_only: bool
    run: Callable[[dict[str, Any], ToolContext], ToolOutput] = field(repr=False)

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"tool {self.name!r}: unknown category {self.category!r}; one of {', '.join(CATEGORIES)}")


def schema(properties: Mapping[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON Schema object for a tool's arguments: no key outside ``properties`` is accepted."""
    return {"type": "object", "properties": dict(properties), "required": list(required), "additionalProperties": False}
