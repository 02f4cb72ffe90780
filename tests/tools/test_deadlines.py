"""Every tool stops at its deadline: Python loops check it per bounded step, subprocesses are killed at it.

The Python tools are run with a check_deadline that runs out after a few calls, so that each test
shows where the checks are (per file, per line, per patch position) without timing anything.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tool_support import make_toolbox, ok

from forge_actors.tools import ToolContext, ToolLimits, ToolTimeout
from forge_actors.tools.search import MAX_PARSED_CHARS


@pytest.fixture
def deadline_after(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """Make the deadline pass at the n-th check_deadline call of the next tool calls."""

    def arm(checks: int) -> None:
        left = [checks]

        def check_deadline(self: ToolContext) -> None:
            left[0] -= 1
            if left[0] < 0:
                raise ToolTimeout("the tool ran out of time (in this test, after a number of checks)")

        monkeypatch.setattr(ToolContext, "check_deadline", check_deadline)

    return arm


def _ran_out(result_error: str | None) -> bool:
    return result_error is not None and "ran out of time" in result_error


def test_listing_and_name_search_check_per_entry(root: Path, deadline_after: Callable[[int], None]) -> None:
    (root / "many").mkdir()
    for n in range(40):
        (root / "many" / f"f{n}.txt").write_text("x\n")
    box = make_toolbox(root)
    deadline_after(10)  # a handful of folders, forty files in one of them
    assert _ran_out(box.call("list_files", {"pattern": "**/*.txt"}).error)
    deadline_after(10)
    assert _ran_out(box.call("search_files", {"name_pattern": "f*"}).error)


def test_a_walk_stopped_by_its_deadline_leaves_no_descriptor_open(root: Path,
                                                                deadline_after: Callable[[int], None]) -> None:
    box = make_toolbox(root)
    before = len(os.listdir("/proc/self/fd"))
    for tool, arguments in [("tree", {}), ("list_files", {}), ("file_info", {"path": "src"})] * 20:
        deadline_after(0)  # passed before the first folder is read
        assert _ran_out(box.call(tool, arguments).error), tool
    assert len(os.listdir("/proc/self/fd")) <= before  # a leak here is one descriptor a call, sixty in all


@pytest.mark.parametrize("tool", ["grep", "count_matches"])
def test_the_python_regex_engine_checks_per_line(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 deadline_after: Callable[[int], None], tool: str) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no ripgrep: the Python engine
    (root / "lines.txt").write_text("line\n" * 100)
    box = make_toolbox(root)
    deadline_after(20)  # one file, a hundred lines
    assert _ran_out(box.call(tool, {"pattern": "needle", "path": "lines.txt"}).error)


def test_find_symbol_scans_a_python_file_too_long_to_parse_by_keyword(root: Path,
                                                                      deadline_after: Callable[[int], None]) -> None:
    body = "x = 1\n" * (MAX_PARSED_CHARS // 6 + 10) + "def target():\n    pass\n"
    (root / "big.py").write_text(body)
    (root / "small.py").write_text("target = 3\n")
    box = make_toolbox(root)
    assert ok(box, "find_symbol", name="target").splitlines() == [
        f"big.py:{body.count(chr(10)) - 1}: definition def target():", "small.py:1: assignment target"]
    deadline_after(100)  # the long file, line by line
    assert _ran_out(box.call("find_symbol", {"name": "target", "path": "big.py"}).error)


def test_a_hunk_searched_for_checks_per_position(root: Path, deadline_after: Callable[[int], None]) -> None:
    (root / "same.txt").write_text("x\n" * 3000)
    patch = "--- a/same.txt\n+++ b/same.txt\n@@ -1,1001 +1,1001 @@\n" + " x\n" * 1000 + "-y\n+z\n"
    box = make_toolbox(root)
    assert "does not apply" in box.call("apply_patch", {"patch": patch}).error  # 401 positions, 1000 lines each
    deadline_after(20)
    assert _ran_out(box.call("apply_patch", {"patch": patch}).error)
    assert (root / "same.txt").read_text() == "x\n" * 3000


def _sleeper(folder: Path, name: str, pids: Path) -> None:
    """A program that starts a child, says both pids, and sleeps (as a slow git or rg would)."""
    script = folder / name
    script.write_text(f"#!{sys.executable}\nimport os, subprocess, time\n"
                      "child = subprocess.Popen(['sleep', '60'])\n"
                      f"open({str(pids)!r}, 'a').write(f'{{os.getpid()}} {{child.pid}}\\n')\n"
                      "time.sleep(60)\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as state:
            return state.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_a_slow_git_or_ripgrep_is_killed_with_its_children(root: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    fake_bin = tmp_path / "slow-bin"
    fake_bin.mkdir()
    pids = tmp_path / "pids.txt"
    _sleeper(fake_bin, "rg", pids)
    _sleeper(fake_bin, "git", pids)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    (root / ".git").mkdir()  # git tools start git only in the top of a repository
    box = make_toolbox(root, limits=ToolLimits(timeout_seconds=0.5))
    for tool, arguments in [("grep", {"pattern": "x"}), ("git_log", {})]:
        assert _ran_out(box.call(tool, arguments).error), tool
    started = [tuple(map(int, line.split())) for line in pids.read_text().splitlines()]
    assert len(started) == 2
    for _ in range(200):  # the group is killed before call() returns; the kernel may take a moment to reap
        if not any(_alive(pid) for pair in started for pid in pair):
            break
        time.sleep(0.01)
    assert not any(_alive(pid) for pair in started for pid in pair)
