"""Whole deliberations against OpenAI/Anthropic-compatible servers that nobody here wrote: mockllm and
llm-katan (echo backend), installed from PyPI and started by these tests (tests/third_party_support.py
says what each does and how they are installed). Two participants on the server, on each route it
serves, deliberate with a mock; their replies are canned or echoes, so the tests assert what the engine
does with them: the session runs to an end the log decides, no empty answer is a success, an unread
critique or vote was re-asked first, the audit passes, and each answer is paid for once."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import third_party_support
from third_party_support import KINDS, MOCKLLM, Servers, ThirdPartyServer

from eventstore import RecordedEvent
from forge_actors.core import rounds
from forge_actors.core.audit import verify
from forge_actors.core.events import (
    ContributionCompleted,
    ContributionFailed,
    CritiqueRecorded,
    PromptSent,
    RoundStarted,
    SessionCreated,
    SessionEnded,
    ToolCalled,
    VoteRecorded,
)
from forge_actors.core.state import rebuild
from forge_actors.engine import Forge

GOAL = "Review notes.md and propose a caching plan"
ON_SERVER = ("ana", "ben")
MOCK = "mock:carol?word_delay=0"
ROUTES = [pytest.param(kind.name, route, id=f"{kind.name}-{route}") for kind in KINDS.values() for route in kind.routes]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """Each server started once for the module, on first use; skipped when they are not installed."""
    with Servers(tmp_path_factory.mktemp("third-party")) as started:
        yield started


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "notes.md").write_text("# Notes\nThe cache must be invalidated on every write.\n")
    return root


def deliberate(forge: Forge, server: ThirdPartyServer, route: str, options: dict[str, str],
               **settings: object) -> tuple[list[RecordedEvent], int]:
    """A whole deliberation of ON_SERVER on ``server`` with the mock; its log and the requests the
    server answered meanwhile."""
    before = server.requests(route)
    participants = [{"spec": server.spec(route, **options), "name": name} for name in ON_SERVER] + [MOCK]
    session_id = forge.create_session(GOAL, participants, max_iterations=2, seed=3, round_timeout_seconds=60,
                                      **settings)
    list(forge.deliberate(session_id))
    return forge.records(session_id), server.requests(route) - before


def of_type(records: list[RecordedEvent], kind: type) -> list:
    return [r.event for r in records if isinstance(r.event, kind)]


def assert_an_honest_deliberation(records: list[RecordedEvent], requests: int, *, no_answer: bool = False) -> None:
    """What must hold of any deliberation, whatever the server answered. ``no_answer``: the server never
    answers in text once tools are offered (it calls one even when told not to): a contribution whose
    tool budget is spent then fails as empty (never a success with no text)."""
    events = [r.event for r in records]
    assert verify(records) == []
    ended = events[-1]
    assert isinstance(ended, SessionEnded), f"the session did not end: its last event is {ended!r}"
    decided = rounds.next_step(rebuild(events[:-1]))
    assert decided == rounds.EndSession(ended.outcome, ended.reason, ended.final_score), (decided, ended)

    failed = [(e.round, e.participant, e.error_kind, e.message) for e in of_type(records, ContributionFailed)
              if e.participant in ON_SERVER and not (no_answer and e.error_kind == "empty_response"
                                                     and "past the tool budget" in e.message)]
    assert not failed, f"contributions failed against a server that answers: {failed}"
    empty = [(e.round, e.participant, e.finish_reason, e.fallback) for e in of_type(records, ContributionCompleted)
             if not e.content.strip()]
    assert not empty, f"recorded as completed with no text: {empty}"

    prompts = of_type(records, PromptSent)
    kinds = {started.round: started.kind for started in of_type(records, RoundStarted)}
    reasked = {(p.round, p.participant) for p in prompts if p.purpose == "reask"}
    shown = {(p.round, p.participant): p.proposal_labels for p in prompts
             if kinds[p.round] == "critique" and p.purpose == "initial"}
    critiques = of_type(records, CritiqueRecorded)
    answered = {(e.round, e.participant) for e in of_type(records, ContributionCompleted)}
    for (round_number, critic), labels in shown.items():
        if (round_number, critic) not in answered:  # it failed (allowed above): it critiqued nothing
            continue
        recorded = [c for c in critiques if (c.round, c.critic) == (round_number, critic)]
        assert sorted(c.label for c in recorded) == sorted(labels), (critic, round_number, recorded)
        unread = [c.label for c in recorded if c.score is None]
        assert not unread or (round_number, critic) in reasked, f"{critic} unscored without a re-ask: {unread}"
    votes = of_type(records, VoteRecorded)
    for started in of_type(records, RoundStarted):
        if started.kind != "convergence":
            continue
        for voter in started.participants:
            if (started.round, voter) not in answered:
                continue
            cast = [v for v in votes if (v.round, v.voter) == (started.round, voter)]
            assert len(cast) == 1, (voter, started.round, cast)
            assert cast[0].vote != "ABSTAIN" or (started.round, voter) in reasked, f"{voter} abstained unasked"

    # Each answer is paid for once: one request per prompt and per tool turn. A server that cannot
    # stream may cost each participant one failed stream, once, not one per contribution.
    asked = sum(1 for p in prompts if p.participant in ON_SERVER)
    turns = len({(e.contribution_id, e.attempt, e.turn) for e in of_type(records, ToolCalled)
                 if e.participant in ON_SERVER})
    fallbacks = [e for e in of_type(records, ContributionCompleted) if e.fallback]
    assert asked + turns <= requests <= asked + turns + len(ON_SERVER), (
        f"the server answered {requests} requests for {asked} prompts and {turns} tool turns; "
        f"{len(fallbacks)} answers came from a non-streaming call after a stream"
        + (f", the first because {fallbacks[0].fallback}" if fallbacks else ""))


@pytest.mark.parametrize(("name", "route"), ROUTES)
def test_a_deliberation_with_text_replies(forge, servers, name, route):
    server = servers.get(name)
    records, requests = deliberate(forge, server, route, {"replies": "text"})
    assert_an_honest_deliberation(records, requests)
    asked = [p for p in of_type(records, PromptSent) if p.participant in ON_SERVER]
    assert asked and all(p.response_schema is None and not p.tools for p in asked)


@pytest.mark.parametrize(("name", "route"), ROUTES)
def test_a_deliberation_with_structured_replies(forge, servers, name, route):
    server = servers.get(name)
    records, requests = deliberate(forge, server, route, {"replies": "json"})
    assert_an_honest_deliberation(records, requests)
    created = of_type(records, SessionCreated)[0]
    assert {p.name: p.replies for p in created.participants if p.name in ON_SERVER} == dict.fromkeys(ON_SERVER, "json")
    schemas = {(p.participant, p.response_schema) for p in of_type(records, PromptSent)
               if p.participant in ON_SERVER and p.purpose == "initial"}
    assert {schema for _, schema in schemas} >= {"critique", "vote"}
    if route in KINDS[name].structured:  # the server answers in JSON: every vote is read from it
        votes = [v for v in of_type(records, VoteRecorded) if v.voter in ON_SERVER]
        assert votes and all(v.vote != "ABSTAIN" for v in votes), votes


@pytest.mark.parametrize(("name", "route"), ROUTES)
def test_a_deliberation_with_native_tools(forge, servers, workspace, name, route):
    server = servers.get(name)
    records, requests = deliberate(forge, server, route, {"tools": "file"}, workspace=str(workspace),
                                   max_tool_calls=2)
    assert_an_honest_deliberation(records, requests, no_answer=route in KINDS[name].ignores_tool_choice)
    drafts = [p for p in of_type(records, PromptSent) if p.participant in ON_SERVER and p.round == 1]
    assert drafts and all("read_file" in p.tools for p in drafts)  # offered natively, and the server took them
    called = {e.participant for e in of_type(records, ToolCalled) if e.round == 1}
    if route in KINDS[name].calls_tools:
        assert called >= set(ON_SERVER), f"no tool call recorded for {set(ON_SERVER) - called}"
    else:
        assert not called


def test_without_the_servers_installed_the_tests_skip_or_fail_where_required(monkeypatch, tmp_path):
    monkeypatch.setattr(third_party_support, "VENV", tmp_path / "nowhere")
    monkeypatch.delenv(third_party_support.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="make third-party-servers"):
        Servers(tmp_path).__enter__()
    monkeypatch.setenv(third_party_support.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="FORGE_REQUIRE_THIRD_PARTY is set"):
        Servers(tmp_path).__enter__()


def test_a_stopped_server_leaves_no_process_and_frees_its_port(tmp_path):
    third_party_support.skip_unless_available()
    with ThirdPartyServer(MOCKLLM, tmp_path) as server:
        assert httpx.get(f"{server.url}/models", timeout=10).status_code == 200
        group, port = server.process_group, server.port
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
