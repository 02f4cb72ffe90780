"""Spending budgets end to end: a session with max_session_tokens / max_cost_usd ends budget_exhausted
before a round it cannot pay for, or cuts the round that passed it; the prices it is judged by are the
log's, so a resume under another price table and a re-run decide the same; an unknown price refuses a
cost budget at creation."""

from __future__ import annotations

import threading

import pytest
from support import FAST_RETRIES, wait_until
from test_determinism import comparable

from forge_actors.core import audit, budget, rounds
from forge_actors.core.events import ContributionFailed, Price, RoundCompleted, SessionEnded
from forge_actors.core.export import export_document, render
from forge_actors.engine import Forge, ForgeConfig, UnknownPriceError
from forge_actors.providers import register_provider
from forge_actors.providers.base import LlmRequest, StreamChunk, Usage
from forge_actors.providers.errors import CancelledError

GOAL = "Design a TODO app API"
PAIR = ["mock:alice", "mock:bob"]


def draft_estimate(forge: Forge, **settings) -> int:
    """What the first draft round of PAIR on GOAL is estimated to spend (a session created to read it)."""
    state = forge.state(forge.create_session(GOAL, PAIR, max_session_tokens=10**9, **settings))
    chars = {p: sum(len(m.content) for m in rounds.prompt_for(state, "draft", p, 1).messages) for p in state.participants}
    return budget.estimate_round(state, "draft", chars).spending.tokens


def test_a_tiny_budget_ends_the_session_before_its_first_round(forge):
    session_id = forge.create_session(GOAL, PAIR, max_session_tokens=1)
    events = [r.event for r in forge.deliberate(session_id)]
    end = events[-1]
    assert isinstance(end, SessionEnded) and end.outcome == "budget_exhausted"
    assert end.reason.startswith("spent 0 of 1 tokens (1 remaining); the next draft round, estimated at")
    assert forge.state(session_id).rounds == ()
    assert forge.verify(session_id) == []


def test_a_budget_for_the_drafts_only_stops_before_the_critique_stating_spent_and_remaining(forge):
    allowed = draft_estimate(forge, seed=3) + 20
    session_id = forge.create_session(GOAL, PAIR, seed=3, max_session_tokens=allowed)
    events = [r.event for r in forge.deliberate(session_id)]
    state = forge.state(session_id)
    assert [r.kind for r in state.rounds] == ["draft"] and state.status == "budget_exhausted"
    spent = state.total_usage.total_tokens
    assert f"spent {spent:,} of {allowed:,} tokens ({allowed - spent:,} remaining)" in state.end_reason
    assert "the next critique round" in state.end_reason and isinstance(events[-1], SessionEnded)
    assert audit.verify(forge.records(session_id)) == []


def test_cost_is_judged_at_the_prices_recorded_at_creation_whatever_a_later_engine_says(tmp_path):
    priced = ForgeConfig(pricing={"alice": Price(100.0, 100.0), "bob": Price(100.0, 100.0)})
    with Forge(str(tmp_path / "a.db"), priced, retry_policy=FAST_RETRIES) as forge:
        # 0.25 $ at 100 $ per million tokens: 2,500 tokens, enough for the drafts, not for the critique
        live = forge.create_session(GOAL, PAIR, seed=3, max_cost_usd=0.25)
        list(forge.deliberate(live))
        waiting = forge.create_session(GOAL, PAIR, seed=3, max_cost_usd=0.25)
        assert forge.events(waiting)[0].prices == priced.pricing
        ran = forge.state(live)
    assert ran.status == "budget_exhausted" and "of $0.2500" in ran.end_reason
    # the same session driven by an engine whose table says the mocks are free: judged as recorded
    with Forge(str(tmp_path / "a.db"), ForgeConfig(), retry_policy=FAST_RETRIES) as later:
        list(later.deliberate(waiting))
        resumed = later.state(waiting)
    assert (resumed.status, [r.kind for r in resumed.rounds]) == ("budget_exhausted", [r.kind for r in ran.rounds])
    assert resumed.end_reason == ran.end_reason


def test_a_resume_counts_what_the_abandoned_attempts_streamed_at_the_recorded_prices(tmp_path):
    priced = ForgeConfig(pricing={"alice": Price(100.0, 100.0), "bob": Price(100.0, 100.0)})
    slow = ["mock:alice?word_delay=0.05", "mock:bob?word_delay=0.05"]
    settings = {"max_tokens": 1, "max_reply_chars": 100_000}  # drafts estimated at their prompts and 1 token
    db = str(tmp_path / "forge.db")
    with Forge(db, priced) as forge:
        probe = forge.state(forge.create_session(GOAL, slow, max_cost_usd=1.0, **settings))
        chars = {p: sum(len(m.content) for m in rounds.prompt_for(probe, "draft", p, 1).messages) for p in probe.participants}
        tokens = budget.estimate_round(probe, "draft", chars).spending.tokens
        # room for the drafts' estimate and 4 tokens more, at 100 $ per million tokens
        session_id = forge.create_session(GOAL, slow, max_cost_usd=(tokens + 4) * 100 / 1e6, **settings)
        forge.start(session_id)
        assert wait_until(lambda: [c.chars >= 40 for c in forge.state(session_id).streaming.values()] == [True, True])
        forge.interrupt(session_id)
    # resumed by an engine whose table says the mocks are free: the recorded prices judge it, and what
    # the abandoned attempts streamed has passed the budget, so nobody is asked again
    with Forge(db, ForgeConfig(), retry_policy=FAST_RETRIES) as later:
        list(later.resume(session_id))
        state = later.state(session_id)
        events = later.events(session_id)
    assert state.status == "budget_exhausted" and state.resumes == 1
    assert "round 1 (draft) passed the budget and was cancelled: spent $" in state.end_reason
    assert sorted((e.participant, e.error_kind) for e in events if isinstance(e, ContributionFailed)) == [
        ("alice", "budget"), ("bob", "budget")]
    assert later_verified(db, session_id) == []


