"""Search tools (read-only): grep, symbols, file names, match counts, and earlier sessions."""

from __future__ import annotations

import ast
import logging
import re
import shutil
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from forge_actors.tools.base import (
    Tool,
    ToolContext,
    ToolError,
    ToolOutput,
    ToolResult,
    ToolTimeout,
    schema,
    timeout_message,
)
from forge_actors.tools.files import SNIFF_BYTES, looks_binary
from forge_actors.tools.patterns import MAX_PATTERN_CHARS, Pattern
from forge_actors.tools.shell import plain_env, run_process
from forge_actors.tools.workspace import PathRefused, Workspace, glob_match

logger = logging.getLogger(__name__)

#: Lines longer than this are skipped by the Python grep and cut by ripgrep (minified files, data).
MAX_LINE_CHARS = 2000
#: find_symbol parses Python files up to this size; a larger one is scanned by keyword (def, class...).
#: ast.parse holds the GIL, a long literal costs it about 3 µs a character, and 1 MiB of one held it 4 s.
MAX_PARSED_CHARS = 128 * 1024


def _start(context: ToolContext, path: str) -> tuple[Workspace, Path]:
    workspace = context.require_workspace()
    try:
        start = workspace.stat(path).path  # a FIFO or a device is refused here (ripgrep would block opening it)
    except (FileNotFoundError, NotADirectoryError):
        raise ToolError(f"there is no file or folder {path!r}; use '.' for the whole workspace") from None
    return workspace, start


def _text_lines(path: Path, context: ToolContext) -> Iterator[tuple[int, str]]:
    """The lines of a text file no larger than the read cap; nothing for binary or huge files."""
    data = _small_file(path, context)
    if data is None:
        return
    if looks_binary(data[:SNIFF_BYTES]):
        return
    for number, line in enumerate(_lines_of(data.decode("utf-8", errors="replace")), 1):
        if len(line) <= MAX_LINE_CHARS:
            yield number, line


