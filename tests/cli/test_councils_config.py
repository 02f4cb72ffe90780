"""``[forge.councils.NAME]``: named councils, read from forge.toml and checked when the file is read."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from forge_actors.core.errors import ConfigError
from forge_actors.engine import Forge
from forge_actors.engine.config import CouncilSettings, ParticipantSpec, load_config, parse_config

COUNCILS = """
[forge]
max_iterations = 5
seed = 11

[forge.pools.fast]
members = ["mock:p1", "mock:p2"]

[forge.councils.review]
description = "a pool and a named mock"
participants = ["pool:fast", { spec = "mock:judge", name = "judge", persona = { name = "The Judge" } }]
settings = { max_iterations = 2, convergence_threshold = 0.6 }
tools = ["file", "search"]

[forge.councils.forge]
participants = ["mock:a", "mock:b"]
"""


def _parse(text: str):
    return parse_config(tomllib.loads(text), source="forge.toml")


def test_councils_are_read_with_their_participants_settings_and_tools():
    config = _parse(COUNCILS)
    assert set(config.councils) == {"review", "forge"}
    review = config.council("review")
    assert isinstance(review, CouncilSettings)
    assert review.participants == (ParticipantSpec(spec="pool:fast"),
                                   ParticipantSpec(spec="mock:judge", name="judge",
                                                   persona=review.participants[1].persona))
    assert review.participants[1].persona.name == "The Judge"
    assert review.settings == {"max_iterations": 2, "convergence_threshold": 0.6}
    assert review.tools == "file,search"  # an array is the same selection as "file,search"
    assert review.description == "a pool and a named mock"
    plain = config.council("forge")
    assert plain.settings == {} and plain.tools == "" and plain.description == ""


def test_no_councils_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # no ./forge.toml here
    assert _parse("[forge]\n").councils == {}
    assert load_config(None, {}).councils == {}


def test_an_unknown_council_names_the_known_ones():
    config = _parse(COUNCILS)
    with pytest.raises(ConfigError, match=r"no council named 'nope'.*forge.toml \(councils: forge, review\)"):
        config.council("nope")
    with pytest.raises(ConfigError, match=r"councils: none configured"):
        _parse("[forge]\n").council("forge")


@pytest.mark.parametrize(("table", "message"), [
    ('description = "x"', r"forge.councils.c.participants: a council needs participants"),
    ("participants = []", r"forge.councils.c.participants: 0 participants; a council has at least 1"),
    ('participants = "mock:a"', r"forge.councils.c.participants: expected an array of specs or tables"),
    ('participants = ["mock:a?api_key=sk-1"]', r"forge.councils.c.participants\[0\].spec: api_key in a spec"),
    ('participants = [{ spec = "mock:a", colour = "red" }]', r"forge.councils.c.participants\[0\]: unknown key"),
    ('participants = [{ spec = "mock:a", persona = { mood = "x" } }]',
     r"forge.councils.c.participants\[0\].persona: unknown key\(s\) mood"),
    ('participants = ["mock:a"]\nsettings = { max_iterations = 0 }',
     r"forge.councils.c.settings: max_iterations must be at least 1"),
    ('participants = ["mock:a"]\nsettings = { rounds = 2 }', r"forge.councils.c.settings: unknown setting\(s\) rounds"),
    ('participants = ["mock:a"]\nsettings = { convergence_threshold = "high" }', r"forge.councils.c.settings: "),
    ('participants = ["mock:a"]\nsettings = 3', r"forge.councils.c.settings: expected a table"),
    ('participants = ["mock:a"]\ntools = "files"', r"forge.councils.c.tools: unknown tool or category 'files'"),
    ('participants = ["mock:a"]\ntools = 3', r"forge.councils.c.tools: tool and category names"),
    ('participants = ["mock:a"]\ndescription = 3', r"forge.councils.c.description: a line of text"),
    ('participants = ["mock:a"]\nmembers = ["x"]', r"forge.councils.c: unknown key\(s\) members"),
])
def test_each_mistake_in_a_council_is_named(table, message):
    with pytest.raises(ConfigError, match=message):
        _parse(f"[forge.councils.c]\n{table}\n")


def test_a_council_larger_than_max_participants_is_refused():
    specs = ", ".join(f'"mock:m{i}"' for i in range(3))
    with pytest.raises(ConfigError, match=r"3 participants; .* at most 2 \(forge.max_participants\)"):
        _parse(f"[forge]\nmax_participants = 2\n[forge.councils.c]\nparticipants = [{specs}]\n")


@pytest.mark.parametrize("name", ["has space", "-dash-first", "x" * 65, "slash/name"])
def test_a_council_name_is_a_plain_word(name):
    with pytest.raises(ConfigError, match=r"a council's name is letters, digits"):
        _parse(f'[forge.councils."{name}"]\nparticipants = ["mock:a"]\n')


def test_councils_must_be_a_table():
    with pytest.raises(ConfigError, match=r"forge.councils: expected a table"):
        _parse('[forge]\ncouncils = ["x"]\n')


def test_the_file_name_is_in_the_error(tmp_path: Path):
    path = tmp_path / "forge.toml"
    path.write_text("[forge.councils.c]\nparticipants = []\n")
    with pytest.raises(ConfigError, match=rf"^{path}: forge.councils.c.participants"):
        load_config(path, {})


def test_bare_specs_stay_a_council_feature():
    # [[forge.participants]] keeps its documented form: tables only.
    with pytest.raises(ConfigError, match=r"forge.participants"):
        _parse('[forge]\nparticipants = ["mock:a"]\n')


def test_a_council_creates_a_session_with_its_settings_over_the_defaults(tmp_path: Path):
    config = _parse(COUNCILS)
    review = config.council("review")
    with Forge(str(tmp_path / "forge.db"), config) as forge:
        session_id = forge.create_session("goal", review.participants, settings=review.settings, tools=review.tools)
        state = forge.state(session_id)
    assert state.settings.max_rounds == 2 and state.settings.convergence_threshold == 0.6
    assert state.settings.seed == 11  # [forge]'s own settings still apply beneath the council's
    assert list(state.participants) == ["fast", "judge"]
    # The council's selection, resolved to tool names when the participant joined.
    assert {"read_file", "grep"} <= set(state.participants["judge"].tools)
