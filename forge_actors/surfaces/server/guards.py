"""The ASGI layers in front of the routes: what a request must be before any handler sees it.

- ``ErrorBoundary``: an exception no handler mapped becomes a JSON 500 (or a WebSocket close
  1011) naming an incident id that the log holds with the traceback; never a plain-text body,
  never the exception's text (it could hold anything).
- ``BrowserGuard``: what keeps a web page on another site from driving the API through a
  visitor's browser. State-changing requests must be ``application/json`` (a page elsewhere
  can send a form or text/plain without asking, JSON only after a CORS preflight this server
  never grants: 415); on a loopback bind, ``Host`` must be a loopback name or the bound address
  (DNS rebinding: a foreign name resolved to 127.0.0.1 still says its own name: 421); and an
  ``Origin``, when there is one, must be the server's own (403). Requests without ``Origin``
  (curl, SDKs) are not browser-borne and pass. One exception to the JSON rule, for
  ``curl -d '{...}'`` (which says ``application/x-www-form-urlencoded``): a form-encoded body
  that is a JSON object is taken when nothing says a browser sent it (no foreign Origin, no
  cross-site ``Sec-Fetch-Site``). A browser's form of that type can never send such a body
  (it percent-encodes ``{``, ``"`` and ``:`` and always writes ``name=value``), and a page's
  script that sets the type by hand sends its Origin, refused above.
- ``TokenGate``: with a token, every request under /api/ and /v1/ (the OpenAI-compatible routes) must carry it.
- ``SecurityHeaders``: what every HTTP response says to the browser, in one place: no sniffing, no
  referrer, never framed (``frame-ancestors 'none'``, ``X-Frame-Options: DENY``), its own browsing
  context group, readable only by the server's own pages; the page's CSP, and ``default-src 'none'``
  for everything else.

WebSocket handshakes go through the same checks. A foreign Host or Origin is refused before
any WebSocket exists: the handshake gets HTTP 403 (RFC 6455 §4.2.2). A missing token is told
apart in a way a browser can see: the handshake is accepted and closed at once with code
4401, since a page's WebSocket cannot read a refused handshake's status.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec

from forge_actors.engine import ConfigError
from forge_actors.surfaces.server import bodies

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Methods that change nothing; every other one must send JSON.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: What ``curl -d`` sends by default: taken when the body is a JSON object (see the module's docstring).
FORM_TYPE = "application/x-www-form-urlencoded"
#: ``Sec-Fetch-Site`` values (sent by current browsers, never by curl) of a request from the server's own page.
SAME_SITE_FETCH = frozenset({"same-origin"})
#: The default limit on request bodies (the app's MAX_BODY_BYTES).
DEFAULT_MAX_BODY = 1 << 20
NOT_JSON = ("state-changing requests must send `content-type: application/json` with a JSON body "
            "(`{}` for the routes that take none)")
#: WebSocket close code when the token is missing or wrong (4000 + the HTTP status, like 4404, 4422).
WS_UNAUTHORIZED = 4401
WS_INTERNAL_ERROR = 1011


# -- replies -----------------------------------------------------------------------------------------


def _json_body(message: str, detail: Any = None) -> bytes:
    body: dict[str, Any] = {"error": message}
    if detail is not None:
        body["detail"] = detail
    return json.dumps(body).encode()


async def send_http_error(send: Send, status: int, message: str, detail: Any = None,
                          headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = _json_body(message, detail)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


async def refuse_handshake(receive: Receive, send: Send, reason: str) -> None:
    """Refuse a WebSocket handshake: closing before accepting, which uvicorn answers with HTTP 403.

    (Not the ``websocket.http.response`` extension: uvicorn's sans-I/O protocol answers it, then
    logs an error for every such refusal, which a foreign page could use to flood the log.)
    """
    await receive()  # websocket.connect
    await send({"type": "websocket.close", "code": 1008, "reason": _close_reason(reason)})


async def accept_and_close(receive: Receive, send: Send, code: int, reason: str) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": code, "reason": _close_reason(reason)})


def _close_reason(reason: str) -> str:
    """A close frame's reason holds at most 123 bytes of UTF-8."""
    data = reason.encode()[:123]
    return data.decode(errors="ignore")


def _header(scope: Scope, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope.get("headers") or [] if key == name]


# -- tokens ------------------------------------------------------------------------------------------


def check_token(token: str | None, source: str = "the token") -> str | None:
    """``token`` if it is usable as a bearer token, None for no token; ConfigError for a blank one
    (a token that was meant to be set, but guards nothing) or one no header can carry."""
    if token is None:
        return None
    if not token.strip():
        raise ConfigError(f"{source} is blank, so it would guard nothing: give a real token (for example "
                          "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`), or none at all")
    if not all("\x21" <= c <= "\x7e" for c in token):
        raise ConfigError(f"{source} holds spaces, control or non-ASCII characters, which an "
                          "`Authorization: Bearer` header cannot carry reliably: use printable ASCII only")
    return token


