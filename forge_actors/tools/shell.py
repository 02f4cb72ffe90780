"""Running programs for tools: the shell tool ``run_command``, and the process plumbing git and grep share.

A program runs from an argv list (never a shell), in the workspace, in a process group of its
own with an environment stripped of secrets; its output is read with a byte cap (it is never
buffered unbounded) and, on timeout or once the cap is reached, the whole group — the program
and everything it started — is killed.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from forge_actors.tools.base import Tool, ToolContext, ToolError, ToolOutput, ToolResult, schema, timeout_message
from forge_actors.tools.workspace import PathRefused, Workspace

#: Environment variables a program never sees: anything that looks like a credential, and our own settings.
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|^ANTHROPIC_|^OPENAI_|^FORGE_", re.IGNORECASE)
MAX_STDERR_BYTES = 64 * 1024


def plain_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) without a variable whose name looks like a secret."""
    source = os.environ if base is None else base
    return {name: value for name, value in source.items() if not _SECRET_NAME.search(name)}


@dataclass(frozen=True)
class ProcessOutput:
    stdout: bytes
    stderr: bytes
    returncode: int | None  # None when it was killed (timeout or output cap)
    cut: bool  # stdout reached the byte cap and the program was stopped
    timed_out: bool


def stop(process: subprocess.Popen[bytes]) -> None:
    """Kill the process group of ``process`` (it was started with start_new_session) and reap the leader."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # the group is gone already
        pass
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()
    try:
        process.wait(5.0)
    except subprocess.TimeoutExpired:  # stuck in the kernel: the OS reaps it later
        pass


def run_process(argv: Sequence[str], context: ToolContext, *, cwd: Path, env: Mapping[str, str],
                max_bytes: int, merge_stderr: bool = False) -> ProcessOutput:
    """Run ``argv`` to its end, the call's deadline, or ``max_bytes`` of stdout, whichever comes first."""
    process = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE, start_new_session=True)
    try:
        result = _collect(process, context, max_bytes)
    finally:
        stop(process)
    if result.timed_out or result.cut:
        return result
    return replace(result, returncode=process.returncode)


def _collect(process: subprocess.Popen[bytes], context: ToolContext, max_bytes: int) -> ProcessOutput:
    buffers: dict[int, bytearray] = {}
    caps: dict[int, int] = {}
    pipes: list[IO[bytes]] = [p for p in (process.stdout, process.stderr) if p is not None]
    out_fd = process.stdout.fileno() if process.stdout is not None else -1
    with selectors.DefaultSelector() as selector:
        for pipe in pipes:
            fd = pipe.fileno()
            buffers[fd] = bytearray()
            caps[fd] = max_bytes if fd == out_fd else MAX_STDERR_BYTES
            selector.register(fd, selectors.EVENT_READ)
        open_fds = set(buffers)
        while open_fds:
            remaining = context.remaining()
            if remaining <= 0:
                return _partial(buffers, out_fd, cut=False, timed_out=True)
            for key, _ in selector.select(min(remaining, 0.5)):
                fd = int(key.fd)
                chunk = os.read(fd, 65536)
                if not chunk:
                    selector.unregister(fd)
                    open_fds.discard(fd)
                    continue
                room = caps[fd] + 1 - len(buffers[fd])
                buffers[fd] += chunk[: max(room, 0)]
                if fd == out_fd and len(buffers[fd]) > max_bytes:  # enough: stop it rather than read on
                    del buffers[fd][max_bytes:]
                    return _partial(buffers, out_fd, cut=True, timed_out=False)
    # Both pipes closed: wait for the leader to exit without reaping it, so that its group id cannot be
    # reused before stop() kills what it left behind (a daemon child that closed its output).
    while os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if context.remaining() <= 0:
            return _partial(buffers, out_fd, cut=False, timed_out=True)
        time.sleep(0.005)
    return _partial(buffers, out_fd, cut=False, timed_out=False)


def _other(buffers: dict[int, bytearray], out_fd: int) -> bytearray:
    return next((b for fd, b in buffers.items() if fd != out_fd), bytearray())


