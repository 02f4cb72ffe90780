"""The actors' lifecycle: which sessions this engine drives, under whose lease, and stopping them.

A session runs here as one ``SessionActor`` and one ``ParticipantActor`` per AI participant,
started from the log as it stands (``attach``). Driving a session takes its lease first, so
that two engines (processes, hosts) never drive one session; the lease is renewed every third
of its ttl by one thread while any is held, and released when the session's actor stops. An
engine that finds its lease taken (it was paused past its ttl) stops that session's actors
and lets them write nothing more (``LeaseFence``).

The fence is three locks on one door. The lease (a row in the log's database) says who may drive;
but a process paused past its ttl wakes up believing it still drives, and its renewal thread may
only notice a third of a ttl later. So the fence keeps a local deadline: appends stop once
``FENCE_SHARE`` of the ttl has passed since the last renewal that succeeded began (monotonic
time, so a paused process trips it on waking, before any renewal). What slips through that check
(queued just before a pause, committed after it) carries the lease's epoch (``Fence``), which the
append's own transaction compares with the lease's: another engine that took the lease meanwhile
raised it, so the append is refused (FencedError), alone, whatever the stream's version; and the
stream's optimistic concurrency still refuses an append at a version another writer reached. The
fence then refuses everything after it too, and says so in one log line.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable

import msgspec
import pykka

from eventstore import (
    ANY,
    AppendTicket,
    BatchingWriter,
    ConcurrencyError,
    EventStoreError,
    ExpectedVersion,
    Fence,
    FencedError,
    Lease,
    LeaseHeldError,
    LeaseLostError,
    LeaseStore,
    Letter,
    Mailbox,
    NewEvent,
)
from forge_actors.actors.messages import Recover
from forge_actors.actors.participant import ParticipantActor, ToolRunner
from forge_actors.actors.scheduler import Scheduler
from forge_actors.actors.session import SessionActor
from forge_actors.core.errors import SessionBusyError, SessionStartError, SessionStoppedError
from forge_actors.core.events import ParticipantInfo, SimilarityMeasured
from forge_actors.core.state import SessionState
from forge_actors.engine import mail
from forge_actors.providers.base import Provider
from forge_actors.providers.embeddings import embedder_of
from forge_actors.providers.retry import RetryPolicy

logger = logging.getLogger(__name__)

#: The share of the lease ttl after the start of the last successful renewal past which a session's
#: fence refuses appends on its own (renewals run every third of the ttl: two may be late). Below 1,
#: so that this engine stops writing before the row in the database lets another engine take it.
FENCE_SHARE = 0.8


def engine_owner_id() -> str:
    """``host:pid:token``: names one engine in lease rows and in SessionBusyError messages."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _process_exists(pid: int) -> bool:
    if os.name != "posix":  # no cheap, harmless probe (os.kill(pid, 0) is not one on Windows)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:  # the answer sought: no such process
        return False
    except OSError:  # e.g. EPERM: it exists, under another user
        return True
    return True


def _owner_gone(lease: Lease) -> bool:
    """The lease's owner is a process of this host that no longer exists."""
    host, _, rest = lease.owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    return pid != os.getpid() and not _process_exists(pid)


def owner_is_dead_here(lease: Lease) -> bool:
    """A lease left by an engine of this host whose process is gone (e.g. ``kill -9``): take it at
    once. An owner on another host, or one this check cannot read, keeps its lease until it expires."""
    if not _owner_gone(lease):
        return False
    logger.info("taking over lease %s: its owner %s was a process of this host that no longer exists",
                lease.name, lease.owner)
    return True


def lease_name(session_id: str) -> str:
    return f"session:{session_id}"


