"""Deeply nested JSON and odd content parts are the client's error (a 4xx saying so), never a 500.

msgspec decodes nested input by recursing, and used to stop with RecursionError where the
interpreter's limit fell (a ``config`` 20,000 levels deep answered 500); ``bodies.too_deep``
now refuses nesting past ``bodies.MAX_NESTING`` before any decoding. Its reading of a body is
checked against the depth of the decoded value (strings full of brackets, quotes and backslashes
included); then every route that takes a body, the API's and /v1's, is sent nesting of every
kind, depth and place. On /v1, content parts that are not ``{"type": "text", "text": "..."}``
get OpenAI's 400 naming the part. Beyond test_server_fuzz.py, which draws shallow values only.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forge_actors.engine import Forge, load_config
from forge_actors.surfaces.server.app import API
from forge_actors.surfaces.server.bodies import MAX_NESTING, too_deep
from forge_actors.surfaces.server.openapi import ENDPOINTS
from forge_actors.surfaces.server.runner import ServerThread

HTTP = httpx.Client(timeout=30)
JSON = {"content-type": "application/json"}
#: Text a naive reading of JSON gets wrong: brackets, quotes and backslashes inside strings.
TRICKY_TEXT = st.text(st.sampled_from('[]{}"\\/:,ab\n\u00e9'), max_size=12)
VALUES = st.recursive(st.none() | st.booleans() | st.integers() | TRICKY_TEXT,
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY_TEXT, inner, max_size=3),
                      max_leaves=40)
COUNCIL = """
[forge.councils.forge]
participants = ["mock:a?word_delay=0"]
settings = { max_iterations = 1 }
"""


def depth(value: Any) -> int:
    """How many arrays and objects nest in ``value`` (walked without recursion)."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, level + 1)
            pending.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def nested(levels: int, kinds: str, inner: Any = 1) -> Any:
    """``inner`` inside ``levels`` arrays and objects, in the order ``kinds`` repeats (``"[{"``...)."""
    for level in range(levels):
        inner = [inner] if kinds[level % len(kinds)] == "[" else {"k": inner}
    return inner


#: Stands for a deep value in a body, which is written as text: json.dumps (and hypothesis' own
#: printing) would recurse past the interpreter's limit on it.
DEEP = "\u0000deep"


def deep_text(levels: int, kinds: str) -> bytes:
    """``1`` inside ``levels`` arrays and objects, as JSON text."""
    shapes = [kinds[level % len(kinds)] for level in range(levels)]
    return ("".join("[" if shape == "[" else '{"k":' for shape in shapes) + "1"
            + "".join("]" if shape == "[" else "}" for shape in reversed(shapes))).encode()


def with_deep(body: Any, levels: int, kinds: str) -> bytes:
    """``body`` as JSON text, its DEEP string replaced by ``deep_text``."""
    return json.dumps(body).encode().replace(json.dumps(DEEP).encode(), deep_text(levels, kinds))


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(VALUES, st.integers(0, 40), st.sampled_from(["[", "{", "[{", "{["]), st.booleans())
def test_the_nesting_read_from_the_text_is_the_nesting_of_the_value(value, levels, kinds, compact):
    document = nested(levels, kinds, value)
    text = json.dumps(document, separators=(",", ":") if compact else None, ensure_ascii=compact).encode()
    assert too_deep(text) == (depth(document) > MAX_NESTING), text[:200]


def test_brackets_in_strings_and_escapes_do_not_count():
    assert not too_deep(json.dumps({"goal": "[" * 5000 + '\\"{{' * 100}).encode())
    assert not too_deep(json.dumps(["\\", "[" * 100, '\\\\"' + "{" * 100]).encode())
    assert too_deep(json.dumps(["\\\\", nested(MAX_NESTING, "[")]).encode())  # depth 33 after an escaped backslash
    assert not too_deep(json.dumps(nested(MAX_NESTING, "{[")).encode())  # exactly the limit: taken


# -- over HTTP -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nesting")
    (folder / "forge.toml").write_text(COUNCIL)
    forge = Forge(str(folder / "forge.db"), load_config(str(folder / "forge.toml"), {}))
    created = forge.create_session("Name a cat", ["mock:ana", {"kind": "human", "name": "eve"}], max_iterations=1)
    with ServerThread(forge) as server:
        yield server, forge, created
    forge.close()


#: Every route that takes a body, with a field of its body that nesting can be put in.
BODY_ROUTES = [(path, next(iter(body.__struct_fields__)) if body else "any")
               for method, path, _, body, _, _ in ENDPOINTS if method == "post"]


