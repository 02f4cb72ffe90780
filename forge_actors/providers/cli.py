"""``cli:NAME`` — a command-line assistant, run once per call.

Configured as an argv template (in forge.toml under ``[forge.cli.NAME]``, or one of
the presets below): the prompt replaces ``{prompt}`` inside an argument, or, with no
placeholder, is written to the tool's stdin. It is never run through a shell, so no
text in a prompt can run a command. What the tool prints is streamed as it prints
it, cleaned of terminal noise (``cleaning.TerminalCleaner``).

Conversation context: ``history = "resend"`` (default) puts the whole conversation
into each prompt; ``"resume"`` sends only the newest message and adds ``resume_args``
(e.g. ``--continue``) from the second call on, for tools that keep their own history.

Command-line tools report no token counts: usage is estimated as characters / 4.
"""

from __future__ import annotations

import codecs
import shlex
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

from forge_actors.providers.base import LlmRequest, StreamChunk, Usage
from forge_actors.providers.cleaning import TerminalCleaner
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

PLACEHOLDER = "{prompt}"
History = Literal["resend", "resume"]

#: Tools known out of the box (``cli:q``, ``cli:claude``...); forge.toml can redefine or add any.
PRESETS: dict[str, dict[str, Any]] = {
    "q": {"command": ["q", "chat", "--no-interactive", "--trust-all-tools", PLACEHOLDER],
          "noise": [r"^\s*>\s*$", r"(?i)^\s*(to learn more|use /help|did you know)"]},
    "claude": {"command": ["claude", "-p", PLACEHOLDER], "resume_args": ["--continue"]},
    "llm": {"command": ["llm", PLACEHOLDER], "resume_args": ["--continue"]},
    "ollama": {"command": ["ollama", "run", "llama3.2", PLACEHOLDER]},
}


def argv_option(value: str | Sequence[str]) -> list[str]:
    """An argv given as a list, or as one string split like a shell would (without running one)."""
    if isinstance(value, str):
        return shlex.split(value)
    return [str(part) for part in value]


def conversation_prompt(request: LlmRequest) -> str:
    """The whole conversation as one prompt: the system text, then each turn."""
    parts = [request.system] if request.system else []
    turns = request.conversation
    if len(turns) == 1:
        parts.append(turns[0].content)
    else:
        parts += [f"{'User' if m.role == 'user' else 'Assistant'}: {m.content}" for m in turns]
    return "\n\n".join(parts)


def estimated_usage(prompt: str, answer: str) -> Usage:
    return Usage(max(1, len(prompt) // 4), max(1, len(answer) // 4))


class CliProvider(ToolProvider):
    name = "cli"

    def __init__(
        self,
        model: str,
        *,
        command: str | Sequence[str] | None = None,
        history: History = "resend",
        resume_args: str | Sequence[str] = (),
        noise: Sequence[str] = (),
        timeout: float = 300.0,
        flush_after: float = 0.2,
        env: Mapping[str, str] | None = None,
        **_ignored: Any,
    ) -> None:
        preset = PRESETS.get(model, {})
        command = command if command is not None else preset.get("command")
        if not command:
            raise ProviderConfigError(
                f"cli:{model} has no command: define [forge.cli.{model}] command = [...] in forge.toml "
                f"(known presets: {', '.join(sorted(PRESETS))})"
            )
        if history not in ("resend", "resume"):
            raise ProviderConfigError(f"cli:{model} history must be 'resend' or 'resume', not {history!r}")
        self.model = model
        self.command = argv_option(command)
        self.history: History = history
        self.resume_args = argv_option(resume_args or preset.get("resume_args", []))
        self.noise = list(noise) or list(preset.get("noise", []))
        self.timeout = float(timeout)
        self.flush_after = float(flush_after)
        self.env = dict(env) if env is not None else None
        self._calls = 0
        super().__init__()

    def __repr__(self) -> str:
        return f"CliProvider({self.model!r}, command={self.command[:1]!r})"

    def close(self) -> None:
        self.abort()

    def stream(self, request: LlmRequest) -> Iterator[StreamChunk]:
        self._aborted.clear()
        resuming = self.history == "resume" and self._calls > 0
        prompt = request.conversation[-1].content if resuming and request.conversation else conversation_prompt(request)
        argv = resolve_command(self._argv(prompt, resuming), f"cli:{self.model}", self.env)
        self._calls += 1
        return self._run(argv, prompt, on_stdin=not any(PLACEHOLDER in arg for arg in self.command))

    def _argv(self, prompt: str, resuming: bool) -> list[str]:
        argv = [arg.replace(PLACEHOLDER, prompt) for arg in self.command]
        if resuming:
            at = next((i for i, arg in enumerate(self.command) if PLACEHOLDER in arg), len(argv))
            argv[at:at] = self.resume_args
        return argv

    def _run(self, argv: list[str], prompt: str, on_stdin: bool) -> Iterator[StreamChunk]:
        tool = f"cli:{self.model}"
        process = start(argv, stdin=on_stdin, env=self.env)
        self._process = process
        if on_stdin:
            threading.Thread(target=_write_and_close, args=(process, prompt), daemon=True).start()
        stderr = StderrTail(process)
        assert process.stdout is not None
        reader = OutputReader(process.stdout.fileno())
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        cleaner = TerminalCleaner(self.noise)
        deadline = time.monotonic() + self.timeout
        answer: list[str] = []
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RequestTimeoutError(f"{argv[0]} gave no complete answer within {self.timeout:g} s; it and "
                                              "everything it started were stopped", provider=tool)
                data = reader.read(min(left, self.flush_after))
                if self._aborted.is_set():
                    raise CancelledError(f"{tool} was stopped", provider=tool)
                if data == b"":
                    break
                if data is None:
                    text = cleaner.flush_partial()
                else:
                    text = cleaner.feed(decoder.decode(data)) + cleaner.flush_partial(whole_words=True)
                if text:
                    answer.append(text)
                    yield StreamChunk(text)
            text = cleaner.feed(decoder.decode(b"", final=True)) + cleaner.finish()
            if text:
                answer.append(text)
                yield StreamChunk(text)
            code = process.wait(max(0.1, deadline - time.monotonic()))
            if code != 0:
                tail = stderr.text()[-800:] or "(nothing on stderr)"
                raise ProcessFailedError(f"{argv[0]} exited with code {code}: {tail}", provider=tool)
            if not "".join(answer).strip():
                raise EmptyResponseError(f"{argv[0]} printed nothing but terminal noise", provider=tool)
            yield StreamChunk("", True, "stop", estimated_usage(prompt, "".join(answer)))
        finally:
            reader.close()
            if process.poll() is None:
                stop_group(process)
            else:
                stop_group(process, grace=0.0)  # reap, and stop anything it left running
            self._process = None


def _write_and_close(process: Any, prompt: str) -> None:
    try:
        process.stdin.write(prompt.encode())
        process.stdin.close()
    except (BrokenPipeError, OSError):  # the tool exited without reading: its exit code tells why
        pass
