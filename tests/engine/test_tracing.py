"""OpenTelemetry traces and metrics of sessions (engine.tracing / engine.otel), with the SDK's
in-memory span exporter and metric reader: the spans a deliberation makes, their parents and times
(the events' recorded times), retries and tools, the trace a session joins and keeps across engines,
and an engine without the extra importing nothing of OpenTelemetry."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed: pip install 'forge-actors[otel]'")

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402
from support import FAST_RETRIES  # noqa: E402

from forge_actors.core.events import (  # noqa: E402
    ContributionCompleted,
    ContributionFailed,
    PromptSent,
    RoundStarted,
    SessionCreated,
    ToolCalled,
    ToolResult,
)
from forge_actors.engine import Forge, trace_sessions  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


class Telemetry:
    """A tracer provider exporting to memory, a meter provider read in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def histograms(self) -> dict[str, list]:
        found: dict[str, list] = {}
        for resource in self.reader.get_metrics_data().resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found[metric.name] = list(metric.data.data_points)
        return found


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry()


@pytest.fixture
def traced(tmp_path: Path, telemetry: Telemetry) -> Iterator[Forge]:
    with Forge(str(tmp_path / "forge.db"), retry_policy=FAST_RETRIES) as forge:
        tracing = trace_sessions(forge, tracer_provider=telemetry.tracer_provider,
                                 meter_provider=telemetry.meter_provider)
        forge.tracing = tracing  # type: ignore[attr-defined]  # for the tests' caught_up()
        yield forge
        tracing.close()


def run_traced(forge: Forge, participants: list[str], **settings: object) -> str:
    session_id = forge.create_session("Design a TODO API", participants, max_iterations=1, **settings)
    list(forge.deliberate(session_id))
    assert forge.tracing.caught_up()  # type: ignore[attr-defined]
    return session_id


