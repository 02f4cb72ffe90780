"""One coordinator process of the multi-process load (benchmarks/eventstore.py starts several).

    python benchmarks/_load_coordinator.py TARGET SESSIONS FIRST

Opens the log at TARGET (a PostgreSQL URL, given on stdin's first line when TARGET is ``-`` so that
a password never shows in ``ps``), creates its share of benchmarks/deliberation.py's load sessions
(numbers FIRST .. FIRST+SESSIONS-1), prints ``ready``, waits for ``go`` on stdin (so that every
coordinator starts together), drives them all to the end, and prints one JSON line: its start and end
(``time.monotonic_ns``: CLOCK_MONOTONIC, one clock for every process of the machine), the durable
deltas of its sessions, their outcomes and its CPU seconds.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deliberation import count_load, create_load_sessions, drive_load  # noqa: E402

from forge_actors.engine import Forge  # noqa: E402


def main() -> None:
    target, sessions, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if target == "-":
        target = sys.stdin.readline().strip()
    with Forge(target) as forge:
        ids = create_load_sessions(forge, sessions, first)
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.monotonic_ns()
        drive_load(forge, ids)
        end = time.monotonic_ns()
        after = resource.getrusage(resource.RUSAGE_SELF)
        deltas, outcomes = count_load(forge, ids)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"start_ns": start, "end_ns": end, "deltas": deltas, "outcomes": outcomes, "cpu_s": cpu}),
          flush=True)


if __name__ == "__main__":
    main()
