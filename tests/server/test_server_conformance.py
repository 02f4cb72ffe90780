"""The server answers as its OpenAPI document says: what schemathesis' conformance checks found.

Each operation's statuses and content types are the documented ones (a table of requests that
reach each status; the property test of test_server_fuzz.py checks every response it draws);
a method a path does not take is a 405 whose ``Allow`` names every method the path takes, TRACE
included; the WebSockets' paths say over plain HTTP what they are; and the bodies' schemas say
what the server refuses (an empty goal, an unknown round kind, a body where none is taken).
Real uvicorn on a loopback port, mock participants only.
"""

from __future__ import annotations

import json

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from forge_actors.core.events import ROUND_KINDS
from forge_actors.engine import Forge, LogWriteError
from forge_actors.surfaces.server.app import API
from forge_actors.surfaces.server.openapi import EXPORT_TYPES, openapi_document
from forge_actors.surfaces.server.runner import ServerThread

JSON = {"content-type": "application/json"}
HTTP = httpx.Client(timeout=30)
DOCUMENT = openapi_document(API)
SCHEMAS = DOCUMENT["components"]["schemas"]
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A server over a log holding an ended session and a created one."""
    forge = Forge(str(tmp_path_factory.mktemp("conformance") / "forge.db"))
    ended = forge.create_session("Plan a garden", ["mock:ana", "mock:ben"], max_iterations=1)
    list(forge.deliberate(ended))
    created = forge.create_session("Name a cat", ["mock:ana", {"kind": "human", "name": "eve"}], max_iterations=1)
    with ServerThread(forge) as server:
        yield server, forge, ended, created
    forge.close()


def concrete(path: str, session_id: str) -> str:
    return path.replace("{session_id}", session_id).replace("{participant}", "ana")


def documented(path: str, method: str, status: int) -> dict:
    response = DOCUMENT["paths"][API + path][method.lower()]["responses"].get(str(status))
    assert response is not None, f"{method} {path}: {status} is not documented"
    return response


def assert_as_documented(response: httpx.Response, path: str, method: str, status: int) -> None:
    assert response.status_code == status, (method, path, response.text)
    media = response.headers["content-type"].split(";")[0].strip()
    assert media in documented(path, method, status)["content"], (method, path, status, media)
    if media == "application/json" and status >= 400:
        assert isinstance(response.json()["error"], str)


# -- 405 and Allow --------------------------------------------------------------------------------------


def allow_of(response: httpx.Response) -> set[str]:
    return {method.strip() for method in response.headers["allow"].split(",")}


def test_every_method_a_path_does_not_take_is_a_405_naming_every_method_it_takes(served):
    server, _, ended, _ = served
    for path, operations in DOCUMENT["paths"].items():
        taken = {method.upper() for method in operations}
        allowed = taken | ({"HEAD"} if "GET" in taken else set())
        for method in METHODS:
            if method in taken:
                continue
            for headers, body in (({}, None), (JSON, b"{}")):  # as a browser's form would, and as JSON
                response = HTTP.request(method, server.url + concrete(path, ended), headers=headers, content=body)
                assert response.status_code == 405, (method, path, headers, response.text)
                assert allow_of(response) == allowed, (method, path)
                assert response.json()["error"]


def test_trace_is_a_405_and_not_a_415(served):
    # TRACE is no state-changing method of any route here: the body rule (415) is not its answer.
    server, _, ended, _ = served
    for path in (f"/sessions/{ended}", "/providers", f"/sessions/{ended}/export", f"/sessions/{ended}/events"):
        response = HTTP.request("TRACE", server.url + API + path)
        assert response.status_code == 405 and allow_of(response) == {"GET", "HEAD"}, (path, response.text)


def test_the_openai_routes_answer_405_with_allow_too_in_openais_shape(served):
    server, *_ = served
    response = HTTP.request("DELETE", server.url + "/v1/chat/completions")
    assert response.status_code == 405 and allow_of(response) == {"POST"}
    assert isinstance(response.json()["error"]["message"], str)
    response = HTTP.post(server.url + "/v1/models", content=b"x", headers={"content-type": "text/plain"})
    assert response.status_code == 405 and allow_of(response) == {"GET", "HEAD"}


# -- the WebSockets ----------------------------------------------------------------------------------------


def test_the_websockets_are_described_apart_from_the_http_operations(served):
    websockets = DOCUMENT["x-websockets"]
    assert set(websockets) == {f"{API}/sessions/{{session_id}}/stream", f"{API}/sessions/{{session_id}}/deliberate"}
    assert not any("101" in operation["responses"] for methods in DOCUMENT["paths"].values()
                   for operation in methods.values())
    assert f"{API}/sessions/{{session_id}}/stream" not in DOCUMENT["paths"]


def test_a_websockets_path_over_plain_http_says_it_is_one(served):
    server, _, ended, _ = served
    response = HTTP.get(server.url + API + f"/sessions/{ended}/stream")
    assert response.status_code == 426 and response.headers["upgrade"] == "websocket"
    assert "WebSocket" in response.json()["error"]
    response = HTTP.post(server.url + API + f"/sessions/{ended}/stream", json={})
    assert response.status_code == 405 and allow_of(response) == {"GET", "HEAD"}
    # .../deliberate takes POST over HTTP: a plain GET is that path's 405, pointing at the WebSocket.
    response = HTTP.get(server.url + API + f"/sessions/{ended}/deliberate")
    assert response.status_code == 405 and allow_of(response) == {"POST"}
    assert "WebSocket" in response.json()["detail"]
    # ...and both still open as WebSockets.
    for path in ("stream", "deliberate"):
        events = []
        with connect(f"{server.url}{API}/sessions/{ended}/{path}".replace("http://", "ws://"), open_timeout=10) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    events.append(json.loads(ws.recv(timeout=20)))
        assert closed.value.rcvd.code == 1000 and events[-1]["type"] == "SessionEnded"


# -- statuses and content types ------------------------------------------------------------------------


def test_the_export_sends_the_documented_type_of_each_format(served):
    server, _, ended, _ = served
    path = "/sessions/{session_id}/export"
    assert set(documented(path, "get", 200)["content"]) == set(EXPORT_TYPES.values())
    for fmt in EXPORT_TYPES:
        response = HTTP.get(server.url + API + concrete(path, ended), params={"format": fmt})
        assert_as_documented(response, path, "get", 200)
        assert response.headers["content-type"].startswith(EXPORT_TYPES[fmt])


def test_each_documented_status_is_sent_as_documented(served, monkeypatch):
    server, forge, ended, created = served
    sessions, one = "/sessions", "/sessions/{session_id}"
    cases = [  # (method, path, session, request keywords, status)
        ("POST", sessions, None, {"json": {"goal": "g", "participants": ["mock:a"]}}, 201),
        ("POST", sessions, None, {"json": {"goal": ""}}, 422),
        ("POST", sessions, None, {"content": b'{"goal": "g"}', "headers": {"content-type": "text/plain"}}, 415),
        ("POST", sessions, None, {"content": b" " * (2 << 20), "headers": JSON}, 413),
        ("POST", sessions, None, {"json": {"goal": "g"}, "headers": {"origin": "http://evil.example"}}, 403),
        ("GET", sessions, None, {"headers": {"host": "evil.example"}}, 421),
        ("GET", sessions, None, {}, 200),
        ("GET", one, ended, {}, 200),
        ("GET", one, "nope", {}, 404),
        ("POST", "/sessions/{session_id}/converge", created, {"json": {}}, 409),
        ("POST", "/sessions/{session_id}/deliberate", ended, {"json": {}}, 409),
        ("POST", "/sessions/{session_id}/deliberate", ended, {"json": {"now": True}}, 422),
        ("POST", "/sessions/{session_id}/rounds", created, {"json": {"kind": "brainstorm"}}, 422),
        ("POST", "/sessions/{session_id}/drafts", created, {"json": {"author": "eve", "content": "A plan"}}, 201),
        ("GET", "/sessions/{session_id}/events", ended, {"params": {"from": "x"}}, 422),
        ("GET", "/sessions/{session_id}/events", ended, {"params": {"from": "-1"},
                                                         "headers": {"last-event-id": "3"}}, 422),
        ("GET", "/sessions/{session_id}/events", ended, {}, 200),
        ("GET", "/sessions/{session_id}/export", ended, {"params": {"format": "pdf"}}, 422),
        ("GET", "/openapi.json", None, {}, 200),
    ]
    for method, path, session_id, keywords, status in cases:
        response = HTTP.request(method, server.url + API + concrete(path, session_id or ""), **keywords)
        assert_as_documented(response, path, method, status)

    def full_disk() -> list:
        raise LogWriteError("forge.db", "database or disk is full")

    def broken() -> list:
        raise RuntimeError("boom")

    for failure, status in ((full_disk, 503), (broken, 500)):
        monkeypatch.setattr(forge, "summaries", failure)
        assert_as_documented(HTTP.get(server.url + API + sessions), sessions, "GET", status)
    monkeypatch.undo()


def test_a_token_server_answers_401_as_documented(tmp_path):
    with Forge(str(tmp_path / "forge.db")) as forge, ServerThread(forge, token="s3cret") as server:
        for method, path in (("GET", "/sessions"), ("POST", "/sessions"), ("GET", "/providers")):
            assert_as_documented(HTTP.request(method, server.url + API + path, json={}), path, method, 401)


# -- the bodies' schemas say what the server refuses -----------------------------------------------------


def test_an_empty_goal_is_outside_the_schema_and_refused(served):
    server, *_ = served
    assert SCHEMAS["CreateSession"]["properties"]["goal"]["minLength"] == 1
    response = HTTP.post(server.url + API + "/sessions", json={"goal": ""})
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "goal"


def test_the_round_kinds_of_the_schema_are_the_engines(served):
    server, _, _, created = served
    assert SCHEMAS["StartRound"]["properties"]["kind"]["enum"] == sorted(ROUND_KINDS)
    response = HTTP.post(server.url + API + f"/sessions/{created}/rounds", json={"kind": "brainstorm"})
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "kind"


def test_the_routes_that_take_nothing_take_an_empty_object_and_refuse_anything_else(served):
    server, _, ended, _ = served
    assert SCHEMAS["NoBody"] == {**SCHEMAS["NoBody"], "type": "object", "properties": {},
                                 "additionalProperties": False}
    for step in ("deliberate", "synthesize", "converge"):
        path = f"/sessions/{{session_id}}/{step}"
        body = DOCUMENT["paths"][API + path]["post"]["requestBody"]
        assert body["required"] and body["content"]["application/json"]["schema"]["$ref"].endswith("/NoBody")
        url = server.url + API + concrete(path, ended)
        for content in (b'{"x": 1}', b"[]", b"1", b"null"):
            response = HTTP.post(url, content=content, headers=JSON)
            assert response.status_code == 422, (step, content, response.text)
        assert HTTP.post(url, headers=JSON).status_code == 409  # an empty body is `{}`; the session has ended
        assert HTTP.post(url).status_code == 415  # but a POST must say JSON


def test_a_bad_from_is_refused_even_when_last_event_id_is_given(served):
    server, _, ended, _ = served
    response = HTTP.get(server.url + API + f"/sessions/{ended}/events", params={"from": str(1 << 63)},
                        headers={"last-event-id": "0"})
    assert response.status_code == 422 and "from" in response.json()["error"]
