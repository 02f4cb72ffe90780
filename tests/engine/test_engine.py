"""The engine end to end on mock participants: rounds, failures, deadlines, re-asks, steps, threads."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from support import wait_until

from forge_actors.core import audit
from forge_actors.core.errors import ConfigError, InvalidCommandError, SessionNotFoundError
from forge_actors.core.events import (
    ContentDelta,
    ContributionCompleted,
    ContributionFailed,
    CritiqueRecorded,
    PromptSent,
    RoundCompleted,
    RoundStarted,
    SessionEnded,
    VoteRecorded,
)
from forge_actors.core.state import rebuild
from forge_actors.engine import Forge, ParticipantSetupError
from forge_actors.providers.registry import parse_spec

THREE = ["mock:alice", "mock:bob", "mock:carol"]


def run(forge: Forge, participants=THREE, **settings):
    session_id = forge.create_session("Design a TODO app API", participants, **settings)
    events = [r.event for r in forge.deliberate(session_id)]
    return session_id, events


def records(forge: Forge, session_id: str):
    return list(forge.records(session_id))


def test_a_full_deliberation_runs_every_round_and_keeps_the_invariants(forge):
    session_id, events = run(forge, seed=7)
    kinds = [e.kind for e in events if isinstance(e, RoundStarted)]
    assert kinds[:4] == ["draft", "critique", "synthesis", "convergence"]
    assert all(a == "synthesis" and b == "convergence" for a, b in zip(kinds[2::2], kinds[3::2], strict=False))
    ended = events[-1]
    assert isinstance(ended, SessionEnded) and ended.outcome in ("converged", "max_rounds") and ended.reason
    stored = records(forge, session_id)
    assert audit.verify(stored) == []
    state = forge.state(session_id)
    assert state == rebuild(r.event for r in stored)
    assert state.status == ended.outcome and not state.streaming
    # critics never review themselves; every critique maps back to its author
    for critique in state.critiques:
        assert critique.critic != critique.proposal_author and critique.score is not None
    assert len(state.drafts) == 3 and state.synthesis is not None
    assert state.total_usage.output_tokens > 0


def test_a_round_waits_once_for_its_contributions_not_once_each(tmp_path):
    """A contribution's completion is committed with the round's, whose wait covers it: with a batch
    timer that never fires, a draft round of three is one commit, and every completion is in the log
    when the round returns. (A wait per contribution was most of a busy engine's commits.)"""
    with Forge(str(tmp_path / "forge.db"), writer_max_delay=600) as engine:
        session_id = engine.create_session("Design a TODO app API", THREE)
        commits: list[int] = []
        commit = engine._store.commit

        def counted(appends):
            commits.append(len(appends))
            commit(appends)

        engine._store.commit = counted
        engine.run_round(session_id, "draft")
        completed = [e.participant for e in engine.events(session_id) if isinstance(e, ContributionCompleted)]
        assert sorted(completed) == ["alice", "bob", "carol"]
        assert len(commits) == 1, commits


def test_participants_of_a_round_stream_in_parallel(forge):
    session_id = forge.create_session("Plan a garden", [f"mock:{n}?word_delay=0.004" for n in ("alice", "bob", "carol")])
    forge.run_round(session_id, "draft")
    deltas = [e for e in forge.events(session_id) if isinstance(e, ContentDelta)]
    spans = {}
    for index, delta in enumerate(deltas):
        first, _ = spans.get(delta.participant, (index, index))
        spans[delta.participant] = (first, index)
    # every participant's first delta came before every other participant's last one: they overlapped
    for name, (first, _) in spans.items():
        assert all(first < last for other, (_, last) in spans.items() if other != name)


def test_an_unreadable_critique_is_reasked_once_then_recorded_unscored(forge):
    session_id = forge.create_session("Design a TODO app API", ["mock:alice?garble=critique", "mock:bob"])
    forge.run_round(session_id, "draft")
    forge.run_round(session_id, "critique")
    events = forge.events(session_id)
    prompts = [e for e in events if isinstance(e, PromptSent) and e.participant == "alice" and e.round == 2]
    assert [p.purpose for p in prompts] == ["initial", "reask"]
    assert "could not be read" in prompts[1].messages[-1].content and prompts[1].messages[-2].role == "assistant"
    by_critic = {c.critic: c for c in events if isinstance(c, CritiqueRecorded)}
    assert by_critic["alice"].score is None and by_critic["alice"].proposal_author == "bob"
    assert by_critic["bob"].score is not None
    bob_prompts = [e for e in events if isinstance(e, PromptSent) and e.participant == "bob" and e.round == 2]
    assert [p.purpose for p in bob_prompts] == ["initial"]


def test_an_unreadable_vote_is_reasked_then_counted_as_abstention(forge):
    session_id, events = run(forge, ["mock:alice?garble=convergence", "mock:bob"], max_rounds=1)
    votes = [e for e in events if isinstance(e, VoteRecorded)]
    assert {v.voter: v.vote for v in votes}["alice"] == "ABSTAIN"
    completed = [e for e in events if isinstance(e, RoundCompleted) and e.kind == "convergence"][0]
    bob_vote = {v.voter: v.vote for v in votes}["bob"]
    assert completed.score == (1.0 if bob_vote == "AGREE" else 0.0)  # the abstention is not counted


def test_a_failing_participant_is_retried_then_the_round_is_degraded(forge):
    session_id, events = run(forge, ["mock:alice?fail_on=draft", "mock:bob", "mock:carol"], max_retries=2, max_rounds=1)
    failures = [e for e in events if isinstance(e, ContributionFailed) and e.participant == "alice"]
    assert [(f.attempt, f.will_retry) for f in failures] == [(1, True), (2, True), (3, False)]
    assert all(f.error_kind == "server_error" and f.retryable for f in failures)
    retries = [e.purpose for e in events if isinstance(e, PromptSent) and e.participant == "alice" and e.round == 1]
    assert retries == ["initial", "retry", "retry"]
    draft_round = next(e for e in events if isinstance(e, RoundCompleted) and e.round == 1)
    assert draft_round.status == "degraded" and draft_round.failed == ("alice",)
    assert "alice: server_error" in draft_round.reason
    assert isinstance(events[-1], SessionEnded) and events[-1].outcome != "failed"
    assert audit.verify(records(forge, session_id)) == []


def test_a_round_where_nobody_succeeds_fails_the_session_naming_the_errors(forge):
    _, events = run(forge, ["mock:alice?fail_on=all", "mock:bob?fail_on=draft"], max_retries=0)
    ended = events[-1]
    assert isinstance(ended, SessionEnded) and ended.outcome == "failed"
    assert "round 1 (draft)" in ended.reason and "alice" in ended.reason and "bob" in ended.reason
    assert [e.status for e in events if isinstance(e, RoundCompleted)] == ["failed"]


def test_a_participant_past_the_deadline_is_cancelled_and_failed_for_that_round(forge):
    session_id = forge.create_session(
        "Design a TODO app API", ["mock:alice?word_delay=30", "mock:bob", "mock:carol"], round_timeout_seconds=0.3
    )
    round_state = forge.run_round(session_id, "draft", timeout=20)
    assert round_state.status == "degraded" and round_state.failed == ("alice",)
    failure = next(e for e in forge.events(session_id) if isinstance(e, ContributionFailed))
    assert failure.error_kind == "deadline" and "round_timeout_seconds" in failure.message
    # the stalled participant was aborted, so it is free for the next round at once
    forge.run_round(session_id, "critique", timeout=20)


def test_step_commands_follow_the_rules_and_humans_join(forge):
    session_id = forge.create_session("Design a TODO app API", ["mock:alice", "mock:bob"], max_rounds=3)
    with pytest.raises(InvalidCommandError, match="no new synthesis"):
        forge.run_round(session_id, "convergence")
    assert forge.add_human_draft(session_id, "hana", "Use a single SQLite table and a REST API.") == 0
    forge.run_round(session_id, "draft")
    critique = forge.run_round(session_id, "critique")
    assert critique.participants == ("alice", "bob")
    authors = {c.proposal_author for c in forge.state(session_id).critiques}
    assert authors == {"alice", "bob", "hana"}
    with pytest.raises(InvalidCommandError, match="drafts are closed"):
        forge.add_human_draft(session_id, "hana", "late")
    with pytest.raises(InvalidCommandError, match="no synthesis is up for a vote|no synthesis up"):
        forge.cast_vote(session_id, "hana", "AGREE")
    forge.run_round(session_id, "synthesis")
    with pytest.raises(InvalidCommandError, match="AI participant"):
        forge.cast_vote(session_id, "alice", "AGREE")
    assert forge.cast_vote(session_id, "hana", "disagree", concerns=["no auth"]) == 4
    vote_round = forge.run_round(session_id, "convergence")
    assert "hana" in forge.state(session_id).votes_in(vote_round.round)
    assert vote_round.score is not None and vote_round.score < 1.0  # hana's DISAGREE counted
    assert forge.state(session_id).participants["hana"].kind == "human"


def test_cancel_stops_a_running_deliberation_at_once(forge):
    session_id = forge.create_session("Design a TODO app API", [f"mock:{n}?word_delay=0.05" for n in ("alice", "bob")])
    events = forge.deliberate(session_id)
    for recorded in events:
        if isinstance(recorded.event, ContentDelta):
            break
    state = forge.cancel(session_id, "the user pressed Ctrl-C")
    assert state.status == "cancelled" and state.end_reason == "the user pressed Ctrl-C" and not state.streaming
    rest = [r.event for r in events]
    assert isinstance(rest[-1], SessionEnded) and rest[-1].outcome == "cancelled"
    assert any(isinstance(e, RoundCompleted) and e.status == "cancelled" for e in rest)
    assert forge.cancel(session_id).status == "cancelled"  # idempotent
    with pytest.raises(InvalidCommandError, match="ended"):
        forge.run_round(session_id, "draft")


def test_no_thread_outlives_a_session_or_the_engine(tmp_path):
    baseline = threading.active_count()
    forge = Forge(str(tmp_path / "forge.db"))
    run(forge, max_rounds=1)
    # the session ended: its actors stop; only the engine's scheduler and writer threads remain
    assert wait_until(lambda: threading.active_count() == baseline + 2), [t.name for t in threading.enumerate()]
    stalled = forge.create_session("Design a TODO app API", ["mock:alice?word_delay=30", "mock:bob?word_delay=30"])
    forge.deliberate(stalled)
    assert wait_until(lambda: any(isinstance(e, PromptSent) for e in forge.events(stalled)))
    cancelled = forge.create_session("Design a TODO app API", ["mock:carol?word_delay=30"])
    forge.deliberate(cancelled)
    assert wait_until(lambda: any(isinstance(e, PromptSent) for e in forge.events(cancelled)))
    forge.cancel(cancelled)  # its two actors stop; the stalled session's three remain, the lease renewer and mail reader
    assert wait_until(lambda: threading.active_count() == baseline + 2 + 3 + 2), [t.name for t in threading.enumerate()]
    forge.close()  # with two streams in flight
    assert wait_until(lambda: threading.active_count() == baseline), [t.name for t in threading.enumerate()]


def test_replay_restreams_the_recorded_events_with_scaled_pacing(forge):
    session_id, _ = run(forge, max_rounds=1)
    stored = records(forge, session_id)
    assert [r.position for r in forge.replay(session_id, speed=0)] == [r.position for r in stored]
    pauses: list[float] = []
    replayed = list(forge.replay(session_id, speed=4, sleep=pauses.append))
    assert [r.data for r in replayed] == [r.data for r in stored]
    recorded_span = (stored[-1].recorded_at - stored[0].recorded_at) / 1e9
    assert sum(pauses) == pytest.approx(recorded_span / 4, rel=1e-6)
    capped: list[float] = []
    assert len(list(forge.replay(session_id, speed=1, sleep=capped.append, max_pause=0.001))) == len(stored)
    assert capped and max(capped) <= 0.001


def test_bad_input_gets_typed_errors_and_writes_nothing(forge):
    with pytest.raises(ParticipantSetupError, match="known providers") as unknown:
        forge.create_session("goal", ["nosuch:model"])
    assert isinstance(unknown.value, ConfigError)  # the engine's own error: a surface needs nothing of providers
    with pytest.raises(ConfigError, match="unknown setting"):
        forge.create_session("goal", THREE, max_round=3)
    with pytest.raises(ConfigError, match="convergence_threshold"):
        forge.create_session("goal", THREE, convergence_threshold=1.5)
    with pytest.raises(ConfigError, match="goal is empty"):
        forge.create_session("  ", THREE)
    with pytest.raises(ConfigError, match="synthesizer"):
        forge.create_session("goal", THREE, synthesizer="zed")
    assert forge.sessions() == []
    with pytest.raises(SessionNotFoundError, match="no session 'nope'"):
        forge.state("nope")
    with pytest.raises(SessionNotFoundError):
        forge.deliberate("nope")


def test_names_default_to_the_model_and_stay_unique_and_personas_reach_the_prompt(forge):
    persona = {"name": "The Skeptic", "traits": ["careful"], "tone": "dry", "specialties": ["security"]}
    session_id = forge.create_session("goal", ["mock:alice", "mock:alice", {"spec": "mock:x", "name": "xena",
                                                                           "persona": persona},
                                              {"kind": "human", "name": "hana"}])
    participants = forge.state(session_id).participants
    assert list(participants) == ["alice", "alice-2", "xena", "hana"]
    assert participants["hana"].kind == "human" and participants["xena"].provider == "mock:x"
    forge.run_round(session_id, "draft")
    prompts = {e.participant: e for e in forge.events(session_id) if isinstance(e, PromptSent)}
    system = prompts["xena"].messages[0]
    assert system.role == "system" and "The Skeptic" in system.content and "security" in system.content
    assert "Skeptic" not in prompts["alice"].messages[0].content and "hana" not in prompts


def test_api_keys_never_reach_the_log(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env-secret-0001")
    with Forge(str(tmp_path / "forge.db")) as forge:
        session_id = forge.create_session(
            "goal", ["anthropic:claude-sonnet-4-20250514?api_key=sk-ant-inline-secret-0002", "mock:bob"]
        )
        info = forge.state(session_id).participants["claude-sonnet-4-20250514"]
        assert info.provider == "anthropic:claude-sonnet-4-20250514"
        assert "secret" not in repr(forge.state(session_id))
    raw = (tmp_path / "forge.db").read_bytes()
    assert b"secret" not in raw


def test_live_followers_see_exactly_the_log(forge):
    session_id = forge.create_session("Design a TODO app API", THREE, max_rounds=1)
    live = forge.subscribe(session_id)
    seen = [recorded.position for recorded in forge.deliberate(session_id)]
    subscribed = []
    for recorded in live:
        subscribed.append(recorded.position)
        if recorded.position == seen[-1]:
            break
    live.close()
    assert seen == subscribed == [r.position for r in records(forge, session_id)]
    counts = Counter(type(e).__name__ for e in forge.events(session_id))
    assert counts["SessionEnded"] == 1 and counts["ContributionCompleted"] >= 3


def test_a_deadline_aborts_a_real_stalled_http_stream(forge):
    from loopback import LoopbackServer, Reply
    from streams_fixtures import openai_stream

    stalled = openai_stream(["Hel", "lo ", "never"])
    cut = stalled.index(b"never") - 40  # the first two deltas are through; then the server stalls 30 s
    review = openai_stream(["## Proposal A\nScore: 71/100\nStrengths:\n- clear\nWeaknesses:\n- thin\n"
                            "Suggestions:\n- add tests\n"])
    with LoopbackServer(Reply(parts=[stalled[:cut], 30.0, stalled[cut:]]), Reply(parts=[review])) as server:
        session_id = forge.create_session(
            "Design a TODO app API", [f"openai:gpt-x?base_url={server.url}/v1&timeout=60", "mock:bob"],
            round_timeout_seconds=0.5,
        )
        draft = forge.run_round(session_id, "draft", timeout=20)
        assert draft.status == "degraded" and draft.failed == ("gpt-x",)
        events = forge.events(session_id)
        assert "".join(e.text for e in events if isinstance(e, ContentDelta) and e.participant == "gpt-x") == "Hello "
        # the stalled stream was aborted: the same participant answers the next round at once
        critique = forge.run_round(session_id, "critique", timeout=20)
        assert critique.status == "completed" and critique.participants == ("gpt-x",)
        assert forge.state(session_id).critiques[0].score == 71


# -- keys given in a trusted spec: used at run time, recorded nowhere ------------------------------------------

INLINE_KEY = "sk-ant-inline-secret-4242"


def _draft_reply():
    from loopback import Reply
    from streams_fixtures import anthropic_stream

    return Reply(parts=[anthropic_stream(["## Draft\n", "Use SQLite and a small HTTP API.\n"])])


def _sent_keys(server) -> list[str]:
    return [{k.lower(): v for k, v in r.headers.items()}.get("x-api-key", "") for r in server.requests]


def test_a_key_given_in_a_spec_is_used_at_run_time_and_recorded_nowhere(tmp_path, monkeypatch, caplog):
    import logging

    from loopback import LoopbackServer

    from forge_actors.core.export import FORMATS, export_document, render

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    caplog.set_level(logging.DEBUG)
    with LoopbackServer(_draft_reply()) as server, Forge(str(tmp_path / "forge.db")) as forge:
        claude = {"spec": f"anthropic:claude-x?base_url={server.url}&api_key={INLINE_KEY}", "name": "claude"}
        session_id = forge.create_session("Design a TODO app API", [claude, "mock:bob"])
        draft = forge.run_round(session_id, "draft", timeout=20)  # no actor ran at create: the provider is rebuilt
        assert draft.status == "completed", draft
        assert _sent_keys(server) == [INLINE_KEY]
        state = forge.state(session_id)
        assert parse_spec(state.participants["claude"].provider).options == {"base_url": server.url}
        shown = [repr(forge), repr(state), repr(forge._participants.inline_specs), repr(forge.events(session_id)),
                 *(render(export_document(state, forge.config.pricing), fmt) for fmt in FORMATS)]
        rows = [r.data for r in forge._store.read_stream(session_id)]
    assert not any(INLINE_KEY in text for text in shown)
    assert rows and not any(INLINE_KEY in str(row) for row in rows)
    assert INLINE_KEY.encode() not in (tmp_path / "forge.db").read_bytes()
    assert not any(INLINE_KEY in record.getMessage() or INLINE_KEY in str(record.args) for record in caplog.records)


def test_resuming_in_another_engine_says_which_participant_lacks_its_key(tmp_path, monkeypatch):
    from loopback import LoopbackServer

    from forge_actors.engine import ParticipantKeyMissingError, ParticipantSetupError

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with LoopbackServer(_draft_reply()) as server:
        with Forge(str(tmp_path / "forge.db")) as forge:
            session_id = forge.create_session(
                "Design a TODO app API",
                [{"spec": f"anthropic:claude-x?base_url={server.url}&api_key={INLINE_KEY}", "name": "claude"},
                 "mock:bob"],
            )
        with Forge(str(tmp_path / "forge.db")) as forge:  # a new process: the key was never recorded
            with pytest.raises(ParticipantKeyMissingError) as missing:
                forge.run_round(session_id, "draft")
            assert isinstance(missing.value, ParticipantSetupError) and missing.value.env_var == "ANTHROPIC_API_KEY"
            message = str(missing.value)
            assert "participant claude" in message and "set ANTHROPIC_API_KEY" in message and INLINE_KEY not in message
            monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env-key-0007")
            assert forge.run_round(session_id, "draft", timeout=20).status == "completed"
    assert _sent_keys(server) == ["sk-ant-env-key-0007"]


def test_a_key_given_when_switching_is_kept_and_a_switch_without_one_forgets_it(tmp_path, monkeypatch):
    from loopback import LoopbackServer

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env-key-0008")
    with LoopbackServer(_draft_reply(), _draft_reply()) as server, Forge(str(tmp_path / "forge.db")) as forge:
        session_id = forge.create_session("Design a TODO app API", ["mock:alice", "mock:bob"])
        forge.switch_provider(session_id, "alice", f"anthropic:claude-x?base_url={server.url}&api_key={INLINE_KEY}")
        forge.interrupt(session_id)  # its actors stop: the next round rebuilds alice's provider from the log
        assert forge.run_round(session_id, "draft", timeout=20).status == "completed"
        forge.switch_provider(session_id, "alice", f"anthropic:claude-x?base_url={server.url}")  # the same, keyless
        forge.interrupt(session_id)
        assert forge.run_round(session_id, "draft", timeout=20).status == "completed"
        assert INLINE_KEY not in repr(forge.events(session_id))
    assert _sent_keys(server) == [INLINE_KEY, "sk-ant-env-key-0008"]
