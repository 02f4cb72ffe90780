"""uvicorn's records go through the application's logging: `forge serve --log-level` governs them.

The library installs no handler: uvicorn is given no logging config of its own, so its loggers
propagate to the root logger that the `forge` command (or an embedding application) configures.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from forge_actors.engine import Forge
from forge_actors.surfaces.server.runner import ServerThread

FORGE = str(Path(sys.executable).with_name("forge"))
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "FORGE_DB", "FORGE_CONFIG", "FORGE_LOG_LEVEL")}
    return {**env, **extra}


@pytest.fixture
def forge(tmp_path):
    with Forge(str(tmp_path / "forge.db")) as engine:
        yield engine


def test_uvicorn_records_reach_the_applications_handlers_at_its_level(forge, caplog):
    caplog.set_level(logging.INFO)
    with ServerThread(forge) as server:
        assert httpx.get(server.url + "/api/v1/forge/sessions").status_code == 200
    by_uvicorn = [r for r in caplog.records if r.name.startswith("uvicorn")]
    assert any(r.name == "uvicorn.error" and r.levelno == logging.INFO for r in by_uvicorn), by_uvicorn
    # Each request is logged once, by the server's own access log (uvicorn's prints query strings: tokens).
    requests = [r.getMessage() for r in caplog.records if r.name == "forge_actors.surfaces.server.access"]
    assert len(requests) == 1 and re.fullmatch(r"GET /api/v1/forge/sessions 200 \d+\.\d ms", requests[0]), requests
    assert not any(r.name == "uvicorn.access" for r in by_uvicorn)
    for name in UVICORN_LOGGERS:  # no handler of uvicorn's own: nothing bypasses the application's
        assert logging.getLogger(name).handlers == [], name
    assert logging.getLogger("uvicorn.error").propagate  # (uvicorn.access, turned off, says nothing)


def test_at_warning_uvicorn_says_nothing_of_a_normal_run(forge, caplog):
    caplog.set_level(logging.WARNING)
    with ServerThread(forge) as server:
        assert httpx.get(server.url + "/api/v1/forge/sessions").status_code == 200
    assert [r for r in caplog.records if r.name.startswith("uvicorn")] == []


def test_an_explicit_log_level_sets_uvicorns_loggers(forge):
    before = {name: logging.getLogger(name).level for name in UVICORN_LOGGERS}
    try:
        ServerThread(forge, log_level="error")
        assert logging.getLogger("uvicorn.error").level == logging.ERROR
        assert logging.getLogger("uvicorn.access").level == logging.ERROR
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)


def _serve(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.Popen:
    server = subprocess.Popen([FORGE, "serve", *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(60, server.kill)  # a hung server fails the test instead of hanging it
    watchdog.daemon = True
    watchdog.start()
    return server


@pytest.mark.parametrize("how", ["flag", "env"])
def test_forge_serve_log_level_info_logs_uvicorn_in_the_commands_format(tmp_path, how):
    args, env = (["--log-level", "INFO"], _env()) if how == "flag" else ([], _env(FORGE_LOG_LEVEL="info"))
    server = _serve(tmp_path, "--port", "0", *args, env=env)
    assert server.stderr is not None
    url = None
    for line in server.stderr:  # forge says where it listens (the port is bound first); port 0 took a free one
        found = re.search(r"serving forge\.db on (http://127\.0\.0\.1:\d+)/", line)
        if found:
            url = found.group(1)
            break
    assert url, "the serving line never came"
    assert httpx.get(url + "/api/v1/forge/sessions").status_code == 200
    server.send_signal(signal.SIGINT)
    _, rest = server.communicate(timeout=30)
    assert "INFO uvicorn.error: Started server process" in rest
    assert re.search(r"INFO forge_actors\.surfaces\.server\.access: GET /api/v1/forge/sessions 200 ", rest), rest


def test_forge_serve_at_the_default_level_keeps_uvicorn_quiet(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = _serve(tmp_path, "--port", str(port), env=_env())
    url = f"http://127.0.0.1:{port}/api/v1/forge/sessions"
    for _ in range(600):
        try:
            if httpx.get(url).status_code == 200:
                break
        except httpx.TransportError:
            threading.Event().wait(0.05)
    else:
        server.kill()
        pytest.fail("the server never answered")
    server.send_signal(signal.SIGINT)
    _, stderr = server.communicate(timeout=30)
    assert "uvicorn" not in stderr, stderr
    # ...but each request is a line (forge serve logs them at info level unless told otherwise)
    assert re.search(r"INFO forge_actors\.surfaces\.server\.access: GET /api/v1/forge/sessions 200 \d+\.\d ms",
                     stderr), stderr


def test_each_request_is_one_line_without_its_query_string(forge, caplog):
    """The event streams take the token as ?token=: the request log never prints a query string, and
    escapes what a client puts in a path."""
    caplog.set_level(logging.INFO, logger="forge_actors.surfaces.server.access")
    with ServerThread(forge, token="s3cret-token") as server:
        authorized = {"authorization": "Bearer s3cret-token"}
        assert httpx.get(server.url + "/api/v1/forge/sessions", headers=authorized).status_code == 200
        assert httpx.get(server.url + "/api/v1/forge/sessions/nope/events?token=s3cret-token").status_code == 404
        assert httpx.get(server.url + "/api/v1/forge/sessions?token=wrong").status_code == 401
        httpx.get(server.url + "/api/v1/forge/sessions/%0Aforged%20line")
    lines = [r.getMessage() for r in caplog.records if r.name == "forge_actors.surfaces.server.access"]
    assert [line.rsplit(" ", 2)[0] for line in lines] == [
        "GET /api/v1/forge/sessions 200", "GET /api/v1/forge/sessions/nope/events 404",
        "GET /api/v1/forge/sessions 401", "GET /api/v1/forge/sessions/\\nforged line 401"]
    assert not any("s3cret" in line or "token" in line or "\n" in line for line in lines)
