"""Third-party OpenAI/Anthropic-compatible test servers, started by the tests or skipped.

Two servers from PyPI that nobody here wrote, each serving both routes, ``/v1/chat/completions``
and ``/v1/messages``:

- **mockllm** 0.0.8 answers every prompt with a canned reply from a YAML file; it streams OpenAI
  chunks properly, but its Anthropic "stream" is ``message_delta`` lines the Messages API never
  sends (so every stream there fails and the engine falls back to a plain request). It ignores
  ``tools`` and ``response_format``.
- **llm-katan** 0.22.0 with its echo backend (no model, no weights) echoes the last user message.
  Offered tools, it always calls the first with arguments made up from its schema: streamed as
  ``tool_use`` blocks on ``/v1/messages``, but as one whole JSON body on ``/v1/chat/completions``
  even when asked to stream — and there it calls one even when told not to (``tool_choice: none``), so
  a contribution that spent its tool budget has no answer. It honours ``response_format`` only of type ``json_object``; the
  Anthropic route's forced tool call (our structured replies) gets arguments from the schema.

They live in a virtual environment of their own, ``.venv/third-party`` (``make third-party-servers``,
pinned in tests/third_party_requirements.txt), not in the dev environment: llm-katan needs
``uvicorn[standard]``, whose uvloop and httptools uvicorn would then pick for our own server in every
other test. Installing needs the package index, so the tests never do it: without that environment
they skip saying how to make it, and fail instead under FORGE_REQUIRE_THIRD_PARTY=1 (.ci/run
installs them and sets it).

Offline: a server runs with every proxy variable pointing at a closed port on 127.0.0.1, so any
request it would make to the outside fails at once on this machine. mockllm counts tokens with
tiktoken, which downloads its BPE tables on first use; the model name the tests use
(``MODEL``) is one tiktoken cannot map, so it never tries (mockllm then counts words).

Each server runs in its own process group on 127.0.0.1 at an ephemeral port, and ``stop()`` (also
at interpreter exit) ends the group: SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import support

REQUIRE_ENV = "FORGE_REQUIRE_THIRD_PARTY"
INSTALL_HINT = "make third-party-servers"
VENV = Path(__file__).resolve().parents[1] / ".venv" / "third-party"
#: What the Makefile touches once pip installed everything (an interrupted install leaves none).
INSTALLED_STAMP = ".installed"
#: The model every participant asks for: unknown to tiktoken, so mockllm never downloads a table.
MODEL = "forge-test"
API_KEY = "third-party-test-key"  # llm-katan wants the key header present; neither checks its value
#: What mockllm answers to every prompt: a readable vote (drafts and critiques get it too).
CANNED_REPLY = "VOTE: AGREE\nReasons: this is mockllm's canned reply to every prompt."
#: Where every proxy variable of a server points: nothing listens there, so a request to the outside
#: fails at once instead of leaving the machine.
DEAD_PROXY = "http://127.0.0.1:9"
START_TIMEOUT_S = 60  # a bound on waiting for a loaded 2-core box, reached only by a broken server
STOP_TIMEOUT_S = 10
PORT_ATTEMPTS = 3  # a free port can be taken by someone else between our probe and the server's bind
ROUTE_PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


@dataclass(frozen=True)
class ServerKind:
    """One third-party server: how to start it and what it does with what the engine sends."""

    name: str
    routes: tuple[str, ...]  # the provider kinds it serves: "openai", "anthropic"
    ready_path: str  # a GET that answers 200 once it serves
    calls_tools: tuple[str, ...] = ()  # the routes on which it calls the tools it is offered
    structured: tuple[str, ...] = ()  # the routes on which it answers our structured requests in JSON
    #: The routes on which it calls a tool even when told not to (``tool_choice: none``): a contribution
    #: whose tool budget is spent then has no answer, and fails honestly (``empty_response``).
    ignores_tool_choice: tuple[str, ...] = ()

    def command(self, port: int, folder: Path) -> list[str]:
        python = str(VENV / "bin" / "python")
        if self.name == "mockllm":
            # uvicorn directly: mockllm's own `start` command turns on --reload (a watcher process).
            return [python, "-m", "uvicorn", "mockllm.server:app", "--host", "127.0.0.1", "--port", str(port)]
        return [python, "-m", "llm_katan.cli", "--model", MODEL, "--backend", "echo",
                "--providers", "openai,anthropic", "--host", "127.0.0.1", "--port", str(port),
                "--stats-file", str(folder / "stats.json"), "--disable-dashboard"]

    def prepare(self, folder: Path) -> dict[str, str]:
        """Files the server reads from ``folder``; the environment variables naming them."""
        if self.name != "mockllm":
            return {}
        responses = folder / "responses.yml"
        responses.write_text(f"responses: {{}}\ndefaults:\n  unknown_response: {CANNED_REPLY!r}\n")
        return {"MOCKLLM_RESPONSES_FILE": str(responses)}


MOCKLLM = ServerKind("mockllm", ("openai", "anthropic"), "/models")
LLM_KATAN = ServerKind("llm-katan", ("openai", "anthropic"), "/health",
                       calls_tools=("openai", "anthropic"), structured=("anthropic",), ignores_tool_choice=("openai",))
KINDS = {kind.name: kind for kind in (MOCKLLM, LLM_KATAN)}


class ThirdPartyServerError(RuntimeError):
    """A server did not start (the message carries the tail of its output)."""


def missing_requirement() -> str | None:
    """Why the servers cannot run here (with how to fix it), or None."""
    if not (VENV / INSTALLED_STAMP).exists():
        return (f"the third-party test servers (mockllm, llm-katan) are not installed in {VENV}: "
                f"run `{INSTALL_HINT}` (it needs the package index)")
    return None


def unavailable(reason: str) -> None:
    """Skip the test, or fail it when REQUIRE_ENV says it must run here."""
    support.unavailable(reason, REQUIRE_ENV)


def skip_unless_available() -> None:
    reason = missing_requirement()
    if reason is not None:
        unavailable(reason)


def free_port() -> int:
    """An ephemeral TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def offline_environment(folder: Path) -> dict[str, str]:
    """The environment a server runs in: ours, less keys and proxies, with every proxy dead and HOME
    in ``folder`` (so that nothing is written outside it)."""
    environment = {name: value for name, value in os.environ.items()
                   if not name.lower().endswith("_proxy") and not name.endswith("_API_KEY")}
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        environment[name] = environment[name.upper()] = DEAD_PROXY
    environment["no_proxy"] = environment["NO_PROXY"] = ""
    environment.update(HOME=str(folder), TIKTOKEN_CACHE_DIR=str(folder / "tiktoken"), PYTHONUNBUFFERED="1")
    return environment


