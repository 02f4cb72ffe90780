"""The server's request log: one line per request at info level (``forge serve`` shows them).

uvicorn's own access log is off: it prints the query string, and the event streams take the token
as ``?token=TOKEN``. This one prints the method, the path (never the query), the status and the
time taken; for a WebSocket or an event stream the time is that of the whole connection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: The longest path logged (a path is the client's: it may be anything, of any length).
MAX_PATH_CHARS = 200


def printable_path(path: str) -> str:
    """The request's path fit for one log line: control characters escaped, cut at MAX_PATH_CHARS."""
    shown = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in path[:MAX_PATH_CHARS])
    return shown + ("…" if len(path) > MAX_PATH_CHARS else "")


class AccessLog:
    """ASGI middleware: ``GET /api/sessions 200 3.1 ms`` for each HTTP request, ``WS /api/... 101`` for
    a WebSocket (its close code when it was refused or closed by the server before accepting)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: list[int | str] = ["-"]

        async def sending(message: Message) -> None:
            kind = message.get("type")
            if kind == "http.response.start":
                status[0] = message.get("status", "-")
            elif kind == "websocket.accept":
                status[0] = 101
            elif kind == "websocket.http.response.start" or (kind == "websocket.close" and status[0] == "-"):
                status[0] = message.get("status", message.get("code", "-"))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            method = scope.get("method", "GET") if scope["type"] == "http" else "WS"
            took = (time.perf_counter() - started) * 1000
            logger.info("%s %s %s %.1f ms", method, printable_path(scope.get("path", "")), status[0], took)
