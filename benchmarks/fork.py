"""What forking a session costs (``Forge.fork``): a session of 10,000 events or more, forked at its middle round.

    python benchmarks/fork.py [--db PATH] [--events N] [--runs R]

1. A mock session with enough participants (24) and iterations (threshold 1.0) to reach ``--events`` events
   (default 10,000; the first seed that does).
2. ``Forge.fork`` at its middle round, with a participant added and one dropped: the wall-clock time of the call
   (the copy is one append), the median of ``--runs`` forks (default 5). The goal: at most 200 ms.
3. A fork of a fork of a fork (each at the same round, so each copies as much): the time of the third.
4. The provider calls the copied rounds cost: the PromptSent a fork records for rounds up to the cut,
   after deliberating it to its end (the goal: 0).
5. The baseline, in the same run: ``create_session`` of the same council (its providers built, one append).

Wall-clock times: the machine's load (printed) weighs on them. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forge_actors.core.events import PromptSent, SessionForked  # noqa: E402
from forge_actors.engine import Forge  # noqa: E402

GOAL = "Design a TODO app API"
COUNCIL = [f"mock:m{i:02d}" for i in range(24)]


def big_session(forge: Forge, events: int) -> str:
    for seed in range(100):
        session_id = forge.create_session(GOAL, COUNCIL, seed=seed, max_iterations=10, convergence_threshold=1.0)
        list(forge.deliberate(session_id))
        if len(forge.records(session_id)) >= events:
            return session_id
    raise SystemExit(f"no seed below 100 gives a session of {events} events")


def timed(call) -> tuple[float, object]:
    start = time.perf_counter()
    result = call()
    return (time.perf_counter() - start) * 1000, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="the log (default: a temporary file)")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    db = args.db or str(Path(tempfile.mkdtemp()) / "fork.db")
    with Forge(db) as forge:
        parent = big_session(forge, args.events)
        state = forge.state(parent)
        middle = state.rounds[(len(state.rounds) - 1) // 2].round
        size = len(forge.records(parent))
        print(f"parent {parent}: {size:,} events, {len(state.rounds)} rounds; forking at round {middle}")

        forks = []
        fork_ms = []
        for _ in range(args.runs):
            ms, fork = timed(lambda: forge.fork(parent, at_round=middle, participants=["mock:newcomer"], drop=["m00"]))
            fork_ms.append(ms)
            forks.append(fork)
        copied = forge.state(forks[0]).forked_from.parent_version
        print(f"fork at round {middle} ({copied:,} events copied): median {statistics.median(fork_ms):.1f} ms "
              f"(runs: {', '.join(f'{m:.1f}' for m in fork_ms)})")

        chain = [parent]
        chain_ms = []
        for _ in range(3):
            ms, fork = timed(lambda: forge.fork(chain[-1], at_round=middle))
            chain_ms.append(ms)
            chain.append(fork)
        print(f"fork of a fork of a fork: {chain_ms[-1]:.1f} ms (each: {', '.join(f'{m:.1f}' for m in chain_ms)})")

        list(forge.deliberate(forks[0]))
        events = forge.events(forks[0])
        at = max(i for i, e in enumerate(events) if isinstance(e, SessionForked))
        own_prompts = [e for e in events[at + 1:] if isinstance(e, PromptSent)]
        copied_calls = sum(1 for e in own_prompts if e.round <= middle)
        print(f"provider calls for the copied rounds 1..{middle}: {copied_calls} "
              f"(the fork then asked {len(own_prompts)} prompts of its own rounds)")

        create_ms = []
        for _ in range(args.runs):
            ms, _ = timed(lambda: forge.create_session(GOAL, COUNCIL, seed=1))
            create_ms.append(ms)
        print(f"baseline: create_session of the same {len(COUNCIL)} participants: median "
              f"{statistics.median(create_ms):.1f} ms")
    load = os.getloadavg()[0]
    print(f"load average while measuring: {load:.1f} on {os.cpu_count()} CPUs")
    print(json.dumps({
        "parent_events": size, "at_round": middle, "copied_events": copied,
        "fork_ms": round(statistics.median(fork_ms), 1), "fork_of_fork_of_fork_ms": round(chain_ms[-1], 1),
        "copied_round_provider_calls": copied_calls, "create_session_ms": round(statistics.median(create_ms), 1),
        "load_average": round(load, 1),
    }))


if __name__ == "__main__":
    main()
