"""SessionActor: one session's coordinator, a thin loop around its decider.

Every message becomes an input of ``core.decider.decide``, which reads nothing but the session's
state (the fold of its log) and answers with the events to record and the effects to carry out.
The actor appends the events (``_emit``: the one place that writes to the log) and folds them,
then carries out the effects: it tells a participant ``Contribute``, sets or cancels a timer,
cancels an attempt's token, gives whoever waits a round's or the session's outcome, stops. What
it keeps besides the state are handles only — the attempts' cancel tokens, the timers, the
futures of whoever waits, the participants' actor refs — never a fact a decision reads; so a
session resumed from its log decides as the live one would have.

It never blocks on a participant nor asks one anything: it tells ``Contribute`` and gets told
deltas, results and deadlines back. A streamed delta does not go through ``decide``: it becomes
its ``ContentDelta`` with one lookup of the attempt in flight (``decider.delta_event``), appended.

Durability (DESIGN.md): deltas, prompts and tool events go to the batching writer and commit within
a few milliseconds; a decision whose events end something — a failure, a reply waited for before
its re-ask, a round, the session, a cancel, an interrupt, a switch of provider — is committed (``ticket.wait()``) before its
effects are carried out and before the next decision. A completed reply is not waited for on its
own: the round's completion that follows from it is. A crash therefore loses at most the tail of
the attempts still in flight (their deltas, their completions), and ``Recover`` runs those again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import msgspec
import pykka

from eventstore import Appender, EventStoreError
from forge_actors.actors.messages import (
    AddHumanDraft,
    CancelSession,
    CancelToken,
    CastVote,
    Contribute,
    ContributionErrored,
    ContributionSucceeded,
    DeadlinePassed,
    Deliberate,
    DeltaReceived,
    Embed,
    Embedded,
    EmbeddingFailed,
    HumansWaitOver,
    Interrupt,
    Recover,
    RetryDue,
    RunRound,
    SimilaritiesMeasured,
    SwitchProvider,
    ToolCallFinished,
    ToolCallStarted,
    UseProvider,
)
from forge_actors.actors.scheduler import ScheduledTell, Scheduler
from forge_actors.core import decider, rounds, similarity
from forge_actors.core.decider import Decision, Mode, ToolContext
from forge_actors.core.errors import SessionStoppedError
from forge_actors.core.events import (
    Event,
    HumanDraftAdded,
    SimilarityMeasured,
    TokenUsage,
    VoteRecorded,
)
from forge_actors.core.records import to_records
from forge_actors.core.state import SessionState, apply
from forge_actors.providers import toolcalls
from forge_actors.providers.base import JsonSchema, LlmRequest, Message, ToolDefinition
from forge_actors.providers.retry import RetryPolicy
from forge_actors.tools import REGISTRY as TOOL_REGISTRY

logger = logging.getLogger(__name__)


def tool_definitions(names: tuple[str, ...]) -> tuple[ToolDefinition, ...]:
    """The provider-level definitions of the named tools (names this version does not know are skipped)."""
    return tuple(ToolDefinition(tool.name, tool.description, dict(tool.parameters))
                 for tool in (TOOL_REGISTRY.get(name) for name in names) if tool is not None)


def tool_context(state: SessionState) -> ToolContext:
    """What the decider is told of its participants' tools: those this version knows, and the section
    that offers them as text (rendered by the providers layer, which the pure core may not import)."""
    names: dict[str, tuple[str, ...]] = {}
    sections: dict[str, str] = {}
    for info in state.participants.values():
        definitions = tool_definitions(info.tools)
        if definitions:
            names[info.name] = tuple(d.name for d in definitions)
            sections[info.name] = toolcalls.render_tool_context(definitions)
    return ToolContext(names, sections)


class _RetryAfter(msgspec.Struct, frozen=True):
    """What ``RetryPolicy.delay`` reads of a failure: the wait the server asked for, if any."""

    retry_after: float | None


class SessionActor(pykka.ThreadingActor):
    def __init__(
        self,
        *,
        state: SessionState,
        version: int,
        writer: Appender,
        participants: dict[str, pykka.ActorRef],
        scheduler: Scheduler,
        retry_policy: RetryPolicy,
        on_stopped: Callable[[str, str], None] = lambda session_id, urn: None,
        embedder: str | None = None,
        recorded_similarities: tuple[SimilarityMeasured, ...] | None = None,
    ) -> None:
        super().__init__()
        self.state = state
        self.session_id = state.session_id
        self._version = version
        self._writer = writer
        self._participants = participants
        self._scheduler = scheduler
        self._retry_policy = retry_policy
        self._on_stopped = on_stopped
        self._mode = Mode()
        self._tools = tool_context(state)
        # handles only: what the decider decided lives in the log
        self._tokens: dict[str, CancelToken] = {}
        self._timers: dict[Any, ScheduledTell] = {}
        self._round_waiters: dict[int, list[Future]] = {}
        self._plan_done: Future | None = None
        # Similarities: measured with the embeddings of ``embedder``'s provider (the first participant
        # whose provider offers them), else lexically; a re-run's come from its recording.
        self._embedder = embedder
        self._recorded_similarities = recorded_similarities
        self._measuring: dict[str, tuple[rounds.Comparison, ...]] = {}
        self._measures = 0
        self._shut = False

    # -- lifecycle --------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        handler = _HANDLERS.get(type(message))
        if handler is None:
            raise TypeError(f"SessionActor got an unknown message: {type(message).__name__}")
        try:
            return handler(self, message)
        except EventStoreError as exc:
            if type(message) not in _TOLD_ONLY:
                raise  # a caller waits for the answer: it gets the error (and the actor stops, see _emit)
            # The log refused an append (full disk, damaged file, the lease fenced off): stop here, with
            # one line (the store's or the fence's says why); a told message has nobody to hand it to.
            logger.info("session %s stops: the log took no more of its events (%s)", self.session_id, exc)
            self._shut_down(exc)
            self.stop()
            return None

    def on_stop(self) -> None:
        self._shut_down(SessionStoppedError(f"session {self.session_id} stopped before the round completed"))

    def on_failure(self, exception_type: type, exception_value: BaseException, traceback: object) -> None:
        if isinstance(exception_value, EventStoreError):
            # The log itself failed (full disk, damaged file...): an ending could not be written
            # either, and the session has not failed; it stops, and resume finishes it later.
            # The engine's followers learn why from the writer.
            logger.info("session %s stops: the log failed (%s)", self.session_id, exception_value)
            self._shut_down(exception_value)
            return
        # A bug. Record why, if the log still takes it, so that readers waiting for the end
        # are not left hanging.
        try:
            decision = decider.decide(self.state, self._mode,
                                      decider.InternalFailure(f"{exception_type.__name__}: {exception_value}"))
            self._emit(*decision.events, durable=decision.durable)
        except Exception:
            logger.exception("session %s: recording its failure failed too", self.session_id)
        self._shut_down(SessionStoppedError(f"session {self.session_id} failed: {exception_value!r}"))

    def _shut_down(self, error: Exception) -> None:
        if self._shut:
            return
        self._shut = True
        for token in self._tokens.values():
            token.cancel()
        self._stop_timers()
        for waiters in self._round_waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(error)
        if self._plan_done is not None and not self._plan_done.done():
            self._plan_done.set_exception(error)
        for ref in self._participants.values():
            ref.stop(block=False)
        self._on_stopped(self.session_id, self.actor_urn)

    # -- emitting events --------------------------------------------------------------------

    def _emit(self, *events: Event, durable: bool = False) -> None:
        """Append events (in order, after everything emitted before) and fold them into the state.

        ``expected_version`` makes a second process writing the same session fail
        loudly instead of interleaving with us.
        """
        ticket = self._writer.append(
            self.session_id,
            to_records(events),
            expected_version=self._version,
        )
        self._version += len(events)
        for event in events:
            self.state = apply(self.state, event)
        if durable:
            try:
                ticket.wait()
            except EventStoreError:
                # The log no longer takes this session's events (full disk, damaged file): its
                # state here is ahead of the log, so stop; resume continues from what was written.
                self.stop()
                raise

    # -- deciding and carrying out --------------------------------------------------------------

    def _decide(self, given: decider.Input) -> Decision:
        """Decide on ``given``, record what was decided, then carry out its effects."""
        decision = decider.decide(self.state, self._mode, given, self._tools)
        self._mode = decision.mode
        if decision.events:
            self._emit(*decision.events, durable=decision.durable)
        for effect in decision.effects:
            self._carry_out(effect)
        return decision

    def _carry_out(self, effect: decider.AnyEffect) -> None:
        if isinstance(effect, decider.Ask):
            self._ask(effect)
        elif isinstance(effect, decider.StartTimer):
            self._timers[effect.due] = self._scheduler.tell_later(effect.seconds, self.actor_ref, effect.due)
        elif isinstance(effect, decider.StartRetryTimer):
            delay = self._retry_policy.delay(effect.retry, _RetryAfter(effect.retry_after))  # type: ignore[arg-type]
            self._timers[effect.due] = self._scheduler.tell_later(delay, self.actor_ref, effect.due)
        elif isinstance(effect, decider.CancelTimer):
            timer = self._timers.pop(effect.due, None)
            if timer is not None:
                timer.cancel()
        elif isinstance(effect, decider.CancelContribution):
            token = self._tokens.pop(effect.contribution_id, None)
            if token is not None:
                token.cancel()
        elif isinstance(effect, decider.RoundOver):
            self._stop_timers()
            round_state = self.state.round_state(effect.round)
            for waiter in self._round_waiters.pop(effect.round, []):
                if not waiter.done():
                    waiter.set_result(round_state)
        elif isinstance(effect, decider.Measure):
            self._measure(effect.comparisons)
        elif isinstance(effect, decider.PlanDone):
            if self._plan_done is not None and not self._plan_done.done():
                self._plan_done.set_result(self.state)
        elif isinstance(effect, decider.Stop):
            self.stop()

    def _ask(self, ask: decider.Ask) -> None:
        token = CancelToken()
        self._tokens[ask.contribution_id] = token
        request = LlmRequest(
            messages=tuple(Message(m.role, m.content) for m in ask.messages),
            temperature=ask.temperature,
            max_tokens=ask.max_tokens,
            response_schema=JsonSchema(ask.response_schema, ask.schema) if ask.response_schema and ask.schema else None,
            tools=tool_definitions(ask.tools) if ask.tools else (),
        )
        self._participants[ask.participant].tell(Contribute(ask.contribution_id, request, token, self.actor_ref,
                                                            ask.tool_mode, ask.max_chars, ask.stream))

    # -- measuring similarities ----------------------------------------------------------------

    def _measure(self, comparisons: tuple[rounds.Comparison, ...]) -> None:
        """Measure as the session can (the decider records what comes back, as ``SimilaritiesMeasured``)."""
        if any(c in waiting for waiting in self._measuring.values() for c in comparisons):
            return  # asked for again while being measured: one measure, one record
        if self._recorded_similarities is not None:
            self.actor_ref.tell(SimilaritiesMeasured(tuple(_from_recording(self._recorded_similarities, c)
                                                           for c in comparisons)))
        elif self._embedder is not None and self._embedder in self._participants:
            self._measures += 1
            request_id = f"m{self._measures}"
            self._measuring[request_id] = comparisons
            self._tokens[request_id] = token = CancelToken()  # the session stopping aborts the call
            texts = tuple(dict.fromkeys(text for c in comparisons for text in (c.first, c.second)))
            self._participants[self._embedder].tell(Embed(request_id, texts, self.actor_ref, token))
        else:
            self.actor_ref.tell(SimilaritiesMeasured(tuple(
                _lexically(c, "no participant's provider offers embeddings") for c in comparisons)))

    def _on_embedded(self, message: Embedded) -> None:
        self._tokens.pop(message.request_id, None)
        comparisons = self._measuring.pop(message.request_id, None)
        if comparisons is None:
            return
        texts = list(dict.fromkeys(text for c in comparisons for text in (c.first, c.second)))
        try:
            vectors = dict(zip(texts, message.vectors, strict=True))
            measured = tuple(SimilarityMeasured(c.round, c.compared_with_round,
                                                similarity.cosine(vectors[c.first], vectors[c.second]), "embedding",
                                                message.model, c.pair) for c in comparisons)
        except ValueError as wrong:  # not one vector per text, or of different lengths: measured another way
            why = f"the embeddings of {self._embedder}'s provider cannot be compared ({wrong})"
            measured = tuple(_lexically(c, why) for c in comparisons)
        self._decide(decider.SimilaritiesMeasured(measured))

    def _on_embedding_failed(self, message: EmbeddingFailed) -> None:
        self._tokens.pop(message.request_id, None)
        comparisons = self._measuring.pop(message.request_id, None)
        if comparisons is None:
            return
        why = f"the embeddings of {self._embedder}'s provider failed ({message.error_kind}: {message.message})"
        self._decide(decider.SimilaritiesMeasured(tuple(_lexically(c, why[:500]) for c in comparisons)))

    def _stop_timers(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    # -- messages -------------------------------------------------------------------------------

    def _on_delta(self, message: DeltaReceived) -> None:
        # the hot path: one lookup, one append (no decision: a delta decides nothing)
        event = decider.delta_event(self.state, message.contribution_id, message.text)
        if event is not None:  # None: from an attempt already timed out or cancelled
            self._emit(event)
            if decider.spending_check_due(self.state, event):  # a session with a budget, every few KB
                self._decide(decider.CheckSpending())

    def _on_tool_started(self, message: ToolCallStarted) -> None:
        call = message.call
        self._decide(decider.ToolCallStarted(message.contribution_id, message.turn, call.id, call.name,
                                             dict(call.arguments), call.error))

    def _on_tool_finished(self, message: ToolCallFinished) -> None:
        result = message.result
        self._decide(decider.ToolCallFinished(message.contribution_id, message.call_id, message.tool, result.output,
                                              result.truncated, result.error, result.duration_ms))

    def _on_succeeded(self, message: ContributionSucceeded) -> None:
        self._tokens.pop(message.contribution_id, None)
        self._decide(decider.Replied(
            message.contribution_id, message.content, message.finish_reason,
            TokenUsage(message.usage.input_tokens, message.usage.output_tokens), message.latency_ms,
            message.served_by, message.fallback, message.limit, message.evidence, message.evidence_kind,
            message.answered_from_body,
        ))

    def _on_errored(self, message: ContributionErrored) -> None:
        self._tokens.pop(message.contribution_id, None)
        self._decide(decider.ReplyFailed(message.contribution_id, message.error_kind, message.message,
                                         message.retryable, message.retry_after, message.limit))

    def _on_input(self, message: decider.Input) -> None:
        """Timers, and the commands that answer nothing."""
        self._decide(message)

    def _on_deliberate(self, message: Deliberate) -> None:
        if message.done is not None and not self._mode.auto:
            self._plan_done = message.done
        self._decide(decider.StartDeliberating())

    def _on_run_round(self, message: RunRound) -> int:
        self._decide(decider.StartRound(message.kind))
        current = self.state.current_round
        assert current is not None
        if message.done is not None:
            if current.status == "running":
                self._round_waiters.setdefault(current.round, []).append(message.done)
            else:  # completed at once (nobody to ask)
                message.done.set_result(current)
        return current.round

    def _on_add_human_draft(self, message: AddHumanDraft) -> int:
        decision = self._decide(message)
        return next(e.round for e in decision.events if isinstance(e, HumanDraftAdded))

    def _on_cast_vote(self, message: CastVote) -> int:
        decision = self._decide(message)
        return next(e.round for e in decision.events if isinstance(e, VoteRecorded) and e.by_human)

    def _on_command(self, message: CancelSession | Interrupt) -> SessionState:
        self._decide(message)
        return self.state

    def _on_switch_provider(self, message: SwitchProvider) -> SessionState:
        self._decide(decider.SwitchProvider(message.participant, message.spec, message.model, message.replies,
                                            message.tool_mode, message.price))
        self._participants[message.participant].tell(UseProvider(message.provider))
        return self.state


def _lexically(comparison: rounds.Comparison, why: str) -> SimilarityMeasured:
    """The comparison measured by the offline lexical measure, saying why no embedding was used."""
    value = similarity.lexical_similarity(comparison.first, comparison.second)
    return SimilarityMeasured(comparison.round, comparison.compared_with_round, value, "lexical", "", comparison.pair,
                              why)


def _from_recording(recorded: tuple[SimilarityMeasured, ...], comparison: rounds.Comparison) -> SimilarityMeasured:
    """A re-run's measure: the original's, as recorded (no embedding call); lexical if it holds none."""
    key = (comparison.round, comparison.compared_with_round, comparison.pair)
    for measured in recorded:
        if (measured.round, measured.compared_with_round, measured.pair) == key:
            return measured
    return _lexically(comparison, "the re-run's recording holds no measure of it")

#: Messages that are told, never asked: nobody waits for their answer.
_TOLD_ONLY = frozenset({DeltaReceived, ToolCallStarted, ToolCallFinished, ContributionSucceeded, ContributionErrored,
                        DeadlinePassed, HumansWaitOver, RetryDue, Recover, Deliberate, Embedded,
                        EmbeddingFailed, SimilaritiesMeasured})

_HANDLERS: dict[type, Callable[[SessionActor, Any], Any]] = {
    DeltaReceived: SessionActor._on_delta,
    ToolCallStarted: SessionActor._on_tool_started,
    ToolCallFinished: SessionActor._on_tool_finished,
    ContributionSucceeded: SessionActor._on_succeeded,
    ContributionErrored: SessionActor._on_errored,
    Embedded: SessionActor._on_embedded,
    EmbeddingFailed: SessionActor._on_embedding_failed,
    SimilaritiesMeasured: SessionActor._on_input,
    DeadlinePassed: SessionActor._on_input,
    HumansWaitOver: SessionActor._on_input,
    RetryDue: SessionActor._on_input,
    Recover: SessionActor._on_input,
    Deliberate: SessionActor._on_deliberate,
    RunRound: SessionActor._on_run_round,
    AddHumanDraft: SessionActor._on_add_human_draft,
    CastVote: SessionActor._on_cast_vote,
    CancelSession: SessionActor._on_command,
    Interrupt: SessionActor._on_command,
    SwitchProvider: SessionActor._on_switch_provider,
}
