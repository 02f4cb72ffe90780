"""One thread that tells actors messages later: round deadlines and retry backoffs.

A ``threading.Timer`` per deadline would start a thread per round and per retry; one
scheduler per engine keeps the thread count flat however many sessions run.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka


class ScheduledTell:
    """A message due later. ``cancel()`` makes sure it is never told."""

    __slots__ = ("due", "seq", "actor_ref", "message", "cancelled")

    def __init__(self, due: float, seq: int, actor_ref: pykka.ActorRef, message: Any) -> None:
        self.due = due
        self.seq = seq
        self.actor_ref = actor_ref
        self.message = message
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: ScheduledTell) -> bool:
        return (self.due, self.seq) < (other.due, other.seq)


class Scheduler:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._heap: list[ScheduledTell] = []
        self._seq = itertools.count()
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="forge-scheduler", daemon=True)
        self._thread.start()

    def tell_later(self, delay: float, actor_ref: pykka.ActorRef, message: Any) -> ScheduledTell:
        item = ScheduledTell(self._clock() + max(0.0, delay), next(self._seq), actor_ref, message)
        with self._changed:
            heapq.heappush(self._heap, item)
            self._changed.notify()
        return item

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._heap.clear()
            self._changed.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._closed and (not self._heap or self._heap[0].due > self._clock()):
                    timeout = self._heap[0].due - self._clock() if self._heap else None
                    self._changed.wait(timeout)
                if self._closed:
                    return
                item = heapq.heappop(self._heap)
            if not item.cancelled:
                try:
                    item.actor_ref.tell(item.message)
                except pykka.ActorDeadError:  # the session ended first: nothing to tell
                    pass
