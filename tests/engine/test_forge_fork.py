"""Forge.fork on real mock deliberations: the copy, the changes, a running parent, forks of forks,
the refusals (nothing written), untrusted callers, re-runs and verify."""

from __future__ import annotations

import time

import msgspec
import pytest

from eventstore import NO_STREAM, NewEvent, open_log
from forge_actors.core.events import (
    ParticipantAdded,
    ParticipantRemoved,
    PromptSent,
    ProviderSwitched,
    RoundCompleted,
    SessionCreated,
    SessionForked,
)
from forge_actors.core.export import export_document, render
from forge_actors.engine import (
    ConfigError,
    Forge,
    ForgeConfig,
    InvalidCommandError,
    SessionNotFoundError,
    UntrustedSpecError,
)

THREE = ["mock:alice", "mock:bob", "mock:carol"]
GOAL = "Design a TODO app API"


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    """A finished session of three mocks (4 rounds: draft, critique, synthesis, convergence)."""
    db = tmp_path_factory.mktemp("fork") / "forge.db"
    with Forge(str(db)) as forge:
        parent = forge.create_session(GOAL, THREE, seed=7, max_iterations=2)
        list(forge.deliberate(parent))
        yield forge, parent


def _own(forge: Forge, session_id: str) -> list:
    """The session's events after its SessionForked."""
    events = forge.events(session_id)
    at = max(i for i, e in enumerate(events) if isinstance(e, SessionForked))
    return events[at + 1:]


def test_a_fork_copies_the_parent_to_the_end_of_the_round_then_goes_its_own_way(log):
    forge, parent = log
    fork = forge.fork(parent, at_round=2, participants=["mock:dave"], drop=["carol"], convergence_threshold=0.95,
                      constraints=["no SQL"])
    parent_records = forge.records(parent)
    records = forge.records(fork)
    cut = next(r for r in parent_records if isinstance(r.event, RoundCompleted) and r.event.round == 2)
    copied = records[:cut.version]
    assert isinstance(copied[0].event, SessionCreated) and copied[0].event.session_id == fork
    assert [r.data for r in copied[1:]] == [r.data for r in parent_records[1:cut.version]]
    forked = records[cut.version].event
    assert forked == SessionForked(parent, 2, cut.version, cut.position, forked.settings, ("no SQL",))
    assert forked.settings.convergence_threshold == 0.95
    assert [type(r.event) for r in records[cut.version + 1:]] == [ParticipantRemoved, ParticipantAdded]
    state = forge.state(fork)
    assert state.status == "created" and state.forked_from.parent_id == parent and state.removed == ("carol",)
    list(forge.deliberate(fork))
    state = forge.state(fork)
    assert state.ended and [r.round for r in state.rounds][:2] == [1, 2] and len(state.rounds) >= 4
    # no provider was asked for rounds 1..2: every prompt after the fork is for round 3 on
    assert {e.round for e in _own(forge, fork) if isinstance(e, PromptSent)} >= {3}
    assert min(e.round for e in _own(forge, fork) if isinstance(e, PromptSent)) == 3
    assert "dave" in state.rounds[3].participants and "carol" not in state.rounds[3].participants
    assert forge.verify(fork) == []
    check = forge.check_fork(fork)
    assert check is not None and check.checked and check.violations == () and check.copied == cut.version
    # the parent is as it was; the lineage shows in the summaries and the export
    assert not any(isinstance(e, SessionForked) for e in forge.events(parent))
    summary = next(s for s in forge.summaries() if s.session_id == fork)
    assert (summary.parent_id, summary.forked_at_round) == (parent, 2)
    exported = msgspec.json.decode(render(export_document(state), "json"))
    assert exported["forked_from"]["parent_id"] == parent and exported["forked_from"]["round"] == 2
    assert f"Forked from session `{parent}` after its round 2." in render(export_document(state), "md")


def test_a_fork_of_a_fork_of_a_fork_keeps_each_change_verifies_and_reruns_the_same(log):
    forge, parent = log
    first = forge.fork(parent, at_round=2, max_iterations=3)
    second = forge.fork(first, at_round=2, participants=["mock:erin"])  # at first's own fork point: its changes too
    third = forge.fork(second, at_round=2, drop=["bob"])
    assert sum(isinstance(e, SessionForked) for e in forge.events(third)) == 3
    state = forge.state(third)
    assert state.settings.max_rounds == 3 and state.forked_from.parent_id == second
    assert state.ai_participants == ["alice", "carol", "erin"]
    list(forge.deliberate(third))
    state = forge.state(third)
    assert state.ended and "bob" not in state.rounds[3].participants and "erin" in state.rounds[3].participants
    assert forge.verify(third) == [] and forge.check_fork(third).checked
    rerun = forge.rerun(third)
    assert forge.compare(third, rerun).first_difference is None
    assert forge.state(rerun).status == state.status and forge.verify(rerun) == []
    assert forge.state(rerun).forked_from == state.forked_from  # a re-run of a fork is a fork of the same parent


def test_a_rerun_of_a_fork_reproduces_it(log):
    forge, parent = log
    fork = forge.fork(parent, at_round=1, participants=["mock:dave"], seed=11)
    list(forge.deliberate(fork))
    rerun = forge.rerun(fork)
    comparison = forge.compare(fork, rerun)
    assert comparison.first_difference is None and comparison.a.rounds == comparison.b.rounds
    assert forge.check_fork(rerun).violations == () and forge.verify(rerun) == []


