"""A throwaway PostgreSQL server for the tests and benchmarks of the PostgreSQL event-log backend.

One server in a fresh temporary directory: ``initdb`` (trust auth, superuser ``postgres``, UTF8), started
by ``pg_ctl -w`` on 127.0.0.1 at a free ephemeral port (its unix socket in the same directory), stopped
and removed by ``stop()``, by ``__exit__`` and, as a last resort, at interpreter exit. Nothing is left
running and nothing outside the temporary directory is touched.

initdb and postgres refuse to run as root; the tests and CI run as root, so then the directory is
given to the ``postgres`` system user (the Debian package creates it) and the server programs run
as that user via ``runuser``.

As a module (tests/conftest.py and benchmarks/ put tools/ on sys.path)::

    with ThrowawayPostgres(fsync=False) as server:     # tests: fast; benchmarks: the durable defaults
        url = server.create_database()                 # a new, empty database of its own

As a script: ``python tools/throwaway_postgres.py`` starts one, prints its URL, waits for Ctrl-C.
"""

from __future__ import annotations

import argparse
import atexit
import itertools
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)

INSTALL_HINT = "apt-get install -y postgresql"
DEBIAN_BIN_DIRS = "/usr/lib/postgresql/*/bin"
SERVER_USER = "postgres"  # the system user the server runs as when we are root (Debian's package creates it)
START_TIMEOUT_S = 60
PORT_ATTEMPTS = 3  # a free port can be taken by someone else between our probe and the server's bind

_LOG_TAIL_LINES = 30


class PostgresNotInstalled(RuntimeError):
    """initdb/pg_ctl were not found (PATH, then /usr/lib/postgresql/*/bin)."""


class PostgresStartError(RuntimeError):
    """initdb or the server failed; the message carries the command's output or the server log's tail."""


