"""The trust boundary over real HTTP: an API client names only what the operator configured.

The server runs on 127.0.0.1 (ephemeral port) over a config that defines a pool, a
command-line tool and a daemon; every refusal is a 422 that names the option (never its
value), writes nothing, and runs nothing (a marker file stays absent, a capturing socket
receives no request).
"""

from __future__ import annotations

import sys
import time
from urllib.parse import urlencode

import httpx
import pytest
from loopback import LoopbackServer

from forge_actors.core.errors import ConfigError, InvalidCommandError, UntrustedSpecError
from forge_actors.core.events import CritiqueRecorded, PromptSent, SessionEnded
from forge_actors.core.rounds import proposal_label
from forge_actors.engine import Forge
from forge_actors.engine.config import ForgeConfig, parse_config
from forge_actors.engine.trust import check_untrusted_participant, check_untrusted_spec
from forge_actors.surfaces.server.app import API
from forge_actors.surfaces.server.runner import ServerThread

TOOL = [sys.executable, "-c", "import sys; print('## Draft', len(sys.argv))"]


def server_config(**forge: object) -> ForgeConfig:
    return parse_config({"forge": {
        **forge,
        "pools": {"local": {"members": ["mock:p1", "mock:p2"]}},
        "cli": {"helper": {"command": TOOL}},
        "daemon": {"shell": {"command": TOOL}},
    }}, source="server.toml")


@pytest.fixture
def server(tmp_path):
    forge = Forge(str(tmp_path / "forge.db"), server_config())
    with ServerThread(forge) as running:
        yield running
    forge.close()


def url(server: ServerThread, path: str) -> str:
    return server.url + API + path


def post_session(server: ServerThread, participants: list, **body) -> httpx.Response:
    return httpx.post(url(server, "/sessions"), json={"goal": "Design a TODO app API", "participants": participants,
                                                      **body}, timeout=30)


def spec(head: str, **options: str) -> str:
    return f"{head}?{urlencode(options)}"


