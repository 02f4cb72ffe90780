"""``[forge.tools] exclude``: the operator's own patterns, checked when forge.toml is read and added to
the default denylist of every participant's workspace."""

from __future__ import annotations

from pathlib import Path

import pytest

from forge_actors.core.events import ToolResult
from forge_actors.engine import ConfigError, Forge
from forge_actors.engine.config import parse_config
from forge_actors.engine.toolboxes import Toolboxes
from forge_actors.tools import DEFAULT_EXCLUDES, PathRefused


def test_the_exclude_list_is_read_and_checked() -> None:
    config = parse_config({"forge": {"tools": {"exclude": ["secrets/", "*.sqlite", "config/prod.yml"]}}})
    assert config.tools.exclude == ("secrets/", "*.sqlite", "config/prod.yml")
    assert parse_config({}).tools.exclude == ()
    for value, message in [
        ("secrets", "forge.tools.exclude: Expected `array`, got `str`"),
        ([3], "forge.tools.exclude[0]: Expected `str`, got `int`"),
        ([""], "forge.tools.exclude[0]: a file or folder name pattern of 1 to 200 characters"),
        (["ok", "/etc/x"], "forge.tools.exclude[1]: '/etc/x' is matched inside the workspace, at any depth"),
        (["~/.ssh"], "without a leading '/' or '~'"),
        (["a/../b"], "forge.tools.exclude[0]: 'a/../b' has an empty, '.' or '..' component"),
        (["a//b"], "has an empty, '.' or '..' component"),
        (["x" * 201], "of 1 to 200 characters"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("*", r"\*")):
            parse_config({"forge": {"tools": {"exclude": value}}})


def test_the_workspace_of_a_participant_adds_them_to_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "reports").mkdir()
    settings = parse_config({"forge": {"tools": {"exclude": ["reports/", "*.sqlite"]}}}).tools
    workspace = Toolboxes(settings, str(tmp_path / "forge.db"))._workspace(str(tmp_path), "s1")
    assert workspace is not None and workspace.exclude == (*DEFAULT_EXCLUDES, "reports/", "*.sqlite")
    for path, why in [("reports/q3.txt", "excluded"), ("data/cache.sqlite", "excluded"), (".env", "excluded"),
                      ("forge.db-wal", "protected")]:
        with pytest.raises(PathRefused, match=why):
            workspace.check(path)


def test_a_participant_cannot_read_what_the_operator_excluded(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "notes.md").write_text("# Notes\nThe salaries of everyone.\n")
    config = parse_config({"forge": {"tools": {"exclude": ["notes.md"]}}})
    with Forge(str(tmp_path / "forge.db"), config) as forge:
        session_id = forge.create_session("Review notes.md and propose a plan", ["mock:alice?tools=file", "mock:bob"],
                                          workspace=str(root), max_rounds=1, seed=3)
        list(forge.deliberate(session_id))
        results = [r.event for r in forge.records(session_id) if isinstance(r.event, ToolResult)]
    assert results and all("excluded from the workspace" in (r.error or "") for r in results)
    assert not any("salaries" in r.output for r in results)