def by_name(spans: list[ReadableSpan], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def test_a_deliberation_is_a_workflow_span_with_its_rounds_and_chat_attempts_at_the_events_times(
        traced: Forge, telemetry: Telemetry) -> None:
    request = telemetry.tracer_provider.get_tracer("a web app").start_span("POST /sessions")
    from opentelemetry import trace
    with trace.use_span(request, end_on_exit=True):
        session_id = traced.create_session("Design a TODO API", ["mock:alice", "mock:bob"], max_iterations=1)
    list(traced.deliberate(session_id))
    assert traced.tracing.caught_up()  # type: ignore[attr-defined]
    records = traced.records(session_id)
    spans = telemetry.spans()

    [workflow] = by_name(spans, "invoke_workflow")
    assert workflow.name == "invoke_workflow deliberation" and workflow.kind == SpanKind.INTERNAL
    assert workflow.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert workflow.attributes["gen_ai.conversation.id"] == session_id
    assert workflow.context.trace_id == request.get_span_context().trace_id  # the request's trace holds it
    assert workflow.parent.span_id == request.get_span_context().span_id
    assert (workflow.start_time, workflow.end_time) == (records[0].recorded_at, records[-1].recorded_at)
    assert workflow.attributes["forge.session.outcome"] == traced.state(session_id).status
    created = records[0].event
    assert isinstance(created, SessionCreated) and created.trace is not None
    assert created.trace.parent_span_id == format(request.get_span_context().span_id, "016x")

    rounds = by_name(spans, "round ")
    started = [r for r in records if isinstance(r.event, RoundStarted)]
    assert [s.name for s in rounds] == [f"round {r.event.kind}" for r in started]
    assert [s.start_time for s in rounds] == [r.recorded_at for r in started]
    assert all(s.parent.span_id == workflow.context.span_id for s in rounds)

    chats = by_name(spans, "chat ")
    prompts = [r for r in records if isinstance(r.event, PromptSent)]
    completed = {(r.event.contribution_id, r.event.attempt): r for r in records
                 if isinstance(r.event, ContributionCompleted)}
    assert len(chats) == len(prompts) == len(completed)
    round_ids = {s.context.span_id for s in rounds}
    for chat in chats:
        key = (chat.attributes["forge.contribution.id"], chat.attributes["forge.contribution.attempt"])
        done = completed[key]
        assert chat.kind == SpanKind.CLIENT and chat.parent.span_id in round_ids
        assert chat.name == f"chat {chat.attributes['gen_ai.request.model']}"
        assert chat.attributes["gen_ai.provider.name"] == "mock"
        assert chat.attributes["gen_ai.usage.input_tokens"] == done.event.usage.input_tokens
        assert chat.attributes["gen_ai.usage.output_tokens"] == done.event.usage.output_tokens
        assert list(chat.attributes["gen_ai.response.finish_reasons"]) == [done.event.finish_reason]
        assert chat.end_time == done.recorded_at

    histograms = telemetry.histograms()
    tokens = histograms["gen_ai.client.token.usage"]
    by_type = {t: sum(p.sum for p in tokens if p.attributes["gen_ai.token.type"] == t) for t in ("input", "output")}
    assert by_type == {"input": sum(r.event.usage.input_tokens for r in completed.values()),
                       "output": sum(r.event.usage.output_tokens for r in completed.values())}
    durations = histograms["gen_ai.client.operation.duration"]
    assert sum(p.count for p in durations) == len(chats)
    assert all(p.attributes["gen_ai.operation.name"] == "chat" for p in durations + tokens)


def test_retries_are_attempt_spans_of_their_own_and_failures_carry_error_type(traced: Forge,
                                                                               telemetry: Telemetry) -> None:
    session_id = run_traced(traced, ["mock:alice?fail_on=draft", "mock:bob"], max_retries=1)
    failed = [r.event for r in traced.records(session_id) if isinstance(r.event, ContributionFailed)]
    assert [f.attempt for f in failed] == [1, 2]
    [draft_round] = by_name(telemetry.spans(), "round draft")
    alice_drafts = [s for s in by_name(telemetry.spans(), "chat alice") if s.parent.span_id == draft_round.context.span_id]
    assert [s.attributes["forge.contribution.id"] for s in alice_drafts] == [f.contribution_id for f in failed]
    assert [s.attributes["forge.contribution.attempt"] for s in alice_drafts] == [1, 2]  # one span per attempt
    assert [s.attributes["forge.will_retry"] for s in alice_drafts] == [True, False]
    for span in alice_drafts:
        assert span.attributes["error.type"] == "server_error" and span.status.status_code == StatusCode.ERROR
    assert draft_round.attributes["forge.round.status"] == "degraded"
    errors = [p for p in telemetry.histograms()["gen_ai.client.operation.duration"]
              if p.attributes.get("error.type") == "server_error"]
    assert sum(p.count for p in errors) == 2


def test_a_tool_call_is_an_execute_tool_span_inside_its_chat_attempt(traced: Forge, telemetry: Telemetry,
                                                                     tmp_path: Path) -> None:
    workspace = tmp_path / "repo"
    workspace.mkdir()
    (workspace / "notes.md").write_text("# Notes\nThe cache must be invalidated on every write.\n")
    session_id = traced.create_session("Review notes.md and propose a plan", ["mock:alice?tools=file", "mock:bob"],
                                       workspace=str(workspace), max_rounds=1)
    list(traced.deliberate(session_id))
    assert traced.tracing.caught_up()  # type: ignore[attr-defined]
    records = traced.records(session_id)
    calls = [r for r in records if isinstance(r.event, ToolCalled)]
    results = [r for r in records if isinstance(r.event, ToolResult)]
    assert calls and len(calls) == len(results)
    tools = by_name(telemetry.spans(), "execute_tool")
    assert [(s.name, s.start_time, s.end_time) for s in tools] == [
        (f"execute_tool {c.event.tool}", c.recorded_at, r.recorded_at) for c, r in zip(calls, results, strict=True)]
    chats = {s.context.span_id: s for s in by_name(telemetry.spans(), "chat ")}
    for span, call in zip(tools, calls, strict=True):
        assert span.attributes["gen_ai.tool.name"] == call.event.tool
        assert span.attributes["gen_ai.tool.call.id"] == call.event.call_id
        assert chats[span.parent.span_id].attributes["forge.contribution.id"] == call.event.contribution_id


def test_a_session_run_by_another_engine_continues_the_trace_recorded_at_its_creation(
        tmp_path: Path, telemetry: Telemetry) -> None:
    """Engine A creates the session with no current span (a root ``create_session`` span anchors its
    trace) and stops; engine B, with a tracing of its own, runs it: its spans join A's trace."""
    db = str(tmp_path / "forge.db")
    with Forge(db) as creator:
        tracing = trace_sessions(creator, tracer_provider=telemetry.tracer_provider,
                                 meter_provider=telemetry.meter_provider)
        session_id = creator.create_session("Design a TODO API", ["mock:alice", "mock:bob"], max_iterations=1)
        tracing.close()
    [anchor] = telemetry.spans()
    assert anchor.name == "create_session" and anchor.parent is None
    other = Telemetry()
    with Forge(db) as runner:
        tracing = trace_sessions(runner, tracer_provider=other.tracer_provider, meter_provider=other.meter_provider)
        list(runner.deliberate(session_id))
        assert tracing.caught_up()
        tracing.close()
    [workflow] = by_name(other.spans(), "invoke_workflow")
    assert workflow.context.trace_id == anchor.context.trace_id
    assert workflow.parent.span_id == anchor.context.span_id and workflow.parent.is_remote
    assert all(s.context.trace_id == anchor.context.trace_id for s in other.spans())


def test_a_session_that_ended_before_its_first_round_was_traced_is_traced_all_the_same(
        traced: Forge, telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tracer may run behind: by the time it reads a session's first round, the session may have
    ended and left the engine's running sessions. The engine told it, as it attached the session."""
    monkeypatch.setattr(traced, "running_sessions", lambda: [])  # as seen by a tracer that came too late
    session_id = run_traced(traced, ["mock:alice", "mock:bob"], start=True)
    [workflow] = by_name(telemetry.spans(), "invoke_workflow")
    assert workflow.attributes["gen_ai.conversation.id"] == session_id
    assert len(by_name(telemetry.spans(), "round ")) == 4


def test_an_engine_without_tracing_traces_nothing_and_sessions_of_other_engines_are_not_traced_here(
        tmp_path: Path, telemetry: Telemetry) -> None:
    db = str(tmp_path / "forge.db")
    with Forge(db) as watcher, Forge(db) as runner:
        tracing = trace_sessions(watcher, tracer_provider=telemetry.tracer_provider,
                                 meter_provider=telemetry.meter_provider)
        session_id = runner.create_session("Design a TODO API", ["mock:alice", "mock:bob"], max_iterations=1)
        list(runner.deliberate(session_id))
        assert tracing.caught_up()
        tracing.close()
        assert runner.records(session_id)[0].event.trace is None  # its creator traced nothing
    assert telemetry.spans() == []  # driven by the other engine: not this one's to trace


BLOCKED_RUN = textwrap.dedent("""
    import importlib.abc, json, sys

    class NoOpenTelemetry(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ImportError(f"{name} is blocked: the otel extra is not installed")
            return None

    sys.meta_path.insert(0, NoOpenTelemetry())
    from forge_actors.engine import ConfigError, Forge, trace_sessions

    with Forge(sys.argv[1]) as forge:
        session_id = forge.create_session("Design a TODO API", ["mock:alice", "mock:bob"], max_iterations=1)
        ended = [r.type for r in forge.deliberate(session_id)][-1]
        try:
            trace_sessions(forge)
            refused = ""
        except ConfigError as error:
            refused = str(error)
    loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
    print(json.dumps({"ended": ended, "refused": refused, "loaded": loaded}))
""")


def test_without_the_extra_nothing_of_opentelemetry_is_imported(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", BLOCKED_RUN, str(tmp_path / "forge.db")], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=True)
    outcome = json.loads(result.stdout)
    assert outcome["ended"] == "SessionEnded"  # the engine works without it
    assert outcome["loaded"] == []  # and loaded none of it
    assert "pip install 'forge-actors[otel]'" in outcome["refused"]  # asking for tracing says what to install
