"""Whole deliberations against servers that behave like third-party ones in the wild.

What a server cannot do is learned once per participant's provider and recorded as a fact
(``ProviderLimitFound``), and the participant is asked around it from then on: a server that answers a
streaming request with a whole JSON body is read from that body (never asked twice) and then asked
without streaming; one that refuses ``response_format`` or ``tools`` with a 400 is asked again at once for
text replies, or with tools as text. A re-run meets the same answers and learns the same. A contribution
with no text and no tool call is never a success, whichever way it came.
"""

from __future__ import annotations

from pathlib import Path

from compatible_server import CompatibleServer, Manner

from forge_actors.core.audit import verify
from forge_actors.core.events import (
    ContributionCompleted,
    ContributionFailed,
    CritiqueRecorded,
    PromptSent,
    ProviderLimitFound,
    SessionEnded,
    ToolCalled,
    VoteRecorded,
)
from forge_actors.engine import Forge

GOAL = "Design a TODO app API"


def specs(server: CompatibleServer, kind: str = "openai", names: tuple[str, ...] = ("alice", "bob"),
          **options: str) -> list[str]:
    extra = "".join(f"&{key}={value}" for key, value in options.items())
    key = "&api_key=test-key" if kind == "anthropic" else ""
    return [f"{kind}:{name}?base_url={server.url}{key}{extra}" for name in names]


def deliberate(forge: Forge, participants: list[str], **settings: object) -> tuple[str, list]:
    session_id = forge.create_session(GOAL, participants, **{"max_iterations": 1, "max_retries": 1, **settings})
    events = [r.event for r in forge.deliberate(session_id)]
    assert verify(forge.records(session_id)) == []
    return session_id, events


