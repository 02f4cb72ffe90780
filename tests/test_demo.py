"""`make demo` runs what this runs; it must never fail."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_runs_a_whole_deliberation_and_audits_its_log():
    done = subprocess.run([sys.executable, "-m", "forge_actors.demo"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)
    for heading in ("round 1: draft", "round 2: critique", "round 3: synthesis", "round 4: convergence"):
        assert heading in out
    assert "mean critique scores" in out and "votes alice:" in out
    assert re.search(r"session (converged|max_rounds): \S", out)
    assert "final synthesis by" in out
    assert "no violations; rebuilt from the log: identical state" in out
