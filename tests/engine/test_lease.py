"""One driver per session: the engine's lease, in one process, across processes, and over HTTP."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from support import FakeWallClock, wait_until

from eventstore import EventStore, LogLeases
from forge_actors.core.errors import SessionBusyError, SessionStoppedError
from forge_actors.core.events import ContentDelta, SessionEnded
from forge_actors.engine import Forge, InvalidCommandError
from forge_actors.providers.base import StreamChunk, Usage
from forge_actors.surfaces.server.app import API
from forge_actors.surfaces.server.runner import ServerThread

FORGE = str(Path(sys.executable).with_name("forge"))
GOAL = "Design a TODO app API"
HOST = socket.gethostname()
ELSEWHERE = "elsewhere.example:4242:abcd1234"  # an engine on another host


def slow(delay: float = 0.02, names: tuple[str, ...] = ("alice", "bob")) -> list[str]:
    return [f"mock:{name}?word_delay={delay}" for name in names]


def streaming(forge: Forge, session_id: str) -> bool:
    return any(isinstance(e, ContentDelta) for e in forge.events(session_id))


def lease_row(db: Path, session_id: str) -> tuple[str, int] | None:
    with EventStore(str(db), create=False) as store:
        rows = store.query("SELECT owner, expires_at FROM leases WHERE name = ?", (f"session:{session_id}",))
    return rows[0] if rows else None


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "FORGE_DB", "FORGE_CONFIG")}


def json_lines_until(stream, done) -> list[dict]:
    """Read JSON lines from a child's stdout until ``done(events)``."""
    events: list[dict] = []
    for line in stream:
        events.append(json.loads(line))
        if done(events):
            break
    return events


# -- in one process ---------------------------------------------------------------------------------


def test_a_second_engine_cannot_drive_a_running_session_but_reads_it(tmp_path):
    db = str(tmp_path / "forge.db")
    with Forge(db) as driver, Forge(db) as other:
        session_id = driver.create_session(GOAL, slow(0.01), max_rounds=1, seed=1)
        events = driver.deliberate(session_id)
        assert wait_until(lambda: streaming(driver, session_id))
        for attempt in (lambda: other.deliberate(session_id), lambda: other.resume(session_id),
                        lambda: other.run_round(session_id, "draft"), lambda: other.cancel(session_id),
                        lambda: other.switch_provider(session_id, "alice", "mock:zed")):
            with pytest.raises(SessionBusyError) as busy:
                attempt()
            assert busy.value.session_id == session_id and busy.value.owner == driver.owner
            assert 0 < busy.value.expires_in <= 6
        message = str(busy.value)
        assert driver.owner in message and "wait for it to finish, or stop that process" in message
        # A human's input is the exception: it goes to the driver (engine.mail), which applies or refuses it.
        with pytest.raises(InvalidCommandError, match="no synthesis up for a vote"):
            other.cast_vote(session_id, "dana", "AGREE")
        assert driver.owner.startswith(f"{HOST}:{os.getpid()}:")
        # Reads take no lease.
        assert other.state(session_id).status == "running" and other.events(session_id)
        with other.subscribe(session_id) as subscription:
            assert subscription.poll(5) is not None
        assert next(other.replay(session_id, speed=0)) is not None
        assert other.lease_holder(session_id).owner == driver.owner
        assert isinstance(list(events)[-1].event, SessionEnded)
        assert wait_until(lambda: driver.lease_holder(session_id) is None)  # released as its actor stopped
        assert other.verify(session_id) == []
        assert [r.event for r in other.deliberate(session_id)][-1] == driver.events(session_id)[-1]  # ended: no lease


def test_interrupt_and_close_release_the_lease_so_another_engine_resumes_at_once(tmp_path):
    db = str(tmp_path / "forge.db")
    with Forge(db) as first, Forge(db) as second:
        session_id = first.create_session(GOAL, slow(0.005), max_rounds=1, seed=2)
        first.deliberate(session_id)
        assert wait_until(lambda: streaming(first, session_id))
        first.interrupt(session_id)
        assert first.lease_holder(session_id) is None  # released before interrupt returned
        second.deliberate(session_id)
        assert second.lease_holder(session_id).owner == second.owner
        second.close()  # mid-deliberation
        assert first.lease_holder(session_id) is None
        events = list(first.resume(session_id))
        assert isinstance(events[-1].event, SessionEnded) and first.verify(session_id) == []


