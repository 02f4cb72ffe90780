"""A coordinator paused past its lease (SIGSTOP, as a GC pause or a VM migration would) while another
process resumes its session: woken (SIGCONT), it appends nothing more, says so in one log line and
stops; the log stays sound. In real processes, on SQLite and on PostgreSQL.

What stops it: its appends carry the lease's epoch, which the resumer's acquire raised, and the log
refuses them in their own transaction (FencedError); its local deadline stops the appends it had not
queued yet. The paused process counts, by its own clock, what every commit it began after SIGCONT
wrote (CLOCK_MONOTONIC is one clock for every process of the host).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from support import wait_until

from forge_actors.core.events import ContentDelta, SessionResumed
from forge_actors.engine import Forge

GOAL = "Design a TODO app API"
#: The paused coordinator's lease: short, so that the test waits little for it to expire.
PAUSED_TTL = 2.0

PAUSED_COORDINATOR = """
import json, logging, sys, time
from forge_actors.engine import Forge
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
commits = []  # (time.monotonic_ns() when a commit of the log began, the appends it wrote)
with Forge(sys.argv[1], lease_ttl=float(sys.argv[3])) as forge:
    store = forge._store
    commit = store.commit
    def counted(appends):
        began = time.monotonic_ns()
        try:
            commit(appends)
        finally:
            commits.append((began, sum(1 for p in appends if p.error is None and p.events)))
    store.commit = counted
    try:
        for _ in forge.deliberate(sys.argv[2]):
            pass
    except Exception as exc:
        print(f"stopped: {type(exc).__name__}", file=sys.stderr)
print(json.dumps(commits))
"""


def target(backend: str, tmp_path, request: pytest.FixtureRequest) -> str:
    return str(tmp_path / "forge.db") if backend == "sqlite" else str(request.getfixturevalue("postgres_url"))


def deltas(forge: Forge, session_id: str) -> int:
    return sum(isinstance(e, ContentDelta) for e in forge.events(session_id))


def streaming_after_resume(forge: Forge, session_id: str) -> bool:
    events = forge.events(session_id)
    resumed = [i for i, e in enumerate(events) if isinstance(e, SessionResumed)]
    return bool(resumed) and any(isinstance(e, ContentDelta) for e in events[resumed[-1]:])


def mid_transaction(log: str) -> bool:
    """Whether the stopped process holds a write transaction of the log open (stopped inside a commit
    or a lease renewal): the log would stay locked, and no other process could take over."""
    if "://" not in log:
        conn = sqlite3.connect(log, timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:  # "database is locked": the answer sought
            return True
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(log, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND state LIKE 'idle in transaction%'").fetchone()[0] > 0


def pause_between_transactions(process: subprocess.Popen, log: str) -> None:
    for _ in range(50):
        process.send_signal(signal.SIGSTOP)
        time.sleep(0.05)  # the stop has taken effect
        if not mid_transaction(log):
            return
        process.send_signal(signal.SIGCONT)
        time.sleep(0.01)
    pytest.fail("the coordinator was inside a write transaction at each of 50 pauses")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_coordinator_paused_past_its_lease_appends_nothing_once_another_resumed_its_session(
        backend, tmp_path, request):
    log = target(backend, tmp_path, request)
    with Forge(log) as setup:
        session_id = setup.create_session(GOAL, [f"mock:{n}?word_delay=0.01" for n in ("alice", "bob")],
                                          max_iterations=1, seed=21)
    paused = subprocess.Popen([sys.executable, "-c", PAUSED_COORDINATOR, log, session_id, str(PAUSED_TTL)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with Forge(log) as resumer:
            assert wait_until(lambda: deltas(resumer, session_id) >= 5 or paused.poll() is not None)
            pause_between_transactions(paused, log)
            # Its lease expires (nobody renews it), and this process takes the session over.
            assert wait_until(lambda: resumer.adopt_orphans() == [session_id], timeout=PAUSED_TTL * 10)
            assert resumer.lease_holder(session_id).epoch == 2
            assert wait_until(lambda: streaming_after_resume(resumer, session_id))
            woken_at = time.monotonic_ns()
            paused.send_signal(signal.SIGCONT)
            out, err = paused.communicate(timeout=60)
            assert paused.returncode == 0, err
            commits = json.loads(out.strip().splitlines()[-1])
            assert [n for began, n in commits if began >= woken_at and n] == [], "it wrote after waking"
            assert [n for began, n in commits if began < woken_at and n], "it wrote before its pause"
            # One line says why it stopped (the reason its fence found first); pykka's traceback of
            # the actor's refused append is not ours.
            ours = [line for line in err.splitlines() if line.startswith("ERROR forge_actors")]
            assert len(ours) == 1, err
            assert f"session:{session_id}: " in ours[0] and "without writing more (epoch 1)" in ours[0], ours
            assert streaming_after_resume(resumer, session_id)  # the resumer drives on
            resumer.cancel(session_id)  # it would run to the end; what matters is the log so far
            assert wait_until(lambda: resumer.lease_holder(session_id) is None)
            assert resumer.verify(session_id) == []
            records = resumer.records(session_id)
            assert [r.version for r in records] == list(range(1, len(records) + 1))
            resumed = [r.event for r in records if isinstance(r.event, SessionResumed)]
            assert len(resumed) == 1
            after = records[[r.event for r in records].index(resumed[0]):]
            assert not [r for r in after if getattr(r.event, "contribution_id", None) in resumed[0].abandoned]
    finally:
        if paused.poll() is None:
            paused.send_signal(signal.SIGCONT)
            paused.kill()
            paused.wait()
