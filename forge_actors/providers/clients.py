"""The HTTP clients providers send through: cheap to make, shared per server, their sockets known.

**Cheap to make.** Most of what ``httpx.Client()`` costs (about 27 ms) is loading the CA
bundle into a new SSL context. Every client here uses one context per process, made the
way httpx makes its default (certifi, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``), once.

**Shared.** An engine's providers take their client from its ``HttpClients``: one client,
hence one connection pool, per server (scheme, host, port), whichever provider or
participant sends to it. A client holds nothing of any one provider: keys and other
headers, and timeouts, go with each request; the client keeps no cookies (a server's
cookie must not travel with another participant's requests). ``HttpClients.close()``
closes them all; a provider's ``close()`` never closes a shared client.

**Sockets known, for abort.** httpx has no public option for a network backend, so
``track_sockets`` fits the client's connection pools with one that records every stream
connected, or written a request to, in the *call* that the sending thread works for
(``sending_for``, a context variable: each worker thread sets its own). Several providers
in several threads can thus share a client and still shut down only their own sockets.
"""

from __future__ import annotations

import contextvars
import http.cookiejar
import logging
import socket
import ssl
import threading
from collections.abc import Iterable
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpcore
import httpx

logger = logging.getLogger(__name__)

#: Connections a shared client keeps open between requests. Its number of connections is not
#: capped: each stream in progress needs its own (HTTP/1.1), and a cap would make the
#: participants of many sessions wait for one another (httpx's default is 100).
KEEPALIVE_CONNECTIONS = 64


class Tracker(Protocol):
    """What a call offers the network backend: remember a stream; False when already aborted."""

    def track(self, stream: Any) -> bool: ...


#: The call a thread sends for (set by the worker thread that runs ``client.send``).
sending_for: contextvars.ContextVar[Tracker | None] = contextvars.ContextVar("forge_http_call", default=None)


def shutdown(stream: Any, call: Tracker | None = None) -> None:
    """Shut a network stream's socket down: a ``recv`` blocked on it, in any thread, returns at once.
    With ``call``: only while that call is the stream's owner (the last to send on it)."""
    if call is not None and getattr(stream, "owner", call) is not call:
        return  # back in the pool and taken by another call since: not ours to shut
    try:
        sock = stream.get_extra_info("socket")
    except Exception:  # a stream that cannot say: nothing to shut down
        logger.debug("no socket to shut down on %r", stream, exc_info=True)
        return
    if isinstance(sock, socket.socket):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed or never connected: nothing left to wake
            logger.debug("socket already shut", exc_info=True)


class _TrackedStream(httpcore.NetworkStream):
    """A network stream that enrols in the sending thread's call whenever a request is written to it.

    Writing is where a request starts (on a new or a pooled connection), and it is rare
    (headers, body); reads, the hot path, are passed straight through. ``owner`` is the
    call that wrote to it last: a pooled connection passes from one provider's call to
    another's, and an abort of the first must not shut down the second's stream.
    """

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner
        self.owner: Tracker | None = None

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        call = sending_for.get()
        if call is not None:
            if not call.track(self):
                raise httpcore.WriteError("the request was aborted")
            self.owner = call
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _enrol(_TrackedStream(self._inner.start_tls(ssl_context, server_hostname, timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def _enrol(stream: _TrackedStream) -> _TrackedStream:
    """Record a freshly connected stream in the sending thread's call; close it if that call was aborted meanwhile."""
    call = sending_for.get()
    if call is not None:
        if not call.track(stream):
            stream.close()
            raise httpcore.ConnectError("the request was aborted while connecting")
        stream.owner = call
    return stream


class TrackingBackend(httpcore.NetworkBackend):
    """httpcore's network backend, with every connected stream recorded for abort."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return _enrol(_TrackedStream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options)))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return _enrol(_TrackedStream(self._inner.connect_unix_socket(path, timeout, socket_options)))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def track_sockets(client: httpx.Client) -> int:
    """Give the client's connection pools (the direct one and any proxy's) the tracking backend.

    A transport of another shape is left alone (abort then still returns at once, but an
    abandoned worker lasts until its own timeout). Returns how many pools it fitted.
    """
    fitted = 0
    transports = [getattr(client, "_transport", None), *getattr(client, "_mounts", {}).values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None) if isinstance(transport, httpx.HTTPTransport) else None
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.NetworkBackend) and not isinstance(backend, TrackingBackend):
            pool._network_backend = TrackingBackend(backend)  # type: ignore[union-attr]
            fitted += 1
    return fitted


_ssl_lock = threading.Lock()
_ssl_context: ssl.SSLContext | None = None


def ssl_context() -> ssl.SSLContext:
    """The process's one verifying SSL context, as httpx makes its default (loading the CAs costs ~25 ms)."""
    global _ssl_context
    with _ssl_lock:
        if _ssl_context is None:
            _ssl_context = httpx.create_ssl_context()
        return _ssl_context


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


def new_client(transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """A client for providers: the shared SSL context, no cookies, connections as many as streams,
    its sockets tracked. No headers and no timeouts: each request brings its own."""
    client = httpx.Client(
        verify=ssl_context(),
        cookies=http.cookiejar.CookieJar(policy=_NoCookies()),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=KEEPALIVE_CONNECTIONS),
        transport=transport,
    )
    track_sockets(client)
    return client


def server_of(base_url: str) -> str:
    """The server a base URL names, as clients are shared by: ``scheme://host:port`` (no user, no path)."""
    parts = urlsplit(base_url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme.lower())
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{port}"


class HttpClients:
    """One engine's HTTP clients, one per server, made at the first request to it. Thread-safe."""

    def __init__(self) -> None:
        self._clients: dict[str, httpx.Client] = {}
        self._lock = threading.Lock()
        self._closed = False

    def client_for(self, base_url: str) -> httpx.Client:
        """The client every provider sending to ``base_url``'s server shares."""
        server = server_of(base_url)
        with self._lock:
            if self._closed:
                raise RuntimeError("these HTTP clients are closed (their engine was closed)")
            client = self._clients.get(server)
            if client is None:
                client = self._clients[server] = new_client()
            return client

    def __len__(self) -> int:
        with self._lock:
            return len(self._clients)

    def close(self) -> None:
        """Close every client (their pooled connections with them). Idempotent."""
        with self._lock:
            self._closed = True
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def __repr__(self) -> str:
        return f"<HttpClients for {len(self)} server(s)>"
