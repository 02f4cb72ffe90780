"""One policy for every untrusted caller, field by field, on every surface.

``engine.trust`` decides what a caller from outside may write in each field of a session — its
texts (``TEXT_CAPS``), its settings (free, capped at the operator's value, or the operator's
only), its participants and tools — and ``Forge.create_session(trusted=False)`` applies it
whatever the caller names or leaves out (a request naming no participants included: the
operator's then deliberate, but the caller's settings are still the caller's). Each hostile field
below is sent through the engine, the HTTP API, the OpenAI-compatible ``/v1`` and MCP where that
surface has the field, and each refusal must be a client error naming the field, with nothing
recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from forge_actors.core.events import SessionSettings
from forge_actors.core.rounds import with_log_limits
from forge_actors.engine import TEXT_CAPS, ConfigError, Forge, InvalidCommandError, UntrustedSpecError
from forge_actors.engine.config import ForgeConfig, parse_config
from forge_actors.engine.trust import CAPPED_SETTINGS, FREE_SETTINGS, OPERATOR_SETTINGS
from forge_actors.surfaces.mcp import build_server
from forge_actors.surfaces.server.app import API
from forge_actors.surfaces.server.runner import ServerThread

OPERATOR = with_log_limits(SessionSettings())  # the operator's settings of the config below: the defaults
#: Above each capped setting's operator value, by the least step.
OVER_THE_OPERATOR = {
    "max_iterations": OPERATOR.max_rounds + 1,
    "round_timeout_seconds": OPERATOR.round_timeout_seconds + 1,
    "max_tokens": OPERATOR.max_tokens + 1,
    "max_retries": OPERATOR.max_retries + 1,
    "max_tool_calls": OPERATOR.max_tool_calls + 1,
    "max_tool_seconds": OPERATOR.max_tool_seconds + 1,
    "human_wait_seconds": 1,
    "max_reply_chars": OPERATOR.max_reply_chars + 1,  # type: ignore[operator]
    "max_session_bytes": OPERATOR.max_session_bytes + 1,  # type: ignore[operator]
}


def over(field: str, *, items: bool = False) -> Any:
    """A value one character (or one item) past the cap of ``field``."""
    cap = TEXT_CAPS[field]
    return ["x"] * (cap.items + 1) if items else "x" * (cap.chars + 1)


#: (what is hostile, the session request's fields, a word the refusal names). Each request names no
#: participants unless the row is about them: the operator's then deliberate, and that must not
#: make the caller's other fields trusted.
HOSTILE_SESSIONS: list[tuple[str, dict[str, Any], str]] = [
    ("a long goal", {"goal": over("goal")}, "goal"),
    ("a long title", {"title": over("title")}, "title"),
    ("a title of two lines", {"title": "one\ntwo"}, "title"),
    ("too many constraints", {"constraints": over("constraints", items=True)}, "constraints"),
    ("a long constraint", {"constraints": [over("constraints")]}, "constraints"),
    ("a workspace that exists", {"config": {"workspace": "/"}}, "workspace"),
    ("a workspace that does not exist", {"config": {"workspace": "/no/such/folder"}}, "workspace"),
    *((f"{name} above the operator's", {"config": {name: value}}, name) for name, value in OVER_THE_OPERATOR.items()),
    ("a long participant name", {"participants": [{"spec": "mock:a", "name": over("name")}]}, "name"),
    ("a participant name of two lines", {"participants": [{"spec": "mock:a", "name": "a\nb"}]}, "name"),
    ("a long model name", {"participants": ["mock:" + "m" * 101]}, "not a model or tool name"),
    ("a long persona name", {"participants": [{"spec": "mock:a", "persona": {"name": over("name")}}]}, "name"),
    ("a long persona tone", {"participants": [{"spec": "mock:a", "persona": {"tone": over("persona.tone")}}]},
     "persona.tone"),
    ("a long persona approach",
     {"participants": [{"spec": "mock:a", "persona": {"approach": over("persona.approach")}}]}, "persona.approach"),
    ("too many traits",
     {"participants": [{"spec": "mock:a", "persona": {"traits": over("persona.traits", items=True)}}]},
     "persona.traits"),
    ("a long specialty",
     {"participants": [{"spec": "mock:a", "persona": {"specialties": [over("persona.specialties")]}}]},
     "persona.specialties"),
    ("a long human name", {"participants": [{"kind": "human", "name": over("name")}]}, "name"),
    ("a tool that writes", {"participants": [{"spec": "mock:a", "tools": "edit"}]}, "cannot be enabled"),
    ("a command", {"participants": ["cli:x?command=id"]}, "command"),
]
IDS = [row[0] for row in HOSTILE_SESSIONS]


def config() -> ForgeConfig:
    # A council named `forge` with a tool: what an untrusted caller naming no participants gets.
    return parse_config({"forge": {"councils": {"forge": {"participants": ["mock:op?word_delay=0"],
                                                          "tools": "file"}}}}, source="forge.toml")


@pytest.fixture(scope="module")
def forge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forge]:
    with Forge(str(tmp_path_factory.mktemp("untrusted") / "forge.db"), config()) as engine:
        yield engine


@pytest.fixture(scope="module")
def server(forge: Forge) -> Iterator[ServerThread]:
    with ServerThread(forge) as running:
        yield running


def create(forge: Forge, fields: dict[str, Any], *, trusted: bool = False) -> str:
    return forge.create_session(fields.get("goal", "Design a TODO app API"), fields.get("participants"),
                                fields.get("title"), constraints=fields.get("constraints", ()),
                                settings=fields.get("config"), trusted=trusted)


# -- the policy itself ---------------------------------------------------------------------------------


def test_every_setting_is_classified_once() -> None:
    """A new setting must be placed: free, capped at the operator's value, or the operator's only."""
    classified = [*FREE_SETTINGS, *CAPPED_SETTINGS, *OPERATOR_SETTINGS]
    assert sorted(classified) == sorted(SessionSettings.__struct_fields__)
    assert len(set(classified)) == len(classified)


@pytest.mark.parametrize(("what", "fields", "named"), HOSTILE_SESSIONS, ids=IDS)
def test_the_engine_refuses_each_hostile_field(forge: Forge, what: str, fields: dict, named: str) -> None:
    before = len(forge.sessions())
    with pytest.raises(UntrustedSpecError, match=named) as refused:
        create(forge, fields)
    assert len(forge.sessions()) == before
    assert "/no/such" not in str(refused.value)


def test_a_trusted_caller_is_held_to_none_of_the_caps(forge: Forge, tmp_path: Path) -> None:
    fields = {"goal": over("goal"), "title": over("title"), "constraints": [over("constraints")],
              "participants": [{"spec": "mock:a", "name": over("name")}],
              "config": {"workspace": str(tmp_path), "max_iterations": 20}}
    state = forge.state(create(forge, fields, trusted=True))
    assert state.settings.workspace == str(tmp_path) and state.settings.max_rounds == 20


def test_settings_within_the_operators_are_the_callers(forge: Forge) -> None:
    state = forge.state(create(forge, {"config": {"max_iterations": 2, "seed": 9, "convergence_threshold": 0.5,
                                                  "max_session_bytes": 1000}}))
    assert (state.settings.max_rounds, state.settings.seed, state.settings.max_session_bytes) == (2, 9, 1000)


def test_a_councils_limits_are_the_operators_for_its_sessions(tmp_path: Path) -> None:
    """A council's settings are the operator's: a caller naming it (or naming no one, for the council
    ``forge``) may lower them, never raise them back up to forge.toml's."""
    config = parse_config({"forge": {"councils": {
        "forge": {"participants": ["mock:op?word_delay=0"], "settings": {"max_iterations": 1, "max_tokens": 100}},
        "lean": {"participants": ["mock:op?word_delay=0"], "settings": {"max_session_bytes": 20_000}}}}},
        source="forge.toml")
    with Forge(str(tmp_path / "forge.db"), config) as engine:
        for council, asked, named in ((None, {"max_iterations": 3}, "max_iterations"),
                                      (None, {"max_tokens": 512}, "max_tokens"),
                                      ("lean", {"max_session_bytes": 10**8}, "max_session_bytes")):
            with pytest.raises(UntrustedSpecError, match=f"{named} may be at most"):
                engine.create_session("g", council=council, settings=asked, trusted=False)
        state = engine.state(engine.create_session("g", settings={"max_tokens": 50}, trusted=False))
        assert (state.settings.max_rounds, state.settings.max_tokens) == (1, 50)
        assert engine.sessions() and len(engine.sessions()) == 1


