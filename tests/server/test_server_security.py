"""The server against browser-borne requests, bad input, a damaged log and blank tokens.

Real uvicorn on an ephemeral loopback port (what a browser or curl meets), except where a
non-loopback bind is needed: that one is the ASGI app in-process, so nothing listens beyond
loopback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sqlite3

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from forge_actors.core.errors import ConfigError
from forge_actors.engine import Forge
from forge_actors.surfaces.cli import main
from forge_actors.surfaces.server.app import API, create_app
from forge_actors.surfaces.server.openapi import ENDPOINTS
from forge_actors.surfaces.server.runner import ServerThread

JSON = {"content-type": "application/json"}
#: One client for the module (a new one per request would cost more than the request).
HTTP = httpx.Client(timeout=30)
POST_ROUTES = [path for method, path, *_ in ENDPOINTS if method == "post"]


@pytest.fixture
def forge(tmp_path):
    with Forge(str(tmp_path / "forge.db")) as forge:
        yield forge


@pytest.fixture
def server(forge):
    with ServerThread(forge) as running:
        yield running


@pytest.fixture
def ended(forge) -> str:
    """A session run to its end with two quick mocks."""
    session_id = forge.create_session("Plan a garden", ["mock:alice", "mock:bob"], max_rounds=1)
    list(forge.deliberate(session_id))
    return session_id


def api(server: ServerThread, path: str) -> str:
    return server.url + API + path


def port_of(server: ServerThread) -> int:
    return int(server.url.rsplit(":", 1)[1])


def ws_url(server: ServerThread, path: str) -> str:
    return api(server, path).replace("http://", "ws://")


def assert_json_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    return body


def ws_close(address: str, **kwargs) -> tuple[int, str, list[dict]]:
    """Connect, read until the server closes: (code, reason, the events before it)."""
    events: list[dict] = []
    with connect(address, open_timeout=10, max_queue=None, **kwargs) as ws:
        while True:
            try:
                events.append(json.loads(ws.recv(timeout=20)))
            except ConnectionClosed as closed:
                assert closed.rcvd is not None
                return closed.rcvd.code, closed.rcvd.reason, events


def raw_request(server: ServerThread, head: str) -> str:
    """Send ``head`` as is (for headers a client library will not forge); the response's status line."""
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=10) as connection:
        connection.sendall(head.encode())
        return connection.makefile("rb").readline().decode()


def sse_lines(server: ServerThread, path: str, **kwargs) -> list[str]:
    """The lines of an SSE stream that ends (SessionEnded, or an error event)."""
    lines: list[str] = []
    with HTTP.stream("GET", api(server, path), timeout=30, **kwargs) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            lines.append(line)
            if line.startswith("data: ") and ('"type":"SessionEnded"' in line or lines[-2] == "event: error"):
                break
    return lines


# -- 3. browser-borne requests ----------------------------------------------------------------------


def test_every_post_route_refuses_what_is_not_json_with_415(server, forge, ended):
    # The types a page on another site can send without a CORS preflight, and near misses; as a
    # browser sends them (Sec-Fetch-Site), since a form-encoded JSON object from curl is taken
    # (`curl -d '{...}'`: tests/server/test_seed_compat.py).
    for content_type in (None, "application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x",
                         "application/jsonp", "text/json", "application/json-seq"):
        headers = {"content-type": content_type} if content_type else {}
        headers["sec-fetch-site"] = "cross-site"
        for path in POST_ROUTES:
            route = path.replace("{session_id}", ended).replace("{participant}", "alice")
            response = HTTP.post(api(server, route), content=b'{"goal": "g"}', headers=headers)
            body = assert_json_error(response, 415)
            assert "content-type: application/json" in body["error"]
    assert forge.sessions() == [ended]  # nothing was done


def test_json_with_parameters_is_json_and_a_bodyless_route_takes_an_empty_object(server, forge):
    created = HTTP.post(api(server, "/sessions"), content=b'{"goal": "g", "participants": ["mock:a"]}',
                         headers={"content-type": "Application/JSON; charset=utf-8"})
    assert created.status_code == 201, created.text
    session_id = created.json()["session_id"]
    assert HTTP.post(api(server, f"/sessions/{session_id}/deliberate"), json={}).status_code == 202


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.nip.io:{port}",
                                  "localhost.evil.example", "10.0.0.1:{port}", "[::2]:{port}", "", "::1"])
