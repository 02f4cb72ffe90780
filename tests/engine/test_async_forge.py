"""AsyncForge, the asyncio front door, inside a real Starlette app: under its TestClient and under
uvicorn on 127.0.0.1. Many async watchers of live sessions get every event in order, cancelling a
watcher leaves its session running, and the app's loop keeps ticking (a generous liveness bound:
the loop lag itself is measured by benchmarks/async_front_door.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from support import FAST_RETRIES

from forge_actors.engine import AsyncForge, Forge, SessionNotFoundError, SessionStoppedError
from forge_actors.engine.async_forge import QUIET_CHECK_SECONDS

#: Live sessions: two mocks streaming word by word (about 430 events in 2 s), so that watchers start while they run.
LIVE = ["mock:alice?word_delay=0.004", "mock:bob?word_delay=0.004"]
#: The watchers of the uvicorn test, spread evenly over the sessions.
SESSIONS, WATCHERS = 5, 100
#: A session slow enough (a few seconds) to still be running after a watcher was cancelled.
SLOW = ["mock:alice?word_delay=0.005", "mock:bob?word_delay=0.005"]


class LoopLag:
    """A ticker on the app's loop: the longest it came back late from a short sleep."""

    def __init__(self, tick: float = 0.005) -> None:
        self.tick = tick
        self.worst = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.tick)
            self.worst = max(self.worst, loop.time() - before - self.tick)


