"""Spending budgets (max_session_tokens, max_cost_usd) as input -> events: the decider ends a session
``budget_exhausted`` before a round whose estimate would pass the budget, cuts a running round that
passes it, counts cut streams by their characters, and judges cost by the prices the log recorded."""

from __future__ import annotations

import pytest
from test_decider import Session

from eventstore import RecordedEvent
from forge_actors.core import audit, budget, rounds
from forge_actors.core.decider import (
    Ask,
    CancelContribution,
    CheckSpending,
    Mode,
    Recover,
    Replied,
    ReplyFailed,
    StartDeliberating,
    StartRound,
    decide,
    spending_check_due,
)
from forge_actors.core.errors import InvalidCommandError
from forge_actors.core.events import (
    ContentDelta,
    ContributionFailed,
    ParticipantInfo,
    Price,
    PromptSent,
    RerunPlanned,
    RoundCompleted,
    SessionCreated,
    SessionEnded,
    SessionSettings,
    TokenUsage,
    decode_event,
    event_type,
)
from forge_actors.core.state import SessionState, rebuild


def created(*names: str, prices: dict[str, Price] | None = None, **settings: object) -> SessionState:
    people = tuple(ParticipantInfo(n, provider="openai", model=f"model-{n}") for n in names)
    return rebuild([SessionCreated("s1", "t", "Design a TODO app API", SessionSettings(**settings),  # type: ignore[arg-type]
                                   people, prices=prices or {})])


def stream(session: Session, participant: str, text: str) -> None:
    """A delta, folded and logged as the actor does it (the per-delta path is not a decision)."""
    asked = session.asked(participant)
    delta = ContentDelta(asked.contribution_id, participant, asked.round, asked.attempt, text)
    session.state = rebuild([delta], session.state)
    session.log.append(delta)


def replied(session: Session, participant: str, content: str, usage: TokenUsage):
    stream(session, participant, content)
    return session.give(Replied(session.asked(participant).contribution_id, content, "stop", usage, 1.0))


def ended(session: Session) -> SessionEnded:
    end = session.log[-1]
    assert isinstance(end, SessionEnded), session.log[-3:]
    return end


def verified(session: Session) -> list[str]:
    first = SessionCreated(session.state.session_id, session.state.title, session.state.goal, session.state.settings,
                           tuple(session.state.participants.values()), prices=dict(session.state.prices))
    events = [first, *session.log]
    records = [RecordedEvent(n, "s1", n, event_type(e), "", 0, e) for n, e in enumerate(events, 1)]
    return [v.problem for v in audit.verify(records)]


def test_no_round_starts_whose_estimate_would_pass_the_token_budget():
    state = created("alice", "bob", max_tokens=100)
    draft = rounds.budget_refusal(state, "draft")
    assert draft is None  # no budget: nothing refused
    draft_chars = {p: sum(len(m.content) for m in rounds.prompt_for(state, "draft", p, 1).messages)
                   for p in ("alice", "bob")}
    estimate = budget.estimate_round(state, "draft", draft_chars).spending.tokens
    assert estimate == sum(budget.estimated_tokens(c) + 100 for c in draft_chars.values())
    # enough for the drafts as estimated, not for the critique that would follow them
    session = Session(created("alice", "bob", max_tokens=100, max_session_tokens=estimate + 50))
    session.give(StartDeliberating())
    replied(session, "alice", "Draft A: resources and verbs.", TokenUsage(200, 40))
    replied(session, "bob", "Draft B: a JSON API.", TokenUsage(200, 40))
    end = ended(session)
    assert end.outcome == "budget_exhausted" and session.state.status == "budget_exhausted"
    assert "spent 480 of" in end.reason and "remaining" in end.reason
    assert "the next critique round" in end.reason and "would pass the budget" in end.reason
    assert [e.kind for e in session.log if isinstance(e, RoundCompleted)] == ["draft"]
    assert verified(session) == []


def test_a_round_that_passes_the_budget_is_cut_and_the_session_ends_budget_exhausted():
    session = Session(created("alice", "bob", "carol", max_tokens=100, max_session_tokens=2_000))
    session.give(StartRound("draft"))
    replied(session, "alice", "a long draft", TokenUsage(1_500, 600))
    cut = session.log[-5:]
    failed = [e for e in cut if isinstance(e, ContributionFailed)]
    assert [(f.participant, f.error_kind, f.will_retry) for f in failed] == [("bob", "budget", False),
                                                                            ("carol", "budget", False)]
    assert failed[0].message == "cancelled: the session passed its budget (max_session_tokens 2,000)"
    completed = next(e for e in cut if isinstance(e, RoundCompleted))
    assert (completed.status, completed.succeeded) == ("degraded", ("alice",))
    end = ended(session)
    assert end.outcome == "budget_exhausted"
    assert end.reason == "round 1 (draft) passed the budget and was cancelled: spent 2,100 of 2,000 tokens (0 remaining)"
    assert verified(session) == []


def test_the_cut_cancels_the_attempts_in_flight_and_never_sends_a_reask():
    session = Session(created("alice", "bob", max_tokens=100, max_session_tokens=10_000))
    session.give(StartRound("draft"))
    decision = replied(session, "alice", "draft", TokenUsage(9_000, 1_500))
    assert CancelContribution("r1.bob.1") in decision.effects
    assert not any(isinstance(e, Ask) for e in decision.effects)