def stop_all(actors: list[pykka.ActorRef], deadline: float) -> None:
    """Ask every actor to stop at once, then wait for each until ``deadline`` (time.monotonic)."""
    stopping = [(actor, actor.stop(block=False)) for actor in actors]
    for actor, stopped in stopping:
        try:
            stopped.get(timeout=max(0.0, deadline - time.monotonic()))
        except pykka.Timeout:  # e.g. a provider that ignores abort(); a daemon thread, it dies with the process
            logger.warning("%s did not stop in time; leaving it behind", actor)


class LeaseFence:
    """The writer as one session's actor sees it (an ``Appender``): each append carries the lease's
    epoch, and once this engine has lost the session's lease (the renewal thread found it taken, the
    local deadline passed, or the log refused one of its appends as fenced out or for a stale version)
    every append is refused, so the actor stops without writing more."""

    __slots__ = ("_writer", "_fence", "_owner", "_window", "valid_until", "lost", "_pending", "_losing")

    def __init__(self, writer: BatchingWriter, fence: Fence, owner: str, ttl: float, taken_at: float) -> None:
        self._writer = writer
        self._fence = fence
        self._owner = owner
        self._window = ttl * FENCE_SHARE
        #: time.monotonic() past which this engine may no longer count on the lease.
        self.valid_until = taken_at + self._window
        self.lost: EventStoreError | None = None
        self._pending: deque[AppendTicket] = deque()  # our appends not seen committed yet, oldest first
        self._losing = threading.Lock()  # the actor and the renewal thread may both find the loss at once

    def renewed(self, started: float) -> None:
        """A renewal that began at ``started`` (monotonic) succeeded."""
        self.valid_until = max(self.valid_until, started + self._window)

    def append(self, stream_id: str, events: Iterable[NewEvent], expected_version: ExpectedVersion = ANY) -> AppendTicket:
        if self.lost is None:
            self._why_refused()
        if self.lost is not None:
            raise self.lost
        ticket = self._writer.append(stream_id, events, expected_version, fence=self._fence)
        self._pending.append(ticket)
        return ticket

    def lose(self, why: EventStoreError, explain: str) -> None:
        """Write nothing more, and say why in one log line (the first reason found is the one)."""
        with self._losing:
            if self.lost is not None:
                return
            self.lost = why
            logger.error("%s: %s; stopping its actors here without writing more (epoch %d)",
                         self._fence.lease, explain, self._fence.epoch)

    def _why_refused(self) -> None:
        pending = self._pending
        while pending and pending[0].done:
            error = pending.popleft().error
            if isinstance(error, FencedError):
                self.lose(error, f"the log refused an append: another engine took the lease (its epoch is "
                                 f"{error.current}) while this process was paused or cut off")
                return
            if isinstance(error, ConcurrencyError):
                self.lose(error, f"another writer appended to the session ({error})")
                return
        if time.monotonic() > self.valid_until:
            self.lose(LeaseLostError(self._fence.lease, self._owner, None),
                      "the lease was not renewed in time (this process was paused or its renewals failed)")


class _Running(msgspec.Struct):
    session: pykka.ActorRef
    participants: list[pykka.ActorRef]
    fence: LeaseFence


