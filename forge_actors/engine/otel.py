"""OpenTelemetry spans and metrics of the sessions an engine drives, built from the committed events.

Imported only by ``engine.tracing.trace_sessions`` (it needs the ``otel`` extra). The actors know
nothing of it: one thread follows the whole log (``Forge.subscribe_log``) and turns the events of
the sessions this engine drives into spans, with the events' recorded times as their start and end.
So a span says what the log says, and a session resumed by another process continues the trace
recorded in its ``SessionCreated`` (``core.events.TraceContext``).

It follows the GenAI semantic conventions of OpenTelemetry semantic-conventions v1.41.0 (status
Development): one span per session (``invoke_workflow``), round, contribution attempt
(``chat {model}``, a retry being an attempt of its own) and tool call (``execute_tool {tool}``), and
the histograms ``gen_ai.client.token.usage`` and ``gen_ai.client.operation.duration``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from eventstore import RecordedEvent
from forge_actors import __version__
from forge_actors.core.events import (
    ContributionAbandoned,
    ContributionCompleted,
    ContributionFailed,
    Event,
    ParticipantAdded,
    ParticipantInfo,
    PromptSent,
    ProviderSwitched,
    RoundCompleted,
    RoundStarted,
    SessionCreated,
    SessionEnded,
    SessionInterrupted,
    SessionResumed,
    ToolCalled,
    ToolResult,
    TraceContext,
    decode_event,
)
from forge_actors.engine.forge import Forge

logger = logging.getLogger(__name__)

SCOPE = "forge_actors"
SCHEMA_URL = "https://opentelemetry.io/schemas/1.41.0"
#: The session span's ``gen_ai.workflow.name`` (and its name: ``invoke_workflow deliberation``).
WORKFLOW = "deliberation"
#: The bucket boundaries the conventions advise for the two histograms.
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
#: ``gen_ai.provider.name`` for the provider kinds the conventions name; the others keep their kind.
PROVIDER_NAMES = {"anthropic": "anthropic", "openai": "openai"}
#: A tool name a model wrote is attacker input: a span is named after it only when it is one of the
#: participant's tools, and the attribute keeps at most this many characters.
MAX_TOOL_NAME = 64
#: The event types that make or end spans (the others, ContentDelta above all, are skipped undecoded).
TRACED = frozenset(cls.__name__ for cls in (
    SessionCreated, SessionResumed, SessionInterrupted, SessionEnded, RoundStarted, RoundCompleted, PromptSent,
    ContributionCompleted, ContributionFailed, ContributionAbandoned, ToolCalled, ToolResult, ProviderSwitched,
    ParticipantAdded,
))


def provider_name(spec: str) -> str:
    """``gen_ai.provider.name`` of a recorded provider spec (``anthropic:claude-...?timeout=60``)."""
    kind = spec.split(":", 1)[0].strip().lower() or "unknown"
    return PROVIDER_NAMES.get(kind, kind)


@dataclass
class _Attempt:
    span: Span
    start_ns: int
    attributes: dict[str, Any]


@dataclass
class _Session:
    """The open spans of one session driven here."""

    span: Span
    participants: dict[str, ParticipantInfo]
    rounds: dict[int, Span] = field(default_factory=dict)
    attempts: dict[tuple[str, int], _Attempt] = field(default_factory=dict)  # (contribution_id, attempt)
    tools: dict[tuple[str, int, str], Span] = field(default_factory=dict)  # (contribution, attempt, call_id)
    last_ns: int = 0


class SessionTracing:
    """Follows the log in a thread of its own and traces the sessions ``forge`` drives. Thread-safe."""

    def __init__(self, forge: Forge, *, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self._forge = forge
        self._tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider, schema_url=SCHEMA_URL)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider, schema_url=SCHEMA_URL)
        self._token_usage = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS)
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS)
        self._sessions: dict[str, _Session] = {}
        # Sessions attached here (Forge._on_drive): driven here even if they ended before their first
        # round was traced; guarded by _driven_lock (added to by the engine's threads).
        self._driven: set[str] = set()
        self._driven_lock = threading.Lock()
        self._progress = threading.Condition()
        self._subscription = forge.subscribe_log()
        self._applied = self._subscription.position  # guarded by _progress
        forge._trace_context_source = self.current_trace_context
        forge._on_drive = self._driving
        self._thread = threading.Thread(target=self._follow, name="forge-tracing", daemon=True)
        self._thread.start()

    # -- the trace a new session joins --------------------------------------------------------------

    def current_trace_context(self) -> TraceContext:
        """The caller's current span, recorded in a new session's SessionCreated as its parent. With no
        current span, a short root span ``create_session`` is made to be that parent: a session's trace
        id is known from its creation on, whichever process later runs it."""
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            anchor = self._tracer.start_span("create_session", kind=SpanKind.INTERNAL)
            anchor.end()
            context = anchor.get_span_context()
        return TraceContext(trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id),
                            sampled=context.trace_flags.sampled)

    # -- following the log --------------------------------------------------------------------------

    def caught_up(self, timeout: float = 10.0) -> bool:
        """Wait until every event committed before this call has been traced; False on timeout."""
        target = self._forge.last_position()
        with self._progress:
            return self._progress.wait_for(lambda: self._applied >= target or self._subscription.closed, timeout)

    def _follow(self) -> None:
        subscription = self._subscription
        while not subscription.closed:
            for recorded in subscription.poll_batch(0.5):
                if recorded.type in TRACED:
                    try:
                        self._apply(recorded)
                    except Exception:  # a span we cannot build must not stop the others
                        logger.exception("tracing: no spans for event %s (%s) of session %s",
                                         recorded.position, recorded.type, recorded.stream_id)
                with self._progress:
                    self._applied = recorded.position
                    self._progress.notify_all()
        with self._progress:
            self._progress.notify_all()

    def close(self) -> None:
        """Stop following. The spans of sessions still open end at their last event, marked
        ``forge.session.stopped_tracing``."""
        self._subscription.close()
        self._thread.join(timeout=5)
        if self._forge._trace_context_source == self.current_trace_context:
            self._forge._trace_context_source = None
        if self._forge._on_drive == self._driving:
            self._forge._on_drive = None
        for session_id in list(self._sessions):
            session = self._sessions.pop(session_id)
            session.span.set_attribute("forge.session.stopped_tracing", True)
            self._end_children(session, session.last_ns)
            session.span.end(end_time=session.last_ns or None)

    # -- events to spans ------------------------------------------------------------------------------

    def _apply(self, recorded: RecordedEvent) -> None:
        session_id, at = recorded.stream_id, recorded.recorded_at
        session = self._sessions.get(session_id)
        if session is None:
            if recorded.type in (SessionEnded.__name__, SessionInterrupted.__name__):
                self._forget(session_id)  # it stopped before a round was traced (a cancel before any)
            if recorded.type not in (RoundStarted.__name__, SessionResumed.__name__, PromptSent.__name__):
                return
            if not self._driven_here(session_id):
                return  # driven by another engine: its own tracing traces it
            session = self._open(session_id, recorded)
        event = decode_event(recorded.type, recorded.data)
        session.last_ns = max(session.last_ns, at)
        if isinstance(event, RoundStarted):
            self._round_started(session, session_id, event, at)
        elif isinstance(event, RoundCompleted):
            self._round_completed(session, event, at)
        elif isinstance(event, PromptSent):
            self._attempt_started(session, session_id, event, at)
        elif isinstance(event, ContributionCompleted | ContributionFailed | ContributionAbandoned):
            self._attempt_ended(session, event, at)
        elif isinstance(event, ToolCalled):
            self._tool_called(session, event, at)
        elif isinstance(event, ToolResult):
            self._tool_result(session, event, at)
        elif isinstance(event, ProviderSwitched):
            current = session.participants.get(event.participant)
            if current is not None:
                session.participants[event.participant] = ParticipantInfo(
                    current.name, current.kind, event.provider, event.model, tools=current.tools)
        elif isinstance(event, ParticipantAdded):
            session.participants[event.participant.name] = event.participant
        elif isinstance(event, SessionEnded | SessionInterrupted):
            self._close(session_id, session, event, at)

    def _driving(self, session_id: str) -> None:
        with self._driven_lock:
            self._driven.add(session_id)

    def _driven_here(self, session_id: str) -> bool:
        with self._driven_lock:
            if session_id in self._driven:
                return True
        return session_id in self._forge.running_sessions()

    def _forget(self, session_id: str) -> None:
        with self._driven_lock:
            self._driven.discard(session_id)

    def _open(self, session_id: str, opening: RecordedEvent) -> _Session:
        """The session span, from the SessionCreated's trace context: it starts at the creation when
        this engine runs the session from its beginning, else (a resume) at the event that opened it."""
        first = self._forge.events_page(session_id, 0, 1, decoded=True)
        created = first[0].event if first else None
        participants: dict[str, ParticipantInfo] = {}
        parent = None
        start = opening.recorded_at
        if isinstance(created, SessionCreated):
            participants = {p.name: p for p in created.participants}
            if created.trace is not None:
                parent = trace.set_span_in_context(NonRecordingSpan(SpanContext(
                    int(created.trace.trace_id, 16), int(created.trace.parent_span_id, 16), is_remote=True,
                    trace_flags=TraceFlags(TraceFlags.SAMPLED if created.trace.sampled else TraceFlags.DEFAULT))))
            if opening.type != SessionResumed.__name__:
                start = first[0].recorded_at
        if len(participants) < len(self._forge.state(session_id).participants):  # joined since
            participants = dict(self._forge.state(session_id).participants)
        span = self._tracer.start_span(
            f"invoke_workflow {WORKFLOW}", context=parent, kind=SpanKind.INTERNAL, start_time=start,
            attributes={"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": WORKFLOW,
                        "gen_ai.agent.name": WORKFLOW, "gen_ai.conversation.id": session_id,
                        "forge.session.resumed": opening.type == SessionResumed.__name__})
        session = _Session(span, participants)
        self._sessions[session_id] = session
        return session

    def _round_started(self, session: _Session, session_id: str, event: RoundStarted, at: int) -> None:
        session.rounds[event.round] = self._tracer.start_span(
            f"round {event.kind}", context=trace.set_span_in_context(session.span), kind=SpanKind.INTERNAL,
            start_time=at, attributes={"gen_ai.conversation.id": session_id, "forge.round.number": event.round,
                                       "forge.round.kind": event.kind, "forge.round.iteration": event.iteration})

    def _round_completed(self, session: _Session, event: RoundCompleted, at: int) -> None:
        span = session.rounds.pop(event.round, None)
        if span is None:
            return
        span.set_attribute("forge.round.status", event.status)
        if event.score is not None:
            span.set_attribute("forge.round.score", event.score)
        if event.status in ("failed", "cancelled"):
            span.set_attribute("error.type", event.status)
            span.set_status(Status(StatusCode.ERROR, event.reason or event.status))
        span.end(end_time=at)

    def _attempt_started(self, session: _Session, session_id: str, event: PromptSent, at: int) -> None:
        participant = session.participants.get(event.participant)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider_name(participant.provider if participant else ""),
            "gen_ai.request.model": event.model,
        }
        parent = session.rounds.get(event.round, session.span)
        span = self._tracer.start_span(
            f"chat {event.model}", context=trace.set_span_in_context(parent), kind=SpanKind.CLIENT, start_time=at,
            attributes={**attributes, "gen_ai.request.temperature": event.temperature,
                        "gen_ai.request.max_tokens": event.max_tokens, "gen_ai.conversation.id": session_id,
                        "gen_ai.agent.name": event.participant, "forge.contribution.id": event.contribution_id,
                        "forge.contribution.attempt": event.attempt, "forge.prompt.purpose": event.purpose})
        session.attempts[(event.contribution_id, event.attempt)] = _Attempt(span, at, attributes)

    def _attempt_ended(self, session: _Session,
                       event: ContributionCompleted | ContributionFailed | ContributionAbandoned, at: int) -> None:
        attempt = session.attempts.pop((event.contribution_id, event.attempt), None)
        if attempt is None:
            return
        self._end_tools(session, event.contribution_id, event.attempt, at)
        span, measured = attempt.span, dict(attempt.attributes)
        if isinstance(event, ContributionCompleted):
            span.set_attribute("gen_ai.usage.input_tokens", event.usage.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", event.usage.output_tokens)
            if event.finish_reason:
                span.set_attribute("gen_ai.response.finish_reasons", [event.finish_reason])
            if event.served_by:
                span.set_attribute("forge.served_by", event.served_by)
            self._token_usage.record(event.usage.input_tokens, {**measured, "gen_ai.token.type": "input"})
            self._token_usage.record(event.usage.output_tokens, {**measured, "gen_ai.token.type": "output"})
        else:
            error_type = event.error_kind if isinstance(event, ContributionFailed) else "abandoned"
            message = event.message if isinstance(event, ContributionFailed) else event.reason
            span.set_attribute("error.type", error_type)
            if isinstance(event, ContributionFailed):
                span.set_attribute("forge.will_retry", event.will_retry)
            span.set_status(Status(StatusCode.ERROR, message))
            measured["error.type"] = error_type
        self._duration.record(max(0, at - attempt.start_ns) / 1e9, measured)
        span.end(end_time=at)

    def _tool_called(self, session: _Session, event: ToolCalled, at: int) -> None:
        attempt = session.attempts.get((event.contribution_id, event.attempt))
        participant = session.participants.get(event.participant)
        known = participant is not None and event.tool in participant.tools
        name = event.tool if known else "unknown"
        span = self._tracer.start_span(
            f"execute_tool {name}", context=trace.set_span_in_context(attempt.span if attempt else session.span),
            kind=SpanKind.INTERNAL, start_time=at,
            attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": event.tool[:MAX_TOOL_NAME],
                        "gen_ai.tool.call.id": event.call_id[:MAX_TOOL_NAME], "gen_ai.tool.type": "function"})
        if event.error is not None:  # not run: its arguments were not a JSON object
            span.set_attribute("error.type", "invalid_arguments")
            span.set_status(Status(StatusCode.ERROR, event.error))
            span.end(end_time=at)
            return
        session.tools[(event.contribution_id, event.attempt, event.call_id)] = span

    def _tool_result(self, session: _Session, event: ToolResult, at: int) -> None:
        span = session.tools.pop((event.contribution_id, event.attempt, event.call_id), None)
        if span is None:
            return
        if event.error is not None:
            span.set_attribute("error.type", "tool_error")
            span.set_status(Status(StatusCode.ERROR, event.error))
        if event.truncated:
            span.set_attribute("forge.tool.output_truncated", True)
        span.end(end_time=at)

    def _end_tools(self, session: _Session, contribution_id: str, attempt: int, at: int) -> None:
        for key in [k for k in session.tools if k[:2] == (contribution_id, attempt)]:
            span = session.tools.pop(key)
            span.set_attribute("error.type", "unfinished")
            span.end(end_time=at)

    def _end_children(self, session: _Session, at: int) -> None:
        """Whatever is still open when its session ends (in flight when it was cancelled or interrupted)."""
        for contribution_id, attempt in list(session.attempts):
            self._attempt_ended(session, ContributionAbandoned(contribution_id, "", 0, attempt, "unfinished"), at)
        for key in list(session.tools):
            self._end_tools(session, key[0], key[1], at)
        for number in list(session.rounds):
            span = session.rounds.pop(number)
            span.set_attribute("error.type", "unfinished")
            span.end(end_time=at)

    def _close(self, session_id: str, session: _Session, event: Event, at: int) -> None:
        self._sessions.pop(session_id, None)
        self._forget(session_id)
        self._end_children(session, at)
        span = session.span
        if isinstance(event, SessionEnded):
            span.set_attribute("forge.session.outcome", event.outcome)
            if event.final_score is not None:
                span.set_attribute("forge.session.final_score", event.final_score)
            if event.outcome == "failed":
                span.set_attribute("error.type", "failed")
                span.set_status(Status(StatusCode.ERROR, event.reason))
        else:
            span.set_attribute("forge.session.interrupted", True)
        span.end(end_time=at)
