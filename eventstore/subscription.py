"""Subscriptions: stored events, then live ones as they commit, with no gap and no duplicate.

Backend-neutral. A backend keeps a ``Subscribers`` registry, hands it each batch it commits
(``hand_over``, under its write lock so batches arrive in commit order), and, if it can hear
other processes' commits (PostgreSQL's LISTEN/NOTIFY), wakes the subscriptions of the streams
written with ``nudge`` (every one with ``nudge_all``).
Without such a wake-up a subscription finds other processes' commits by reading the log after
each quiet ``poll_interval``. Either way the log itself is the truth: a handed batch is only used
when it follows on from the subscription's position without a gap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from eventstore.errors import CorruptEventError
from eventstore.log import Codec, RecordedEvent, Row, decode_rows

logger = logging.getLogger(__name__)


class SubscriptionSource(Protocol):
    """What a Subscription reads through: its backend."""

    @property
    def closed(self) -> bool: ...

    def _page_all(self, after: int, limit: int) -> list[tuple[Any, ...]]: ...

    def _page_stream(self, stream_id: str, after_version: int, limit: int) -> list[tuple[Any, ...]]: ...

    def _version_at(self, stream_id: str, position: int) -> int: ...

    def _forget(self, sub: Subscription) -> None: ...


class Subscribers:
    """A backend's open subscriptions, and handing them what it commits. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[Subscription] = set()

    def add(self, sub: Subscription) -> None:
        with self._lock:
            self._open.add(sub)

    def discard(self, sub: Subscription) -> None:
        with self._lock:
            self._open.discard(sub)

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)

    def __bool__(self) -> bool:
        return bool(self._open)  # (a racy peek is enough: a commit hands over only if someone listens)

    def snapshot(self) -> list[Subscription]:
        with self._lock:
            return list(self._open)

    def hand_over(self, rows: list[Row], first_position: int) -> None:
        """Give the rows just committed (positions from ``first_position``) to the subscriptions:
        they need not read them back."""
        batch = [RecordedEvent(first_position + index, *row) for index, row in enumerate(rows)]
        by_stream: dict[str, list[RecordedEvent]] | None = None
        for sub in self.snapshot():
            if sub._stream_id is None:
                sub._committed(batch)
                continue
            if by_stream is None:  # once per commit, not once per subscription
                by_stream = {}
                for recorded in batch:
                    by_stream.setdefault(recorded.stream_id, []).append(recorded)
            mine = by_stream.get(sub._stream_id)
            if mine:
                sub._committed(mine)

    def nudge_all(self) -> None:
        """Another process committed: every subscription reads the log."""
        for sub in self.snapshot():
            sub.nudge()

    def nudge(self, streams: list[str] | None) -> None:
        """Another process committed to ``streams`` (None: to any): the subscriptions of those
        streams, and those of the whole log, read it."""
        if streams is None:
            self.nudge_all()
            return
        written = set(streams)
        for sub in self.snapshot():
            if sub._stream_id is None or sub._stream_id in written:
                sub.nudge()

    def close_all(self) -> None:
        for sub in self.snapshot():
            sub.close()


