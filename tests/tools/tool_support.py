"""Helpers of the tool tests that are not fixtures (imported by name, like tests/support.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forge_actors.tools import REGISTRY, Toolbox, ToolContext, ToolLimits, Workspace


def make_toolbox(root: Path, names: list[str] | None = None, **context: Any) -> Toolbox:
    """A toolbox over ``root`` (every tool unless ``names``), with ToolContext fields from ``context``."""
    limits = context.pop("limits", ToolLimits())
    workspace = context.pop("workspace", None) or Workspace(root, protected=context.pop("protected", ()))
    return Toolbox(names if names is not None else list(REGISTRY), ToolContext(workspace=workspace, limits=limits,
                                                                                **context))


def ok(box: Toolbox, tool: str, /, **arguments: Any) -> str:
    """The output of a call that must succeed (its error shown if it did not)."""
    result = box.call(tool, arguments)
    assert result.error is None, result.error
    return result.output