def test_a_lease_from_another_host_holds_until_it_expires(tmp_path):
    clock = FakeWallClock(time.time_ns())
    with Forge(str(tmp_path / "forge.db"), lease_clock=clock) as forge:
        session_id = forge.create_session(GOAL, ["mock:alice", "mock:bob"], max_rounds=1, seed=3)
        LogLeases(forge._store, clock=clock).acquire(f"session:{session_id}", ELSEWHERE, 6)
        before = forge._store.stream_version(session_id)
        with pytest.raises(SessionBusyError) as busy:
            forge.deliberate(session_id)
        assert (busy.value.owner, busy.value.expires_in) == (ELSEWHERE, 6.0)
        assert "expires in 6 s" in str(busy.value)
        clock.advance(5.5)
        with pytest.raises(SessionBusyError, match="expires in 0 s"):
            forge.deliberate(session_id)
        assert forge._store.stream_version(session_id) == before  # nothing was written
        clock.advance(0.5)  # expired now: ours
        events = list(forge.deliberate(session_id))
        assert isinstance(events[-1].event, SessionEnded) and forge.verify(session_id) == []


def test_a_lease_of_a_dead_process_of_this_host_is_taken_at_once(tmp_path, caplog):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with Forge(str(tmp_path / "forge.db")) as forge:
        session_id = forge.create_session(GOAL, ["mock:alice", "mock:bob"], max_rounds=1, seed=4)
        leases = LogLeases(forge._store)
        for alive in (f"{HOST}:{os.getpid()}:0ther0ne", f"{HOST}:{os.getppid()}:pArent00"):  # live processes keep theirs
            leases.acquire(f"session:{session_id}", alive, 600, stale=lambda lease: True)
            with pytest.raises(SessionBusyError):
                forge.deliberate(session_id)
        leases.acquire(f"session:{session_id}", f"{HOST}:{gone.pid}:deadbeef", 600, stale=lambda lease: True)
        with caplog.at_level(logging.INFO, logger="forge_actors.engine"):
            events = list(forge.deliberate(session_id))
        assert isinstance(events[-1].event, SessionEnded)
        assert f"{HOST}:{gone.pid}:deadbeef" in caplog.text and "no longer exists" in caplog.text


def test_a_lost_lease_stops_the_session_without_writing_more(tmp_path, caplog):
    with Forge(str(tmp_path / "forge.db"), lease_ttl=0.3) as forge:  # renewed every 0.1 s
        session_id = forge.create_session(GOAL, slow(0.01), max_rounds=1, seed=5)
        events = forge.deliberate(session_id)
        assert wait_until(lambda: streaming(forge, session_id))
        with caplog.at_level(logging.ERROR, logger="forge_actors.engine"):
            # What another engine does once our lease has expired (e.g. this process was paused).
            with forge._store.write_transaction() as conn:
                conn.execute("UPDATE leases SET owner = ? WHERE name = ?", (ELSEWHERE, f"session:{session_id}"))
            assert wait_until(lambda: session_id not in forge.running_sessions())
            forge._writer.flush()  # appends queued before the loss was seen
            version = forge._store.stream_version(session_id)
            time.sleep(0.3)  # the participants were streaming: nothing of theirs lands any more
            assert forge._store.stream_version(session_id) == version
        assert "lease" in caplog.text and "stopping its actors here without writing more" in caplog.text
        assert lease_row(tmp_path / "forge.db", session_id)[0] == ELSEWHERE  # theirs, untouched
        with pytest.raises(SessionStoppedError):
            list(events)


class DeafProvider:
    """Streams a word, then waits for the test, ignoring abort()."""

    name = model = "deaf"
    supports_json = False

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def stream(self, request):
        yield StreamChunk("Hello")
        self.release.wait(60)
        yield StreamChunk("", True, "stop", Usage(1, 1))

    def complete(self, request):
        raise NotImplementedError

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_close_returns_promptly_though_a_participant_ignores_abort(tmp_path, caplog):
    release = threading.Event()
    forge = Forge(str(tmp_path / "forge.db"), close_timeout=0.5)
    forge._participants.for_recorded = lambda info, session_id, events_of: DeafProvider(release)  # type: ignore[method-assign]
    try:
        session_id = forge.create_session(GOAL, ["mock:alice", "mock:bob"])
        forge.deliberate(session_id)
        assert wait_until(lambda: streaming(forge, session_id))
        closer = threading.Thread(target=forge.close)
        with caplog.at_level(logging.WARNING, logger="forge_actors.engine"):
            closer.start()
            closer.join(30)  # generous: a hang (a 10 s wait per actor, one after the other) fails
            assert not closer.is_alive()
        assert "did not stop in time" in caplog.text
    finally:
        release.set()
    with Forge(str(tmp_path / "forge.db")) as after:
        assert after.state(session_id).status == "running" and after.lease_holder(session_id) is None


# -- across processes -----------------------------------------------------------------------------


RACE_FOR_THE_LEASE = """
import os, sys, time
from eventstore import EventStore, LeaseHeldError, LogLeases
path, owner, go = sys.argv[1:4]
store = EventStore(path)
while not os.path.exists(go):
    time.sleep(0.005)
try:
    LogLeases(store).acquire("contested", owner, 60)
    print(owner)
except LeaseHeldError as held:
    print("held by", held.owner)
store.close()
"""