def make_app(db_path: str) -> Starlette:
    """A service embedding the engine: sessions created and watched over HTTP (NDJSON)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        async with AsyncForge(db_path, retry_policy=FAST_RETRIES) as forge:
            app.state.forge = forge
            app.state.lag = LoopLag()
            ticker = asyncio.create_task(app.state.lag.run())
            try:
                yield
            finally:
                ticker.cancel()

    async def create(request: Request) -> JSONResponse:
        body = await request.json()
        session_id = await request.app.state.forge.create_session(
            "Design a TODO API", body["participants"], max_iterations=1, start=body.get("start", False))
        return JSONResponse({"session_id": session_id})

    async def events(request: Request) -> StreamingResponse:
        forge: AsyncForge = request.app.state.forge

        async def lines():  # one write per batch of events ready together, as a relay does
            async with contextlib.aclosing(forge.deliberate_batches(request.path_params["sid"])) as live:
                async for batch in live:
                    yield "".join(json.dumps({"position": r.position, "type": r.type}) + "\n" for r in batch)

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def watch_then_cancel(request: Request) -> JSONResponse:
        """Watch a session in a task until three events came, then cancel that task."""
        forge: AsyncForge = request.app.state.forge
        seen: list[int] = []
        enough = asyncio.Event()

        async def watch() -> None:
            async for recorded in forge.deliberate(request.path_params["sid"]):
                seen.append(recorded.position)
                if len(seen) == 3:
                    enough.set()

        task = asyncio.create_task(watch())
        await enough.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        state = await forge.state(request.path_params["sid"])
        return JSONResponse({"seen": seen, "status": state.status,
                             "subscriptions": forge.forge._store.subscriptions()})

    async def watch_all(request: Request) -> JSONResponse:
        """``watchers`` async tasks in the app, following the given sessions (spread evenly) to their
        ends; what each got, and how late the loop ran meanwhile."""
        forge: AsyncForge = request.app.state.forge
        body = await request.json()
        sessions = [body["sessions"][k % len(body["sessions"])] for k in range(body["watchers"])]
        request.app.state.lag.worst = 0.0

        async def watch(session_id: str) -> list[int]:
            return [recorded.position async for recorded in forge.deliberate(session_id)]

        got = await asyncio.gather(*(watch(session_id) for session_id in sessions))
        return JSONResponse({"sessions": sessions, "positions": got, "worst_lag": request.app.state.lag.worst})

    return Starlette(lifespan=lifespan, routes=[
        Route("/sessions", create, methods=["POST"]),
        Route("/sessions/{sid}/events", events),
        Route("/sessions/{sid}/watch-then-cancel", watch_then_cancel, methods=["POST"]),
        Route("/watch-all", watch_all, methods=["POST"]),
    ])


def read_events(lines: str) -> list[dict]:
    return [json.loads(line) for line in lines.splitlines() if line]


def test_cancelling_a_watcher_leaves_its_session_running_under_the_test_client(tmp_path: Path) -> None:
    with TestClient(make_app(str(tmp_path / "forge.db"))) as client:
        session_id = client.post("/sessions", json={"participants": SLOW}).json()["session_id"]
        cancelled = client.post(f"/sessions/{session_id}/watch-then-cancel").json()
        assert cancelled["seen"][:3] == [1, 2, 3]
        assert cancelled["status"] == "running"  # the watcher stopped, the deliberation did not
        assert cancelled["subscriptions"] == 0  # and the cancelled watcher's subscription is closed
        again = read_events(client.get(f"/sessions/{session_id}/events").text)  # another watcher, to the end
        forge: Forge = client.app.state.forge.forge
        assert [e["position"] for e in again] == [r.position for r in forge.records(session_id)]
        assert again[-1]["type"] == "SessionEnded"
        assert forge.state(session_id).status != "cancelled"  # it ran to its own end


class AppServer:
    """The app under uvicorn on 127.0.0.1, an ephemeral port, in a thread (as tests/server does)."""

    def __init__(self, app: Starlette) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on"))
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
        self._thread = threading.Thread(target=self.server.run, name="async-front-door-app", daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        ticks = threading.Event()
        for _ in range(1000):
            if self.server.started or not self._thread.is_alive():
                break
            ticks.wait(0.01)
        assert self.server.started, "uvicorn did not start"
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)


def test_a_hundred_async_watchers_under_uvicorn_get_every_event_in_order(tmp_path: Path) -> None:
    """100 watcher tasks in the app, and beside them one HTTP client streaming each session as NDJSON."""
    app = make_app(str(tmp_path / "forge.db"))
    with AppServer(app) as url:

        async def watch() -> tuple[dict, list[list[dict]]]:
            async with httpx.AsyncClient(base_url=url, timeout=120) as client:
                sessions = [(await client.post("/sessions", json={"participants": LIVE, "start": True})).json()[
                    "session_id"] for _ in range(SESSIONS)]

                async def stream(session_id: str) -> list[dict]:
                    async with client.stream("GET", f"/sessions/{session_id}/events") as response:
                        return read_events("".join([chunk async for chunk in response.aiter_text()]))

                in_app = client.post("/watch-all", json={"sessions": sessions, "watchers": WATCHERS})
                watched, *streamed = await asyncio.gather(in_app, *(stream(s) for s in sessions))
                return watched.json(), streamed

        watched, streamed = asyncio.run(watch())
        forge: Forge = app.state.forge.forge
        recorded = {session_id: [r.position for r in forge.records(session_id)] for session_id in watched["sessions"]}
    assert len(watched["positions"]) == WATCHERS
    for session_id, positions in zip(watched["sessions"], watched["positions"], strict=True):
        assert positions == recorded[session_id]  # every event, in order, once
    for session_id, events in zip(list(recorded), streamed, strict=True):
        assert [e["position"] for e in events] == recorded[session_id] and events[-1]["type"] == "SessionEnded"
    print(f"the app's loop was at most {watched['worst_lag'] * 1000:.1f} ms late")
    assert watched["worst_lag"] < 1.0  # liveness only: benchmarks/async_front_door.py measures the lag


def test_the_same_errors_and_calls_as_forge(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with AsyncForge(str(tmp_path / "forge.db"), retry_policy=FAST_RETRIES) as forge:
            with pytest.raises(SessionNotFoundError):
                await forge.state("nope")
            with pytest.raises(SessionNotFoundError):
                await anext(forge.deliberate("nope"))
            session_id = await forge.create_session("Design a TODO API", ["mock:alice", "mock:bob"],
                                                    max_iterations=1)
            assert await forge.add_human_draft(session_id, "dana", "Use REST with /todos.") == 0  # the first round to come
            types = [r.type async for r in forge.deliberate(session_id)]
            assert types[0] == "SessionCreated" and types[-1] == "SessionEnded" and "HumanDraftAdded" in types
            assert [type(e).__name__ for e in await forge.events(session_id)] == types
            assert [r.type async for r in forge.deliberate(session_id)] == types  # ended: its record again
            assert [r async for r in forge.deliberate(session_id, forge.forge.last_position())] == []
            rerun_id = await forge.rerun(session_id)
            assert (await forge.state(rerun_id)).status == (await forge.state(session_id)).status
            forked = await forge.fork(session_id, 1, drop=["bob"])
            fork_events = [r.type async for r in forge.deliberate(forked)]
            assert "SessionForked" in fork_events and fork_events[-1] == "SessionEnded"
            assert (await forge.compare(session_id, forked)).first_difference is not None

            slow = await forge.create_session("Design a TODO API", SLOW, max_iterations=1, start=True)
            live = forge.deliberate(slow)
            assert (await anext(live)).type == "SessionCreated"
            assert (await forge.cancel(slow, "enough")).status == "cancelled"  # explicit, and seen by watchers
            rest = [r async for r in live]
            assert rest[-1].type == "SessionEnded" and rest[-1].event.outcome == "cancelled"

    asyncio.run(scenario())


def test_closing_the_engine_ends_its_followers_with_session_stopped(tmp_path: Path) -> None:
    async def scenario() -> None:
        forge = await AsyncForge(str(tmp_path / "forge.db"), retry_policy=FAST_RETRIES).open()
        session_id = await forge.create_session("Design a TODO API", SLOW, max_iterations=1, start=True)
        live = forge.deliberate(session_id)
        await anext(live)
        await forge.close()
        with pytest.raises(SessionStoppedError):
            async with asyncio.timeout(30 * QUIET_CHECK_SECONDS):  # never reached unless a follower hangs
                async for _ in live:
                    pass

    asyncio.run(scenario())