#: The OpenAI-compatible routes (``openai_compat``): guarded by the token too, answered in OpenAI's error shape.
OPENAI_ROOT = "/v1/"


async def send_openai_unauthorized(send: Send) -> None:
    """401 as OpenAI answers a missing or wrong key, so an SDK raises its AuthenticationError."""
    body = json.dumps({"error": {"message": "a token is required: give the server's token as the API key "
                                            "(`Authorization: Bearer TOKEN`)", "type": "invalid_request_error",
                                 "param": None, "code": "invalid_api_key"}}).encode()
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"www-authenticate", b"Bearer")]})
    await send({"type": "http.response.body", "body": body})


class OpenAIErrorShape:
    """Under /v1/, every error answer in OpenAI's shape (``{"error": {"message", "type", "param",
    "code"}}``), whoever wrote it (a guard's 415, an unknown route's 404, the boundary's 500), so that
    an OpenAI SDK raises its own typed errors. Answers already in that shape, and successes (the event
    streams included), pass untouched: only an error's small JSON body is held and rewritten."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(OPENAI_ROOT):
            await self.app(scope, receive, send)
            return
        held: dict[str, Any] = {}

        async def reshape(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                held["start"], held["body"] = message, b""
                return
            if message["type"] == "http.response.body" and "start" in held:
                held["body"] += message.get("body", b"")
                if message.get("more_body"):
                    return
                start = held.pop("start")
                body = _openai_error_body(held.pop("body"), int(start["status"]))
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, reshape)


#: The OpenAI error ``type`` of each status (its SDKs map the status to a class; the type is for people).
_OPENAI_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
                 404: "invalid_request_error", 405: "invalid_request_error", 409: "invalid_request_error",
                 413: "invalid_request_error", 415: "invalid_request_error", 421: "invalid_request_error",
                 422: "invalid_request_error", 429: "rate_limit_error"}


def _openai_error_body(body: bytes, status: int) -> bytes:
    try:
        data = json.loads(body) if body else {}
    except ValueError:  # not JSON (e.g. plain text from below the boundary): its text is the message
        data = {"error": body.decode("utf-8", "replace")}
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):  # already OpenAI's shape
        return body
    message = str(error) if error else f"HTTP {status}"
    return json.dumps({"error": {"message": message, "type": _OPENAI_TYPES.get(status, "server_error"),
                                 "param": None, "code": None}}).encode()


class TokenGate:
    """Every request under /api/ and /v1/ must carry the token: ``Authorization: Bearer TOKEN``, or, for the
    event streams (browsers cannot set headers on EventSource or WebSocket), ``?token=TOKEN``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        checked = check_token(token)
        assert checked is not None
        self.token = checked.encode()

    def _allowed(self, scope: Scope) -> bool:
        for given in _header(scope, b"authorization"):
            raw = given.encode("latin-1")
            if raw[:7].lower() == b"bearer " and hmac.compare_digest(raw[7:].strip(), self.token):
                return True
        if scope["type"] == "websocket" or scope["path"].endswith("/events"):
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            return any(hmac.compare_digest(t.encode(), self.token) for t in query.get("token", []))
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        guarded = path.startswith("/api/") or path.startswith(OPENAI_ROOT)
        if scope["type"] in ("http", "websocket") and guarded and not self._allowed(scope):
            if scope["type"] == "http" and path.startswith(OPENAI_ROOT):  # OpenAI's shape, which SDKs read
                await send_openai_unauthorized(send)
            elif scope["type"] == "http":
                await send_http_error(send, 401, "a token is required: send `Authorization: Bearer TOKEN` "
                                                 "(the event streams also take `?token=TOKEN`)",
                                      headers=[(b"www-authenticate", b"Bearer")])
            else:
                await accept_and_close(receive, send, WS_UNAUTHORIZED,
                                       "a token is required: add ?token=TOKEN to the stream's URL")
            return
        await self.app(scope, receive, send)


# -- hosts and origins -------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1), brackets allowed around IPv6."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:  # a name other than localhost, or no address at all: not loopback
        return False


