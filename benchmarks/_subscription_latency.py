"""The two processes of the cross-process subscription latency (benchmarks/eventstore.py starts them).

    python benchmarks/_subscription_latency.py subscribe EXPECTED      (the log's target on stdin)
    python benchmarks/_subscription_latency.py write COUNT PER_SECOND  (the target on stdin, then "go")

The target comes on stdin, never in argv (``ps`` would show a URL's password). ``subscribe`` opens
the log, subscribes after its last position with the default poll interval (what the engine does),
prints ``ready``, and records when each event of stream ``latency`` reaches it. ``write`` appends
COUNT events to that stream, one transaction each, paced at PER_SECOND, and records when each
commit returned. Both print one JSON line ``{position: time.monotonic_ns()}``: CLOCK_MONOTONIC is
one clock for every process on Linux, so the parent subtracts them.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventstore import NewEvent  # noqa: E402
from eventstore.open import open_log  # noqa: E402

STREAM = "latency"
GIVE_UP_S = 60.0


def subscribe(expected: int) -> dict[int, int]:
    target = sys.stdin.readline().strip()
    delivered: dict[int, int] = {}
    store = open_log(target)
    try:
        live = store.subscribe(store.last_position())
        print("ready", flush=True)
        deadline = time.monotonic() + GIVE_UP_S
        while len(delivered) < expected and time.monotonic() < deadline:
            for recorded in live.poll_batch(1.0):
                now = time.monotonic_ns()
                if recorded.stream_id == STREAM:
                    delivered[recorded.position] = now
        live.close()
    finally:
        store.close()
    return delivered


def write(count: int, per_second: float) -> dict[int, int]:
    target = sys.stdin.readline().strip()
    committed: dict[int, int] = {}
    store = open_log(target)
    try:
        store.append("warm-up", [NewEvent.from_bytes("Tick", b'{"n":-1}')])  # connections, caches
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return committed
        start = time.monotonic()
        for n in range(count):
            pause = start + n / per_second - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            result = store.append(STREAM, [NewEvent.from_bytes("Tick", b'{"n":%d}' % n)])
            committed[result.last_position] = time.monotonic_ns()
    finally:
        store.close()
    return committed


def main() -> None:
    role = sys.argv[1]
    if role == "subscribe":
        times = subscribe(int(sys.argv[2]))
    elif role == "write":
        times = write(int(sys.argv[2]), float(sys.argv[3]))
    else:
        raise SystemExit(f"unknown role {role!r}: subscribe or write")
    print(json.dumps(times), flush=True)


if __name__ == "__main__":
    main()
