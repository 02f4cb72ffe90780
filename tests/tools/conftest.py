"""Shared fixtures of the tool tests: a small workspace and a toolbox over it."""

from __future__ import annotations

from pathlib import Path

import pytest
from tool_support import make_toolbox, require_ripgrep, without_ripgrep

from forge_actors.tools import Toolbox


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


@pytest.fixture
def box(root: Path) -> Toolbox:
    return make_toolbox(root)


@pytest.fixture(params=["python", "ripgrep"])
def grep_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Each of grep's engines in turn: its Python one (no rg on PATH), then ripgrep."""
    if request.param == "python":
        without_ripgrep(monkeypatch, tmp_path)
    else:
        require_ripgrep()
    return str(request.param)
