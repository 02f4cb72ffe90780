"""Every HTTP response carries the security headers (guards.SecurityHeaders): the page, the API,
/v1, streams and errors alike, whoever wrote the error (a route, a guard, the error boundary).
tests/server/test_browser.py checks in Chromium that the page still runs under them."""

from __future__ import annotations

import re

import httpx
import pytest

from forge_actors.core.errors import ConfigError
from forge_actors.engine import Forge
from forge_actors.surfaces.server.app import API, STATIC
from forge_actors.surfaces.server.guards import API_POLICY, SECURITY_HEADERS, page_policy
from forge_actors.surfaces.server.runner import ServerThread

HTTP = httpx.Client(timeout=30)
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    forge = Forge(str(tmp_path_factory.mktemp("headers") / "forge.db"))
    ended = forge.create_session("Plan a garden", ["mock:ana"], max_iterations=1)
    list(forge.deliberate(ended))
    with ServerThread(forge) as server:
        yield server, forge, ended
    forge.close()


def assert_secured(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS:
        assert response.headers.get(name.decode()) == value.decode(), (response.request.url, name)
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy


def test_the_page_has_its_own_policy_as_a_header_with_frame_ancestors(served):
    server, *_ = served
    response = HTTP.get(server.url + "/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert_secured(response)
    policy = response.headers["content-security-policy"]
    meta = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', response.text).group(1)
    assert policy == meta + "; frame-ancestors 'none'"  # the script's hash included: one source, the meta tag
    assert "cache-control" not in response.headers or "no-store" not in response.headers["cache-control"]


def test_every_api_answer_has_the_headers_and_a_policy_that_lets_nothing_run(served):
    server, forge, ended = served
    port = server.url.rsplit(":", 1)[1]
    requests = [
        ("GET", API + "/sessions", {}),
        ("GET", API + f"/sessions/{ended}", {}),
        ("GET", API + f"/sessions/{ended}/export", {}),
        ("GET", API + f"/sessions/{ended}/export?format=yaml", {}),
        ("GET", API + "/openapi.json", {}),
        ("GET", API + "/sessions/nope", {}),  # 404 from a route
        ("GET", "/nope", {}),  # 404 from the router
        ("DELETE", API + "/sessions", {}),  # 405
        ("POST", API + "/sessions", {"content": b"{}", "headers": {"content-type": "text/plain"}}),  # 415
        ("POST", API + "/sessions", {"content": b"[" * 40 + b"]" * 40, "headers": JSON}),  # 422
        ("POST", API + "/sessions", {"content": b" " * (2 << 20), "headers": JSON}),  # 413
        ("GET", API + "/sessions", {"headers": {"host": "evil.example"}}),  # 421
        ("GET", API + "/sessions", {"headers": {"origin": "http://evil.example"}}),  # 403
        ("GET", API + f"/sessions/{ended}/stream", {}),  # 426
        ("GET", "/v1/models", {}),
        ("POST", "/v1/chat/completions", {"json": {"model": "forge", "messages": []}}),  # 400, OpenAI's shape
        ("GET", "/", {"headers": {"host": f"evil.example:{port}"}}),  # a 421 on the page's path is JSON
    ]
    for method, path, keywords in requests:
        response = HTTP.request(method, server.url + path, **keywords)
        assert_secured(response)
        assert response.headers["content-security-policy"] == API_POLICY, path
        assert response.headers["cache-control"] == "no-store", path


def test_the_event_stream_keeps_its_own_caching_and_gets_the_rest(served):
    server, _, ended = served
    with HTTP.stream("GET", server.url + API + f"/sessions/{ended}/events") as response:
        assert response.status_code == 200
        assert_secured(response)
        assert response.headers["cache-control"] == "no-cache"  # what the stream set: not overridden


def test_an_internal_error_has_the_headers_too(served, monkeypatch):
    server, forge, _ = served

    def broken() -> list:
        raise RuntimeError("boom")

    monkeypatch.setattr(forge, "summaries", broken)
    response = HTTP.get(server.url + API + "/sessions")
    assert response.status_code == 500
    assert_secured(response)


def test_a_token_servers_401_has_the_headers(tmp_path):
    with Forge(str(tmp_path / "forge.db")) as forge, ServerThread(forge, token="s3cret") as server:
        for path in (API + "/sessions", "/v1/models"):
            response = HTTP.get(server.url + path)
            assert response.status_code == 401
            assert_secured(response)


def test_a_page_without_its_policy_meta_is_refused_at_start(tmp_path):
    page = tmp_path / "index.html"
    page.write_text("<!doctype html><script>1</script>")
    with pytest.raises(ConfigError, match="Content-Security-Policy"):
        page_policy(page)
    assert page_policy(STATIC / "index.html").endswith("frame-ancestors 'none'")
