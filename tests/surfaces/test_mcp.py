"""``forge mcp`` end to end: the official SDK's stdio client talks to the server in a real subprocess.

One server process serves the whole module (starting one costs about a second of imports): the
tests share its log, each on its own sessions. Mock participants with no word delay and one
iteration keep a deliberation to a fraction of a second.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from forge_actors.engine import Forge, SessionState

pytestmark = pytest.mark.anyio

FORGE_TOML = """
[forge.tools]
api_tools = ["file", "search"]

[forge.councils.pair]
description = "two mocks"
participants = ["mock:left?word_delay=0", { spec = "mock:right?word_delay=0", name = "right" }]
settings = { max_iterations = 1, seed = 3 }
"""


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("mcp")
    config = folder / "forge.toml"
    config.write_text(FORGE_TOML)
    return folder / "forge.db", config


@pytest.fixture(scope="module")
async def client(server_files: tuple[Path, Path]) -> AsyncIterator[ClientSession]:
    db, config = server_files
    # The documented entry: the `forge mcp` command of this environment.
    params = StdioServerParameters(command=str(Path(sys.executable).with_name("forge")),
                                   args=["mcp", "--db", str(db), "--config", str(config)],
                                   cwd=str(db.parent))
    errors = (db.parent / "stderr.log").open("w")
    try:
        async with stdio_client(params, errlog=errors) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session
    finally:
        errors.close()


def _text(result: Any) -> str:
    return "".join(block.text for block in result.content if block.type == "text")


async def _deliberate(client: ClientSession, arguments: dict[str, Any]) -> tuple[Any, list[tuple[float, str]]]:
    progress: list[tuple[float, str]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message or ""))

    with anyio.fail_after(60):  # a hang fails the test instead of the suite; not a speed assertion
        result = await client.call_tool("deliberate", arguments, progress_callback=on_progress)
    return result, progress


MOCKS = ["mock:a?word_delay=0", "mock:b?word_delay=0"]


async def test_the_tools_are_listed_with_their_arguments(client: ClientSession) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == {"deliberate", "list_sessions", "get_session", "export_session", "search_sessions",
                          "fork_session", "compare_sessions"}
    assert tools["fork_session"].input_schema["required"] == ["session_id", "at_round"]
    assert tools["compare_sessions"].annotations.read_only_hint is True
    deliberate = tools["deliberate"].input_schema
    assert deliberate["required"] == ["goal"]
    assert {"participants", "council", "constraints", "max_iterations", "convergence_threshold",
            "tools"} <= set(deliberate["properties"])
    assert "ctx" not in deliberate["properties"]
    assert tools["get_session"].annotations.read_only_hint is True


async def test_a_deliberation_reports_progress_and_is_recorded(client: ClientSession, server_files) -> None:
    result, progress = await _deliberate(client, {
        "goal": "Name the MCP tool for a council", "participants": MOCKS, "max_iterations": 1,
        "constraints": ["one word"]})
    assert not result.is_error, _text(result)
    outcome = result.structured_content
    session_id = outcome["session_id"]
    assert outcome["outcome"] in ("converged", "max_rounds")
    assert outcome["synthesis"]["content"]
    assert {v["voter"] for v in outcome["votes"]["votes"]} == {"a", "b"}
    assert outcome["resource"] == f"forge://sessions/{session_id}"
    text = _text(result)
    assert session_id in text and "Final synthesis" in text and "Votes" in text

    # One notification at least per round start and end, increasing, ending with the session's end.
    messages = [m for _, m in progress]
    kinds = ("draft", "critique", "synthesis", "convergence")
    for kind in kinds:
        assert any(kind in m and "started" in m for m in messages), messages
        assert any(f"({kind}) completed" in m for m in messages), messages
    assert messages[-1].startswith("session ended: ")
    values = [v for v, _ in progress]
    assert values == sorted(values) and len(set(values)) == len(values)

    state = (await client.call_tool("get_session", {"session_id": session_id[:8]})).structured_content
    assert state["session_id"] == session_id and state["status"] == outcome["outcome"]
    assert [r["kind"] for r in state["rounds"]] == list(kinds)
    assert state["constraints"] == ["one word"]
    critique = state["rounds"][1]
    assert set(critique["mean_scores"]) <= {"a", "b"}
    assert {v["voter"] for v in state["rounds"][3]["votes"]} == {"a", "b"}
    assert state["usage"]["total"]["output_tokens"] > 0

    markdown = _text(await client.call_tool("export_session", {"session_id": session_id, "format": "md"}))
    assert markdown.startswith("# Name the MCP tool for a council") and f"`{session_id}`" in markdown
    exported = json.loads(_text(await client.call_tool("export_session", {"session_id": session_id,
                                                                           "format": "json"})))
    assert exported["schema"] == "forge_actors.session/1"

    resource = await client.read_resource(f"forge://sessions/{session_id}")
    assert resource.contents[0].text == markdown
    assert resource.contents[0].mime_type == "text/markdown"
    listed = {str(r.uri) for r in (await client.list_resources()).resources}
    assert {"forge://sessions", f"forge://sessions/{session_id}"} <= listed
    listing = json.loads((await client.read_resource("forge://sessions")).contents[0].text)
    assert session_id in [row["session_id"] for row in listing]

    sessions = (await client.call_tool("list_sessions", {})).structured_content["sessions"]
    assert session_id in [row["session_id"] for row in sessions]

    # The log is the ordinary one: the engine reads the session like any other.
    db, _ = server_files
    with Forge(str(db)) as forge:
        assert forge.state(session_id).status == outcome["outcome"]


async def test_a_fork_runs_from_its_round_and_compares_with_its_parent(client: ClientSession) -> None:
    result, _ = await _deliberate(client, {"goal": "Name a fork", "participants": MOCKS, "max_iterations": 1})
    parent = result.structured_content["session_id"]
    with anyio.fail_after(60):  # a hang fails the test instead of the suite; not a speed assertion
        forked = await client.call_tool("fork_session", {"session_id": parent[:8], "at_round": 2,
                                                         "participants": ["mock:c"], "drop": ["b"]})
    assert not forked.is_error, _text(forked)
    fork = forked.structured_content["session_id"]
    assert forked.structured_content["outcome"] in ("converged", "max_rounds")
    state = (await client.call_tool("get_session", {"session_id": fork})).structured_content
    assert state["forked_from"]["parent_id"] == parent and state["forked_from"]["round"] == 2
    assert state["rounds"][3]["participants"] == ["a", "c"]
    compared = await client.call_tool("compare_sessions", {"a": parent, "b": fork})
    assert compared.structured_content["first_difference"]["round"] == 3
    assert "# Comparison of two sessions" in _text(compared)
    # the engine's refusals, as for deliberate: a round past the end, a spec the server does not allow
    for arguments, says in (({"at_round": 9}, "past its end"), ({"at_round": 1, "participants": ["cli:x"]}, "cli")):
        refused = await client.call_tool("fork_session", {"session_id": parent, **arguments})
        assert refused.is_error and says in _text(refused)


async def test_search_sessions_finds_past_contributions(client: ClientSession) -> None:
    result, _ = await _deliberate(client, {"goal": "Choose a zanzibarian teapot", "participants": MOCKS,
                                           "max_iterations": 1})
    session_id = result.structured_content["session_id"]
    hits = (await client.call_tool("search_sessions", {"query": "zanzibarian", "limit": 5})).structured_content
    assert session_id in {hit["session_id"] for hit in hits["hits"]}
    assert (await client.call_tool("search_sessions", {"query": "x", "limit": 5})).structured_content == {"hits": []}


async def test_a_configured_council_runs_with_its_settings(client: ClientSession) -> None:
    result, _ = await _deliberate(client, {"goal": "Pick a council name", "council": "pair"})
    assert not result.is_error, _text(result)
    state = (await client.call_tool("get_session", {"session_id": result.structured_content["session_id"]}))
    summary = state.structured_content
    assert [p["name"] for p in summary["participants"]] == ["left", "right"]
    assert summary["settings"]["max_iterations"] == 1 and summary["settings"]["seed"] == 3


@pytest.mark.parametrize(("arguments", "expected"), [
    ({"participants": ["mock:a?tools=shell"]}, "cannot be enabled through the API"),
    ({"participants": ["cli:claude"]}, "not configured on this server"),
    ({"participants": ["openai:gpt-4o?base_url=http://evil.example"]}, "option base_url cannot be set"),
    ({"participants": [{"spec": "", "name": "me", "kind": "human"}]}, "a human cannot take part through MCP"),
    ({"council": "pair", "tools": "edit"}, "cannot be enabled through the API"),
    ({"council": "nope"}, "no council named 'nope'"),
    ({"participants": ["anthropic:claude-x?api_key=sk-secret-1"]}, "option api_key cannot be set"),
    ({"participants": MOCKS, "tools": "shell"}, "cannot be enabled through the API"),
    ({"council": "pair", "participants": MOCKS}, "not both"),
    ({"participants": MOCKS, "max_iterations": 0}, "max_iterations must be at least 1"),
    ({"participants": MOCKS, "convergence_threshold": 2}, "convergence_threshold must be between 0 and 1"),
])
async def test_refusals_are_tool_errors_with_the_engines_message(client: ClientSession, arguments, expected) -> None:
    before = (await client.call_tool("list_sessions", {"limit": 200})).structured_content["total"]
    result = await client.call_tool("deliberate", {"goal": "anything", **arguments})
    assert result.is_error
    text = _text(result)
    assert expected in text, text
    assert "Traceback" not in text and "evil.example" not in text and "sk-secret" not in text
    after = (await client.call_tool("list_sessions", {"limit": 200})).structured_content["total"]
    assert after == before  # refused before anything was recorded


@pytest.mark.parametrize(("tool", "arguments", "expected"), [
    ("get_session", {"session_id": "nosuchsession"}, "nosuchsession"),
    ("export_session", {"session_id": "nosuchsession"}, "nosuchsession"),
    ("export_session", {"session_id": "nosuchsession", "format": "pdf"}, "format must be one of md, json, yaml"),
    ("list_sessions", {"limit": 0}, "limit is between 1 and"),
    ("search_sessions", {"query": "x", "limit": 99}, "limit is between 1 and 20"),
])
async def test_bad_reads_are_tool_errors(client: ClientSession, tool, arguments, expected) -> None:
    result = await client.call_tool(tool, arguments)
    assert result.is_error
    assert expected in _text(result) and "Traceback" not in _text(result)


async def test_an_unknown_session_resource_is_an_error(client: ClientSession) -> None:
    from mcp import MCPError

    with pytest.raises(MCPError, match="nosuchsession"):
        await client.read_resource("forge://sessions/nosuchsession")


async def test_a_cancelled_request_interrupts_its_session(client: ClientSession) -> None:
    # Slow mocks (the most word_delay an untrusted caller may ask), so the call is still running when cancelled.
    slow = ["mock:slow1?word_delay=0.2", "mock:slow2?word_delay=0.2"]
    started = anyio.Event()

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        started.set()

    async def call() -> None:
        await client.call_tool("deliberate", {"goal": "Take your time", "participants": slow},
                               progress_callback=on_progress)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            group.start_soon(call)
            await started.wait()
            group.cancel_scope.cancel()
        # The server interrupts the session (resumable, as after Ctrl-C); wait until the log says so.
        while True:
            rows = (await client.call_tool("list_sessions", {"limit": 1})).structured_content["sessions"]
            if rows[0]["title"] == "Take your time" and rows[0]["status"] == "interrupted":
                break
            await anyio.sleep(0.05)
    state = (await client.call_tool("get_session", {"session_id": rows[0]["session_id"]})).structured_content
    assert not state["ended"] and state["reason"] == "the MCP client cancelled the request or went away"


@pytest.mark.parametrize(("config_text", "log_bytes", "expected"), [
    ("[forge.councils.x]\nparticipants = []\n", None, "forge.councils.x.participants"),
    ("", b"not a database", "is not an event log"),
], ids=["bad-config", "not-a-log"])
def test_a_bad_config_or_log_is_one_line_on_stderr_and_exit_2(tmp_path: Path, config_text, log_bytes,
                                                             expected) -> None:
    import subprocess

    config = tmp_path / "forge.toml"
    config.write_text(config_text)
    db = tmp_path / "f.db"
    if log_bytes is not None:
        db.write_bytes(log_bytes)
    done = subprocess.run([sys.executable, "-m", "forge_actors.surfaces.mcp", "--db", str(db), "--config", str(config)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""  # stdout is the protocol's alone
    assert expected in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# -- the plan, in process ---------------------------------------------------------------------------------


def _forge(tmp_path: Path, toml: str = "") -> Forge:
    import tomllib

    from forge_actors.engine.config import parse_config

    return Forge(str(tmp_path / "forge.db"), parse_config(tomllib.loads(toml), source="forge.toml"))


def _created(forge: Forge, plan: Any) -> SessionState:
    """The session a plan creates for an untrusted caller (not started), as recorded."""
    session_id = forge.create_session("Plan it", plan.participants, settings=plan.settings, tools=plan.tools,
                                      council=plan.council, trusted=False)
    return forge.state(session_id)


def test_without_participants_or_council_the_engines_defaults_are_used(tmp_path: Path, monkeypatch) -> None:
    from forge_actors.surfaces.council import plan_deliberation

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with _forge(tmp_path) as forge:
        plan = plan_deliberation(forge, max_iterations=2)
        assert plan.participants is None and plan.council is None
        assert plan.settings == {"max_iterations": 2}
        state = _created(forge, plan)
        assert [p.provider.split("?")[0] for p in state.participants.values()] == [
            "mock:alice", "mock:bob", "mock:carol"]
        assert state.settings.max_rounds == 2


def test_the_council_named_forge_is_the_default(tmp_path: Path) -> None:
    from forge_actors.surfaces.council import plan_deliberation

    toml = '[forge.councils.forge]\nparticipants = ["mock:x"]\nsettings = { max_iterations = 3, seed = 1 }\n' \
           'tools = "file"\n'
    with _forge(tmp_path, toml) as forge:
        plan = plan_deliberation(forge, convergence_threshold=0.5)
        assert plan.council == "forge" and plan.participants is None and plan.tools == ""
        state = _created(forge, plan)
        assert list(state.participants) == ["x"] and state.participants["x"].tools  # the council's tools
        assert (state.settings.max_rounds, state.settings.seed, state.settings.convergence_threshold) == (3, 1, 0.5)
        assert _created(forge, plan_deliberation(forge, max_iterations=1)).settings.max_rounds == 1
        # Participants the caller names are its own: checked, and no council applies.
        named = plan_deliberation(forge, participants=["mock:y"], tools="search")
        assert named.council is None and named.tools == "search"
        assert list(_created(forge, named).participants) == ["y"]


def test_a_councils_own_tools_are_the_operators_but_the_callers_are_checked(tmp_path: Path) -> None:
    from forge_actors.engine import UntrustedSpecError
    from forge_actors.surfaces.council import plan_deliberation

    toml = '[forge.councils.dev]\nparticipants = ["mock:x"]\ntools = "edit"\n'
    with _forge(tmp_path, toml) as forge:
        state = _created(forge, plan_deliberation(forge, council="dev"))  # written by the operator: used as is
        assert "write_file" in state.participants["x"].tools
        with pytest.raises(UntrustedSpecError, match="write_file, apply_patch cannot be enabled"):
            _created(forge, plan_deliberation(forge, council="dev", tools="edit"))
