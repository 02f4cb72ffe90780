"""`forge run --human` on a real terminal (a pseudo-terminal of 80 columns): the wait for the human is
on the screen, and the final block's commands and URL are never broken inside a word (issue 27)."""

from __future__ import annotations

import fcntl
import os
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from cli_support import clean_env

from forge_actors.surfaces.terminal import SERVE_URL_LINE, next_steps

FORGE = str(Path(sys.executable).with_name("forge"))
COLUMNS, ROWS = 80, 40
#: Cursor moves, colours and the like: what the screen does, not what it says.
ESCAPES = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|\][^\x07]*\x07|[()][A-Z0-9])")


def run_on_a_terminal(args: list[str], cwd: Path, timeout: float = 120) -> tuple[int, str]:
    """``args`` with stdin, stdout and stderr on a pseudo-terminal of COLUMNS x ROWS: (exit code, what it
    wrote, escapes removed)."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    env = {k: v for k, v in clean_env(TERM="xterm-256color").items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    process = subprocess.Popen(args, cwd=cwd, env=env, stdin=follower, stdout=follower, stderr=follower,
                               start_new_session=True)
    os.close(follower)
    written = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process closed the terminal (it exited)
                break
            if not chunk:
                break
            written += chunk
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)
    return code, ESCAPES.sub("", written.decode("utf-8", "replace")).replace("\r\n", "\n").replace("\r", "\n")


@pytest.mark.slow  # a real deliberation with three waits for a human: about 5 s
def test_a_human_wait_is_on_the_screen_and_the_final_block_breaks_no_word(tmp_path):
    db = "a-log-with-a-name-long-enough-for-this-test.db"  # the commands need more than 80 columns, no word does
    code, screen = run_on_a_terminal(
        [FORGE, "run", "Design a TODO app API", "-p", "mock:alice", "-p", "mock:bob", "--human", "ada",
         "--human-timeout", "0.5", "--max-iterations", "1", "--db", db], cwd=tmp_path)
    assert code in (0, 1), screen
    assert "Traceback" not in screen
    session_id = re.search(r"session ([0-9a-f]{12}) · log", screen).group(1)

    # Before the first round the run waited for ada's draft, counting down; the convergence round waited for
    # her vote: the live area said so, then the round's end did.
    assert "waiting for ada's draft (" in screen.split("no draft from ada within")[0]
    assert "waiting for ada's vote (" in screen
    assert "no vote from ada in round 4 within 1s: the round went on without it" in screen

    # The final block: every line fits the 80 columns; a command goes on after " \" (a shell continuation),
    # so that joined back they are the commands, each runnable as printed; the URL is whole, on its own line.
    final = screen[screen.rindex("\nnext:\n") + len("\nnext:\n"):].strip("\n").split("\n")
    assert all(len(line) <= COLUMNS for line in final), final
    commands, current = [], ""
    for line in final:
        current += (" " if current else "") + line.strip().removesuffix(" \\")
        if not line.endswith(" \\"):
            commands.append(current)
            current = ""
    found = shutil.which("forge", path=clean_env().get("PATH"))
    program = "forge" if found and os.path.samefile(found, FORGE) else FORGE
    assert commands[:4] == next_steps(session_id, db, program)
    assert commands[4] == SERVE_URL_LINE
    assert any(line.endswith(" \\") for line in final)  # the long commands did need breaking