def test_a_foreign_host_gets_421_on_a_loopback_bind_even_on_the_page(server, host):
    host = host.format(port=port_of(server))
    for path in (API + "/sessions", "/", API + "/openapi.json"):
        response = HTTP.get(server.url + path, headers={"host": host})
        body = assert_json_error(response, 421)
        assert "loopback" in body["error"]
    assert raw_request(server, f"GET {API}/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n"
                       ).split()[1] in ("400", "421")


@pytest.mark.parametrize("host", ["localhost", "localhost:{port}", "LOCALHOST:{port}", "127.0.0.1",
                                  "127.0.0.1:{port}", "127.8.9.10:{port}", "[::1]", "[::1]:{port}"])
def test_loopback_names_are_answered(server, host):
    host = host.format(port=port_of(server))
    assert HTTP.get(api(server, "/sessions"), headers={"host": host}).status_code == 200


@pytest.mark.parametrize("origin", ["http://evil.example", "http://localhost:1", "https://127.0.0.1:{port}",
                                    "null", "http://127.0.0.1:{port}.evil.example", "http://user@127.0.0.1:{port}",
                                    "file://", "http://127.0.0.1:{port}/path"])
def test_a_foreign_origin_gets_403_on_http_and_websocket(server, ended, origin):
    origin = origin.format(port=port_of(server))
    body = assert_json_error(HTTP.post(api(server, "/sessions"), json={"goal": "g"}, headers={"origin": origin}), 403)
    assert "origin" in body["error"]
    assert_json_error(HTTP.get(api(server, f"/sessions/{ended}"), headers={"origin": origin}), 403)
    with pytest.raises(InvalidStatus) as refused:  # the handshake itself is refused: no WebSocket opens
        connect(ws_url(server, f"/sessions/{ended}/stream"), origin=origin, open_timeout=10)
    assert refused.value.response.status_code == 403


def test_the_pages_own_origin_passes_on_http_and_websocket(server, ended):
    port = port_of(server)
    for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}", f"http://[::1]:{port}"):
        response = HTTP.post(api(server, "/sessions"), json={"goal": "g", "participants": ["mock:a"]},
                              headers={"origin": origin})
        assert response.status_code == 201, response.text
        code, _, events = ws_close(ws_url(server, f"/sessions/{ended}/stream"), origin=origin)
        assert code == 1000 and events[-1]["type"] == "SessionEnded"


def test_a_port_forward_keeps_the_page_working(server):
    # ssh -L 9999:127.0.0.1:PORT: the browser says Host localhost:9999 and Origin http://localhost:9999
    response = HTTP.post(api(server, "/sessions"), json={"goal": "g", "participants": ["mock:a"]},
                          headers={"host": "localhost:9999", "origin": "http://localhost:9999"})
    assert response.status_code == 201, response.text


def test_a_foreign_host_on_a_websocket_handshake_is_refused_with_403(server, ended):
    status = raw_request(server, f"GET {API}/sessions/{ended}/stream HTTP/1.1\r\nHost: evil.example\r\n"
                         "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n")
    assert status.split()[1] == "403"


def test_on_another_bind_any_host_is_answered_but_an_origin_must_match_it(forge):
    app = create_app(forge, token="t0ken", host="0.0.0.0")

    async def statuses(base_url: str, *requests: tuple[str, dict]) -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url,
                                     headers={"authorization": "Bearer t0ken"}) as client:
            return [(await client.request(method, API + "/sessions", headers=headers)).status_code
                    for method, headers in requests]

    assert asyncio.run(statuses(
        "http://forge.lan:8000", ("GET", {}), ("GET", {"origin": "http://forge.lan:8000"}),
        ("GET", {"origin": "https://forge.lan:8000"}), ("GET", {"origin": "http://evil.example:8000"}),
        ("GET", {"origin": "http://forge.lan:9000"}), ("POST", {"content-type": "text/plain"}),
    )) == [200, 200, 200, 403, 403, 415]
    assert asyncio.run(statuses(  # behind a TLS proxy
        "https://forge.example.com", ("GET", {"origin": "https://forge.example.com"}),
        ("GET", {"origin": "https://evil.example.com"}))) == [200, 403]


# -- 7. no 500 on bad input --------------------------------------------------------------------------


