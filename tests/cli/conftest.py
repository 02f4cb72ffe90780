"""The `forge` command run in this process (fast), for tests that need no real process of their own."""

from __future__ import annotations

import io
import signal
import sys
from collections.abc import Callable

import pytest
from cli_support import clean_env

from forge_actors.surfaces.cli import main

#: (exit code, stdout, stderr) of one ``forge`` command.
CliResult = tuple[int, str, str]


@pytest.fixture
def cli(tmp_path, capsys, monkeypatch) -> Callable[..., CliResult]:
    """``forge ARGS --json`` in this process, in ``tmp_path``; ``env`` adds variables, ``stdin`` feeds it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # main() must not take over this process's SIGTERM

    def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> CliResult:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main([*args, "--json"], clean_env(**(env or {})))
        out, err = capsys.readouterr()
        return code, out, err
    return run
