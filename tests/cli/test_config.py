"""forge.toml: found in the documented order, parsed into Structs, every mistake named."""

from __future__ import annotations

import pytest

from forge_actors.core.errors import ConfigError
from forge_actors.engine import Forge
from forge_actors.engine.config import ForgeConfig, find_config, load_config, parse_config

GOOD = """
[forge]
default_model = "claude-sonnet-4-20250514"
max_iterations = 4
convergence_threshold = 0.75
round_timeout_seconds = 120

[forge.providers.anthropic]
enabled = true

[forge.providers.openai]
enabled = false

[forge.providers.ollama]
enabled = true
base_url = "http://gpu-box:11434"
timeout = 600

[[forge.participants]]
spec = "mock:alice"
persona = { name = "The Skeptic", traits = ["careful"], tone = "dry" }

[[forge.participants]]
spec = "mock:bob"
name = "robert"

[forge.pricing."my-model"]
input_per_mtok = 1.5
output_per_mtok = 6
"""


def test_max_rounds_is_read_as_the_old_name_of_max_iterations(caplog, tmp_path):
    from forge_actors.engine import config as config_module

    config_module._DEPRECATION_SAID.clear()  # said once per process: make this test the first
    with caplog.at_level("WARNING"):
        config = parse_config({"forge": {"max_rounds": 3}})
    assert config.settings.max_rounds == 3  # recorded under its first name
    assert "max_rounds is deprecated, write max_iterations" in caplog.text
    assert parse_config({"forge": {"max_iterations": 5}}).settings.max_rounds == 5
    with Forge(str(tmp_path / "forge.db")) as forge:
        session_id = forge.create_session("g", ["mock:a"], max_iterations=2)
        assert forge.state(session_id).settings.max_rounds == 2
        from forge_actors.core.export import export_document
        assert export_document(forge.state(session_id)).settings["max_iterations"] == 2


def test_a_full_file_parses_into_typed_config(tmp_path):
    path = tmp_path / "forge.toml"
    path.write_text(GOOD)
    config = load_config(path, {})
    assert config.settings.max_rounds == 4 and config.settings.convergence_threshold == 0.75
    assert config.settings.round_timeout_seconds == 120.0 and config.source == str(path)
    assert config.provider_options("ollama") == {"base_url": "http://gpu-box:11434", "timeout": 600.0}
    assert not config.provider_enabled("openai") and config.provider_enabled("mock")
    assert [p.name for p in config.participants] == [None, "robert"]
    assert config.participants[0].persona.traits == ("careful",)
    assert config.pricing["my-model"].output_per_mtok == 6.0


@pytest.mark.parametrize("text, message", [
    ("[forge]\nmax_round = 3\n", "forge.max_round"),
    ("[forge]\nmax_iterations = 'many'\n", "forge.max_iterations: a whole number of iterations"),
    ("[forge]\nmax_iterations = 0\n", "forge.max_iterations must be at least 1"),
    ("[forge]\nmax_rounds = 'many'\n", "forge.max_iterations: a whole number of iterations"),
    ("[forge]\nmax_iterations = 3\nmax_rounds = 4\n", "max_iterations and max_rounds (its old name) disagree"),
    ("[forge]\nconvergence_threshold = 1.2\n", "forge.convergence_threshold must be between 0 and 1"),
    ("[forge]\nround_timeout_seconds = -1\n", "round_timeout_seconds must be more than 0"),
    ("[forge.providers.ollama]\nbase_urll = 'x'\n", "forge.providers.ollama: unknown key `base_urll`"),
    ("[forge.providers.ollama]\ntimeout = 'slow'\n", "forge.providers.ollama.timeout"),
    ("[forge.providers.anthropic]\napi_key = 'sk-abc'\n", "environment only"),
    ("[forge.providers.nosuch]\nenabled = true\n", "unknown provider 'nosuch'"),
    ("[[forge.participants]]\nspec = 'mock:a'\nnickname = 'x'\n", "forge.participants[0]: unknown key `nickname`"),
    ("[[forge.participants]]\nspec = 'mock:a'\npersona = { mood = 'x' }\n", "forge.participants[0].persona"),
    ("[[forge.participants]]\nspec = 'anthropic:c?api_key=sk-x'\n", "environment only"),
    ("[forge.pricing.m]\ninput_per_mtok = 1\n", "forge.pricing.m: Object missing required field `output_per_mtok`"),
    ("[other]\nx = 1\n", "unknown table(s) other"),
    ("[forge\n", "not valid TOML"),
    ("[forge.pools.p]\nmembers = ['mock:a', 'anthropic:c?api_key=sk-x']\n", "forge.pools.p.members[1]: api_key"),
    ("[forge.pools.p]\nmembers = ['openai:g?base_url=http%3A%2F%2Fh&api_key=sk-x']\n", "environment only"),
    ("[forge]\ndefault_model = 'anthropic:c?api_key=sk-x'\n", "forge.default_model: api_key"),
    ("[forge]\nmax_participants = 0\n", "forge.max_participants: a whole number, at least 1"),
    ("[forge]\nmax_participants = 'lots'\n", "forge.max_participants"),
    ("[forge]\nmax_iterations = 1000\n", "forge.max_iterations must be at least 1 and at most 100"),
    ("[forge]\nconvergence = 'vibes'\n", "forge.convergence: Invalid enum value 'vibes'; write one of votes, similarity, both"),
    ("[forge]\nsimilarity_threshold = 1.5\n", "forge.similarity_threshold must be between 0 and 1"),
    ("[forge]\nmax_retries = 50\n", "forge.max_retries must be 0 or more and at most 10"),
    ("[forge]\nmax_tokens = 10000000\n", "forge.max_tokens must be at least 1 and at most 128000"),
    ("[forge]\nround_timeout_seconds = 1e9\n", "round_timeout_seconds must be more than 0 and at most 86400"),
])
def test_every_mistake_names_the_key_and_the_file(tmp_path, text, message):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert message in str(caught.value) and str(path) in str(caught.value)
    assert "sk-abc" not in str(caught.value) and "sk-x" not in str(caught.value)