BAD_POSITIONS = ["²", "١٢", "9" * 5000, "0" * 5000 + "1" * 20, str(1 << 63), "-1", "1.5", " 1", "0x10", "1e3", "１"]
BAD_SPEEDS = ["nan", "NaN", "inf", "-inf", "-1", "1e309", "9" * 400, "١", "1_0", " 1", "", "0x1", "+1"]


def test_bad_positions_get_422_on_every_stream(server, ended):
    for text in BAD_POSITIONS:
        body = assert_json_error(HTTP.get(api(server, f"/sessions/{ended}/events"), params={"from": text}), 422)
        assert "from" in body["error"]
        if text == text.strip():  # (HTTP strips a header's surrounding blanks)
            body = assert_json_error(HTTP.get(api(server, f"/sessions/{ended}/events"),
                                               headers={"last-event-id": text.encode()}), 422)
            assert "Last-Event-ID" in body["error"]
        code, reason, _ = ws_close(ws_url(server, f"/sessions/{ended}/stream?" + str(httpx.QueryParams({"from": text}))))
        assert code == 4422 and "from" in reason
    assert HTTP.get(api(server, "/sessions")).status_code == 200


def test_the_largest_position_is_a_position(server, ended):
    with HTTP.stream("GET", api(server, f"/sessions/{ended}/events"), params={"from": str((1 << 63) - 1)},
                      timeout=10) as response:
        assert response.status_code == 200
    code, _, events = ws_close(ws_url(server, f"/sessions/{ended}/stream?from=00{(1 << 63) - 1}&speed=0"))
    assert code == 1000 and events == []


def test_bad_speeds_get_422_and_good_ones_stream(server, ended):
    for text in BAD_SPEEDS:
        body = assert_json_error(HTTP.get(api(server, f"/sessions/{ended}/events"), params={"speed": text}), 422)
        assert "speed" in body["error"]
        code, reason, _ = ws_close(ws_url(server, f"/sessions/{ended}/stream?" + str(httpx.QueryParams({"speed": text}))))
        assert code == 4422 and "speed" in reason
    for text in ("0", "0.0", "50", "1000000"):
        lines = sse_lines(server, f"/sessions/{ended}/events", params={"speed": text})
        assert '"type":"SessionEnded"' in lines[-1]


def test_unknown_routes_and_methods_answer_in_json(server):
    assert_json_error(HTTP.get(server.url + "/nope"), 404)
    refused = assert_json_error(HTTP.request("DELETE", api(server, "/sessions"), headers=JSON), 405)
    assert refused
    response = HTTP.put(api(server, "/sessions"), json={})
    assert response.status_code == 405 and "allow" in response.headers


def corrupt(db: str, session_id: str, nth: int = 5) -> int:
    """Overwrite the data of the session's ``nth`` event with text that is not JSON; its position."""
    with sqlite3.connect(db) as connection:
        (position,) = connection.execute("select position from events where stream_id = ? order by version "
                                         "limit 1 offset ?", (session_id, nth)).fetchone()
        connection.execute("update events set data = ? where position = ?", ('{"type": "Contribu', position))
    return position


def test_a_corrupt_row_gives_a_json_5xx_naming_it_on_every_route_and_the_server_stays_up(tmp_path, caplog):
    db = str(tmp_path / "forge.db")
    with Forge(db) as forge:
        session_id = forge.create_session("Plan a garden", ["mock:alice", "mock:bob"], max_rounds=1)
        list(forge.deliberate(session_id))
    position = corrupt(db, session_id)
    caplog.set_level(logging.ERROR)
    with Forge(db) as forge, ServerThread(forge) as server:
        for path in (f"/sessions/{session_id}", f"/sessions/{session_id}/export",
                     f"/sessions/{session_id}/export?format=json", f"/sessions/{session_id}/events",
                     f"/sessions/{session_id}/events?speed=0"):
            body = assert_json_error(HTTP.get(api(server, path)), 500)
            assert f"position {position}" in body["error"] and "sqlite3" in body["error"], path
            assert body["detail"]["position"] == position
        body = assert_json_error(HTTP.post(api(server, f"/sessions/{session_id}/deliberate"), json={}), 500)
        assert body["detail"]["position"] == position
        for query in ("", "?speed=0"):
            code, reason, events = ws_close(ws_url(server, f"/sessions/{session_id}/stream{query}"))
            assert code == 1011 and f"position {position}" in reason and events == []
        # ...and the server goes on: a new session, the list, the document
        created = HTTP.post(api(server, "/sessions"), json={"goal": "g", "participants": ["mock:a"]})
        assert created.status_code == 201, created.text
        assert HTTP.get(api(server, f"/sessions/{created.json()['session_id']}")).status_code == 200
        assert HTTP.get(api(server, "/openapi.json")).status_code == 200
    assert any(f"position {position}" in record.getMessage() for record in caplog.records)


