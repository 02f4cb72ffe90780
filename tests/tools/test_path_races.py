"""Paths that change while a tool runs: a folder of the workspace swapped for a symlink to a folder
outside it, and back, over and over, while tools read, list, search and write through it.

Whatever the timing, a tool must never show what is outside nor write there: it checks each folder
on the way as it opens it (from the folder before's descriptor), so there is no moment between a
check and a use for the swap to fall into.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tool_support import make_toolbox

from forge_actors.tools import ToolResult

MARKER = "MARKER-outside-the-workspace"
#: Tries per call: enough for the code of main to be caught (its read_file read the marker in about one
#: try in 10 when the swapper had a core of its own), few enough that the whole file takes about a second.
TRIES = 500
#: A call that walks the whole workspace or writes (an fsync) costs more; ripgrep costs a process per try.
WALK_TRIES = 150
RG_TRIES = 15
#: git blame is a process per try, like ripgrep (main's git_blame printed the outside file within 40).
GIT_TRIES = 40


#: The swapping process: renameat2(RENAME_EXCHANGE) swaps the two names atomically, so that "sub" is
#: always there, a folder half of the time and a symlink the other half; without it (not glibc), two
#: renames each way. It says "ready" once it swapped.
SWAPPER = """
import ctypes, os, sys
sub, link, spare = (name.encode() for name in sys.argv[1:4])
try:
    renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
except (AttributeError, OSError):
    renameat2 = None
def swap():
    if renameat2 is not None:
        if renameat2(-100, sub, -100, link, 2) == 0:  # AT_FDCWD, RENAME_EXCHANGE
            return
    os.rename(sub, spare); os.rename(link, sub); os.rename(sub, link); os.rename(spare, sub)
swap()
print("ready", flush=True)
while True:
    swap()
"""


class Swapper:
    """A process that keeps swapping ``root/sub`` (a folder) with ``root/sub.link`` (a symlink to the
    folder outside): a process of its own, so that it swaps while a tool runs, not between its steps."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __enter__(self) -> Swapper:
        names = [str(self.root / name) for name in ("sub", "sub.link", "sub.real")]
        self.process = subprocess.Popen([sys.executable, "-I", "-S", "-c", SWAPPER, *names], stdout=subprocess.PIPE)
        assert self.process.stdout is not None and self.process.stdout.readline() == b"ready\n"
        # On a CPU of its own, so that it swaps while a call runs rather than only when the tools are preempted.
        self.cpus = os.sched_getaffinity(0) if hasattr(os, "sched_setaffinity") else set()
        if len(self.cpus) >= 2:
            swapper_cpu = max(self.cpus)
            os.sched_setaffinity(self.process.pid, {swapper_cpu})
            os.sched_setaffinity(0, self.cpus - {swapper_cpu})
        return self

    def __exit__(self, *exc: object) -> None:
        if len(self.cpus) >= 2:
            os.sched_setaffinity(0, self.cpus)
        self.process.kill()
        self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()
        # Stopped anywhere: put the folder back at "sub" and the link at "sub.link".
        names = [self.root / name for name in ("sub", "sub.link", "sub.real")]
        real = next(p for p in names if p.is_dir() and not p.is_symlink())
        link = next(p for p in names if p.is_symlink())
        real.rename(self.root / "real.tmp")
        link.rename(self.root / "link.tmp")
        (self.root / "real.tmp").rename(names[0])
        (self.root / "link.tmp").rename(names[1])


@pytest.fixture
def race(tmp_path: Path) -> tuple[Path, Path]:
    root, outside = tmp_path / "ws", tmp_path / "outside"
    (root / "sub" / "deep").mkdir(parents=True)
    (outside / "deep").mkdir(parents=True)
    (root / "sub" / "deep" / "notes.txt").write_text("inside\n")
    (outside / "deep" / "notes.txt").write_text(f"{MARKER}\n" * 3)  # same name: a read that follows the link finds it
    (outside / "marker.txt").write_text(f"{MARKER}\n")
    os.symlink(outside, root / "sub.link")
    return root, outside


def _outside_tree(outside: Path) -> dict[str, str]:
    return {str(p.relative_to(outside)): p.read_text() if p.is_file() else "/" for p in sorted(outside.rglob("*"))}


def _never_shows_outside(root: Path, tool: str, arguments: dict[str, Any], tries: int, **context: Any) -> str:
    """Call ``tool`` ``tries`` times while the folder is swapped, checking every result; then once more,
    the folder back in place, where it must work (its output is returned)."""
    box = make_toolbox(root, **context)
    with Swapper(root):
        for _ in range(tries):
            _assert_inside(box.call(tool, arguments))
    result = box.call(tool, arguments)
    assert result.error is None, result.error
    return result.output