def find_binaries() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: PATH first, then Debian's versioned
    /usr/lib/postgresql/N/bin, newest version first. None when PostgreSQL is not installed."""
    on_path = shutil.which("initdb")
    if on_path is not None:
        folder = Path(on_path).resolve().parent
        if _has_server_programs(folder):
            return folder
    for folder in sorted(Path("/").glob(DEBIAN_BIN_DIRS.lstrip("/")), key=_version_key, reverse=True):
        if _has_server_programs(folder):
            return folder
    return None


def _has_server_programs(folder: Path) -> bool:
    return all(os.access(folder / name, os.X_OK) for name in ("initdb", "pg_ctl"))


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    """/usr/lib/postgresql/15/bin -> (15,); numeric, so that 10 sorts after 9."""
    return tuple(int(part) for part in re.findall(r"\d+", bin_dir.parent.name)) or (0,)


def free_port() -> int:
    """An ephemeral TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ThrowawayPostgres:
    """A PostgreSQL server of its own in a temporary directory, removed with everything in it on stop().

    ``fsync`` and ``synchronous_commit`` are PostgreSQL's settings: keep the defaults (True, durable)
    for benchmarks, turn both off for tests (a crash loses the throwaway data, which nobody wants back).
    ``settings`` adds or overrides postgresql.conf lines (name -> value). ``parent`` is where the
    temporary directory is made (default: the system's temp dir); tests pass memory_parent(), since
    on a busy disk creating a database costs ten times more than in memory.
    """

    def __init__(
        self,
        *,
        fsync: bool = True,
        synchronous_commit: bool = True,
        max_connections: int = 200,
        settings: Mapping[str, str] | None = None,
        bin_dir: Path | None = None,
        parent: str | Path | None = None,
    ) -> None:
        self._settings: dict[str, str] = {
            "fsync": _on_off(fsync),
            "synchronous_commit": _on_off(synchronous_commit),
            "max_connections": str(max_connections),
            **(settings or {}),
        }
        self._bin_dir = bin_dir
        self._parent = parent
        self._base: Path | None = None
        self._port: int | None = None
        self._admin: Any = None  # a psycopg.Connection to the maintenance database, opened on first use
        self._lock = threading.Lock()
        self._names = itertools.count(1)
        self._watchdog: subprocess.Popen[bytes] | None = None

    # ----- lifecycle -----

    def __enter__(self) -> ThrowawayPostgres:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> ThrowawayPostgres:
        """initdb a fresh directory and start the server on a free port; returns self once it accepts connections."""
        if self._base is not None:
            raise RuntimeError("this ThrowawayPostgres is already started")
        bin_dir = self._bin_dir or find_binaries()
        if bin_dir is None:
            raise PostgresNotInstalled(f"PostgreSQL's initdb/pg_ctl were not found; install them: {INSTALL_HINT}")
        self._bin_dir = bin_dir
        self._base = Path(tempfile.mkdtemp(prefix="forge-pg-", dir=self._parent or _temp_parent()))
        atexit.register(self.stop)  # a test run that dies on an exception still stops its server
        try:
            if _is_root():
                _give_to_server_user(self._base)
            self._initdb()
            self._write_settings()
            self._start_server()
            self._watchdog = _start_watchdog(self._base, bin_dir)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are cut) and remove its directory. Idempotent."""
        base, self._base = self._base, None
        atexit.unregister(self.stop)
        if base is None:
            return
        self._close_admin()
        _end_watchdog(self._watchdog)
        self._watchdog = None
        if (self._data_dir(base) / "postmaster.pid").exists():
            self._stop_server(base)
        shutil.rmtree(base, ignore_errors=True)
        if base.exists():
            logger.warning("could not remove the throwaway PostgreSQL directory %s", base)
        self._port = None

    # ----- what the callers use -----

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server is not running: call start() or use it as a context manager")
        return self._port

    @property
    def url(self) -> str:
        """The maintenance database ``postgres``; prefer create_database() for a database of your own."""
        return self.database_url("postgres")

    @property
    def directory(self) -> Path:
        """The temporary directory: data/ (the cluster), the unix socket, server.log."""
        if self._base is None:
            raise RuntimeError("the server is not running")
        return self._base

    @property
    def socket_dir(self) -> Path:
        return self.directory

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{urllib.parse.quote(name, safe='')}"

    @staticmethod
    def database_name(url: str) -> str:
        """The database a URL of database_url() / create_database() names (the inverse of database_url)."""
        return urllib.parse.unquote(urllib.parse.urlsplit(url).path.lstrip("/"))

    def create_database(self, name: str | None = None) -> str:
        """Create a new, empty database (a unique name when None) and return its URL."""
        from psycopg import sql

        name = name or f"forge_{next(self._names)}_{os.getpid()}"
        # template0: pristine, nothing anyone added to template1 leaks in. The default strategy (WAL_LOG)
        # on purpose: STRATEGY FILE_COPY measured a few ms faster on an idle server, but it checkpoints
        # twice per database, and a checkpoint costs more the more the tests have written (issue 17).
        statement = sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(name))
        self._admin_execute(statement)
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, ending the sessions still connected to it."""
        from psycopg import sql

        self._admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    # ----- the server programs -----

    def _data_dir(self, base: Path) -> Path:
        return base / "data"

    def _initdb(self) -> None:
        base = self.directory
        self._run([str(self._program("initdb")), "-D", str(self._data_dir(base)), "-A", "trust", "-U", "postgres",
                   "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"], what="initdb")

    def _write_settings(self) -> None:
        base = self.directory
        lines = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": _quote(str(base)),
            **{name: _quote_if_needed(value) for name, value in self._settings.items()},
        }
        # Appended: a later line wins in postgresql.conf, and the file keeps its owner (the server user).
        with (self._data_dir(base) / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# forge_actors throwaway server\n")
            conf.writelines(f"{name} = {value}\n" for name, value in lines.items())

    def _start_server(self) -> None:
        base = self.directory
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_port()
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0  # pg_ctl -l appends
            started = time.monotonic()
            result = self._pg_ctl(base, "start", "-w", "-t", str(START_TIMEOUT_S), "-l", str(self.log_path),
                                  "-o", f"-p {port}")
            if result.returncode == 0:
                self._port = port
                logger.info("throwaway PostgreSQL on port %d started in %.2f s (%s)", port,
                            time.monotonic() - started, base)
                return
            tail = _tail(self.log_path, log_start)
            if "could not bind" in tail and attempt < PORT_ATTEMPTS:
                logger.info("port %d was taken before the server bound it; trying another", port)
                continue
            raise PostgresStartError(f"PostgreSQL did not start (pg_ctl exit {result.returncode}): "
                                     f"{result.stdout.strip()}\n--- {self.log_path} (last lines) ---\n{tail}")

    def _stop_server(self, base: Path) -> None:
        result = self._pg_ctl(base, "stop", "-m", "fast", "-w", "-t", "30")
        if result.returncode == 0:
            return
        logger.warning("pg_ctl stop failed (exit %d): %s; killing the server", result.returncode,
                       result.stdout.strip())
        _kill_postmaster(self._data_dir(base))

    def _pg_ctl(self, base: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
        command = [str(self._program("pg_ctl")), "-D", str(self._data_dir(base)), *arguments]
        # The server started by pg_ctl inherits its stdout: a pipe would stay open as long as the
        # server runs, and reading it to the end would wait for the server's exit. A file does not.
        with tempfile.TemporaryFile("w+", encoding="utf-8") as output:
            code = subprocess.run(_as_server_user(command), stdin=subprocess.DEVNULL, stdout=output,
                                  stderr=subprocess.STDOUT, check=False, timeout=START_TIMEOUT_S + 30,
                                  start_new_session=True).returncode  # Ctrl-C in a terminal goes to us, not it
            output.seek(0)
            return subprocess.CompletedProcess(command, code, output.read(), None)

    def _run(self, command: Sequence[str], *, what: str) -> None:
        result = subprocess.run(_as_server_user(list(command)), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, check=False, timeout=START_TIMEOUT_S)
        if result.returncode != 0:
            raise PostgresStartError(f"{what} failed (exit {result.returncode}):\n{result.stdout.strip()}")

    def _program(self, name: str) -> Path:
        assert self._bin_dir is not None
        return self._bin_dir / name

    # ----- the maintenance connection -----

    def _admin_execute(self, statement: Any) -> None:
        """One statement on the maintenance connection (one at a time: fixtures may run in threads);
        reconnects once when the connection was ended under us (a test's pg_terminate_backend, say)."""
        import psycopg

        with self._lock:
            try:
                self._admin_connection().execute(statement)
            except psycopg.OperationalError:
                if self._admin is not None and not self._admin.closed:
                    raise  # the connection is fine: the statement itself failed
                logger.info("the maintenance connection was closed; reconnecting", exc_info=True)
                self._admin_connection().execute(statement)

    def _admin_connection(self) -> Any:
        if self._admin is None or self._admin.closed:
            import psycopg

            self._admin = psycopg.connect(self.url, autocommit=True)
        return self._admin

    def _close_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            try:
                admin.close()
            except Exception:  # closing a connection to a server about to be stopped: nothing to keep
                logger.debug("closing the maintenance connection failed", exc_info=True)


def _on_off(flag: bool) -> str:
    return "on" if flag else "off"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _quote_if_needed(value: str) -> str:
    return value if re.fullmatch(r"[A-Za-z0-9_.\-]+|'.*'", value) else _quote(value)


def _is_root() -> bool:
    return os.geteuid() == 0


def _server_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PostgresNotInstalled(
            f"running as root, PostgreSQL must run as the '{SERVER_USER}' system user, which does not exist: "
            f"{INSTALL_HINT} creates it (or run the tests as an ordinary user)") from None


def _as_server_user(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: then run them as the postgres system user."""
    if not _is_root():
        return command
    return ["runuser", "-u", SERVER_USER, "--", *command]


def _give_to_server_user(base: Path) -> None:
    user = _server_user()
    os.chown(base, user.pw_uid, user.pw_gid)


def _temp_parent() -> str:
    """Where the temporary directory goes. As root it must be reachable by the server user: the
    default temp dir unless one of its parents is closed to others (a TMPDIR under /root), else /tmp."""
    parent = Path(tempfile.gettempdir()).resolve()
    if not _is_root():
        return str(parent)
    if all(folder.stat().st_mode & 0o001 for folder in (parent, *parent.parents)):
        return str(parent)
    return "/tmp"


def memory_parent(min_free_bytes: int = 1 << 30) -> str | None:
    """/dev/shm when it is a memory file system with room to spare (at least ``min_free_bytes`` free:
    containers often give it only 64 MB), else None (the default temp dir). Only for throwaway data:
    what is there is gone with the machine's memory."""
    shm = Path("/dev/shm")
    try:
        stats = os.statvfs(shm)
    except OSError:  # no /dev/shm (not Linux): the default temp dir will do
        return None
    writable = os.access(shm, os.W_OK | os.X_OK) and shm.stat().st_mode & 0o001
    return str(shm) if writable and stats.f_bavail * stats.f_frsize >= min_free_bytes else None


def _tail(path: Path, start: int = 0, lines: int = _LOG_TAIL_LINES) -> str:
    """The last lines of the log written since byte ``start`` (this attempt's, not an earlier one's)."""
    try:
        with path.open("rb") as log:
            log.seek(start)
            text = log.read().decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])
    except OSError as error:
        return f"(no server log: {error})"


def _kill_postmaster(data_dir: Path) -> None:
    """The last resort when pg_ctl stop failed: SIGKILL the postmaster (its children exit when it is gone)."""
    pid = _postmaster_pid(data_dir)
    if pid is not None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # it exited meanwhile: what we wanted
            pass


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        first_line = (data_dir / "postmaster.pid").read_text().splitlines()[0]
        return int(first_line)
    except (OSError, IndexError, ValueError):  # no (complete) pid file: no server left to kill
        return None


def _start_watchdog(base: Path, bin_dir: Path) -> subprocess.Popen[bytes]:
    """A process that stops the server and removes its directory if we die without doing it (SIGKILL,
    a CI timeout's SIGTERM: atexit does not run then). It waits for the end of a pipe only we hold
    the write end of; its own session, so that a Ctrl-C meant for us does not end it first."""
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--watchdog", str(base),
                             "--bin-dir", str(bin_dir)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            start_new_session=True)


