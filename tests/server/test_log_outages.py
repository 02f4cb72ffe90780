"""The server while its log is out of service, on every surface: the HTTP API, /v1 in OpenAI's shape,
the WebSocket and SSE streams, MCP.

- A PostgreSQL log whose server is stopped: 503 with ``Retry-After`` and a JSON error saying the log
  is unavailable and to try again, nothing of where it is (the bug: a 500 after the pool's 10 s wait);
  WebSocket close 4503, an SSE ``error`` event, an MCP tool error; and all is well once it is back.
- A SQLite log found damaged by a read: 500 (retrying cannot help), the same words everywhere, the file
  left as it was and nothing more written to it.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import anyio
import httpx
import pytest
from damage_support import fingerprint
from mcp.server.mcpserver.exceptions import ToolError
from postgres_support import start_again, stop_keeping_data
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from forge_actors.engine import RETRY_AFTER_SECONDS, CorruptLogError, Forge, LogUnavailableError, log_outage
from forge_actors.surfaces.mcp import build_server
from forge_actors.surfaces.server.app import API
from forge_actors.surfaces.server.runner import ServerThread

TWO = ["mock:alice", "mock:bob"]
JSON = {"content-type": "application/json"}
UNAVAILABLE = log_outage(LogUnavailableError("x", "y")).message  # type: ignore[union-attr]
DAMAGED = log_outage(CorruptLogError("x", "y")).message  # type: ignore[union-attr]
#: A guard, not a measure: the bug answered after the pool's 10 s wait; an answer takes milliseconds
#: (2 s at most when the pool is between two attempts to reconnect).
ANSWERS_WITHIN_SECONDS = 8.0


def timed(call):
    started = time.monotonic()
    result = call()
    elapsed = time.monotonic() - started
    assert elapsed < ANSWERS_WITHIN_SECONDS, f"answered after {elapsed:.1f} s"
    return result


def says_nothing_of_the_log(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, text


def unavailable(response: httpx.Response, *secrets: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    assert response.json() == {"error": UNAVAILABLE, "detail": {"retry_after": RETRY_AFTER_SECONDS}}
    says_nothing_of_the_log(response.text, *secrets)


def ws_close(address: str) -> tuple[int, str]:
    """The close code and reason of a stream, after whatever events it sent."""
    with connect(address, open_timeout=30, max_queue=None) as ws:
        try:
            while True:
                ws.recv(timeout=60)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            return closed.rcvd.code, closed.rcvd.reason
    raise AssertionError("unreachable")


def sse_error(url: str) -> dict:
    """The ``error`` event that ends an SSE stream (after whatever events it sent)."""
    with httpx.stream("GET", url, timeout=60) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        for line in lines:
            if line == "event: error":
                return json.loads(next(lines).removeprefix("data: "))
    raise AssertionError("the stream ended without an error event")


def test_while_the_database_is_down_every_surface_says_so_quickly_with_retry_after(own_server):
    url = own_server.create_database()
    secrets = (url, str(own_server.port), own_server.database_name(url))
    with Forge(url) as forge:
        session_id = forge.create_session("Plan a garden", TWO, max_iterations=1, seed=1)
        for _ in forge.deliberate(session_id):
            pass
        mcp = build_server(forge)
        with ServerThread(forge) as server:
            base = server.url + API
            assert httpx.get(f"{base}/sessions").status_code == 200
            stop_keeping_data(own_server)

            for path in ("/sessions", f"/sessions/{session_id}", f"/sessions/{session_id}/export",
                         f"/sessions/{session_id}/events"):
                unavailable(timed(lambda: httpx.get(base + path, timeout=60)), *secrets)  # noqa: B023
            unavailable(timed(lambda: httpx.post(f"{base}/sessions", json={"goal": "Name a cat"}, headers=JSON,
                                                 timeout=60)), *secrets)
            openai = timed(lambda: httpx.post(f"{server.url}/v1/chat/completions", headers=JSON, timeout=60,
                                              json={"model": "forge", "messages": [{"role": "user", "content": "Hi"}]}))
            assert openai.status_code == 503 and openai.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
            assert openai.json() == {"error": {"message": UNAVAILABLE, "type": "server_error", "param": None,
                                               "code": "log_unavailable"}}
            ws = server.url.replace("http://", "ws://") + API
            for path in (f"/sessions/{session_id}/stream", f"/sessions/{session_id}/deliberate"):
                assert timed(lambda: ws_close(ws + path)) == (4503, UNAVAILABLE)  # noqa: B023
            for tool, arguments in (("list_sessions", {}), ("get_session", {"session_id": session_id}),
                                    ("deliberate", {"goal": "Name a cat"})):
                with pytest.raises(ToolError) as refused:
                    timed(lambda: anyio.run(mcp.call_tool, tool, arguments))  # noqa: B023
                assert str(refused.value).endswith(UNAVAILABLE)
                says_nothing_of_the_log(str(refused.value), *secrets)

            start_again(own_server)
            listed = httpx.get(f"{base}/sessions", timeout=60)
            assert listed.status_code == 200 and [row["session_id"] for row in listed.json()] == [session_id]


def test_open_streams_end_saying_the_log_is_unavailable_when_the_database_goes(own_server):
    url = own_server.create_database()
    with Forge(url) as forge:
        waiting = forge.create_session("Plan a garden", TWO)  # never started: its streams wait for more
        with ServerThread(forge) as server:
            base = server.url + API
            outcome: dict[str, object] = {}

            def watch_sse() -> None:
                outcome["sse"] = sse_error(f"{base}/sessions/{waiting}/events")

            def watch_ws() -> None:
                outcome["ws"] = ws_close(server.url.replace("http://", "ws://") + API + f"/sessions/{waiting}/stream")

            watchers = [threading.Thread(target=watch, daemon=True) for watch in (watch_sse, watch_ws)]
            for watcher in watchers:
                watcher.start()
            time.sleep(0.5)  # both streams are open, their first event sent
            stop_keeping_data(own_server)
            for watcher in watchers:
                watcher.join(timeout=120)  # a guard against hanging: the streams notice within a second or two
            assert outcome["sse"] == {"error": UNAVAILABLE, "detail": {"retry_after": RETRY_AFTER_SECONDS}}
            assert outcome["ws"] == (4503, UNAVAILABLE)


@pytest.fixture
def damaged_later(tmp_path) -> tuple[Path, str]:
    """A log whose one row's text is no longer UTF-8: quick_check, which checks the pages' structure,
    lets it open; the first read of that session finds it."""
    path = tmp_path / "forge.db"
    with Forge(str(path)) as forge:
        session_id = forge.create_session("Plan a garden ZQXMARKER", TWO, max_iterations=1, seed=1)
        for _ in forge.deliberate(session_id):
            pass
    content = path.read_bytes()
    with path.open("r+b") as file:
        file.seek(content.index(b"ZQXMARKER"))
        file.write(b"\xff\xfe")
    return path, session_id


def test_a_damaged_log_is_a_500_everywhere_and_nothing_more_is_written(damaged_later, tmp_path):
    path, session_id = damaged_later
    before = fingerprint(path)
    with Forge(str(path), create=False) as forge, ServerThread(forge) as server:
        base = server.url + API
        for response in (httpx.get(f"{base}/sessions/{session_id}", timeout=60),
                         httpx.post(f"{base}/sessions", json={"goal": "Name a cat", "participants": TWO},
                                    headers=JSON, timeout=60)):  # the read found the damage: no more writes
            assert response.status_code == 500 and "retry-after" not in response.headers, response.text
            assert response.json() == {"error": DAMAGED}
            says_nothing_of_the_log(response.text, str(path), str(tmp_path))
        openai = httpx.post(f"{server.url}/v1/chat/completions", headers=JSON, timeout=60,
                            json={"model": "forge", "messages": [{"role": "user", "content": "Hi"}]})
        assert openai.status_code == 500 and openai.json()["error"]["code"] == "log_damaged"
        assert ws_close(server.url.replace("http://", "ws://") + API + f"/sessions/{session_id}/stream") \
            == (1011, DAMAGED)
    assert fingerprint(path) == before
