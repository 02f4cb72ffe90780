"""What comparing two sessions costs: the synthesis diff on texts built to be slow, and a whole comparison.

    python benchmarks/compare.py [--baseline-up-to CHARS]

1. ``core.compare.text_diff`` on two texts of each shape below, at 20 KB (three-letter lines: 5,000 of
   them, the most it matches), at 32 KB (the longest reply a session records by default: 16 characters
   per ``max_tokens`` token, 2,048 tokens) and at 1 MB
   (a session recorded before ``max_reply_chars`` existed, or with a high ``max_tokens``). A shape is
   lines drawn at random from a few values, the case where difflib's line matching is slowest. Beside
   it, plain ``difflib.unified_diff`` (the baseline: no bound on the lines it matches), for texts up to
   ``--baseline-up-to`` characters (default 100,000: at 1 MB one shape takes minutes).
2. ``compare_sessions`` of two folded mock sessions (at most 10 iterations, threshold 1.0), and its Markdown.

CPU seconds (``time.process_time``), the median of 3 runs. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import difflib
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forge_actors.core.compare import DIFF_CONTEXT, compare_sessions, text_diff  # noqa: E402
from forge_actors.core.export import comparison_markdown  # noqa: E402
from forge_actors.engine import Forge  # noqa: E402

SIZES = (20_000, 32_768, 1_000_000)
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _lines(values: int, width: int) -> Callable[[random.Random, int], str]:
    """Lines of ``width`` characters drawn from ``values`` different ones, up to ``size`` characters."""
    pool = sorted({"".join(random.Random(i).choices(LETTERS, k=width)) for i in range(values * 4)})[:values]

    def make(rng: random.Random, size: int) -> str:
        return "\n".join(rng.choice(pool) for _ in range(size // (width + 1)))
    return make


SHAPES: dict[str, Callable[[random.Random, int], str]] = {
    "two-letter lines, 676 values": _lines(676, 2),
    "three-letter lines, 150 values": _lines(150, 3),
    "three-letter lines, 100 values": _lines(100, 3),
    "prose lines, 60 characters": lambda rng, size: "\n".join(
        " ".join(rng.choices(["the", "API", "stores", "tasks", "in", "SQLite", "with", "a", "REST", "layer"], k=10))
        for _ in range(size // 40)),
}


def cpu(call: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.process_time()
        call()
        times.append(time.process_time() - start)
    return statistics.median(times)


def bench_diffs(baseline_up_to: int) -> list[dict[str, object]]:
    rows = []
    for name, make in SHAPES.items():
        for size in SIZES:
            rng = random.Random(size)
            a, b = make(rng, size), make(rng, size)
            ours = cpu(lambda a=a, b=b: text_diff(a, b))
            baseline = None
            if size <= baseline_up_to:
                baseline = cpu(lambda a=a, b=b: tuple(difflib.unified_diff(
                    a.splitlines(), b.splitlines(), "A", "B", n=DIFF_CONTEXT, lineterm="")))
            rows.append({"shape": name, "chars": len(a), "lines": len(a.splitlines()), "ours_s": round(ours, 3),
                         "baseline_s": None if baseline is None else round(baseline, 3)})
            shown = "not run" if baseline is None else f"{baseline:.3f} s"
            print(f"{name:32s} {len(a):>9,} chars  ours {ours:.3f} s  difflib {shown}")
    return rows


def bench_sessions() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder, Forge(str(Path(folder) / "forge.db")) as forge:
        states = []
        for seed in (7, 8):
            session_id = forge.create_session("Design a TODO app API", ["mock:alice", "mock:bob", "mock:carol"],
                                              seed=seed, max_iterations=10, convergence_threshold=1.0)
            list(forge.deliberate(session_id))
            states.append(forge.state(session_id))
    a, b = states
    comparison = compare_sessions(a, b)
    result = {"rounds": len(comparison.rounds), "compare_s": round(cpu(lambda: compare_sessions(a, b)), 4),
              "markdown_s": round(cpu(lambda: comparison_markdown(comparison)), 4)}
    print(f"two mock sessions of {result['rounds']} rounds: compare {result['compare_s']:.4f} s, "
          f"Markdown {result['markdown_s']:.4f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-up-to", type=int, default=100_000, metavar="CHARS",
                        help="run plain difflib on texts up to this many characters (default 100,000)")
    args = parser.parse_args()
    diffs = bench_diffs(args.baseline_up_to)
    sessions = bench_sessions()
    print(json.dumps({"diffs": diffs, "sessions": sessions}))


if __name__ == "__main__":
    main()
