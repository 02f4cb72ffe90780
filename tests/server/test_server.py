"""The HTTP API over real HTTP: uvicorn on an ephemeral loopback port, real SSE and WebSocket clients."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest
from starlette.routing import WebSocketRoute
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from forge_actors.core.errors import ConfigError
from forge_actors.engine import Forge
from forge_actors.surfaces.server.app import API, _upgrade_required, create_app
from forge_actors.surfaces.server.openapi import ENDPOINTS, openapi_document
from forge_actors.surfaces.server.runner import ServerThread, check_bind

SLOW = [f"mock:{name}?word_delay=0.003" for name in ("alice", "bob", "carol")]
#: Every state-changing request sends JSON (the server answers anything else with 415).
JSON = {"content-type": "application/json"}


@pytest.fixture
def server(tmp_path):
    forge = Forge(str(tmp_path / "forge.db"))
    with ServerThread(forge) as running:
        yield running
    forge.close()


def url(server: ServerThread, path: str) -> str:
    return server.url + API + path


def sse_events(server: ServerThread, session_id: str, *, last_event_id: int | None = None, limit: int | None = None,
               token: str | None = None) -> list[dict]:
    """Read the SSE stream until SessionEnded (or ``limit`` events), then hang up."""
    headers = {"last-event-id": str(last_event_id)} if last_event_id is not None else {}
    params = {"token": token} if token else {}
    events: list[dict] = []
    with httpx.stream("GET", url(server, f"/sessions/{session_id}/events"), headers=headers, params=params,
                      timeout=30) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        event_id = None
        for line in response.iter_lines():
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("data: "):
                event = json.loads(line[6:])
                assert event["position"] == event_id
                events.append(event)
                if event["type"] == "SessionEnded" or (limit and len(events) >= limit):
                    break
    return events


def ws_events(server: ServerThread, session_id: str, start: int = 0, limit: int | None = None,
              query: str = "") -> list[dict]:
    events: list[dict] = []
    address = url(server, f"/sessions/{session_id}/stream?from={start}{query}").replace("http://", "ws://")
    # max_queue=None: a client that stops reading early must still see the server's close frame
    # (with a bounded queue the library stops reading the socket, and its close waits 10 s).
    with connect(address, open_timeout=10, max_queue=None) as ws:
        while True:
            try:
                event = json.loads(ws.recv(timeout=30))
            except Exception:  # closed by the server after SessionEnded
                break
            events.append(event)
            if limit and len(events) >= limit:
                break
    return events


def create(server: ServerThread, **body) -> dict:
    body.setdefault("goal", "Design a TODO app API")
    body.setdefault("participants", SLOW)
    response = httpx.post(url(server, "/sessions"), json=body)
    assert response.status_code == 201, response.text
    return response.json()


def wait_for_status(server: ServerThread, session_id: str, done) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = httpx.get(url(server, f"/sessions/{session_id}")).json()
        if done(state):
            return state
        time.sleep(0.05)
    raise AssertionError(f"session {session_id} never got there: {state['status']}")


def test_create_deliberate_and_follow_over_sse_then_resume_with_last_event_id(server):
    session = create(server, config={"max_rounds": 2, "seed": 3})
    session_id = session["session_id"]
    assert session["schema"] == "forge_actors.session/1" and session["status"] == "created"
    assert httpx.post(url(server, f"/sessions/{session_id}/deliberate"), json={}).status_code == 202
    first = sse_events(server, session_id, limit=40)  # then the client drops
    rest = sse_events(server, session_id, last_event_id=first[-1]["position"])
    positions = [e["position"] for e in first + rest]
    assert positions == sorted(set(positions))  # no duplicates, in order
    everything = sse_events(server, session_id)
    assert [e["position"] for e in everything] == positions  # no gaps
    assert everything[-1]["type"] == "SessionEnded"
    assert all({"position", "version", "type", "recorded_at"} <= set(e) for e in everything)
    listed = httpx.get(url(server, "/sessions")).json()
    assert [s["session_id"] for s in listed] == [session_id] and listed[0]["status"] == everything[-1]["outcome"]
    exported = httpx.get(url(server, f"/sessions/{session_id}/export"), params={"format": "md"})
    assert exported.status_code == 200 and "## Round 1 — draft" in exported.text
    assert "schema: forge_actors.session/1" in httpx.get(url(server, f"/sessions/{session_id}/export?format=yaml")).text


def test_websocket_history_from_a_position_then_live(server):
    session_id = create(server, deliberate=True, config={"max_rounds": 1})["session_id"]
    first = ws_events(server, session_id, limit=25)
    rest = ws_events(server, session_id, start=first[-1]["position"])
    positions = [e["position"] for e in first + rest]
    assert positions == sorted(set(positions)) and rest[-1]["type"] == "SessionEnded"
    replayed = ws_events(server, session_id, query="&speed=0")  # a past session, re-streamed
    assert [e["position"] for e in replayed] == positions


def test_step_by_step_with_humans_and_the_status_rules(server):
    session_id = create(server, participants=["mock:alice", "mock:bob"], config={"max_rounds": 2})["session_id"]
    conflict = httpx.post(url(server, f"/sessions/{session_id}/converge"), json={})
    assert conflict.status_code == 409 and "synthesis" in conflict.json()["error"]
    draft = httpx.post(url(server, f"/sessions/{session_id}/drafts"), json={"author": "hana", "content": "Use SQLite."})
    assert draft.status_code == 201 and draft.json()["round"] == 0
    started = httpx.post(url(server, f"/sessions/{session_id}/synthesize"), json={})
    assert started.status_code == 202 and started.json()["round"] == 1
    wait_for_status(server, session_id, lambda s: s["rounds"] and s["rounds"][-1]["status"] == "completed")
    vote = httpx.post(url(server, f"/sessions/{session_id}/votes"), json={"voter": "hana", "vote": "AGREE"})
    assert vote.status_code == 201 and vote.json()["round"] == 2
    assert httpx.post(url(server, f"/sessions/{session_id}/converge"), json={}).status_code == 202
    state = wait_for_status(server, session_id, lambda s: len(s["rounds"]) == 2 and s["rounds"][-1]["status"] != "running")
    assert any(v["voter"] == "hana" and v["by_human"] for v in state["rounds"][-1]["votes"])
    cancelled = httpx.post(url(server, f"/sessions/{session_id}/cancel"), json={"reason": "enough"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] in ("cancelled", "converged")
    assert httpx.post(url(server, f"/sessions/{session_id}/deliberate"), json={}).status_code == 409
    assert httpx.post(url(server, f"/sessions/{session_id}/synthesize"), json={}).status_code == 409


def test_bad_requests_get_clear_statuses_and_never_crash_the_server(server):
    assert httpx.get(url(server, "/sessions/nope")).status_code == 404
    assert httpx.get(url(server, "/sessions/nope/events")).status_code == 404
    invalid = httpx.post(url(server, "/sessions"), json={"goal": 42})
    assert invalid.status_code == 422 and invalid.json()["detail"] == [{"field": "goal", "message": "Expected `str`, got `int`"}]
    unknown_field = httpx.post(url(server, "/sessions"), json={"goal": "g", "colour": "red"})
    assert unknown_field.status_code == 422 and "colour" in unknown_field.text
    assert httpx.post(url(server, "/sessions"), content=b"{not json", headers=JSON).status_code == 422
    bad_setting = httpx.post(url(server, "/sessions"), json={"goal": "g", "config": {"max_round": 2}})
    assert bad_setting.status_code == 422 and "unknown setting" in bad_setting.json()["error"]
    bad_provider = httpx.post(url(server, "/sessions"), json={"goal": "g", "participants": ["nosuch:x"]})
    assert bad_provider.status_code == 422 and "unknown provider" in bad_provider.json()["error"]
    too_big = httpx.post(url(server, "/sessions"), content=b'{"goal": "' + b"x" * (2 << 20) + b'"}', headers=JSON)
    assert too_big.status_code == 413
    chunked = httpx.post(url(server, "/sessions"), content=iter([b"x" * (600 << 10)] * 3), headers=JSON)  # no content-length
    assert chunked.status_code == 413
    session_id = create(server)["session_id"]
    assert httpx.get(url(server, f"/sessions/{session_id}/export?format=pdf")).status_code == 422
    assert httpx.get(url(server, f"/sessions/{session_id}/events?from=abc")).status_code == 422
    bad_vote = httpx.post(url(server, f"/sessions/{session_id}/votes"), json={"voter": "x", "vote": "MAYBE"})
    assert bad_vote.status_code == 422
    with connect(url(server, "/sessions/nope/stream").replace("http://", "ws://")) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd.code == 4404 and "no session 'nope'" in closed.value.rcvd.reason
    assert httpx.get(url(server, "/sessions")).status_code == 200  # still serving


def test_api_keys_never_appear_in_any_response(server, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-server-secret-77")
    inline = httpx.post(url(server, "/sessions"), json={  # a key from an API client is refused (tests/engine/test_trust.py)
        "goal": "g", "participants": ["anthropic:claude-sonnet-4-20250514?api_key=sk-ant-inline-secret-78"]})
    assert inline.status_code == 422 and "api_key" in inline.text
    session = create(server, participants=["anthropic:claude-sonnet-4-20250514", "mock:bob"])
    session_id = session["session_id"]
    responses = [inline.text, json.dumps(session), httpx.get(url(server, f"/sessions/{session_id}")).text,
                 httpx.get(url(server, "/sessions")).text,
                 *(httpx.get(url(server, f"/sessions/{session_id}/export?format={f}")).text for f in ("md", "json", "yaml")),
                 json.dumps(sse_events(server, session_id, limit=1))]
    assert session["participants"][0]["provider"] == "anthropic:claude-sonnet-4-20250514"
    assert not any("secret" in text for text in responses)


def test_the_token_guards_every_api_and_stream_request(tmp_path):
    forge = Forge(str(tmp_path / "forge.db"))
    with ServerThread(forge, token="s3cret-token") as server:
        assert httpx.get(url(server, "/sessions")).status_code == 401
        assert httpx.get(url(server, "/sessions"), headers={"authorization": "Bearer wrong"}).status_code == 401
        auth = {"authorization": "Bearer s3cret-token"}
        created = httpx.post(url(server, "/sessions"), json={"goal": "g", "participants": ["mock:a"], "deliberate": True},
                             headers=auth)
        assert created.status_code == 201
        session_id = created.json()["session_id"]
        # A WebSocket without the token is closed with 4401 (a browser's WebSocket can read a close code).
        with connect(url(server, f"/sessions/{session_id}/stream").replace("http://", "ws://")) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
        assert closed.value.rcvd.code == 4401 and "token" in closed.value.rcvd.reason
        assert ws_events(server, session_id, query="&token=s3cret-token")[-1]["type"] == "SessionEnded"
        assert sse_events(server, session_id, token="s3cret-token")[-1]["type"] == "SessionEnded"
        assert httpx.get(url(server, f"/sessions/{session_id}/events")).status_code == 401
        assert httpx.get(server.url + "/").status_code == 200  # the page itself holds no data
    forge.close()
    with pytest.raises(ConfigError, match="without a token"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "t")
    check_bind("::1", None)


def test_the_openapi_document_matches_the_routes(server):
    served = httpx.get(url(server, "/openapi.json")).json()
    assert served == json.loads(json.dumps(openapi_document(API, server.forge.config)))
    documented = {(method.upper(), path) for path, methods in served["paths"].items() for method in methods}
    app = create_app(server.forge)
    routed, websockets = set(), set()
    for route in app.routes:
        if not route.path.startswith(API):
            continue
        if isinstance(route, WebSocketRoute):
            websockets.add(route.path)
        elif route.endpoint is not _upgrade_required:  # (a WebSocket's path answering a plain GET with 426)
            routed |= {(m, route.path) for m in route.methods if m != "HEAD"}
    assert documented == routed
    assert set(served["x-websockets"]) == websockets
    assert len(ENDPOINTS) == len(documented)
    assert "CreateSession" in served["components"]["schemas"]


def test_fifty_websocket_and_fifty_sse_clients_each_get_every_event_once_and_a_stalled_one_delays_nobody(server):
    session_id = create(server, config={"max_rounds": 1})["session_id"]
    results: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def client(kind: str, index: int) -> None:
        try:
            events = ws_events(server, session_id) if kind == "ws" else sse_events(server, session_id)
            results[f"{kind}{index}"] = [e["position"] for e in events]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    # Stalled clients: they subscribe (one by WebSocket upgrade, one by SSE), then never read a byte.
    port = int(server.url.rsplit(":", 1)[1])
    stalled = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    stalled[0].sendall(f"GET {API}/sessions/{session_id}/stream?from=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    stalled[1].sendall(f"GET {API}/sessions/{session_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    threads = [threading.Thread(target=client, args=(kind, i)) for kind in ("ws", "sse") for i in range(50)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # let every client subscribe before the first event
    assert httpx.post(url(server, f"/sessions/{session_id}/deliberate"), json={}).status_code == 202
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors[:3]
    expected = [e["position"] for e in sse_events(server, session_id)]
    assert len(results) == 100 and all(positions == expected for positions in results.values())
    # ...while the stalled ones are still connected, unread: they held up nobody
    for connection in stalled:
        assert connection.recv(64, socket.MSG_PEEK)  # the server did answer them
        connection.close()


def test_a_missing_key_says_who_sets_it_not_to_pass_one(server, monkeypatch):
    """The engine's hint (`api_key=...`) is for trusted callers; an API caller (the page) may not pass a key."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    refused = httpx.post(url(server, "/sessions"), json={"goal": "g", "participants": ["anthropic:claude-sonnet-4-20250514"]})
    assert refused.status_code == 422
    message = refused.json()["error"]
    assert "api_key=" not in message
    assert "sets ANTHROPIC_API_KEY" in message and "`forge serve`" in message
    assert httpx.get(url(server, "/sessions")).json() == []  # nothing was recorded