def _end_watchdog(watchdog: subprocess.Popen[bytes] | None) -> None:
    """Dismiss the watchdog before a normal stop: we clean up ourselves."""
    if watchdog is None:
        return
    watchdog.kill()
    watchdog.wait()
    if watchdog.stdin is not None:
        watchdog.stdin.close()


def _watch(base: Path, bin_dir: Path) -> int:
    """The watchdog's body: block until our parent is gone (EOF on stdin), then clean up after it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while sys.stdin.buffer.read(4096):
        pass
    data_dir = base / "data"
    if (data_dir / "postmaster.pid").exists():
        command = [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "stop", "-m", "immediate", "-w", "-t", "30"]
        if subprocess.run(_as_server_user(command), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, check=False).returncode != 0:
            _kill_postmaster(data_dir)
    shutil.rmtree(base, ignore_errors=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start a throwaway PostgreSQL server, print its URL, "
                                                 "remove it on Ctrl-C.")
    parser.add_argument("--fast", action="store_true",
                        help="as the tests run it: fsync=off, synchronous_commit=off, data in /dev/shm when it has "
                             "room; default: durable, on disk (as the benchmarks run it)")
    parser.add_argument("--database", help="also create this database and print its URL")
    parser.add_argument("--watchdog", type=Path, help=argparse.SUPPRESS)  # _start_watchdog's child
    parser.add_argument("--bin-dir", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.watchdog is not None:
        return _watch(options.watchdog, options.bin_dir)
    if find_binaries() is None:
        print(f"PostgreSQL is not installed: {INSTALL_HINT}", file=sys.stderr)
        return 2
    durable = not options.fast
    with ThrowawayPostgres(fsync=durable, synchronous_commit=durable,
                           parent=None if durable else memory_parent()) as server:
        print(server.create_database(options.database) if options.database else server.url, flush=True)
        print(f"(data and socket in {server.directory}; Ctrl-C stops and removes it)", file=sys.stderr, flush=True)
        try:
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # kill: stop the server as Ctrl-C does
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:  # Ctrl-C is how this is meant to end: stop the server, quietly
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