def test_a_capped_setting_given_as_text_is_refused_not_converted(forge: Forge) -> None:
    for name in ("max_session_bytes", "max_tokens", "round_timeout_seconds"):
        with pytest.raises(UntrustedSpecError, match=f"{name} is a number"):
            create(forge, {"config": {name: "9999999999"}})
    with pytest.raises(ConfigError, match="max_iterations: a whole number"):  # refused by its own reader
        create(forge, {"config": {"max_iterations": "9999999999"}})


def test_iterables_are_read_once(forge: Forge) -> None:
    session_id = forge.create_session("g", (p for p in ["mock:a", "mock:b"]), constraints=(c for c in ["brief"]),
                                      trusted=False)
    state = forge.state(session_id)
    assert list(state.participants) == ["a", "b"] and state.constraints == ("brief",)


def test_with_no_participants_the_operators_deliberate_with_the_operators_tools(forge: Forge) -> None:
    state = forge.state(create(forge, {}))
    assert list(state.participants) == ["op"] and state.participants["op"].tools  # the council `forge`, as written


def test_a_refused_workspace_says_the_same_whatever_it_names(forge: Forge, tmp_path: Path) -> None:
    messages = set()
    for path in ("/", str(tmp_path), "/no/such/folder", "../..", "~"):
        with pytest.raises(UntrustedSpecError) as refused:
            create(forge, {"config": {"workspace": path}})
        messages.add(str(refused.value))
    assert len(messages) == 1


