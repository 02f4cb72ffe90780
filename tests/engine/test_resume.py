"""Resume after SIGKILL, in real processes, at seeded random moments.

Each trial starts a deliberation of slow mock participants in a subprocess, kills it
with SIGKILL at a random moment, resumes the session in a fresh process and checks
the log: the session ends normally; versions are contiguous; every completed
contribution is exactly its own deltas; each round outcome follows from the log; the
state the resuming process folded piece by piece equals a fresh fold of the log; every
contribution abandoned by the kill was run again (a re-ask as the same re-ask); and nobody was
asked more often than the live run asks: one prompt per participant and round, two where carol's
unreadable critique or vote is re-asked, however the kill cut it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from eventstore import EventStore
from forge_actors.core import audit
from forge_actors.core.events import ContributionAbandoned, PromptSent, RoundStarted, SessionEnded, SessionResumed
from forge_actors.core.state import SessionState, rebuild
from forge_actors.engine import Forge

WORKER = str(Path(__file__).with_name("resume_worker.py"))
TRIALS = int(os.environ.get("FORGE_RESUME_TRIALS", "10"))
SEED = int(os.environ.get("FORGE_RESUME_SEED", "20261122"))


def worker(db: Path, mode: str, session_id: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, WORKER, str(db), mode, session_id], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("trial", range(TRIALS))
def test_sigkill_at_a_random_moment_then_resume(tmp_path, trial):
    rng = random.Random(SEED * 1000 + trial)
    db = tmp_path / "forge.db"
    with Forge(str(db)) as forge:
        session_id = forge.create_session(
            "Design a TODO app API",
            [f"mock:{name}?word_delay=0.002" for name in ("alice", "bob")]
            + ["mock:carol?word_delay=0.002&garble=critique,convergence"],
            seed=rng.randrange(1000), max_rounds=2,
        )
    # A random moment: once the log holds a random number of events (a whole session is
    # about 500-800 with structured replies), wherever the victim happens to be by then.
    kill_at = rng.randint(2, 450)
    victim = worker(db, "deliberate", session_id)
    with EventStore(str(db), create=False) as watcher:
        while watcher.stream_version(session_id) < kill_at and victim.poll() is None:
            time.sleep(rng.uniform(0.0, 0.01))
    victim.send_signal(signal.SIGKILL)
    victim.wait()

    resumer = worker(db, "resume", session_id)
    out, err = resumer.communicate(timeout=120)
    assert resumer.returncode == 0, err
    folded_by_resumer = msgspec.json.decode(out.strip().splitlines()[-1], type=SessionState)

    with Forge(str(db)) as forge:
        stored = list(forge.records(session_id))
    events = [r.event for r in stored]
    assert isinstance(events[-1], SessionEnded) and events[-1].outcome in ("converged", "max_rounds"), events[-1]
    assert audit.verify(stored) == []
    assert folded_by_resumer == rebuild(events)
    resumed = [e for e in events if isinstance(e, SessionResumed)]
    abandoned = [e for e in events if isinstance(e, ContributionAbandoned)]
    assert len(resumed) == 1, "the kill came after the session ended: nothing was resumed"
    assert {a.contribution_id for a in abandoned} == set(resumed[0].abandoned)
    prompts = {e.contribution_id: e for e in events if isinstance(e, PromptSent)}
    for gone in abandoned:
        later = events[events.index(gone):]
        again = "reask" if prompts[gone.contribution_id].purpose == "reask" else "rerun"
        assert any(isinstance(e, PromptSent) and (e.round, e.participant, e.purpose) == (gone.round, gone.participant, again)
                   for e in later), f"{gone.contribution_id} was never run again"
    # every prompt that was not cut off by the kill is one the live run sends too
    kinds = {e.round: e.kind for e in events if isinstance(e, RoundStarted)}
    gone_ids = {a.contribution_id for a in abandoned}
    asked = Counter((p.round, p.participant) for p in prompts.values() if p.contribution_id not in gone_ids)
    live = {(number, name): 2 if name == "carol" and kinds[number] in ("critique", "convergence") else 1
            for (number, name) in asked}
    assert asked == live