class Subscription:
    """An iterator over stored, then live, events. Blocks while there is nothing new.

    Two sources, one order. It first pages through the log after its position; once a
    page comes back short it is *live*: it takes the batches this process's commits hand
    it (``_committed``), and reads the log again only every ``poll_interval`` seconds of
    quiet (commits by other processes) or when it fell behind. It is registered before
    its first read, so a commit is either in what it reads or in a handed batch, maybe
    both: everything at or before its position is skipped, so nothing comes twice and
    nothing is missed.

    Memory stays bounded: a consumer that lets more than ``max_pending`` handed events
    pile up loses them and reads the log instead, a page at a time, so a slow consumer
    never slows the writer nor grows memory. ``close()`` (from any thread) ends it.

    A consumer that must not block (an event loop) registers ``on_wake`` and reads with
    ``poll(0)`` / ``poll_batch(0)`` when woken, calling ``nudge()`` after a quiet spell of its own
    choosing to look for other processes' commits (what a blocking ``poll`` does by itself).
    """

    def __init__(
        self,
        store: SubscriptionSource,
        after: int,
        stream_id: str | None,
        codec: Codec | None,
        poll_interval: float,
        page_size: int,
    ) -> None:
        self._store = store
        self._stream_id = stream_id
        self._codec = codec
        self._poll_interval = poll_interval
        self._page_size = page_size
        self._max_pending = max(4 * page_size, 2048)
        self._buffer: deque[RecordedEvent] = deque()
        self._wake = threading.Condition(threading.Lock())
        self._pending: deque[RecordedEvent] = deque()  # handed over, not yet taken; guarded by _wake
        self._live = False  # caught up with the log: handed batches are enough
        self._drops = 0  # how often handed events were dropped (too many pending); guarded by _wake
        self._wake_callback: Callable[[], None] | None = None
        self.closed = False
        #: Position of the last event this subscription has handed out (or skipped past).
        self.position = after
        self._after_version = store._version_at(stream_id, after) if stream_id is not None else 0

    # -- the writer's side ----------------------------------------------------------------

    def _committed(self, batch: list[RecordedEvent]) -> None:
        """Called under the store's write lock with each committed batch (of its stream): wake up."""
        mine = batch
        with self._wake:
            if len(self._pending) + len(mine) > self._max_pending:
                self._pending.clear()  # too far behind: it reads the log instead
                self._live = False
                self._drops += 1
            else:
                self._pending.extend(mine)
            self._wake.notify_all()
        self._call_wake_callback()

    # -- the consumer's side --------------------------------------------------------------

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> RecordedEvent:
        while True:
            event = self.poll(self._poll_interval)
            if event is not None:
                return event
            if self.closed:
                raise StopIteration

    def poll(self, timeout: float) -> RecordedEvent | None:
        """The next event, waiting at most ``timeout`` seconds; None if none came (or closed)."""
        if not self._buffer and not self._fill(timeout):
            return None
        return self._take()

    def poll_batch(self, timeout: float) -> list[RecordedEvent]:
        """Every event available now (up to a page), waiting at most ``timeout`` seconds for the
        first; empty if none came (or closed)."""
        if not self._buffer and not self._fill(timeout):
            return []
        batch = list(self._buffer)
        self._buffer.clear()
        self.position = batch[-1].position
        return batch

    def _take(self) -> RecordedEvent:
        event = self._buffer.popleft()
        self.position = event.position
        return event

    def _fill(self, timeout: float) -> bool:
        """Put the next events in the buffer, waiting at most ``timeout``; False if none came."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            if self._store.closed:
                self.close()
                return False
            if not self._live:
                # What was handed over may follow on from our position without a gap (a consumer
                # that starts late, say): then the log has nothing before it that we lack. Else, or
                # once it is taken, the log is read (which is what makes us live again).
                with self._wake:
                    taken = self._take_pending()
                if not taken:
                    if self._read_log():
                        return True
                    continue
            else:
                with self._wake:
                    if not self._pending and self._live and not self.closed:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return False
                        if not self._wake.wait(min(remaining, self._poll_interval)):
                            self._live = False  # a quiet spell: look at the log for other processes' commits
                            continue
                    taken = self._take_pending()
                    if taken is None:  # another process committed in between: the log has those rows
                        self._live = False
                        continue
            if taken:
                try:
                    self._buffer.extend(self._decoded(taken))
                    self._after_version = taken[-1].version  # (only a stream's reads use it)
                except CorruptEventError:
                    with self._wake:  # read it from the log: the sound events before it come first
                        self._live = False
                        self._pending.clear()
                    continue
                return True
        return False

    def _take_pending(self) -> list[RecordedEvent] | None:
        """Up to a page of the handed events that follow on from our position without a gap (older
        ones we read from the log); None when not even the first does: another process wrote
        rows in between, which only the log has."""
        pending = self._pending
        taken: list[RecordedEvent] = []
        position = self.position
        while pending and pending[0].position <= position:
            pending.popleft()
        everything = self._stream_id is None
        version = self._after_version
        while pending and len(taken) < self._page_size:
            recorded = pending[0]
            if recorded.position <= position:  # (a batch handed twice is impossible, but cheap to skip)
                pending.popleft()
                continue
            if (recorded.position != position + 1) if everything else (recorded.version != version + 1):
                break
            taken.append(pending.popleft())
            position, version = recorded.position, recorded.version
        return taken or (None if pending else [])

    def _decoded(self, taken: list[RecordedEvent]) -> list[RecordedEvent]:
        codec = self._codec
        if codec is None:
            return taken
        decoded = []
        for r in taken:
            try:
                event = codec(r.type, r.data)
            except Exception as exc:
                raise CorruptEventError(r.position, r.type, str(exc)) from exc
            decoded.append(RecordedEvent(r.position, r.stream_id, r.version, r.type, r.data, r.recorded_at, event))
        return decoded

    def _read_log(self) -> bool:
        """A page of the log after our position; a short one means we are live again."""
        with self._wake:
            drops = self._drops
        last = self.position
        if self._stream_id is None:
            rows = self._store._page_all(last, self._page_size)
        else:
            rows = self._store._page_stream(self._stream_id, self._after_version, self._page_size)
            if rows:
                self._after_version = rows[-1][2]
        if len(rows) < self._page_size:
            with self._wake:
                # Unless handed events were dropped meanwhile: those may be past this page.
                self._live = self._drops == drops
        if rows:
            self._buffer.extend(decode_rows(rows, self._codec))
        return bool(rows)

    def nudge(self) -> None:
        """Another process committed (a backend's cross-process wake-up, e.g. PostgreSQL's NOTIFY):
        read the log now rather than after the next quiet ``poll_interval``."""
        with self._wake:
            self._live = False
            self._wake.notify_all()
        self._call_wake_callback()

    def on_wake(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` each time there may be something new to read: a commit handed to this
        subscription, a ``nudge``, ``close``. It runs in the thread that woke the subscription (a
        writer's, under its write lock), so it must be quick and must neither block nor read the
        subscription: it only tells the consumer to read (``poll(0)``). ``None`` removes it."""
        self._wake_callback = callback

    def _call_wake_callback(self) -> None:
        callback = self._wake_callback
        if callback is None:
            return
        try:
            callback()
        except Exception:  # the commit that woke us must not fail because a consumer's callback did
            logger.exception("a subscription's wake callback failed")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._store._forget(self)
            with self._wake:
                self._pending.clear()
                self._wake.notify_all()
            self._call_wake_callback()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
