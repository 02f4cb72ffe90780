"""Helpers of the tool tests that are not fixtures (imported by name, like tests/support.py)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

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


def require_ripgrep(skip_reason: str = "the Python grep is tested instead") -> None:
    """Skip when ripgrep is not installed, saying so; fail instead where CI installs it (.ci/run sets
    FORGE_REQUIRE_RIPGREP), since a skip there would hide a gap."""
    if shutil.which("rg") is None:
        from support import unavailable  # here: hostile_calls.py imports this module with tests/tools alone on its path

        unavailable(f"ripgrep (rg) is not installed (apt-get install ripgrep); {skip_reason}", "FORGE_REQUIRE_RIPGREP")


def without_ripgrep(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """From now on no rg on PATH: grep runs its Python engine."""
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(empty))
