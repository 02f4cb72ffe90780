"""Shared fixtures of the tool tests: a small workspace and a toolbox over it."""

from __future__ import annotations

from pathlib import Path

import pytest

from forge_actors.tools import REGISTRY, ToolContext, Toolbox, ToolLimits, Workspace


@pytest.fixture
def root(tmp_path: Path) -> Path:
    base = tmp_path / "ws"
    (base / "src" / "pkg").mkdir(parents=True)
    (base / "src" / "pkg" / "core.py").write_text(
        "import os\n\nLIMIT = 3\n\n\nclass Engine:\n    def start(self):\n        return 'go'\n\n\n"
        "async def fetch():\n    return None\n"
    )
    (base / "src" / "app.js").write_text("function start() {\n  return 1;\n}\nconst LIMIT = 4;\n")
    (base / "README.md").write_text("# Demo\nstart here\n")
    (base / ".env").write_text("API_KEY=sk-secret\n")
    (base / "keys").mkdir()
    (base / "keys" / "server.pem").write_text("-----BEGIN PRIVATE KEY-----\nstart\n")
    (base / ".ssh").mkdir()
    (base / ".ssh" / "config").write_text("Host start\n")
    return base


def make_toolbox(root: Path, names=None, **context) -> Toolbox:
    limits = context.pop("limits", ToolLimits())
    workspace = context.pop("workspace", None) or Workspace(root, protected=context.pop("protected", ()))
    return Toolbox(names if names is not None else list(REGISTRY), ToolContext(workspace=workspace, limits=limits,
                                                                                **context))


@pytest.fixture
def box(root: Path) -> Toolbox:
    return make_toolbox(root)
