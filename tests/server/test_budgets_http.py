"""Budgets over HTTP: an API caller may set max_cost_usd / max_session_tokens within the operator's own
(forge.toml's, which apply when it sets none), the OpenAPI document says the same bounds, and a cost budget
over a model of unknown price is a 422 with nothing recorded."""

from __future__ import annotations

import httpx
import pytest

from forge_actors.engine import Forge, load_config
from forge_actors.surfaces.server.app import API
from forge_actors.surfaces.server.openapi import openapi_document
from forge_actors.surfaces.server.runner import ServerThread

CONFIG = """
[forge]
max_cost_usd = 1.0
max_session_tokens = 5000
"""


@pytest.fixture
def config(tmp_path):
    (tmp_path / "forge.toml").write_text(CONFIG)
    return load_config(str(tmp_path / "forge.toml"), {})


@pytest.fixture
def server(tmp_path, config, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")  # a key is there; nothing calls the API
    with Forge(str(tmp_path / "forge.db"), config) as forge, ServerThread(forge) as running:
        yield forge, running.url + API


def create(url: str, **fields) -> httpx.Response:
    return httpx.post(url + "/sessions", json={"goal": "Plan a garden", "participants": ["mock:a"], **fields})


def test_an_api_caller_may_lower_the_operators_budget_never_raise_it(server):
    forge, url = server
    refused = create(url, config={"max_cost_usd": 2})
    assert refused.status_code == 422 and "max_cost_usd may be at most 1 through the API" in refused.text
    refused = create(url, config={"max_session_tokens": 5001})
    assert refused.status_code == 422 and "max_session_tokens may be at most 5,000" in refused.text
    lowered = create(url, config={"max_cost_usd": 0.25, "max_session_tokens": 100})
    assert lowered.status_code == 201, lowered.text
    settings = forge.state(lowered.json()["session_id"]).settings
    assert (settings.max_cost_usd, settings.max_session_tokens) == (0.25, 100)
    for given in ({}, {"max_cost_usd": None}):  # none given: the operator's budget applies
        taken = create(url, config=given)
        assert taken.status_code == 201, taken.text
        settings = forge.state(taken.json()["session_id"]).settings
        assert (settings.max_cost_usd, settings.max_session_tokens) == (1.0, 5000)


def test_the_openapi_document_says_the_operators_budget(config):
    properties = openapi_document(API, config)["components"]["schemas"]["CreateSession"]["properties"]
    settings = properties["config"]["properties"]
    cost = next(o for o in settings["max_cost_usd"]["anyOf"] if o.get("type") != "null")
    tokens = next(o for o in settings["max_session_tokens"]["anyOf"] if o.get("type") != "null")
    assert (cost["type"], cost["exclusiveMinimum"], cost["maximum"]) == ("number", 0.0, 1.0)
    assert (tokens["type"], tokens["minimum"], tokens["maximum"]) == ("integer", 1, 5000)


def test_a_cost_budget_over_an_unknown_price_is_a_422_and_records_nothing(server):
    forge, url = server
    refused = create(url, participants=["anthropic:claude-nobody-prices"])
    assert refused.status_code == 422
    assert "the price of claude-nobody-prices is unknown" in refused.text
    assert forge.sessions() == []
