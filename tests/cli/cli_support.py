"""Helpers of the CLI tests (imported by name: the test folders are on sys.path)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without keys or forge settings of the machine running the tests."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "FORGE_DB", "FORGE_CONFIG")}
    env.update(extra)
    return env


def tools_replay() -> ModuleType:
    """tools/replay.py as a module, to call its main() in this process."""
    path = Path(__file__).resolve().parents[2] / "tools" / "replay.py"
    spec = importlib.util.spec_from_file_location("tools_replay", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
