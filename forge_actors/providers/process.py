"""What the command-line providers share: starting a tool safely, reading it, stopping it for good.

A tool is started from an argv list — never through a shell, so nothing in a prompt
can become a command — in a process group of its own, so that a timeout or an abort
stops it together with whatever it started.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence

from forge_actors.providers.base import LlmRequest, LlmResponse, StreamChunk, collect
from forge_actors.providers.errors import ProcessFailedError
from forge_actors.providers.structured import StructuredOutput

#: How long a stopped tool gets between SIGTERM and SIGKILL.
TERM_GRACE_SECONDS = 1.0


def resolve_command(argv: Sequence[str], provider: str, env: Mapping[str, str] | None = None) -> list[str]:
    """``argv`` with its program found on PATH; ProcessFailedError naming the PATH searched if not."""
    if not argv:
        raise ProcessFailedError("no command configured", provider=provider)
    path = (env or os.environ).get("PATH", os.defpath)
    found = shutil.which(argv[0], path=path)
    if found is None:
        raise ProcessFailedError(f"command {argv[0]!r} not found (searched PATH: {path}); install it or fix the "
                                 "command in forge.toml", provider=provider)
    return [found, *argv[1:]]


def start(argv: Sequence[str], *, stdin: bool, env: Mapping[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        start_new_session=True,  # its own process group: killpg stops everything it started
    )


def stop_group(process: subprocess.Popen, grace: float = TERM_GRACE_SECONDS) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``grace`` seconds; reap it."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):  # the group is gone already (reaped, or recycled)
            break
        try:
            process.wait(wait)
            break
        except subprocess.TimeoutExpired:  # still running after the grace: next, the harder signal
            continue
    try:
        os.killpg(process.pid, signal.SIGKILL)  # stragglers the leader left behind
    except (ProcessLookupError, PermissionError):  # none left: the usual case
        pass
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:  # a pipe the dead process broke: closing it is all we wanted
                pass
    try:
        process.wait(1.0)
    except subprocess.TimeoutExpired:  # unkillable (e.g. stuck in the kernel): the OS reaps it later
        pass


class StderrTail:
    """Drains a process's stderr in a thread (so it never blocks on a full pipe); keeps the tail."""

    def __init__(self, process: subprocess.Popen, lines: int = 20) -> None:
        self._lines: deque[str] = deque(maxlen=lines)
        self._thread = threading.Thread(target=self._drain, args=(process,), daemon=True)
        self._thread.start()

    def _drain(self, process: subprocess.Popen) -> None:
        assert process.stderr is not None
        for raw in iter(process.stderr.readline, b""):
            self._lines.append(raw.decode("utf-8", "replace").rstrip())

    def text(self) -> str:
        self._thread.join(0.5)
        return "\n".join(line for line in self._lines if line)


class OutputReader:
    """Reads a pipe as it is written, with a deadline and a way to give up from another thread."""

    def __init__(self, pipe: int) -> None:
        self._fd = pipe
        os.set_blocking(pipe, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(pipe, selectors.EVENT_READ)
        self.eof = False

    def read(self, timeout: float) -> bytes | None:
        """Bytes available within ``timeout`` seconds; b"" at end of output; None if nothing came."""
        if self.eof:
            return b""
        if not self._selector.select(max(0.0, timeout)):
            return None
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:  # a spurious wake-up: nothing to read after all
            return None
        except OSError:
            data = b""
        if not data:
            self.eof = True
        return data

    def close(self) -> None:
        self._selector.close()


class ToolProvider(StructuredOutput):
    """What the command-line providers share: the running process, and aborting it from any thread."""

    model: str
    #: A tool takes a prompt and nothing else: ``response_schema`` is ignored, and
    #: ``complete_json`` writes the schema into the prompt instead.
    supports_json = False
    supports_tools = False  # a command-line assistant calls its own tools, if any: ours go by text

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._aborted = threading.Event()

    def stream(self, request: LlmRequest) -> Iterator[StreamChunk]:
        raise NotImplementedError

    def complete(self, request: LlmRequest) -> LlmResponse:
        return collect(self.stream(request), self.model)

    def abort(self) -> None:
        """Stop the running tool now (its whole process group); the reading side sees it end."""
        self._aborted.set()
        process = self._process
        if process is not None:
            stop_group(process, grace=0.0)
