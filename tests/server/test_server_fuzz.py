"""A property test of the HTTP API, driven by its own OpenAPI document.

For every documented operation, hypothesis draws requests: path parameters that name a
real session or not, the documented query and header parameters (values of their schema,
or any text), bodies of the documented schema, any JSON or any bytes, and sometimes
another content type or origin; the WebSockets of ``x-websockets`` likewise. Whatever is sent,
the server must answer below 500 with a status the document lists for that operation and a
content type it lists for that status, every error must be JSON with an ``error`` string, and a
JSON success must be JSON. It runs
against uvicorn on a loopback port (the streams need a real server), derandomized, with a
config where only the offline mock provider is usable, so no case can reach a network.

The strategies come from the schemas here (a small reader for what msgspec emits), since
hypothesis-jsonschema 0.23 no longer runs on current hypothesis.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect

from forge_actors.core.events import SessionSettings
from forge_actors.engine import Forge
from forge_actors.engine.config import ForgeConfig, ParticipantSpec, ProviderSettings
from forge_actors.providers.registry import known_providers
from forge_actors.surfaces.server.app import API
from forge_actors.surfaces.server.openapi import openapi_document
from forge_actors.surfaces.server.runner import ServerThread

#: Requests drawn per operation (about 16 operations: a few hundred in all); FORGE_FUZZ_CASES digs deeper.
CASES_PER_OPERATION = int(os.environ.get("FORGE_FUZZ_CASES", "20"))
MOCK_ONLY = ForgeConfig(
    providers={name: ProviderSettings(enabled=False) for name in known_providers() if name != "mock"},
    participants=(ParticipantSpec(spec="mock:ana"), ParticipantSpec(spec="mock:ben")),
    settings=SessionSettings(max_rounds=2),
)
DOCUMENT = openapi_document(API, MOCK_ONLY)
COMPONENTS = DOCUMENT["components"]["schemas"]
OPERATIONS = [(path, method, operation) for path, methods in DOCUMENT["paths"].items()
              for method, operation in methods.items()]
OPERATIONS += [(path, "websocket", websocket) for path, websocket in DOCUMENT["x-websockets"].items()]
HTTP = httpx.Client(timeout=httpx.Timeout(30, read=5))

# -- strategies from the document -----------------------------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=3), max_leaves=8)
#: Keys a `config` object is most likely to be probed with: the real settings, and anything.
SETTING_KEYS = st.sampled_from(list(SessionSettings.__struct_fields__)) | st.text(max_size=12)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of ``schema`` (the JSON Schema subset msgspec and openapi.py write)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return st.deferred(lambda: from_schema(COMPONENTS[name]))
    if "anyOf" in schema:
        return st.one_of([from_schema(option) for option in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        properties = {name: from_schema(sub) for name, sub in schema["properties"].items()}
        required = set(schema.get("required", []))
        return st.fixed_dictionaries({k: v for k, v in properties.items() if k in required},
                                     optional={k: v for k, v in properties.items() if k not in required})
    if kind == "object":
        return st.dictionaries(SETTING_KEYS, JSON_VALUES, max_size=4)
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {})), max_size=4)
    if kind == "string":
        return st.text(max_size=30)
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        return st.floats(schema.get("minimum"), allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return JSON_VALUES


def as_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (bool, type(None), list, dict)) else str(value)


#: Texts that parsers of numbers get wrong: other scripts' digits, superscripts, huge, signed, not finite.
TRICKY = st.sampled_from(["²", "١٢", "１", "9" * 5000, str(1 << 63), "-1", "nan", "inf", "1e999", "0x1f", "1_000", "",
                          "%00", "\x00", "../"])
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=25).map(str.strip)  # as h11 sends
OTHER_TYPES = st.sampled_from(["text/plain", "application/x-www-form-urlencoded", "application/json; charset=utf-8",
                               None])


@dataclass
class Case:
    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@st.composite
def cases(draw: st.DrawFn, path: str, method: str, operation: dict[str, Any], sessions: list[str],
          own_origin: str) -> Case:
    case = Case(method.upper(), path)
    for parameter in operation.get("parameters", []):
        name, where, schema = parameter["name"], parameter["in"], parameter["schema"]
        if where == "path":
            value = draw(st.sampled_from(sessions + ["alice", "ana"]) | st.text(min_size=1, max_size=20))
            case.path = case.path.replace("{" + name + "}", quote(value, safe=""))
        elif draw(st.booleans()):
            text = draw(from_schema(schema).map(as_text)
                        | (HEADER_TEXT if where == "header" else TRICKY | st.text(max_size=25)))
            (case.params if where == "query" else case.headers)[name] = text
    if "requestBody" in operation:
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        body = draw(from_schema(schema).map(msgspec.json.encode) | JSON_VALUES.map(msgspec.json.encode)
                    | st.binary(max_size=40))
        case.body = body
        content_type = draw(st.just("application/json") | OTHER_TYPES)
        if content_type:
            case.headers["content-type"] = content_type
    origin = draw(st.sampled_from([None, None, own_origin, "http://evil.example", "null"]))
    if origin:
        case.headers["origin"] = origin
    if method != "websocket":  # (the WebSocket client sets Host itself)
        host = draw(st.sampled_from([None, None, None, "localhost", "evil.example", "[::1]:1"]) | HEADER_TEXT)
        if host:
            case.headers["host"] = host
    return case


# -- the server and the checks ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    forge = Forge(str(tmp_path_factory.mktemp("fuzz") / "forge.db"), MOCK_ONLY)
    ended = forge.create_session("Plan a garden", ["mock:ana", "mock:ben"], max_rounds=1)
    list(forge.deliberate(ended))
    created = forge.create_session("Name a cat", ["mock:ana"], max_rounds=1)
    with ServerThread(forge) as server:
        yield server, [ended, created]
    forge.close()


def check_error(status: int, content_type: str, body: bytes, case: Case, operation: dict[str, Any]) -> None:
    assert status < 500, (case, status, body[:300])
    documented = operation["responses"].get(str(status))
    assert documented is not None, (case, status, "not among the documented statuses", body[:300])
    media = content_type.split(";", 1)[0].strip()
    assert media in documented["content"], (case, status, content_type, "not a documented content type")
    if status >= 400:
        assert content_type.startswith("application/json"), (case, status, content_type, body[:300])
        error = json.loads(body)
        assert isinstance(error, dict) and isinstance(error.get("error"), str) and error["error"], (case, body[:300])


def run_http(server: ServerThread, case: Case, operation: dict[str, Any]) -> None:
    response = HTTP.request(case.method, server.url + case.path, params=case.params, headers=case.headers,
                            content=case.body)
    check_error(response.status_code, response.headers.get("content-type", ""), response.content, case, operation)
    if response.status_code < 300 and response.headers.get("content-type", "").startswith("application/json"):
        json.loads(response.content)


def run_sse(server: ServerThread, case: Case, operation: dict[str, Any]) -> None:
    """The status and first lines of the stream; a live one is left after a short read."""
    try:
        with HTTP.stream("GET", server.url + case.path, params=case.params, headers=case.headers,
                         timeout=httpx.Timeout(10, read=0.5)) as response:
            if response.status_code != 200:
                response.read()
                check_error(response.status_code, response.headers.get("content-type", ""), response.content, case,
                            operation)
                return
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                assert line != "event: error", case
                if '"type":"SessionEnded"' in line:
                    return
    except httpx.ReadTimeout:  # a live session (or a paced replay): what came was sound
        pass


def run_websocket(server: ServerThread, case: Case, websocket: dict[str, Any]) -> None:
    query = str(httpx.QueryParams(case.params))
    address = (server.url + case.path).replace("http://", "ws://") + ("?" + query if query else "")
    origin = case.headers.get("origin")
    try:
        with connect(address, origin=origin, open_timeout=10, max_queue=None) as ws:  # type: ignore[arg-type]
            while True:
                json.loads(ws.recv(timeout=0.5))
    except InvalidStatus as refused:  # a foreign Host or Origin, or no such route: a bare 403 (uvicorn's)
        assert refused.response.status_code == 403, (case, refused.response.status_code)
    except ConnectionClosed as closed:
        assert closed.rcvd is None or (str(closed.rcvd.code) in websocket["close_codes"]
                                       and closed.rcvd.code != 1011), (case, closed.rcvd)
    except TimeoutError:  # live: nothing more yet
        pass
    except InvalidHandshake as refused:  # e.g. a path the client library will not send
        raise AssertionError((case, refused)) from refused


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS,
                         ids=[f"{method.upper()} {path.removeprefix(API)}" for path, method, _ in OPERATIONS])
def test_no_request_gets_a_5xx_and_every_error_is_json(served, path, method, operation):
    server, sessions = served
    run = run_websocket if method == "websocket" else run_sse if path.endswith("/events") else run_http

    @settings(max_examples=CASES_PER_OPERATION, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(cases(path, method, operation, sessions, server.url))
    def property_(case: Case) -> None:
        run(server, case, operation)

    property_()

