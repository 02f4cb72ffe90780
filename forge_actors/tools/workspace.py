"""The folder the tools may see, and the one gate every path goes through.

``Workspace.resolve`` turns what a model wrote into a path inside the root, or refuses it
with ``PathRefused``. The rules are deliberately blunt — no ``..`` at all, no symlink anywhere
on the way (even one pointing inside), no absolute path outside the root, no secret-looking
file — because a refusal costs the model one more call while a leak cannot be taken back.
Listing and search tools walk with ``Workspace.walk``, which skips the same entries silently
and never follows a symlink.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

#: Never readable, listed or searched. Each pattern is matched (case-insensitively, shell-style)
#: against every component of a path relative to the root; a trailing "/" marks a folder.
#:
#: ===================  =========================================================
#: pattern              why
#: ===================  =========================================================
#: ``.git``             git internals (hooks, config, objects; in a worktree, the file naming them); git tools ask git
#: ``.env``, ``.env.*`` environment files: API keys and passwords
#: ``*.pem``, ``*.key`` private keys and certificates
#: ``id_rsa*``, ``id_ed25519*``, ``id_ecdsa*``, ``id_dsa*``  SSH keys
#: ``*.p12``, ``*.pfx`` key stores
#: ``.netrc``, ``.pgpass``, ``.npmrc``, ``.pypirc``  credentials of network tools and registries
#: ``credentials*``     cloud and tool credential files
#: ``*.kdbx``           password databases
#: ``.ssh/``, ``.aws/``, ``.gnupg/``  folders of keys
#: ===================  =========================================================
#:
#: The event log (``*.db`` and its ``-wal``/``-shm``) is not a pattern: the engine passes those
#: exact files as ``protected``.
DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".git",
    ".env", ".env.*",
    "*.pem", "*.key",
    "id_rsa*", "id_ed25519*", "id_ecdsa*", "id_dsa*",
    "*.p12", "*.pfx",
    ".netrc", ".pgpass", ".npmrc", ".pypirc",
    "credentials*",
    "*.kdbx",
    ".ssh/", ".aws/", ".gnupg/",
)


#: Folders that listing and search tools do not walk into (they are noise, not secrets: a path
#: inside one can still be read, listed or searched when named explicitly).
DEFAULT_SKIPPED_DIRS: tuple[str, ...] = (
    ".venv", "venv", "node_modules", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox", ".nox",
    ".hypothesis",
)


class PathRefused(ValueError):
    """A path a tool may not touch; the message says why and what to use instead."""


class Workspace:
    def __init__(self, root: str | os.PathLike[str], *, exclude: Iterable[str] = DEFAULT_EXCLUDES,
                 protected: Iterable[str | os.PathLike[str]] = (),
                 skip_dirs: Iterable[str] = DEFAULT_SKIPPED_DIRS) -> None:
        given = Path(root).absolute()
        self.root = Path(os.path.realpath(given))
        if not self.root.is_dir():
            raise ValueError(f"workspace root {str(given)!r} is not a folder")
        self._roots = {given, self.root}  # an absolute path may name the root either way
        self.exclude = tuple(exclude)
        self._patterns = tuple((p.rstrip("/").lower(), p.endswith("/")) for p in self.exclude)
        self.skip_dirs = frozenset(skip_dirs)
        self.protected = frozenset(Path(os.path.realpath(Path(p).absolute())) for p in protected)

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    # -- the gate ---------------------------------------------------------------------------

    def resolve(self, path: str) -> Path:
        """``path`` (relative to the root, or absolute inside it) as an absolute path; PathRefused if not allowed.

        The path need not exist (write_file creates one); every component that does exist is
        checked not to be a symlink.
        """
        if not isinstance(path, str):
            raise PathRefused("a path must be a string")
        if "\x00" in path:
            raise PathRefused("a path may not contain a NUL byte")
        parts = self._relative_parts(path)
        if ".." in parts:
            raise PathRefused(f"path {path!r} uses '..'; use a path relative to the workspace root, without '..'")
        current = self.root
        for index, part in enumerate(parts):
            current = current / part
            if current.is_symlink():
                raise PathRefused(f"path {path!r} goes through a symbolic link ({'/'.join(parts[: index + 1])}); "
                                  "symbolic links are not followed")
            if self._excluded_part(part, is_dir=index < len(parts) - 1 or current.is_dir()):
                raise PathRefused(f"path {path!r} is excluded from the workspace (it may hold secrets)")
        if current in self.protected:
            raise PathRefused(f"path {path!r} is protected and cannot be read")
        return current

    def _relative_parts(self, path: str) -> list[str]:
        pure = PurePosixPath(path)
        if path.startswith("~"):
            raise PathRefused(f"path {path!r} leaves the workspace; use a path relative to the workspace root")
        if pure.is_absolute():
            for root in self._roots:
                if pure.is_relative_to(root):
                    pure = pure.relative_to(root)
                    break
            else:
                raise PathRefused(f"path {path!r} leaves the workspace; use a path relative to the workspace root")
        return [part for part in pure.parts if part not in ("", ".")]

    # -- exclusions -------------------------------------------------------------------------

    def _excluded_part(self, name: str, *, is_dir: bool) -> bool:
        lowered = name.lower()
        return any(fnmatchcase(lowered, pattern) for pattern, dir_only in self._patterns if is_dir or not dir_only)

    def is_excluded(self, path: Path) -> bool:
        """True for an absolute path under the root that the exclusions or ``protected`` hide."""
        if path in self.protected:
            return True
        try:
            parts = path.relative_to(self.root).parts
        except ValueError:  # not under the root at all: hidden, like an excluded path
            return True
        last = len(parts) - 1
        return any(self._excluded_part(p, is_dir=i < last or path.is_dir()) for i, p in enumerate(parts))

    def relative(self, path: Path) -> str:
        """How a tool names ``path`` to the model: relative to the root, with "/" separators."""
        rel = path.relative_to(self.root).as_posix()
        return rel or "."

    # -- walking ----------------------------------------------------------------------------

    def walk(self, start: Path, *, max_depth: int | None = None,
             check: Callable[[], None] | None = None) -> Iterator[tuple[Path, bool, int]]:
        """Every visible entry below ``start`` as ``(path, is_dir, depth)``, depth first, sorted by name.

        Excluded entries, protected files, symlinks and the ``skip_dirs`` folders are skipped
        silently; ``check`` is called before each folder is read (the deadline of the tool that walks).
        """
        stack: list[tuple[Path, int]] = [(start, 1)]
        while stack:
            folder, depth = stack.pop()
            if check is not None:
                check()
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError:  # unreadable or vanished while walking: a listing shows what it can
                continue
            subfolders: list[tuple[Path, int]] = []
            for entry in entries:
                if entry.is_symlink():
                    continue
                path = Path(entry.path)
                is_dir = entry.is_dir(follow_symlinks=False)
                if path in self.protected or self._excluded_part(entry.name, is_dir=is_dir):
                    continue
                if is_dir and entry.name in self.skip_dirs:
                    continue
                yield path, is_dir, depth
                if is_dir and (max_depth is None or depth < max_depth):
                    subfolders.append((path, depth + 1))
            stack.extend(reversed(subfolders))

    def files(self, start: Path, *, check: Callable[[], None] | None = None) -> Iterator[Path]:
        """Every visible regular file below ``start`` (or ``start`` itself when it is a file)."""
        if start.is_file():
            yield start
            return
        for path, is_dir, _ in self.walk(start, check=check):
            if not is_dir and path.is_file():
                yield path


def glob_match(pattern: str, path: str, *, name_only_without_slash: bool = False) -> bool:
    """Whether a "/"-separated ``path`` matches a shell glob: ``**`` (a whole segment) spans folders,
    ``*``, ``?`` and ``[...]`` stay inside one segment. With ``name_only_without_slash`` (grep's
    ``glob``, as in ripgrep), a pattern without "/" matches the file name at any depth.

    Matched segment by segment (fnmatch per segment, a small table over segments), never as one
    big regular expression, so that a glob full of stars cannot take exponential time.
    """
    names = [p for p in path.split("/") if p]
    if name_only_without_slash and "/" not in pattern.strip("/"):
        return bool(names) and (pattern == "**" or fnmatchcase(names[-1], pattern.strip("/")))
    segments = [p for p in pattern.split("/") if p]

    @functools.cache
    def match(i: int, j: int) -> bool:
        if i == len(segments):
            return j == len(names)
        if segments[i] == "**":
            return match(i + 1, j) or (j < len(names) and match(i, j + 1))
        return j < len(names) and fnmatchcase(names[j], segments[i]) and match(i + 1, j + 1)

    return match(0, 0)