def test_a_spec_named_like_a_participant_moves_it_and_the_same_spec_changes_nothing(log):
    forge, parent = log
    fork = forge.fork(parent, at_round=2, participants=["mock:alice?seed=5", "mock:bob"])
    after = _own(forge, fork)
    assert after == [ProviderSwitched("alice", "mock:alice?seed=5", "alice", "mock:alice", "alice", "json", None)]
    assert forge.state(fork).participants["alice"].provider == "mock:alice?seed=5"
    list(forge.deliberate(fork))
    assert forge.state(fork).ended and forge.verify(fork) == []


@pytest.mark.parametrize(("arguments", "error", "says"), [
    ({"at_round": 9}, ConfigError, "round 9 is past its end: fork at a round from 1 to 4"),
    ({"at_round": 0}, ConfigError, "at_round is a round number"),
    ({"at_round": 2, "drop": ["zed"]}, ConfigError, "cannot drop 'zed'"),
    ({"at_round": 2, "convergence_threshold": 1.5}, ConfigError, "convergence_threshold must be between 0 and 1"),
    ({"at_round": 2, "synthesizer": "carol", "drop": ["carol"]}, ConfigError, "synthesizer 'carol'"),
    ({"at_round": 2, "drop": ["alice", "bob", "carol"]}, ConfigError, "no AI participant"),
    ({"at_round": 2, "participants": ["mock:bob"], "drop": ["bob"]}, ConfigError, "both dropped and given"),
    ({"at_round": 2, "participants": ["nope:x"]}, ConfigError, "nope"),
])
def test_a_fork_the_rules_refuse_writes_nothing(log, arguments, error, says):
    forge, parent = log
    before = forge.sessions()
    with pytest.raises(error, match=says.replace("(", r"\(")):
        forge.fork(parent, **arguments)
    assert forge.sessions() == before


def test_a_missing_parent_is_named(log):
    forge, _ = log
    with pytest.raises(SessionNotFoundError, match="nope"):
        forge.fork("nope", at_round=1)


def test_untrusted_callers_name_only_what_the_operator_allows(log):
    forge, parent = log
    before = forge.sessions()
    refused = [
        {"participants": ["cli:x?command=rm"]},
        {"settings": {"workspace": "/"}},
        {"max_iterations": 1000},
        {"constraints": ["x" * 100_000]},
        {"drop": ["bad\nname"]},
    ]
    for arguments in refused:
        with pytest.raises(UntrustedSpecError):
            forge.fork(parent, at_round=2, trusted=False, **arguments)
    assert forge.sessions() == before
    allowed = forge.fork(parent, at_round=2, participants=["mock:dave"], trusted=False, convergence_threshold=0.9)
    assert "dave" in forge.state(allowed).participants


def test_forking_a_running_session_leaves_it_untouched(tmp_path):
    with Forge(str(tmp_path / "forge.db")) as forge:
        slow = [f"mock:{name}?word_delay=0.01" for name in ("alice", "bob", "carol")]
        parent = forge.create_session(GOAL, slow, seed=7, max_iterations=1)
        forge.run_round(parent, "draft", timeout=60)
        _, critique = forge.start_round(parent, "critique")
        deadline = time.monotonic() + 30  # the round's start is committed a moment after the command returns
        while len(forge.state(parent).rounds) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(InvalidCommandError, match="round 2 of session .* is still running"):
            forge.fork(parent, at_round=2)
        fork = forge.fork(parent, at_round=1, drop=["carol"])
        critique.result(60)
        list(forge.deliberate(parent))
        assert forge.state(parent).ended and forge.verify(parent) == []
        assert not any(isinstance(e, (SessionForked, ParticipantRemoved)) for e in forge.events(parent))
        assert forge.state(fork).rounds[-1].round == 1 and forge.state(fork).status == "created"
        list(forge.deliberate(fork))
        assert forge.state(fork).ended and forge.verify(fork) == []


def test_verify_says_when_the_parent_is_not_in_the_log(log, tmp_path):
    forge, parent = log
    fork = forge.fork(parent, at_round=2)
    elsewhere = tmp_path / "other.db"
    store = open_log(str(elsewhere))
    store.append(fork, [NewEvent(r.type, r.data) for r in forge.records(fork)], expected_version=NO_STREAM)
    store.close()
    with Forge(str(elsewhere), ForgeConfig()) as other:
        check = other.check_fork(fork)
        assert check is not None and not check.checked and f"{parent} is not in this log" in check.note
        assert other.verify(fork) == []


def test_a_fork_of_a_rerun_decides_its_own_rounds(tmp_path):
    """A re-run follows its original's rounds; a fork of it goes its own way from the round it was forked at."""
    with Forge(str(tmp_path / "forge.db")) as forge:
        original = forge.create_session(GOAL, THREE, seed=7, max_iterations=1)
        forge.run_round(original, "draft", timeout=60)
        forge.run_round(original, "synthesis", timeout=60)  # no critique: the re-run follows it there
        rerun = forge.rerun(original)
        assert [r.kind for r in forge.state(rerun).rounds] == ["draft", "synthesis"]
        fork = forge.fork(rerun, at_round=1, participants=["mock:dave", "mock:erin"], drop=["alice", "bob", "carol"])
        forge.start(fork)
        # (not forge.deliberate: a fork that followed the re-run's plan would wait for commands, never end)
        deadline = time.monotonic() + 60  # a liveness bound, generous by orders of magnitude
        while not forge.state(fork).ended and time.monotonic() < deadline:
            time.sleep(0.02)
        state = forge.state(fork)
        assert [r.kind for r in state.rounds][:2] == ["draft", "critique"] and state.ended
        assert state.rounds[1].participants == ("dave", "erin") and forge.verify(fork) == []
