"""The HTTP server and the web page's read path on a PostgreSQL log (a loopback uvicorn, as the server
tests run it): the session list, a session, its exports, the SSE replay of a finished session, and a
session started over HTTP; the log's password shows in no response and no log record."""

from __future__ import annotations

import json
import logging

import httpx

from forge_actors.core.export import export_document, render
from forge_actors.engine import Forge
from forge_actors.surfaces.server.app import API
from forge_actors.surfaces.server.runner import ServerThread

THREE = ["mock:alice", "mock:bob", "mock:carol"]
PASSWORD = "s3cret"


def sse(base: str, session_id: str) -> list[dict]:
    events = []
    with httpx.stream("GET", f"{base}/sessions/{session_id}/events", timeout=30) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if events[-1]["type"] == "SessionEnded":
                    break
    return events


def test_the_server_serves_a_postgresql_log(postgres_url, caplog):
    caplog.set_level(logging.DEBUG)
    db = postgres_url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@", 1)
    with Forge(db) as forge:
        finished = forge.create_session("Design a TODO app API", THREE, seed=7, max_rounds=2)
        recorded = [r.position for r in forge.deliberate(finished)]
        with ServerThread(forge) as server:
            base = server.url + API
            page = httpx.get(server.url + "/")
            assert page.status_code == 200 and "<html" in page.text.lower()
            listed = httpx.get(f"{base}/sessions").json()
            assert [row["session_id"] for row in listed] == [finished]
            got = httpx.get(f"{base}/sessions/{finished}").json()
            assert got["session_id"] == finished and got["status"] == forge.state(finished).status
            for fmt in ("md", "json", "yaml"):
                exported = httpx.get(f"{base}/sessions/{finished}/export", params={"format": fmt})
                assert exported.status_code == 200
                assert exported.text == render(export_document(forge.state(finished), forge.config.pricing), fmt)
            replayed = sse(base, finished)  # a finished session, re-streamed from the log
            assert [e["position"] for e in replayed] == recorded

            # ...and one started over HTTP, followed live to its end (LISTEN/NOTIFY-fed subscriptions).
            created = httpx.post(f"{base}/sessions", json={"goal": "Name a cat", "participants": THREE,
                                                          "config": {"max_rounds": 1}})
            assert created.status_code == 201, created.text
            live = created.json()["session_id"]
            assert httpx.post(f"{base}/sessions/{live}/deliberate", json={}).status_code == 202
            streamed = sse(base, live)
            assert streamed[-1]["type"] == "SessionEnded"
            assert [e["position"] for e in streamed] == sorted({e["position"] for e in streamed})
            responses = page.text + json.dumps(listed) + json.dumps(got) + created.text
    assert PASSWORD not in responses + caplog.text + "".join(str(r.args) for r in caplog.records)
