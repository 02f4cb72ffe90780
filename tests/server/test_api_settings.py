"""The OpenAPI document's schemas of what an API caller may name and set agree with the engine.

The settings' bounds come from the engine's own table (``untrusted_setting_ranges``: the engine's
ranges, a capped setting topped by the operator's value), while openapi.spec_schema writes which
participant specs this server takes (engine/trust.py decides): each bound and each spec is checked
here against the engine itself, through an untrusted caller's create_session.
"""

from __future__ import annotations

import math
import re

import httpx
import pytest

from forge_actors.engine import ConfigError, Forge, ParticipantKeyMissingError, load_config
from forge_actors.surfaces.server.app import API
from forge_actors.surfaces.server.openapi import openapi_document, spec_schema
from forge_actors.surfaces.server.runner import ServerThread

CONFIG = """
[forge.providers.openai]
enabled = false

[forge.pools.duo]
members = ["mock:x", "mock:y"]

[forge.tools]
api_tools = ["file", "git", "calculate"]
"""


@pytest.fixture
def config(tmp_path):
    (tmp_path / "forge.toml").write_text(CONFIG)
    return load_config(str(tmp_path / "forge.toml"), {})


@pytest.fixture
def engine(tmp_path, config, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with Forge(str(tmp_path / "forge.db"), config) as forge:
        yield forge


def settings_schema(config) -> dict:
    return openapi_document(API, config)["components"]["schemas"]["CreateSession"]["properties"]["config"]


def bounds_of(schema: dict) -> tuple[object, object, list[object]]:
    """(a value at each documented bound, the type's name, values just beyond them)."""
    (typed,) = [option for option in schema["anyOf"] if option.get("type") != "null"]
    integer = typed["type"] == "integer"
    step = 1 if integer else 1e-9
    inside, outside = [], []
    for key, value in typed.items():
        if key in ("minimum", "maximum"):
            inside.append(value)
            outside.append(value - step if key == "minimum" else value + step)
        elif key == "exclusiveMinimum":
            inside.append(value + step)
            outside.append(value)
    return inside, typed["type"], outside


def test_each_documented_bound_of_a_setting_is_the_engines(engine, config):
    properties = settings_schema(config)["properties"]
    assert "workspace" not in properties and "max_rounds" not in properties  # not an API caller's / an old name
    checked = 0
    for name, schema in properties.items():
        if name == "synthesizer":
            continue
        choices = [option["enum"] for option in schema["anyOf"] if "enum" in option]
        if choices:  # a choice of words (convergence): each is taken, another word refused
            for value in choices[0]:
                engine.create_session("g", ["mock:a"], settings={name: value}, trusted=False)
            with pytest.raises(ConfigError):
                engine.create_session("g", ["mock:a"], settings={name: "sometimes"}, trusted=False)
            continue
        inside, kind, outside = bounds_of(schema)
        assert inside, f"{name} has no documented bound"
        for value in inside:
            engine.create_session("g", ["mock:a"], settings={name: value}, trusted=False)
        for value in outside:
            if kind == "number" and not math.isfinite(value):
                continue
            with pytest.raises(ConfigError):
                engine.create_session("g", ["mock:a"], settings={name: value}, trusted=False)
            checked += 1
    assert checked >= 10


def test_a_setting_of_the_wrong_type_is_refused_as_the_schema_says(engine):
    with ServerThread(engine) as server:
        for config in ({"max_iterations": "3"}, {"max_tokens": True}, {"temperature": "0.5"}, {"synthesizer": ""}):
            response = httpx.post(server.url + API + "/sessions", json={"goal": "g", "participants": ["mock:a"],
                                                                        "config": config})
            assert response.status_code == 422, (config, response.text)
            assert response.json()["detail"][0]["field"] == "config." + next(iter(config))
        response = httpx.post(server.url + API + "/sessions", json={"goal": "g", "participants": ["mock:a"],
                                                                    "config": {"max_rounds": 2}})
        assert response.status_code == 201, response.text  # the old name is still taken


def test_the_documented_specs_are_the_ones_the_engine_takes_from_an_api_caller(engine, config):
    pattern = re.compile(spec_schema(config)["pattern"])
    taken = ["mock:alice", "mock:a.b/c@d+e-f:g", "anthropic:claude-x", "ollama:llama3.2", "pool:duo"]
    refused = ["openai:gpt-4o", "pool:trio", "cli:claude", "daemon:x", "mock", "mock:", "zz:a", "mock:-a", "a"]
    for spec in taken:
        assert pattern.fullmatch(spec), spec
        try:
            engine.create_session("g", [spec], trusted=False)
        except ParticipantKeyMissingError:  # allowed here; its key is missing on this machine
            pass
    for spec in refused:
        assert not pattern.fullmatch(spec), spec
        with pytest.raises(ConfigError):
            engine.create_session("g", [spec], trusted=False)


def test_the_documented_tools_are_the_read_only_ones_the_operator_lists(engine, config):
    schemas = openapi_document(API, config)["components"]["schemas"]
    pattern = re.compile(schemas["AIParticipant"]["properties"]["tools"]["pattern"])
    for tools in ("", "file", "git,file", "calculate"):
        assert pattern.fullmatch(tools)
        engine.create_session("g", [{"spec": "mock:a", "tools": tools}], trusted=False)
    for tools in ("edit", "search", "file,shell", "nope"):  # not listed (and the config lists no tool that writes)
        assert not pattern.fullmatch(tools)
        with pytest.raises(ConfigError):
            engine.create_session("g", [{"spec": "mock:a", "tools": tools}], trusted=False)
    with pytest.raises(ConfigError, match="replies=json"):  # what the schema's if/then says
        engine.create_session("g", [{"spec": "mock:a", "tools": "file", "replies": "json"}], trusted=False)
    assert schemas["AIParticipant"]["then"] == {"properties": {"replies": {"enum": ["auto", "text"]}}}


def test_a_human_needs_a_name_and_the_seeds_name_is_one_with_title(engine, config):
    schemas = openapi_document(API, config)["components"]["schemas"]
    human = schemas["HumanParticipant"]
    assert human["required"] == ["kind", "name"] and human["properties"]["name"]["minLength"] == 1
    with pytest.raises(ConfigError, match="needs a name"):
        engine.create_session("g", ["mock:a", {"kind": "human", "name": ""}], trusted=False)
    assert schemas["CreateSession"]["not"]["required"] == ["name", "title"]
    assert schemas["CreateSession"]["properties"]["participants"]["maxItems"] == config.max_participants


def test_an_api_caller_may_choose_the_stop_rule(engine):
    with ServerThread(engine) as server:
        response = httpx.post(server.url + API + "/sessions", json={
            "goal": "g", "participants": ["mock:a"], "config": {"convergence": "both", "similarity_threshold": 0.8}})
        assert response.status_code == 201, response.text
        settings = response.json()["settings"]
        assert (settings["convergence"], settings["similarity_threshold"]) == ("both", 0.8)
        response = httpx.post(server.url + API + "/sessions", json={
            "goal": "g", "participants": ["mock:a"], "config": {"convergence": "sometimes"}})
        assert response.status_code == 422 and response.json()["detail"][0]["field"] == "config.convergence"