def split_host(value: str) -> tuple[str, int | None] | None:
    """``name[:port]`` (``[v6]:port`` for IPv6) as (lowercased name without brackets, port); None if malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
    elif value.count(":") > 1:  # an IPv6 address must be in brackets
        return None
    else:
        name, colon, port_text = value.partition(":")
        port_text = port_text if colon else None
    if not name:
        return None
    if port_text is None:
        return name, None
    if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5):
        return None
    port = int(port_text)
    return (name, port) if 0 < port < 65536 else None


_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class BrowserGuard:
    """Refuses browser-borne requests a foreign page could make: see the module's docstring.

    ``bind`` is the address the server listens on. On a loopback bind only loopback names (or the
    bound address itself) are answered, and an Origin must be ``http://`` one of them with the
    bound port (or the port the Host header names, which a port forward changes). On any other
    bind the names the server is reached by are not known here, so there is no Host rule (the
    token guards it); an Origin must then name exactly the Host the request came on.
    """

    def __init__(self, app: ASGIApp, bind: str, max_body: int = DEFAULT_MAX_BODY,
                 routed: Callable[[Scope], bool] | None = None) -> None:
        self.app = app
        self.bind = bind.strip("[]").lower()
        self.loopback = is_loopback(self.bind)
        self.max_body = max_body
        #: Whether a route takes the request (its path and method); None: assume one does. The body
        #: rules apply only then: a request no route takes changes nothing, and gets its 404 or 405.
        self.routed = routed or (lambda scope: True)

    def _allowed_name(self, name: str) -> bool:
        return is_loopback(name) or name == self.bind

    def _check(self, scope: Scope) -> tuple[int, str] | None:
        """(status, message) when the request is refused, else None."""
        hosts = _header(scope, b"host")
        host = split_host(hosts[0]) if len(hosts) == 1 else None
        if self.loopback and (host is None or not self._allowed_name(host[0])):
            return 421, ("this server answers only on loopback names (localhost, 127.0.0.1, [::1]): the request's "
                         "Host is not one of them (a DNS-rebinding page would look like this). Use "
                         "http://127.0.0.1:PORT/, or serve on another address with --host and --token")
        origins = _header(scope, b"origin")
        if origins and not self._own_origin(origins, scope, host):
            return 403, ("the request comes from a page of another origin; this server takes requests only from its "
                         "own page (or from clients that send no Origin, such as curl and SDKs)")
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS and self.routed(scope):
            media = _media_type(scope)
            if media != "application/json" and not (media == FORM_TYPE and self._not_cross_site(scope)):
                return 415, NOT_JSON
        return None

    @staticmethod
    def _not_cross_site(scope: Scope) -> bool:
        """No sign of a browser on another site: any Origin was the server's own (checked before), and
        ``Sec-Fetch-Site``, which current browsers send on every request, is absent or same-origin."""
        fetch_sites = _header(scope, b"sec-fetch-site")
        return not fetch_sites or (len(fetch_sites) == 1 and fetch_sites[0].strip().lower() in SAME_SITE_FETCH)

    def _own_origin(self, origins: list[str], scope: Scope, host: tuple[str, int | None] | None) -> bool:
        if len(origins) != 1:
            return False
        try:
            origin = urlsplit(origins[0].strip())
            origin_port = origin.port
        except ValueError:  # an unreadable Origin is not ours: refused by the caller
            return False
        name = (origin.hostname or "").lower()
        if origin.scheme not in ("http", "https") or not name or "@" in origin.netloc or origin.path or origin.query:
            return False
        port = origin_port or _DEFAULT_PORTS[origin.scheme]
        if self.loopback:
            server = scope.get("server")
            ports = {server[1]} if server else set()
            if host is not None:
                ports.add(host[1] or 80)
            return origin.scheme == "http" and self._allowed_name(name) and port in ports
        return host is not None and (name, port) == (host[0], host[1] or _DEFAULT_PORTS[origin.scheme])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refused = self._check(scope)
        if refused is None and _form_encoded_change(scope) and self.routed(scope):  # only if its body is JSON
            await self._if_json_object(scope, receive, send)
        elif refused is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await send_http_error(send, *refused)
        else:
            await refuse_handshake(receive, send, refused[1])

    async def _if_json_object(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass a form-encoded request on only if its body is a JSON object (read here, then handed
        to the app as it came); 415 otherwise, 413 past the body limit, 422 past the nesting limit."""
        body = await read_body(scope, receive, self.max_body)
        if body is None:
            await send_http_error(send, 413, f"the request body is over the limit of {self.max_body} bytes")
            return
        try:
            is_object = is_json_object(body)
        except bodies.TooDeep as too_deep:
            await send_http_error(send, 422, "the request body is invalid", [{"field": None, "message": str(too_deep)}])
            return
        if not is_object:
            await send_http_error(send, 415, NOT_JSON + "; a form-encoded body (what `curl -d` sends) is taken only "
                                  "when it is a JSON object, from a client that is not a page of another site")
            return
        handed = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal handed
            if handed:
                return await receive()  # after the body: the disconnect, when it comes
            handed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _form_encoded_change(scope: Scope) -> bool:
    return scope["type"] == "http" and scope["method"] not in SAFE_METHODS and _media_type(scope) == FORM_TYPE


