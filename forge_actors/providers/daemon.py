"""``daemon:NAME`` — one interactive process of a command-line assistant, kept alive across calls.

Configured under ``[forge.daemon.NAME]``: the argv to start it, and how to tell that
an answer is over — an ``end_marker`` line, the tool's own ``prompt_marker``
reappearing, or ``quiet_seconds`` without output. Each call writes the prompt as one
line to the tool's stdin (newlines inside it joined by ``line_join``, since an
interactive tool takes a newline as "send") and streams the cleaned answer.

Calls are serialized (one at a time). A broken pipe or a dead process before any
answer text restarts the tool once and retries the call; a timeout or an abort stops
the tool (it restarts on the next call). ``close()`` sends the ``quit_command``, then
SIGTERM, then SIGKILL to the whole process group, so no process outlives the engine.
"""

from __future__ import annotations

import codecs
import re
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from forge_actors.providers.base import LlmRequest, StreamChunk
from forge_actors.providers.cleaning import TerminalCleaner
from forge_actors.providers.cli import argv_option, conversation_prompt, estimated_usage
from forge_actors.providers.errors import (
    CancelledError,
    EmptyResponseError,
    ProcessFailedError,
    ProviderConfigError,
    RequestTimeoutError,
)
from forge_actors.providers.process import (
    OutputReader,
    StderrTail,
    ToolProvider,
    resolve_command,
    start,
    stop_group,
)


class _ToolGone(Exception):
    """The pipe broke or the process died."""


