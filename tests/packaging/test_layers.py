"""Each layer owns its room: the dependency direction of DESIGN.md, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imports_of(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[str(path.relative_to(ROOT))] = names
    return found


def test_eventstore_knows_nothing_of_forge():
    for path, names in imports_of(ROOT / "eventstore").items():
        assert not any(n.startswith("forge_actors") for n in names), path


def test_providers_know_nothing_of_sessions():
    allowed = ("forge_actors.providers", "forge_actors.formats")  # formats is a leaf shared with the mock
    for path, names in imports_of(ROOT / "forge_actors" / "providers").items():
        ours = {n for n in names if n.startswith("forge_actors.")}
        assert all(n.startswith(allowed) for n in ours), (path, ours)
        assert "eventstore" not in names, path


def test_core_does_no_io_and_uses_no_actors():
    core = ["events.py", "state.py", "formats.py", "rounds.py", "templates.py"]
    for name in core:
        names = imports_of(ROOT / "forge_actors")[f"forge_actors/{name}"]
        assert not names & {"pykka", "httpx", "sqlite3", "eventstore", "subprocess", "socket"}, name
        assert not any(n.startswith("forge_actors.providers") for n in names), name


def test_surfaces_use_the_engine_api_only():
    inner = ("forge_actors.session", "forge_actors.participant", "forge_actors.messages", "forge_actors.scheduler")
    surfaces = {path: names for path, names in imports_of(ROOT / "forge_actors").items()
                if path.endswith(("terminal.py", "cli.py")) or "/server/" in path}
    surfaces.update(imports_of(ROOT / "tools") if (ROOT / "tools").exists() else {})
    assert surfaces
    for path, names in surfaces.items():
        assert not any(n.startswith(inner) for n in names), path
        assert not any(n == "eventstore" or n.startswith("eventstore.") for n in names), path


def test_actors_never_import_surfaces():
    surfaces = ("forge_actors.engine", "forge_actors.cli", "forge_actors.server", "forge_actors.terminal")
    for name in ("session.py", "participant.py", "messages.py", "scheduler.py"):
        names = imports_of(ROOT / "forge_actors")[f"forge_actors/{name}"]
        assert not any(n.startswith(surfaces) for n in names), name
