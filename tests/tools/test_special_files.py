"""FIFOs, sockets and devices: refused at once, never opened (a FIFO without a writer blocks a reader
for ever, and each such call used to keep a thread past the tool's limit); walks skip them."""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tool_support import make_toolbox

from forge_actors.tools import Toolbox, ToolResult

#: A call that blocked on a FIFO never came back; one that refuses it answers in milliseconds.
LIVENESS_SECONDS = 10.0


def _answer(box: Toolbox, tool: str, arguments: dict[str, Any]) -> ToolResult:
    """The call's result, from a thread: a call that blocks fails the test instead of hanging it."""
    results: list[ToolResult] = []
    worker = threading.Thread(target=lambda: results.append(box.call(tool, arguments)), daemon=True)
    worker.start()
    worker.join(LIVENESS_SECONDS)
    assert results, f"{tool}({arguments}) did not answer within {LIVENESS_SECONDS}s"
    return results[0]


@pytest.fixture
def specials(root: Path) -> Iterator[Path]:
    os.mkfifo(root / "pipe")
    os.mkfifo(root / "src" / "pipe.py")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(root / "sock"))
    try:
        yield root
    finally:
        listener.close()


@pytest.mark.parametrize("tool, arguments", [
    ("file_info", {"path": "pipe"}),
    ("read_file", {"path": "pipe"}),
    ("summarize_file", {"path": "pipe"}),
    ("grep", {"pattern": "x", "path": "pipe"}),
    ("count_matches", {"pattern": "x", "path": "pipe"}),
    ("find_symbol", {"name": "x", "path": "src/pipe.py"}),
    ("file_info", {"path": "sock"}),
    ("read_file", {"path": "sock"}),
])
def test_a_fifo_or_a_socket_is_refused_at_once(specials: Path, tool: str, arguments: dict[str, Any]) -> None:
    box = make_toolbox(specials, summarize=lambda text: text)
    result = _answer(box, tool, arguments)
    kind = "named pipe (FIFO)" if "pipe" in arguments["path"] else "socket"
    assert result.error is not None and f"is a {kind}, not a regular file" in result.error, result.error
    assert "the tools read regular files" in result.error


def test_read_many_refuses_the_fifo_and_reads_the_rest(specials: Path) -> None:
    result = _answer(make_toolbox(specials), "read_many", {"paths": ["pipe", "README.md"]})
    assert "pipe: error: 'pipe' is a named pipe (FIFO)" in result.output and "# Demo" in result.output


def test_walks_skip_fifos_and_sockets(specials: Path, grep_engine: str) -> None:
    box = make_toolbox(specials)
    assert _answer(box, "grep", {"pattern": "start"}).output.splitlines()[0] == "README.md:2:start here"
    for tool, arguments in [("list_files", {}), ("tree", {}), ("search_files", {"name_pattern": "*"}),
                            ("count_matches", {"pattern": "start"}), ("find_symbol", {"name": "start"}),
                            ("file_info", {"path": "."})]:
        result = _answer(box, tool, arguments)
        assert result.error is None and "pipe" not in result.output and "sock" not in result.output, result
    assert "entries: 3" in _answer(box, "file_info", {"path": "."}).output  # README.md, keys, src: no pipe, no socket


def test_writing_over_a_fifo_is_refused(specials: Path) -> None:
    result = _answer(make_toolbox(specials), "write_file", {"path": "pipe", "content": "x"})
    assert result.error is not None and "named pipe (FIFO)" in result.error
    assert stat.S_ISFIFO(os.lstat(specials / "pipe").st_mode)


@pytest.mark.skipif(not Path("/dev/null").is_char_device(), reason="no /dev/null character device here")
@pytest.mark.parametrize("tool", ["file_info", "read_file", "grep"])
@pytest.mark.parametrize("device", ["null", "zero", "tty", "urandom"])
def test_devices_are_refused_without_being_opened(tool: str, device: str) -> None:
    if not Path("/dev", device).is_char_device():
        pytest.skip(f"/dev/{device} is not a character device here")
    arguments = {"path": device} if tool != "grep" else {"pattern": "x", "path": device}
    result = _answer(make_toolbox(Path("/dev"), [tool]), tool, arguments)
    assert result.error is not None and f"'{device}' is a character device, not a regular file" in result.error