class DaemonProvider(ToolProvider):
    name = "daemon"

    def __init__(
        self,
        model: str,
        *,
        command: str | Sequence[str] | None = None,
        prompt_marker: str | None = None,
        end_marker: str | None = None,
        quiet_seconds: float = 2.0,
        startup_seconds: float = 10.0,
        quit_command: str | None = None,
        timeout: float = 300.0,
        noise: Sequence[str] = (),
        line_join: str = " ",
        flush_after: float = 0.2,
        env: Mapping[str, str] | None = None,
        **_ignored: Any,
    ) -> None:
        if not command:
            raise ProviderConfigError(f"daemon:{model} has no command: define [forge.daemon.{model}] command = [...]")
        self.model = model
        self.command = argv_option(command)
        self.prompt_marker = re.compile(prompt_marker) if prompt_marker else None
        self.end_marker = re.compile(end_marker) if end_marker else None
        self.quiet_seconds = float(quiet_seconds)
        self.startup_seconds = float(startup_seconds)
        self.quit_command = quit_command
        self.timeout = float(timeout)
        self.noise = list(noise)
        self.line_join = line_join
        self.flush_after = float(flush_after)
        self.env = dict(env) if env is not None else None
        self._lock = threading.Lock()
        super().__init__()
        self._reader: OutputReader | None = None
        self._stderr: StderrTail | None = None
        self.starts = 0  # how many times the tool was started (a restart counts)

    def __repr__(self) -> str:
        return f"DaemonProvider({self.model!r}, command={self.command[:1]!r})"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    # -- lifecycle ---------------------------------------------------------------------------------

    def _start(self) -> None:
        argv = resolve_command(self.command, f"daemon:{self.model}", self.env)
        process = start(argv, stdin=True, env=self.env)
        assert process.stdout is not None
        self._process, self._reader, self._stderr = process, OutputReader(process.stdout.fileno()), StderrTail(process)
        self.starts += 1
        # The banner, up to the first prompt (or a quiet spell): not part of any answer.
        list(self._read(TerminalCleaner(self.noise), time.monotonic() + self.startup_seconds, startup=True))

    def _stop(self, polite: bool) -> None:
        process, reader = self._process, self._reader
        self._process = self._reader = None
        if process is None:
            return
        if polite and self.quit_command and process.poll() is None and process.stdin is not None:
            try:
                process.stdin.write((self.quit_command + "\n").encode())
                process.stdin.flush()
                process.wait(1.0)
            except (OSError, subprocess.TimeoutExpired):  # it would not quit politely: the group is stopped below
                pass
        stop_group(process)
        if reader is not None:
            reader.close()

    def close(self) -> None:
        """Quit the tool: its quit command, then SIGTERM, then SIGKILL."""
        self._stop(polite=True)

    # -- calls ------------------------------------------------------------------------------------------

    def stream(self, request: LlmRequest) -> Iterator[StreamChunk]:
        self._aborted.clear()
        return self._call(conversation_prompt(request))

    def _call(self, prompt: str) -> Iterator[StreamChunk]:
        tool = f"daemon:{self.model}"
        line = self.line_join.join(prompt.splitlines())
        with self._lock:
            for attempt in (1, 2):
                answer: list[str] = []
                try:
                    if self._process is None or self._process.poll() is not None:
                        self._stop(polite=False)
                        self._start()
                    self._send(line)
                    deadline = time.monotonic() + self.timeout
                    for text in self._read(TerminalCleaner(self.noise), deadline):
                        answer.append(text)
                        yield StreamChunk(text)
                except _ToolGone as gone:
                    if self._aborted.is_set():
                        raise CancelledError(f"{tool} was stopped", provider=tool) from None
                    detail = (self._stderr.text() if self._stderr else "")[-400:]
                    self._stop(polite=False)
                    if answer or attempt == 2:
                        raise ProcessFailedError(f"{self.command[0]} {gone} ({'after' if answer else 'before'} "
                                                 f"answering; restarted once){': ' + detail if detail else ''}",
                                                 provider=tool) from None
                    continue  # restart it and send the prompt again
                except RequestTimeoutError:
                    self._stop(polite=False)  # in an unknown state: start afresh next call
                    raise
                if not "".join(answer).strip():
                    raise EmptyResponseError(f"{self.command[0]} answered nothing but terminal noise", provider=tool)
                yield StreamChunk("", True, "stop", estimated_usage(prompt, "".join(answer)))
                return

    def _send(self, line: str) -> None:
        process = self._process
        assert process is not None and process.stdin is not None
        try:
            process.stdin.write((line + "\n").encode())
            process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise _ToolGone("closed its input") from None

    def _read(self, cleaner: TerminalCleaner, deadline: float, startup: bool = False) -> Iterator[str]:
        """Clean answer text until the answer is over (marker, prompt, or quiet spell)."""
        assert self._reader is not None
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        quiet_since = time.monotonic()
        said_something = False
        while True:
            now = time.monotonic()
            if now >= deadline:
                if startup:
                    return  # a tool with no prompt: the quiet start is as good as a prompt
                raise RequestTimeoutError(f"{self.command[0]} did not finish its answer within {self.timeout:g} s",
                                          provider=f"daemon:{self.model}")
            data = self._reader.read(min(deadline - now, self.flush_after))
            if self._aborted.is_set():
                raise _ToolGone("was stopped")
            if data == b"":
                raise _ToolGone(f"exited (code {self._process.poll() if self._process else '?'})")
            if data is None:
                if self._at_prompt(cleaner):
                    return
                if (said_something or startup) and time.monotonic() - quiet_since >= self.quiet_seconds:
                    return  # quiet long enough: the answer is over
                text = "" if startup else cleaner.flush_partial()
            else:
                quiet_since = time.monotonic()
                text = cleaner.feed(decoder.decode(data))
                if not startup and not self._at_prompt(cleaner):
                    text += cleaner.flush_partial(whole_words=True)
            lines, ended = self._until_end_marker(text)
            if lines and not startup:
                said_something = True
                yield lines
            if ended or (data is not None and self._at_prompt(cleaner)):
                return

    def _at_prompt(self, cleaner: TerminalCleaner) -> bool:
        return self.prompt_marker is not None and bool(self.prompt_marker.fullmatch(cleaner.open_line()))

    def _until_end_marker(self, text: str) -> tuple[str, bool]:
        if self.end_marker is None or not text:
            return text, False
        kept: list[str] = []
        for line in text.splitlines(keepends=True):
            if self.end_marker.search(line):
                return "".join(kept), True
            kept.append(line)
        return "".join(kept), False