def is_nesting_refusal(response: httpx.Response, openai: bool) -> bool:
    if openai:
        return response.status_code == 400 and "levels deep" in response.json()["error"]["message"]
    return response.status_code == 422 and "levels deep" in json.dumps(response.json())


@settings(max_examples=60, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(route=st.sampled_from(BODY_ROUTES + [("/v1/chat/completions", "messages")]),
       levels=st.sampled_from([MAX_NESTING - 2, MAX_NESTING - 1, MAX_NESTING, 900, 1000, 20_000]),
       kinds=st.sampled_from(["[", "{", "[{"]), where=st.sampled_from(["field", "extra", "top"]),
       form=st.booleans())
def test_any_nesting_anywhere_is_a_4xx_and_past_the_limit_says_so(served, route, levels, kinds, where, form):
    server, _, session_id = served
    path, field = route
    openai = path.startswith("/v1")
    # `levels` arrays and objects inside the body's: the body nests levels + 1 deep ("top": the body is them)
    body = {"top": DEEP, "field": {field: DEEP}, "extra": {field: "x", "unknown": DEEP}}[where]
    total = levels + (where != "top")
    url = server.url + (path if openai else API + path.replace("{session_id}", session_id).replace("{participant}",
                                                                                                  "ana"))
    headers = {"content-type": "application/x-www-form-urlencoded"} if form and not openai else JSON
    response = HTTP.post(url, content=with_deep(body, levels, kinds), headers=headers)
    assert 400 <= response.status_code < 500, (path, levels, where, response.text[:300])
    if form and not openai and where == "top" and kinds[0] == "[":
        assert response.status_code == 415  # a form-encoded body is taken only as a JSON object
    elif total > MAX_NESTING:
        assert is_nesting_refusal(response, openai), (path, levels, where, response.text[:300])
    else:
        assert not is_nesting_refusal(response, openai), (path, levels, where)


def test_a_config_20000_levels_deep_is_a_422_not_a_500(served):
    server, forge, _ = served
    before = len(forge.sessions())
    body = b'{"goal": "g", "participants": ["mock:a"], "config": {"max_rounds": ' + b"[" * 20_000 + b"]" * 20_000 + b"}}"
    response = HTTP.post(server.url + API + "/sessions", content=body, headers=JSON)
    assert response.status_code == 422
    assert f"more than {MAX_NESTING} levels deep" in response.json()["detail"][0]["message"]
    assert len(forge.sessions()) == before


# -- content parts on /v1 ----------------------------------------------------------------------------------

ODD_PARTS = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["image_url", "input_audio", "file", "refusal", "", "TEXT"]),
                           "text": st.just("hi")}),
    st.fixed_dictionaries({"type": st.just("text")}),  # no text
    st.fixed_dictionaries({"type": st.just("text"), "text": VALUES.filter(lambda v: not isinstance(v, str))}),
    st.fixed_dictionaries({"type": VALUES.filter(lambda v: not isinstance(v, str)), "text": st.just("hi")}),
    VALUES.filter(lambda v: not isinstance(v, dict)),
    st.fixed_dictionaries({"text": st.just("hi")}),  # no type
    st.fixed_dictionaries({"type": st.just("text"), "text": st.just(DEEP)}),  # 20,000 levels deep, as text
)
TEXT_PART = st.builds(lambda text: {"type": "text", "text": text}, st.text(max_size=10))


@settings(max_examples=60, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(parts=st.lists(TEXT_PART, max_size=2).flatmap(
           lambda good: st.tuples(st.just(good), ODD_PARTS, st.lists(TEXT_PART, max_size=2))),
       role=st.sampled_from(["user", "system", "assistant"]), stream=st.booleans())
def test_content_parts_not_of_the_documented_shape_are_openais_400(served, parts, role, stream):
    server, forge, _ = served
    before, odd, after = parts
    content = [*before, odd, *after]
    messages = [{"role": role, "content": content}] + ([{"role": "user", "content": "Q"}] if role != "user" else [])
    body = with_deep({"model": "forge", "messages": messages, "stream": stream}, 20_000, "[{")
    response = HTTP.post(server.url + "/v1/chat/completions", content=body, headers=JSON)
    assert response.status_code == 400, (content, response.text[:300])
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and isinstance(error["message"], str) and error["message"]
    assert error["param"] is None or error["param"].startswith("messages[0].content")
