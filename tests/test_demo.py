"""`make demo` runs what this runs; it must never fail."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_and_rebuilds_from_the_log():
    done = subprocess.run([sys.executable, "-m", "forge_actors.demo"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "round 1: draft" in done.stdout and "round 2: critique" in done.stdout
    assert "3 drafts, 6 critiques" in done.stdout
