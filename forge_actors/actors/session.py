"""SessionActor: one session's coordinator. Commands and replies in, events out.

It owns the session's state, which is nothing but the fold of the events it has
emitted (``state.apply``): every decision reads that state through the pure
functions of ``rounds``, and every outcome becomes an event before anything else
happens. It never blocks on a participant nor asks one anything: it tells
``Contribute`` and gets told deltas, results and deadlines back.

Durability (DESIGN.md): deltas go to the batching writer and commit within a few
milliseconds; an event that ends something — a contribution, its parsed critiques
or vote, a round, the session — is waited for (``ticket.wait()``) before the actor
takes its next decision. A crash therefore loses at most the tail of deltas of
contributions still in flight, and ``Recover`` runs those again.
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
    HumansWaitOver,
    Interrupt,
    Recover,
    RetryDue,
    RunRound,
    SwitchProvider,
    ToolCallFinished,
    ToolCallStarted,
    UseProvider,
)
from forge_actors.actors.scheduler import ScheduledTell, Scheduler
from forge_actors.core import rounds
from forge_actors.core.errors import InvalidCommandError, SessionStoppedError
from forge_actors.core.events import (
    ContentDelta,
    ContributionAbandoned,
    ContributionCompleted,
    ContributionFailed,
    Event,
    HumanDraftAdded,
    ParticipantAdded,
    ParticipantInfo,
    PromptMessage,
    PromptSent,
    ProviderLimitFound,
    ProviderSwitched,
    RoundCompleted,
    RoundKind,
    RoundStarted,
    SessionEnded,
    SessionInterrupted,
    SessionResumed,
    TokenUsage,
    ToolCalled,
    ToolResult,
    VoteRecorded,
)
from forge_actors.core.formats import ParsedCritique
from forge_actors.core.records import to_records
from forge_actors.core.state import SessionState, apply
from forge_actors.providers import toolcalls
from forge_actors.providers.base import JsonSchema, LlmRequest, Message, ToolDefinition
from forge_actors.providers.errors import ProtocolError, failure_signature
from forge_actors.providers.retry import RetryPolicy
from forge_actors.tools import REGISTRY as TOOL_REGISTRY

logger = logging.getLogger(__name__)

#: The rounds whose contributions may call tools: the votes of a convergence round are read as given.
TOOL_ROUNDS = frozenset({"draft", "critique", "synthesis"})
#: The rounds that wait for the session's humans (human_wait_seconds): their drafts, their votes.
HUMAN_ROUNDS = frozenset({"draft", "convergence"})
#: Told to a participant offered tools natively (the text protocol's section says it itself).
NATIVE_TOOLS_NOTE = ("You can call tools to read the workspace this deliberation is about. Check claims "
                     "against it, and cite what you found (file and line) in your answer.")


def tool_definitions(names: tuple[str, ...]) -> tuple[ToolDefinition, ...]:
    """The provider-level definitions of the named tools (names this version does not know are skipped)."""
    return tuple(ToolDefinition(tool.name, tool.description, dict(tool.parameters))
                 for tool in (TOOL_REGISTRY.get(name) for name in names) if tool is not None)


class _Attempt(msgspec.Struct):
    """A contribution attempt in flight (ephemeral: the log has its PromptSent)."""

    contribution_id: str
    participant: str
    attempt: int
    prompt: rounds.RoundPrompt
    purpose: str
    token: CancelToken
    #: Critique rounds: what the first reply gave, kept while its re-ask runs.
    first_parse: dict[str, ParsedCritique] | None = None
    reasked: bool = False


class _RoundRun(msgspec.Struct):
    """The round in progress (ephemeral bookkeeping; its facts are in the log)."""

    number: int
    kind: RoundKind
    participants: tuple[str, ...]
    deadline: ScheduledTell | None = None
    last_attempt: dict[str, int] = {}
    retries: dict[str, int] = {}
    #: Participants waiting out a retry backoff: the attempt that failed, and its timer.
    waiting: dict[str, tuple[_Attempt, ScheduledTell]] = {}
    waiters: list[Future] = []
    #: Waiting for the session's humans (human_wait_seconds): its timer, and whether it has run out.
    human_timer: ScheduledTell | None = None
    humans_waited: bool = False


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
        self._active: dict[str, _Attempt] = {}
        self._round: _RoundRun | None = None
        self._auto = False
        self._plan: list[RoundKind] | None = None
        self._cancel_reason: str | None = None
        self._plan_done: Future | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        handler = _HANDLERS.get(type(message))
        if handler is None:
            raise TypeError(f"SessionActor got an unknown message: {type(message).__name__}")
        return handler(self, message)

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
            if not self.state.ended:
                self._cancel_in_flight("internal", f"the session actor failed: {exception_value!r}")
                self._emit(SessionEnded("failed", f"{rounds.INTERNAL_ERROR}: {exception_type.__name__}: "
                                                  f"{exception_value}"), durable=True)
        except Exception:
            logger.exception("session %s: recording its failure failed too", self.session_id)
        self._shut_down(SessionStoppedError(f"session {self.session_id} failed: {exception_value!r}"))

    def _shut_down(self, error: Exception) -> None:
        for attempt in self._active.values():
            attempt.token.cancel()
        if self._round is not None:
            self._stop_timers(self._round)
            for waiter in self._round.waiters:
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

    # -- commands -----------------------------------------------------------------------------

    def _on_recover(self, message: Recover) -> None:
        abandoned = tuple(self.state.streaming)
        events: list[Event] = [
            ContributionAbandoned(c.contribution_id, c.participant, c.round, c.attempt,
                                  "in flight when the process stopped; run again on resume")
            for c in self.state.streaming.values()
        ]
        self._emit(*events, SessionResumed(abandoned), durable=True)
        current = self.state.current_round
        if current is not None and current.status == "running":
            self._continue_round(current.round)
        else:  # stopped between rounds: an ending the rules call for may not be recorded yet
            self._advance()

    def _on_deliberate(self, message: Deliberate) -> None:
        if self._auto:
            return  # already deliberating: a second caller only follows along
        self._auto = True
        if message.plan is not None:
            self._plan = list(message.plan)
            self._cancel_reason = message.cancel_reason
            self._plan_done = message.done
        if self._round is None:
            self._advance()

    def _on_run_round(self, message: RunRound) -> int:
        problem = rounds.why_not(self.state, message.kind)
        if problem is None and self._round is not None:
            problem = f"round {self._round.number} ({self._round.kind}) is still running"
        if problem is not None:
            raise InvalidCommandError(problem)
        self._start_round(message.kind)
        number = self.state.current_round.round  # type: ignore[union-attr]
        if message.done is not None:
            if self._round is not None and self._round.number == number:
                self._round.waiters.append(message.done)
            else:  # completed at once (nobody to ask)
                message.done.set_result(self.state.round_state(number))
        return number

    def _on_add_human_draft(self, message: AddHumanDraft) -> int:
        state = self.state
        _refuse_human_input(state)
        closed = rounds.drafts_closed(state)
        if closed:
            raise InvalidCommandError(closed)
        if not message.content.strip():
            raise InvalidCommandError("the draft is empty")
        events = self._human_joins(message.author)
        current = state.current_round
        round_number = current.round if current is not None and current.kind == "draft" else 0
        self._emit(*events, HumanDraftAdded(round_number, message.author, message.content), durable=True)
        self._check_round_complete()  # the round may have been waiting for this human
        return round_number

    def _on_cast_vote(self, message: CastVote) -> int:
        state = self.state
        _refuse_human_input(state)
        if message.vote not in ("AGREE", "DISAGREE", "ABSTAIN"):
            raise InvalidCommandError(f"a vote is AGREE, DISAGREE or ABSTAIN, not {message.vote!r}")
        round_number = rounds.human_vote_round(state)  # the vote in progress, else the one that comes next
        if round_number is None:
            raise InvalidCommandError("there is no synthesis up for a vote: run a synthesis round first")
        events = self._human_joins(message.voter)
        self._emit(*events, VoteRecorded(round_number, message.voter, message.vote, message.reasons,
                                         message.concerns, by_human=True), durable=True)
        self._check_round_complete()  # the round may have been waiting for this human
        return round_number

    def _human_joins(self, name: str) -> list[Event]:
        info = self.state.participants.get(name)
        if info is None:
            return [ParticipantAdded(ParticipantInfo(name, kind="human"))]
        if info.kind != "human":
            raise InvalidCommandError(f"{name} is an AI participant; humans need a name of their own")
        return []

    def _on_cancel(self, message: CancelSession) -> SessionState:
        if self.state.ended:
            return self.state
        self._cancel_in_flight("cancelled", message.reason)
        if self._round is not None:
            self._emit(RoundCompleted(self._round.number, self._round.kind, "cancelled", reason=message.reason))
            self._finish_round_run(self.state.round_state(self._round.number))
        self._end(rounds.EndSession("cancelled", message.reason))
        return self.state

    def _on_interrupt(self, message: Interrupt) -> SessionState:
        if self.state.ended:
            return self.state
        abandoned: list[Event] = []
        for cid, attempt in self._active.items():
            attempt.token.cancel()
            abandoned.append(ContributionAbandoned(cid, attempt.participant, self._round.number if self._round else 0,
                                                   attempt.attempt, message.reason))
        self._active.clear()
        self._emit(*abandoned, SessionInterrupted(message.reason, tuple(e.contribution_id for e in abandoned)),
                   durable=True)
        self.stop()
        return self.state

    def _on_switch_provider(self, message: SwitchProvider) -> SessionState:
        info = self.state.participants.get(message.participant)
        if info is None or info.kind != "ai":
            raise InvalidCommandError(f"{message.participant} is not an AI participant of this session")
        if self.state.ended:
            raise InvalidCommandError(f"the session has ended ({self.state.status})")
        if self._round is not None:
            raise InvalidCommandError(f"round {self._round.number} ({self._round.kind}) is running; a provider can "
                                      "be switched between rounds")
        self._emit(ProviderSwitched(message.participant, message.spec, message.model, info.provider, info.model,
                                    message.replies, message.tool_mode),  # type: ignore[arg-type]
                   durable=True)
        self._participants[message.participant].tell(UseProvider(message.provider))
        return self.state

    # -- rounds ------------------------------------------------------------------------------

    def _advance(self) -> None:
        """After a round: end the session if the rules say so; else, when deliberating, start the next."""
        step = rounds.next_step(self.state)
        if isinstance(step, rounds.EndSession):
            self._end(step)
        elif isinstance(step, rounds.NextRound) and self._auto:
            if self._plan is None:
                self._start_round(step.kind)
            elif self._plan:
                self._start_round(self._plan.pop(0))
            elif self._cancel_reason is not None:
                self._on_cancel(CancelSession(self._cancel_reason))
            else:  # the plan ran out where the original stopped: wait for commands, as it did
                self._auto, self._plan = False, None
                self._resolve_plan()

    def _resolve_plan(self) -> None:
        if self._plan_done is not None and not self._plan_done.done():
            self._plan_done.set_result(self.state)

    def _start_round(self, kind: RoundKind) -> None:
        state = self.state
        number = (state.current_round.round if state.current_round else 0) + 1
        participants = tuple(rounds.round_participants(state, kind))
        self._emit(RoundStarted(number, kind, rounds.iteration_for(state, kind), participants))
        self._open_round_run(number, kind, participants)
        for participant in participants:
            prompt = rounds.prompt_for(self.state, kind, participant, number)
            self._send(participant, prompt, "initial")
        self._check_round_complete()  # a round with nobody to ask completes (and fails) at once

    def _continue_round(self, number: int) -> None:
        """Resume a round the log shows running: ask again whoever has not settled."""
        round_state = self.state.round_state(number)
        assert round_state is not None
        run = self._open_round_run(number, round_state.kind, round_state.participants)
        settled = rounds.participant_outcomes(self.state, number)
        for participant in round_state.participants:
            attempts = self.state.attempts_in(number, participant)
            run.last_attempt[participant] = max((a.attempt for a in attempts), default=0)
            if participant not in settled:
                prompt = rounds.prompt_for(self.state, round_state.kind, participant, number)
                self._send(participant, prompt, "rerun")
        self._check_round_complete()

    def _open_round_run(self, number: int, kind: RoundKind, participants: tuple[str, ...]) -> _RoundRun:
        run = _RoundRun(number, kind, participants)
        run.deadline = self._scheduler.tell_later(
            self.state.settings.round_timeout_seconds, self.actor_ref, DeadlinePassed(number)
        )
        wait = self.state.settings.human_wait_seconds
        if wait > 0 and kind in HUMAN_ROUNDS and self._plan is None and self._humans():
            run.human_timer = self._scheduler.tell_later(wait, self.actor_ref, HumansWaitOver(number))
        self._round = run
        return run

    def _send(self, participant: str, prompt: rounds.RoundPrompt, purpose: str,
              first_parse: dict[str, ParsedCritique] | None = None, reasked: bool = False) -> None:
        run = self._round
        assert run is not None
        attempt = run.last_attempt.get(participant, 0) + 1
        run.last_attempt[participant] = attempt
        settings = self.state.settings
        info = self.state.participants[participant]
        cid = f"r{run.number}.{participant}.{attempt}"
        mode = info.tool_mode if info.tools and run.kind in TOOL_ROUNDS and purpose != "reask" else "off"
        definitions = tool_definitions(info.tools) if mode != "off" else ()
        messages = prompt.messages
        if definitions:  # the tool section follows the system prompt, and is recorded with it
            section = NATIVE_TOOLS_NOTE if mode == "native" else toolcalls.render_tool_context(definitions)
            messages = (*messages[:1], PromptMessage("system", section), *messages[1:])
        self._emit(PromptSent(cid, run.number, participant, attempt, info.model, messages,
                              settings.temperature, settings.max_tokens, purpose,  # type: ignore[arg-type]
                              prompt.proposal_labels, prompt.response_schema,
                              tuple(d.name for d in definitions) if mode == "native" else ()))
        token = CancelToken()
        self._active[cid] = _Attempt(cid, participant, attempt, prompt, purpose, token, first_parse, reasked)
        schema = rounds.reply_schema(prompt)
        request = LlmRequest(
            messages=tuple(Message(m.role, m.content) for m in messages),
            temperature=settings.temperature,
            max_tokens=settings.max_tokens,
            response_schema=JsonSchema(prompt.response_schema, schema) if prompt.response_schema and schema else None,
            tools=definitions if mode == "native" else (),
        )
        self._participants[participant].tell(Contribute(cid, request, token, self.actor_ref, mode,
                                                        settings.max_reply_chars, info.streams))

    # -- replies from participants -------------------------------------------------------------

    def _on_delta(self, message: DeltaReceived) -> None:
        attempt = self._active.get(message.contribution_id)
        if attempt is None:  # from an attempt already timed out or cancelled
            return
        self._emit(ContentDelta(message.contribution_id, attempt.participant, self._round.number,  # type: ignore[union-attr]
                                attempt.attempt, message.text))

    def _on_tool_started(self, message: ToolCallStarted) -> None:
        attempt = self._active.get(message.contribution_id)
        if attempt is None or self._round is None:  # from an attempt already timed out or cancelled
            return
        call = message.call
        self._emit(ToolCalled(message.contribution_id, attempt.participant, self._round.number, attempt.attempt,
                              message.turn, call.id, call.name, dict(call.arguments), call.error))

    def _on_tool_finished(self, message: ToolCallFinished) -> None:
        attempt = self._active.get(message.contribution_id)
        if attempt is None or self._round is None:
            return
        result = message.result
        self._emit(ToolResult(message.contribution_id, attempt.participant, self._round.number, attempt.attempt,
                              message.call_id, message.tool, result.output, result.truncated, result.error,
                              result.duration_ms))

    def _on_succeeded(self, message: ContributionSucceeded) -> None:
        attempt = self._active.pop(message.contribution_id, None)
        if attempt is None or self._round is None:
            return
        number = self._round.number
        if message.limit is not None:  # e.g. the server answered without streaming: asked so from now on
            self._learn(attempt, message.limit, message.evidence, message.evidence_kind, message.answered_from_body)
        completed = ContributionCompleted(
            message.contribution_id, attempt.participant, number, attempt.attempt, message.content,
            message.finish_reason, TokenUsage(message.usage.input_tokens, message.usage.output_tokens),
            message.latency_ms, message.served_by, message.fallback,
        )
        kind = self._round.kind
        # A completion is not waited for on its own (but before a re-ask): the round's completion,
        # which follows from it, waits for both (docs/DESIGN.md, Durability).
        if kind == "critique":
            self._read_critique(attempt, completed)
        elif kind == "convergence":
            self._read_vote(attempt, completed)
        else:
            self._emit(completed)
        self._check_round_complete()

    def _read_critique(self, attempt: _Attempt, completed: ContributionCompleted) -> None:
        as_json = attempt.prompt.response_schema is not None
        reading = rounds.read_critique_reply(completed, attempt.prompt.proposal_labels, as_json,
                                             attempt.first_parse, attempt.reasked)
        self._record_reply(attempt, completed, reading)

    def _read_vote(self, attempt: _Attempt, completed: ContributionCompleted) -> None:
        as_json = attempt.prompt.response_schema is not None
        context = rounds.vote_context(self.state, attempt.prompt)
        self._record_reply(attempt, completed, rounds.read_vote_reply(completed, as_json, attempt.reasked, context))

    def _record_reply(self, attempt: _Attempt, completed: ContributionCompleted, reading: rounds.ReplyReading) -> None:
        """The reply and what it gives (audit.verify reads it again the same way), or a re-ask."""
        if reading.reask is not None:
            self._emit(completed, durable=True)
            self._send(attempt.participant, rounds.reask_prompt(attempt.prompt, completed.content, reading.reask),
                       "reask", first_parse=reading.parsed, reasked=True)
            return
        self._emit(completed, *reading.records)

    def _on_errored(self, message: ContributionErrored) -> None:
        attempt = self._active.pop(message.contribution_id, None)
        run = self._round
        if attempt is None or run is None:
            return
        if message.limit is not None and self._learn(attempt, message.limit, message.message, message.error_kind):
            # The server refused a feature of the request (response_format, tools): asked again at once
            # without it, which can change the outcome (unlike the same request again, which cannot).
            self._emit(ContributionFailed(message.contribution_id, attempt.participant, run.number, attempt.attempt,
                                          message.error_kind, message.message, message.retryable, True),
                       durable=True)
            self._send(attempt.participant, self._around_limits(attempt), "retry", attempt.first_parse,
                       attempt.reasked)
            return
        used = run.retries.get(attempt.participant, 0)
        will_retry = (message.retryable and used < self.state.settings.max_retries
                      and not self._repeats_malformed_stream(run.number, attempt.participant, message))
        self._emit(ContributionFailed(message.contribution_id, attempt.participant, run.number, attempt.attempt,
                                      message.error_kind, message.message, message.retryable, will_retry),
                   durable=True)
        if will_retry:
            run.retries[attempt.participant] = used + 1
            delay = self._retry_policy.delay(used + 1, message)  # type: ignore[arg-type]  # reads .retry_after
            timer = self._scheduler.tell_later(delay, self.actor_ref, RetryDue(run.number, attempt.participant))
            run.waiting[attempt.participant] = (attempt, timer)
        self._check_round_complete()

    def _learn(self, attempt: _Attempt, limit: str, evidence: str, error_kind: str,
               answered_from_body: bool = False) -> bool:
        """Record what the participant's provider cannot do (``ProviderLimitFound``), once: True when it
        was not known yet (the participant is asked around it from now on, by the fold's account)."""
        info = self.state.participants[attempt.participant]
        if not rounds.still_expected(info, limit):
            return False
        assert self._round is not None
        self._emit(ProviderLimitFound(attempt.contribution_id, attempt.participant, self._round.number,
                                      limit, evidence, error_kind, answered_from_body))  # type: ignore[arg-type]
        return True

    def _around_limits(self, attempt: _Attempt) -> rounds.RoundPrompt:
        """The attempt's prompt as its participant is asked now, around what its provider cannot do."""
        if attempt.purpose == "reask":  # the same reminder, asked for text (the text reader reads JSON too)
            return msgspec.structs.replace(attempt.prompt, response_schema=None)
        assert self._round is not None
        return rounds.prompt_for(self.state, self._round.kind, attempt.participant, self._round.number)

    def _repeats_malformed_stream(self, round_number: int, participant: str, message: ContributionErrored) -> bool:
        """The same malformed stream the participant's previous attempt in this round got: a server
        that breaks its protocol the same way twice will a third time, so it is retried once only
        (every retry is a paid call)."""
        if message.error_kind != ProtocolError.kind:
            return False
        failed = [c for c in self.state.attempts_in(round_number, participant) if c.status == "failed"]
        return bool(failed) and (failure_signature(failed[-1].error_kind, failed[-1].error)
                                 == failure_signature(message.error_kind, message.message))

    def _on_retry_due(self, message: RetryDue) -> None:
        run = self._round
        if run is None or run.number != message.round or message.participant not in run.waiting:
            return
        failed, _ = run.waiting.pop(message.participant)
        self._send(failed.participant, failed.prompt, "retry", failed.first_parse, failed.reasked)

    def _on_deadline(self, message: DeadlinePassed) -> None:
        run = self._round
        if run is None or run.number != message.round:
            return
        timeout = self.state.settings.round_timeout_seconds
        why = f"no answer within the round timeout of {timeout:g} s (round_timeout_seconds)"
        self._cancel_in_flight("deadline", why)
        # Those waiting out a retry backoff: their last failure becomes final.
        for participant, (failed, timer) in list(run.waiting.items()):
            timer.cancel()
            self._emit(ContributionFailed(failed.contribution_id, participant, run.number, failed.attempt,
                                          "deadline", why, False, False))
        run.waiting.clear()
        self._check_round_complete()  # its RoundCompleted is durable, and so all of the above

    def _cancel_in_flight(self, kind: str, why: str) -> None:
        """Cancel every attempt in flight and record each as failed (not retried)."""
        run = self._round
        for cid, attempt in list(self._active.items()):
            attempt.token.cancel()
            self._emit(ContributionFailed(cid, attempt.participant, run.number if run else 0, attempt.attempt,
                                          kind, why, False, False))
        self._active.clear()

    # -- completing rounds and the session ------------------------------------------------------

    def _check_round_complete(self) -> None:
        run = self._round
        if run is None:
            return
        result = rounds.round_result(self.state, run.number)
        if result is None or self._humans_pending(run):
            return
        self._emit(RoundCompleted(run.number, run.kind, result.status, result.succeeded,  # type: ignore[arg-type]
                                  result.failed, result.score, result.reason), durable=True)
        self._finish_round_run(self.state.round_state(run.number))
        self._advance()

    def _finish_round_run(self, round_state: Any) -> None:
        run = self._round
        if run is None:
            return
        self._round = None
        self._stop_timers(run)
        for waiter in run.waiters:
            if not waiter.done():
                waiter.set_result(round_state)

    def _humans(self) -> list[str]:
        return [name for name, info in self.state.participants.items() if info.kind == "human"]

    def _humans_pending(self, run: _RoundRun) -> list[str]:
        """The session's humans the round still waits for (none once human_wait_seconds ran out)."""
        if run.human_timer is None or run.humans_waited:
            return []
        if run.kind == "draft":
            return [name for name in self._humans() if name not in self.state.drafts]
        votes = self.state.votes_in(run.number)
        return [name for name in self._humans() if name not in votes]

    def _on_humans_wait_over(self, message: HumansWaitOver) -> None:
        run = self._round
        if run is None or run.number != message.round:
            return
        run.humans_waited = True
        self._check_round_complete()

    @staticmethod
    def _stop_timers(run: _RoundRun) -> None:
        if run.human_timer is not None:
            run.human_timer.cancel()
        if run.deadline is not None:
            run.deadline.cancel()
        for _, timer in run.waiting.values():
            timer.cancel()

    def _end(self, end: rounds.EndSession) -> None:
        self._emit(SessionEnded(end.outcome, end.reason, end.final_score), durable=True)
        self._resolve_plan()
        self.stop()


def _refuse_human_input(state: SessionState) -> None:
    """A human's draft or vote is taken only while the session runs and its log budget lasts (each is
    up to a goal's size, and any number may come: the budget is what bounds them)."""
    if state.ended:
        raise InvalidCommandError(f"the session has ended ({state.status})")
    spent = rounds.budget_spent(state)
    if spent is not None:
        raise InvalidCommandError(spent)


_HANDLERS: dict[type, Callable[[SessionActor, Any], Any]] = {
    DeltaReceived: SessionActor._on_delta,
    ToolCallStarted: SessionActor._on_tool_started,
    ToolCallFinished: SessionActor._on_tool_finished,
    ContributionSucceeded: SessionActor._on_succeeded,
    ContributionErrored: SessionActor._on_errored,
    DeadlinePassed: SessionActor._on_deadline,
    HumansWaitOver: SessionActor._on_humans_wait_over,
    RetryDue: SessionActor._on_retry_due,
    Recover: SessionActor._on_recover,
    Deliberate: SessionActor._on_deliberate,
    RunRound: SessionActor._on_run_round,
    AddHumanDraft: SessionActor._on_add_human_draft,
    CastVote: SessionActor._on_cast_vote,
    CancelSession: SessionActor._on_cancel,
    Interrupt: SessionActor._on_interrupt,
    SwitchProvider: SessionActor._on_switch_provider,
}
