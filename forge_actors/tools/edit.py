"""Edit tools (NOT read-only; only when the operator enables the "edit" category): write a file, apply a patch.

Every target goes through the workspace. A patch is parsed and applied in Python, in memory,
to every file first; only when all hunks of all files apply is anything written, and each
file is written atomically (``Workspace.write_bytes``: a temporary file in the same folder,
renamed over the target, both relative to the folder's descriptor).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from forge_actors.tools.base import Tool, ToolContext, ToolError, ToolOutput, schema
from forge_actors.tools.workspace import Workspace

MAX_PATCH_CHARS = 1 << 20
#: How far from its stated line a hunk may have moved and still apply.
MAX_FUZZ_LINES = 200


def _exists(workspace: Workspace, path: str) -> bool:
    """Whether the file ``path`` exists; ToolError when it is a folder or a file stands on its way."""
    try:
        entry = workspace.stat(path)
    except FileNotFoundError:  # not there yet: write_file and a patch's new file create it
        return False
    except NotADirectoryError as blocked:
        raise ToolError(f"{blocked.filename!r} is a file, so {path!r} cannot be created below it") from None
    if entry.is_dir:
        raise ToolError(f"{path!r} is a folder; give a file path")
    return True


def write_file(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    workspace = context.require_workspace()
    data = args["content"].encode("utf-8")
    if len(data) > context.limits.max_file_bytes:
        raise ToolError(f"content is {len(data)} bytes; at most {context.limits.max_file_bytes} can be written")
    _exists(workspace, args["path"])  # its refusals say more than a failed write would
    replaced = workspace.write_bytes(args["path"], data)
    return f"{'replaced' if replaced else 'created'} {workspace.name(args['path'])} ({len(data)} bytes)"


# -- unified diffs ----------------------------------------------------------------------------

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


@dataclass
class Hunk:
    old_start: int
    old: list[str] = field(default_factory=list)  # context and removed lines
    new: list[str] = field(default_factory=list)  # context and added lines


@dataclass
class FilePatch:
    old_path: str | None  # None: the file is created
    new_path: str | None  # None: the file is deleted
    hunks: list[Hunk] = field(default_factory=list)


def _strip_prefix(name: str) -> str | None:
    name = name.split("\t", 1)[0].strip()
    if name == "/dev/null":
        return None
    if name.startswith(("a/", "b/")):
        name = name[2:]
    return name


def parse_patch(text: str) -> list[FilePatch]:
    lines = text.splitlines(keepends=True)
    patches: list[FilePatch] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            current = FilePatch(_strip_prefix(line[4:]), _strip_prefix(lines[i + 1][4:]))
            patches.append(current)
            i += 2
            while i < len(lines) and (match := _HUNK.match(lines[i])):
                old_count = int(match.group(2) or "1")
                new_count = int(match.group(4) or "1")
                hunk = Hunk(int(match.group(1)))
                i += 1
                while (old_count > 0 or new_count > 0) and i < len(lines):
                    body = lines[i]
                    tag, content = body[:1], body[1:]
                    if body.startswith("\\"):  # "\ No newline at end of file"
                        i += 1
                        continue
                    if tag == " " or body in ("\n", "\r\n"):
                        content = content if tag == " " else body
                        hunk.old.append(content)
                        hunk.new.append(content)
                        old_count -= 1
                        new_count -= 1
                    elif tag == "-":
                        hunk.old.append(content)
                        old_count -= 1
                    elif tag == "+":
                        hunk.new.append(content)
                        new_count -= 1
                    else:
                        raise ToolError(f"line {i + 1} of the patch is not part of a hunk: {body.rstrip()!r}")
                    i += 1
                if old_count > 0 or new_count > 0:
                    raise ToolError("the patch ends in the middle of a hunk (its line counts do not match)")
                while i < len(lines) and lines[i].startswith("\\"):
                    i += 1
                current.hunks.append(hunk)
            continue
        i += 1
    if not patches:
        raise ToolError("no file in the patch: give a unified diff with '--- a/path' and '+++ b/path' lines")
    return patches


def _apply_hunks(original: list[str], hunks: list[Hunk], name: str, check: Callable[[], None]) -> list[str]:
    result: list[str] = []
    position = 0  # next line of ``original`` not yet copied
    for number, hunk in enumerate(hunks, 1):
        wanted = max(hunk.old_start - 1, 0) if hunk.old else hunk.old_start
        at = _find(original, hunk.old, wanted, position, check)
        if at is None:
            raise ToolError(f"hunk {number} of {name!r} does not apply: its context lines are not in the file "
                            "(read the file again and make a patch against what it holds now)")
        result += original[position:at]
        result += hunk.new
        position = at + len(hunk.old)
    return result + original[position:]


def _same(a: str, b: str) -> bool:
    return a.rstrip("\r\n") == b.rstrip("\r\n")


def _find(lines: list[str], block: list[str], wanted: int, floor: int, check: Callable[[], None]) -> int | None:
    if not block:
        return min(max(wanted, floor), len(lines))
    for offset in range(MAX_FUZZ_LINES + 1):
        check()  # each position compares up to the whole block: a 1 MiB patch's hunk, 401 positions
        for at in {wanted - offset, wanted + offset}:
            if floor <= at <= len(lines) - len(block) and all(_same(lines[at + k], b) for k, b in enumerate(block)):
                return at
    return None


def _original(workspace: Workspace, name: str, context: ToolContext) -> list[str]:
    """The lines of the file a patch changes (at most ``max_file_bytes`` of it can be patched)."""
    cap = context.limits.max_file_bytes
    try:
        data, size = workspace.read_bytes(name, cap + 1)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise ToolError(f"the patch changes {name!r}, which does not exist") from None
    if len(data) > cap:
        raise ToolError(f"{name!r} is {size} bytes, more than the {cap}-byte cap; it cannot be patched")
    try:
        return data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        raise ToolError(f"{name!r} is not a UTF-8 text file; it cannot be patched") from None


def apply_patch(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    workspace = context.require_workspace()
    if len(args["patch"]) > MAX_PATCH_CHARS:
        raise ToolError(f"the patch is larger than {MAX_PATCH_CHARS} characters; split it")
    planned: list[tuple[str, bytes | None, str]] = []
    for file in parse_patch(args["patch"]):
        name = file.new_path or file.old_path
        assert name is not None
        if file.old_path and file.new_path and file.old_path != file.new_path:
            raise ToolError(f"renames are not supported ({file.old_path!r} -> {file.new_path!r}); "
                            "write the new file and delete the old one in separate patches")
        exists = _exists(workspace, name)
        if file.old_path is None:
            if exists:
                raise ToolError(f"the patch creates {name!r}, which exists already")
            original: list[str] = []
        else:
            if not exists:
                raise ToolError(f"the patch changes {name!r}, which does not exist")
            original = _original(workspace, name, context)
        context.check_deadline()
        if file.new_path is None:
            planned.append((name, None, f"deleted {name}"))
            continue
        # A last line without a newline gets one before lines are appended after it.
        if original and not original[-1].endswith("\n"):
            original[-1] += "\n"
        patched = _apply_hunks(original, file.hunks, name, context.check_deadline)
        planned.append((name, "".join(patched).encode("utf-8"),
                        f"{'created' if file.old_path is None else 'patched'} {name} ({len(file.hunks)} hunk(s))"))
    for name, data, _ in planned:  # every file checked and computed before anything is written
        if data is None:
            workspace.delete(name)
        else:
            workspace.write_bytes(name, data)
    return "\n".join(summary for _, _, summary in planned)


TOOLS = (
    Tool("write_file", "Create or replace a text file of the workspace with the given content.",
         schema({"path": {"type": "string", "minLength": 1, "maxLength": 4096},
                 "content": {"type": "string"}}, ("path", "content")),
         "edit", False, write_file),
    Tool("apply_patch", "Apply a unified diff (--- a/path, +++ b/path, @@ hunks) to files of the workspace; nothing "
         "is changed unless every hunk applies.",
         schema({"patch": {"type": "string", "minLength": 1}}, ("patch",)), "edit", False, apply_patch),
)
