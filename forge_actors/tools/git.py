"""Git tools (read-only): log, diff, show and blame, by running git itself — safely.

A repository's own configuration must never make us run its commands, so git is started
without a shell, with ``GIT_CONFIG_NOSYSTEM=1``, no pager, no external diff, no textconv, no
fsmonitor, no hooks, no signature checking, and every clean/smudge/process filter the
configuration names overridden to nothing. Revisions must look like revisions (never an
option), paths go through ``Workspace.resolve``, and the workspace's exclusions are passed to
git as exclude pathspecs so that a diff does not show a ``.env`` file either.
"""

from __future__ import annotations

import re
import shutil
from typing import Any

from forge_actors.tools.base import Tool, ToolContext, ToolError, ToolOutput, ToolResult, schema, timeout_message
from forge_actors.tools.shell import plain_env, run_process
from forge_actors.tools.workspace import Workspace

#: A revision: a name, a hash, HEAD~2, main^, v1.0, @{1}; never an option (no leading "-"), never a "rev:path".
_REVISION = re.compile(r"[A-Za-z0-9_@][A-Za-z0-9_./~^@{}+-]{0,199}")

#: Options that keep a repository's configuration from running anything.
_SAFE_CONFIG = (
    "core.fsmonitor=", "core.hooksPath=/dev/null", "diff.external=", "core.pager=cat", "log.showSignature=false",
    "core.untrackedCache=false", "protocol.allow=never", "blame.ignoreRevsFile=",
)

_FILTER_KEY = re.compile(r"(filter\..+\.(?:clean|smudge|process))", re.IGNORECASE | re.DOTALL)


def _check_revision(rev: str) -> str:
    if not _REVISION.fullmatch(rev) or ".." in rev:
        raise ToolError(f"{rev!r} is not a revision this tool accepts; use a branch, tag, commit hash or HEAD~N")
    return rev


def _git(context: ToolContext, *args: str, pathspecs: tuple[str, ...] = ()) -> str:
    workspace = context.require_workspace()
    git = shutil.which("git")
    if git is None:
        raise ToolError("git is not installed here, so git tools are unavailable")
    # No GIT_* variable of ours reaches git (GIT_DIR, GIT_EXTERNAL_DIFF, GIT_CONFIG_COUNT/KEY_n...), except the
    # ceiling, which only stops git from looking for a repository above the workspace.
    env = {k: v for k, v in plain_env().items() if not k.startswith("GIT_") or k == "GIT_CEILING_DIRECTORIES"}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", GIT_NO_LAZY_FETCH="1",
               LC_ALL="C")
    base = [git, "-C", str(workspace.root), "--no-pager"]
    for option in _SAFE_CONFIG:
        base += ["-c", option]
    for key in _filter_keys(context, base, env):
        base += ["-c", f"{key}="]
    limit = context.limits.max_output_chars * 2
    result = run_process([*base, *args, "--", *pathspecs], context, cwd=workspace.root, env=env, max_bytes=limit)
    if result.timed_out:
        raise ToolError(timeout_message(context.limits.timeout_seconds))
    if result.returncode not in (0, None):
        message = result.stderr.decode("utf-8", errors="replace").strip()
        if "not a git repository" in message:
            raise ToolError("the workspace is not a git repository, so git tools are unavailable")
        first = message.splitlines()[0] if message else f"git exited with {result.returncode}"
        raise ToolError(f"git failed: {first.removeprefix('fatal: ')}")
    text = result.stdout.decode("utf-8", errors="replace")
    if result.cut:
        text += "\n[git output was cut; ask for a path or fewer commits]"
    return text


def _filter_keys(context: ToolContext, base: list[str], env: dict[str, str]) -> list[str]:
    """The clean/smudge/process filters the configuration defines: each is overridden with an empty command."""
    workspace = context.require_workspace()
    result = run_process([*base, "config", "--includes", "--list", "--null"], context, cwd=workspace.root,
                         env=env, max_bytes=1 << 20)
    if result.timed_out:
        raise ToolError(timeout_message(context.limits.timeout_seconds))
    if result.returncode != 0 or result.cut:  # unsure which filters exist: run nothing rather than guess
        stderr = result.stderr.decode("utf-8", errors="replace").strip()
        if "not a git repository" in stderr:
            raise ToolError("the workspace is not a git repository, so git tools are unavailable")
        raise ToolError(f"git cannot read this repository's configuration: {stderr.splitlines()[0] if stderr else 'too large'}")
    keys = []
    for entry in result.stdout.decode("utf-8", errors="replace").split("\0"):  # "key\nvalue" entries
        match = _FILTER_KEY.fullmatch(entry.split("\n", 1)[0])
        if match:
            keys.append(match.group(1))
    return keys


