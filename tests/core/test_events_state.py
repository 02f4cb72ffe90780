"""Domain events encode losslessly; the fold is pure and incremental."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forge_actors.core.events import (
    ROUND_KINDS,
    ContentDelta,
    ContributionAbandoned,
    ContributionCompleted,
    ContributionFailed,
    CritiqueRecorded,
    HumanDraftAdded,
    ParticipantAdded,
    ParticipantInfo,
    Persona,
    PromptMessage,
    PromptSent,
    ProviderSwitched,
    RoundCompleted,
    RoundStarted,
    SessionCreated,
    SessionEnded,
    SessionResumed,
    SessionSettings,
    TokenUsage,
    UnknownEventTypeError,
    VoteRecorded,
    decode_any,
    decode_event,
    encode_event,
    event_type,
)
from forge_actors.core.state import SessionState, apply, rebuild

NAMES = ["alice", "bob", "carol", "dave"]
text = st.text(max_size=40)
short = st.text(max_size=12)
small_int = st.integers(min_value=0, max_value=10_000)
finite = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
usages = st.builds(TokenUsage, small_int, small_int)
personas = st.builds(
    Persona,
    name=short,
    traits=st.lists(short, max_size=3).map(tuple),
    tone=short,
    approach=short,
    specialties=st.lists(short, max_size=2).map(tuple),
)


@st.composite
def sessions(draw) -> list:
    """A plausible session: rounds of contributions whose events interleave as in a live run."""
    participants = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    infos = tuple(
        ParticipantInfo(p, provider=f"mock:{p}", model=p, persona=draw(st.none() | personas)) for p in participants
    )
    settings_ = SessionSettings(
        max_rounds=draw(st.integers(1, 10)),
        convergence_threshold=draw(st.floats(0, 1)),
        seed=draw(small_int),
    )
    events: list = [
        SessionCreated(
            session_id="s-1", title=draw(short), goal=draw(text), settings=settings_,
            participants=infos, constraints=tuple(draw(st.lists(short, max_size=2))),
        )
    ]
    rng = draw(st.randoms(use_true_random=False))
    kinds = draw(st.lists(st.sampled_from(ROUND_KINDS), max_size=5))
    for number, kind in enumerate(kinds, 1):
        events.append(RoundStarted(round=number, kind=kind, iteration=1 + number // 4, participants=tuple(participants)))
        lanes: list[list] = []
        for p in participants:
            lane: list = []
            for attempt in range(1, draw(st.integers(1, 2)) + 1):
                cid = f"r{number}.{p}.{attempt}"
                lane.append(PromptSent(
                    contribution_id=cid, round=number, participant=p, attempt=attempt, model=p,
                    messages=(PromptMessage("system", draw(short)), PromptMessage("user", draw(text))),
                    temperature=0.7, max_tokens=512,
                    purpose="initial" if attempt == 1 else draw(st.sampled_from(["retry", "reask"])),
                    proposal_labels=draw(st.dictionaries(st.sampled_from("ABC"), st.sampled_from(NAMES), max_size=3)),
                ))
                deltas = draw(st.lists(text, max_size=4))
                lane += [ContentDelta(contribution_id=cid, participant=p, round=number, attempt=attempt, text=d) for d in deltas]
                end = draw(st.sampled_from(["completed", "failed", "abandoned", "open"]))
                if end == "completed":
                    lane.append(ContributionCompleted(
                        contribution_id=cid, participant=p, round=number, attempt=attempt,
                        content="".join(deltas), finish_reason=draw(st.sampled_from(["stop", "end_turn", None])),
                        usage=draw(usages), latency_ms=draw(finite), served_by=draw(short),
                    ))
                elif end == "failed":
                    lane.append(ContributionFailed(
                        contribution_id=cid, participant=p, round=number, attempt=attempt,
                        error_kind=draw(st.sampled_from(["timeout", "rate_limit"])), message=draw(text),
                        retryable=draw(st.booleans()), will_retry=draw(st.booleans()),
                    ))
                elif end == "abandoned":
                    lane.append(ContributionAbandoned(
                        contribution_id=cid, participant=p, round=number, attempt=attempt, reason="crash",
                    ))
            lanes.append(lane)
        while any(lanes):  # merge lanes in a random order, each lane keeping its own order
            lane = rng.choice([lane for lane in lanes if lane])
            events.append(lane.pop(0))
        if kind == "critique":
            for critic in participants:
                for author in participants:
                    if author != critic:
                        events.append(CritiqueRecorded(
                            round=number, critic=critic, label="A", proposal_author=author,
                            score=draw(st.none() | st.integers(1, 100)),
                            strengths=tuple(draw(st.lists(short, max_size=2))),
                            weaknesses=tuple(draw(st.lists(short, max_size=2))),
                            suggestions=tuple(draw(st.lists(short, max_size=2))),
                        ))
        if kind == "convergence":
            for voter in participants:
                events.append(VoteRecorded(
                    round=number, voter=voter, vote=draw(st.sampled_from(["AGREE", "DISAGREE", "ABSTAIN"])),
                    reasons=tuple(draw(st.lists(short, max_size=2))), concerns=tuple(draw(st.lists(short, max_size=2))),
                    by_human=draw(st.booleans()),
                ))
        if kind == "draft" and draw(st.booleans()):
            events.append(ParticipantAdded(participant=ParticipantInfo("human", kind="human")))
            events.append(HumanDraftAdded(round=number, author="human", content=draw(text)))
        if draw(st.booleans()):
            p = participants[0]
            events.append(ProviderSwitched(
                participant=p, provider="mock:other", model="other", previous_provider=f"mock:{p}", previous_model=p,
            ))
        events.append(RoundCompleted(
            round=number, kind=kind, status=draw(st.sampled_from(["completed", "degraded", "failed"])),
            succeeded=tuple(participants[:1]), failed=tuple(participants[1:]),
            score=draw(st.none() | st.floats(0, 1)), reason=draw(short),
        ))
    if draw(st.booleans()):
        events.append(SessionResumed(abandoned=("r1.alice.1",)))
    if draw(st.booleans()):
        events.append(SessionEnded(
            outcome=draw(st.sampled_from(["converged", "max_rounds", "cancelled", "failed"])),
            reason=draw(text), final_score=draw(st.none() | st.floats(0, 1)),
        ))
    return events


@settings(max_examples=60, deadline=None)
@given(sessions(), st.data())
def test_folding_at_once_equals_folding_incrementally(events, data):
    whole = rebuild(events)
    split = data.draw(st.integers(0, len(events)))
    assert rebuild(events[split:], rebuild(events[:split])) == whole
    stepwise = SessionState()
    for event in events:
        stepwise = apply(stepwise, event)
    assert stepwise == whole


@settings(max_examples=60, deadline=None)
@given(sessions())
def test_apply_never_mutates_an_earlier_state(events):
    states = [SessionState()]
    snapshots = [msgspec.json.encode(states[0])]
    for event in events:
        states.append(apply(states[-1], event))
        snapshots.append(msgspec.json.encode(states[-1]))
    assert [msgspec.json.encode(s) for s in states] == snapshots


@settings(max_examples=60, deadline=None)
@given(sessions())
def test_every_event_survives_encoding(events):
    for event in events:
        data = encode_event(event)
        assert decode_event(event_type(event), data) == event
        assert decode_event(event_type(event), data.decode()) == event
        assert decode_any(data) == event
    assert rebuild(decode_event(event_type(e), encode_event(e)) for e in events) == rebuild(events)


def test_unknown_type_and_bad_json_are_typed_errors():
    with pytest.raises(UnknownEventTypeError, match="known types"):
        decode_event("Nope", b"{}")
    with pytest.raises(msgspec.DecodeError):
        decode_event("SessionEnded", b"{not json")
    with pytest.raises(msgspec.ValidationError):
        decode_event("SessionEnded", b'{"type": "SessionEnded", "outcome": "exploded", "reason": ""}')


def test_the_fold_tracks_a_small_session():
    alice, bob = (ParticipantInfo(n, provider=f"mock:{n}", model=n) for n in ("alice", "bob"))
    events = [
        SessionCreated(session_id="s", title="t", goal="g", settings=SessionSettings(), participants=(alice, bob)),
        RoundStarted(round=1, kind="draft", iteration=1, participants=("alice", "bob")),
        PromptSent(contribution_id="r1.alice.1", round=1, participant="alice", attempt=1, model="alice",
                   messages=(), temperature=0.7, max_tokens=100),
        ContentDelta(contribution_id="r1.alice.1", participant="alice", round=1, attempt=1, text="Hel"),
        ContentDelta(contribution_id="r1.alice.1", participant="alice", round=1, attempt=1, text="lo"),
    ]
    mid = rebuild(events)
    assert mid.status == "running"
    assert mid.streaming["r1.alice.1"].deltas == 2 and mid.streaming["r1.alice.1"].chars == 5
    events += [
        ContributionCompleted(contribution_id="r1.alice.1", participant="alice", round=1, attempt=1,
                              content="Hello", finish_reason="stop", usage=TokenUsage(10, 2), latency_ms=5.0),
        ContributionFailed(contribution_id="r1.bob.1", participant="bob", round=1, attempt=1,
                           error_kind="timeout", message="too slow", retryable=True),
        RoundCompleted(round=1, kind="draft", status="degraded", succeeded=("alice",), failed=("bob",)),
        RoundStarted(round=2, kind="critique", iteration=1, participants=("alice", "bob")),
        CritiqueRecorded(round=2, critic="bob", label="A", proposal_author="alice", score=80),
        CritiqueRecorded(round=2, critic="carol", label="A", proposal_author="alice", score=None),
        RoundStarted(round=3, kind="synthesis", iteration=1, participants=("alice",)),
        ContributionCompleted(contribution_id="r3.alice.1", participant="alice", round=3, attempt=1,
                              content="Plan", finish_reason="stop", usage=TokenUsage(20, 4), latency_ms=5.0),
        RoundStarted(round=4, kind="convergence", iteration=1, participants=("alice", "bob")),
        VoteRecorded(round=4, voter="bob", vote="DISAGREE"),
        VoteRecorded(round=4, voter="bob", vote="AGREE"),
        ProviderSwitched(participant="bob", provider="ollama:llama3.2", model="llama3.2",
                         previous_provider="mock:bob", previous_model="bob"),
        SessionEnded(outcome="converged", reason="1.0 >= 0.8", final_score=1.0),
    ]
    state = rebuild(events)
    assert state.ended and state.status == "converged" and state.final_score == 1.0
    assert state.drafts == {"alice": "Hello"}
    assert state.synthesis is not None and (state.synthesis.author, state.synthesis.content) == ("alice", "Plan")
    assert state.round_state(1).status == "degraded" and state.round_state(1).failed == ("bob",)
    assert state.contributions["r1.bob.1"].status == "failed"
    assert not state.streaming
    assert state.mean_scores(2) == {"alice": 80.0}
    assert state.votes_in(4)["bob"].vote == "AGREE"
    assert state.usage["alice"] == TokenUsage(30, 6) and state.total_usage.total_tokens == 36
    assert state.participants["bob"].provider == "ollama:llama3.2"
    assert state.contributions["r1.alice.1"].deltas == 2  # the completed attempt keeps its counters
