"""The seed's manual test, as written (issue 15 item 1), and what it took: `name` as the title,
`curl -d`'s form-encoded JSON taken from clients that are not a page of another site, and the
WebSocket `.../deliberate` that starts, resumes or joins a deliberation. Also what an API caller
may ask of tools (engine/trust.py).

Everything runs against uvicorn on an ephemeral loopback port (runner.ServerThread): httpx (and
the real curl, when the machine has it) plays curl, the websockets client plays websocat.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from forge_actors.engine import Forge, load_config
from forge_actors.surfaces.server.app import API
from forge_actors.surfaces.server.runner import ServerThread

HTTP = httpx.Client(timeout=30)
SEED_BODY = b'{"name": "Test", "goal": "Design a TODO app API"}'
#: What `curl -X POST URL -d '...'` sends besides the body (curl's defaults).
CURL_HEADERS = {"content-type": "application/x-www-form-urlencoded", "user-agent": "curl/8.5.0", "accept": "*/*"}
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def workspace(tmp_path) -> Path:
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "README.md").write_text("# a project the participants may read\n")
    return folder


@pytest.fixture
def forge(tmp_path, workspace):
    """An engine as `forge serve` builds it from a forge.toml: two offline mocks by default, the
    operator's workspace, no provider that needs a key."""
    toml = tmp_path / "forge.toml"
    toml.write_text(f"""
[forge]
max_rounds = 1
workspace = "{workspace}"

[[forge.participants]]
spec = "mock:ana"

[[forge.participants]]
spec = "mock:ben"

[forge.providers.anthropic]
enabled = false

[forge.providers.openai]
enabled = false
""")
    with Forge(str(tmp_path / "forge.db"), load_config(toml)) as forge:
        yield forge


@pytest.fixture
def server(forge):
    with ServerThread(forge) as running:
        yield running


def api(server: ServerThread, path: str) -> str:
    return server.url + API + path


def ws_url(server: ServerThread, path: str) -> str:
    return api(server, path).replace("http://", "ws://")


def port_of(server: ServerThread) -> int:
    return int(server.url.rsplit(":", 1)[1])


def websocat(address: str, **kwargs) -> tuple[int, str, list[str]]:
    """What `websocat ADDRESS` prints (each text message) and how the server closed: (code, reason, messages)."""
    messages: list[str] = []
    with connect(address, open_timeout=10, max_queue=None, **kwargs) as ws:
        while True:
            try:
                messages.append(ws.recv(timeout=30))
            except ConnectionClosed as closed:
                assert closed.rcvd is not None, "the server dropped the connection without a close frame"
                return closed.rcvd.code, closed.rcvd.reason, messages


def events_of(messages: list[str]) -> list[dict]:
    return [json.loads(message) for message in messages]


def create(server: ServerThread, **body) -> str:
    response = HTTP.post(api(server, "/sessions"), json=body)
    assert response.status_code == 201, response.text
    return response.json()["session_id"]


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["error"] + json.dumps(response.json().get("detail"))


# -- 1. the seed's manual test, as written ---------------------------------------------------------------