def _assert_inside(result: ToolResult) -> None:
    shown = result.output + (result.error or "")
    assert MARKER not in shown and "marker.txt" not in shown, shown
    assert "lines: 3" not in shown and f"size: {len(MARKER) * 3 + 3} bytes" not in shown, shown


READS = [  # a call, its tries, and what it answers once the folder is back in place
    ("read_file", {"path": "sub/deep/notes.txt"}, TRIES, "1\tinside"),
    ("file_info", {"path": "sub/deep/notes.txt"}, TRIES, "lines: 1"),
    ("list_files", {"path": "sub"}, TRIES, "sub/deep/notes.txt"),
    ("tree", {"path": "sub"}, TRIES, "    notes.txt"),
    ("search_files", {"name_pattern": "*.txt"}, WALK_TRIES, "sub/deep/notes.txt"),
    ("count_matches", {"pattern": "MARKER|inside", "path": "sub"}, TRIES, "1\tsub/deep/notes.txt"),
    ("summarize_file", {"path": "sub/deep/notes.txt"}, TRIES, "inside"),
]


@pytest.mark.parametrize("tool, arguments, tries, answer", READS, ids=[call[0] for call in READS])
def test_reading_tools_never_follow_a_folder_swapped_for_a_symlink(race: tuple[Path, Path], tool: str,
                                                                   arguments: dict[str, Any], tries: int,
                                                                   answer: str) -> None:
    root, _ = race
    assert answer in _never_shows_outside(root, tool, arguments, tries, summarize=lambda text: text)


@pytest.mark.parametrize("path", ["sub", "."])
def test_grep_never_shows_a_file_read_through_a_swapped_folder(race: tuple[Path, Path], grep_engine: str,
                                                               path: str) -> None:
    root, _ = race
    tries = RG_TRIES if grep_engine == "ripgrep" else TRIES if path == "sub" else WALK_TRIES
    found = _never_shows_outside(root, "grep", {"pattern": "MARKER|inside", "path": path}, tries)
    assert found == "sub/deep/notes.txt:1:inside"


def test_write_file_never_writes_through_a_swapped_folder(race: tuple[Path, Path]) -> None:
    root, outside = race
    before = _outside_tree(outside)
    _never_shows_outside(root, "write_file", {"path": "sub/deep/new.txt", "content": "new\n"}, WALK_TRIES)
    assert _outside_tree(outside) == before
    assert (root / "sub" / "deep" / "new.txt").read_text() == "new\n"
    assert sorted(p.name for p in (root / "sub" / "deep").iterdir()) == ["new.txt", "notes.txt"]  # no temporary left


def test_apply_patch_never_reads_or_writes_through_a_swapped_folder(race: tuple[Path, Path]) -> None:
    root, outside = race
    before = _outside_tree(outside)
    deep = os.open(root / "sub" / "deep", os.O_RDONLY | os.O_DIRECTORY)  # the real folder, wherever the swaps put it

    def next_patch() -> str:
        """Change notes.txt back and forth, and create or delete made.txt: what applies to the folder now."""
        with open(os.open("notes.txt", os.O_RDONLY, dir_fd=deep)) as notes:
            line = notes.read().strip()
        change = (f"--- a/sub/deep/notes.txt\n+++ b/sub/deep/notes.txt\n@@ -1 +1 @@\n-{line}\n"
                  f"+{'changed' if line == 'inside' else 'inside'}\n")
        if "made.txt" in os.listdir(deep):
            return change + "--- a/sub/deep/made.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-made\n"
        return change + "--- /dev/null\n+++ b/sub/deep/made.txt\n@@ -0,0 +1 @@\n+made\n"

    box = make_toolbox(root)
    try:
        with Swapper(root):
            for _ in range(WALK_TRIES):
                _assert_inside(box.call("apply_patch", {"patch": next_patch()}))
        assert box.call("apply_patch", {"patch": next_patch()}).error is None
    finally:
        os.close(deep)
    assert _outside_tree(outside) == before
    assert {p.name for p in (root / "sub" / "deep").iterdir()} <= {"made.txt", "notes.txt"}  # no temporary left


def test_git_blame_never_reads_through_a_folder_swapped_for_a_symlink(race: tuple[Path, Path]) -> None:
    root, _ = race
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "sub/deep/notes.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "notes"], check=True)
    found = _never_shows_outside(root, "git_blame", {"path": "sub/deep/notes.txt"}, GIT_TRIES)
    assert found.rstrip().endswith("inside")
