"""File tools (read-only): read, list, describe and outline files of the workspace."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any

from forge_actors.tools.base import Tool, ToolContext, ToolError, ToolOutput, ToolResult, schema
from forge_actors.tools.workspace import Entry, glob_match

#: The first bytes looked at to tell a binary file from a text one.
SNIFF_BYTES = 8192
MAX_READ_MANY = 10
MAX_TREE_DEPTH = 10


@dataclass(frozen=True)
class TextFile:
    rel: str
    text: str
    size: int
    cut: bool  # only the first max_file_bytes were read


def looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        return error.start < len(head) - 4  # a multi-byte character cut at the end of the sniff is still text
    return False


def read_text(context: ToolContext, path: str) -> TextFile:
    """A text file of the workspace, at most ``max_file_bytes`` of it; ToolError for what cannot be read."""
    workspace = context.require_workspace()
    rel = workspace.name(path)
    cap = context.limits.max_file_bytes
    try:
        data, size = workspace.read_bytes(path, cap + 1)
    except (FileNotFoundError, NotADirectoryError):
        raise ToolError(f"there is no file {rel!r}; use list_files or search_files to find the right path") from None
    except IsADirectoryError:
        raise ToolError(f"{rel!r} is a folder; use list_files or tree to see what it holds") from None
    if looks_binary(data[:SNIFF_BYTES]):
        raise ToolError(f"{rel!r} is a binary file ({size} bytes); only text files can be read")
    cut = len(data) > cap
    return TextFile(rel, data[:cap].decode("utf-8", errors="replace"), size, cut)


def _numbered(file: TextFile, start: int | None, end: int | None) -> ToolResult:
    lines = file.text.splitlines()
    total = len(lines)
    first = max(1, start or 1)
    last = min(total, end) if end is not None else total
    if end is not None and start is not None and end < start:
        raise ToolError(f"end_line ({end}) is before start_line ({start})")
    if total and first > total:
        raise ToolError(f"{file.rel!r} has {total} lines{' in the part read' if file.cut else ''}; "
                        f"start_line {first} is past its end")
    body = "\n".join(f"{n:>6}\t{lines[n - 1]}" for n in range(first, last + 1))
    header = f"{file.rel} (lines {first}-{last} of {total}{'+' if file.cut else ''})"
    note = ""
    if file.cut:
        note = (f"\n[only the first {len(file.text.encode('utf-8', 'replace'))} of {file.size} bytes were read; "
                "the rest of the file is not shown]")
    return ToolResult(output=f"{header}\n{body}{note}", truncated=file.cut)


def read_file(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    return _numbered(read_text(context, args["path"]), args.get("start_line"), args.get("end_line"))


def read_many(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    parts: list[str] = []
    truncated = False
    for path in args["paths"]:
        context.check_deadline()
        try:
            result = _numbered(read_text(context, path), None, None)
        except (ToolError, ValueError) as error:  # one bad path does not hide the others
            parts.append(f"{path}: error: {error}")
            continue
        truncated = truncated or result.truncated
        parts.append(result.output)
    return ToolResult(output="\n\n".join(parts), truncated=truncated)


def _start(context: ToolContext, path: str) -> Entry:
    workspace = context.require_workspace()
    try:
        return workspace.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise ToolError(f"there is no folder {path!r}; use '.' for the workspace root") from None


def list_files(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    workspace = context.require_workspace()
    start = _start(context, args["path"])
    pattern = args["pattern"]
    cap = context.limits.max_entries
    found: list[str] = []
    truncated = False
    for path in workspace.files(start.path, check=context.check_deadline):
        context.check_deadline()  # per file too: a long glob takes a few ms a path, and a folder may hold many
        rel_to_start = path.relative_to(start.path).as_posix() if start.is_dir else path.name
        if glob_match(pattern, rel_to_start):
            if len(found) == cap:
                truncated = True
                break
            found.append(workspace.relative(path))
    found.sort()
    if not found:
        return f"no file matches {args['pattern']!r} under {start.rel!r}"
    note = f"\n[listing stopped at {cap} entries; use a narrower pattern or path]" if truncated else ""
    return ToolResult(output="\n".join(found) + note, truncated=truncated)


def file_info(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    workspace = context.require_workspace()
    rel = workspace.name(args["path"])
    try:
        entry = workspace.stat(args["path"])  # a FIFO, socket or device is refused here, never opened
    except (FileNotFoundError, NotADirectoryError):
        raise ToolError(f"there is no file or folder {rel!r}") from None
    if entry.is_dir:
        count = sum(1 for _ in workspace.walk(entry.path, max_depth=1, check=context.check_deadline))
        return f"path: {rel}\ntype: folder\nentries: {count}\nmodified: {_modified(entry.stat)}"
    cap = context.limits.max_file_bytes
    try:
        with workspace.open_file(args["path"]) as handle:
            found = os.fstat(handle.fileno())
            head = handle.read(SNIFF_BYTES)
            rest = handle.read(cap + 1 - len(head)) if found.st_size <= cap and not looks_binary(head) else b""
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):  # replaced since the stat just above
        raise ToolError(f"{rel!r} changed while it was read; try again") from None
    if looks_binary(head):
        kind, lines = "binary file", "n/a"
    elif found.st_size <= cap and len(head) + len(rest) <= cap:
        kind, lines = "text file", str(len((head + rest).splitlines()))
    else:
        kind, lines = "text file", f"unknown (larger than the {cap}-byte read cap)"
    return (f"path: {rel}\ntype: {kind}\nsize: {found.st_size} bytes\nlines: {lines}\n"
            f"modified: {_modified(found)}")


def _modified(found: os.stat_result) -> str:
    return dt.datetime.fromtimestamp(found.st_mtime, dt.UTC).isoformat(timespec="seconds")


def tree(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    workspace = context.require_workspace()
    start = _start(context, args["path"])
    if not start.is_dir:
        raise ToolError(f"{start.rel!r} is a file; tree shows folders")
    cap = context.limits.max_entries
    lines = [start.rel + "/"]
    truncated = False
    for path, is_dir, depth in workspace.walk(start.path, max_depth=args["depth"], check=context.check_deadline):
        if len(lines) > cap:
            truncated = True
            break
        lines.append("  " * depth + path.name + ("/" if is_dir else ""))
    note = f"\n[tree stopped at {cap} entries; ask for a sub-folder or a smaller depth]" if truncated else ""
    return ToolResult(output="\n".join(lines) + note, truncated=truncated)


_PATH = {"type": "string", "minLength": 1, "maxLength": 4096, "description": "a path relative to the workspace root"}

TOOLS = (
    Tool("read_file", "Read a text file of the workspace with line numbers; give start_line/end_line for a part of a "
         "long file.", schema({"path": _PATH, "start_line": {"type": "integer", "minimum": 1},
                               "end_line": {"type": "integer", "minimum": 1}}, ("path",)),
         "file", True, read_file),
    Tool("list_files", "List the files whose path (relative to `path`) matches a glob such as '**/*.py' or 'src/*'; "
         "sorted, capped.", schema({"pattern": {"type": "string", "minLength": 1, "maxLength": 500, "default": "**/*"},
                                    "path": {**_PATH, "default": "."}}),
         "file", True, list_files),
    Tool("file_info", "Size, line count, type and modification time of a file or folder.",
         schema({"path": _PATH}, ("path",)), "file", True, file_info),
    Tool("tree", "Show the folder structure below a path, down to `depth` levels.",
         schema({"path": {**_PATH, "default": "."},
                 "depth": {"type": "integer", "minimum": 1, "maximum": MAX_TREE_DEPTH, "default": 3}}),
         "file", True, tree),
    Tool("read_many", f"Read several text files at once (at most {MAX_READ_MANY}), each with line numbers.",
         schema({"paths": {"type": "array", "items": _PATH, "minItems": 1, "maxItems": MAX_READ_MANY}}, ("paths",)),
         "file", True, read_many),
)