def _lines_of(text: str) -> list[str]:
    """The lines of ``text`` as ripgrep numbers them: split at "\n" only (a form feed, a U+2028 are part of a
    line), without the CR of a CRLF."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


# -- grep -------------------------------------------------------------------------------------


def grep(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    workspace, start = _start(context, args["path"])
    regex = Pattern(args["pattern"], ignore_case=args["ignore_case"])  # RE2 decides, whichever engine searches
    rg_pattern = regex.ripgrep_pattern()
    found = None
    if shutil.which("rg") is not None and rg_pattern is not None:
        found = _grep_rg(workspace, start, rg_pattern, args, context)
    if found is None:  # no ripgrep, or a pattern RE2 takes and ripgrep would not (or would read otherwise)
        found = _grep_python(workspace, start, regex, args.get("glob"), context)
    hits, truncated = found
    if not hits:
        return f"no match for {args['pattern']!r} under {workspace.relative(start)!r}"
    note = f"\n[stopped at {context.limits.max_entries} matching lines; narrow the pattern, path or glob]" if truncated else ""
    return ToolResult(output="\n".join(hits) + note, truncated=truncated)


def _glob_matches(glob: str | None, rel: str) -> bool:
    return not glob or glob_match(glob, rel, name_only_without_slash=True)


def _grep_python(workspace: Workspace, start: Path, regex: Pattern, glob: str | None,
                 context: ToolContext) -> tuple[list[str], bool]:
    cap = context.limits.max_entries
    hits: list[str] = []
    for path in workspace.files(start, check=context.check_deadline):
        context.check_deadline()  # between files: a big tree cannot hold the call past its timeout
        rel = workspace.relative(path)
        if not _glob_matches(glob, rel):
            continue
        for number, line in _text_lines(path, context):
            context.check_deadline()  # per line: one line (at most MAX_LINE_CHARS) is what RE2 cannot stop in
            if regex.search(line):
                if len(hits) == cap:
                    return hits, True
                hits.append(f"{rel}:{number}:{line}")
    return hits, False


def _grep_rg(workspace: Workspace, start: Path, pattern: str, args: dict[str, Any],
             context: ToolContext) -> tuple[list[str], bool] | None:
    """ripgrep's matching lines, each re-checked by the workspace gate; None when rg refused the pattern.

    ``--engine default``: ripgrep's own linear engine, never PCRE2 (which backtracks, and has look-arounds RE2
    refuses); ``--no-config``: no configuration file can change that. ``--crlf``: "$" matches before a CRLF,
    as in the Python engine, which drops the CR.
    """
    rg = shutil.which("rg")
    assert rg is not None
    argv = [rg, "--no-config", "--engine", "default", "--crlf", "--line-number", "--with-filename", "--no-heading",
            "--color", "never", "--no-follow", "--hidden", "--no-ignore", "--sort", "path",
            "--max-columns", str(MAX_LINE_CHARS), "--max-filesize", str(context.limits.max_file_bytes)]
    if args["ignore_case"]:
        argv.append("--ignore-case")
    if args.get("glob"):
        argv += ["--glob", args["glob"]]
    for excluded in workspace.exclude:  # after the model's glob: a later glob wins in ripgrep
        argv += ["--iglob", "!" + excluded.rstrip("/")]
    named = set(start.relative_to(workspace.root).parts)  # a skipped folder named in `path` is searched
    for folder in sorted(workspace.skip_dirs - named):
        argv += ["--glob", f"!{folder}/"]
    argv += ["--", pattern, workspace.relative(start)]
    cap = context.limits.max_entries
    hits: list[str] = []
    as_read: dict[str, list[str] | None] = {}
    with workspace.pinned() as root:  # rg starts in the root as checked, whatever is renamed meanwhile
        result = run_process(argv, context, cwd=root, env=plain_env(), max_bytes=context.limits.max_output_chars * 4)
    if result.timed_out:
        raise ToolTimeout(timeout_message(context.limits.timeout_seconds))
    cut = result.cut
    if result.returncode == 2 and not result.stdout:  # rg's "error" status: a regex syntax it does not take
        logger.debug("ripgrep refused %r: %s", pattern, result.stderr[:500])
        return None
    # Split on "\n" only, as ripgrep does: a form feed or a U+2028 inside a line does not start a new one.
    lines = result.stdout.decode("utf-8", errors="replace").split("\n")
    lines.pop()  # the text after the last newline: empty, or a line cut in the middle by the byte cap
    for line in lines:
        line = line.removesuffix("\r")
        rel, sep, rest = line.partition(":")
        if not sep:
            continue
        rel = rel.removeprefix("./")
        if rel not in as_read:  # rg's output is sorted by path: one file's lines at a time
            context.check_deadline()  # each file rg found is read again (up to max_file_bytes)
            as_read = {rel: _lines_as_read(rel, context)}
        if not _printed_as_read(as_read[rel], rest):
            continue
        if len(hits) == cap:
            return hits, True
        hits.append(f"{rel}:{rest}")
    return hits, cut


def count_matches(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    workspace, start = _start(context, args["path"])
    regex = Pattern(args["pattern"], ignore_case=args["ignore_case"])
    counts: list[tuple[int, str]] = []
    for path in workspace.files(start, check=context.check_deadline):
        context.check_deadline()
        count = 0
        for _, line in _text_lines(path, context):
            context.check_deadline()  # per line, as in grep
            count += regex.count(line)
        if count:
            counts.append((count, workspace.relative(path)))
    if not counts:
        return f"no match for {args['pattern']!r} under {workspace.relative(start)!r}"
    counts.sort(key=lambda item: (-item[0], item[1]))
    cap = context.limits.max_entries
    lines = [f"total: {sum(c for c, _ in counts)} matches in {len(counts)} files"]
    lines += [f"{count}\t{rel}" for count, rel in counts[:cap]]
    truncated = len(counts) > cap
    if truncated:
        lines.append(f"[{len(counts) - cap} more files not listed]")
    return ToolResult(output="\n".join(lines), truncated=truncated)


# -- symbols ----------------------------------------------------------------------------------


def _python_symbols(source: str, name: str) -> Iterator[tuple[int, str, str]]:
    """(line, kind, qualified name) of each definition of ``name`` in a Python module."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):  # not valid Python (a template, Python 2): no symbol found there
        return

    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[int, str, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                kind = {ast.FunctionDef: "def", ast.AsyncFunctionDef: "async def", ast.ClassDef: "class"}[type(child)]
                qualified = f"{prefix}{child.name}"
                if child.name == name:
                    yield child.lineno, kind, qualified
                yield from visit(child, qualified + ".")
            elif isinstance(child, (ast.If, ast.Try)) and not prefix:  # module-level `if TYPE_CHECKING:` etc.
                yield from visit(child, prefix)

    yield from visit(tree, "")
    for node in tree.body:  # assignments at module level only
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Name) and leaf.id == name:
                    yield node.lineno, "assignment", name


