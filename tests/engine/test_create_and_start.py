"""Creating and starting a session at once is atomic from the caller's view: the id is returned,
or nothing is recorded.

``create_session(start=True)`` (the HTTP API's ``"deliberate": true``, MCP's ``deliberate``, ``/v1``)
takes the session's lease before anything is recorded, so a log that refuses writes fails the call
with no session left behind; a start that fails once the session is recorded raises
SessionStartError carrying the id, which the HTTP API returns with the status of the cause.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from forge_actors.engine import RETRY_AFTER_SECONDS, Forge, LogUnavailableWriteError, LogWriteError, SessionStartError
from forge_actors.surfaces.mcp import build_server
from forge_actors.surfaces.server.app import API
from forge_actors.surfaces.server.runner import ServerThread

MOCKS = ["mock:alice?word_delay=0", "mock:bob?word_delay=0"]


def fill_the_disk(forge: Forge) -> None:
    """From now on the log's file may not grow: SQLite answers SQLITE_FULL, as on a full disk."""
    conn = forge._store._conn  # the write connection
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")


def free_the_disk(forge: Forge) -> None:
    forge._store._conn.execute("PRAGMA max_page_count = 1073741823")


def test_on_a_full_disk_nothing_is_recorded_and_the_client_gets_503(tmp_path):
    with Forge(str(tmp_path / "forge.db")) as forge, ServerThread(forge) as server:
        forge.create_session("warm up the tables", MOCKS)  # the log's tables exist before the disk fills
        before = forge.sessions()
        fill_the_disk(forge)
        response = httpx.post(server.url + API + "/sessions", timeout=30,
                              json={"goal": "Design a TODO app API", "participants": MOCKS, "deliberate": True})
        with pytest.raises(LogWriteError):
            forge.create_session("Design a TODO app API", MOCKS, start=True)
        free_the_disk(forge)
        assert response.status_code == 503, response.text
        assert forge.sessions() == before  # no session the client never learns of
        assert not forge.running_sessions()


def test_a_start_that_fails_once_recorded_gives_the_id(tmp_path, monkeypatch):
    with Forge(str(tmp_path / "forge.db")) as forge, ServerThread(forge) as server:
        def refuse(session_id: str, state: object) -> None:
            raise LogWriteError(str(tmp_path / "forge.db"), "the disk is full")

        monkeypatch.setattr(forge._supervisor, "_start_participants", refuse)
        with pytest.raises(SessionStartError) as failed:
            forge.create_session("Design a TODO app API", MOCKS, start=True)
        assert forge.state(failed.value.session_id).status == "created"
        assert forge.lease_holder(failed.value.session_id) is None  # given back: anyone may start it
        response = httpx.post(server.url + API + "/sessions", timeout=30,
                              json={"goal": "Design a TODO app API", "participants": MOCKS, "deliberate": True})
        assert response.status_code == 503, response.text
        session_id = response.json()["detail"]["session_id"]
        assert forge.state(session_id).status == "created"
        monkeypatch.undo()
        for _ in forge.deliberate(session_id):  # started later, it runs to its end
            pass
        assert forge.state(session_id).ended


def test_a_start_the_unreachable_log_refused_says_so_without_where_the_log_is(tmp_path, monkeypatch):
    secret = "postgresql://forge@db.internal:5432/forge"

    def unreachable(session_id: str, state: object) -> None:
        raise LogUnavailableWriteError(secret, "connection refused by 10.0.0.7")

    with Forge(str(tmp_path / "forge.db")) as forge, ServerThread(forge) as server:
        monkeypatch.setattr(forge._supervisor, "_start_participants", unreachable)
        api = httpx.post(server.url + API + "/sessions", timeout=30,
                         json={"goal": "Design a TODO app API", "participants": MOCKS, "deliberate": True})
        v1 = httpx.post(server.url + "/v1/chat/completions", timeout=30,
                        json={"model": "forge", "messages": [{"role": "user", "content": "Design a TODO app API"}]})

        async def mcp() -> Any:
            async with Client(build_server(forge)) as client:
                return await client.call_tool("deliberate", {"goal": "Design a TODO app API", "participants": MOCKS})

        tool = anyio.run(mcp)
    assert api.status_code == 503 and api.headers["retry-after"] == str(RETRY_AFTER_SECONDS), api.text
    assert api.json()["detail"]["session_id"] in api.json()["error"]
    assert v1.status_code == 503 and "was created, but could not start" in v1.json()["error"]["message"], v1.text
    tool_text = "".join(block.text for block in tool.content if block.type == "text")
    assert tool.is_error and "was created, but could not start" in tool_text
    for said in (api.text, v1.text, tool_text):
        assert "db.internal" not in said and "10.0.0.7" not in said
