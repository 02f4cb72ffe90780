"""Tools inside a deliberation: called, recorded in order, shown, audited, bounded, and never run
again by a re-run (its participants get the recorded results, and a different call fails loudly)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore import RecordedEvent
from forge_actors.core.audit import verify
from forge_actors.core.events import (
    ContributionCompleted,
    PromptSent,
    SessionCreated,
    TokenUsage,
    ToolCalled,
    ToolResult,
)
from forge_actors.core.export import export_document, render
from forge_actors.engine import ConfigError, Forge, UntrustedSpecError
from forge_actors.engine.replay import RecordedToolCall, RecordedTools, recorded_tool_calls
from forge_actors.providers.base import LlmRequest, StreamChunk, ToolCall, Usage
from forge_actors.providers.errors import ReplayMismatchError
from forge_actors.tools import Toolbox
from forge_actors.tools import ToolResult as ToolOutcome

GOAL = "Review notes.md and propose a plan"
NOTES = "# Notes\nThe cache must be invalidated on every write.\n"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "notes.md").write_text(NOTES)
    (root / ".env").write_text("SECRET=do-not-read\n")
    return root


def _run(forge: Forge, participants: list[str], workspace: Path, **settings: object) -> str:
    session_id = forge.create_session(GOAL, participants, workspace=str(workspace), max_rounds=1, seed=3, **settings)
    list(forge.deliberate(session_id))
    return session_id


def _of(records: list[RecordedEvent], participant: str) -> list:
    return [r.event for r in records if getattr(r.event, "participant", None) == participant]


@pytest.mark.parametrize("mode", ["native", "text"])
def test_a_mock_reads_the_file_named_in_the_goal_and_every_step_is_recorded_in_order(forge, workspace, mode):
    session_id = _run(forge, [f"mock:alice?tools=file&tool_mode={mode}", "mock:bob", "mock:carol"], workspace)
    records = forge.records(session_id)
    alice = _of(records, "alice")
    steps = [e for e in alice if type(e).__name__ != "ContentDelta"]
    # The draft: its prompt, the call, its result, the answer; later rounds offer tools but the mock calls none.
    assert [type(e).__name__ for e in steps[:4]] == ["PromptSent", "ToolCalled", "ToolResult", "ContributionCompleted"]
    prompt, called, result, completed = steps[:4]
    assert isinstance(prompt, PromptSent) and isinstance(called, ToolCalled) and isinstance(result, ToolResult)
    assert (called.tool, called.arguments, called.turn) == ("read_file", {"path": "notes.md"}, 1)
    assert result.call_id == called.call_id and result.error is None and "cache must be invalidated" in result.output
    assert isinstance(completed, ContributionCompleted) and "# Notes" in completed.content  # quoted as evidence
    if mode == "native":
        assert prompt.tools and "read_file" in prompt.tools
    else:
        assert not prompt.tools and any("TOOLS AVAILABLE:" in m.content for m in prompt.messages)
    assert forge.verify(session_id) == []
    state = forge.state(session_id)
    draft = next(c for c in state.contributions.values() if c.participant == "alice" and c.round == 1)
    assert [u.tool for u in draft.tool_uses] == ["read_file"] and draft.tool_uses[0].output == result.output
    markdown = render(export_document(state), "md")
    assert "### Evidence (tool calls)" in markdown and '`read_file(path="notes.md")`' in markdown


def test_participants_without_tools_are_offered_none(forge, workspace):
    session_id = _run(forge, ["mock:alice", "mock:bob"], workspace)
    prompts = [r.event for r in forge.records(session_id) if isinstance(r.event, PromptSent)]
    assert all(not p.tools and not any("TOOLS AVAILABLE" in m.content for m in p.messages) for p in prompts)
    assert not any(isinstance(r.event, ToolCalled) for r in forge.records(session_id))


def test_the_session_default_tools_and_the_recorded_participants(forge, workspace):
    session_id = forge.create_session(GOAL, ["mock:alice", "mock:bob?tools=search"], tools="file",
                                      workspace=str(workspace))
    created = forge.events(session_id)[0]
    assert isinstance(created, SessionCreated)
    tools = {p.name: (p.tools, p.tool_mode, p.replies) for p in created.participants}
    assert tools["alice"][0][:2] == ("read_file", "list_files") and tools["alice"][1] == "native"
    assert "grep" in tools["bob"][0] and "read_file" not in tools["bob"][0]
    assert tools["alice"][2] == "text"  # a participant with tools answers critiques and votes in text
    assert created.settings.workspace == str(workspace.resolve())


def test_bad_tool_settings_are_config_errors(forge, workspace):
    with pytest.raises(ConfigError, match="unknown tool or category 'files'"):
        forge.create_session(GOAL, ["mock:a?tools=files"], workspace=str(workspace))
    with pytest.raises(ConfigError, match="tool_mode=sometimes"):
        forge.create_session(GOAL, ["mock:a?tools=file&tool_mode=sometimes"])
    with pytest.raises(ConfigError, match="replies=json cannot be combined with tools"):
        forge.create_session(GOAL, ["mock:a?tools=file&replies=json"])
    with pytest.raises(ConfigError, match="not a folder"):
        forge.create_session(GOAL, ["mock:a?tools=file"], workspace=str(workspace / "nope"))
    assert forge.sessions() == []


def test_a_path_out_of_the_workspace_or_a_secret_is_a_result_the_model_sees(forge, workspace):
    (workspace.parent / "outside.md").write_text("outside\n")
    (workspace / "config").mkdir()
    (workspace / "config" / ".env").write_text("SECRET=do-not-read\n")
    for goal in ("Review ../outside.md", "Review config/.env carefully", f"Review {workspace.parent}/outside.md"):
        session_id = forge.create_session(goal, ["mock:alice?tools=file", "mock:bob"], workspace=str(workspace),
                                          max_rounds=1)
        list(forge.deliberate(session_id))
        results = [r.event for r in forge.records(session_id) if isinstance(r.event, ToolResult)]
        assert results and all(r.error for r in results), results
        assert not any("SECRET" in r.output or "outside" == r.output.strip() for r in results)
        assert forge.state(session_id).ended and forge.verify(session_id) == []


def test_the_event_log_itself_is_never_readable(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    with Forge(str(root / "forge.db")) as forge:
        session_id = forge.create_session("Review ./forge.db", ["mock:alice?tools=file", "mock:bob"],
                                          workspace=str(root), max_rounds=1)
        list(forge.deliberate(session_id))
        results = [r.event for r in forge.records(session_id) if isinstance(r.event, ToolResult)]
        assert results and all(r.error for r in results)


def test_a_rerun_runs_no_tool_and_reproduces_every_participant(forge, workspace, monkeypatch):
    session_id = _run(forge, ["mock:alice?tools=file", "mock:bob?tools=file&tool_mode=text", "mock:carol"],
                      workspace)

    def no_tools(*args, **kwargs):
        raise AssertionError("a re-run ran a tool")

    monkeypatch.setattr(Toolbox, "call", no_tools)
    (workspace / "notes.md").write_text("changed since\n")  # a live tool would now read something else
    rerun_id = forge.rerun(session_id, timeout=60)
    original, again = forge.records(session_id), forge.records(rerun_id)
    for name in ("alice", "bob", "carol"):
        def facts(records: list[RecordedEvent], participant: str = name) -> list:
            return [(type(e).__name__, getattr(e, "text", None), getattr(e, "output", None),
                     getattr(e, "arguments", None), getattr(e, "content", None)) for e in _of(records, participant)]
        assert facts(again) == facts(original), name
    assert forge.state(rerun_id).status == forge.state(session_id).status
    assert forge.verify(rerun_id) == []


def test_recorded_tools_fail_loudly_on_a_different_call():
    recorded = [RecordedToolCall("r1.a.1", "read_file", {"path": "a.md"}, ToolOutcome("A", duration_ms=5.0))]
    tools = RecordedTools("alice", recorded, max_calls=8, max_seconds=60)
    with pytest.raises(ReplayMismatchError, match=r"called read_file\(\{\"path\":\"b.md\"\}\).*recording called"):
        tools.call("read_file", {"path": "b.md"}, tools.budget())
    budget = tools.budget()
    assert tools.call("read_file", {"path": "a.md"}, budget).output == "A"
    assert budget.live.calls == 1 and budget.live.seconds == pytest.approx(0.005)
    with pytest.raises(ReplayMismatchError, match="no more tool calls"):
        tools.call("read_file", {"path": "a.md"}, budget)


class _Looping:
    """A provider whose model asks for a tool on every reply, for ever."""

    name = "looping"
    model = "looping"
    supports_json = False
    supports_tools = True

    def __init__(self) -> None:
        self.requests: list[LlmRequest] = []

    def stream(self, request: LlmRequest) -> Iterator[StreamChunk]:
        self.requests.append(request)
        n = len(self.requests)
        yield StreamChunk(f"looking again ({n})")
        yield StreamChunk(tool_call=ToolCall(f"c{n}", "list_files", {}))
        yield StreamChunk("", True, "tool_calls", Usage(10, 5))

    def complete(self, request: LlmRequest):  # pragma: no cover - the participant streams
        raise NotImplementedError

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_model_that_keeps_calling_tools_is_stopped_by_the_budget(forge, workspace):
    looping = _Looping()
    forge._participants.for_recorded = lambda info, session_id, events_of: (  # type: ignore[method-assign]
        looping if info.name == "loop" else forge._participants.build("mock:" + info.name))
    session_id = forge.create_session(GOAL, [{"spec": "mock:x?tools=file", "name": "loop"}, "mock:bob"],
                                      workspace=str(workspace), max_tool_calls=3)
    forge.run_round(session_id, "draft", timeout=60)
    records = forge.records(session_id)
    calls = [r.event for r in records if isinstance(r.event, ToolCalled) and r.event.participant == "loop"]
    results = [r.event for r in records if isinstance(r.event, ToolResult) and r.event.participant == "loop"]
    # Three calls run, the budget; the next reply is the last, whatever it asks for: its call is not run.
    assert len(calls) == 3 and len(results) == 3 and all(r.error is None for r in results)
    assert len(looping.requests) == 4
    completed = next(r.event for r in records if isinstance(r.event, ContributionCompleted)
                     and r.event.participant == "loop")
    assert completed.content == "looking again (4)" and completed.usage.input_tokens == 40
    assert verify(records) == []


def test_an_untrusted_caller_names_only_the_read_only_tools_the_operator_allows(forge, workspace):
    with pytest.raises(UntrustedSpecError, match="run_command cannot be enabled through the API"):
        forge.create_session(GOAL, ["mock:a?tools=shell"], trusted=False)
    with pytest.raises(UntrustedSpecError, match="write_file"):
        forge.create_session(GOAL, [{"spec": "mock:a", "tools": "edit"}], trusted=False)
    with pytest.raises(UntrustedSpecError, match="the workspace cannot be set through the API"):
        forge.create_session(GOAL, ["mock:a"], trusted=False, settings={"workspace": str(workspace)})
    with pytest.raises(UntrustedSpecError, match="http_get"):
        forge.create_session(GOAL, ["mock:a"], trusted=False, tools="advanced")
    assert forge.sessions() == []
    session_id = forge.create_session(GOAL, ["mock:a?tools=file,search", "mock:b"], trusted=False)
    assert forge.state(session_id).participants["a"].tools


def test_the_audit_checks_every_call_has_one_result():
    def rec(position: int, event) -> RecordedEvent:
        return RecordedEvent(position, "s", position, type(event).__name__, b"{}", 0, event)

    sent = PromptSent("c1", 1, "a", 1, "m", (), 0.7, 100)
    called = ToolCalled("c1", "a", 1, 1, 1, "k1", "read_file", {"path": "x"})
    done = ContributionCompleted("c1", "a", 1, 1, "", None, TokenUsage(), 1.0)
    problems = [v.problem for v in verify([rec(1, sent), rec(2, called), rec(3, done)])]
    assert any("k1 unanswered" in p for p in problems)
    stray = ToolResult("c1", "a", 1, 1, "k9", "read_file", "x")
    problems = [v.problem for v in verify([rec(1, sent), rec(2, stray)])]
    assert any("answers no call" in p for p in problems)


def test_the_tools_table_of_forge_toml_is_checked():
    from forge_actors.engine.config import parse_config

    config = parse_config({"forge": {"tools": {"api_tools": ["file"], "shell_programs": ["pytest"]}}})
    assert config.tools.api_tools == ("file",) and config.tools.shell_programs == ("pytest",)
    with pytest.raises(ConfigError, match="forge.tools.api_tools: unknown tool or category 'fiel'"):
        parse_config({"forge": {"tools": {"api_tools": ["fiel"]}}})
    with pytest.raises(ConfigError, match="run_command write, run programs or reach the network"):
        parse_config({"forge": {"tools": {"api_tools": ["shell"]}}})
    with pytest.raises(ConfigError, match="forge.tools: unknown key `colour`|colour"):
        parse_config({"forge": {"tools": {"colour": 1}}})
    with pytest.raises(ConfigError, match="max_tool_calls must be 0 or more and at most 64"):
        parse_config({"forge": {"max_tool_calls": 1000}})


def test_a_switch_keeps_the_tools_and_fits_how_they_are_called_to_the_new_provider(forge, workspace):
    session_id = forge.create_session(GOAL, ["mock:alice?tools=file", "mock:bob"], workspace=str(workspace))
    forge.run_round(session_id, "draft", timeout=60)
    assert forge.state(session_id).participants["alice"].tool_mode == "native"
    forge.switch_provider(session_id, "alice", "cli:cat?command=cat")  # a command-line tool: no tool-calling API
    alice = forge.state(session_id).participants["alice"]
    assert alice.provider.startswith("cli:") and alice.tools and alice.tool_mode == "text" and alice.replies == "text"
    with pytest.raises(ConfigError, match="replies=json cannot be combined with tools"):
        forge.switch_provider(session_id, "alice", "mock:alice2?replies=json")
    assert forge.state(session_id).participants["alice"].provider.startswith("cli:")  # nothing changed


class _Malformed(_Looping):
    """Asks once for a tool with arguments that are not an object, then once properly, then answers."""

    def stream(self, request: LlmRequest) -> Iterator[StreamChunk]:
        self.requests.append(request)
        n = len(self.requests)
        if n == 1:
            yield StreamChunk(tool_call=ToolCall("c1", "read_file", {}, "the arguments must be a JSON object"))
        elif n == 2:
            yield StreamChunk(tool_call=ToolCall("c2", "read_file", {"path": "notes.md"}))
        else:
            yield StreamChunk("done")
            yield StreamChunk("", True, "stop", Usage(1, 1))
            return
        yield StreamChunk("", True, "tool_calls", Usage(1, 1))


def test_a_call_with_unreadable_arguments_is_answered_unrun_and_a_rerun_still_matches(forge, workspace):
    forge._participants.for_recorded = lambda info, session_id, events_of: (  # type: ignore[method-assign]
        _Malformed() if info.name == "m" else forge._participants.build("mock:" + info.name))
    session_id = forge.create_session(GOAL, [{"spec": "mock:x?tools=file", "name": "m"}, "mock:bob"],
                                      workspace=str(workspace), max_iterations=1)
    forge.run_round(session_id, "draft", timeout=60)
    results = [r.event for r in forge.records(session_id) if isinstance(r.event, ToolResult)]
    assert [bool(r.error) for r in results] == [True, False]
    assert "not run" in results[0].error and "cache" in results[1].output
    calls = recorded_tool_calls(forge.events(session_id), "m")
    assert [c.arguments for c in calls] == [{"path": "notes.md"}]  # the unrun call has nothing to give back


@pytest.mark.parametrize(("given", "mode"), [("tools=native", "native"), ("tools=text", "text"), ("tools=off", "off")])
def test_tools_may_name_only_the_way_to_call_them(forge, workspace, given, mode):
    from forge_actors.tools import DEFAULT_TOOLS

    session_id = forge.create_session(GOAL, [f"mock:a?{given}"], workspace=str(workspace))
    info = forge.state(session_id).participants["a"]
    assert info.tool_mode == mode and info.tools == (DEFAULT_TOOLS if mode != "off" else ())


class _Summarizing(_Looping):
    """Asks for summarize_file once, then answers; its own model writes the summary (and bills it)."""

    def stream(self, request: LlmRequest) -> Iterator[StreamChunk]:
        self.requests.append(request)
        if len(self.requests) == 1:
            yield StreamChunk(tool_call=ToolCall("s1", "summarize_file", {"path": "notes.md"}))
            yield StreamChunk("", True, "tool_calls", Usage(10, 1))
        else:
            yield StreamChunk("the notes say: invalidate the cache")
            yield StreamChunk("", True, "stop", Usage(20, 5))

    def complete(self, request: LlmRequest):
        from forge_actors.providers.base import LlmResponse

        assert "cache must be invalidated" in request.messages[-1].content
        return LlmResponse("A note on cache invalidation.", "stop", Usage(300, 40), self.model)


def test_summarize_file_asks_the_participants_own_model_and_its_tokens_count(forge, workspace):
    summarizing = _Summarizing()
    forge._participants.for_recorded = lambda info, session_id, events_of: (  # type: ignore[method-assign]
        summarizing if info.name == "s" else forge._participants.build("mock:" + info.name))
    session_id = forge.create_session(GOAL, [{"spec": "mock:x?tools=summarize_file", "name": "s"}, "mock:bob"],
                                      workspace=str(workspace))
    forge.run_round(session_id, "draft", timeout=60)
    records = forge.records(session_id)
    result = next(r.event for r in records if isinstance(r.event, ToolResult))
    assert result.error is None and "A note on cache invalidation" in result.output
    completed = next(r.event for r in records if isinstance(r.event, ContributionCompleted) and r.event.participant == "s")
    assert (completed.usage.input_tokens, completed.usage.output_tokens) == (10 + 300 + 20, 1 + 40 + 5)
