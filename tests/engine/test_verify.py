"""Forge.verify and tools/replay.py --verify on a session whose log calls for an ending it lacks:
a violation while no engine holds the session's lease, none while one does (its end may be on its
way), and resuming the session records the end."""

from __future__ import annotations

import sys
from pathlib import Path

from support import wait_until

from eventstore import EventStore, LogLeases
from forge_actors.core.events import SessionEnded
from forge_actors.core.records import to_records
from forge_actors.engine import Forge

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import replay as replay_tool  # noqa: E402  (tools/replay.py)

ELSEWHERE = "elsewhere.example:4242:abcd1234"  # an engine on another host


def test_a_missing_end_is_a_violation_only_while_nobody_drives_the_session(tmp_path, capsys):
    with Forge(str(tmp_path / "honest.db")) as honest:
        session_id = honest.create_session("Design a TODO app API", ["mock:alice", "mock:bob"], max_iterations=1)
        events = [r.event for r in honest.deliberate(session_id)]
    ending = events.pop()
    assert isinstance(ending, SessionEnded)
    db = str(tmp_path / "forge.db")
    with EventStore(db) as store:  # the same log without its SessionEnded
        store.append(session_id, to_records(events))

    assert replay_tool.main(["--db", db, session_id, "--verify"]) == 1
    err = capsys.readouterr().err
    assert f"1 violation(s); the first: position {len(events)} (version {len(events)}): the log calls for " \
           f"the session to end {ending.outcome} (" in err
    with Forge(db) as forge:
        leases = LogLeases(forge._store)
        leases.acquire(f"session:{session_id}", ELSEWHERE, 60)
        assert forge.verify(session_id) == []  # that engine may be about to record the end
        leases.release(f"session:{session_id}", ELSEWHERE)
        [violation] = forge.verify(session_id)
        assert "no SessionEnded follows and no engine drives the session" in violation.problem

        assert forge.start(session_id)  # resuming records the ending the log calls for
        assert wait_until(lambda: forge.state(session_id).ended)
        resumed_ending = forge.events(session_id)[-1]
        assert (resumed_ending.outcome, resumed_ending.final_score) == (ending.outcome, ending.final_score)
        assert forge.verify(session_id) == []