def _media_type(scope: Scope) -> str:
    """The request's media type, lowercased without parameters; "" if none, or several, are given."""
    types = _header(scope, b"content-type")
    return types[0].split(";", 1)[0].strip().lower() if len(types) == 1 else ""


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The request's whole body, or None when it is (or is declared) over ``limit`` bytes."""
    declared = _header(scope, b"content-length")
    if len(declared) == 1 and declared[0].isascii() and declared[0].isdigit() \
            and (len(declared[0]) > 18 or int(declared[0]) > limit):  # (int() refuses 4300+ digits)
        return None
    data = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client left: what came is all there is
            break
        data += message.get("body", b"")
        if len(data) > limit:
            return None
        if not message.get("more_body", False):
            break
    return bytes(data)


def is_json_object(body: bytes) -> bool:
    """Whether ``body`` is a JSON object; bodies.TooDeep when it is one nested past the limit of every body."""
    if not body.lstrip(b" \t\r\n").startswith(b"{"):  # (an array, however deep, is simply not an object)
        return False
    try:
        return isinstance(bodies.decode(body, Any), dict)
    except msgspec.DecodeError:  # not JSON: not taken
        return False


# -- what every response tells the browser ---------------------------------------------------------------

#: On every HTTP response (the page, the API, /v1, errors included). No sniffing a JSON error into
#: a script or a page; no referrer (a URL may hold ?token=); never in a frame of any site
#: (clickjacking: the page starts runs on the operator's keys); a browsing context group of its
#: own; and readable only by the server's own pages, not as another site's <script> or <img>.
#: Not HSTS: the server speaks plain HTTP (a TLS proxy in front sets it).
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
)
#: The Content-Security-Policy of every response but the page: nothing in it may load or run, nothing may frame it.
API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
_PAGE_POLICY = re.compile(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)"')


def page_policy(page: Path) -> str:
    """The page's Content-Security-Policy as a header: its meta tag's (which names the script's hash,
    tools/page_csp.py) with ``frame-ancestors 'none'``, which a meta tag cannot carry."""
    match = _PAGE_POLICY.search(page.read_text(encoding="utf-8"))
    if match is None:
        raise ConfigError(f"{page}: the page has no Content-Security-Policy meta tag to serve as its header")
    return match.group(1).rstrip("; ") + "; frame-ancestors 'none'"


class SecurityHeaders:
    """Adds SECURITY_HEADERS and a Content-Security-Policy (``page_policy`` on HTML, API_POLICY on
    the rest) to every HTTP response, and ``Cache-Control: no-store`` where the response says nothing
    of caching and is not the page (session data stays out of caches). A header the response already
    has is left as it is."""

    def __init__(self, app: ASGIApp, page_policy: str) -> None:
        self.app = app
        self.page_policy = page_policy.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                html = any(name.lower() == b"content-type" and value.lower().startswith(b"text/html")
                           for name, value in headers)
                added = [*SECURITY_HEADERS, (b"content-security-policy", self.page_policy if html else
                                             API_POLICY.encode())]
                if not html:
                    added.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers + [(k, v) for k, v in added if k not in present]}
            await send(message)

        await self.app(scope, receive, with_headers)


# -- the last resort ---------------------------------------------------------------------------------


class ErrorBoundary:
    """An exception that reached no handler: logged with its traceback under an incident id, and
    answered with a JSON 500 (or, on an open WebSocket, a close with 1011) naming that id.

    It sits inside Starlette's own error middleware, so that one (which answers in plain text and
    re-raises into the server's log) never sees an exception.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        phase = "new"  # then "open" (a WebSocket accepted) or "done" (a response or close sent)

        async def tracked(message: MutableMapping[str, Any]) -> None:
            nonlocal phase
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start", "websocket.close"):
                phase = "done"
            elif kind == "websocket.accept":
                phase = "open"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            incident = secrets.token_hex(6)
            logger.exception("internal error %s answering %s %s", incident, scope.get("method", "WEBSOCKET"),
                             scope.get("path"))
            message = "internal error"
            detail = f"incident {incident}: the server's log holds what went wrong; report it with this id"
            try:
                if phase == "new" and scope["type"] == "http":
                    await send_http_error(send, 500, message, detail)
                elif phase in ("new", "open"):  # a close code is what a browser's WebSocket can see
                    if phase == "new":
                        await send({"type": "websocket.accept"})
                    await send({"type": "websocket.close", "code": WS_INTERNAL_ERROR,
                                "reason": _close_reason(f"internal error, incident {incident}")})
            except Exception:  # the client is gone, or the reply had begun: nothing more can be said
                logger.debug("could not report incident %s to the client", incident, exc_info=True)