def test_a_row_damaged_under_a_running_stream_ends_it_with_an_error_naming_it(server, forge, ended):
    forge.state(ended)  # the state is read (and kept) before the damage: the streams start
    position = corrupt(forge.path, ended, nth=8)
    for query in ({}, {"speed": "0"}):
        lines = sse_lines(server, f"/sessions/{ended}/events", params=query)
        ids = [int(line[4:]) for line in lines if line.startswith("id: ")]
        assert ids and max(ids) < position  # every event before it, then the error
        assert lines[-2] == "event: error"
        error = json.loads(lines[-1][6:])
        assert f"position {position}" in error["error"] and error["detail"]["position"] == position
        code, reason, events = ws_close(ws_url(server, f"/sessions/{ended}/stream?" + str(httpx.QueryParams(query))))
        assert code == 1011 and f"position {position}" in reason
        assert [e["position"] for e in events] == ids
    assert HTTP.get(api(server, "/sessions")).status_code == 200


def test_an_unexpected_failure_is_a_logged_json_500_that_leaks_nothing(server, forge, monkeypatch, caplog):
    def broken() -> list:
        raise RuntimeError("boom with sk-ant-api03-leaky-secret")

    monkeypatch.setattr(forge, "summaries", broken)
    caplog.set_level(logging.ERROR)
    response = HTTP.get(api(server, "/sessions"))
    body = assert_json_error(response, 500)
    assert body["error"] == "internal error" and "secret" not in response.text and "boom" not in response.text
    incident = body["detail"].split()[1].rstrip(":")
    logged = [r for r in caplog.records if incident in r.getMessage()]
    assert logged and logged[0].exc_info and "boom" in str(logged[0].exc_info[1])
    monkeypatch.undo()
    assert HTTP.get(api(server, "/sessions")).status_code == 200


def test_an_unexpected_failure_on_every_session_route_and_stream(server, forge, ended, monkeypatch):
    def broken(session_id: str) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(forge, "state", broken)
    for path in (f"/sessions/{ended}", f"/sessions/{ended}/export", f"/sessions/{ended}/events"):
        assert assert_json_error(HTTP.get(api(server, path)), 500)["error"] == "internal error"
    code, reason, events = ws_close(ws_url(server, f"/sessions/{ended}/stream"))
    assert code == 1011 and reason.startswith("internal error") and "boom" not in reason and events == []


# -- 8. tokens ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", " ", "  ", "\t", "\n", "two words", "tök"])
def test_a_blank_or_unusable_token_is_refused_at_start(forge, token):
    with pytest.raises(ConfigError):
        create_app(forge, token=token)
    with pytest.raises(ConfigError):
        ServerThread(forge, token=token)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_forge_serve_refuses_a_blank_token_in_one_line_with_exit_2(tmp_path, capsys, how):
    db = str(tmp_path / "forge.db")
    argv = ["serve", "--db", db] + (["--token", "  "] if how == "flag" else [])
    environ = {"FORGE_API_TOKEN": "  "} if how == "env" else {}
    assert main(argv, environ) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "blank" in err and ("--token" if how == "flag" else "FORGE_API_TOKEN") in err


def test_every_websocket_auth_failure_closes_with_4401(tmp_path):
    with Forge(str(tmp_path / "forge.db")) as forge, ServerThread(forge, token="s3cret") as server:
        session_id = forge.create_session("g", ["mock:a"], max_rounds=1)
        list(forge.deliberate(session_id))
        for query in ("", "?token=wrong", "?token=", "?token=s3cret%20"):
            code, reason, events = ws_close(ws_url(server, f"/sessions/{session_id}/stream{query}"))
            assert code == 4401 and "token" in reason and events == []
        code, reason, events = ws_close(ws_url(server, "/sessions/nope/stream"))
        assert code == 4401  # the token comes first: nothing is told about sessions without it
        code, _, events = ws_close(ws_url(server, f"/sessions/{session_id}/stream?token=s3cret"))
        assert code == 1000 and events[-1]["type"] == "SessionEnded"
        response = HTTP.get(api(server, "/sessions"))
        assert_json_error(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