def test_human_input_stops_once_the_log_budget_is_spent(forge: Forge) -> None:
    session_id = create(forge, {"participants": ["mock:a", "mock:b"], "config": {"max_session_bytes": 50_000}})
    taken = 0
    with pytest.raises(InvalidCommandError, match="max_session_bytes"):
        for _ in range(10):
            forge.add_human_draft(session_id, "ada", "d" * TEXT_CAPS["draft"].chars, trusted=False)
            taken += 1
    assert taken == 3  # 20,000 characters each: the third passes the 50,000 bytes, the fourth is refused
    ended = [r.event for r in forge.deliberate(session_id)][-1]
    assert ended.outcome == "budget_spent"  # spent before the first round: no round is paid for


def test_human_input_and_cancel_reasons_are_capped(forge: Forge) -> None:
    session_id = create(forge, {"participants": ["mock:a", "mock:b"]})
    for call in (lambda: forge.add_human_draft(session_id, "ada", over("draft"), trusted=False),
                 lambda: forge.add_human_draft(session_id, over("name"), "a draft", trusted=False),
                 lambda: forge.cast_vote(session_id, "ada", "AGREE", over("reasons", items=True), trusted=False),
                 lambda: forge.cast_vote(session_id, "ada", "AGREE", (), [over("concerns")], trusted=False),
                 lambda: forge.cancel(session_id, over("reason"), trusted=False)):
        with pytest.raises(UntrustedSpecError):
            call()
    state = forge.state(session_id)
    assert state.status == "created" and "ada" not in state.participants


# -- the HTTP API ------------------------------------------------------------------------------------------


def post(server: ServerThread, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + API + path, json=body, timeout=30)


