"""Helpers of the CLI tests (imported by name: the test folders are on sys.path)."""

from __future__ import annotations

import os


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without keys or forge settings of the machine running the tests."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "FORGE_DB", "FORGE_CONFIG")}
    env.update(extra)
    return env
