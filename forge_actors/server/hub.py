"""Live events of a session to any number of clients, each at its own pace.

One ``SessionHub`` per session with connected clients follows the log in one thread
and keeps the newest events in a bounded window in memory. Each client is a
coroutine with its own position: while it is within the window it takes its events
from there; when it is behind (it asked for history, or it reads slowly) it reads
pages from the log itself, in a worker thread, until it catches up. So a slow or
stalled client only ever waits on its own socket; the deliberation and the other
clients never wait for it, and nobody's memory grows with it.

Waking a reader per client on every commit would cost more than the deliberation
itself with a hundred clients (GIL hand-offs); one reader per session does not.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool

from forge_actors.engine import Forge, RecordedEvent

#: Events kept in memory per session; a client further behind reads the log.
WINDOW = 4096
#: Events per page when a client reads the log itself.
PAGE = 500
#: The hub's reader gathers what commits within this many seconds into one batch.
COALESCE_SECONDS = 0.02
END = "SessionEnded"


class SessionHub:
    def __init__(self, forge: Forge, session_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.forge = forge
        self.session_id = session_id
        self._loop = loop
        start = forge.last_position()
        #: Versions after this one reach the window; anything up to it is read from the log.
        self.base_version = forge.version_at(session_id, start)
        self._window: list[RecordedEvent] = []
        self._window_first = self.base_version + 1  # version of _window[0]
        self.last_version = self.base_version
        self.clients = 0
        self._changed = asyncio.Event()
        self._subscription = forge.subscribe(session_id, start, decoded=False)
        self._thread = threading.Thread(target=self._follow, name=f"forge-hub-{session_id}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._subscription.close()

    # -- the reading thread -----------------------------------------------------------------------

    def _follow(self) -> None:
        subscription = self._subscription
        for first in subscription:
            batch = [first]
            if first.type != END:
                time.sleep(COALESCE_SECONDS)  # let what commits meanwhile join this batch
                while len(batch) < PAGE:
                    more = subscription.poll(0)
                    if more is None:
                        break
                    batch.append(more)
            try:
                self._loop.call_soon_threadsafe(self._extend, batch)
            except RuntimeError:  # the loop is gone
                return

    # -- the event loop side ------------------------------------------------------------------------

    def _extend(self, batch: list[RecordedEvent]) -> None:
        self._window.extend(batch)
        self.last_version = batch[-1].version
        if len(self._window) > WINDOW:
            drop = len(self._window) - WINDOW // 2
            del self._window[:drop]
            self._window_first += drop
        self._changed.set()
        self._changed = asyncio.Event()

    def _from_window(self, version: int) -> list[RecordedEvent] | None:
        """Events after ``version`` from memory; None when ``version`` is older than the window."""
        if version + 1 < self._window_first:
            return None
        return self._window[version + 1 - self._window_first:]

    async def follow(self, after_position: int, idle_every: float | None = None) -> AsyncIterator[list[RecordedEvent]]:
        """Batches of the session's events after ``after_position`` until SessionEnded (an empty
        batch after ``idle_every`` quiet seconds, for keep-alives)."""
        version = await run_in_threadpool(self.forge.version_at, self.session_id, after_position)
        while True:
            batch = self._from_window(version)
            if batch is None:  # behind the window: read the log itself
                batch = await run_in_threadpool(self.forge.events_page, self.session_id, version, PAGE)
            if batch:
                yield batch
                version = batch[-1].version
                if batch[-1].type == END:
                    return
                continue
            changed = self._changed
            if self.last_version > version:
                continue
            try:
                await asyncio.wait_for(changed.wait(), idle_every)
            except TimeoutError:
                yield []


class Hubs:
    """The hubs of the sessions that have clients; a hub closes with its last client."""

    def __init__(self, forge: Forge) -> None:
        self.forge = forge
        self._hubs: dict[str, SessionHub] = {}

    async def follow(self, session_id: str, after_position: int,
                     idle_every: float | None = None) -> AsyncIterator[list[RecordedEvent]]:
        hub = self._hubs.get(session_id)
        if hub is None:
            created = await run_in_threadpool(SessionHub, self.forge, session_id, asyncio.get_running_loop())
            hub = self._hubs.get(session_id)  # another first client may have made one meanwhile
            if hub is None:
                hub = self._hubs[session_id] = created
            else:
                created.close()
        hub.clients += 1
        try:
            async for batch in hub.follow(after_position, idle_every):
                yield batch
        finally:
            hub.clients -= 1
            if hub.clients == 0 and self._hubs.get(session_id) is hub:
                del self._hubs[session_id]
                hub.close()
