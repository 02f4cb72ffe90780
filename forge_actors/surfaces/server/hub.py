"""Live events of a session to any number of clients, each at its own pace.

One ``SessionHub`` per session with connected clients follows the log in one thread
(one ``Subscription``: the writer hands it each committed batch, so nothing just
written is read back) and keeps the newest events in a bounded window in memory. Each client is a
coroutine with its own position: while it is within the window it takes its events
from there; when it is behind (it asked for history, or it reads slowly) it reads
pages from the log itself, in a worker thread, until it catches up. So a slow or
stalled client only ever waits on its own socket; the deliberation and the other
clients never wait for it, and nobody's memory grows with it.

Waking a reader per client on every commit would cost more than the deliberation
itself with a hundred clients (GIL hand-offs); one reader per session does not.
Re-paced replays (``?speed=``) are the same stream with pauses between events, slept
on the event loop: no thread of their own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator

import msgspec
from starlette.concurrency import run_in_threadpool

from forge_actors.engine import CorruptEventError, Forge, RecordedEvent, SessionStoppedError

logger = logging.getLogger(__name__)

#: Events kept in memory per session; a client further behind reads the log.
WINDOW = 4096
#: Events per page when a client reads the log itself.
PAGE = 500
#: How long the hub's reader waits for a batch before looking whether it was closed.
IDLE_SECONDS = 1.0
#: The least time between two batches handed to the clients while events keep coming: the
#: first event after a quiet spell goes out at once, a steady stream in batches this far apart
#: (every batch wakes every client: a hundred of them, every 4 ms commit, would cost more than
#: the deliberation).
MIN_BATCH_GAP = 0.01
END = "SessionEnded"


class _Head(msgspec.Struct):
    type: str


_HEAD = msgspec.json.Decoder(_Head)


def sound_prefix(batch: list[RecordedEvent]) -> tuple[list[RecordedEvent], CorruptEventError | None]:
    """The events of ``batch`` before the first damaged one, and the error naming that one (if any).

    Events are relayed as stored text, spliced into the client's JSON (``export.event_json``),
    so a damaged row must be caught here or it reaches every client as broken JSON. Scanning
    the text (fields skipped, only ``type`` read) costs far less than decoding the event.
    """
    for index, recorded in enumerate(batch):
        try:
            head = _HEAD.decode(recorded.data)
        except msgspec.DecodeError as exc:
            return batch[:index], CorruptEventError(recorded.position, recorded.type, str(exc))
        if head.type != recorded.type:
            return batch[:index], CorruptEventError(recorded.position, recorded.type,
                                                    f"its data says type {head.type!r}")
    return batch, None


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
        #: The version of the session's SessionEnded once the hub knows of it: a client past it is done.
        self.end_version: int | None = None
        if self.base_version:
            last = forge.events_page(session_id, self.base_version - 1, 1)
            if last and last[-1].type == END:
                self.end_version = last[-1].version
        #: Why the reader stopped early (a corrupt row, the log closing); clients get it after the window.
        self.failure: Exception | None = None
        self._changed = asyncio.Event()
        self._closing = False  # closed by Hubs (its last client left), not by the engine closing
        self._subscription = forge.subscribe(session_id, start, decoded=False)
        self._thread = threading.Thread(target=self._follow, name=f"forge-hub-{session_id}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closing = True
        self._subscription.close()

    # -- the reading thread -----------------------------------------------------------------------

    def _follow(self) -> None:
        try:
            self._relay()
        except Exception as exc:  # its clients must hear of it, or they would wait forever
            logger.error("the live reader of session %s stopped: %s", self.session_id, exc)
            try:
                self._loop.call_soon_threadsafe(self._fail, exc)
            except RuntimeError:  # the loop is gone
                pass

    def _relay(self) -> None:
        subscription = self._subscription
        handed_at = 0.0
        while not subscription.closed:
            batch = subscription.poll_batch(IDLE_SECONDS)
            if not batch:
                continue
            early = handed_at + MIN_BATCH_GAP - time.monotonic()
            if early > 0 and batch[-1].type != END:
                time.sleep(early)  # let what commits meanwhile join this batch
                while len(batch) < PAGE and (more := subscription.poll_batch(0)):
                    batch.extend(more)
            handed_at = time.monotonic()
            sound, damaged = sound_prefix(batch)
            try:
                if sound:
                    self._loop.call_soon_threadsafe(self._extend, sound)
            except RuntimeError:  # the loop is gone
                return
            if damaged is not None:
                raise damaged
        if not self._closing:  # the engine closed the log under it: its clients must not wait on
            raise SessionStoppedError(f"the engine was closed while session {self.session_id} was followed")

    # -- the event loop side ------------------------------------------------------------------------

    def _extend(self, batch: list[RecordedEvent]) -> None:
        self._window.extend(batch)
        self.last_version = batch[-1].version
        if batch[-1].type == END:
            self.end_version = self.last_version
        if len(self._window) > WINDOW:
            drop = len(self._window) - WINDOW // 2
            del self._window[:drop]
            self._window_first += drop
        self._changed.set()
        self._changed = asyncio.Event()

    def _fail(self, exc: Exception) -> None:
        self.failure = exc
        self._changed.set()
        self._changed = asyncio.Event()

    def _page(self, version: int) -> list[RecordedEvent]:
        """A page of the log after ``version``, up to its first damaged event (raised when it is first)."""
        sound, damaged = sound_prefix(self.forge.events_page(self.session_id, version, PAGE))
        if damaged is not None and not sound:
            raise damaged
        return sound

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
                batch = await run_in_threadpool(self._page, version)
            if batch:
                yield batch
                version = batch[-1].version
                if batch[-1].type == END:
                    return
                continue
            if self.end_version is not None and version >= self.end_version:
                return  # opened at or past the end of an ended session: nothing more will come
            changed = self._changed
            if self.last_version > version:
                continue
            if self.failure is not None:  # every event before it was handed out
                raise self.failure
            try:
                await asyncio.wait_for(changed.wait(), idle_every)
            except TimeoutError:
                yield []


async def paced(batches: AsyncIterator[list[RecordedEvent]], speed: float,
                max_pause: float | None = None) -> AsyncIterator[list[RecordedEvent]]:
    """``batches`` again, each event as long after the one before it as they were recorded
    apart, ``speed`` times faster (0: no pauses); ``max_pause`` caps any one pause."""
    previous: int | None = None
    async for batch in batches:
        if speed <= 0 or not batch:
            yield batch
            continue
        start = 0
        for index, recorded in enumerate(batch):
            pause = 0.0 if previous is None else max(0, recorded.recorded_at - previous) / 1e9 / speed
            previous = recorded.recorded_at
            if max_pause is not None:
                pause = min(pause, max_pause)
            if pause > 0:
                if index > start:
                    yield batch[start:index]
                    start = index
                await asyncio.sleep(pause)
        yield batch[start:]


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