def test_the_seeds_three_manual_test_commands_work_as_written(server, forge):
    # 1. forge serve: the `server` fixture, uvicorn on a loopback port with the forge.toml above.
    # 2. curl -X POST http://localhost:PORT/api/v1/forge/sessions -d '{"name": "Test", "goal": "Design a TODO app API"}'
    created = HTTP.post(api(server, "/sessions"), content=SEED_BODY,
                        headers={**CURL_HEADERS, "host": f"localhost:{port_of(server)}"})
    assert created.status_code == 201, created.text
    session = created.json()
    assert (session["title"], session["goal"], session["status"]) == ("Test", "Design a TODO app API", "created")
    assert [p["name"] for p in session["participants"]] == ["ana", "ben"]  # the server's own defaults
    session_id = session["session_id"]

    # 3. websocat ws://localhost:PORT/api/v1/forge/sessions/{id}/deliberate
    code, reason, messages = websocat(ws_url(server, f"/sessions/{session_id}/deliberate"))
    events = events_of(messages)
    assert code == 1000, reason
    assert events[0]["type"] == "SessionCreated" and events[-1]["type"] == "SessionEnded"
    assert "ContentDelta" in {e["type"] for e in events}  # the text, streamed as it was written
    positions = [e["position"] for e in events]
    assert positions == sorted(set(positions))
    # The same framing as the existing stream: message for message what /stream sends of it.
    assert websocat(ws_url(server, f"/sessions/{session_id}/stream"))[2] == messages

    # Then, as docs/http-api.md goes on: curl http://localhost:PORT/api/v1/forge/sessions/{id}, the outcome.
    shown = HTTP.get(api(server, f"/sessions/{session_id}")).json()
    assert shown["status"] == events[-1]["outcome"] and shown["status"] in ("converged", "max_rounds")
    assert shown["synthesis"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl on this machine")
def test_the_real_curl_command_creates_the_session(server, forge):
    # The seed's line, port aside (no proxy: it is a loopback server).
    result = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "-X", "POST", api(server, "/sessions"), "-d", SEED_BODY.decode()],
        capture_output=True, text=True, timeout=30, check=False,
        env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()})
    assert result.returncode == 0, result.stderr
    session = json.loads(result.stdout)
    assert (session["title"], session["goal"]) == ("Test", "Design a TODO app API")
    assert forge.sessions() == [session["session_id"]]


# -- 2. `name` as the title ------------------------------------------------------------------------------


def test_name_is_the_title_and_two_different_ones_are_a_422(server, forge):
    titles = {}
    for body in ({"name": "Seed"}, {"title": "Own"}, {"name": "Same", "title": "Same"}, {}):
        session_id = create(server, goal="Design a TODO app API", **body)
        titles[session_id] = HTTP.get(api(server, f"/sessions/{session_id}")).json()["title"]
    assert list(titles.values()) == ["Seed", "Own", "Same", "Design a TODO app API"]
    response = HTTP.post(api(server, "/sessions"), json={"goal": "g", "name": "A", "title": "B"})
    error = error_of(response, 422)
    assert response.json()["detail"][0]["field"] == "name" and "ambiguous" in error and "send only one" in error
    assert len(forge.sessions()) == 4  # the ambiguous one was not created
    schema = HTTP.get(api(server, "/openapi.json")).json()["components"]["schemas"]["CreateSession"]
    assert {"name", "title"} <= set(schema["properties"])


# -- 3. form-encoded JSON: from curl yes, from a page of another site no -------------------------------------


def test_a_form_encoded_json_object_is_taken_from_a_client_that_is_not_a_browser(server, forge):
    port = port_of(server)
    for extra in ({}, {"origin": f"http://127.0.0.1:{port}"}, {"sec-fetch-site": "same-origin"},
                  {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}):
        response = HTTP.post(api(server, "/sessions"), content=SEED_BODY, headers={**CURL_HEADERS, **extra})
        assert response.status_code == 201, (extra, response.text)
    # The body reaches the route as it was sent: its checks apply as to JSON.
    body = json.dumps({"goal": "Concevoir une API — ✓", "name": "Été"}).encode()
    response = HTTP.post(api(server, "/sessions"), content=body, headers=CURL_HEADERS)
    assert (response.json()["goal"], response.json()["title"]) == ("Concevoir une API — ✓", "Été")
    assert "unknown field" in error_of(HTTP.post(api(server, "/sessions"), content=b'{"goal": "g", "nam": "x"}',
                                                 headers=CURL_HEADERS), 422)
    session_id = response.json()["session_id"]
    started = HTTP.post(api(server, f"/sessions/{session_id}/deliberate"), content=b"{}", headers=CURL_HEADERS)
    assert started.status_code == 202, started.text


