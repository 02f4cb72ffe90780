"""Git tools (read-only): log, diff, show and blame, by running git itself — safely.

A repository's own configuration must never make us run its commands, so git is started
without a shell, with ``GIT_CONFIG_NOSYSTEM=1``, no pager, no external diff, no textconv, no
fsmonitor, no hooks, no signature checking, and every clean/smudge/process filter the
configuration names overridden to nothing.

git sees the workspace and nothing above it: ``GIT_CEILING_DIRECTORIES`` (the workspace's parent)
stops it from finding a repository above the workspace, ``GIT_WORK_TREE`` pins the work tree to
the workspace whatever ``core.worktree`` says, and ``GIT_LITERAL_PATHSPECS`` makes every path a
plain name (``:(top).env``, ``:(glob)**``, ``:!x`` are file names, not pathspec magic). Revisions
must look like revisions (never an option) and are peeled to commits (``rev^{commit}``), so that
a blob's hash cannot show a hidden file. Paths go through ``Workspace.resolve``, and every path
git prints — a diff's file header, a stat line, a folder listing — goes through
``Workspace.is_excluded``: a hidden file's lines are dropped and a note says how many were.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from typing import Any

from forge_actors.tools.base import Tool, ToolContext, ToolError, ToolOutput, ToolResult, schema, timeout_message
from forge_actors.tools.shell import plain_env, run_process
from forge_actors.tools.workspace import Workspace

#: A revision: a name, a hash, HEAD~2, main^, v1.0, @{1}; never an option (no leading "-"), never a "rev:path".
_REVISION = re.compile(r"[A-Za-z0-9_@][A-Za-z0-9_./~^@{}+-]{0,199}")

#: Options that keep a repository's configuration from running anything, or from changing what git prints
#: (prefixes, quoting, rename detection, submodule logs) where the exclusions read it.
_SAFE_CONFIG = (
    "core.fsmonitor=", "core.hooksPath=/dev/null", "diff.external=", "core.pager=cat", "log.showSignature=false",
    "core.untrackedCache=false", "protocol.allow=never", "blame.ignoreRevsFile=", "core.quotePath=true",
)

_FILTER_KEY = re.compile(r"(filter\..+\.(?:clean|smudge|process))", re.IGNORECASE | re.DOTALL)

NOT_TOP = ("the workspace is not the top of a git repository (git tools see only a repository whose top "
           "folder is the workspace), so git tools are unavailable")


def _check_revision(rev: str) -> str:
    if not _REVISION.fullmatch(rev) or ".." in rev:
        raise ToolError(f"{rev!r} is not a revision this tool accepts; use a branch, tag, commit hash or HEAD~N")
    return rev


def _commit(rev: str) -> str:
    """``rev`` peeled to a commit: a blob's or a tree's hash is refused by git instead of shown."""
    return f"{_check_revision(rev)}^{{commit}}"


class _Git:
    """git in the workspace, for one tool call: the command line and environment every run shares."""

    def __init__(self, context: ToolContext) -> None:
        self.context = context
        self.workspace: Workspace = context.require_workspace()
        git = shutil.which("git")
        if git is None:
            raise ToolError("git is not installed here, so git tools are unavailable")
        root = self.workspace.root
        if not (root / ".git").exists():  # checked first: outside a repository, "git diff" compares any two files
            raise ToolError(NOT_TOP)
        # None of the caller's GIT_* variables reaches git (GIT_DIR, GIT_EXTERNAL_DIFF, GIT_CONFIG_COUNT/KEY_n...).
        self.env = {k: v for k, v in plain_env().items() if not k.startswith("GIT_")}
        self.env.update(GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", GIT_NO_LAZY_FETCH="1",
                        GIT_LITERAL_PATHSPECS="1", GIT_CEILING_DIRECTORIES=str(root.parent), GIT_WORK_TREE=str(root),
                        LC_ALL="C")
        self.base = [git, "-C", str(root), "--no-pager"]
        for option in _SAFE_CONFIG:
            self.base += ["-c", option]
        for key in self._filter_keys():
            self.base += ["-c", f"{key}="]

    def run(self, *args: str, pathspecs: tuple[str, ...] = ()) -> str:
        limit = self.context.limits.max_output_chars * 2
        result = run_process([*self.base, *args, "--", *pathspecs], self.context, cwd=self.workspace.root,
                             env=self.env, max_bytes=limit)
        if result.timed_out:
            raise ToolError(timeout_message(self.context.limits.timeout_seconds))
        if result.returncode not in (0, None):
            message = result.stderr.decode("utf-8", errors="replace").strip()
            if "not a git repository" in message.lower():
                raise ToolError(NOT_TOP)
            first = message.splitlines()[0] if message else f"git exited with {result.returncode}"
            first = first.removeprefix("fatal: ").removeprefix("error: ").replace("^{commit}", "")
            raise ToolError(f"git failed: {first}")
        text = result.stdout.decode("utf-8", errors="replace")
        if result.cut:
            text += "\n[git output was cut; ask for a path or fewer commits]"
        return text

    def _filter_keys(self) -> list[str]:
        """The clean/smudge/process filters the configuration defines: each is overridden with an empty command."""
        result = run_process([*self.base, "config", "--includes", "--list", "--null"], self.context,
                             cwd=self.workspace.root, env=self.env, max_bytes=1 << 20)
        if result.timed_out:
            raise ToolError(timeout_message(self.context.limits.timeout_seconds))
        if result.returncode != 0 or result.cut:  # unsure which filters exist: run nothing rather than guess
            stderr = result.stderr.decode("utf-8", errors="replace").strip()
            if "not a git repository" in stderr.lower():
                raise ToolError(NOT_TOP)
            raise ToolError(f"git cannot read this repository's configuration: "
                            f"{stderr.splitlines()[0] if stderr else 'too large'}")
        keys = []
        for entry in result.stdout.decode("utf-8", errors="replace").split("\0"):  # "key\nvalue" entries
            match = _FILTER_KEY.fullmatch(entry.split("\n", 1)[0])
            if match:
                keys.append(match.group(1))
        return keys


def _pathspec(workspace: Workspace, path: str | None) -> tuple[str, ...]:
    """The pathspec for ``path`` (or the whole workspace): a literal name, as GIT_LITERAL_PATHSPECS reads it."""
    return (workspace.relative(workspace.resolve(path)) if path else ".",)


# -- what git prints, without what the workspace hides ------------------------------------------

_C_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


def _unquote(text: str) -> tuple[str, str] | None:
    """The C-quoted name at the start of ``text`` (git quotes a name with odd characters) and what follows it."""
    if not text.startswith('"'):
        return None
    name = bytearray()
    i = 1
    while i < len(text):
        char = text[i]
        if char == '"':
            return name.decode("utf-8", errors="replace"), text[i + 1:]
        if char != "\\":
            name += char.encode("utf-8")
            i += 1
        elif text[i + 1:i + 2] in _C_ESCAPES:
            name.append(_C_ESCAPES[text[i + 1]])
            i += 2
        elif re.fullmatch("[0-7]{3}", text[i + 1:i + 4]):
            name.append(int(text[i + 1:i + 4], 8))
            i += 4
        else:
            return None
    return None


def _header_path(line: str) -> str | None:
    """The file a diff section is about, from its first line; None when the line cannot be read for sure."""
    for combined in ("diff --cc ", "diff --combined "):  # a merge conflict in the working tree
        if line.startswith(combined):
            name = line[len(combined):]
            quoted = _unquote(name)
            return name if quoted is None else quoted[0] if quoted[1] == "" else None
    if not line.startswith("diff --git "):
        return None
    sides = line[len("diff --git "):]
    first = _unquote(sides)
    if first is not None:  # "a/P" "b/P", both quoted
        second = _unquote(first[1].removeprefix(" "))
        old, new = first[0], second[0] if second is not None and second[1] == "" else None
    else:  # a/P b/P: with --no-renames both sides name the same file, so the line splits in its middle
        half = (len(sides) - 1) // 2
        old, new = sides[:half], sides[half + 1:] if sides[half:half + 1] == " " else None
    if new is None or not old.startswith("a/") or not new.startswith("b/") or old[2:] != new[2:]:
        return None
    return old[2:]


def _stat_path(line: str) -> str | None:
    """The file of a --stat line (" path | 3 +-"); None when it cannot be read for sure (an abbreviated name)."""
    name = line.rpartition(" | ")[0].removeprefix(" ")
    quoted = _unquote(name)
    if quoted is not None:
        return quoted[0] if quoted[1].strip(" ") == "" else None
    name = name.rstrip(" ")
    return None if name.startswith("...") else name


def _hidden(workspace: Workspace, rel: str | None) -> bool:
    # A name that could not be read is hidden too: the exclusions fail closed.
    return rel is None or workspace.is_excluded(workspace.root / rel)


def _hidden_note(count: int) -> str:
    return f"\n[{count} file(s) hidden: the workspace excludes them (they may hold secrets)]" if count else ""


def _visible_patch(text: str, workspace: Workspace) -> str:
    """git's --stat and patch output without the lines of the files the workspace hides, and a note if any were."""
    hidden: set[str] = set()
    shown: list[str] = []
    in_patch = showing = False
    for line in text.split("\n"):
        if line.startswith("diff "):  # a new file's section: no line of a patch's body starts so
            in_patch = True
            rel = _header_path(line)
            showing = not _hidden(workspace, rel)
            if not showing:
                hidden.add(rel or line)
        elif not in_patch and " | " in line:  # a --stat line, before the first section
            rel = _stat_path(line)
            if _hidden(workspace, rel):
                hidden.add(rel or line)
                continue
        if showing or not in_patch:
            shown.append(line)
    return "\n".join(shown) + _hidden_note(len(hidden))


