"""What the evaluation harness costs beyond its sessions, and a 100-task offline evaluation.

    python benchmarks/eval_overhead.py [--tasks 100] [--repeats 3]

- **Overhead per task**: the shipped task set (44 tasks) answered by a council of three mocks
  and one mock baseline, one session at a time, two ways on fresh logs: through
  ``Forge.evaluate`` (the harness), and the same sessions run directly on the Forge API
  (``create_session``, deliberate to the end or run the draft round and end it, read the answer),
  alternated, ``--repeats`` times each. The mocks answer at once, so neither way waits for a
  provider; the difference per task is the harness's own work (its stream, scoring, the report's
  reads of every session's usage). Target: <= 50 ms.
- **A 100-task run**: ``--tasks`` tasks (the shipped set repeated under new ids), the council of
  three mocks and one baseline, ``concurrency`` 4: wall time (target: under a minute).
- **Its re-run** (``rerun=``): wall time, and the provider calls made, counted at the mock itself
  (target: 0) and as the report counts them.

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forge_actors.core.evaluation import ANSWER_INSTRUCTION, EvalTask  # noqa: E402
from forge_actors.engine import Forge, baseline, council, read_task_file  # noqa: E402
from forge_actors.providers.mock import MockProvider  # noqa: E402

COUNCIL = ["mock:alice?accuracy=0.7", "mock:bob?accuracy=0.7", "mock:carol?accuracy=0.7"]
BASELINE = "mock:solo?accuracy=0.7"


class CallCounter:
    """Counts every call of the mock (complete and stream), whichever thread makes it."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()
        self._originals = {name: getattr(MockProvider, name) for name in ("complete", "stream")}
        for name, original in self._originals.items():
            setattr(MockProvider, name, self._counted(original))

    def _counted(self, original):
        def call(provider, request):
            with self._lock:
                self.calls += 1
            return original(provider, request)
        return call

    def close(self) -> None:
        for name, original in self._originals.items():
            setattr(MockProvider, name, original)


def _systems():
    return [council(COUNCIL), baseline(BASELINE)]


def through_the_harness(folder: Path, tasks: list[EvalTask]) -> float:
    with Forge(str(folder / "harness.db")) as forge:
        started = time.perf_counter()
        forge.evaluate(tasks, _systems(), concurrency=1)
        return time.perf_counter() - started


def directly(folder: Path, tasks: list[EvalTask]) -> float:
    """The same sessions on the Forge API, no harness: what an evaluation cannot do without."""
    with Forge(str(folder / "direct.db")) as forge:
        started = time.perf_counter()
        for task in tasks:
            session_id = forge.create_session(task.prompt, COUNCIL, constraints=[ANSWER_INSTRUCTION])
            for _ in forge.deliberate(session_id):
                pass
            assert forge.state(session_id).synthesis is not None
            session_id = forge.create_session(task.prompt, [BASELINE], constraints=[ANSWER_INSTRUCTION])
            forge.run_round(session_id, "draft")
            assert forge.cancel(session_id, "answered").drafts
        return time.perf_counter() - started


def overhead(repeats: int) -> dict[str, float]:
    tasks = read_task_file("basic")
    harness, direct = [], []
    for _ in range(repeats):
        for name, runs in (("harness", harness), ("direct", direct)):
            with tempfile.TemporaryDirectory() as folder:
                runs.append((through_the_harness if name == "harness" else directly)(Path(folder), tasks))
    per_task = [(h - d) / len(tasks) for h, d in zip(harness, direct, strict=True)]
    return {"tasks": len(tasks), "harness_s": statistics.median(harness), "direct_s": statistics.median(direct),
            "overhead_ms_per_task": 1000 * statistics.median(per_task),
            "overhead_ms_per_task_max": 1000 * max(per_task)}


def hundred_tasks(count: int) -> dict[str, float | int]:
    shipped = read_task_file("basic")
    tasks = [EvalTask(f"{t.id}-{i // len(shipped)}", t.prompt, t.expected, t.scorer, t.tolerance, t.pattern)
             for i, t in ((i, shipped[i % len(shipped)]) for i in range(count))]
    with tempfile.TemporaryDirectory() as folder, Forge(str(Path(folder) / "eval.db")) as forge:
        counter = CallCounter()
        try:
            started = time.perf_counter()
            report = forge.evaluate(tasks, _systems(), concurrency=4)
            run_s = time.perf_counter() - started
            live_calls, counter.calls = counter.calls, 0
            started = time.perf_counter()
            again = forge.evaluate(rerun=report.run_id, concurrency=4)
            rerun_s = time.perf_counter() - started
        finally:
            counter.close()
        same = [(o.task_id, o.system, o.correct) for o in again.outcomes] == [
            (o.task_id, o.system, o.correct) for o in report.outcomes]
        return {"tasks": count, "run_s": run_s, "provider_calls": live_calls, "rerun_s": rerun_s,
                "rerun_provider_calls_counted_at_the_mock": counter.calls,
                "rerun_provider_calls_in_report": again.provider_calls or 0, "rerun_same_scores": same,
                "council_accuracy": report.systems[0].accuracy, "baseline_accuracy": report.systems[1].accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cost = overhead(args.repeats)
    print(f"overhead: {cost['tasks']} tasks x (council of 3 + baseline), one session at a time: harness "
          f"{cost['harness_s']:.2f} s, the same sessions directly {cost['direct_s']:.2f} s -> "
          f"{cost['overhead_ms_per_task']:.1f} ms per task (max of {args.repeats}: "
          f"{cost['overhead_ms_per_task_max']:.1f} ms; target <= 50)")
    run = hundred_tasks(args.tasks)
    print(f"{run['tasks']}-task run, council of 3 mocks + 1 baseline, concurrency 4: {run['run_s']:.1f} s "
          f"({run['provider_calls']} provider calls); its re-run {run['rerun_s']:.1f} s with "
          f"{run['rerun_provider_calls_counted_at_the_mock']} provider calls at the mock "
          f"({run['rerun_provider_calls_in_report']} in the report), same scores: {run['rerun_same_scores']}")
    print(json.dumps({"overhead": cost, "run": run}))


if __name__ == "__main__":
    main()
