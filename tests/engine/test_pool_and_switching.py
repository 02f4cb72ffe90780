"""`pool` providers (failover, round robin, health with an injected clock) and switching providers."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from loopback import LoopbackServer, Reply
from streams_fixtures import openai_stream

from forge_actors.core import audit
from forge_actors.core.errors import InvalidCommandError
from forge_actors.core.events import ContributionCompleted, ProviderSwitched
from forge_actors.core.state import rebuild
from forge_actors.engine import Forge
from forge_actors.engine.config import parse_config
from forge_actors.providers import LlmError, LlmRequest, Message, ServerError, collect, get_provider
from forge_actors.providers.pool import HealthPolicy, PoolHealth, PoolProvider

REQUEST = LlmRequest(messages=(Message("user", "hi"),))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nobody listens here once it is closed: connection refused


def openai(url: str, **options) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"base_url": f"{url}/v1", "timeout": 2, **options}.items())
    return f"openai:m?{query}"


def ok(text: str) -> Reply:
    return Reply(parts=[openai_stream([text])])


def pool(specs: list[str], strategy: str = "failover", health: PoolHealth | None = None) -> PoolProvider:
    return PoolProvider("p", members=[(s, get_provider(s, max_retries=0)) for s in specs], strategy=strategy,
                        health=health)


def test_failover_goes_down_the_list_within_one_call_and_records_who_served():
    with LoopbackServer(Reply(500, [b'{"error":{"message":"down"}}'], content_type="application/json")) as broken, \
            LoopbackServer(ok("from the third")) as third:
        provider = pool([openai(f"http://127.0.0.1:{closed_port()}"), openai(broken.url), openai(third.url)])
        answer = collect(provider.stream(REQUEST), "m")
    assert answer.content == "from the third" and provider.served_by.startswith(f"openai:m?base_url={third.url}")
    states = [h.state for h in provider.health.snapshot(provider.labels())]
    assert [h.consecutive_errors for h in provider.health.snapshot(provider.labels())] == [1, 1, 0]
    assert states == ["healthy", "healthy", "healthy"]


def test_a_stalled_member_times_out_and_the_next_one_answers():
    with LoopbackServer(Reply(parts=[b"", 5.0])) as stalled, LoopbackServer(ok("quick")) as quick:
        provider = pool([openai(stalled.url, timeout=0.5), openai(quick.url)])
        assert collect(provider.stream(REQUEST), "m").content == "quick"


def test_a_stream_cut_after_text_is_reported_not_silently_switched():
    wire = openai_stream(["partial ", "answer"])
    with LoopbackServer(Reply(parts=[wire[: wire.index(b"answer") - 30], 3.0])) as cut, \
            LoopbackServer(ok("other")) as other:
        provider = pool([openai(cut.url, timeout=0.5), openai(other.url)])
        seen = []
        with pytest.raises(LlmError):
            for chunk in provider.stream(REQUEST):
                seen.append(chunk.delta)
        assert seen == ["partial "] and other.requests == []


def test_health_goes_degraded_then_unavailable_then_back_after_the_cool_down():
    clock = Clock()
    health = PoolHealth(HealthPolicy(degraded_after=2, unavailable_after=3, window_seconds=60, cooldown_seconds=30),
                        clock)
    provider = pool(["mock:a?fail_on=all", "mock:b"], health=health)
    state = lambda: health.state("mock:a?fail_on=all")  # noqa: E731
    assert state() == "healthy"
    collect(provider.stream(REQUEST), "m")  # a fails, b serves
    assert state() == "healthy" and provider.served_by == "mock:b"
    collect(provider.stream(REQUEST), "m")
    assert state() == "degraded"
    collect(provider.stream(REQUEST), "m")  # degraded members go last; with b healthy, a is not tried
    assert health.snapshot(["mock:a?fail_on=all"])[0].recent_errors == 2
    health.failed("mock:a?fail_on=all", "server_error: down")
    assert state() == "unavailable" and health.snapshot(["mock:a?fail_on=all"])[0].retry_in == 30
    clock.now += 31
    assert state() == "probation"  # cooled down: tried again in its place
    clock.now += 60
    assert state() == "healthy"  # its errors left the window
    health.failed("mock:b", "x")
    health.succeeded("mock:b")
    assert health.snapshot(["mock:b"])[0].consecutive_errors == 0


def test_failover_returns_to_the_primary_when_it_recovers():
    clock = Clock()
    health = PoolHealth(HealthPolicy(degraded_after=1, unavailable_after=1, cooldown_seconds=10), clock)
    with LoopbackServer(Reply(503, [b"{}"], content_type="application/json"), ok("primary back")) as primary, \
            LoopbackServer(ok("secondary"), ok("secondary")) as secondary:
        provider = pool([openai(primary.url), openai(secondary.url)], health=health)
        assert collect(provider.stream(REQUEST), "m").content == "secondary"
        assert collect(provider.stream(REQUEST), "m").content == "secondary"  # primary cooling down
        clock.now += 11
        assert collect(provider.stream(REQUEST), "m").content == "primary back"
        assert len(primary.requests) == 2 and len(secondary.requests) == 2


def test_round_robin_rotates_and_skips_unhealthy_members():
    provider = pool(["mock:a", "mock:b", "mock:c"], strategy="round_robin")
    served = []
    for _ in range(4):
        collect(provider.stream(REQUEST), "m")
        served.append(provider.served_by)
    assert served == ["mock:a", "mock:b", "mock:c", "mock:a"]
    for _ in range(2):
        provider.health.failed("mock:b", "down")
    served = []
    for _ in range(3):
        collect(provider.stream(REQUEST), "m")
        served.append(provider.served_by)
    assert "mock:b" not in served


def test_when_every_member_fails_the_error_names_them_all():
    provider = pool(["mock:a?fail_on=all", "mock:b?fail_on=all"])
    with pytest.raises(ServerError, match=r"every member failed: mock:a\?fail_on=all \(server_error\), mock:b"):
        collect(provider.stream(REQUEST), "m")


def test_a_pool_participant_in_a_session_records_who_served_and_loses_nothing(tmp_path):
    refused = f"http://127.0.0.1:{closed_port()}"
    config = parse_config({"forge": {"pools": {"fast": {"members": [openai(refused), "mock:backup"],
                                                        "degraded_after": 1, "unavailable_after": 2}}}})
    with Forge(str(tmp_path / "f.db"), config) as forge:
        session_id = forge.create_session("Design a TODO app API", ["pool:fast", "mock:bob"], max_rounds=1,
                                          max_retries=0)
        list(forge.deliberate(session_id))
        records = list(forge.records(session_id))
        served = {e.event.served_by for e in records
                  if isinstance(e.event, ContributionCompleted) and e.event.participant == "fast"}
        assert served == {"mock:backup"} and audit.verify(records) == []
        assert forge.state(session_id).status in ("converged", "max_rounds")
        [health] = forge.pool_health()["fast"][:1]
        assert health.state == "degraded" and health.recent_errors == 1  # refused once, then skipped
        rows = {p.provider: p for p in forge.providers(["pool"])}
        assert "(degraded)" in rows["pool:fast"].detail and "mock:backup (healthy)" in rows["pool:fast"].detail


# -- switching ------------------------------------------------------------------------------------------------


def test_switching_between_rounds_is_recorded_and_replayed(tmp_path):
    with Forge(str(tmp_path / "f.db")) as forge:
        session_id = forge.create_session("Design a TODO app API", ["mock:alice", "mock:bob"], max_rounds=1)
        forge.run_round(session_id, "draft")
        state = forge.switch_provider(session_id, "alice", "mock:zed?seed=9")
        assert (state.participants["alice"].provider, state.participants["alice"].model) == ("mock:zed?seed=9", "zed")
        forge.run_round(session_id, "critique")
        with pytest.raises(InvalidCommandError, match="not an AI participant"):
            forge.switch_provider(session_id, "nobody", "mock:x")
        events = forge.events(session_id)
    switched = [e for e in events if isinstance(e, ProviderSwitched)]
    assert switched == [ProviderSwitched("alice", "mock:zed?seed=9", "zed", "mock:alice", "alice", replies="json")]
    models = [(e.round, e.model) for e in events if type(e).__name__ == "PromptSent" and e.participant == "alice"]
    assert models == [(1, "alice"), (2, "zed")]
    assert rebuild(events).participants["alice"].provider == "mock:zed?seed=9"  # the fold reproduces it
    with Forge(str(tmp_path / "f.db")) as again:  # and so does a fresh process
        assert again.state(session_id).participants["alice"].model == "zed"


def test_switching_is_refused_during_a_round_and_a_bad_spec_changes_nothing(tmp_path):
    with Forge(str(tmp_path / "f.db")) as forge:
        session_id = forge.create_session("Design a TODO app API", ["mock:alice?word_delay=0.05", "mock:bob"])
        forge.start_round(session_id, "draft")
        with pytest.raises(InvalidCommandError, match="between rounds"):
            forge.switch_provider(session_id, "alice", "mock:zed")
        with pytest.raises(Exception, match="unknown provider"):
            forge.switch_provider(session_id, "alice", "nosuch:x")
        forge.cancel(session_id)
        assert forge.state(session_id).participants["alice"].provider == "mock:alice?word_delay=0.05"


def test_switching_through_the_cli_and_the_http_api(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from forge_actors.surfaces.server.runner import ServerThread

    db = tmp_path / "f.db"
    with Forge(str(db)) as forge:
        session_id = forge.create_session("goal", ["mock:alice", "mock:bob"])
        forge.run_round(session_id, "draft")
    forge_cli = str(Path(sys.executable).with_name("forge"))
    done = subprocess.run([forge_cli, "switch", session_id[:6], "bob", "mock:bert", "--db", str(db)],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "bob" in done.stderr and "mock:bert" in done.stderr
    with Forge(str(db)) as forge, ServerThread(forge) as server:
        assert forge.state(session_id).participants["bob"].model == "bert"
        api = f"{server.url}/api/v1/forge/sessions/{session_id}/participants/alice/provider"
        response = httpx.post(api, json={"spec": "mock:anna"})
        assert response.status_code == 200
        assert [p["model"] for p in response.json()["participants"]] == ["anna", "bert"]
        assert httpx.post(api, json={"spec": "nosuch:x"}).status_code == 422
        listed = httpx.get(f"{server.url}/api/v1/forge/providers").json()
        assert {"providers", "pools"} <= set(listed) and json.dumps(listed)