class Supervisor:
    """Starts, finds and stops the actors of the sessions one engine drives. Thread-safe."""

    def __init__(
        self,
        *,
        writer: BatchingWriter,
        leases: LeaseStore,
        load: Callable[[str], tuple[SessionState, int]],
        provider_for: Callable[[ParticipantInfo, str], Provider],
        tools_for: Callable[[ParticipantInfo, str, SessionState, Provider], ToolRunner | None],
        retry_policy: RetryPolicy,
        latency_clock: Callable[[], int],
        lease_ttl: float,
        close_timeout: float,
        mailbox: Mailbox | None = None,
        deliver: Callable[[str, Letter], str] | None = None,
        recorded_similarities: Callable[[SessionState], tuple[SimilarityMeasured, ...] | None] = lambda state: None,
    ) -> None:
        self._writer = writer
        self._leases = leases
        self._load = load
        self._provider_for = provider_for
        self._tools_for = tools_for
        self._retry_policy = retry_policy
        self._latency_clock = latency_clock
        self._lease_ttl = lease_ttl
        self._close_timeout = close_timeout
        self._scheduler = Scheduler()
        self._recorded_similarities = recorded_similarities  # a re-run's, from its original's log
        self._embedders: dict[str, str] = {}  # session -> the participant whose provider embeds (while starting)
        self._lock = threading.RLock()
        self._forgotten = threading.Condition(self._lock)  # notified as each session actor is forgotten
        self._running: dict[str, _Running] = {}
        self._starting: set[str] = set()  # new sessions whose actors attach_new is starting (see there)
        self._stopped_participants: list[pykka.ActorRef] = []
        self._closed = False
        #: This engine's name in the session leases it holds (``host:pid:token``).
        self.owner = engine_owner_id()
        self._held: set[str] = set()  # sessions whose lease this engine holds
        self._taken_at: dict[str, float] = {}  # monotonic time each lease held was (re)taken
        self._epochs: dict[str, int] = {}  # each lease held's epoch: its session's appends carry it
        self._renewer: threading.Thread | None = None  # runs while this engine holds a lease
        self._renewer_wake = threading.Event()  # set when the last lease goes, or on close
        # Letters to the sessions driven here (human input given to other engines): ``deliver`` applies
        # one and returns its answer. One thread polls while any lease is held.
        self._mailbox = mailbox
        self._deliver = deliver
        self._mail_reader: threading.Thread | None = None

    def check_open(self) -> None:
        if self._closed:
            raise SessionStoppedError("this Forge is closed")

    # -- finding and starting ------------------------------------------------------------------

    def attach(self, session_id: str) -> pykka.ActorRef | None:
        """The session's actor, started from its log if no actor runs it; None once it has ended.

        Starting one takes the session's lease first: SessionBusyError when another engine holds it.
        """
        with self._lock:
            self.check_open()
            self._forgotten.wait_for(lambda: session_id not in self._starting)  # attach_new's, registered first
            running = self._running.get(session_id)
            if running is not None and running.session.is_alive() and running.fence.lost is None:
                return running.session
            if running is not None:  # stopping right now: its participants still need joining on close
                self._stopped_participants += running.participants
            if self._load(session_id)[0].ended:  # an ended session needs no driver, hence no lease
                return None
            self._take_lease(session_id)
            try:
                # Read after taking the lease: the previous driver's last events count in the version we
                # start from (a previous actor of ours may have appends queued, hence the flush). A new
                # session (attach_new) has none queued: there the flush would only wait, under the lock,
                # for every other session's deltas (3 s in all for 50 sessions started at once, streaming).
                self._writer.flush()
                return self._start(session_id)
            except BaseException:
                self._release_lease(session_id)
                raise

    def attach_new(self, session_id: str, record: Callable[[], None]) -> pykka.ActorRef:
        """Start a session that ``record`` creates, its lease taken first: a log that refuses writes
        then fails the lease, before ``record`` writes anything; if ``record`` fails, the lease goes
        back. Once recorded, a failure to start raises SessionStartError (the session exists).

        Little of it holds the engine's lock: nobody else can know a session not yet recorded, and
        many sessions created at once would otherwise start one after another. The two writes, the
        fold and the participants' actors (a thread each) happen outside it; the session's own actor
        is started and registered under it (so that its end, which takes the lock, always finds it
        registered), and an ``attach`` of the session meanwhile waits for that."""
        self.check_open()
        started = time.monotonic()
        lease = self._acquire_lease(session_id)
        try:
            record()
        except BaseException:
            self._give_back_lease(session_id)
            raise
        with self._lock:
            try:
                self.check_open()
            except BaseException:
                self._give_back_lease(session_id)
                raise
            self._hold_lease(session_id, started, lease.epoch)
            self._starting.add(session_id)
        participants: dict[str, pykka.ActorRef] = {}
        try:
            state, version = self._load(session_id)
            participants = self._start_participants(session_id, state)
            with self._lock:
                self._starting.discard(session_id)
                self._forgotten.notify_all()
                self.check_open()
                return self._start_session(session_id, state, version, participants)  # new: nothing queued, no flush
        except BaseException as exc:
            for ref in participants.values():
                ref.stop(block=False)
            self._embedders.pop(session_id, None)
            with self._lock:
                self._starting.discard(session_id)
                self._forgotten.notify_all()
                self._release_lease(session_id)
            raise SessionStartError(session_id, exc) from exc

    def _start(self, session_id: str) -> pykka.ActorRef | None:
        """Under the lock, holding the lease: the session's actors, from the log as it stands now
        (for a session that had actors before, flush the writer first: see ``attach``)."""
        state, version = self._load(session_id)
        if state.ended:
            self._release_lease(session_id)
            return None
        return self._start_session(session_id, state, version, self._start_participants(session_id, state))

    def _start_participants(self, session_id: str, state: SessionState) -> dict[str, pykka.ActorRef]:
        """An actor for each AI participant, its provider and tools built (all stopped again on a failure).
        The first whose provider offers embeddings is noted: it measures the session's similarities."""
        participants: dict[str, pykka.ActorRef] = {}
        try:
            for info in state.participants.values():
                if info.kind == "ai" and info.name not in state.removed:  # a fork may have dropped some
                    provider = self._provider_for(info, session_id)
                    tools = self._tools_for(info, session_id, state, provider)
                    participants[info.name] = ParticipantActor.start(info.name, provider, self._latency_clock, tools)
                    if session_id not in self._embedders and embedder_of(provider) is not None:
                        self._embedders[session_id] = info.name
        except BaseException:
            for ref in participants.values():
                ref.stop(block=False)
            self._embedders.pop(session_id, None)
            raise
        return participants

    def _start_session(self, session_id: str, state: SessionState, version: int,
                       participants: dict[str, pykka.ActorRef]) -> pykka.ActorRef:
        """Under the lock: the session's actor over its participants', registered as running here."""
        fence = LeaseFence(self._writer, Fence(lease_name(session_id), self._epochs[session_id]), self.owner,
                           self._lease_ttl, self._taken_at.get(session_id, time.monotonic()))
        session = SessionActor.start(
            state=state, version=version, writer=fence, participants=participants,
            scheduler=self._scheduler, retry_policy=self._retry_policy, on_stopped=self._forget,
            embedder=self._embedders.pop(session_id, None), recorded_similarities=self._recorded_similarities(state),
        )
        self._running[session_id] = _Running(session, list(participants.values()), fence)
        if state.status in ("running", "interrupted") or state.streaming:
            session.tell(Recover())
        return session

    def _forget(self, session_id: str, urn: str) -> None:
        """Called by a session actor as it stops (only its own entry goes: a successor may be registered)."""
        with self._lock:
            running = self._running.get(session_id)
            if running is not None and running.session.actor_urn == urn:
                del self._running[session_id]
                self._stopped_participants = [r for r in self._stopped_participants if r.is_alive()]
                self._stopped_participants += running.participants
                if running.fence.lost is None:
                    self._release_lease(session_id)
                else:  # not ours to release, nor to renew: it expires, and any engine may adopt it
                    self._held.discard(session_id)
                    self._taken_at.pop(session_id, None)
                    self._epochs.pop(session_id, None)
                self._forgotten.notify_all()

    def running_session(self, session_id: str) -> pykka.ActorRef | None:
        """The session's actor if it runs here now (never starts one)."""
        with self._lock:
            return self._running_ref(session_id)

    def running_sessions(self) -> list[str]:
        """The sessions this engine drives now (their actors run here)."""
        with self._lock:
            return [sid for sid, running in self._running.items() if running.session.is_alive()]

    def wait_stopped(self, session_id: str, session: pykka.ActorRef) -> None:
        """Until the session's actor has stopped and been forgotten (its lease released), at most
        ``close_timeout``. Its stop is not enough: pykka marks an actor stopped before its on_stop runs."""
        deadline = time.monotonic() + self._close_timeout
        stop_all([session], deadline)
        with self._forgotten:
            self._forgotten.wait_for(lambda: self._running_ref(session_id) is not session,
                                     timeout=max(0.0, deadline - time.monotonic()))

    def _running_ref(self, session_id: str) -> pykka.ActorRef | None:
        running = self._running.get(session_id)
        return running.session if running is not None else None

    def write_failure(self, session_id: str) -> EventStoreError | None:
        """What stopped the session's appends, if the log refused them."""
        return self._writer.write_failure(session_id)

    # -- leases: one driver per session --------------------------------------------------------

    def lease_holder(self, session_id: str) -> Lease | None:
        """Who drives the session now (any engine on this log), None when nobody does. Writes nothing."""
        return self._leases.holder(lease_name(session_id))

    def lease_is_live(self, session_id: str) -> bool:
        """Someone may be driving the session: its lease is held, unexpired, by an engine not known dead
        (one of this host whose process is gone counts as free, as ``attach`` would take it at once)."""
        lease = self.lease_holder(session_id)
        return lease is not None and not _owner_gone(lease)

    def recorded_lease(self, session_id: str) -> Lease | None:
        """The session's lease as last recorded, expired or not (who drove it last); None if none is."""
        return self._leases.recorded(lease_name(session_id))

    def _take_lease(self, session_id: str) -> None:
        """Under the lock. Takes (or keeps) the session's lease; SessionBusyError if another engine holds it."""
        started = time.monotonic()
        lease = self._acquire_lease(session_id)
        self._hold_lease(session_id, started, lease.epoch)

    def _acquire_lease(self, session_id: str) -> Lease:
        """The lease's row, taken in the log (no lock of ours needed); SessionBusyError if another holds it."""
        try:
            return self._leases.acquire(lease_name(session_id), self.owner, self._lease_ttl, stale=owner_is_dead_here)
        except LeaseHeldError as held:
            raise SessionBusyError(session_id, held.owner, held.expires_in) from None

    def _give_back_lease(self, session_id: str) -> None:
        """A lease taken in the log but never held here (its session was not recorded or not started)."""
        try:
            self._leases.release(lease_name(session_id), self.owner)
        except EventStoreError as exc:  # e.g. the disk is full: the lease simply expires
            logger.warning("could not release the lease of session %s (it expires in %g s): %s",
                           session_id, self._lease_ttl, exc)

    def _hold_lease(self, session_id: str, started: float, epoch: int) -> None:
        """Under the lock. This engine holds the lease taken at ``started``: renewed, and read for mail."""
        self._held.add(session_id)
        self._taken_at[session_id] = started
        self._epochs[session_id] = epoch
        if self._renewer is None:
            self._renewer = threading.Thread(target=self._renew_leases, name="forge-lease-renewer", daemon=True)
            self._renewer.start()
        if self._mail_reader is None and self._mailbox is not None and self._deliver is not None:
            self._mail_reader = threading.Thread(target=self._read_mail, name="forge-mail-reader", daemon=True)
            self._mail_reader.start()

    def _release_lease(self, session_id: str) -> None:
        """Under the lock. What our actors queued is committed first, so that the next driver reads it."""
        if session_id not in self._held:
            return
        self._held.discard(session_id)
        self._taken_at.pop(session_id, None)
        self._epochs.pop(session_id, None)
        if not self._held:
            self._renewer_wake.set()  # nothing left to renew: let the thread end now
        try:
            self._writer.flush()
            self._leases.release(lease_name(session_id), self.owner)
        except EventStoreError as exc:  # e.g. the log is closed; the lease then simply expires
            logger.warning("could not release the lease of session %s (it expires in %g s): %s",
                           session_id, self._lease_ttl, exc)

    def _renew_leases(self) -> None:
        """The renewal thread: every third of the ttl, renew each lease held; act on any found lost.
        It ends when the engine holds no lease any more (the next lease taken starts another)."""
        while True:
            self._renewer_wake.wait(self._lease_ttl / 3)
            with self._lock:
                self._renewer_wake.clear()
                if self._closed or not self._held:
                    self._renewer = None
                    return
                held = sorted(self._held)
            for session_id in held:
                with self._lock:
                    if session_id not in self._held or self._closed:
                        continue
                    started = time.monotonic()
                    try:
                        self._leases.renew(lease_name(session_id), self.owner, self._lease_ttl)
                        self._renewed(session_id, started)
                    except LeaseLostError as lost:
                        self._lease_lost(session_id, lost)
                    except Exception:  # e.g. the database stayed locked past busy_timeout: the next turn tries again
                        logger.exception("could not renew the lease of session %s", session_id)

    def _renewed(self, session_id: str, started: float) -> None:
        """Under the lock: a renewal begun at ``started`` succeeded; the session's fence counts from it."""
        self._taken_at[session_id] = started
        running = self._running.get(session_id)
        if running is not None:
            running.fence.renewed(started)

    def _read_mail(self) -> None:
        """The mail thread: every POLL_SECONDS, apply the letters to each session driven here. Ends with
        the last lease (the next lease taken starts another)."""
        assert self._mailbox is not None and self._deliver is not None
        while True:
            with self._lock:
                if self._closed or not self._held:
                    self._mail_reader = None
                    return
                held = sorted(self._held)
            sessions = {mail.box_of(session_id): session_id for session_id in held}
            try:
                for letter in self._mailbox.unanswered(*sessions):  # one read for every session held
                    self._mailbox.answer(letter.id, self._deliver(sessions[letter.box], letter))
            except Exception:  # e.g. the log is locked or closing: the letters wait for the next turn
                logger.exception("could not read the mailboxes of the sessions driven here")
            time.sleep(mail.POLL_SECONDS)

    def _lease_lost(self, session_id: str, lost: LeaseLostError) -> None:
        """Under the lock. Another engine took the session (this process was paused past its lease, or
        its renewals failed): stop our actors, and let them write nothing more."""
        self._held.discard(session_id)
        self._taken_at.pop(session_id, None)
        self._epochs.pop(session_id, None)
        running = self._running.get(session_id)
        if running is None:
            logger.error("session %s: %s", session_id, lost)
            return
        # The first reason stands (e.g. the log refused an append), and is the one logged.
        holder = f"now held by {lost.holder}" if lost.holder else "no longer recorded"
        running.fence.lose(lost, f"the lease was lost ({holder}): it expired before this process renewed it "
                                 "(paused, or cut off)")
        running.session.stop(block=False)

    # -- stopping ------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every actor (contributions in flight stop at once), commit what is queued, release
        the leases. Returns within about ``close_timeout`` seconds: an actor that has not stopped
        by then (a provider ignoring abort) is logged and left behind."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            running = list(self._running.values())
        self._renewer_wake.set()
        deadline = time.monotonic() + self._close_timeout
        # Sessions first: a participant stopped under a running session would fail its round.
        stop_all([entry.session for entry in running], deadline)
        with self._lock:
            participants = [ref for entry in running for ref in entry.participants] + self._stopped_participants
        # A stopped session's participants are in both lists (its _forget moved them): each once.
        stop_all(list({ref.actor_urn: ref for ref in participants}.values()), deadline)
        self._scheduler.close()
        self._writer.close()  # from here on nothing of ours reaches the log: the leases can go
        with self._lock:
            for session_id in sorted(self._held):
                self._release_lease(session_id)
            renewer = self._renewer
        for thread in (renewer, self._mail_reader):
            if thread is not None:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