def test_config_is_found_flag_then_environment_then_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_config(None, {}) is None and load_config(None, {}) == ForgeConfig()
    (tmp_path / "forge.toml").write_text("[forge]\nmax_rounds = 2\n")
    (tmp_path / "env.toml").write_text("[forge]\nmax_rounds = 3\n")
    (tmp_path / "flag.toml").write_text("[forge]\nmax_rounds = 4\n")
    assert load_config(None, {}).settings.max_rounds == 2
    assert load_config(None, {"FORGE_CONFIG": "env.toml"}).settings.max_rounds == 3
    assert load_config("flag.toml", {"FORGE_CONFIG": "env.toml"}).settings.max_rounds == 4
    with pytest.raises(ConfigError, match="no such config file .given by FORGE_CONFIG"):
        load_config(None, {"FORGE_CONFIG": "missing.toml"})


def test_the_engine_applies_the_config(tmp_path):
    config = parse_config({"forge": {"max_rounds": 2, "providers": {"openai": {"enabled": False}},
                                     "participants": [{"spec": "mock:alice"}, {"spec": "mock:bob"}]}})
    with Forge(str(tmp_path / "f.db"), config) as forge:
        session_id = forge.create_session("goal")  # the config's participants
        state = forge.state(session_id)
        assert list(state.participants) == ["alice", "bob"] and state.settings.max_rounds == 2
        with pytest.raises(ConfigError, match="openai is disabled"):
            forge.create_session("goal", ["openai:gpt-4o?base_url=http://127.0.0.1:9/v1"])


def test_max_participants_is_read_from_the_file_and_defaults_to_32(tmp_path):
    assert ForgeConfig().max_participants == 32 and parse_config({}).max_participants == 32
    path = tmp_path / "forge.toml"
    path.write_text("[forge]\nmax_participants = 5\nmax_rounds = 3\n")
    config = load_config(path, {})
    assert config.max_participants == 5 and config.settings.max_rounds == 3
    with Forge(str(tmp_path / "forge.db"), config) as forge:
        with pytest.raises(ConfigError, match=f"6 participants: a session takes at most 5.*max_participants.*{path}"):
            forge.create_session("g", [f"mock:m{i}" for i in range(6)])
        assert forge.sessions() == []
        forge.create_session("g", [f"mock:m{i}" for i in range(5)])


def test_settings_are_one_mapping_and_its_names_are_checked(tmp_path):
    with Forge(str(tmp_path / "forge.db")) as forge:
        session_id = forge.create_session("g", ["mock:a"], settings={"max_rounds": 2, "seed": 4}, seed=9)
        assert forge.state(session_id).settings.max_rounds == 2 and forge.state(session_id).settings.seed == 9
        for bad in ({"goal": "other"}, {"participants": []}, {"title": "t"}, {"constraints": []}):
            with pytest.raises(ConfigError, match="unknown setting"):
                forge.create_session("g", ["mock:a"], settings=bad)
        with pytest.raises(ConfigError, match="mapping"):
            forge.create_session("g", ["mock:a"], settings=["max_rounds"])  # type: ignore[arg-type]
        assert forge.sessions() == [session_id]


def test_the_cli_flag_max_rounds_is_the_old_name_of_max_iterations(tmp_path):
    from forge_actors.surfaces import cli

    db = str(tmp_path / "f.db")
    assert cli.main(["run", "g", "-p", "mock:a", "-p", "mock:b", "--max-rounds", "1", "--db", db, "--json"]) in (0, 1)
    with Forge(db) as forge:
        assert forge.state(forge.sessions()[0]).settings.max_rounds == 1
    assert cli.main(["run", "g", "-p", "mock:a", "--max-rounds", "1", "--max-iterations", "2", "--db", db]) == 2


def test_the_stop_rule_is_read_from_the_file(tmp_path):
    path = tmp_path / "forge.toml"
    path.write_text("[forge]\nconvergence = 'both'\nsimilarity_threshold = 0.85\n")
    settings = load_config(path, {}).settings
    assert (settings.convergence, settings.similarity_threshold) == ("both", 0.85)
    assert (ForgeConfig().settings.convergence, ForgeConfig().settings.similarity_threshold) == ("votes", 0.9)