class ThirdPartyServer:
    """One server of ``kind`` in its own process group, its output in ``folder``/server.log."""

    def __init__(self, kind: ServerKind, folder: Path) -> None:
        self.kind = kind
        self.folder = folder
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._group: int | None = None

    def __enter__(self) -> ThirdPartyServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def log_path(self) -> Path:
        return self.folder / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def process_group(self) -> int:
        """The server's process group (start_new_session: it leads one of its own), kept after stop()."""
        assert self._group is not None, "the server was not started"
        return self._group

    def spec(self, route: str, **options: str) -> str:
        """A participant spec for ``route`` ("openai" or "anthropic") on this server."""
        base_url = f"{self.url}/v1" if route == "openai" else self.url
        query = "&".join(f"{name}={value}" for name, value in
                         {"base_url": base_url, "api_key": API_KEY, **options}.items())
        return f"{route}:{MODEL}?{query}"

    def requests(self, route: str) -> int:
        """POSTs to ``route``'s path this server has answered so far (its access log, one line each)."""
        line = f'"POST {ROUTE_PATHS[route]} HTTP/1.1"'
        return sum(1 for text in self.log_path.read_text(errors="replace").splitlines() if line in text)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def start(self) -> ThirdPartyServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        environment = {**offline_environment(self.folder), **self.kind.prepare(self.folder)}
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.port = free_port()
            with self.log_path.open("wb") as log:
                self._process = subprocess.Popen(
                    self.kind.command(self.port, self.folder), cwd=self.folder, env=environment,
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            self._group = self._process.pid
            atexit.register(self.stop)  # a test run that dies on an exception still stops its server
            if self._wait_until_ready():
                return self
            self.stop()
            if "address already in use" not in self.log_tail().lower() or attempt == PORT_ATTEMPTS:
                break
        raise ThirdPartyServerError(f"{self.kind.name} did not start on 127.0.0.1:{self.port}; "
                                    f"its output:\n{self.log_tail()}")

    def _wait_until_ready(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(timeout=2, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    return False
                try:
                    if client.get(self.url + self.kind.ready_path).status_code == 200:
                        return True
                except httpx.TransportError:
                    pass  # not listening yet: poll again
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        """End the server's process group: SIGTERM, then SIGKILL if it is still there after STOP_TIMEOUT_S."""
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass  # it had exited (a failed start): only reaping is left
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:  # not reaped yet, so the group is still its own
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Servers:
    """The third-party servers of a test module: each started the first time a test asks for it,
    all stopped when the module is done."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._started: dict[str, ThirdPartyServer] = {}

    def __enter__(self) -> Servers:
        skip_unless_available()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for server in self._started.values():
            server.stop()

    def get(self, name: str) -> ThirdPartyServer:
        if name not in self._started:
            self._started[name] = ThirdPartyServer(KINDS[name], self.folder / name).start()
        return self._started[name]