_DEFINERS = r"(?:function|def|class|struct|enum|interface|type|trait|impl|fn|func|const|let|var|module|macro)"


def _definition(name: str) -> Pattern:
    """A line defining ``name`` in most languages: a keyword, maybe a receiver in parentheses, the name."""
    # RE2, as for a model's pattern: the name is the model's, and "\([^)]*\)" backtracks in Python's re.
    # Word edges are spelled out (RE2's \b knows only ASCII letters; a name may hold others).
    edge = r"[^\pL\pN_$]"
    return Pattern(rf"(?:^|{edge}){_DEFINERS}\s+(?:\([^)]*\)\s*)?{re.escape(name)}(?:$|{edge})")


def _other_symbols(lines: Iterator[tuple[int, str]], regex: Pattern,
                   context: ToolContext) -> Iterator[tuple[int, str, str]]:
    for number, line in lines:
        context.check_deadline()
        if regex.search(line):
            yield number, "definition", line.strip()


def find_symbol(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    workspace, start = _start(context, args["path"])
    name = args["name"]
    if not re.fullmatch(r"[A-Za-z_$][\w$]*", name):
        raise ToolError(f"{name!r} is not an identifier; give a bare function, class or variable name")
    definition = _definition(name)
    cap = context.limits.max_entries
    found: list[str] = []
    for path in workspace.files(start, check=context.check_deadline):
        context.check_deadline()
        rel = workspace.relative(path)
        if path.suffix in (".py", ".pyi"):
            source = _peek(path, context)
            hits: Iterator[tuple[int, str, str]]
            if name not in source:
                hits = iter(())
            elif len(source) <= MAX_PARSED_CHARS:
                hits = _python_symbols(source, name)
            else:  # too long to parse while every other thread waits: by keyword, as for other languages
                lines = ((n, line) for n, line in enumerate(_lines_of(source), 1) if len(line) <= MAX_LINE_CHARS)
                hits = _other_symbols(lines, definition, context)
        else:
            hits = _other_symbols(_text_lines(path, context), definition, context)
        for line, kind, what in hits:
            found.append(f"{rel}:{line}: {kind} {what}")
            if len(found) > cap:
                note = f"\n[stopped at {cap} definitions; narrow the path]"
                return ToolResult(output="\n".join(found[:cap]) + note, truncated=True)
    if not found:
        return f"no definition of {name!r} found under {workspace.relative(start)!r}"
    return "\n".join(found)


def _peek(path: Path, context: ToolContext) -> str:
    """The file's text when it is small enough to read, for a quick "is the name even there" check."""
    data = _small_file(path, context)
    return "" if data is None else data.decode("utf-8", errors="replace")


def _lines_as_read(rel: str, context: ToolContext) -> list[str] | None:
    """The lines of ``rel`` as the workspace's own gate reads it (None: it may not be read, or is not text).

    ripgrep walks and opens by path, so a folder swapped for a symlink while it runs can send it
    outside the workspace; what it prints is shown only when this read has the same line."""
    data = _small_file(rel, context)
    if data is None or looks_binary(data[:SNIFF_BYTES]):
        return None
    return data.decode("utf-8", errors="replace").split("\n")


def _printed_as_read(lines: list[str] | None, printed: str) -> bool:
    """Whether ripgrep's ``number:text`` is line ``number`` of ``lines`` (or the start of it, or rg's note
    for a line too long to show)."""
    number, sep, text = printed.partition(":")
    if lines is None or not sep or not (number.isascii() and number.isdigit()) or not 1 <= int(number) <= len(lines):
        return False
    line = lines[int(number) - 1]
    if text.startswith("[Omitted long line"):
        return len(line.encode("utf-8", errors="replace")) > MAX_LINE_CHARS
    return line.startswith(text)


def _small_file(path: Path | str, context: ToolContext) -> bytes | None:
    """The content of a file no larger than the read cap, read through the workspace's gate; None otherwise."""
    cap = context.limits.max_file_bytes
    try:
        data, size = context.require_workspace().read_bytes(path, cap + 1)
    except (OSError, PathRefused):  # vanished, unreadable or swapped while searching: skipped like a binary file
        return None
    return None if size > cap or len(data) > cap else data


def search_files(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    workspace = context.require_workspace()
    pattern = args["name_pattern"].lower()
    is_glob = any(c in pattern for c in "*?[")
    cap = context.limits.max_entries
    found: list[str] = []
    truncated = False
    for path, _is_dir, _ in workspace.walk(workspace.root, check=context.check_deadline):
        context.check_deadline()  # per entry too: a folder may hold many, each matched against the glob
        name = path.name.lower()
        if fnmatchcase(name, pattern) if is_glob else pattern in name:
            if len(found) == cap:
                truncated = True
                break
            found.append(workspace.relative(path) + ("/" if _is_dir else ""))
    if not found:
        return f"no file or folder name matches {args['name_pattern']!r}"
    note = f"\n[stopped at {cap} names; use a more specific pattern]" if truncated else ""
    return ToolResult(output="\n".join(sorted(found)) + note, truncated=truncated)


# -- history ----------------------------------------------------------------------------------


def search_history(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    if context.history is None:
        raise ToolError("no session history is available here; search_history cannot be used")
    hits = context.history.search(args["query"], args["limit"])
    if not hits:
        return f"no earlier session matches {args['query']!r}"
    blocks = [f"session {h.session_id} - {h.title} ({h.round_kind}, {h.participant}):\n  {h.excerpt}" for h in hits]
    return "\n".join(blocks)


def lookup_session(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    if context.history is None:
        raise ToolError("no session history is available here; lookup_session cannot be used")
    synthesis = context.history.final_synthesis(args["session_id"])
    if synthesis is None:
        return ToolResult(output="", error=f"session {args['session_id']!r} has no final synthesis (unknown session, "
                                             "or it never finished); use search_history to find session ids")
    return synthesis


_PATH = {"type": "string", "minLength": 1, "maxLength": 4096, "default": ".",
         "description": "a file or folder relative to the workspace root"}
_PATTERN = {"type": "string", "minLength": 1, "maxLength": MAX_PATTERN_CHARS,
            "description": "a regular expression (RE2 syntax, as ripgrep's: no look-arounds, no backreferences)"}

TOOLS = (
    Tool("grep", "Search file contents for a regular expression; prints path:line:text for each matching line.",
         schema({"pattern": _PATTERN, "path": _PATH,
                 "glob": {"type": "string", "maxLength": 500, "description": "only files matching this glob, e.g. '*.py'"},
                 "ignore_case": {"type": "boolean", "default": False}}, ("pattern",)),
         "search", True, grep),
    Tool("find_symbol", "Find where a function, class or variable is defined (Python precisely, other languages by "
         "keyword).", schema({"name": {"type": "string", "minLength": 1, "maxLength": 200}, "path": _PATH}, ("name",)),
         "search", True, find_symbol),
    Tool("search_files", "Find files and folders by name: a substring, or a glob such as 'test_*.py'.",
         schema({"name_pattern": {"type": "string", "minLength": 1, "maxLength": 500}}, ("name_pattern",)),
         "search", True, search_files),
    Tool("count_matches", "Count the matches of a regular expression per file, most first, with the total.",
         schema({"pattern": _PATTERN, "path": _PATH, "ignore_case": {"type": "boolean", "default": False}},
                ("pattern",)), "search", True, count_matches),
    Tool("search_history", "Search earlier deliberation sessions for a query; returns session ids with excerpts.",
         schema({"query": {"type": "string", "minLength": 1, "maxLength": 500},
                 "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 5}}, ("query",)),
         "search", True, search_history),
    Tool("lookup_session", "Read the final synthesis of an earlier session by its id.",
         schema({"session_id": {"type": "string", "minLength": 1, "maxLength": 200}}, ("session_id",)),
         "search", True, lookup_session),
)
