"""A fork meets the other features: budgets (prices, a cut round), what an untrusted caller's fork may
keep of a trusted parent, and similarities already measured."""

from __future__ import annotations

import pytest
from support import FAST_RETRIES
from test_budgets import _Spender, _Stalled

from forge_actors.core import budget
from forge_actors.core.errors import UntrustedSpecError
from forge_actors.core.events import Price, SessionForked, SessionSettings, SimilarityMeasured
from forge_actors.engine import Forge, ForgeConfig
from forge_actors.providers import register_provider

GOAL = "Design a TODO app API"
PAIR = ["mock:alice", "mock:bob"]
PRICED = ForgeConfig(pricing={"alice": Price(100.0, 100.0), "bob": Price(100.0, 100.0),
                              "carol": Price(10_000.0, 10_000.0)})


def test_a_cost_budget_a_fork_adds_is_judged_at_the_prices_of_the_fork(tmp_path):
    with Forge(str(tmp_path / "a.db"), PRICED, retry_policy=FAST_RETRIES) as forge:
        parent = forge.create_session(GOAL, PAIR, seed=3, max_iterations=1)  # no budget, no prices recorded
        list(forge.deliberate(parent))
        fork = forge.fork(parent, 1, settings={"max_cost_usd": 0.0001, "max_iterations": 3})
        assert forge.state(fork).prices == {"alice": Price(100.0, 100.0), "bob": Price(100.0, 100.0)}
        list(forge.deliberate(fork))
        state = forge.state(fork)
        assert state.status == "budget_exhausted" and budget.spent(state).cost_usd > 0.0001


def test_a_participant_a_fork_moves_is_judged_at_its_new_models_price(tmp_path):
    with Forge(str(tmp_path / "a.db"), PRICED, retry_policy=FAST_RETRIES) as forge:
        parent = forge.create_session(GOAL, PAIR, seed=3, max_iterations=1, max_cost_usd=10.0)
        list(forge.deliberate(parent))
        fork = forge.fork(parent, 1, [{"name": "alice", "spec": "mock:carol"}])
        assert forge.state(fork).prices["alice"] == Price(10_000.0, 10_000.0)


def test_a_fork_with_a_larger_budget_goes_on_from_a_round_its_parents_budget_cut(forge: Forge):
    register_provider("spender", lambda model, **options: _Spender())
    register_provider("stalled", lambda model, **options: _Stalled())
    original = forge.create_session(GOAL, ["spender:big", "stalled:slow"], max_session_tokens=20_000,
                                    max_iterations=1)
    list(forge.deliberate(original))
    assert forge.state(original).status == "budget_exhausted"
    fork = forge.fork(original, 1, [{"name": "slow", "spec": "mock:slow"}], settings={"max_session_tokens": 10**7})
    list(forge.deliberate(fork))
    state = forge.state(fork)
    assert len(state.rounds) > 1 and state.status != "budget_exhausted", state.end_reason


def test_an_untrusted_fork_keeps_no_more_than_its_caller_could_ask_for(tmp_path):
    operator = ForgeConfig(settings=SessionSettings(max_session_tokens=5_000, max_rounds=2))
    with Forge(str(tmp_path / "a.db"), operator, retry_policy=FAST_RETRIES) as forge:
        generous = forge.create_session(GOAL, PAIR, seed=3, max_session_tokens=10**9, max_iterations=1)
        list(forge.deliberate(generous))
        with pytest.raises(UntrustedSpecError, match="max_session_tokens may be at most 5,000"):
            forge.fork(generous, 1, settings={"max_session_tokens": 6_000}, trusted=False)
        fork = forge.fork(generous, 1, trusted=False)  # inherited: lowered to the operator's, as asked would be
        assert forge.state(fork).settings.max_session_tokens == 5_000
        assert forge.state(forge.fork(generous, 1)).settings.max_session_tokens == 10**9  # a trusted caller's

        writer = forge.create_session(GOAL, [{"spec": "mock:alice", "tools": "write_file"}, "mock:bob"], seed=3,
                                      max_iterations=1)
        list(forge.deliberate(writer))
        with pytest.raises(UntrustedSpecError, match="write_file"):
            forge.fork(writer, 1, trusted=False)
        assert forge.fork(writer, 1, drop=["alice"], trusted=False)  # without the writer it is the caller's own

        reader = forge.create_session(GOAL, PAIR, seed=3, max_iterations=1, workspace=str(tmp_path))
        list(forge.deliberate(reader))
        with pytest.raises(UntrustedSpecError, match="reads a workspace its creator chose"):
            forge.fork(reader, 1, trusted=False)

        with pytest.raises(UntrustedSpecError, match="constraints"):  # the inherited ones count with the added
            forge.fork(generous, 1, constraints=["keep it short"] * 51, trusted=False)


def test_an_untrusted_fork_never_takes_a_key_its_parents_creator_gave_inline(tmp_path):
    with Forge(str(tmp_path / "a.db"), retry_policy=FAST_RETRIES) as forge:
        parent = forge.create_session(GOAL, ["mock:alice?api_key=sk-creators-own", "mock:bob"], seed=3,
                                      max_iterations=1)
        list(forge.deliberate(parent))
        with pytest.raises(UntrustedSpecError, match="alice was given its key inline"):
            forge.fork(parent, 1, trusted=False)
        assert forge.fork(parent, 1, drop=["alice"], trusted=False)
        assert forge.fork(parent, 1)  # its creator's side (trusted) keeps it


def test_a_fork_does_not_measure_again_what_its_parent_measured_of_the_copied_rounds(forge: Forge):
    parent = forge.create_session(GOAL, PAIR, seed=3, convergence="similarity", similarity_threshold=0.99,
                                  max_iterations=2)
    list(forge.deliberate(parent))
    rounds = forge.state(parent).rounds
    measured_at = max(e.round for e in forge.events(parent) if isinstance(e, SimilarityMeasured))
    fork = forge.fork(parent, measured_at, max_iterations=3)
    list(forge.deliberate(fork))
    events = forge.events(fork)
    at = next(i for i, e in enumerate(events) if isinstance(e, SessionForked))
    copied = [e for e in events[:at] if isinstance(e, SimilarityMeasured) and e.round == measured_at]
    again = [e for e in events[at:] if isinstance(e, SimilarityMeasured) and e.round <= measured_at]
    assert copied and again == [], ([(r.round, r.kind) for r in rounds], again)
    assert forge.verify(fork) == []
