"""Helpers several test files share (importable from any test folder: ``pythonpath = ["tests"]``).

Fixtures live in conftest.py; plain names that tests call or pass live here, because a test
module should not import conftest.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from forge_actors.providers import RetryPolicy

#: Retries that still happen, in the same order, but wait milliseconds instead of seconds.
FAST_RETRIES = RetryPolicy(base_delay=0.01, max_delay=0.02, jitter=0)


def wait_until(condition: Callable[[], object], timeout: float = 30.0) -> bool:
    """Poll ``condition`` until it holds; the timeout is generous because it is only ever
    reached by a failing test (a passing one returns as soon as the condition holds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def unavailable(reason: str, require_env: str) -> None:
    """Skip the test for ``reason``; fail it instead when ``require_env`` is set (CI installs what the
    test needs and sets it: .ci/run), since a skip there would hide a gap."""
    if os.environ.get(require_env):
        pytest.fail(f"{reason} ({require_env} is set: these tests must run here)", pytrace=False)
    pytest.skip(reason)


class FakeWallClock:
    """A wall clock in nanoseconds (as leases read it) that moves only when told to."""

    def __init__(self, now_ns: int = 1_700_000_000 * 10**9) -> None:
        self.now = now_ns

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1e9)
