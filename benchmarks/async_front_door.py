"""The asyncio front door under load: how late the event loop runs, and how long the engine's calls take.

    python benchmarks/async_front_door.py [--sessions 10] [--watchers 100] [--word-delay 0.001]

Everything goes through ``AsyncForge`` on a fresh log in a temp folder. ``--sessions`` live mock
sessions (two participants streaming word by word, max_iterations=1) are started at once and
``--watchers`` async tasks follow them (spread evenly), each checking it got every event in order.
Meanwhile a ticker task sleeps 1 ms at a time on the same loop and records how late it wakes up:
the loop lag, which is what every other request of a service embedding the engine waits for.

It also times each blocking engine call AsyncForge hands to the default executor (the subscription
reads, create_session, state, cancel), in the executor thread: these are the calls that must be
short. Then the same figures for the loop with no engine at all (the ticker alone), as a baseline.
The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forge_actors.engine import AsyncForge  # noqa: E402
from forge_actors.engine import async_forge as async_forge_module  # noqa: E402

TICK = 0.001


class Ticker:
    """Sleeps ``TICK`` at a time on the loop and keeps how late each wake-up was."""

    def __init__(self) -> None:
        self.lags: list[float] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(TICK)
            self.lags.append(loop.time() - before - TICK)


def timed_calls() -> dict[str, list[float]]:
    """Wrap AsyncForge._run so that each executor call is timed in its thread, by the call's name."""
    times: dict[str, list[float]] = defaultdict(list)
    original = AsyncForge._run

    async def timed(call, *args, **kwargs):
        name = getattr(call, "__name__", type(call).__name__)

        def measured():
            start = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                times[name].append(time.perf_counter() - start)

        return await original(functools.partial(measured))

    async_forge_module.AsyncForge._run = staticmethod(timed)  # type: ignore[method-assign]
    return times


def ms(values: list[float], q: int | None = None) -> float:
    """The ``q``th percentile (None: the largest) of ``values`` in milliseconds."""
    if not values:
        return 0.0
    if q is None or len(values) == 1:
        return round(max(values) * 1000, 2)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000, 2)


async def load(db: str, sessions: int, watchers: int, word_delay: float) -> dict:
    participants = [f"mock:alice?word_delay={word_delay}", f"mock:bob?word_delay={word_delay}"]
    ticker = Ticker()
    ticking = asyncio.create_task(ticker.run())
    start = time.perf_counter()
    async with AsyncForge(db) as forge:
        ids = [await forge.create_session("Design a TODO API", participants, max_iterations=1, start=True)
               for _ in range(sessions)]

        async def watch(session_id: str) -> list[int]:
            return [r.position async for r in forge.deliberate(session_id)]

        watched = await asyncio.gather(*(watch(ids[k % sessions]) for k in range(watchers)))
        for k, positions in enumerate(watched):
            expected = [r.position for r in await forge.records(ids[k % sessions])]
            assert positions == expected, f"watcher {k} missed or reordered events"
        await forge.state(ids[0])
        extra = await forge.create_session("Design a TODO API", participants, max_iterations=1, start=True)
        await forge.cancel(extra)
    elapsed = time.perf_counter() - start
    ticking.cancel()
    return {"seconds": round(elapsed, 2), "events_delivered": sum(len(w) for w in watched),
            "lags": ticker.lags}


async def idle(seconds: float) -> list[float]:
    ticker = Ticker()
    ticking = asyncio.create_task(ticker.run())
    await asyncio.sleep(seconds)
    ticking.cancel()
    return ticker.lags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--word-delay", type=float, default=0.001)
    args = parser.parse_args()
    times = timed_calls()
    with tempfile.TemporaryDirectory() as folder:
        result = asyncio.run(load(str(Path(folder) / "forge.db"), args.sessions, args.watchers, args.word_delay))
    lags = result.pop("lags")
    baseline = asyncio.run(idle(2.0))
    figures = {
        "sessions": args.sessions, "watchers": args.watchers, **result,
        "loop_lag_ms": {"p50": ms(lags, 50), "p99": ms(lags, 99), "max": ms(lags)},
        "idle_loop_lag_ms": {"p50": ms(baseline, 50), "p99": ms(baseline, 99), "max": ms(baseline)},
        "executor_calls_ms": {name: {"count": len(v), "p50": ms(v, 50), "p99": ms(v, 99), "max": ms(v)}
                              for name, v in sorted(times.items())},
    }
    print(f"{args.watchers} watchers of {args.sessions} live sessions: {result['events_delivered']} events "
          f"delivered in {result['seconds']} s")
    print(f"loop lag: p50 {figures['loop_lag_ms']['p50']} ms, p99 {figures['loop_lag_ms']['p99']} ms, "
          f"max {figures['loop_lag_ms']['max']} ms (idle loop: max {figures['idle_loop_lag_ms']['max']} ms)")
    for name, stats in figures["executor_calls_ms"].items():
        print(f"  executor call {name}: {stats['count']} calls, p50 {stats['p50']} ms, p99 {stats['p99']} ms, "
              f"max {stats['max']} ms")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