def _partial(buffers: dict[int, bytearray], out_fd: int, *, cut: bool, timed_out: bool) -> ProcessOutput:
    return ProcessOutput(bytes(buffers.get(out_fd, b"")), bytes(_other(buffers, out_fd)), None, cut, timed_out)


# -- run_command ------------------------------------------------------------------------------


def _check_argument(arg: str, workspace: Workspace) -> None:
    if "\x00" in arg:
        raise ToolError("an argument may not contain a NUL byte")
    root = workspace.root
    pieces = [arg, *arg.split("=", 1)[1:]]  # --file=/etc/passwd is a path too
    if re.match(r"-[^-]", arg):  # and so is -I/usr/include, or -hf.env: short options clustered, any may take a value
        pieces += [arg[k:] for k in range(2, len(arg))]
    for piece in pieces:
        if piece.startswith("~"):
            raise ToolError(f"argument {arg!r} names a path outside the workspace; use paths relative to it")
        if ".." in re.split(r"[/\\]", piece):
            raise ToolError(f"argument {arg!r} uses '..'; use paths inside the workspace, without '..'")
        if piece.startswith("/"):
            path = Path(os.path.normpath(piece))
            if not path.is_relative_to(root):
                raise ToolError(f"argument {arg!r} is a path outside the workspace; use a path relative to it")
    _refuse_hidden_names(arg, pieces, workspace)


def _refuse_hidden_names(arg: str, pieces: list[str], workspace: Workspace) -> None:
    """Refuse an argument that names what the file tools refuse (an exclusion such as ``.env``, the
    event log), with their message: by name only, so it stops ``cat .env``, not a program that
    finds the file itself (``grep -r``, ``python -c``)."""
    names = set(pieces)  # -o.env, -fforge.db, -hf.env among them (_check_argument's pieces)
    for piece in pieces:  # HEAD:.env, --include=a.py,.env
        names.update(re.split(r"[:,]", piece))
    for name in sorted(names):
        if not name or name.startswith("~") or (name.startswith("/") and
                                                not Path(os.path.normpath(name)).is_relative_to(workspace.root)):
            continue  # not a path inside the workspace: the checks above deal with what matters there
        try:
            workspace.check(name)
        except PathRefused as refused:
            raise PathRefused(str(refused) if name == arg else f"{refused} (argument {arg!r})") from None


def run_command(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    workspace = context.require_workspace()
    program: str = args["program"]
    allowed = sorted(context.shell_programs)
    if "/" in program or program not in context.shell_programs:
        raise ToolError(f"program {program!r} is not allowed; allowed programs: {', '.join(allowed) or 'none'}")
    found = shutil.which(program)
    if found is None:
        raise ToolError(f"program {program!r} is allowed but not installed here")
    for arg in args["args"]:
        _check_argument(arg, workspace)
    limit = context.limits.max_output_chars
    with workspace.pinned() as root:  # it starts in the root as checked, whatever is renamed meanwhile
        result = run_process([found, *args["args"]], context, cwd=root, env=plain_env(), max_bytes=limit,
                             merge_stderr=True)
    text = result.stdout.decode("utf-8", errors="replace")
    if result.timed_out:
        return ToolResult(output=text, error=timeout_message(context.limits.timeout_seconds)
                          + " (the command and everything it started were killed)", truncated=False)
    if result.cut:  # room kept for the note, so that Toolbox.call's own cut does not hide it
        shown = text[: max(limit - 200, limit // 2)]
        return ToolResult(output=shown + f"\n[output passed {limit} bytes; the command was stopped there]",
                          truncated=True)
    return f"{text}{'' if not text or text.endswith(chr(10)) else chr(10)}[exit code {result.returncode}]"


TOOLS = (
    Tool("run_command", "Run an allowed program (no shell) in the workspace with a list of arguments; prints its "
         "output and exit code.",
         schema({"program": {"type": "string", "minLength": 1, "maxLength": 200, "description": "a bare program name"},
                 "args": {"type": "array", "items": {"type": "string", "maxLength": 4096}, "maxItems": 100,
                          "default": []}}, ("program",)),
         "shell", False, run_command),
)
