"""tools/ws_events.py: the README's manual test without websocat, with the websockets library the
install brings — every event of the deliberation, one JSON line each, to SessionEnded, exit 0."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from forge_actors.engine import Forge
from forge_actors.surfaces.server.runner import ServerThread

TOOL = Path(__file__).resolve().parents[2] / "tools" / "ws_events.py"


def test_ws_events_prints_the_deliberation_to_its_end(tmp_path):
    with Forge(str(tmp_path / "forge.db")) as forge, ServerThread(forge) as server:
        session_id = forge.create_session("Plan a garden", ["mock:a"], max_iterations=1)
        url = server.url.replace("http://", "ws://") + f"/api/v1/forge/sessions/{session_id}/deliberate"
        done = subprocess.run([sys.executable, str(TOOL), url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[0]["type"] == "SessionCreated" and events[-1]["type"] == "SessionEnded"
    assert TOOL.stat().st_mode & stat.S_IXUSR and TOOL.read_text().startswith("#!/usr/bin/env python3\n")


def test_ws_events_says_when_it_cannot_connect():
    done = subprocess.run([sys.executable, str(TOOL), "ws://127.0.0.1:1/nothing?token=s3cret"], capture_output=True,
                          text=True, timeout=60, env={**os.environ})
    assert done.returncode == 2
    assert done.stderr.startswith("ws_events.py: cannot connect to ws://127.0.0.1:1/nothing: ")
    assert "s3cret" not in done.stderr