def test_a_cut_stream_counts_by_its_characters():
    session = Session(created("alice", "bob", max_tokens=100, max_session_tokens=1_000))
    session.give(StartRound("draft"))
    stream(session, "alice", "x" * 8_000)
    # the stream broke: no usage came, but 8,000 characters did (2,000 tokens, and the prompt read)
    session.give(ReplyFailed("r1.alice.1", "malformed_stream", "cut", False))
    assert budget.attempt_usage(session.state.contributions["r1.alice.1"]).output_tokens == 2_000
    assert [e.error_kind for e in session.log if isinstance(e, ContributionFailed)] == ["malformed_stream", "budget"]
    assert ended(session).outcome == "budget_exhausted"


def test_a_resume_honours_the_budget_with_what_the_abandoned_attempts_streamed():
    session = Session(created("alice", "bob", max_tokens=100, max_session_tokens=1_000))
    session.give(StartRound("draft"))
    stream(session, "alice", "y" * 6_000)
    resumed = session.give(Recover())
    assert not any(isinstance(e, Ask) for e in resumed.effects)  # nobody is asked again
    asked_again = [e for e in resumed.events if isinstance(e, PromptSent)]
    assert [e.purpose for e in asked_again] == ["rerun", "rerun"]
    assert [e.error_kind for e in resumed.events if isinstance(e, ContributionFailed)] == ["budget", "budget"]
    assert ended(session).outcome == "budget_exhausted"
    assert verified(session) == []


def test_cost_is_judged_at_the_prices_recorded_at_creation():
    prices = {"alice": Price(10.0, 30.0), "bob": Price(10.0, 30.0)}
    session = Session(created("alice", "bob", prices=prices, max_tokens=100, max_cost_usd=0.05))
    session.give(StartRound("draft"))
    # 2,000 in, 1,000 out at $10 / $30 per million: $0.05 exactly: not past it
    replied(session, "alice", "draft", TokenUsage(2_000, 1_000))
    assert not session.state.ended and "r1.bob.1" in session.state.streaming
    assert budget.spent(session.state).cost_usd == pytest.approx(0.05)
    replied(session, "bob", "draft", TokenUsage(100, 10))
    end = ended(session)
    assert end.outcome == "budget_exhausted" and "of $0.0500 ($0.0000 remaining)" in end.reason
    # the same replies at free prices spend nothing: the budget reads the log's prices, no table
    free = Session(created("alice", "bob", prices={"alice": Price(0, 0), "bob": Price(0, 0)}, max_tokens=100,
                           max_cost_usd=0.05))
    free.give(StartRound("draft"))
    free.give(Replied("r1.alice.1", "draft", "stop", TokenUsage(2_000, 1_000), 1.0))
    assert budget.spent(free.state).cost_usd == 0.0 and not free.state.ended


def test_a_rerun_does_not_cut_a_round_its_recording_replays():
    planned = rebuild([RerunPlanned("original", ("draft",))], created("alice", "bob", max_tokens=100,
                                                                      max_session_tokens=1_000))
    session = Session(planned)
    session.mode = Mode(True)
    session.give(StartRound("draft"))
    replied(session, "alice", "draft", TokenUsage(1_500, 100))
    assert "r1.bob.1" in session.state.streaming  # the recording says how bob's attempt ended
    session.give(ReplyFailed("r1.bob.1", "budget", budget.cut_reason(session.state.settings), False))
    assert ended(session).outcome == "budget_exhausted"


def test_a_step_whose_round_would_pass_the_budget_is_refused():
    state = created("alice", max_tokens=100, max_session_tokens=10)
    with pytest.raises(InvalidCommandError, match="the next draft round, estimated at .* would pass the budget"):
        decide(state, Mode(), StartRound("draft"))


def test_describe_states_spent_and_remaining_against_each_limit():
    settings = SessionSettings(max_session_tokens=5_000, max_cost_usd=0.5)
    assert budget.describe(settings, budget.Spending(1_234, 0.0123)) == (
        "spent 1,234 of 5,000 tokens (3,766 remaining); spent $0.0123 of $0.5000 ($0.4877 remaining)")


def test_a_log_written_before_budgets_reads_as_none():
    old = (b'{"type":"SessionCreated","session_id":"s","title":"t","goal":"g","settings":{"max_rounds":3},'
           b'"participants":[{"name":"alice","provider":"mock:alice","model":"alice"}]}')
    state = rebuild([decode_event("SessionCreated", old)])
    assert (state.settings.max_cost_usd, state.settings.max_session_tokens, state.prices) == (None, None, {})
    assert budget.report(state) is None and rounds.budget_refusal(state, "draft") is None
    switched = decode_event("ProviderSwitched", b'{"type":"ProviderSwitched","participant":"alice","provider":"x",'
                                                b'"model":"y","previous_provider":"mock:alice","previous_model":"alice"}')
    assert rebuild([switched], state).prices == {}


def test_a_long_stream_has_the_spending_checked_every_few_thousand_characters():
    session = Session(created("alice", "bob", max_tokens=100, max_session_tokens=1_000))
    session.give(StartRound("draft"))
    first = ContentDelta("r1.alice.1", "alice", 1, 1, "z" * (budget.CHECK_EVERY_CHARS - 1))
    session.state = rebuild([first], session.state)
    assert not spending_check_due(session.state, first)
    second = ContentDelta("r1.alice.1", "alice", 1, 1, "zz")
    session.state = rebuild([second], session.state)
    assert spending_check_due(session.state, second)  # past 4,000 characters: about 1,000 tokens
    cut = session.give(CheckSpending())
    assert {e.contribution_id for e in cut.effects if isinstance(e, CancelContribution)} == {"r1.alice.1", "r1.bob.1"}
    assert ended(session).outcome == "budget_exhausted"
    unbudgeted = Session(created("alice"))
    unbudgeted.give(StartRound("draft"))
    unbudgeted.state = rebuild([first, second], unbudgeted.state)
    assert not spending_check_due(unbudgeted.state, second)