@pytest.mark.parametrize(("what", "fields", "named"), HOSTILE_SESSIONS, ids=IDS)
def test_the_http_api_refuses_each_hostile_field(server: ServerThread, what: str, fields: dict, named: str) -> None:
    before = len(server.forge.sessions())
    response = post(server, "/sessions", {"goal": "Design a TODO app API", **fields, "deliberate": True})
    assert response.status_code == 422, response.text
    assert named in response.json()["error"]
    assert "/no/such" not in response.text
    assert len(server.forge.sessions()) == before


def test_the_http_api_caps_human_input_and_cancel_reasons(server: ServerThread) -> None:
    session_id = create(server.forge, {"participants": ["mock:a", "mock:b"]})
    refused = [
        post(server, f"/sessions/{session_id}/drafts", {"author": "ada", "content": over("draft")}),
        post(server, f"/sessions/{session_id}/drafts", {"author": over("name"), "content": "a draft"}),
        post(server, f"/sessions/{session_id}/votes", {"voter": "ada", "vote": "AGREE",
                                                      "reasons": over("reasons", items=True)}),
        post(server, f"/sessions/{session_id}/votes", {"voter": "ada", "vote": "AGREE",
                                                      "concerns": [over("concerns")]}),
        post(server, f"/sessions/{session_id}/cancel", {"reason": over("reason")}),
    ]
    assert [r.status_code for r in refused] == [422] * len(refused), [r.text for r in refused]
    assert server.forge.state(session_id).status == "created"


# -- the OpenAI-compatible endpoint (the caller writes only messages) ----------------------------------------


@pytest.mark.parametrize(("messages", "named"), [
    ([{"role": "user", "content": over("goal")}], "user message"),
    ([{"role": "system", "content": over("constraints")}, {"role": "user", "content": "hi"}], "system message"),
    ([{"role": "system", "content": "be brief"}] * (TEXT_CAPS["constraints"].items + 1)
     + [{"role": "user", "content": "hi"}], "constraints"),
], ids=["a long goal", "a long constraint", "too many constraints"])
def test_v1_refuses_each_hostile_field(server: ServerThread, messages: list, named: str) -> None:
    before = len(server.forge.sessions())
    response = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "forge", "messages": messages},
                          timeout=30)
    assert 400 <= response.status_code < 500, response.text
    assert named in response.json()["error"]["message"]
    assert len(server.forge.sessions()) == before


# -- MCP (in process: the same server `forge mcp` serves over stdio) -----------------------------------------


#: The MCP tool's arguments for each hostile field it has (it takes no title, workspace or other setting).
HOSTILE_MCP: list[tuple[str, dict[str, Any], str]] = [
    ("a long goal", {"goal": over("goal")}, "goal"),
    ("too many constraints", {"constraints": over("constraints", items=True)}, "constraints"),
    ("a long constraint", {"constraints": [over("constraints")]}, "constraints"),
    ("max_iterations above the operator's", {"max_iterations": OPERATOR.max_rounds + 1}, "max_iterations"),
    ("a long participant name", {"participants": [{"spec": "mock:a", "name": over("name")}]}, "name"),
    ("a long persona tone", {"participants": [{"spec": "mock:a", "persona": {"tone": over("persona.tone")}}]},
     "persona.tone"),
    ("a tool that writes", {"tools": "edit"}, "cannot be enabled"),
    ("a command", {"participants": ["cli:x?command=id"]}, "command"),
]


@pytest.mark.parametrize(("what", "arguments", "named"), HOSTILE_MCP, ids=[row[0] for row in HOSTILE_MCP])
def test_mcp_refuses_each_hostile_field(forge: Forge, what: str, arguments: dict, named: str) -> None:
    async def call() -> Any:
        async with Client(build_server(forge)) as client:
            with anyio.fail_after(30):  # a hang fails the test instead of the suite
                return await client.call_tool("deliberate", {"goal": "Design a TODO app API", **arguments})

    before = len(forge.sessions())
    result = anyio.run(call)
    assert result.is_error
    assert named in "".join(block.text for block in result.content if block.type == "text")
    assert len(forge.sessions()) == before
