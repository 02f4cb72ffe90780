"""Sessions move between coordinators: orphans, adopting them, the fence (the lease, its epoch, the
stream's optimistic concurrency), and the kill test (three `forge serve --resume-orphans` on one PostgreSQL,
one killed mid-deliberation, another finishing its session)."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import msgspec
import pytest
from support import wait_until

from eventstore import FencedError, Lease, LeaseLostError
from forge_actors.core.audit import verify
from forge_actors.core.errors import SessionBusyError
from forge_actors.core.events import ContentDelta, SessionEnded, SessionResumed, decode_event
from forge_actors.engine import Forge
from forge_actors.surfaces.server.app import API

FORGE = str(Path(sys.executable).with_name("forge"))
GOAL = "Design a TODO app API"


def slow(delay: float = 0.02, names: tuple[str, ...] = ("alice", "bob")) -> list[str]:
    return [f"mock:{name}?word_delay={delay}" for name in names]


def streaming(forge: Forge, session_id: str) -> bool:
    return any(isinstance(e, ContentDelta) for e in forge.events(session_id))


def streaming_after_resume(forge: Forge, session_id: str) -> bool:
    events = forge.events(session_id)
    resumed = [i for i, e in enumerate(events) if isinstance(e, SessionResumed)]
    return bool(resumed) and any(isinstance(e, ContentDelta) for e in events[resumed[-1]:])


def ended(forge: Forge, session_id: str) -> bool:
    return forge.state(session_id).ended


def left_running(db: str, session_id_out: list[str], **session) -> str:
    """A session an engine was deliberating when it stopped without interrupting it (as a crash would
    leave it, but with its lease released): status "running", a round in flight."""
    with Forge(db) as forge:
        session_id = forge.create_session(GOAL, slow(0.01), max_iterations=1, seed=3, **session)
        forge.start(session_id)
        assert wait_until(lambda: streaming(forge, session_id))
    session_id_out.append(session_id)
    return session_id


def assert_one_driver_after_the_takeover(forge: Forge, session_id: str) -> None:
    """The log is sound, dense and ordered, and after each SessionResumed nothing comes of the attempts
    it abandoned (those were the previous driver's: it wrote nothing more)."""
    records = forge.records(session_id)
    assert [r.version for r in records] == list(range(1, len(records) + 1))
    positions = [r.position for r in records]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert verify(msgspec.structs.replace(r, event=decode_event(r.type, r.data)) for r in records) == []
    abandoned: set[str] = set()
    for recorded in records:
        event = decode_event(recorded.type, recorded.data)
        if isinstance(event, SessionResumed):
            abandoned |= set(event.abandoned)
        elif getattr(event, "contribution_id", None) in abandoned:
            pytest.fail(f"{recorded.type} of abandoned attempt {event.contribution_id} at version "
                        f"{recorded.version}: the previous driver wrote after the takeover")


# -- which sessions are orphans ----------------------------------------------------------------


def test_orphans_are_deliberations_nobody_drives_and_adopting_one_runs_it_to_the_end(tmp_path, caplog):
    db = str(tmp_path / "forge.db")
    orphan = left_running(db, [])
    with Forge(db) as setup:
        never_started = setup.create_session(GOAL, ["mock:alice", "mock:bob"])
        interrupted = setup.create_session(GOAL, slow(0.01), max_iterations=1)
        setup.start(interrupted)
        assert wait_until(lambda: streaming(setup, interrupted))
        setup.interrupt(interrupted)
        stepped = setup.create_session(GOAL, ["mock:alice", "mock:bob"], max_iterations=1)
        setup.run_round(stepped, "draft", timeout=30)  # then it waits for its human's next step
    with Forge(db) as driver, Forge(db) as adopter:
        driven = driver.create_session(GOAL, slow(0.05), max_iterations=1)
        driver.start(driven)
        assert wait_until(lambda: streaming(driver, driven))
        statuses = {s.session_id: s.status for s in adopter.summaries()}
        assert statuses[orphan] == statuses[stepped] == statuses[driven] == "running"
        assert statuses[interrupted] == "interrupted" and statuses[never_started] == "created"
        assert adopter.orphaned_sessions() == [orphan]
        assert driver.orphaned_sessions() == [orphan]  # its own session is driven here
        with caplog.at_level(logging.INFO, logger="forge_actors.engine"):
            assert adopter.adopt_orphans() == [orphan]
        assert "adopted session " + orphan in caplog.text
        assert adopter.orphaned_sessions() == [] and adopter.lease_holder(orphan).owner == adopter.owner
        assert wait_until(lambda: ended(adopter, orphan))
        assert adopter.adopt_orphans() == []
        assert adopter.verify(orphan) == []
        assert sum(isinstance(e, SessionResumed) for e in adopter.events(orphan)) == 1
        assert_one_driver_after_the_takeover(adopter, orphan)
        assert adopter.state(stepped).current_round.status == "completed"  # left alone
        driver.cancel(driven)


# -- two coordinators never drive one session (PostgreSQL) ----------------------------------------


def test_two_engines_resuming_one_orphan_on_postgres_exactly_one_drives(postgres_url):
    session_id = left_running(postgres_url, [])
    with Forge(postgres_url, lease_ttl=2) as first, Forge(postgres_url, lease_ttl=2) as second:
        assert first.orphaned_sessions() == second.orphaned_sessions() == [session_id]
        go = threading.Barrier(2)
        outcomes: dict[str, object] = {}

        def resume(name: str, forge: Forge) -> None:
            go.wait()
            try:
                outcomes[name] = forge.start(session_id)
            except SessionBusyError as busy:
                outcomes[name] = busy

        threads = [threading.Thread(target=resume, args=item) for item in (("first", first), ("second", second))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        winners = [name for name, outcome in outcomes.items() if outcome is True]
        losers = [outcome for outcome in outcomes.values() if isinstance(outcome, SessionBusyError)]
        assert len(winners) == 1 and len(losers) == 1, outcomes
        winner = first if winners == ["first"] else second
        loser = second if winner is first else first
        assert losers[0].owner == winner.owner
        assert loser.adopt_orphans() == []  # not an orphan: it is driven
        assert wait_until(lambda: streaming_after_resume(winner, session_id))
        winner.cancel(session_id)
        assert loser.running_sessions() == []
        assert sum(isinstance(e, SessionResumed) for e in winner.events(session_id)) == 1
        assert_one_driver_after_the_takeover(winner, session_id)


class BrokenRenewals:
    """What a paused or cut-off process's renewals look like from inside it. ``failing``: each renewal
    fails (the database is unreachable), so its fence's deadline passes. ``lying``: each one seems to
    succeed but never reaches the database (as if its clock ran behind), so the deadline never passes
    and only the stream's optimistic concurrency is left to stop it."""

    def __init__(self, forge: Forge, how: str) -> None:
        self._leases = forge._supervisor._leases
        self._renew = self._leases.renew
        self._leases.renew = self._failing if how == "failing" else self._lying

    @staticmethod
    def _failing(name: str, owner: str, ttl: float) -> Lease:
        raise RuntimeError("the database is unreachable")

    @staticmethod
    def _lying(name: str, owner: str, ttl: float) -> Lease:
        now = time.time_ns()
        return Lease(name, owner, now + int(ttl * 1e9), now)

    def undo(self) -> None:
        self._leases.renew = self._renew


@pytest.mark.parametrize("renewals", ["failing", "lying"])
def test_an_engine_whose_lease_was_taken_while_paused_writes_nothing_after(postgres_url, renewals):
    """``failing``: the engine's own fence stops it before its lease can be taken (its deadline).
    ``lying``: the fence's deadline never passes, so only the lease's epoch stands between it and the
    log: its first append after the takeover is refused as fenced out, and none after it goes."""
    with Forge(postgres_url, lease_ttl=1) as paused:
        session_id = paused.create_session(GOAL, slow(0.05, ("alice",)), max_iterations=1, seed=9)
        paused.start(session_id)
        assert wait_until(lambda: streaming(paused, session_id))
        running = paused._supervisor._running[session_id]
        broken = BrokenRenewals(paused, renewals)
        try:
            with Forge(postgres_url, lease_ttl=1) as adopter:
                # Lying, the paused engine appends until the adopter's acquire raises the epoch; from then on
                # the log refuses its appends (FencedError), so the adopter's SessionResumed lands first time.
                def taken_over() -> bool:
                    adopter.adopt_orphans()
                    return session_id not in paused.running_sessions() and adopter.running_sessions() == [session_id]

                assert wait_until(taken_over, timeout=10)
                assert isinstance(running.fence.lost, LeaseLostError if renewals == "failing" else FencedError)
                assert wait_until(lambda: streaming_after_resume(adopter, session_id)), "the adopter streams"
                adopter.cancel(session_id)  # it would run to the end; that is the kill test's part
                assert wait_until(lambda: adopter.lease_holder(session_id) is None)  # released at the end
                assert sum(isinstance(e, SessionResumed) for e in adopter.events(session_id)) == 1
                assert_one_driver_after_the_takeover(adopter, session_id)
        finally:
            broken.undo()


# -- the kill test: three coordinators, one killed mid-deliberation -----------------------------------


def coordinator(url: str, tmp_path: Path, name: str) -> tuple[subprocess.Popen, Path]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "FORGE_DB", "FORGE_CONFIG")}
    log = tmp_path / f"{name}.log"
    process = subprocess.Popen(
        [FORGE, "serve", "--resume-orphans", "--orphan-scan", "0.3", "--db", url, "--port", "0",
         "--log-level", "INFO"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"),
    )
    return process, log


def started_url(process: subprocess.Popen, log: Path) -> str:
    found: list[str] = []

    def listening() -> bool:
        found.extend(re.findall(r"serving \S+ on (http://127\.0\.0\.1:\d+)/", log.read_text()))  # bound: it queues
        return bool(found) or process.poll() is not None

    assert wait_until(listening, timeout=20) and found, log.read_text()
    return found[0]


def test_kill_9_a_coordinator_mid_deliberation_and_another_finishes_it(postgres_url, tmp_path):
    with Forge(postgres_url) as setup:
        session_id = setup.create_session(GOAL, slow(0.01), max_iterations=1, seed=11)
    processes = {name: coordinator(postgres_url, tmp_path, name) for name in ("a", "b", "c")}
    try:
        a, a_log = processes["a"]
        url = started_url(a, a_log)
        response = httpx.post(f"{url}{API}/sessions/{session_id}/deliberate", json={}, timeout=10)
        assert response.status_code == 202, response.text
        with Forge(postgres_url, create=False) as watcher:
            assert wait_until(lambda: sum(isinstance(e, ContentDelta) for e in watcher.events(session_id)) >= 5,
                              timeout=10)
            victim = watcher.lease_holder(session_id).owner
            assert victim.split(":")[1] == str(a.pid)
            a.send_signal(signal.SIGKILL)
            a.wait(10)  # reaped, so that the others see its process gone
            killed_at = watcher.last_position()
            assert wait_until(lambda: ended(watcher, session_id), timeout=20), \
                [log.read_text()[-2000:] for _, log in processes.values()]
            adopters = [name for name in ("b", "c")
                        if f"adopted session {session_id} (previous owner: {victim})" in processes[name][1].read_text()]
            assert len(adopters) == 1, [processes[name][1].read_text()[-2000:] for name in ("b", "c")]
            records = watcher.records(session_id)
            resumed = [r for r in records if r.type == "SessionResumed"]
            assert len(resumed) == 1 and resumed[0].position > killed_at
            assert isinstance(watcher.events(session_id)[-1], SessionEnded)
            assert watcher.verify(session_id) == []
            assert_one_driver_after_the_takeover(watcher, session_id)
            holder = watcher.lease_holder(session_id)
            assert holder is None or holder.owner.split(":")[1] == str(processes[adopters[0]][0].pid)
    finally:
        for process, _ in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process, _ in processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- forge serve --resume-orphans on SQLite -----------------------------------------------------------


def test_a_coordinator_stopping_hands_its_sessions_over_instead_of_interrupting_them(tmp_path):
    db = str(tmp_path / "forge.db")
    with Forge(db) as setup:
        session_id = setup.create_session(GOAL, slow(0.01), max_iterations=1, seed=13)
    server, log = coordinator(db, tmp_path, "only")
    try:
        url = started_url(server, log)
        assert httpx.post(f"{url}{API}/sessions/{session_id}/deliberate", json={}, timeout=10).status_code == 202
        with Forge(db, create=False) as watcher:
            assert wait_until(lambda: streaming(watcher, session_id), timeout=10)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(30)
    with Forge(db) as successor:
        assert successor.state(session_id).status == "running" and successor.lease_holder(session_id) is None
        assert successor.orphaned_sessions() == [session_id]
        assert successor.adopt_orphans() == [session_id]
        assert wait_until(lambda: ended(successor, session_id))
        assert_one_driver_after_the_takeover(successor, session_id)


def test_orphan_scan_needs_resume_orphans_and_a_positive_interval(tmp_path, capsys):
    from forge_actors.surfaces.cli import main

    for args, message in ((["--orphan-scan", "1"], "give --resume-orphans too"),
                          (["--resume-orphans", "--orphan-scan", "0"], "seconds > 0")):
        assert main(["serve", "--db", str(tmp_path / "forge.db"), *args], environ={}) == 2
        assert message in capsys.readouterr().err
