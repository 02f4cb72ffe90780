"""Exports from the rebuilt state: golden files of a deterministic mock session, and the pinned JSON schema.

Regenerate the golden files after an intended change with:
    FORGE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/engine/test_export.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec
import pytest
import yaml

from forge_actors.core.events import TokenUsage
from forge_actors.core.export import SCHEMA, event_json, export_document, render
from forge_actors.core.pricing import Price, estimate_cost, format_cost, price_of
from forge_actors.core.usage import usage_report
from forge_actors.engine import Forge

GOLDEN = Path(__file__).with_name("golden")
FIXED_CLOCK = 1_763_769_600_000_000_000


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    db = tmp_path_factory.mktemp("export") / "forge.db"
    forge = Forge(str(db), clock_ns=lambda: FIXED_CLOCK, id_factory=lambda: "golden-session")
    session_id = forge.create_session(
        "Design a TODO app API", [
            {"spec": "mock:alice", "persona": {"name": "The Skeptic", "traits": ["careful"], "tone": "dry"}},
            "mock:bob?garble=critique",  # an unscored critique
            "mock:carol",
            {"kind": "human", "name": "hana"},
        ],
        title="TODO API", constraints=["REST only"], seed=7, max_rounds=2,
    )
    forge.add_human_draft(session_id, "hana", "A single SQLite table | and a REST API.")
    list(forge.deliberate(session_id))
    yield forge, session_id
    forge.close()


@pytest.mark.parametrize("fmt", ["md", "json", "yaml"])
def test_exports_match_the_golden_files(session, fmt):
    forge, session_id = session
    text = render(export_document(forge.state(session_id)), fmt)
    golden = GOLDEN / f"session.{fmt}"
    if os.environ.get("FORGE_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_yaml_carries_the_same_data_as_json(session):
    forge, session_id = session
    document = export_document(forge.state(session_id))
    assert yaml.safe_load(render(document, "yaml")) == json.loads(render(document, "json"))


# The stable schema: these keys, at these levels. Adding a key keeps the version (readers ignore keys
# they do not know); renaming, removing or changing the meaning of one is a new schema version.
PINNED = {
    "": ["schema", "session_id", "title", "goal", "constraints", "settings", "status", "reason", "final_score",
         "participants", "drafts", "rounds", "synthesis", "usage", "totals", "budget", "forked_from"],
    "settings": ["max_iterations", "max_rounds", "convergence_threshold", "round_timeout_seconds", "synthesizer", "seed",
                 "temperature", "max_tokens", "max_retries", "min_votes", "workspace", "max_tool_calls",
                 "max_tool_seconds", "human_wait_seconds", "max_reply_chars", "max_session_bytes", "convergence",
                 "similarity_threshold", "max_cost_usd", "max_session_tokens"],
    "participants[]": ["name", "kind", "provider", "model", "persona", "tools", "tool_mode"],
    "rounds[]": ["round", "kind", "iteration", "status", "participants", "succeeded", "failed", "reason", "score",
                 "texts", "critiques", "votes", "evidence"],
    "rounds[].critiques[]": ["critic", "label", "proposal_author", "score", "strengths", "weaknesses",
                             "suggestions"],
    "rounds[].votes[]": ["voter", "vote", "reasons", "concerns", "by_human", "confidence"],
    "synthesis": ["author", "round", "iteration", "content"],
    "usage[]": ["participant", "provider", "model", "input_tokens", "output_tokens", "cost_usd"],
    "totals": ["input_tokens", "output_tokens", "cost_usd", "cost_note"],
}


def test_the_json_schema_is_pinned(session):
    forge, session_id = session
    data = json.loads(render(export_document(forge.state(session_id)), "json"))
    assert data["schema"] == SCHEMA == "forge_actors.session/1"
    critique_round = next(r for r in data["rounds"] if r["kind"] == "critique")
    vote_round = next(r for r in data["rounds"] if r["kind"] == "convergence")
    found = {
        "": list(data), "settings": list(data["settings"]), "participants[]": list(data["participants"][0]),
        "rounds[]": list(data["rounds"][0]), "rounds[].critiques[]": list(critique_round["critiques"][0]),
        "rounds[].votes[]": list(vote_round["votes"][0]), "synthesis": list(data["synthesis"]),
        "usage[]": list(data["usage"][0]), "totals": list(data["totals"]),
    }
    assert found == PINNED


def test_markdown_has_every_part_a_reader_needs(session):
    forge, session_id = session
    md = render(export_document(forge.state(session_id)), "md")
    for part in ("# TODO API", "**Goal:** Design a TODO app API", "- REST only", "## Participants",
                 "The Skeptic", "## Human drafts", "### hana",
                 "## Round 1 — draft", "## Round 2 — critique", "| critic | proposal | author | score |",
                 "unscored", "Mean scores:", "Synthesis by", "Agreement:", "## Usage", "**total**", "estimated"):
        assert part in md, part


def test_costs_are_estimates_and_unknown_is_not_zero():
    assert price_of("mock:alice", "alice") == Price(0.0, 0.0)
    assert price_of("anthropic:claude-sonnet-4-20250514", "claude-sonnet-4-20250514") == Price(3.0, 15.0)
    assert price_of("openai:some-new-model", "some-new-model") is None
    assert price_of("openai:x", "x", {"x": Price(1, 2)}) == Price(1, 2)
    assert estimate_cost(TokenUsage(1_000_000, 1_000_000), Price(3.0, 15.0)) == 18.0
    assert estimate_cost(TokenUsage(10, 10), None) is None and format_cost(None) == "unknown"


def test_usage_per_round_adds_up_and_an_unknown_price_makes_the_total_unknown(session):
    forge, session_id = session
    state = forge.state(session_id)
    report = usage_report(state)
    assert sum((r.usage for r in report.rounds), TokenUsage()) == report.total == state.total_usage
    assert report.total_cost == 0.0  # mocks are free
    priced = msgspec.structs.replace(
        state, participants={**state.participants,
                             "bob": msgspec.structs.replace(state.participants["bob"], provider="openai:x", model="x")})
    assert usage_report(priced).total_cost is None
    assert usage_report(priced, {"x": Price(1.0, 1.0)}).total_cost > 0


def test_the_summary_projection_agrees_with_the_fold(session):
    forge, session_id = session
    [summary] = [s for s in forge.summaries() if s.session_id == session_id]
    state = forge.state(session_id)
    assert (summary.status, summary.rounds, summary.title) == (state.status, len(state.rounds), "TODO API")
    assert (summary.input_tokens, summary.output_tokens) == (state.total_usage.input_tokens,
                                                            state.total_usage.output_tokens)


def test_event_json_is_the_event_plus_its_place_in_the_log(session):
    forge, session_id = session
    recorded = next(iter(forge.subscribe(session_id)))
    data = json.loads(event_json(recorded))
    assert (data["position"], data["version"], data["recorded_at"], data["type"]) == (
        recorded.position, recorded.version, recorded.recorded_at, "SessionCreated")
    assert data["session_id"] == session_id