def of(events: list, kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def assert_no_empty_success(events: list) -> None:
    assert all(c.content.strip() for c in of(events, ContributionCompleted))


def per_participant(events: list) -> dict[str, list[str]]:
    """Each participant's events, by type, in order."""
    found: dict[str, list[str]] = {}
    for event in events:
        name = getattr(event, "participant", None) or getattr(event, "critic", None) or getattr(event, "voter", None)
        if name is not None:
            found.setdefault(name, []).append(type(event).__name__)
    return found


def limits_of(events: list) -> list[tuple[str, str]]:
    return [(e.participant, e.limit) for e in of(events, ProviderLimitFound)]


def test_a_server_that_never_streams_is_asked_once_per_contribution(tmp_path: Path) -> None:
    for kind in ("openai", "anthropic"):
        with CompatibleServer(Manner(streams=False)) as server, Forge(str(tmp_path / f"{kind}.db")) as forge:
            session_id, events = deliberate(forge, specs(server, kind))
            rerun = forge.rerun(session_id)
            rerun_events = forge.events(rerun)
        assert isinstance(events[-1], SessionEnded) and events[-1].outcome in ("converged", "max_rounds"), events[-1]
        assert sorted(limits_of(events)) == [("alice", "streaming"), ("bob", "streaming")]
        evidence = {e.evidence for e in of(events, ProviderLimitFound)}
        assert evidence == {"the server answered application/json to a streaming request: it does not stream"}
        # Each contribution paid once: one streamed request per participant (the one that taught it), then
        # every request without streaming.
        assert len(server.requests) == len(of(events, ContributionCompleted)), kind
        assert len(server.streamed()) == 2, kind
        assert_no_empty_success(events)
        # The re-run learned the same, at the same moments of each participant's part (only the interleaving
        # of different participants may differ).
        assert per_participant(rerun_events) == per_participant(events)
        assert sorted((c.participant, c.round, c.fallback) for c in of(rerun_events, ContributionCompleted)) == \
            sorted((c.participant, c.round, c.fallback) for c in of(events, ContributionCompleted))


def test_tool_calls_of_a_whole_body_are_run_as_a_stream_s_would_be(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# A project\n")
    with CompatibleServer(Manner(streams=False)) as server, Forge(str(tmp_path / "forge.db")) as forge:
        _, events = deliberate(forge, [*specs(server, names=("tooler",), tools="file", tool_mode="native"),
                                       "mock:bob?word_delay=0"], workspace=str(tmp_path))
    assert any(call.participant == "tooler" and call.tool == "list_files" for call in of(events, ToolCalled))
    assert_no_empty_success(events)
    assert ("tooler", "streaming") in limits_of(events)


def test_a_stream_that_fails_then_a_plain_call_that_answers_teaches_the_same(tmp_path: Path) -> None:
    """An empty stream (or a broken one) answered by the plain call after it: the server's streaming does
    not work, so it is not paid twice again; the re-run meets the same failure and falls back alike."""
    with CompatibleServer(Manner(empty_streams=1)) as server, Forge(str(tmp_path / "forge.db")) as forge:
        session_id, events = deliberate(forge, specs(server, names=("alice",)) + ["mock:bob?word_delay=0"])
        rerun_events = forge.events(forge.rerun(session_id))
    alices = [c for c in of(events, ContributionCompleted) if c.participant == "alice"]
    assert "without any text" in alices[0].fallback and alices[0].content.strip()
    assert [e.limit for e in of(events, ProviderLimitFound)] == ["streaming"]
    assert of(events, ProviderLimitFound)[0].error_kind == "empty_response"
    assert len(server.requests) == len(alices) + 1  # the empty stream, once; then one call a reply
    assert [c.fallback for c in of(rerun_events, ContributionCompleted) if c.participant == "alice"] == [
        c.fallback for c in alices]


def test_a_server_refusing_response_format_is_asked_for_text_replies_at_once(tmp_path: Path) -> None:
    with CompatibleServer(Manner(refuses=frozenset({"response_format"}))) as server, \
            Forge(str(tmp_path / "forge.db")) as forge:
        session_id, events = deliberate(forge, specs(server, replies="json"), max_retries=0)
        rerun_events = forge.events(forge.rerun(session_id))
    assert sorted(limits_of(events)) == [("alice", "structured_replies"), ("bob", "structured_replies")]
    refused = [f for f in of(events, ContributionFailed) if f.error_kind == "bad_request"]
    assert len(refused) == 2 and all(f.will_retry for f in refused)  # asked again at once, max_retries=0 or not
    structured = [p for p in of(events, PromptSent) if p.response_schema is not None]
    assert len(structured) == 2  # each asked for a structured reply once: the request refused
    assert all(c.score is not None for c in of(events, CritiqueRecorded))
    assert {v.vote for v in of(events, VoteRecorded)} <= {"AGREE", "DISAGREE"}
    assert sorted(limits_of(rerun_events)) == sorted(limits_of(events))


def test_a_server_refusing_tools_is_offered_them_as_text(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# A project\n")
    with CompatibleServer(Manner(refuses=frozenset({"tools"}))) as server, Forge(str(tmp_path / "forge.db")) as forge:
        _, events = deliberate(forge, [*specs(server, names=("tooler",), tools="file", tool_mode="native"),
                                       "mock:bob?word_delay=0"], workspace=str(tmp_path), max_retries=0)
    assert limits_of(events) == [("tooler", "native_tools")]
    tooler_prompts = [p for p in of(events, PromptSent) if p.participant == "tooler"]
    assert tooler_prompts[0].tools and not tooler_prompts[1].tools  # natively once, as text from then on
    assert "TOOL_CALL" in "".join(m.content for m in tooler_prompts[1].messages)
    assert_no_empty_success(events)


def test_an_answer_with_no_text_is_a_failure_whichever_way_it_came(tmp_path: Path) -> None:
    with CompatibleServer(Manner(streams=False, empty_whole=True)) as server, \
            Forge(str(tmp_path / "forge.db")) as forge:
        _, events = deliberate(forge, specs(server), max_retries=0)
    assert of(events, ContributionCompleted) == []
    assert {f.error_kind for f in of(events, ContributionFailed)} == {"empty_response"}
    assert events[-1].outcome == "failed"


def test_a_structured_request_answered_with_text_is_read_as_text(tmp_path: Path) -> None:
    with CompatibleServer(Manner(ignores_structured=True)) as server, Forge(str(tmp_path / "forge.db")) as forge:
        _, events = deliberate(forge, specs(server, "anthropic", replies="json"))
    assert limits_of(events) == []  # answering in text is no refusal: read leniently, nothing to learn
    assert of(events, CritiqueRecorded) and all(c.score is not None for c in of(events, CritiqueRecorded))
    assert {v.vote for v in of(events, VoteRecorded)} <= {"AGREE", "DISAGREE"}
    assert not [f for f in of(events, ContributionFailed) if f.error_kind == "empty_response"]
    assert_no_empty_success(events)
