"""A batching writer: many small appends, one transaction per flush.

Streamed deltas arrive one per token; a transaction each would cap throughput at the
commit rate. The writer queues appends and commits them together every ``max_delay``
seconds or every ``max_batch`` appends, whichever comes first. ``flush()`` and
``AppendTicket.wait()`` return only once what they cover is committed.

Group commit: the producer whose append fills a batch, or whoever calls ``flush()``,
commits the queue itself, in its own thread; the background thread only commits what
``max_delay`` left waiting. Handing every batch to a separate writer thread instead
costs a GIL hand-off per row (sqlite releases the GIL on each step) and halves the
throughput. A commit lock keeps batches in submission order.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections import deque
from collections.abc import Iterable
from typing import Protocol

from eventstore.errors import ConcurrencyError, CorruptLogError, LogWriteError, StoreClosedError
from eventstore.log import ANY, AppendResult, EventLog, ExpectedVersion, Fence, NewEvent, PendingAppend, check_fence

logger = logging.getLogger(__name__)


class AppendTicket(PendingAppend):
    """One queued append. ``wait()`` makes it durable now and returns where it landed."""

    writer: BatchingWriter | None = None

    @property
    def done(self) -> bool:
        assert self.writer is not None, "a ticket is made by its writer"
        return self.writer._committed_seq >= self.seq

    def wait(self, timeout: float | None = None) -> AppendResult:
        """Commit everything queued up to this append (without waiting out the batch delay).

        Raises the append's own error (e.g. ConcurrencyError), or TimeoutError.
        """
        assert self.writer is not None, "a ticket is made by its writer"
        self.writer._flush_upto(self.seq, timeout)
        if self.error is not None:
            raise self.error
        result = self.result
        assert result is not None
        return result


class Appender(Protocol):
    """Where an appending actor's events go: a BatchingWriter, or a wrapper of one that adds a
    ``Fence`` to each append (an engine holding the stream's lease). ``append`` queues and returns
    at once; the ticket's ``wait()`` makes the append durable, or raises its error."""

    def append(
        self, stream_id: str, events: Iterable[NewEvent], expected_version: ExpectedVersion = ANY
    ) -> AppendTicket: ...


class BatchingWriter:
    """Groups appends from any number of threads into few transactions, in submission order."""

    def __init__(self, store: EventLog, *, max_batch: int | None = None, max_delay: float = 0.004) -> None:
        """``max_batch`` defaults to the store's ``batch_size`` (SQLite 512, PostgreSQL 2048)."""
        if max_batch is None:
            max_batch = store.batch_size
        if max_batch < 1 or max_delay < 0:
            raise ValueError("max_batch must be >= 1 and max_delay >= 0")
        self.store = store
        self.max_batch = max_batch
        self.max_delay = max_delay
        self._submit_lock = threading.Lock()  # producers only: keeps seq order == queue order
        self._queue: deque[AppendTicket] = deque()
        self._seq = 0
        self._wake = threading.Event()  # something was queued, or close was asked
        self._stop = threading.Event()  # close was asked: cut the timer's wait short
        self._commit_lock = threading.Lock()  # one committer at a time, batches in seq order
        self._committed_seq = 0
        self._closing = False
        self._failure: BaseException | None = None
        # Streams whose appends the file could not take (full disk, damaged page), with why:
        # until one of their appends commits again, their later appends fail with that
        # error rather than with the version gap the lost appends left behind.
        self._lost: dict[str, LogWriteError | CorruptLogError] = {}
        # Streams with an append refused for its version, with the last seq submitted when the
        # refusal was seen: the stream's version-naming appends queued up to there assumed the
        # refused one would land, so they are refused too (not committed by chance after another
        # writer's events). Appends submitted later are judged as usual.
        self._refused: dict[str, tuple[int, ConcurrencyError]] = {}
        self._thread = threading.Thread(target=self._run, name="eventstore-flusher", daemon=True)
        self._thread.start()
        # A daemon thread dies silently at exit; make sure what was handed to us lands.
        atexit.register(_close_at_exit, weakref.ref(self))

    def append(
        self,
        stream_id: str,
        events: Iterable[NewEvent],
        expected_version: ExpectedVersion = ANY,
        *,
        fence: Fence | None = None,
    ) -> AppendTicket:
        """Queue an append; it commits within ``max_delay`` (or at once via the ticket).

        With a ``fence`` the commit refuses it (FencedError on its ticket alone, the batch's other
        appends unharmed) unless the fence's lease is still at its epoch."""
        if fence is not None:
            check_fence(fence)
        args = self.store.validate_append(stream_id, events, expected_version)
        with self._submit_lock:
            if self._closing:
                raise StoreClosedError("the batching writer is closed")
            self._seq += 1
            ticket = AppendTicket(self._seq, *args, writer=self)
            if fence is not None:  # set apart: a keyword more costs every unfenced append too
                ticket.fence = fence
            self._queue.append(ticket)
        if len(self._queue) >= self.max_batch:
            self._drain(blocking=False)  # someone already committing will take ours too
        elif not self._wake.is_set():
            self._wake.set()
        return ticket

    def flush(self, timeout: float | None = None) -> None:
        """Return once every append queued so far is committed (or has failed)."""
        with self._submit_lock:  # an append numbered but not yet queued would be missed by the drain
            seq = self._seq
        self._flush_upto(seq, timeout)

    def _flush_upto(self, seq: int, timeout: float | None) -> None:
        if self._committed_seq >= seq:
            return
        if not self._commit_lock.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError(f"appends were not committed within {timeout} s")
        try:
            self._drain_locked()
        finally:
            self._commit_lock.release()
        if self._committed_seq < seq:  # only when the store itself failed
            raise StoreClosedError("the appends could not be committed") from self._failure

    def write_failure(self, stream_id: str) -> LogWriteError | CorruptLogError | None:
        """Why the stream's last appends were lost (the file could not take them), or None.

        Cleared once an append of the stream commits again (e.g. on resume).
        """
        return self._lost.get(stream_id)

    def close(self) -> None:
        """Commit what is queued, then stop the timer thread. Safe to call twice."""
        with self._submit_lock:
            self._closing = True
        self._stop.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._drain(blocking=True)

    def __enter__(self) -> BatchingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        """Commits appends that no full batch or flush has picked up within ``max_delay``."""
        while True:
            self._wake.wait()
            self._wake.clear()  # before the check: a close() after this line sets it again
            if self._closing:
                return
            waiting_since = self._seq
            self._stop.wait(self.max_delay)
            # Under load producers commit full batches themselves; step in only for
            # appends that have really waited, and never queue behind a committer.
            if self._committed_seq < waiting_since:
                self._drain(blocking=False)
            if self._queue:
                self._wake.set()

    def _drain(self, blocking: bool) -> None:
        if self._commit_lock.acquire(blocking):
            try:
                self._drain_locked()
            finally:
                self._commit_lock.release()

    def _drain_locked(self) -> None:
        queue = self._queue
        while queue:
            batch = [queue.popleft() for _ in range(min(len(queue), self.max_batch))]
            try:
                self.store.commit(self._unrefused(batch) if self._refused else batch)
            except BaseException as exc:  # every append in the batch carries the error
                for ticket in batch:
                    ticket.error = ticket.error or exc
                self._failure = exc
                if isinstance(exc, (LogWriteError, CorruptLogError)):
                    self._record_loss(batch, exc)
            else:
                if self._lost:
                    self._settle_losses(batch)
                self._note_refusals(batch)
            self._committed_seq = batch[-1].seq

    def _unrefused(self, batch: list[AppendTicket]) -> list[AppendTicket]:
        """The batch without the appends that follow on from a refused one (they get its error)."""
        kept = []
        for ticket in batch:
            refusal = self._refused.get(ticket.stream_id)
            if refusal is not None and ticket.seq <= refusal[0] and ticket.expected_version != ANY:
                ticket.error = ConcurrencyError(ticket.stream_id, ticket.expected_version, refusal[1].actual)
            else:
                kept.append(ticket)
        return kept

    def _note_refusals(self, batch: list[AppendTicket]) -> None:
        last_seq = batch[-1].seq
        for stream_id, (mark, _) in list(self._refused.items()):
            if mark <= last_seq:  # everything queued before that refusal is settled now
                del self._refused[stream_id]
        submitted = self._seq
        for ticket in batch:
            if isinstance(ticket.error, ConcurrencyError) and ticket.stream_id not in self._refused \
                    and submitted > ticket.seq:
                self._refused[ticket.stream_id] = (submitted, ticket.error)

    def _record_loss(self, batch: list[AppendTicket], exc: LogWriteError | CorruptLogError) -> None:
        if not self._lost:  # once per outage, not once per batch of deltas
            logger.warning("appends to %s were not written: %s", self.store.path, exc, exc_info=exc)
        for ticket in batch:
            self._lost[ticket.stream_id] = exc

    def _settle_losses(self, batch: list[AppendTicket]) -> None:
        """After a lost batch, a stream's next appends expect versions that never landed."""
        for ticket in batch:
            lost = self._lost.get(ticket.stream_id)
            if lost is None:
                continue
            error = ticket.error
            if error is None:
                del self._lost[ticket.stream_id]  # it writes again
            elif isinstance(error, ConcurrencyError) and isinstance(error.expected, int) \
                    and error.expected > error.actual:
                ticket.error = lost  # the gap is the lost appends': say why they were lost


def _close_at_exit(ref: weakref.ref[BatchingWriter]) -> None:
    writer = ref()
    if writer is not None and not writer.store.closed:
        writer.close()
