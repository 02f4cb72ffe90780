"""Forge.compare on real mock deliberations: a re-run is the same, another seed is not."""

from __future__ import annotations

import pytest

from forge_actors.core.pricing import Price
from forge_actors.engine import Forge, ForgeConfig, SessionNotFoundError

THREE = ["mock:alice", "mock:bob", "mock:carol"]


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    """Two sessions of the same council and goal, seeds 7 and 8, and a re-run of the first."""
    db = tmp_path_factory.mktemp("compare") / "forge.db"
    config = ForgeConfig(pricing={"alice": Price(1.0, 1.0)})  # a price for one mock, to see a cost
    with Forge(str(db), config) as forge:
        sessions = []
        for seed in (7, 8):
            session_id = forge.create_session("Design a TODO app API", THREE, seed=seed, max_iterations=2)
            list(forge.deliberate(session_id))
            sessions.append(session_id)
        sessions.append(forge.rerun(sessions[0]))
        yield forge, sessions


def test_a_rerun_compares_as_the_same_session(log):
    forge, (first, _, rerun) = log
    comparison = forge.compare(first, rerun)
    assert comparison.first_difference is None
    assert comparison.a.session_id == first and comparison.b.session_id == rerun
    assert comparison.a.status == comparison.b.status and comparison.a.rounds == comparison.b.rounds >= 4
    assert all(r.differences == () for r in comparison.rounds)


def test_another_seed_differs_where_its_rounds_do_at_the_engines_prices(log):
    forge, (first, second, _) = log
    comparison = forge.compare(first, second)
    assert [(s.name, s.a, s.b) for s in comparison.settings] == [("seed", 7, 8)]
    # The mocks draft alike whatever the seed; the seed changes their critiques' scores.
    assert comparison.rounds[0].differences == ()
    found = comparison.first_difference
    assert found is not None and found.round == 2 and "scores" in found.aspects
    assert "scores differ (" in found.summary
    assert comparison.a.cost is not None and comparison.a.cost > 0  # alice's tokens, at the config's price
    assert comparison.a.tokens == forge.usage(first).total


def test_an_unknown_session_is_named(log):
    forge, (first, _, _) = log
    with pytest.raises(SessionNotFoundError, match="nope"):
        forge.compare(first, "nope")
