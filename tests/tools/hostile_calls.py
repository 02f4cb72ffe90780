"""Hostile regular expressions through Toolbox.call while a ticker thread ticks: run by test_hostile_calls.py.

It runs in a child process because of what it tests: when a tool call holds the GIL (Python's ``re``
inside one backtracking match), no thread of the process runs until the match ends, so no in-process
timer could fail the test; the parent kills this process instead. Prints one line per call as it
starts (so that the parent can say which call froze), then one JSON object with what happened.

    python hostile_calls.py WORKSPACE EMPTY_BIN
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from tool_support import make_toolbox

from forge_actors.tools import ToolLimits, ToolResult

#: The patterns of the security review: each got round the old nested-quantifier filter.
NAMED = ["((a)+)+$", "(a|aa)+$", "(a+){12}$", "(.*a){12}$"]
TICK = 0.05

#: Pieces that backtrack when repeated over a line of "a"s that ends in "!".
_ATOMS = st.sampled_from(["a", "a?", "a*", "a+", ".", ".*", "\\w", "[a!]", "(?:a|aa)", "(?:a|a?)", "a{1,3}", "\\S+"])
_QUANTIFIERS = st.sampled_from(["+", "*", "{2,}", "{12}", "{1,40}", "+?", "?", "{3,5}"])


def _grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(inner, _QUANTIFIERS).map(lambda p: f"({p[0]}){p[1]}"),  # a repeated group that repeats
        st.lists(inner, min_size=2, max_size=3).map(lambda parts: "(?:" + "|".join(parts) + ")"),  # alternatives
        st.lists(inner, min_size=2, max_size=3).map("".join),
    )


#: A pathological pattern, anchored at the end so that a line of "a"s ending in "!" fails it only after trying
#: every way of splitting the "a"s (in a backtracking engine).
PATHOLOGICAL = st.tuples(st.recursive(_ATOMS, _grow, max_leaves=8), st.sampled_from(["$", "!!$", "b"]))


class Ticker(threading.Thread):
    """Ticks every TICK seconds and keeps the longest time between two ticks."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.largest_gap = 0.0
        self.ticks = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        last = time.monotonic()
        while not self.stopped.wait(TICK):
            now = time.monotonic()
            self.largest_gap = max(self.largest_gap, now - last)
            self.ticks += 1
            last = now


def main(workspace: Path, empty_bin: Path) -> dict[str, Any]:
    box = make_toolbox(workspace, ["grep", "count_matches"], limits=ToolLimits(timeout_seconds=5))
    path_with_rg = os.environ.get("PATH", "")
    engines = ["python"] + (["ripgrep"] if shutil.which("rg") is not None else [])
    calls: list[dict[str, Any]] = []

    def call(tool: str, engine: str, pattern: str, ignore_case: bool = False) -> None:
        os.environ["PATH"] = path_with_rg if engine == "ripgrep" else str(empty_bin)
        print(f"calling {tool} ({engine}) with {pattern!r}", flush=True)
        try:
            result: Any = box.call(tool, {"pattern": pattern, "ignore_case": ignore_case})
        except BaseException as error:  # noqa: BLE001 - Toolbox.call must never raise: recorded for the parent
            result = error
        returned = isinstance(result, ToolResult)
        calls.append({"tool": tool, "engine": engine, "pattern": pattern, "returned": returned,
                      "error": result.error if returned else repr(result), "output": result.output if returned else ""})

    def every_way(pattern: str, ignore_case: bool = False) -> None:
        for engine in engines:
            call("grep", engine, pattern, ignore_case)
        call("count_matches", "python", pattern, ignore_case)

    @settings(max_examples=40, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(PATHOLOGICAL, st.booleans())
    def fuzzed(pattern: tuple[str, str], ignore_case: bool) -> None:
        every_way("".join(pattern), ignore_case)

    ticker = Ticker()
    ticker.start()
    for pattern in NAMED:
        every_way(pattern)
    fuzzed()
    ticker.stopped.set()
    ticker.join()
    return {"largest_gap": ticker.largest_gap, "ticks": ticker.ticks, "engines": engines, "calls": calls}


if __name__ == "__main__":
    report = main(Path(sys.argv[1]), Path(sys.argv[2]))
    print(json.dumps(report))
