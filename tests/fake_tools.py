"""Small fake command-line assistants, written as Python scripts by the tests that use them."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

ASSISTANT = r'''
import json, os, subprocess, sys, time
mode = os.environ.get("FAKE_MODE", "normal")
prompt = sys.argv[-1] if len(sys.argv) > 1 and sys.argv[-1] != "-" else sys.stdin.read()
out = sys.stdout
def say(text, delay=0.0):
    out.write(text); out.flush()
    if delay: time.sleep(delay)
if mode == "args":
    say(json.dumps(sys.argv[1:]) + "\n"); sys.exit(0)
say("\x1b]0;FakeAI\x07\x1b[1mFakeAI v1\x1b[0m - type /help for help\n")
for frame in "\u280b\u2819\u2839\u2838":
    say(f"\r{frame} Thinking...", 0.01)
say("\r\x1b[2K")
if mode == "normal":
    say("\x1b[32mAnswer:\x1b[0m ", 0.05)
    for word in ("the", "prompt", "had", str(len(prompt)), "characters"):
        say(word + " ", 0.02)
    say("\nSecond line.\n")
elif mode == "fail":
    say("partial ")
    sys.stderr.write("warming up\nboom: model overloaded\n"); sys.stderr.flush()
    sys.exit(3)
elif mode == "hang":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(os.environ["FAKE_PIDFILE"], "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    say("starting... ")
    time.sleep(60)
elif mode == "die":
    say("half an answ")
    os._exit(137)
elif mode == "empty":
    say("\x1b[2K\r\u280b\r\n")
'''

INTERACTIVE = r'''
import os, subprocess, sys, time
out = sys.stdout
def say(text):
    out.write(text); out.flush()
say("\x1b[1mFakeChat\x1b[0m ready. Tip: /quit to leave\n> ")
children = []
for line in sys.stdin:
    line = line.strip()
    if line == "/quit":
        say("bye\n"); break
    if line.startswith("die"):
        say("half an ans"); os._exit(1)
    if line.startswith("hang"):
        time.sleep(60)
    if line.startswith("spawn"):
        children.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
        with open(os.environ["FAKE_PIDFILE"], "w") as f:
            f.write(f"{os.getpid()} {children[-1].pid}")
    say("\x1b[36mYou said:\x1b[0m " + line[:40] + "\n")
    time.sleep(0.02)
    say("Done, pid " + str(os.getpid()) + ".\n> ")
'''


def write_tool(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.write_text(f"#!{sys.executable}\n{source}")
    path.chmod(path.stat().st_mode | stat.S_IEXEC | stat.S_IXGRP | stat.S_IXOTH)
    return path


def env_with(folder: Path, **extra: str) -> dict[str, str]:
    """The environment with ``folder`` first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{folder}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def alive(pid: int) -> bool:
    """True while ``pid`` is a live (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            return stat_file.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
