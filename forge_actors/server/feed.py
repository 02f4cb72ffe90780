"""A blocking source of events, read in a thread of its own, handed to the event loop.

Used for re-streaming a recorded session at its recorded pace (``?speed=``): the
pacing sleeps happen in this thread. Events travel in batches through a bounded
queue; a client that reads slowly fills only its own queue, and its thread then
waits. (Live streams go through ``hub.SessionHub`` instead: one reader per session.)
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

#: Batches in flight per client before its reader waits.
MAX_PENDING_BATCHES = 32
_END = object()


class EventFeed:
    """Reads ``source`` (a blocking iterator of events) in a thread; iterate ``batches()`` async.

    ``close`` is called to stop the source (e.g. to cut its pacing sleeps short).
    """

    def __init__(self, source: Iterator[Any], *, close: Callable[[], None] = lambda: None) -> None:
        self._source = source
        self._close_source = close
        self._stopped = threading.Event()
        self._queue: queue.Queue[Any] = queue.Queue(MAX_PENDING_BATCHES)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    async def __aenter__(self) -> EventFeed:
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._thread = threading.Thread(target=self._read, name="forge-feed", daemon=True)
        self._thread.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stopped.set()
        self._close_source()

    async def batches(self, idle_every: float | None = None) -> AsyncIterator[list[Any]]:
        """Batches of events as they come; an empty batch after ``idle_every`` seconds without
        any (so the caller can send a keep-alive)."""
        assert self._ready is not None, "use `async with EventFeed(...)`"
        while True:
            try:
                batch = self._queue.get_nowait()
            except queue.Empty:
                self._ready.clear()
                if self._queue.empty():  # nothing slipped in between: sleep until the reader wakes us
                    try:
                        await asyncio.wait_for(self._ready.wait(), idle_every)
                    except TimeoutError:
                        yield []
                continue
            if batch is _END:
                return
            if isinstance(batch, BaseException):
                raise batch
            yield batch

    # -- the reading thread --------------------------------------------------------------------

    def _hand_over(self, item: Any) -> bool:
        """Queue ``item`` for the loop, waiting while the queue is full; False once closed."""
        assert self._loop is not None and self._ready is not None
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.5)
            except queue.Full:  # a slow reader: wait on, unless the feed was closed meanwhile
                continue
            try:
                self._loop.call_soon_threadsafe(self._ready.set)
            except RuntimeError:  # the loop is closed: nobody is reading
                return False
            return True
        return False

    def _read(self) -> None:
        try:
            for event in self._source:
                if not self._hand_over([event]):
                    break
        except Exception as exc:  # a corrupt row, the store closing: tell the client's side
            self._hand_over(exc)
        finally:
            self._hand_over(_END)
            self._close_source()
