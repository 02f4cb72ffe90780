"""The HTTP API (Starlette): sessions, steps, exports, and live events over SSE and WebSocket.

Every route talks to the engine (``Forge``) only, from a worker thread, since the
engine's calls block. Live events come from the log itself, through one reader per
watched session (``hub.SessionHub``): each streaming client takes them from its own
position at its own pace, so what a client sees is exactly what was committed, and a
slow client slows nobody. SSE and WebSocket get the same batches, each event framed
by ``export.event_json``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import msgspec
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Match, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from forge_actors.core.events import ROUND_KINDS
from forge_actors.core.export import FORMATS, event_json, export_document, render
from forge_actors.engine import (
    RETRY_AFTER_SECONDS,
    ConfigError,
    CorruptEventError,
    CorruptLogError,
    Forge,
    InvalidCommandError,
    LogUnavailableError,
    LogUnavailableWriteError,
    LogWriteError,
    ParticipantKeyMissingError,
    RecordedEvent,
    SessionBusyError,
    SessionNotFoundError,
    SessionStartError,
    log_outage,
)
from forge_actors.surfaces.server import bodies
from forge_actors.surfaces.server.guards import (
    WS_INTERNAL_ERROR,
    BrowserGuard,
    ErrorBoundary,
    OpenAIErrorShape,
    SecurityHeaders,
    TokenGate,
    check_token,
    page_policy,
)
from forge_actors.surfaces.server.hub import Hubs, paced
from forge_actors.surfaces.server.openai_compat import openai_routes
from forge_actors.surfaces.server.openapi import MAX_POSITION, openapi_document

__all__ = ["API", "ApiError", "MAX_BODY_BYTES", "TokenGate", "create_app"]

logger = logging.getLogger(__name__)

API = "/api/v1/forge"
STATIC = Path(__file__).with_name("static")
#: Request bodies larger than this are refused with 413.
MAX_BODY_BYTES = 1 << 20
KEEP_ALIVE_SECONDS = 15.0
CONTENT_TYPES = {"md": "text/markdown; charset=utf-8", "json": "application/json",
                 "yaml": "application/yaml; charset=utf-8"}
#: A speed is a decimal number in ASCII (no sign, digit groups, or other scripts' digits).
_SPEED = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")


class ApiError(Exception):
    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        self.status = status
        self.message = message
        self.detail = detail
        super().__init__(message)


def _error(status: int, message: str, detail: Any = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=headers)


def _json(data: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json")


async def _body(request: Request, type_: type, limit: int) -> Any:
    """The request's JSON body decoded as ``type_``: 413 past ``limit`` bytes, 422 with field errors
    (nesting past ``bodies.MAX_NESTING`` included)."""
    try:
        data = await bodies.read_limited(request, limit)
    except bodies.BodyTooLarge as too_large:
        raise ApiError(413, str(too_large)) from None
    try:
        return bodies.decode(data or b"{}", type_)
    except msgspec.ValidationError as exc:
        message, field = bodies.invalid_field(exc)
        raise ApiError(422, "the request body is invalid", [{"field": field, "message": message}]) from None
    except bodies.TooDeep as exc:
        raise ApiError(422, "the request body is invalid", [{"field": None, "message": str(exc)}]) from None
    except msgspec.DecodeError as exc:
        raise ApiError(422, "the request body is not valid JSON", [{"field": None, "message": str(exc)}]) from None


# -- streaming ------------------------------------------------------------------------------------------


#: A re-paced replay waits at most this long between two events (idle time between steps).
MAX_REPLAY_PAUSE = 5.0


async def _batches(hubs: Hubs, session_id: str, after: int, speed: float | None,
                   idle_every: float | None = None) -> AsyncIterator[list[RecordedEvent]]:
    """The events a client asked for, from the session's hub: as they come, or re-paced at their
    recorded pace times ``speed``. Events are relayed as stored (their JSON text), never decoded here."""
    batches = hubs.follow(session_id, after, idle_every)
    if speed is not None:
        batches = paced(batches, speed, MAX_REPLAY_PAUSE)
    async for batch in batches:
        yield batch


def _position(text: str | None, name: str) -> int:
    """A log position from a query parameter or header: ASCII digits only (``str.isdigit`` also
    takes ``²`` and ``١٢``), below 2**63 (checked on the text's length before any conversion)."""
    if not text:
        return 0
    digits = text.lstrip("0") or "0"
    if not (text.isascii() and text.isdigit()) or len(digits) > 19 or int(digits) > MAX_POSITION:
        raise ApiError(422, f"{name} must be a log position: a whole number from 0 to {MAX_POSITION}, "
                            f"in ASCII digits (the `id:` of the last event seen)")
    return int(digits)


def _speed(text: str | None) -> float | None:
    if text is None:
        return None
    speed = float(text) if len(text) <= 32 and _SPEED.fullmatch(text) else math.nan
    if not math.isfinite(speed):
        raise ApiError(422, "speed must be a number, 0 or more, like 2 or 0.5 (0: as fast as possible)")
    return speed


def _stream_position(request: Request) -> int:
    """Where an SSE client resumes: its Last-Event-ID (set by EventSource on reconnecting), else ?from=.
    Both are checked when both are given (a bad ``from`` is a 422 even when the header wins)."""
    given = _position(request.query_params.get("from"), "from")
    header = request.headers.get("last-event-id")
    return _position(header, "Last-Event-ID") if header else given


def _corrupt_detail(exc: CorruptEventError) -> dict[str, Any]:
    return {"position": exc.position, "event_type": exc.event_type}


def _failure(exc: Exception) -> tuple[str, Any]:
    """What a stream tells its client when it cannot go on: the error and its detail (no internals)."""
    if isinstance(exc, CorruptEventError):
        return str(exc), _corrupt_detail(exc)
    outage = log_outage(exc)
    if outage is not None:
        return outage.message, None if outage.retry_after is None else {"retry_after": outage.retry_after}
    return "internal error", "the server's log holds what went wrong"


# -- the app ---------------------------------------------------------------------------------------------


def create_app(forge: Forge, *, token: str | None = None, max_body: int = MAX_BODY_BYTES,
               host: str = "127.0.0.1") -> Starlette:
    """The ASGI app over ``forge``. With ``token``, every API and stream request must carry it
    (a blank one is a ConfigError). ``host`` is the address it is served on: on a loopback one,
    only requests naming a loopback host are answered (see ``guards.BrowserGuard``)."""
    token = check_token(token)
    hubs = Hubs(forge)

    async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(fn, *args, **kwargs)

    async def session_id_of(request: Request | WebSocket) -> str:
        session_id = request.path_params["session_id"]
        await in_thread(forge.state, session_id)  # SessionNotFoundError -> 404
        return session_id

    async def document(session_id: str) -> Response:
        state = await in_thread(forge.state, session_id)
        return _json(export_document(state, forge.config.pricing))

    # -- sessions

    async def create_session(request: Request) -> Response:
        body: bodies.CreateSession = await _body(request, bodies.CreateSession, max_body)
        title = _title(body)
        # Untrusted in every field, whatever it names or leaves out (engine.trust): with no participants,
        # the operator's (a council it names, else the council `forge` or the server's defaults) deliberate.
        session_id = await in_thread(forge.create_session, body.goal, list(body.participants) or None, title,
                                     constraints=body.constraints, settings=body.config, council=body.council,
                                     trusted=False, start=body.deliberate)
        return await created(session_id)

    async def created(session_id: str) -> Response:
        """201 with the new session's document, and where it lives."""
        response = await document(session_id)
        response.status_code = 201
        response.headers["location"] = f"{API}/sessions/{session_id}"
        return response

    async def fork_session(request: Request) -> Response:
        session_id = await session_id_of(request)
        body: bodies.ForkSession = await _body(request, bodies.ForkSession, max_body)
        fork_id = await in_thread(forge.fork, session_id, body.at_round, list(body.participants), drop=body.drop,
                                  humans=body.humans, constraints=body.constraints, settings=body.config,
                                  trusted=False, start=body.deliberate)
        return await created(fork_id)

    async def compare(request: Request) -> Response:
        given = {name: request.query_params.get(name, "") for name in ("a", "b")}
        missing = [name for name, value in given.items() if not value]
        if missing:
            raise ApiError(422, "compare takes two sessions: ?a=ID&b=ID",
                           [{"field": name, "message": "a session id is required"} for name in missing])
        return _json(await in_thread(forge.compare, given["a"], given["b"]))

    async def list_sessions(request: Request) -> Response:
        return _json(await in_thread(forge.summaries))

    async def get_session(request: Request) -> Response:
        return await document(await session_id_of(request))

    async def deliberate(request: Request) -> Response:
        await _body(request, bodies.NoBody, max_body)
        session_id = await session_id_of(request)
        # Started (or resumed) in the background: the events are on the streams. (Not forge.deliberate,
        # whose iterator, left unread, would keep a subscription to the log for good.)
        if not await in_thread(forge.start, session_id):
            state = await in_thread(forge.state, session_id)
            raise ApiError(409, f"the session has ended ({state.status}): {state.end_reason}")
        return _json({"session_id": session_id, "status": "deliberating",
                      "events": f"{API}/sessions/{session_id}/events"}, 202)

    async def start_round(request: Request, kind: str) -> Response:
        session_id = await session_id_of(request)
        if kind not in ROUND_KINDS:
            raise ApiError(422, f"unknown round kind {kind!r}; the kinds are {', '.join(ROUND_KINDS)}")
        number, _ = await in_thread(forge.start_round, session_id, kind)
        return _json({"session_id": session_id, "round": number, "kind": kind}, 202)

    async def synthesize(request: Request) -> Response:
        await _body(request, bodies.NoBody, max_body)
        return await start_round(request, "synthesis")

    async def converge(request: Request) -> Response:
        await _body(request, bodies.NoBody, max_body)
        return await start_round(request, "convergence")

    async def rounds(request: Request) -> Response:
        body: bodies.StartRound = await _body(request, bodies.StartRound, max_body)
        return await start_round(request, body.kind)

    async def add_draft(request: Request) -> Response:
        session_id = await session_id_of(request)
        body: bodies.HumanDraft = await _body(request, bodies.HumanDraft, max_body)
        number = await in_thread(forge.add_human_draft, session_id, body.author, body.content, trusted=False)
        return _json({"session_id": session_id, "round": number, "author": body.author}, 201)

    async def add_vote(request: Request) -> Response:
        session_id = await session_id_of(request)
        body: bodies.HumanVote = await _body(request, bodies.HumanVote, max_body)
        number = await in_thread(forge.cast_vote, session_id, body.voter, body.vote, body.reasons, body.concerns,
                                 trusted=False)
        return _json({"session_id": session_id, "round": number, "voter": body.voter, "vote": body.vote}, 201)

    async def cancel(request: Request) -> Response:
        session_id = await session_id_of(request)
        body: bodies.Cancel = await _body(request, bodies.Cancel, max_body)
        await in_thread(forge.cancel, session_id, body.reason, trusted=False)
        return await document(session_id)

    async def switch_provider(request: Request) -> Response:
        session_id = await session_id_of(request)
        body: bodies.SwitchProvider = await _body(request, bodies.SwitchProvider, max_body)
        await in_thread(forge.switch_provider, session_id, request.path_params["participant"], body.spec,
                        trusted=False)
        return await document(session_id)

    async def providers(request: Request) -> Response:
        probes = await in_thread(forge.providers, None, 2.0)
        return _json({"providers": probes, "pools": forge.pool_health()})

    async def export(request: Request) -> Response:
        session_id = await session_id_of(request)
        fmt = request.query_params.get("format", "md")
        if fmt not in FORMATS:
            raise ApiError(422, f"format must be one of {', '.join(FORMATS)}")
        state = await in_thread(forge.state, session_id)
        text = render(export_document(state, forge.config.pricing), fmt)
        return Response(text, media_type=CONTENT_TYPES[fmt])

    # -- live events

    async def events_sse(request: Request) -> Response:
        after = _stream_position(request)
        speed = _speed(request.query_params.get("speed"))
        session_id = await session_id_of(request)

        async def stream() -> Any:
            yield "retry: 1000\n\n"
            try:
                async for batch in _batches(hubs, session_id, after, speed, KEEP_ALIVE_SECONDS):
                    if not batch:
                        yield ": keep-alive\n\n"
                        continue
                    yield "".join(f"id: {r.position}\ndata: {event_json(r)}\n\n" for r in batch)
            except Exception as exc:  # the status is sent: the last word is an `error` event
                _log_stream_failure(session_id, exc)
                message, detail = _failure(exc)
                yield f"event: error\ndata: {msgspec.json.encode({'error': message, 'detail': detail}).decode()}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    async def open_ws(websocket: WebSocket, *, paced_replay: bool) -> tuple[str, int, float | None] | None:
        """Accept a stream's WebSocket: (session, position to follow from, speed), or None once it has
        been closed with the reason (4404 no such session, 4422 a bad parameter)."""
        try:
            after = _position(websocket.query_params.get("from"), "from")
            speed = _speed(websocket.query_params.get("speed")) if paced_replay else None
            session_id = await session_id_of(websocket)
        except (ApiError, SessionNotFoundError, CorruptEventError, LogUnavailableError, CorruptLogError) as exc:
            await websocket.accept()
            code = (4404 if isinstance(exc, SessionNotFoundError) else 4422 if isinstance(exc, ApiError)
                    else _ws_code(exc))
            await websocket.close(code=code, reason=_ws_reason(exc))
            return None
        await websocket.accept()
        return session_id, after, speed

    async def events_ws(websocket: WebSocket) -> None:
        opened = await open_ws(websocket, paced_replay=True)
        if opened is not None:
            await relay_ws(websocket, *opened)

    async def deliberate_ws(websocket: WebSocket) -> None:
        """The seed's ``websocat ws://HOST/api/v1/forge/sessions/{id}/deliberate``: start the
        deliberation (resume an interrupted one; join one running here; an ended one is only
        re-read), then its events from ``?from=`` (default: all of them) to SessionEnded, as
        ``/stream`` sends them, and close with 1000. Leaving early does not stop the deliberation."""
        opened = await open_ws(websocket, paced_replay=False)
        if opened is None:
            return
        session_id, after, _ = opened
        try:
            await in_thread(forge.start, session_id)
        except (SessionBusyError, ConfigError, LogWriteError, LogUnavailableError, CorruptLogError) as exc:
            logger.info("session %s: not started over the WebSocket: %s", session_id, exc)
            code, reason = _start_refusal(exc)
            await websocket.close(code=code, reason=reason)
            return
        await relay_ws(websocket, session_id, after, None)

    async def relay_ws(websocket: WebSocket, session_id: str, after: int, speed: float | None) -> None:
        """The session's events after ``after`` to an accepted WebSocket, one JSON text message each,
        until SessionEnded (then close 1000) or until the client leaves."""
        async with anyio.create_task_group() as tasks:

            async def pump() -> None:
                try:
                    async for batch in _batches(hubs, session_id, after, speed):
                        for recorded in batch:
                            await websocket.send_text(event_json(recorded))
                    await websocket.close(code=1000)
                except (WebSocketDisconnect, RuntimeError, OSError):  # the client went away mid-send
                    pass
                except Exception as exc:  # the log cannot be read on: say so in the close frame
                    _log_stream_failure(session_id, exc)
                    try:
                        await websocket.close(code=_ws_code(exc), reason=_ws_reason(exc))
                    except (WebSocketDisconnect, RuntimeError, OSError):  # gone too: the failure is logged above
                        pass
                tasks.cancel_scope.cancel()

            async def watch() -> None:  # the client's side: a disconnect ends the pump too
                try:
                    while (await websocket.receive())["type"] != "websocket.disconnect":
                        pass
                except (WebSocketDisconnect, RuntimeError):  # the client went away: what we watch for
                    pass
                tasks.cancel_scope.cancel()

            tasks.start_soon(pump)
            tasks.start_soon(watch)

    async def openapi(request: Request) -> Response:
        return _json(openapi_document(API, forge.config))

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    # (method, path under API): its handler; openapi.ENDPOINTS documents the same table (a test checks).
    http = {
        ("POST", "/sessions"): create_session,
        ("GET", "/sessions"): list_sessions,
        ("GET", "/sessions/{session_id}"): get_session,
        ("POST", "/sessions/{session_id}/deliberate"): deliberate,
        ("POST", "/sessions/{session_id}/fork"): fork_session,
        ("GET", "/compare"): compare,
        ("POST", "/sessions/{session_id}/rounds"): rounds,
        ("POST", "/sessions/{session_id}/drafts"): add_draft,
        ("POST", "/sessions/{session_id}/synthesize"): synthesize,
        ("POST", "/sessions/{session_id}/converge"): converge,
        ("POST", "/sessions/{session_id}/votes"): add_vote,
        ("POST", "/sessions/{session_id}/cancel"): cancel,
        ("POST", "/sessions/{session_id}/participants/{participant}/provider"): switch_provider,
        ("GET", "/sessions/{session_id}/export"): export,
        ("GET", "/sessions/{session_id}/events"): events_sse,
        ("GET", "/providers"): providers,
        ("GET", "/openapi.json"): openapi,
    }
    websockets = {f"{API}{path}": handler for path, handler in (("/sessions/{session_id}/deliberate", deliberate_ws),
                                                                ("/sessions/{session_id}/stream", events_ws))}
    routes: list[BaseRoute] = [
        *_resources({(method, API + path): handler for (method, path), handler in http.items()}, websockets),
        Route("/", index, methods=["GET"]),  # the web page: one file, no build step
        *openai_routes(forge, max_body=max_body),  # /v1/models, /v1/chat/completions (docs/openai.md)
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        ApiError: _api_error,
        HTTPException: _http_error,  # no such route (404), a method it does not take (405, with Allow)
        SessionNotFoundError: _status(404),
        InvalidCommandError: _status(409),  # a step that does not fit the session now
        SessionBusyError: _status(409),  # another engine drives the session (its lease)
        ConfigError: _status(422),
        ParticipantKeyMissingError: _key_missing,  # a ConfigError whose own hint (api_key=) an API caller may not follow
        CorruptEventError: _corrupt_event,
        LogWriteError: _log_write_failed,  # a full disk: nothing committed was lost; try again once there is space
        SessionStartError: _start_failed,  # created, not started: the id, and how to start it
        # The log out of service, said without where it is (the server's log has the whole error): its
        # database unreachable, 503 with Retry-After; its file damaged, 500, since retrying cannot help
        # until the operator recovers it (a 503 would have clients and proxies retry for nothing).
        LogUnavailableError: _log_outage,
        LogUnavailableWriteError: _log_outage,
        CorruptLogError: _log_outage,
    }
    # Outermost first. The boundary sits inside Starlette's own error middleware (plain text).
    middleware = [Middleware(SecurityHeaders, page_policy=page_policy(STATIC / "index.html")),
                  Middleware(OpenAIErrorShape), Middleware(ErrorBoundary),
                  Middleware(BrowserGuard, bind=host, max_body=max_body, routed=_router_takes(routes))]
    if token:
        middleware.append(Middleware(TokenGate, token=token))
    app = Starlette(routes=routes, exception_handlers=handlers, middleware=middleware)  # type: ignore[arg-type]
    app.state.forge = forge
    return app


Endpoint = Callable[[Request], Awaitable[Response]]


def _resources(http: dict[tuple[str, str], Endpoint], websockets: dict[str, Any]) -> list[BaseRoute]:
    """One route per path, taking all of that path's methods, so that a method it does not take
    gets 405 with an ``Allow`` naming all of them (a route per method named only its own). A
    WebSocket's path answers a plain GET with 426 (``Upgrade: websocket``); where the path also
    takes POST (``.../deliberate``), a plain GET gets that path's 405 (see ``_http_error``)."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for (method, path), handler in http.items():
        by_path.setdefault(path, {})[method] = handler
    routes: list[BaseRoute] = [Route(path, _dispatch(handlers), methods=list(handlers))
                               for path, handlers in by_path.items()]
    for path, handler in websockets.items():
        routes.append(WebSocketRoute(path, handler))
        if path not in by_path:
            routes.append(Route(path, _upgrade_required, methods=["GET"]))
    return routes


def _dispatch(handlers: dict[str, Endpoint]) -> Endpoint:
    async def dispatch(request: Request) -> Response:
        return await handlers["GET" if request.method == "HEAD" else request.method](request)

    return dispatch


async def _upgrade_required(request: Request) -> Response:
    response = _error(426, "this is a WebSocket: open it with a WebSocket client (ws://, or wss:// behind TLS), "
                           "e.g. `websocat ws://HOST/PATH`")
    response.headers["upgrade"] = "websocket"
    response.headers["connection"] = "Upgrade"
    return response


def _router_takes(routes: list[BaseRoute]) -> Callable[[MutableMapping[str, Any]], bool]:
    """Whether a route takes the request: its path and its method (``BrowserGuard`` checks a body's
    type only then; a request no route takes gets its 404 or 405 first)."""
    def takes(scope: MutableMapping[str, Any]) -> bool:
        return any(route.matches(scope)[0] is Match.FULL for route in routes)

    return takes


def _is_websocket_path(request: Request) -> bool:
    websocket = {**request.scope, "type": "websocket"}
    return any(isinstance(route, WebSocketRoute) and route.matches(websocket)[0] is Match.FULL
               for route in request.app.routes)


def _title(body: bodies.CreateSession) -> str | None:
    """The title, given as ``title`` or as the seed's ``name``; both, differing, is a 422."""
    if body.name is not None and body.title is not None and body.name != body.title:
        raise ApiError(422, "the request body is invalid", [{
            "field": "name", "message": "`name` is another word for `title`, and both are given with different "
                                        "values, so which one wins is ambiguous: send only one of them"}])
    return body.title if body.title is not None else body.name


def _start_refusal(exc: Exception) -> tuple[int, str]:
    """The close code and reason of a deliberation that could not start (4000 + the HTTP status)."""
    if log_outage(exc) is not None:
        return _ws_code(exc), _ws_reason(exc)
    if isinstance(exc, SessionBusyError):
        return 4409, _short(f"busy: another engine drives this session (its lease runs {max(exc.expires_in, 0):.0f} "
                            f"s more); watch it on .../stream, or try again later")
    if isinstance(exc, LogWriteError):
        return 4503, _short(f"the log refused the write: {exc}")
    if isinstance(exc, ParticipantKeyMissingError):  # the whole message would not fit: what to do first
        return 4422, _short(f"set {exc.env_var} where the server runs, then connect again: participant "
                            f"{exc.participant or '?'} has no API key here")
    return 4422, _short(str(exc))


def _short(text: str) -> str:
    """A close reason holds at most 123 bytes of UTF-8."""
    return text.encode()[:123].decode(errors="ignore")


def _status(status: int) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handler(request: Request, exc: Exception) -> Response:
        return _error(status, str(exc))

    return handler


async def _key_missing(request: Request, exc: Exception) -> Response:
    """A participant whose provider has no API key where the server runs: 422 saying who sets it. The
    engine's message offers ``api_key=...``, which only trusted callers may pass (an API caller's
    spec with a key is refused), so an API caller is told of the server's environment instead."""
    assert isinstance(exc, ParticipantKeyMissingError)
    who = f"participant {exc.participant}" if exc.participant else "a participant"
    return _error(422, f"{who} has no API key on this server: whoever runs `forge serve` sets {exc.env_var} in its "
                       f"environment and restarts it (an API request cannot carry a key); or name another provider")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _error(exc.status, exc.message, exc.detail)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = None
    if exc.status_code == 405 and request.method == "GET" and _is_websocket_path(request):
        detail = ("GET here is the WebSocket that runs the session and streams its events: open it with a "
                  "WebSocket client (ws://); over plain HTTP, POST starts the session")
    response = _error(exc.status_code, exc.detail, detail)
    response.headers.update(exc.headers or {})
    return response


async def _start_failed(request: Request, exc: Exception) -> Response:
    """A session created with ``deliberate: true`` whose start failed: the status its cause would have
    (503 with Retry-After for a log that cannot take writes now), with the id, so that the client
    learns of the session it created."""
    assert isinstance(exc, SessionStartError)
    started = {"session_id": exc.session_id, "deliberate": f"{API}/sessions/{exc.session_id}/deliberate"}
    outage = log_outage(exc)  # the log out of service: said without where it is
    if outage is not None:
        logger.warning("session %s: created, but could not start: %s", exc.session_id, exc.cause)
        if outage.retry_after is None:
            return _error(500, outage.message, started)
        return _error(503, outage.message, started, headers={"retry-after": str(outage.retry_after)})
    if isinstance(exc.cause, LogWriteError):
        logger.warning("session %s: created, but could not start: %s", exc.session_id, exc.cause)
        return _error(503, f"session {exc.session_id} was created, but could not start: {exc.cause}", started,
                      headers={"retry-after": str(RETRY_AFTER_SECONDS)})
    status = 409 if isinstance(exc.cause, SessionBusyError) else 500
    if status == 500:
        logger.error("session %s: created, but its deliberation could not start", exc.session_id, exc_info=exc.cause)
    return _error(status, str(exc), started)


async def _log_write_failed(request: Request, exc: Exception) -> Response:
    """A write the log could not take (a full disk; its own message names the log's file, the operator's):
    503, and when to try again; nothing committed was lost."""
    return _error(503, str(exc), headers={"retry-after": str(RETRY_AFTER_SECONDS)})


async def _log_outage(request: Request, exc: Exception) -> Response:
    """The log out of service: what a client may be told of it (``log_outage``), 503 with Retry-After
    while its database cannot be reached, 500 for a damaged file; the whole error, in the server's log."""
    outage = log_outage(exc)
    assert outage is not None
    logger.log(logging.WARNING if outage.retry_after else logging.ERROR, "%s %s: %s", request.method,
               request.url.path, exc)
    if outage.retry_after is None:
        return _error(500, outage.message)
    response = _error(503, outage.message, {"retry_after": outage.retry_after})
    response.headers["retry-after"] = str(outage.retry_after)
    return response


async def _corrupt_event(request: Request, exc: Exception) -> Response:
    """A row of the log cannot be decoded: the session cannot be read past it. Not the caller's
    fault and not transient, so a 500 naming the position (the rest of the log is intact)."""
    assert isinstance(exc, CorruptEventError)
    logger.error("session %s: %s", request.path_params.get("session_id"), exc)
    return _error(500, str(exc), _corrupt_detail(exc))


def _log_stream_failure(session_id: str, exc: Exception) -> None:
    if isinstance(exc, CorruptEventError) or log_outage(exc) is not None:
        logger.error("stream of session %s stopped: %s", session_id, exc)
    else:
        logger.exception("stream of session %s failed", session_id)


def _ws_code(exc: Exception) -> int:
    """The close code of a stream that cannot go on: 4503 while the log's database cannot be reached
    (4000 + the HTTP status: try again), else 1011."""
    outage = log_outage(exc)
    return 4503 if outage is not None and outage.retry_after is not None else WS_INTERNAL_ERROR


def _ws_reason(exc: Exception) -> str:
    """A close reason (at most 123 bytes): what went wrong, short."""
    outage = log_outage(exc)
    if outage is not None:
        return _short(outage.message)
    if isinstance(exc, CorruptEventError):
        return (f"the event at log position {exc.position} cannot be decoded; "
                f"the server's log says how to inspect it")
    if isinstance(exc, (ApiError, SessionNotFoundError)):
        return str(exc).encode()[:123].decode(errors="ignore")
    return "internal error: the server's log holds what went wrong"

