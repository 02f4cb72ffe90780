"""AsyncForge: the ``Forge`` calls as coroutines, for services that run an asyncio event loop.

::

    async with AsyncForge("forge.db") as forge:
        session_id = await forge.create_session("Design a TODO app API", ["mock:alice", "mock:bob"])
        async for recorded in forge.deliberate(session_id):   # committed events, live
            print(recorded.position, recorded.event)

It wraps one ``Forge`` (the same engine, the same errors) and adds no thread of its own. The
engine's calls that block, all short (a log read or append, asking an actor; see
``benchmarks/async_front_door.py`` for their measured times), run in the loop's default executor;
the loop itself never waits on the engine. Following a session holds no thread either: its log
subscription's wake-up (``Subscription.on_wake``, called by the thread that commits) is passed to
the loop with ``call_soon_threadsafe``, and the follower then takes what was committed.

Cancelling the task that iterates ``deliberate`` stops the watching only: the session goes on
(``await forge.cancel(session_id)`` ends it). Close an iterator you leave early
(``contextlib.aclosing``), or its subscription stays open until it is garbage-collected.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from typing import Any, TypeVar

from eventstore import RecordedEvent
from forge_actors.core.compare import Comparison
from forge_actors.core.errors import SessionStoppedError
from forge_actors.core.events import Event, RoundKind, SessionEnded, VoteChoice
from forge_actors.core.state import RoundState, SessionState
from forge_actors.core.usage import UsageReport
from forge_actors.engine import live
from forge_actors.engine.config import ForgeConfig, ParticipantSpec
from forge_actors.engine.forge import Forge
from forge_actors.engine.summaries import SessionSummary

T = TypeVar("T")

#: Seconds of quiet after which a follower looks whether the session stopped without ending, and
#: reads the log for other processes' commits (the blocking follower's ``live.STOP_CHECK_SECONDS``).
QUIET_CHECK_SECONDS = live.STOP_CHECK_SECONDS


def _through_the_end(batch: list[RecordedEvent]) -> list[RecordedEvent] | None:
    """The batch up to its SessionEnded, None when it has none."""
    for index, recorded in enumerate(batch):
        if isinstance(recorded.event, SessionEnded):
            return batch[:index + 1]
    return None


class AsyncForge:
    """The deliberation engine over one event log, for asyncio. Open it with ``async with`` (or
    ``await open()``, then ``await close()``); ``forge`` is the blocking engine inside."""

    def __init__(self, db_path: str | None = None, config: ForgeConfig | None = None, *,
                 forge: Forge | None = None, **options: Any) -> None:
        """``db_path``, ``config`` and ``options`` are ``Forge``'s (opened by ``open``); or give an
        open ``forge`` to share it (``close`` then closes it too)."""
        if (db_path is None) == (forge is None):
            raise TypeError("give the log's path (db_path) or an open Forge (forge=), not both")
        self._opening = (db_path, config, options)
        self._forge = forge

    @property
    def forge(self) -> Forge:
        """The blocking engine this one wraps (for a call not offered here: run it in an executor)."""
        if self._forge is None:
            raise RuntimeError("the engine is not open yet: use `async with AsyncForge(path)` or `await open()`")
        return self._forge

    async def open(self) -> AsyncForge:
        """Open the log (a no-op when built around an open ``Forge``)."""
        if self._forge is None:
            db_path, config, options = self._opening
            self._forge = await self._run(Forge, db_path, config, **options)
        return self

    async def close(self) -> None:
        """``Forge.close``: stop the actors (sessions stay resumable), release the leases, close the
        log; followers still iterating end with SessionStoppedError."""
        if self._forge is not None:
            await self._run(self._forge.close)

    async def __aenter__(self) -> AsyncForge:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- commands ---------------------------------------------------------------------------------

    async def create_session(self, goal: str,
                             participants: Iterable[str | ParticipantSpec | Mapping[str, Any]] | None = None,
                             title: str | None = None, **options: Any) -> str:
        """``Forge.create_session``: record a new session (``start=True``: and start it); its id."""
        if participants is not None:
            participants = list(participants)  # read here, not in another thread
        return await self._run(self.forge.create_session, goal, participants, title, **options)

    async def start(self, session_id: str) -> bool:
        """``Forge.start``: deliberate in the background; False when the session has ended."""
        return await self._run(self.forge.start, session_id)

    def deliberate(self, session_id: str, from_position: int = 0) -> AsyncGenerator[RecordedEvent, None]:
        """The session's committed events from ``from_position`` on, live, until SessionEnded; the
        deliberation is started (or resumed) when iterating begins, and the first ``__anext__``
        raises what ``Forge.deliberate`` raises (SessionNotFoundError, SessionBusyError...)."""
        return self._events(self._deliberate_batches(session_id, from_position))

    def deliberate_batches(self, session_id: str, from_position: int = 0) -> AsyncGenerator[list[RecordedEvent], None]:
        """``deliberate`` a batch at a time: the events that were ready together (for a relay that
        sends each batch in one write rather than one write per event)."""
        return self._deliberate_batches(session_id, from_position)

    async def _deliberate_batches(self, session_id: str,
                                  from_position: int) -> AsyncGenerator[list[RecordedEvent], None]:
        await self.start(session_id)
        async with contextlib.aclosing(self._follow_batches(session_id, from_position)) as batches:
            async for batch in batches:
                yield batch

    async def resume(self, session_id: str) -> AsyncGenerator[RecordedEvent, None]:
        """``Forge.resume``: continue a session a stopped process left unfinished; the events from now on."""
        from_position = await self._run(self.forge.last_position)
        async with contextlib.aclosing(self.deliberate(session_id, from_position)) as events:
            async for recorded in events:
                yield recorded

    def follow(self, session_id: str, from_position: int = 0) -> AsyncGenerator[RecordedEvent, None]:
        """The events of a session this engine runs, from ``from_position`` on, until SessionEnded,
        without starting it. Raises SessionStoppedError when the session stops short (the engine
        closed, an interrupt, a log that refused its appends: the error says which)."""
        return self._events(self._follow_batches(session_id, from_position))

    @staticmethod
    async def _events(batches: AsyncGenerator[list[RecordedEvent], None]) -> AsyncGenerator[RecordedEvent, None]:
        async with contextlib.aclosing(batches):
            async for batch in batches:
                for recorded in batch:
                    yield recorded

    async def _follow_batches(self, session_id: str,
                              from_position: int) -> AsyncGenerator[list[RecordedEvent], None]:
        watch = await self._run(self.forge._watch, session_id, from_position)
        if watch is None:  # it had ended by then
            return
        subscription = watch.subscription
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()

        def wake() -> None:  # in the thread that committed: hand over to the loop, nothing more
            try:
                loop.call_soon_threadsafe(woken.set)
            except RuntimeError:  # the loop is closed: nobody waits for this follower any more
                subscription.on_wake(None)

        subscription.on_wake(wake)
        try:
            while True:
                woken.clear()
                batch = await self._run(subscription.poll_batch, 0)
                if batch:
                    ended = _through_the_end(batch)
                    yield ended or batch
                    if ended:
                        return
                    continue
                if subscription.closed:
                    raise SessionStoppedError("the engine was closed while following the session")
                try:
                    async with asyncio.timeout(QUIET_CHECK_SECONDS):
                        await woken.wait()
                    continue
                except TimeoutError:  # quiet for a while: look whether it stopped (below)
                    pass
                if not watch.is_running():
                    async for batch in self._after_stop(session_id, watch):
                        yield batch
                    return
                subscription.nudge()  # a quiet spell: read the log for other processes' commits
        finally:
            subscription.on_wake(None)
            subscription.close()

    async def _after_stop(self, session_id: str, watch: live.Watch) -> AsyncGenerator[list[RecordedEvent], None]:
        """The session's actor stopped: what it wrote is readable now; then it ended, or stopped short."""
        while batch := await self._run(watch.subscription.poll_batch, 0):
            ended = _through_the_end(batch)
            yield ended or batch
            if ended:
                return
        if await self._run(watch.has_ended):
            return
        lost = watch.write_failure()
        if lost is not None:
            raise live.write_failure_for(lost, session_id)
        raise SessionStoppedError(f"session {session_id} stopped before it ended; its log is intact: resume it")

    async def run_round(self, session_id: str, kind: RoundKind) -> RoundState:
        """``Forge.run_round``: one round of ``kind``; how it went, once it is over."""
        _number, done = await self._run(self.forge.start_round, session_id, kind)
        return await asyncio.wrap_future(done)

    async def cancel(self, session_id: str, reason: str = "cancelled by the user", *,
                     trusted: bool = True) -> SessionState:
        """``Forge.cancel``: end the session as cancelled (its followers get SessionEnded)."""
        return await self._run(self.forge.cancel, session_id, reason, trusted=trusted)

    async def interrupt(self, session_id: str, reason: str = "interrupted by the user") -> SessionState:
        """``Forge.interrupt``: stop running it here without ending it (``resume`` continues it)."""
        return await self._run(self.forge.interrupt, session_id, reason)

    async def add_human_draft(self, session_id: str, author: str, content: str, *, trusted: bool = True) -> int:
        """``Forge.add_human_draft``. For a session another engine drives, this waits (in an executor
        thread, up to the engine's ``mail_timeout``) for that engine's answer."""
        return await self._run(self.forge.add_human_draft, session_id, author, content, trusted=trusted)

    async def cast_vote(self, session_id: str, voter: str, vote: VoteChoice, reasons: Iterable[str] = (),
                        concerns: Iterable[str] = (), *, trusted: bool = True) -> int:
        """``Forge.cast_vote`` (as ``add_human_draft`` for a session another engine drives)."""
        return await self._run(self.forge.cast_vote, session_id, voter, vote, tuple(reasons), tuple(concerns),
                               trusted=trusted)

    async def rerun(self, session_id: str, *, wait: bool = True) -> str:
        """``Forge.rerun``: the new session's id, once it has run (``wait=False``: at once)."""
        new_id = await self._run(self.forge.rerun, session_id, wait=False)
        if wait:
            async for _ in self.follow(new_id):
                pass
        return new_id

    async def fork(self, session_id: str, at_round: int, participants: Iterable[Any] = (), *,
                   drop: Iterable[str] = (), settings: Mapping[str, Any] | None = None,
                   constraints: Iterable[str] = (), humans: Iterable[str] = (), trusted: bool = True,
                   start: bool = False, **overrides: Any) -> str:
        """``Forge.fork``: the new session's id (with ``start``, deliberating; follow it with ``deliberate``
        or ``follow``)."""
        return await self._run(self.forge.fork, session_id, at_round, list(participants), drop=list(drop),
                               settings=settings, constraints=list(constraints), humans=list(humans),
                               trusted=trusted, start=start, **overrides)

    async def compare(self, a: str, b: str) -> Comparison:
        """``Forge.compare``: two sessions side by side."""
        return await self._run(self.forge.compare, a, b)

    # -- queries ----------------------------------------------------------------------------------

    async def state(self, session_id: str) -> SessionState:
        return await self._run(self.forge.state, session_id)

    async def events(self, session_id: str) -> list[Event]:
        return await self._run(self.forge.events, session_id)

    async def records(self, session_id: str) -> list[RecordedEvent]:
        return await self._run(self.forge.records, session_id)

    async def usage(self, session_id: str) -> UsageReport:
        return await self._run(self.forge.usage, session_id)

    async def sessions(self) -> list[str]:
        return await self._run(self.forge.sessions)

    async def summaries(self) -> list[SessionSummary]:
        return await self._run(self.forge.summaries)

    @staticmethod
    async def _run(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A short blocking engine call, in the loop's default executor."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(call, *args, **kwargs))

    def __repr__(self) -> str:
        return f"AsyncForge({self._forge!r})" if self._forge is not None else f"AsyncForge({self._opening[0]!r})"
