"""No tool call can freeze the process: hostile regular expressions while a ticker thread keeps ticking.

The security review's bug: a pattern such as ``(a|aa)+$`` got round the Python engine's filter, and
Python's ``re`` held the GIL for the whole backtracking match, so every thread stopped (the HTTP server
answered nothing for 95 s and the tool deadline never fired). The calls run in a child process
(hostile_calls.py): a frozen process cannot time itself out, so the parent kills it and fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_calls import NAMED

#: A call that has not returned by then froze the process: the guard fails the test instead of hanging it.
#: The run takes about 2 s (6 s under pytest on a busy box); the bug held one call for minutes.
GUARD_SECONDS = 30
#: The longest a ticker thread may wait between two 50 ms ticks. Generous for a loaded 2-core box (the
#: usual gap is about 50 ms); the bug's gap was 95 s.
LARGEST_GAP_SECONDS = 1.0


def _workspace(root: Path) -> None:
    # Lines of "a"s that end in "!": a backtracking engine tries every way to split the "a"s before failing.
    lines = ["a" * 30 + "!"] * 1500 + ["a" * 12]  # the last line matches each named pattern
    (root / "hostile.txt").write_text("\n".join(lines) + "\n")
    (root / "mixed.txt").write_text(("a!" * 14 + "a" * 20 + "!\n") * 200)


def test_hostile_patterns_never_stop_the_other_threads(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    _workspace(root)
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    if shutil.which("rg") is None and os.environ.get("FORGE_REQUIRE_RIPGREP"):
        pytest.fail("ripgrep (rg) is required here (FORGE_REQUIRE_RIPGREP) but not on PATH")
    script = Path(__file__).with_name("hostile_calls.py")
    try:
        run = subprocess.run([sys.executable, str(script), str(root), str(empty_bin)], capture_output=True,
                             text=True, timeout=GUARD_SECONDS, cwd=script.parent)
    except subprocess.TimeoutExpired as expired:
        started = (expired.stdout or b"").decode() if isinstance(expired.stdout, bytes) else expired.stdout or ""
        last = started.strip().splitlines()[-1:] or ["(none started)"]
        pytest.fail(f"a tool call froze the process for more than {GUARD_SECONDS} s: {last[0]}")
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    calls = report["calls"]
    assert report["largest_gap"] < LARGEST_GAP_SECONDS, f"a ticker thread waited {report['largest_gap']:.2f} s"
    assert report["ticks"] > 0
    assert [c for c in calls if not c["returned"]] == []  # each call gave a result or an error, never raised
    per_engine = len(report["engines"]) + 1  # grep with each engine, and count_matches
    assert len(calls) > per_engine * (len(NAMED) + 20), "the fuzzed patterns did not run"
    for call in calls[: per_engine * len(NAMED)]:  # the named patterns find the one line of twelve "a"s
        assert call["error"] is None, call
        expected = "hostile.txt:1501:" + "a" * 12 if call["tool"] == "grep" else "total: 1 matches in 1 files"
        assert call["output"].splitlines()[0] == expected, call
    answered = [c for c in calls if c["error"] is None]
    assert len(answered) > len(calls) // 2  # most fuzzed patterns are valid RE2 and were answered
    refused = [c for c in calls if c["error"] is not None]
    assert all(c["error"].startswith(f"invalid regular expression {c['pattern']!r}") for c in refused), refused
