"""Running the app under uvicorn: in the foreground (`forge serve`) or in a thread (tests, embedding).

Sessions still running when the server stops are recorded as interrupted
(``SessionInterrupted``); they are resumed on request — ``POST .../deliberate`` or
``forge resume`` — not automatically on the next start, since a session driven step
by step must not start deliberating on its own.

Logging: uvicorn is given no logging config of its own (``log_config=None``), so it adds no
handlers and its records (``uvicorn.error``, ``uvicorn.access``) propagate to whatever the
application configured: ``forge serve`` logs them like the rest, from ``--log-level`` /
``FORGE_LOG_LEVEL`` on. ``log_level`` sets uvicorn's loggers' level explicitly instead.

Several coordinators on one log (``forge serve --resume-orphans``): each adopts, at start and
every ``orphan_scan`` seconds, the sessions a dead coordinator left deliberating
(``Forge.adopt_orphans``; the lease and the stream's optimistic concurrency keep it to one
driver). Such a server hands its sessions over when it stops, instead of recording them as
interrupted: it releases their leases, so that another coordinator adopts them at its next scan
(or this one at its next start).
"""

from __future__ import annotations

import errno
import logging
import socket
import threading

import uvicorn

from forge_actors.engine import ConfigError, Forge
from forge_actors.surfaces.server.access import AccessLog
from forge_actors.surfaces.server.app import MAX_BODY_BYTES, create_app
from forge_actors.surfaces.server.guards import check_token, is_loopback

__all__ = ["OrphanAdopter", "ServerThread", "check_bind", "check_token", "interrupt_running", "is_loopback", "listen",
           "serve"]

logger = logging.getLogger(__name__)


def check_bind(host: str, token: str | None) -> None:
    """ConfigError for a blank token, or for a bind beyond loopback without a token."""
    token = check_token(token)
    if not token and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without a token: anyone who reaches it could run deliberations on your "
            "API keys. Give --token (or set FORGE_API_TOKEN), or bind 127.0.0.1."
        )


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port`` (port 0: a free one), for ``serve``: a ConfigError saying
    what to do when the port is not a port, is taken, or the address is not this machine's."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a port: give one from 1 to 65535 (or 0 for any free one)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"cannot serve on {where}: {host} is not an address of this machine ({exc.strerror}): "
                          "give --host an address it has, e.g. 127.0.0.1") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait out TIME_WAIT
        sock.bind(address)
        sock.listen(2048)  # uvicorn's backlog; listening now claims the port before anything is said
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"cannot serve on {where}: the port is in use (another `forge serve`?): stop what "
                              f"listens there, or give another port, e.g. --port {port + 1 if port < 65535 else 8000}"
                              ) from None
        if exc.errno == errno.EACCES:
            raise ConfigError(f"cannot serve on {where}: permission denied (ports below 1024 need privileges): "
                              "give a port above 1023, e.g. --port 8000") from None
        raise ConfigError(f"cannot serve on {where}: {exc.strerror or exc}: give --host an address of this machine, "
                          "e.g. 127.0.0.1, and a free --port") from None
    return sock


def interrupt_running(forge: Forge) -> None:
    for session_id in forge.running_sessions():
        forge.interrupt(session_id, "the server stopped")


class OrphanAdopter:
    """A thread that adopts the log's orphaned sessions at start and every ``interval`` seconds."""

    def __init__(self, forge: Forge, interval: float) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval < float("inf"):
            raise ConfigError(f"the orphan scan interval is a number of seconds > 0, not {interval!r}")
        self.forge = forge
        self.interval = float(interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="forge-orphan-adopter", daemon=True)

    def start(self) -> OrphanAdopter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.forge.adopt_orphans()
            except Exception:  # e.g. the database is unreachable for a while: the next scan tries again
                logger.exception("could not scan %s for orphaned sessions", self.forge.path)
            self._stop.wait(self.interval)


def _config(forge: Forge, host: str, port: int, token: str | None, max_body: int,
            log_level: str | int | None = None) -> uvicorn.Config:
    check_bind(host, token)
    app = AccessLog(create_app(forge, token=token, max_body=max_body, host=host))
    # One process; the sans-I/O websockets protocol (the plain "websockets" one is deprecated).
    # No log_config: uvicorn's default one installs handlers of its own that bypass the application's.
    # No access_log: it prints query strings, which may hold ?token= (AccessLog logs each request instead).
    return uvicorn.Config(app, host=host, port=port, log_config=None, log_level=log_level,
                          ws="websockets-sansio", lifespan="off", access_log=False)


def serve(forge: Forge, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          max_body: int = MAX_BODY_BYTES, log_level: str | int | None = None,
          orphan_scan: float | None = None, sock: socket.socket | None = None) -> None:
    """Serve until interrupted (Ctrl-C), then record the sessions still running as interrupted.

    ``log_level`` (e.g. "info"): uvicorn's loggers' level; None: they follow the application's
    logging configuration (the root logger's level, as ``forge serve --log-level`` sets it).
    ``orphan_scan`` (seconds): adopt orphaned sessions at start and at that interval, and on
    stopping leave the sessions running here to the other coordinators (see the module docstring).
    ``sock``: a socket from ``listen(host, port)``, listening already (else uvicorn binds one).
    """
    server = uvicorn.Server(_config(forge, host, port, token, max_body, log_level))
    adopter = OrphanAdopter(forge, orphan_scan).start() if orphan_scan is not None else None
    try:
        server.run(sockets=[sock] if sock is not None else None)
    finally:
        if adopter is not None:
            adopter.stop()  # the caller's Forge.close() then releases the leases: the others adopt them
        else:
            interrupt_running(forge)


class ServerThread:
    """The server on an ephemeral port in a background thread; ``url`` once started."""

    def __init__(self, forge: Forge, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 max_body: int = MAX_BODY_BYTES, log_level: str | int | None = None) -> None:
        self.forge = forge
        self.server = uvicorn.Server(_config(forge, host, port, token, max_body, log_level))
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
        self._thread = threading.Thread(target=self.server.run, name="forge-server", daemon=True)
        self.url = ""

    def start(self, timeout: float = 10.0) -> ServerThread:
        self._thread.start()
        started = threading.Event()
        while not self.server.started:
            if not self._thread.is_alive() or started.wait(0.01) or timeout <= 0:
                break
            timeout -= 0.01
        if not self.server.started:
            raise RuntimeError("the server did not start")
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
        interrupt_running(self.forge)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