def test_processes_racing_for_one_lease_one_wins(tmp_path):
    path, go = str(tmp_path / "log.db"), tmp_path / "go"
    EventStore(path).close()
    racers = [subprocess.Popen([sys.executable, "-c", RACE_FOR_THE_LEASE, path, f"p{i}", str(go)],
                               stdout=subprocess.PIPE, text=True) for i in range(4)]
    go.touch()
    outcomes = sorted(racer.communicate(timeout=60)[0].strip() for racer in racers)
    winners = [o for o in outcomes if not o.startswith("held by")]
    assert len(winners) == 1 and outcomes.count(f"held by {winners[0]}") == 3, outcomes


def test_two_resumes_racing_a_running_forge_run_both_exit_2_naming_it(tmp_path):
    run = subprocess.Popen([FORGE, "run", GOAL, *[a for spec in slow(0.02) for a in ("-p", spec)],
                            "--max-iterations", "1", "--seed", "6", "--json"],
                           cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = json_lines_until(run.stdout, lambda events: sum(e["type"] == "ContentDelta" for e in events) >= 5)
        session_id = seen[0]["session_id"]
        drain = threading.Thread(target=lambda: [*run.stdout], daemon=True)  # keep the run's pipe flowing
        drain.start()
        resumes = [subprocess.Popen([FORGE, "resume", session_id], cwd=tmp_path, env=clean_env(),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for resume in resumes:
            _, err = resume.communicate(timeout=120)
            assert resume.returncode == 2, err
            lines = err.strip().splitlines()
            assert len(lines) == 1 and f"being driven by another engine ({HOST}:{run.pid}:" in lines[0], err
        assert run.wait(timeout=120) in (0, 1), run.stderr.read()
    finally:
        if run.poll() is None:
            run.kill()
    with Forge(str(tmp_path / "forge.db")) as forge:
        assert isinstance(forge.events(session_id)[-1], SessionEnded)
        assert forge.verify(session_id) == []
        assert forge.lease_holder(session_id) is None


DRIVE_WITH_A_LONG_LEASE = """
import sys
from forge_actors.engine import Forge
with Forge(sys.argv[1], lease_ttl=600) as forge:
    for _ in forge.deliberate(sys.argv[2]):
        pass
"""


def test_resume_right_after_kill_9_takes_the_dead_process_lease_at_once(tmp_path):
    db = tmp_path / "forge.db"
    with Forge(str(db)) as forge:
        session_id = forge.create_session(GOAL, slow(0.01), max_rounds=1, seed=7)
    victim = subprocess.Popen([sys.executable, "-c", DRIVE_WITH_A_LONG_LEASE, str(db), session_id])
    with EventStore(str(db), create=False) as watcher:
        assert wait_until(lambda: watcher.stream_version(session_id) > 30 or victim.poll() is not None)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    owner, expires_at = lease_row(db, session_id)
    assert owner.startswith(f"{HOST}:{victim.pid}:") and expires_at > time.time_ns()  # ten minutes to go
    resumed = subprocess.run([FORGE, "resume", session_id, "--db", str(db)], cwd=tmp_path, env=clean_env(),
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode in (0, 1), resumed.stderr
    with Forge(str(db)) as forge:
        assert isinstance(forge.events(session_id)[-1], SessionEnded) and forge.verify(session_id) == []


# -- over HTTP ----------------------------------------------------------------------------------------


def test_http_steps_on_a_session_another_engine_drives_are_409_naming_it(tmp_path):
    # An engine elsewhere that never answers its mailbox: a human's input waits mail_timeout, then 409.
    with Forge(str(tmp_path / "forge.db"), mail_timeout=0.3) as forge, ServerThread(forge) as server:
        session_id = forge.create_session(GOAL, ["mock:alice", "mock:bob"])
        LogLeases(forge._store).acquire(f"session:{session_id}", ELSEWHERE, 600)
        base = f"{server.url}{API}/sessions/{session_id}"
        for path, body in (("/deliberate", None), ("/rounds", {"kind": "draft"}), ("/synthesize", None),
                           ("/converge", None), ("/drafts", {"author": "dana", "content": "mine"}),
                           ("/votes", {"voter": "dana", "vote": "AGREE"}), ("/cancel", {"reason": "stop"}),
                           ("/participants/alice/provider", {"spec": "mock:zed"})):
            response = httpx.post(base + path, json=body if body is not None else {}, timeout=30)  # JSON only
            assert response.status_code == 409, (path, response.text)
            error = response.json()["error"]
            assert ELSEWHERE in error and "being driven by another engine" in error
        assert httpx.get(base, timeout=30).json()["status"] == "created"  # reading needs no lease
        assert forge._store.stream_version(session_id) == 1
