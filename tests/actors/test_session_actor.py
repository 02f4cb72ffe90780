"""The session actor itself, built without an engine: fake participants (plain pykka actors), an
in-memory appender, a real scheduler. What it appends must be what its decider decided, in order."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future

import pykka
import pytest
from support import wait_until

from eventstore import AppendResult, NewEvent, RecordedEvent
from forge_actors.actors.messages import (
    CastVote,
    Contribute,
    ContributionErrored,
    ContributionSucceeded,
    DeltaReceived,
    Interrupt,
    Recover,
    RunRound,
)
from forge_actors.actors.scheduler import Scheduler
from forge_actors.actors.session import SessionActor
from forge_actors.core import audit
from forge_actors.core.decider import MALFORMED_STREAM
from forge_actors.core.errors import InvalidCommandError
from forge_actors.core.events import (
    ContentDelta,
    ContributionFailed,
    Event,
    ParticipantInfo,
    PromptSent,
    RoundCompleted,
    SessionCreated,
    SessionInterrupted,
    SessionResumed,
    SessionSettings,
    decode_event,
    encode_event,
    event_type,
)
from forge_actors.core.state import SessionState, rebuild
from forge_actors.providers.base import Usage
from forge_actors.providers.errors import ProtocolError
from forge_actors.providers.retry import RetryPolicy

TIMEOUT = 10  # seconds: a liveness bound, orders of magnitude above what a round takes here


class _Ticket:
    def __init__(self, result: AppendResult) -> None:
        self._result = result

    def wait(self, timeout: float | None = None) -> AppendResult:
        return self._result


class MemoryLog:
    """An appender that keeps the events in memory (and checks the versions as the log would)."""

    def __init__(self, events: list[Event]) -> None:
        self.events = list(events)
        self.lock = threading.Lock()

    def append(self, stream_id: str, events: list[NewEvent], expected_version: int) -> _Ticket:
        with self.lock:
            assert expected_version == len(self.events), (expected_version, len(self.events))
            first = len(self.events) + 1
            self.events += [decode_event(e.type, e.data) for e in events]
            return _Ticket(AppendResult(stream_id, first, len(self.events), first, len(self.events)))

    def of(self, kind: type) -> list:
        with self.lock:
            return [e for e in self.events if isinstance(e, kind)]


Answer = Callable[[Contribute, int], tuple[str, ...] | ContributionErrored]


class FakeParticipant(pykka.ThreadingActor):
    """Answers each Contribute with ``answer(message, n)`` (n: how many it was asked): deltas then
    success, or a failure."""

    def __init__(self, answer: Answer) -> None:
        super().__init__()
        self.answer = answer
        self.asked = 0

    def on_receive(self, message: object) -> None:
        if not isinstance(message, Contribute):
            return
        self.asked += 1
        answer = self.answer(message, self.asked)
        if isinstance(answer, ContributionErrored):
            message.reply_to.tell(answer)
            return
        for piece in answer:
            message.reply_to.tell(DeltaReceived(message.contribution_id, piece))
        message.reply_to.tell(ContributionSucceeded(message.contribution_id, "".join(answer), "stop", Usage(3, 2), 1.0))


def drafts(message: Contribute, asked: int) -> tuple[str, ...]:
    return ("A plan ", "in two ", "steps.")


def failing_first(message: Contribute, asked: int) -> tuple[str, ...] | ContributionErrored:
    if asked == 1:
        return ContributionErrored(message.contribution_id, "server_error", "503 busy", True)
    return drafts(message, asked)


def silent(message: Contribute, asked: int) -> tuple[str, ...]:
    return ()  # never answers: the deadline or an interrupt settles it


class Silent(FakeParticipant):
    def on_receive(self, message: object) -> None:
        if isinstance(message, Contribute):
            self.asked += 1


def created(*names: str, **settings: object) -> list[Event]:
    people = tuple(ParticipantInfo(n, provider="fake", model=n) for n in names)
    return [SessionCreated("s1", "t", "Design a TODO app API", SessionSettings(**settings), people)]  # type: ignore[arg-type]


@pytest.fixture
def scheduler() -> Iterator[Scheduler]:
    timers = Scheduler()
    yield timers
    timers.close()


def start(log: MemoryLog, participants: dict[str, pykka.ActorRef], scheduler: Scheduler) -> pykka.ActorRef:
    state = rebuild(log.events)
    return SessionActor.start(state=state, version=len(log.events), writer=log,  # type: ignore[arg-type]
                              participants=participants, scheduler=scheduler,
                              retry_policy=RetryPolicy(base_delay=0.01, max_delay=0.02))


def run_round(session: pykka.ActorRef, kind: str) -> object:
    done: Future = Future()
    session.ask(RunRound(kind, done), timeout=TIMEOUT)  # type: ignore[arg-type]
    return done.result(timeout=TIMEOUT)


def test_a_round_of_fake_participants_is_recorded_in_order_and_folds_to_the_actors_state(scheduler):
    log = MemoryLog(created("alice", "bob"))
    refs = {n: FakeParticipant.start(drafts) for n in ("alice", "bob")}
    session = start(log, refs, scheduler)
    try:
        round_state = run_round(session, "draft")
        assert round_state.status == "completed" and set(round_state.succeeded) == {"alice", "bob"}
        state: SessionState = session.proxy().state.get(timeout=TIMEOUT)
        assert state == rebuild(log.events)
        assert state.drafts == {"alice": "A plan in two steps.", "bob": "A plan in two steps."}
        assert len(log.of(ContentDelta)) == 6
        with pytest.raises(InvalidCommandError, match="no new synthesis"):
            session.ask(RunRound("convergence"), timeout=TIMEOUT)
        with pytest.raises(InvalidCommandError, match="no synthesis up for a vote"):
            session.ask(CastVote("hana", "AGREE"), timeout=TIMEOUT)
    finally:
        session.stop()


def test_a_failure_is_retried_after_its_backoff_and_counted_in_the_log(scheduler):
    log = MemoryLog(created("alice", "bob", max_retries=1))
    refs = {"alice": FakeParticipant.start(failing_first), "bob": FakeParticipant.start(drafts)}
    session = start(log, refs, scheduler)
    try:
        round_state = run_round(session, "draft")
        assert round_state.status == "completed"
        prompts = [(p.participant, p.attempt, p.purpose) for p in log.of(PromptSent)]
        assert ("alice", 2, "retry") in prompts and len(prompts) == 3
        assert [f.will_retry for f in log.of(ContributionFailed)] == [True]
    finally:
        session.stop()


def test_an_interrupt_abandons_what_streams_and_a_new_actor_resumes_it_from_the_log(scheduler):
    log = MemoryLog(created("alice", "bob", round_timeout_seconds=600))
    quiet = {n: Silent.start(silent) for n in ("alice", "bob")}
    session = start(log, quiet, scheduler)
    session.ask(RunRound("draft"), timeout=TIMEOUT)  # type: ignore[arg-type]
    session.ask(Interrupt("test"), timeout=TIMEOUT)
    assert log.of(SessionInterrupted)[0].abandoned == ("r1.alice.1", "r1.bob.1")

    refs = {n: FakeParticipant.start(drafts) for n in ("alice", "bob")}
    resumed = start(log, refs, scheduler)
    try:
        resumed.tell(Recover())
        assert wait_until(lambda: log.of(RoundCompleted), timeout=TIMEOUT)
        assert log.of(SessionResumed) == [SessionResumed(())]  # the interrupt recorded what it abandoned
        reruns = [(p.participant, p.attempt) for p in log.of(PromptSent) if p.purpose == "rerun"]
        assert sorted(reruns) == [("alice", 2), ("bob", 2)]
        assert log.of(RoundCompleted)[0].status == "completed"
        assert audit.verify([_recorded(v, e) for v, e in enumerate(log.events, start=1)], driven=True) == []
    finally:
        resumed.stop()


def _recorded(version: int, event: Event) -> RecordedEvent:
    return RecordedEvent(version, "s1", version, event_type(event), encode_event(event).decode(), 0, event)


def test_the_decider_knows_a_malformed_stream_by_the_providers_name_for_it():
    # the pure core may not import the providers: the name it retries once is checked here
    assert MALFORMED_STREAM == ProtocolError.kind