def _visible_listing(text: str, workspace: Workspace, name: str, folder: str) -> str:
    """``git show name`` of a folder ("tree NAME", a blank line, one entry a line) without the hidden entries."""
    header, blank, listing = text.partition("\n\n")
    if header != f"tree {name}" or not blank:
        return text  # a file's contents
    names = [n for n in listing.split("\n") if n]
    base = workspace.root / folder
    # A folder ("name/") is asked about as the parent of a file, so that folder-only exclusions (".ssh/") apply.
    shown = [n for n in names if not workspace.is_excluded(base / n / "-" if n.endswith("/") else base / n)]
    header = header.replace("^{commit}", "")  # as the model wrote it
    return header + blank + "\n".join(shown) + ("\n" if shown else "") + _hidden_note(len(names) - len(shown))


# -- the tools --------------------------------------------------------------------------------

#: On every diff: no external diff or textconv, both sides named a/ and b/ whatever the configuration says,
#: no rename detection (so each header names one file twice), submodules as a hash line.
_DIFF_OPTIONS = ("--no-ext-diff", "--no-textconv", "--no-color", "--no-renames", "--src-prefix=a/",
                 "--dst-prefix=b/", "--submodule=short")


def git_log(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    git = _Git(context)
    text = git.run("log", f"--max-count={args['max_count']}", "--date=short", "--no-color", "--no-show-signature",
                   "--format=%h %ad %an%n    %s", pathspecs=_pathspec(git.workspace, args.get("path")))
    return text or "no commits"


def git_diff(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    revs = [_commit(r) for r in (args.get("rev_a"), args.get("rev_b")) if r]
    if args.get("rev_b") and not args.get("rev_a"):
        raise ToolError("give rev_a too when you give rev_b")
    git = _Git(context)
    text = git.run("diff", *_DIFF_OPTIONS, *revs, pathspecs=_pathspec(git.workspace, args.get("path")))
    return _visible_patch(text, git.workspace) if text else "no differences"


def git_show(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    commit = _commit(args["rev"])
    git = _Git(context)
    path = args.get("path")
    if path:
        rel = git.workspace.relative(git.workspace.resolve(path))
        # "rev:./path" is relative to -C (the workspace), not to the top of the repository.
        name = f"{commit}:./{rel}"
        return _visible_listing(git.run("show", *_DIFF_OPTIONS, name), git.workspace, name, rel)
    message = git.run("show", "--no-patch", "--format=medium", "--no-show-signature", commit)
    # The stat and patch in a run of their own, so that no line of the message is read as a stat line.
    changes = git.run("show", *_DIFF_OPTIONS, "--format=", "--diff-merges=first-parent", "--stat=1000,900",
                      "--patch", commit, pathspecs=(".",))
    return message.rstrip("\n") + "\n\n" + _visible_patch(changes, git.workspace)


def git_blame(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    workspace = context.require_workspace()
    start, end = args.get("start_line"), args.get("end_line")
    if end is not None and start is not None and end < start:
        raise ToolError(f"end_line ({end}) is before start_line ({start})")
    # The working tree's text as the workspace reads it (race-free, through every rule of the gate),
    # handed to git in a file of our own: git itself would look the path up again, and follow a folder
    # swapped for a symlink since the check.
    cap = context.limits.max_file_bytes
    try:
        data, size = workspace.read_bytes(args["path"], cap)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise ToolError(f"{args['path']!r} is not a file of the workspace") from None
    if size > cap:
        raise ToolError(f"{args['path']!r} is {size:,} bytes, more than the {cap:,} a tool reads; blame a line range "
                        "of a smaller file")
    rel = workspace.relative(workspace.resolve(args["path"]))
    options = ["--no-textconv", "--date=short"]
    if start is not None or end is not None:
        options.append(f"-L{start or 1},{end or ''}")
    with tempfile.NamedTemporaryFile(prefix="forge-blame-") as contents:
        contents.write(data)
        contents.flush()
        text = _Git(context).run("blame", *options, "--contents", contents.name, pathspecs=(rel,))
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