def assert_refused(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 422, response.text
    message = response.json()["error"]
    assert all(word in message for word in words), message


def wait_until_ended(server: ServerThread, session_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = httpx.get(url(server, f"/sessions/{session_id}")).json()
        if state["status"] not in ("created", "running"):
            return state
        time.sleep(0.05)
    raise AssertionError(f"session {session_id} never ended: {state['status']}")


# -- refusals ----------------------------------------------------------------------------------------------


def test_a_command_in_an_api_spec_is_refused_and_never_runs(server, tmp_path):
    marker = tmp_path / "pwned"
    command = f"{sys.executable} -c \"open('{marker}', 'w').write('ran')\""
    response = post_session(server, [spec("cli:x", command=command), "mock:bob"], deliberate=True)
    assert_refused(response, "command")
    assert "open(" not in response.text  # the value is never repeated
    configured_name = post_session(server, [spec("cli:helper", command=command)], deliberate=True)
    assert_refused(configured_name, "command")
    time.sleep(0.2)  # had anything started, it would have written by now
    assert not marker.exists()
    assert server.forge.sessions() == []


def test_presets_and_unconfigured_tools_and_pools_are_refused_by_name(server):
    assert_refused(post_session(server, ["cli:q"]), "cli:q is not configured", "cli:helper")
    assert_refused(post_session(server, ["daemon:x"]), "daemon:x is not configured", "daemon:shell")
    assert_refused(post_session(server, ["pool:undefined"]), "pool:undefined is not configured", "pool:local")
    assert_refused(post_session(server, [spec("pool:local", members="cli:q")]), "members")
    assert server.forge.sessions() == []


def test_a_base_url_from_an_api_client_never_gets_the_servers_key(server, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-server-secret-1234")
    with LoopbackServer() as capture:
        response = post_session(server, [spec("anthropic:claude-x", base_url=capture.url), "mock:bob"],
                                deliberate=True)
        assert_refused(response, "base_url")
        time.sleep(0.2)
        assert capture.requests == []
    assert "sk-ant" not in response.text


def test_keys_and_connection_options_are_refused_naming_the_option_not_the_value(server):
    keyed = post_session(server, [spec("openai:gpt-x", api_key="sk-open-inline-secret-99")])
    assert_refused(keyed, "api_key", "openai:gpt-x")
    assert "secret" not in keyed.text
    assert_refused(post_session(server, [spec("ollama:llama3.2", timeout="1")]), "timeout")
    assert_refused(post_session(server, [spec("mock:a", base_url="x")]), "base_url", "seed, word_delay")
    assert_refused(post_session(server, [spec("mock:a", word_delay="3600")]), "word_delay", "at most")
    assert_refused(post_session(server, [{"spec": spec("cli:x", command="id"), "name": "x"}]), "command")
    assert_refused(post_session(server, ["ollama:bad name\n"]), "not a model or tool name")
    assert server.forge.sessions() == []


def test_a_provider_disabled_in_the_config_is_refused(tmp_path):
    config = parse_config({"forge": {"providers": {"openai": {"enabled": False}}}})
    with pytest.raises(UntrustedSpecError, match="openai is disabled"):
        check_untrusted_spec(config, "openai:gpt-x")
    check_untrusted_spec(config, "anthropic:claude-x")


# -- what is allowed --------------------------------------------------------------------------------------


def test_mocks_configured_pools_tools_and_humans_are_allowed_by_name(server):
    response = post_session(server, [spec("mock:a", seed="3", word_delay="0.001"), "pool:local", "cli:helper",
                                     "daemon:shell", {"kind": "human", "name": "hana"},
                                     {"spec": "mock:b", "name": "bee", "persona": {"name": "The Skeptic"}}])
    assert response.status_code == 201, response.text
    providers = {p["name"]: p["provider"] for p in response.json()["participants"]}
    assert providers == {"a": "mock:a?seed=3&word_delay=0.001", "local": "pool:local", "helper": "cli:helper",
                         "shell": "daemon:shell", "hana": "", "bee": "mock:b"}


def test_the_servers_default_participants_stay_the_operators(tmp_path):
    config = parse_config({"forge": {"participants": [{"spec": "mock:op?word_delay=0.0&fail_on=none",
                                                       "name": "op"}]}})
    forge = Forge(str(tmp_path / "forge.db"), config)
    with ServerThread(forge) as server:
        response = httpx.post(url(server, "/sessions"), json={"goal": "g"})
        assert response.status_code == 201, response.text
        assert response.json()["participants"][0]["name"] == "op"
    forge.close()


def test_the_trusted_python_api_keeps_full_specs(tmp_path):
    with Forge(str(tmp_path / "forge.db")) as forge:
        session_id = forge.create_session("g", [spec("cli:x", command="echo hi"), spec("mock:a", base_url="x")])
        assert forge.state(session_id).participants["x"].provider == "cli:x?command=echo+hi"
        with pytest.raises(UntrustedSpecError, match="command"):
            forge.create_session("g", [spec("cli:x", command="echo hi")], trusted=False)


# -- switching provider over HTTP ----------------------------------------------------------------------------


def test_switching_provider_over_http_follows_the_same_rules(server, tmp_path):
    created = post_session(server, ["mock:alice", "mock:bob"])
    assert created.status_code == 201, created.text
    session_id = created.json()["session_id"]
    switch = url(server, f"/sessions/{session_id}/participants/alice/provider")
    marker = tmp_path / "switched"
    command = f"{sys.executable} -c \"open('{marker}', 'w').write('ran')\""
    assert_refused(httpx.post(switch, json={"spec": spec("cli:x", command=command)}), "command")
    assert_refused(httpx.post(switch, json={"spec": "cli:q"}), "not configured")
    assert_refused(httpx.post(switch, json={"spec": spec("anthropic:claude-x", base_url="http://127.0.0.1:9")}),
                   "base_url")
    assert_refused(httpx.post(switch, json={"spec": spec("openai:gpt-x", api_key="sk-123456")}), "api_key")
    assert server.forge.state(session_id).participants["alice"].provider == "mock:alice"
    moved = httpx.post(switch, json={"spec": "pool:local"})
    assert moved.status_code == 200, moved.text
    assert server.forge.state(session_id).participants["alice"].provider == "pool:local"
    assert httpx.post(url(server, f"/sessions/{session_id}/rounds"), json={"kind": "draft"}).status_code == 202
    assert not marker.exists()


# -- settings and participant counts -------------------------------------------------------------------------


def test_settings_that_are_not_settings_are_a_422_not_a_crash(server):
    for key in ("goal", "title", "participants", "constraints", "trusted"):
        assert_refused(post_session(server, ["mock:a"], config={key: "x"}), "unknown setting", key)
    assert_refused(post_session(server, ["mock:a"], config={"max_iterations": 10**6}), "max_iterations", "at most")
    assert_refused(post_session(server, ["mock:a"], config={"max_rounds": 10**6}), "max_iterations", "at most")
    assert_refused(post_session(server, ["mock:a"], config={"max_tokens": 10**9}), "max_tokens", "at most")
    assert_refused(post_session(server, ["mock:a"], config={"max_retries": 1000}), "max_retries", "at most")
    assert_refused(post_session(server, ["mock:a"], config={"round_timeout_seconds": 1e9}), "round_timeout_seconds")
    assert_refused(post_session(server, ["mock:a"], config={"seed": 2**70}), "seed")
    assert server.forge.sessions() == []
    assert httpx.get(url(server, "/sessions")).status_code == 200  # still serving


def test_thirty_participants_deliberate_end_to_end_with_labels_past_z(server):
    participants = [f"mock:m{i:02d}" for i in range(30)]
    response = post_session(server, participants, config={"max_rounds": 1, "seed": 5}, deliberate=True)
    assert response.status_code == 201, response.text
    session_id = response.json()["session_id"]
    state = wait_until_ended(server, session_id)
    assert state["status"] in ("converged", "max_rounds"), state["status"]
    events = server.forge.events(session_id)
    assert isinstance(events[-1], SessionEnded) and not server.forge.verify(session_id)
    critique_prompts = [e for e in events if isinstance(e, PromptSent) and "### Proposal A\n" in e.messages[-1].content]
    assert len({e.participant for e in critique_prompts}) == 30
    assert all("### Proposal AC\n" in e.messages[-1].content for e in critique_prompts)  # 29 others: A..Z, AA..AC
    critiques = [e for e in events if isinstance(e, CritiqueRecorded)]
    assert len({e.critic for e in critiques}) == 30
    assert {e.label for e in critiques} >= {"A", "Z", "AA", "AC"}


def test_a_thousand_participants_are_refused_by_the_cap(server):
    response = post_session(server, [f"mock:m{i}" for i in range(1000)])
    assert_refused(response, "1000 participants", "at most 32", "max_participants", "server.toml")
    assert server.forge.sessions() == []


def test_humans_joining_count_against_the_cap(tmp_path):
    config = server_config(max_participants=3)
    forge = Forge(str(tmp_path / "forge.db"), config)
    with ServerThread(forge) as server:
        session_id = post_session(server, ["mock:a", "mock:b"]).json()["session_id"]
        drafts = url(server, f"/sessions/{session_id}/drafts")
        assert httpx.post(drafts, json={"author": "hana", "content": "Use SQLite."}).status_code == 201
        assert httpx.post(drafts, json={"author": "hana", "content": "And a queue."}).status_code == 201  # no new seat
        full = httpx.post(drafts, json={"author": "ivan", "content": "Use Postgres."})
        assert full.status_code == 409 and "at most 3" in full.json()["error"] and "max_participants" in full.text
        assert_refused(post_session(server, ["mock:a", "mock:b", "mock:c", "mock:d"]), "at most 3")
    with pytest.raises(InvalidCommandError, match="at most 3"):
        forge.cast_vote(session_id, "ivan", "AGREE")
    assert list(forge.state(session_id).participants) == ["a", "b", "hana"]
    forge.close()


def test_many_duplicate_names_never_run_out(tmp_path):
    config = ForgeConfig(max_participants=1200)
    with Forge(str(tmp_path / "forge.db"), config) as forge:
        session_id = forge.create_session("g", ["mock:alice"] * 1100)
        names = list(forge.state(session_id).participants)
    assert names[:3] == ["alice", "alice-2", "alice-3"] and names[-1] == "alice-1100" and len(set(names)) == 1100


# -- the policy and the labels, as functions -------------------------------------------------------------


def test_labels_run_past_z_like_spreadsheet_columns():
    assert [proposal_label(i) for i in (0, 1, 25, 26, 27, 51, 52, 701, 702)] == [
        "A", "B", "Z", "AA", "AB", "AZ", "BA", "ZZ", "AAA"]
    assert len({proposal_label(i) for i in range(2000)}) == 2000
    with pytest.raises(ValueError):
        proposal_label(-1)


def test_the_policy_is_a_config_error_naming_the_option():
    config = server_config()
    with pytest.raises(UntrustedSpecError) as refused:
        check_untrusted_participant(config, spec("anthropic:claude-x", api_key="sk-1234567"))
    assert isinstance(refused.value, ConfigError) and refused.value.option == "api_key"
    assert "sk-1234567" not in str(refused.value) and "sk-1234567" not in repr(refused.value)
    check_untrusted_participant(config, {"kind": "human", "name": "hana"})
    check_untrusted_participant(config, spec("mock:a", fail_on="critique", garble="convergence"))


# -- pool members: labels, served_by and provider listings never show a key -------------------------------


POOL_KEY = "sk-pool-member-secret-31"


def test_pool_members_keys_are_redacted_in_labels_served_by_and_listings(tmp_path):
    from forge_actors.core.events import ContributionCompleted
    from forge_actors.engine import probe_providers
    from forge_actors.engine.config import PoolSettings

    # A Python caller may build a config with a key in a member spec (the file loader refuses it).
    config = ForgeConfig(pools={"p": PoolSettings(members=[f"mock:a?api_key={POOL_KEY}&seed=2", "mock:b"])})
    with Forge(str(tmp_path / "forge.db"), config) as forge:
        session_id = forge.create_session("Design a TODO app API", ["pool:p", "mock:x"])
        assert forge.run_round(session_id, "draft", timeout=20).status == "completed"
        served = {e.participant: e.served_by for e in forge.events(session_id) if isinstance(e, ContributionCompleted)}
        assert served["p"] == "mock:a?seed=2"
        health = forge.pool_health()
        assert [h.member for h in health["p"]] == ["mock:a?seed=2", "mock:b"] and health["p"][0].successes == 1
        assert "mock:a?seed=2 (healthy)" in repr(forge.providers(["pool"]))
        listed = "".join(repr(x) for x in (probe_providers(config), forge.providers(["pool"]), health,
                                           forge.events(session_id)))
        with ServerThread(forge) as server:
            over_http = httpx.get(url(server, "/providers"), timeout=30).text
            document = httpx.get(url(server, f"/sessions/{session_id}")).text
    assert "pool:p" in over_http and "mock:a?seed=2" in over_http
    for text in (listed, over_http, document):
        assert POOL_KEY not in text
    assert POOL_KEY.encode() not in (tmp_path / "forge.db").read_bytes()


def test_redaction_helpers_find_keys_inside_member_specs():
    from forge_actors.providers.registry import parse_spec, redact_spec, secret_options

    nested = "pool:p?members=" + "anthropic%3Ac%3Fapi_key%3Dsk-nested-1234%2Cmock%3Ab"
    assert secret_options(nested) == ["api_key"] and secret_options("mock:a?seed=1") == []
    assert parse_spec(nested).has_secrets and "sk-nested" not in str(parse_spec(nested).redacted())
    assert "sk-nested" not in redact_spec(nested)
    assert redact_spec("ollama:m?timeout=5&base_url=http://h") == "ollama:m?timeout=5&base_url=http://h"  # untouched
    assert redact_spec("nosuch:m?api_key=sk-1234") == "nosuch:m"

