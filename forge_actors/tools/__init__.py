"""Tools participants call to ground a deliberation in a repository: read, search, git history, and more.

This package knows nothing of sessions, events, actors or the engine. The engine builds a
``ToolContext`` (workspace, history, summarizer, allowlists, limits), a ``Toolbox`` of the tools
a participant may use, and runs each call with ``Toolbox.call``, which always returns a
``ToolResult`` (an error included) and never raises for anything a model did.
"""

from __future__ import annotations

from collections.abc import Mapping

from forge_actors.tools.base import (
    CATEGORIES,
    HistoryHit,
    SessionHistory,
    Tool,
    ToolContext,
    ToolError,
    ToolLimits,
    ToolResult,
    ToolSpec,
    ToolTimeout,
)
from forge_actors.tools.registry import (
    ArgumentError,
    Toolbox,
    ToolBudget,
    UnknownToolError,
    default_registry,
    select_tools,
    validate_arguments,
)
from forge_actors.tools.workspace import DEFAULT_EXCLUDES, DEFAULT_SKIPPED_DIRS, PathRefused, Workspace

#: Every built-in tool by name (read-only mapping).
REGISTRY: Mapping[str, Tool] = default_registry()

#: What a participant gets when the operator enables tools without naming them: everything read-only
#: that stays inside the machine (no edit, no shell, no http_get).
DEFAULT_TOOLS: tuple[str, ...] = tuple(name for name, tool in REGISTRY.items() if tool.read_only)

__all__ = [
    "CATEGORIES",
    "DEFAULT_EXCLUDES",
    "DEFAULT_SKIPPED_DIRS",
    "DEFAULT_TOOLS",
    "REGISTRY",
    "ArgumentError",
    "HistoryHit",
    "PathRefused",
    "SessionHistory",
    "Tool",
    "ToolBudget",
    "ToolContext",
    "ToolError",
    "ToolLimits",
    "ToolResult",
    "ToolSpec",
    "ToolTimeout",
    "Toolbox",
    "UnknownToolError",
    "Workspace",
    "default_registry",
    "select_tools",
    "validate_arguments",
]