def _pathspec(context: ToolContext, path: str | None) -> tuple[str, ...]:
    """The pathspecs for ``path`` (or the whole workspace), with every excluded or protected file left out."""
    workspace: Workspace = context.require_workspace()
    specs = [workspace.relative(workspace.resolve(path)) if path else "."]
    for pattern in workspace.exclude:
        name = pattern.rstrip("/")
        specs += [f":(exclude,glob,icase)**/{name}", f":(exclude,glob,icase)**/{name}/**"]
    for protected in workspace.protected:
        if protected.is_relative_to(workspace.root):
            specs.append(f":(exclude,literal){protected.relative_to(workspace.root).as_posix()}")
    return tuple(specs)


_DIFF_SAFETY = ("--no-ext-diff", "--no-textconv", "--no-color")


def git_log(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    text = _git(context, "log", f"--max-count={args['max_count']}", "--date=short", "--no-color",
                "--no-show-signature", "--format=%h %ad %an%n    %s", pathspecs=_pathspec(context, args.get("path")))
    return text or "no commits"


def git_diff(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    revs = [_check_revision(r) for r in (args.get("rev_a"), args.get("rev_b")) if r]
    if args.get("rev_b") and not args.get("rev_a"):
        raise ToolError("give rev_a too when you give rev_b")
    text = _git(context, "diff", *_DIFF_SAFETY, *revs, pathspecs=_pathspec(context, args.get("path")))
    return text or "no differences"


def git_show(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    rev = _check_revision(args["rev"])
    path = args.get("path")
    if path:
        workspace = context.require_workspace()
        rel = workspace.relative(workspace.resolve(path))
        # "rev:./path" is relative to -C (the workspace), not to the top of the repository.
        return _git(context, "show", *_DIFF_SAFETY, f"{rev}:./{rel}")
    return _git(context, "show", *_DIFF_SAFETY, "--no-show-signature", "--stat", "--patch", rev,
                pathspecs=_pathspec(context, None))


def git_blame(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    workspace = context.require_workspace()
    target = workspace.resolve(args["path"])
    if not target.is_file():
        raise ToolError(f"{args['path']!r} is not a file of the workspace")
    start, end = args.get("start_line"), args.get("end_line")
    if end is not None and start is not None and end < start:
        raise ToolError(f"end_line ({end}) is before start_line ({start})")
    options = ["--no-textconv", "--date=short"]
    if start is not None or end is not None:
        options.append(f"-L{start or 1},{end or ''}")
    text = _git(context, "blame", *options, pathspecs=(workspace.relative(target),))
    return ToolResult(output=text)


_PATH = {"type": "string", "minLength": 1, "maxLength": 4096, "description": "a path relative to the workspace root"}
_REV = {"type": "string", "minLength": 1, "maxLength": 200, "description": "a branch, tag, commit hash or HEAD~N"}

TOOLS = (
    Tool("git_log", "Recent commits (hash, date, author, subject), optionally only those touching a path.",
         schema({"path": _PATH, "max_count": {"type": "integer", "minimum": 1, "maximum": 200, "default": 20}}),
         "git", True, git_log),
    Tool("git_diff", "A diff: the working tree against HEAD (no revisions), against rev_a, or rev_a against rev_b.",
         schema({"rev_a": _REV, "rev_b": _REV, "path": _PATH}), "git", True, git_diff),
    Tool("git_show", "A commit's message and patch, or a file as it was at that revision when path is given.",
         schema({"rev": _REV, "path": _PATH}, ("rev",)), "git", True, git_show),
    Tool("git_blame", "Who last changed each line of a file (optionally a line range), with commit and date.",
         schema({"path": _PATH, "start_line": {"type": "integer", "minimum": 1},
                 "end_line": {"type": "integer", "minimum": 1}}, ("path",)), "git", True, git_blame),
)