def later_verified(db: str, session_id: str) -> list:
    with Forge(db) as forge:
        return forge.verify(session_id)


def test_an_unknown_price_refuses_a_cost_budget_and_a_token_budget_works(forge):
    unpriced = ["openai:a-model-nobody-prices?api_key=sk-test", "mock:bob"]
    before = len(forge.sessions())
    with pytest.raises(UnknownPriceError, match="the price of a-model-nobody-prices is unknown") as refused:
        forge.create_session(GOAL, unpriced, max_cost_usd=1.0)
    assert refused.value.models == ["a-model-nobody-prices"] and "max_session_tokens" in str(refused.value)
    assert len(forge.sessions()) == before
    session_id = forge.create_session(GOAL, unpriced, max_session_tokens=50_000)
    assert forge.state(session_id).settings.max_session_tokens == 50_000 and forge.events(session_id)[0].prices == {}


def test_a_switch_to_an_unknown_price_is_refused_in_a_cost_budget_session(forge):
    session_id = forge.create_session(GOAL, PAIR, max_cost_usd=1.0)
    with pytest.raises(UnknownPriceError):
        forge.switch_provider(session_id, "alice", "openai:a-model-nobody-prices?api_key=sk-test")
    assert forge.state(session_id).participants["alice"].provider == "mock:alice"
    state = forge.switch_provider(session_id, "alice", "openai:gpt-4o-mini?api_key=sk-test")
    assert state.prices["alice"] == Price(0.15, 0.6)


class _Spender:
    """Answers at once, reporting far more tokens than any estimate."""

    name = model = "spender"
    supports_json = False

    def stream(self, request: LlmRequest):
        yield StreamChunk("### Components\n- an expensive answer\n")
        yield StreamChunk("", True, "stop", Usage(40_000, 10_000))

    def complete(self, request: LlmRequest):  # pragma: no cover - streams
        raise AssertionError("streams")

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Stalled:
    """Streams a little, then nothing until it is aborted (a long reply in flight)."""

    name = model = "stalled"
    supports_json = False

    def __init__(self) -> None:
        self.aborted = threading.Event()

    def stream(self, request: LlmRequest):
        yield StreamChunk("I am thinking about")
        if not self.aborted.wait(30):
            raise AssertionError("the budget's cut never came")
        raise CancelledError("aborted", provider="stalled")

    def complete(self, request: LlmRequest):  # pragma: no cover - streams
        raise AssertionError("streams")

    def abort(self) -> None:
        self.aborted.set()

    def close(self) -> None:
        pass


def test_a_round_that_passes_the_budget_is_cut_and_a_rerun_reproduces_it(forge):
    register_provider("spender", lambda model, **options: _Spender())
    register_provider("stalled", lambda model, **options: _Stalled())
    original = forge.create_session(GOAL, ["spender:big", "stalled:slow"], max_session_tokens=20_000)
    list(forge.deliberate(original))
    state = forge.state(original)
    assert state.status == "budget_exhausted"
    assert state.end_reason == ("round 1 (draft) passed the budget and was cancelled: spent "
                                f"{budget.spent(state).tokens:,} of 20,000 tokens (0 remaining)")
    cut = [e for e in forge.events(original) if isinstance(e, ContributionFailed)]
    assert [(e.participant, e.error_kind) for e in cut] == [("slow", "budget")]
    assert [(e.status, e.succeeded) for e in forge.events(original) if isinstance(e, RoundCompleted)] == [
        ("degraded", ("big",))]
    assert forge.verify(original) == []
    again = forge.rerun(original)
    assert forge.state(again).status == "budget_exhausted"
    assert comparable(forge.events(again)[1:]) == comparable(forge.events(original)[1:])


def test_the_export_states_the_budget_spent_and_remaining(forge):
    session_id = forge.create_session(GOAL, PAIR, max_session_tokens=1)
    list(forge.deliberate(session_id))
    document = export_document(forge.state(session_id))
    assert document.budget is not None
    assert (document.budget.max_session_tokens, document.budget.spent_tokens, document.budget.remaining_tokens,
            document.budget.max_cost_usd, document.budget.spent_cost_usd) == (1, 0, 1, None, None)
    assert "**Budget:** spent 0 of 1 tokens (1 remaining)" in render(document, "md")
    assert export_document(forge.state(forge.create_session(GOAL, PAIR))).budget is None
