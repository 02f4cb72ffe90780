"""http_get against a loopback server, calculate's safety, and the advanced category's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from loopback import LoopbackServer, Reply
from tool_support import make_toolbox, ok

from forge_actors.tools import Toolbox, ToolLimits

# -- http_get ---------------------------------------------------------------------------------


def http_box(root: Path, hosts=("127.0.0.1",), **limits) -> Toolbox:
    return make_toolbox(root, ["http_get"], http_allowed_hosts=frozenset(hosts), limits=ToolLimits(**limits))


def test_an_allowed_host_is_fetched(root: Path) -> None:
    with LoopbackServer(Reply(200, [b"hello ", b"world"], content_type="text/plain; charset=utf-8")) as server:
        out = ok(http_box(root), "http_get", url=server.url + "/page")
    assert out == f"HTTP 200 {server.url}/page\nhello world"
    assert server.requests[0].path == "/page"


def test_other_hosts_and_schemes_are_refused_without_a_request(root: Path) -> None:
    with LoopbackServer() as server:
        box = http_box(root, hosts=("docs.example.org",))
        assert "host '127.0.0.1' is not allowed; allowed hosts: docs.example.org" in box.call(
            "http_get", {"url": server.url}).error
        for url, why in [("file:///etc/passwd", "only http and https"), ("ftp://docs.example.org/", "only http"),
                         ("http://user:pw@docs.example.org/", "credentials"), ("http://docs.example.org:x/", "valid URL")]:
            assert why in box.call("http_get", {"url": url}).error
    assert server.requests == []
    assert "allowed hosts: none" in make_toolbox(root, ["http_get"]).call("http_get", {"url": "http://x.org"}).error


def test_redirects_stay_on_allowlisted_hosts(root: Path) -> None:
    with LoopbackServer(Reply(302, [], headers={"location": "/next"}), Reply(200, [b"arrived"], content_type="text/html"),
                        Reply(301, [], headers={"location": "http://localhost:1/steal"})) as server:
        box = http_box(root)
        assert ok(box, "http_get", url=server.url + "/start").endswith("/next\narrived")
        result = box.call("http_get", {"url": server.url + "/again"})
    assert result.error is not None and "host 'localhost' is not allowed" in result.error
    assert [r.path for r in server.requests] == ["/start", "/next", "/again"]


def test_too_many_redirects_are_refused(root: Path) -> None:
    loop = [Reply(302, [], headers={"location": "/loop"}) for _ in range(10)]
    with LoopbackServer(*loop) as server:
        result = http_box(root).call("http_get", {"url": server.url + "/loop"})
    assert result.error is not None and "redirected more than 5 times" in result.error


def test_a_body_over_the_cap_is_refused_while_streaming(root: Path) -> None:
    parts = [b"x" * 1000 for _ in range(10)]  # chunked: no content-length to trust
    with LoopbackServer(Reply(200, parts, content_type="text/plain")) as server:
        result = http_box(root, max_file_bytes=4000).call("http_get", {"url": server.url})
    assert result.error is not None and "more than the 4000-byte limit" in result.error


def test_binary_content_and_http_errors(root: Path) -> None:
    with LoopbackServer(Reply(200, [b"\x89PNG"], content_type="image/png"),
                        Reply(404, [b"not here"], content_type="text/plain")) as server:
        box = http_box(root)
        assert "only text is fetched" in box.call("http_get", {"url": server.url}).error
        missing = box.call("http_get", {"url": server.url + "/gone"})
    assert missing.error is not None and "answered HTTP 404" in missing.error and "not here" in missing.output


def test_a_closed_port_is_an_error_result(root: Path) -> None:
    with LoopbackServer() as server:
        url = server.url
    result = http_box(root).call("http_get", {"url": url})
    assert result.error is not None and "request failed" in result.error


# -- calculate --------------------------------------------------------------------------------


@pytest.mark.parametrize("expression, value", [
    ("1 + 2 * 3", "7"), ("(1 + 2) * 3", "9"), ("7 // 2", "3"), ("7 % 4", "3"), ("2 ** 10", "1024"),
    ("-3 + +2", "-1"), ("1 / 4", "0.25"), ("sqrt(16)", "4.0"), ("max(1, 5, 3)", "5"), ("round(pi, 2)", "3.14"),
    ("2 ** -1", "0.5"), ("10 ** 100", str(10**100)),
])
def test_calculate_computes(root: Path, expression: str, value: str) -> None:
    assert ok(make_toolbox(root, ["calculate"]), "calculate", expression=expression) == value


@pytest.mark.parametrize("expression, message", [
    ("9**9**9", "too large"),
    ("2 ** 100000", "too large"),
    ("10 ** 2000", "too large"),
    ("(10 ** 1000) * (10 ** 1000)", "too large"),
    ("2.0 ** 5000", "too large for a floating-point"),
    ("exp(1000)", "too large for a floating-point"),
    ("1 / 0", "division by zero"),
    ("sqrt(-1)", "cannot compute"),
    ("__import__('os').system('id')", "is not allowed"),
    ("(1).__class__", "is not allowed"),
    ("'a' * 10", "is not allowed"),
    ("[1, 2]", "is not allowed"),
    ("x + 1", "is not allowed"),
    ("1 if 1 else 2", "is not allowed"),
    ("1 << 100000", "is not allowed"),
    ("round(1.5, ndigits=2)", "is not allowed"),
    ("1 +", "not an arithmetic expression"),
    ("(-1) ** 0.5", "complex"),
])
def test_calculate_refuses_what_is_unsafe_or_unbounded(root: Path, expression: str, message: str) -> None:
    result = make_toolbox(root, ["calculate"]).call("calculate", {"expression": expression})
    assert result.error is not None and message in result.error, result.error