def test_what_a_page_of_another_site_can_post_is_still_refused(server, forge):
    before = forge.sessions()
    session_id = forge.create_session("g", ["mock:a"], max_rounds=1)
    deliberate = api(server, f"/sessions/{session_id}/deliberate")
    # What an HTML form sends: percent-encoded name=value pairs, never JSON, whatever the field
    # names (the classic trick of a field named like JSON included); an empty form too.
    trick = urlencode({'{"goal": "x", "a": "': '"}'}).encode()
    for url, body in ((api(server, "/sessions"), trick), (api(server, "/sessions"), b"name=Test&goal=x"),
                      (deliberate, b""), (deliberate, trick)):
        error = error_of(HTTP.post(url, content=body, headers={"content-type": FORM}), 415)
        assert "content-type: application/json" in error and "JSON object" in error
    # JSON, but not an object, or not JSON at all.
    for body in (b"[]", b'"x"', b"1", b"{", b"\xff{}", b"[" * 100_000):
        error_of(HTTP.post(deliberate, content=body, headers={"content-type": FORM}), 415)
    # A page's script can set the type by hand and send JSON, but its browser says where it comes from.
    for headers in ({"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"},
                    {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"}):
        error_of(HTTP.post(api(server, "/sessions"), content=SEED_BODY, headers={"content-type": FORM, **headers}),
                 415)
    assert "origin" in error_of(HTTP.post(api(server, "/sessions"), content=SEED_BODY,
                                          headers={"content-type": FORM, "origin": "http://evil.example"}), 403)
    # Only the form type is relaxed: text/plain (a form can shape it into JSON) and no type stay refused.
    for content_type in ("text/plain", None, "multipart/form-data; boundary=x"):
        headers = {"content-type": content_type} if content_type else {}
        error_of(HTTP.post(api(server, "/sessions"), content=SEED_BODY, headers=headers), 415)
    assert sorted(forge.sessions()) == sorted([*before, session_id])  # nothing was created
    assert forge.state(session_id).status == "created"  # nor started


def test_a_form_encoded_body_over_the_limit_is_a_413_before_it_is_read_whole(forge):
    with ServerThread(forge, max_body=64) as small:
        body = json.dumps({"goal": "x" * 100}).encode()
        assert "limit of 64 bytes" in error_of(HTTP.post(api(small, "/sessions"), content=body,
                                                         headers=CURL_HEADERS), 413)

        def chunks():  # streamed, with no Content-Length to go by
            yield body[:40]
            yield body[40:]

        error_of(HTTP.post(api(small, "/sessions"), content=chunks(), headers=CURL_HEADERS), 413)
        assert HTTP.post(api(small, "/sessions"), content=b'{"goal": "g"}', headers=CURL_HEADERS).status_code == 201


# -- 4. the WebSocket .../deliberate ---------------------------------------------------------------------


def first_delta(forge: Forge, session_id: str) -> None:
    """Wait until the session has streamed text (it is running)."""
    subscription = forge.subscribe(session_id)
    try:
        for recorded in subscription:
            if recorded.type == "ContentDelta":
                return
    finally:
        subscription.close()


def test_it_joins_a_deliberation_already_running_here_without_starting_another(server, forge):
    session_id = forge.create_session("Design a TODO app API", ["mock:ana?word_delay=0.05", "mock:ben?word_delay=0.05"],
                                      max_rounds=1)
    assert HTTP.post(api(server, f"/sessions/{session_id}/deliberate"), json={}).status_code == 202
    first_delta(forge, session_id)
    assert forge.running_sessions() == [session_id]
    messages: list[str] = []
    with connect(ws_url(server, f"/sessions/{session_id}/deliberate"), open_timeout=10, max_queue=None) as ws:
        while json.loads(message := ws.recv(timeout=30))["type"] != "ContentDelta":
            messages.append(message)  # the history so far
        messages.append(message)
        cancelled = HTTP.post(api(server, f"/sessions/{session_id}/cancel"), json={"reason": "seen enough"})
        assert cancelled.status_code == 200, cancelled.text
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                messages.append(ws.recv(timeout=30))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    events = events_of(messages)
    assert events[-1]["type"] == "SessionEnded" and events[-1]["outcome"] == "cancelled"
    drafts = [e for e in events if e["type"] == "RoundStarted"]
    assert len(drafts) == len({(e["round"], e["kind"]) for e in drafts})  # one deliberation, not two
    assert [json.loads(m) for m in websocat(ws_url(server, f"/sessions/{session_id}/stream"))[2]] == events


def test_it_resumes_an_interrupted_deliberation_and_streams_how_the_first_run_ended(server, forge):
    session_id = forge.create_session("Design a TODO app API", ["mock:ana?word_delay=0.01"], max_rounds=1)
    first_run = forge.deliberate(session_id)
    for recorded in first_run:
        if recorded.type == "ContentDelta":
            break
    forge.interrupt(session_id, "the test stopped it")
    assert forge.state(session_id).status == "interrupted"
    code, reason, messages = websocat(ws_url(server, f"/sessions/{session_id}/deliberate"))
    assert code == 1000, reason
    types = [e["type"] for e in events_of(messages)]
    # The interrupted run's tail (what it abandoned, that it stopped), then the resumed run to its end.
    assert types.index("ContributionAbandoned") < types.index("SessionInterrupted") < types.index("SessionResumed")
    assert types[-1] == "SessionEnded" and forge.state(session_id).ended


def test_on_an_ended_session_it_only_rereads_and_from_skips_what_was_seen(server, forge):
    session_id = forge.create_session("g", ["mock:ana"], max_rounds=1)
    list(forge.deliberate(session_id))
    last = forge.last_position()
    code, _, messages = websocat(ws_url(server, f"/sessions/{session_id}/deliberate"))
    assert code == 1000 and events_of(messages)[-1]["type"] == "SessionEnded"
    assert forge.last_position() == last  # nothing was run nor written
    middle = events_of(messages)[len(messages) // 2]["position"]
    code, _, after = websocat(ws_url(server, f"/sessions/{session_id}/deliberate?from={middle}"))
    assert code == 1000 and [e["position"] for e in events_of(after)] == [
        e["position"] for e in events_of(messages) if e["position"] > middle]
    # POST .../deliberate says the same in its own way.
    assert "ended" in error_of(HTTP.post(api(server, f"/sessions/{session_id}/deliberate"), json={}), 409)


def test_starting_over_http_leaves_no_subscription_to_the_log_behind(server, forge):
    session_id = forge.create_session("g", ["mock:ana"], max_rounds=1)
    assert HTTP.post(api(server, f"/sessions/{session_id}/deliberate"), json={}).status_code == 202
    assert websocat(ws_url(server, f"/sessions/{session_id}/stream"))[0] == 1000
    with_deliberate = create(server, goal="g", participants=["mock:ana"], deliberate=True)
    assert websocat(ws_url(server, f"/sessions/{with_deliberate}/deliberate"))[0] == 1000
    # (The store's own count: each follower closed its subscription, and the starts opened none.)
    assert forge._store.subscriptions() == 0


def test_a_session_another_engine_drives_closes_with_4409_saying_so(server, forge, tmp_path):
    session_id = forge.create_session("g", ["mock:ana?word_delay=0.05"], max_rounds=1)
    with Forge(str(tmp_path / "forge.db")) as other:
        other.start(session_id)
        first_delta(other, session_id)
        code, reason, messages = websocat(ws_url(server, f"/sessions/{session_id}/deliberate"))
        assert code == 4409 and "another engine" in reason and messages == []
        assert "another engine" in error_of(HTTP.post(api(server, f"/sessions/{session_id}/deliberate"), json={}), 409)
        other.cancel(session_id, "test over")


def test_bad_requests_close_with_the_streams_codes(server, forge):
    session_id = forge.create_session("g", ["mock:ana"], max_rounds=1)
    code, reason, _ = websocat(ws_url(server, "/sessions/nope/deliberate"))
    assert code == 4404 and "nope" in reason
    code, reason, _ = websocat(ws_url(server, f"/sessions/{session_id}/deliberate?from=-1"))
    assert code == 4422 and "from" in reason
    assert forge.state(session_id).status == "created"  # a refused request starts nothing


def test_the_same_origin_and_token_rules_as_the_other_websocket(tmp_path, forge):
    session_id = forge.create_session("g", ["mock:ana"], max_rounds=1)
    with ServerThread(forge, token="s3cret") as server:
        for query in ("", "?token=wrong"):
            code, reason, _ = websocat(ws_url(server, f"/sessions/{session_id}/deliberate{query}"))
            assert code == 4401 and "token" in reason
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url(server, f"/sessions/{session_id}/deliberate?token=s3cret"),
                    origin="http://evil.example", open_timeout=10)
        assert refused.value.response.status_code == 403
        assert forge.state(session_id).status == "created"  # no refused handshake started it
        code, _, messages = websocat(ws_url(server, f"/sessions/{session_id}/deliberate?token=s3cret"),
                                     origin=f"http://127.0.0.1:{port_of(server)}")
        assert code == 1000 and events_of(messages)[-1]["type"] == "SessionEnded"


def test_the_websocket_is_in_the_openapi_document(server):
    document = HTTP.get(api(server, "/openapi.json")).json()
    websocket = document["x-websockets"][f"{API}/sessions/{{session_id}}/deliberate"]
    assert {p["name"] for p in websocket["parameters"]} == {"session_id", "from", "token"}
    assert {"1000", "4409"} <= set(websocket["close_codes"])
    operations = document["paths"][f"{API}/sessions/{{session_id}}/deliberate"]  # HTTP: only the POST
    assert set(operations) == {"post"} and [p["name"] for p in operations["post"]["parameters"]] == ["session_id"]


# -- 5. tools an API caller may ask for ---------------------------------------------------------------------


def test_a_read_only_tool_is_taken_over_the_servers_workspace(server, forge, workspace):
    session_id = create(server, goal="Summarise the README", participants=["mock:a?tools=file"])
    state = forge.state(session_id)
    assert state.settings.workspace == os.path.realpath(workspace)  # the operator's [forge] workspace
    assert "read_file" in state.participants["a"].tools


def test_a_tool_that_runs_programs_and_a_workspace_of_ones_own_are_refused_naming_them(server, forge):
    error = error_of(HTTP.post(api(server, "/sessions"), json={"goal": "g", "participants": ["mock:a?tools=shell"]}),
                     422)
    assert "run_command" in error and "cannot be enabled through the API" in error  # the shell tool
    error = error_of(HTTP.post(api(server, "/sessions"), json={"goal": "g", "participants": ["mock:a"],
                                                               "config": {"workspace": "/etc"}}), 422)
    assert "workspace" in error and "[forge] workspace" in error
    assert forge.sessions() == []


def test_a_participant_that_cannot_be_built_here_closes_with_4422_naming_what_is_missing(server, forge, tmp_path,
                                                                                          monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with Forge(str(tmp_path / "forge.db")) as other:  # an engine that was given the key inline, now gone
        session_id = other.create_session("g", ["anthropic:claude-3-5-sonnet-20241022?api_key=sk-ant-inline-secret"])
    code, reason, messages = websocat(ws_url(server, f"/sessions/{session_id}/deliberate"))
    assert code == 4422 and "ANTHROPIC_API_KEY" in reason and "secret" not in reason and messages == []
    assert forge.state(session_id).status == "created"
