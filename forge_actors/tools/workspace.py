"""The folder the tools may see, and the one gate every path goes through.

``Workspace.resolve`` turns what a model wrote into a path inside the root, or refuses it
with ``PathRefused``. The rules are deliberately blunt — no ``..`` at all, no symlink anywhere
on the way (even one pointing inside), no absolute path outside the root, no secret-looking
file — because a refusal costs the model one more call while a leak cannot be taken back.

A path that was checked is never given to the kernel again to be looked up by name: a folder
swapped for a symlink between the check and the use would be followed. So the tools read, list,
walk and write through the Workspace (``open_file``, ``read_bytes``, ``stat``, ``write_bytes``,
``delete``, ``walk``, ``open_dir``/``pinned``), which goes down from a descriptor of the root one
component at a time (``openat`` with ``O_NOFOLLOW | O_DIRECTORY``), checks what it opened with
``fstat``, lists folders from their descriptors, and creates and renames relative to the
folder's descriptor. Only regular files and folders are opened: a FIFO, socket or device is
refused after an ``lstat`` of its name in its (already opened) folder, and a file is opened
``O_NONBLOCK`` so that one swapped in meanwhile cannot block either. Walks skip symlinks and
such entries silently.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import secrets
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase, translate
from pathlib import Path
from typing import BinaryIO

#: Never readable, listed or searched. A pattern without "/" is matched (case-insensitively,
#: shell-style) against every component of a path relative to the root; one with "/" inside
#: against consecutive components (``.docker/config.json`` at any depth); a trailing "/" marks a
#: folder (everything below it is hidden too).
#:
#: ===================================  ==================================================================
#: pattern                              why
#: ===================================  ==================================================================
#: ``.git``                             git internals (hooks, config, objects; in a worktree, the file
#:                                      naming them); the git tools ask git
#: ``.env``, ``.env.*``, ``.envrc``     environment files (direnv's too): API keys and passwords
#: ``*.pem``, ``*.key``                 private keys and certificates
#: ``id_rsa*``, ``id_ed25519*``,        SSH keys
#: ``id_ecdsa*``, ``id_dsa*``
#: ``*.p12``, ``*.pfx``, ``*.jks``,     key stores (PKCS#12, Java, PuTTY)
#: ``*.keystore``, ``*.ppk``
#: ``.netrc``, ``.pgpass``,             logins of network tools, databases, package registries and
#: ``.my.cnf``, ``.npmrc``,             clouds
#: ``.yarnrc``, ``.yarnrc.yml``,
#: ``.pypirc``, ``.boto``, ``.s3cfg``,
#: ``.vault-token``
#: ``.git-credentials``,                git's stored passwords; a user's git configuration can hold
#: ``.gitconfig``,                      tokens (``http.extraHeader``, ``url.*.insteadOf``)
#: ``.config/git/config``
#: ``credentials*``                     cloud and tool credential files (``.aws/credentials``, gcloud's,
#:                                      cargo's)
#: ``*.kdbx``                           password databases
#: ``.docker/config.json``,             container registry logins
#: ``.dockercfg``
#: ``.ssh/``, ``.gnupg/``, ``.aws/``,   folders of keys, tokens and cluster credentials
#: ``.azure/``, ``.kube/``,
#: ``.password-store/``,
#: ``.local/share/keyrings/``
#: ``.config/gh/``, ``.config/hub``,    the GitHub CLI's and hub's tokens; gcloud's application default
#: ``.config/gcloud/``                  credentials
#: ``.bashrc``, ``.bash_profile``,      shell start-up files: they often export tokens
#: ``.bash_login``, ``.profile``,
#: ``.zshrc``, ``.zprofile``,
#: ``.zshenv``, ``.zlogin``,
#: ``.config/fish/``
#: ``.*history``, ``fish_history``      shell and REPL histories (``.bash_history``, ``.psql_history``...):
#:                                      commands typed with their passwords
#: ``.terraformrc``, ``terraform.rc``,  Terraform: API tokens, variables (often secrets), state (secrets
#: ``*.tfvars``, ``*.tfvars.json``,     in clear)
#: ``*.tfstate``, ``*.tfstate.*``
#: ===================================  ==================================================================
#:
#: The event log (``*.db`` and its ``-wal``/``-shm``) is not a pattern: the engine passes those
#: exact files as ``protected``.
DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".git",
    ".env", ".env.*", ".envrc",
    "*.pem", "*.key",
    "id_rsa*", "id_ed25519*", "id_ecdsa*", "id_dsa*",
    "*.p12", "*.pfx", "*.jks", "*.keystore", "*.ppk",
    ".netrc", ".pgpass", ".my.cnf", ".npmrc", ".yarnrc", ".yarnrc.yml", ".pypirc", ".boto", ".s3cfg", ".vault-token",
    ".git-credentials", ".gitconfig", ".config/git/config",
    "credentials*",
    "*.kdbx",
    ".docker/config.json", ".dockercfg",
    ".ssh/", ".gnupg/", ".aws/", ".azure/", ".kube/", ".password-store/", ".local/share/keyrings/",
    ".config/gh/", ".config/hub", ".config/gcloud/",
    ".bashrc", ".bash_profile", ".bash_login", ".profile", ".zshrc", ".zprofile", ".zshenv", ".zlogin", ".config/fish/",
    ".*history", "fish_history",
    ".terraformrc", "terraform.rc", "*.tfvars", "*.tfvars.json", "*.tfstate", "*.tfstate.*",
)


#: Folders that listing and search tools do not walk into (they are noise, not secrets: a path
#: inside one can still be read, listed or searched when named explicitly).
DEFAULT_SKIPPED_DIRS: tuple[str, ...] = (
    ".venv", "venv", "node_modules", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox", ".nox",
    ".hypothesis",
)

#: Folders deeper than this below the root are not walked into: a walk holds one descriptor per level.
MAX_WALK_DEPTH = 100

_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: O_NONBLOCK: a FIFO swapped in after the lstat cannot block the open; O_NOCTTY: nor can a terminal become ours.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: Where a child process can be sent into a folder we hold open (``cwd=/proc/self/fd/N``).
_PROC_FDS = Path("/proc/self/fd")


class PathRefused(ValueError):
    """A path a tool may not touch; the message says why and what to use instead."""


class SpecialFileRefused(PathRefused):
    """A FIFO, socket or device: never opened (reading one could block or have effects)."""


@dataclass(frozen=True)
class Entry:
    """A regular file or a folder of the workspace, as ``Workspace.stat`` found it (never through a symlink)."""

    path: Path  # absolute, under the root
    rel: str  # how the tools name it to the model
    is_dir: bool
    stat: os.stat_result


@dataclass(frozen=True)
class _Lent:
    """A folder a walk holds open while its caller handles an entry it yielded: a read of a file
    in it (grep reading what ``files`` yields) opens the file from this descriptor instead of
    going down from the root again. The walk takes it back before it moves on or closes it."""

    parts: tuple[str, ...]
    fd: int


class _Patterns:
    """The exclusion patterns, compiled once: one expression for the single-component patterns
    (their number does not slow a walk), and the few multi-component ones matched on the
    components that end at the one being checked."""

    def __init__(self, patterns: Iterable[str]) -> None:
        any_kind: list[str] = []
        folders: list[str] = []
        self.multi: list[tuple[tuple[re.Pattern[str], ...], bool]] = []
        for pattern in patterns:
            segments = [s for s in pattern.lower().split("/") if s]
            if not segments:
                raise ValueError(f"exclusion pattern {pattern!r} names nothing")
            dir_only = pattern.endswith("/")
            if len(segments) == 1:
                (folders if dir_only else any_kind).append(translate(segments[0]))
            else:
                self.multi.append((tuple(re.compile(translate(s)) for s in segments), dir_only))
        self.any_kind = re.compile("|".join(any_kind)) if any_kind else None
        self.folders = re.compile("|".join(folders)) if folders else None
        #: Any last segment of a multi-component pattern: most names match none, and skip the windows.
        self.multi_last = re.compile("|".join(segments[-1].pattern for segments, _ in self.multi)) if self.multi else None

    def match_at(self, lowered: Sequence[str], index: int, is_dir: bool) -> bool:
        """Whether a pattern matches the components ending at ``lowered[index]`` (a folder when ``is_dir``)."""
        name = lowered[index]
        if self.any_kind is not None and self.any_kind.match(name):
            return True
        if is_dir and self.folders is not None and self.folders.match(name):
            return True
        if self.multi_last is None or not self.multi_last.match(name):
            return False
        for segments, dir_only in self.multi:
            first = index + 1 - len(segments)
            if first >= 0 and (is_dir or not dir_only) and all(
                    segment.match(lowered[first + k]) for k, segment in enumerate(segments)):
                return True
        return False


class Workspace:
    def __init__(self, root: str | os.PathLike[str], *, exclude: Iterable[str] = DEFAULT_EXCLUDES,
                 protected: Iterable[str | os.PathLike[str]] = (),
                 skip_dirs: Iterable[str] = DEFAULT_SKIPPED_DIRS) -> None:
        given = Path(root).absolute()
        self.root = Path(os.path.realpath(given))
        if not self.root.is_dir():
            raise ValueError(f"workspace root {str(given)!r} is not a folder")
        # An absolute path may name the root either way; each as the prefix of a path below it.
        self._root_prefixes = tuple(str(r).rstrip("/") + "/" for r in dict.fromkeys((self.root, given)))
        self.exclude = tuple(exclude)
        self._patterns = _Patterns(self.exclude)
        self.skip_dirs = frozenset(skip_dirs)
        self.protected = frozenset(Path(os.path.realpath(Path(p).absolute())) for p in protected)
        self._protected_parts = frozenset(p.relative_to(self.root).parts for p in self.protected
                                          if p.is_relative_to(self.root))
        # The protected files that exist now, by identity: a hard link to one under another name (or in
        # another folder of the workspace) is the same file, and is refused too.
        self._protected_files = frozenset(_identity(found) for found in map(_stat_or_none, self.protected)
                                          if found is not None)
        self._lent: dict[int, _Lent] = {}  # by thread: the folder of the walk that thread is inside, if any

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    # -- the gate ---------------------------------------------------------------------------

    def resolve(self, path: str) -> Path:
        """``path`` (relative to the root, or absolute inside it) as an absolute path; PathRefused if not allowed.

        The path need not exist (write_file creates one); every component that does exist is
        checked not to be a symlink. This only checks: a tool that then opens the path uses
        the methods below, which check again as they open.
        """
        parts = self._parts(path)
        lowered = [part.lower() for part in parts]
        current = self.root
        for index, part in enumerate(parts):
            current = current / part
            if current.is_symlink():
                raise PathRefused(_through_link(path, parts[: index + 1]))
            if self._patterns.match_at(lowered, index, index < len(parts) - 1 or current.is_dir()):
                raise PathRefused(_excluded_message(path))
        if parts in self._protected_parts:
            raise PathRefused(_protected_message(path))
        return current

    def name(self, path: str | os.PathLike[str]) -> str:
        """How the tools name ``path`` to the model (relative, "/"-separated); PathRefused for a path
        that leaves the workspace. Nothing is looked at on disk."""
        return "/".join(self._parts(path)) or "."

    def check(self, path: str) -> None:
        """Refuse ``path`` as the file tools would, by its name alone (nothing is looked at on disk):
        ``..``, outside the root, excluded (its last component taken as a file and as a folder), protected."""
        parts = self._parts(path)
        self._refuse_by_name(path, parts)
        if parts and self._excluded(parts, is_dir=True):
            raise PathRefused(_excluded_message(path))

    def _parts(self, path: str | os.PathLike[str]) -> tuple[str, ...]:
        if isinstance(path, os.PathLike):
            path = os.fspath(path)
        if not isinstance(path, str):
            raise PathRefused("a path must be a string")
        if "\x00" in path:
            raise PathRefused("a path may not contain a NUL byte")
        relative = path
        if path.startswith("~"):
            raise PathRefused(f"path {path!r} leaves the workspace; use a path relative to the workspace root")
        if path.startswith("/"):
            inside = path if path.endswith("/") else path + "/"
            prefix = next((p for p in self._root_prefixes if inside.startswith(p) and not inside.startswith("//")), None)
            if prefix is None:
                raise PathRefused(f"path {path!r} leaves the workspace; use a path relative to the workspace root")
            relative = path[len(prefix):]
        parts = tuple(part for part in relative.split("/") if part not in ("", "."))
        if ".." in parts:
            raise PathRefused(f"path {path!r} uses '..'; use a path relative to the workspace root, without '..'")
        return parts

    def _refuse_by_name(self, path: object, parts: tuple[str, ...]) -> None:
        """The checks a name allows before anything is opened: every folder on the way and the last
        component as a file (a folder-only pattern is checked once its type is known)."""
        lowered = [part.lower() for part in parts]
        for index in range(len(parts)):
            if self._patterns.match_at(lowered, index, index < len(parts) - 1):
                raise PathRefused(_excluded_message(path))
        if parts in self._protected_parts:
            raise PathRefused(_protected_message(path))

    def _admit(self, path: object, parts: tuple[str, ...], found: os.stat_result) -> None:
        """What was found (by lstat or fstat) at ``parts``: a regular file or a folder that may be seen."""
        mode = found.st_mode
        if stat.S_ISLNK(mode):
            raise PathRefused(_through_link(path, parts))
        if stat.S_ISDIR(mode):
            if parts and self._patterns.match_at([p.lower() for p in parts], len(parts) - 1, True):
                raise PathRefused(_excluded_message(path))
        elif not stat.S_ISREG(mode):
            raise SpecialFileRefused(f"{'/'.join(parts)!r} is a {_kind(mode)}, not a regular file; "
                                     "the tools read regular files (and list folders) only")
        elif found.st_nlink > 1 and _identity(found) in self._protected_files:
            raise PathRefused(_protected_message(path))

    # -- exclusions -------------------------------------------------------------------------

    def _excluded(self, parts: Sequence[str], *, is_dir: bool) -> bool:
        lowered = [part.lower() for part in parts]
        last = len(parts) - 1
        return any(self._patterns.match_at(lowered, i, i < last or is_dir) for i in range(len(parts)))

    def is_excluded(self, path: Path) -> bool:
        """True for an absolute path under the root that the exclusions or ``protected`` hide."""
        if path in self.protected:
            return True
        try:
            parts = path.relative_to(self.root).parts
        except ValueError:  # not under the root at all: hidden, like an excluded path
            return True
        return self._excluded(parts, is_dir=path.is_dir())

    def relative(self, path: Path) -> str:
        """How a tool names ``path`` to the model: relative to the root, with "/" separators."""
        rel = path.relative_to(self.root).as_posix()
        return rel or "."

    # -- opening, race-free -----------------------------------------------------------------

    def _open_root(self) -> int:
        return os.open(self.root, _FOLDER_FLAGS)

    def _descend(self, path: object, parts: Sequence[str], *, create: bool = False) -> int:
        """A descriptor of the folder ``root/parts``, each folder opened from the one before it,
        never through a symlink; ``create`` makes the missing ones (write_file). The caller closes it."""
        fd = self._open_root()
        try:
            for index, part in enumerate(parts):
                try:
                    child = os.open(part, _FOLDER_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise _missing(path) from None
                    try:
                        os.mkdir(part, dir_fd=fd)
                    except FileExistsError:  # made meanwhile by someone else: opened (and checked) below
                        pass
                    child = self._open_folder_at(fd, part, path, parts[: index + 1])
                except NotADirectoryError:  # a file, or a symlink (O_NOFOLLOW with O_DIRECTORY says ENOTDIR)
                    raise self._not_a_folder(fd, part, path, parts[: index + 1]) from None
                os.close(fd)
                fd = child
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _open_folder_at(self, fd: int, name: str, path: object, parts: Sequence[str]) -> int:
        try:
            return os.open(name, _FOLDER_FLAGS, dir_fd=fd)
        except NotADirectoryError:
            raise self._not_a_folder(fd, name, path, parts) from None

    def _not_a_folder(self, fd: int, name: str, path: object, parts: Sequence[str]) -> Exception:
        try:
            found = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:  # gone again: say it is not there
            return _missing(path)
        if stat.S_ISLNK(found.st_mode):
            return PathRefused(_through_link(path, parts))
        return NotADirectoryError(errno.ENOTDIR, f"{'/'.join(parts)!r} is a file, not a folder", "/".join(parts))

    @contextmanager
    def _parent(self, path: object, parts: tuple[str, ...], *, create: bool = False) -> Iterator[int]:
        """The descriptor of the folder holding the last component of ``parts`` (not the root itself):
        the one a walk lends while its caller handles what it yielded, or one opened from the root."""
        lent = self._lent.get(threading.get_ident())
        if lent is not None and lent.parts == parts[:-1]:
            yield lent.fd
            return
        fd = self._descend(path, parts[:-1], create=create)
        try:
            yield fd
        finally:
            os.close(fd)

    def _lstat_at(self, parent: int, path: object, parts: tuple[str, ...]) -> os.stat_result:
        try:
            found = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            raise _missing(path) from None
        self._admit(path, parts, found)
        return found

    def stat(self, path: str | os.PathLike[str]) -> Entry:
        """The regular file or folder at ``path``, never opened (a FIFO is refused by its lstat).

        FileNotFoundError when it does not exist, NotADirectoryError (``filename``: the file on the
        way) when a file stands where a folder should, PathRefused when it may not be seen."""
        parts = self._parts(path)
        self._refuse_by_name(path, parts)
        if not parts:
            fd = self._open_root()
            try:
                found = os.fstat(fd)
            finally:
                os.close(fd)
        else:
            with self._parent(path, parts) as parent:
                found = self._lstat_at(parent, path, parts)
        return Entry(self.root.joinpath(*parts), "/".join(parts) or ".", stat.S_ISDIR(found.st_mode), found)

    def open_file(self, path: str | os.PathLike[str]) -> BinaryIO:
        """The regular file at ``path``, opened for reading; the caller closes it. As ``stat``, and
        IsADirectoryError for a folder."""
        fd, _ = self._open_regular(path)
        return os.fdopen(fd, "rb")

    def read_bytes(self, path: str | os.PathLike[str], limit: int) -> tuple[bytes, int]:
        """At most ``limit`` bytes from the start of the regular file at ``path``, and its size."""
        fd, found = self._open_regular(path)
        try:
            chunks: list[bytes] = []
            wanted = limit
            while wanted > 0 and (chunk := os.read(fd, wanted)):
                chunks.append(chunk)
                wanted -= len(chunk)
            return b"".join(chunks), found.st_size
        finally:
            os.close(fd)

    @contextmanager
    def _file_at(self, path: str | os.PathLike[str]) -> Iterator[tuple[int, tuple[str, ...]]]:
        """The descriptor of the folder holding the file at ``path``, and the path's components, once
        its lstat says it is no folder (IsADirectoryError) and nothing the gate refuses."""
        parts = self._parts(path)
        self._refuse_by_name(path, parts)
        if not parts:
            raise IsADirectoryError(errno.EISDIR, "a folder", ".")
        with self._parent(path, parts) as parent:
            if stat.S_ISDIR(self._lstat_at(parent, path, parts).st_mode):
                raise IsADirectoryError(errno.EISDIR, "a folder", "/".join(parts))
            yield parent, parts

    def _open_regular(self, path: str | os.PathLike[str]) -> tuple[int, os.stat_result]:
        with self._file_at(path) as (parent, parts):
            try:
                fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                raise _missing(path) from None
            except OSError as error:
                if error.errno in (errno.ELOOP, errno.ENXIO):  # a symlink, or a socket, swapped in since the lstat
                    raise PathRefused(f"path {_shown(path)!r} changed while it was opened; try again") from None
                raise
        try:
            found = os.fstat(fd)
            self._admit(path, parts, found)
            if stat.S_ISDIR(found.st_mode):
                raise IsADirectoryError(errno.EISDIR, "a folder", "/".join(parts))
        except BaseException:
            os.close(fd)
            raise
        return fd, found

    def write_bytes(self, path: str | os.PathLike[str], data: bytes) -> bool:
        """Create or replace the file at ``path`` atomically (a temporary file in the same folder,
        renamed over it), making the folders on the way; True when it replaced a file."""
        parts = self._parts(path)
        self._refuse_by_name(path, parts)
        if not parts:
            raise IsADirectoryError(errno.EISDIR, "a folder", ".")
        name = parts[-1]
        with self._parent(path, parts, create=True) as parent:
            try:
                existing: os.stat_result | None = self._lstat_at(parent, path, parts)
            except FileNotFoundError:
                existing = None
            if existing is not None and stat.S_ISDIR(existing.st_mode):
                raise IsADirectoryError(errno.EISDIR, "a folder", "/".join(parts))
            temporary, fd = _create_temporary(parent, name)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    out.flush()
                    if existing is not None:
                        os.fchmod(out.fileno(), stat.S_IMODE(existing.st_mode))
                    os.fsync(out.fileno())
                # rename does not follow a symlink swapped in at ``name``: it replaces the link itself.
                os.rename(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
            except BaseException:
                _remove_quietly(parent, temporary)
                raise
        return existing is not None

    def delete(self, path: str | os.PathLike[str]) -> None:
        """Remove the regular file at ``path`` (never a folder, never through a symlink)."""
        with self._file_at(path) as (parent, parts):
            os.unlink(parts[-1], dir_fd=parent)  # a symlink swapped in meanwhile is removed itself, not followed

    @contextmanager
    def open_dir(self, path: str | os.PathLike[str] = ".") -> Iterator[int]:
        """A descriptor of the folder at ``path``, open while the block runs."""
        parts = self._parts(path)
        self._refuse_by_name(path, parts)
        fd = self._descend(path, parts)
        try:
            self._admit(path, parts, os.fstat(fd))
            yield fd
        finally:
            os.close(fd)

    @contextmanager
    def pinned(self, path: str | os.PathLike[str] = ".") -> Iterator[Path]:
        """A ``cwd`` for a child process that names the folder at ``path`` as it was checked:
        ``/proc/self/fd/N`` of a descriptor held open while the block runs (the child changes into
        it before it starts), so that no swap of a folder on the way can send it elsewhere.
        Without /proc (not Linux), the folder's path: checked, but looked up again by the child."""
        with self.open_dir(path) as fd:
            yield _PROC_FDS / str(fd) if _PROC_FDS.is_dir() else self.root.joinpath(*self._parts(path))

    # -- walking ----------------------------------------------------------------------------

    def walk(self, start: str | os.PathLike[str], *, max_depth: int | None = None,
             check: Callable[[], None] | None = None) -> Iterator[tuple[Path, bool, int]]:
        """Every visible regular file and folder below ``start`` as ``(path, is_dir, depth)``, sorted by
        name, each folder followed by what it holds.

        Read from descriptors, each folder opened from its parent's: excluded entries, protected
        files, symlinks, FIFOs, sockets, devices and the ``skip_dirs`` folders are skipped silently;
        ``check`` is called before each folder is read (the deadline of the tool that walks).
        """
        parts = self._parts(start)
        self._refuse_by_name(start, parts)
        try:
            fd = self._descend(start, parts)
        except (FileNotFoundError, NotADirectoryError):  # nothing to walk: a listing shows what it can
            return
        stack: list[tuple[int, Path, tuple[str, ...], Iterator[tuple[str, bool]], int]] = []
        try:
            self._admit(start, parts, os.fstat(fd))  # a folder-only exclusion (".ssh/") applies to the start too
        except BaseException:
            os.close(fd)
            raise
        try:
            listing = self._listing(fd, parts, check)
        except BaseException:  # e.g. the deadline, already passed: the folder is on no stack yet
            os.close(fd)
            raise
        try:
            stack.append((fd, self.root.joinpath(*parts), parts, iter(listing), 1))
            while stack:
                fd, folder, folder_parts, entries, depth = stack[-1]
                entry = next(entries, None)
                if entry is None:
                    stack.pop()
                    os.close(fd)
                    continue
                name, is_dir = entry
                path = folder / name
                thread = threading.get_ident()
                lent = self._lent[thread] = _Lent(folder_parts, fd)
                try:
                    yield path, is_dir, depth
                finally:  # taken back before the walk moves on or closes it, from whichever thread closes the walk
                    if self._lent.get(thread) is lent:
                        del self._lent[thread]
                if is_dir and (max_depth is None or depth < max_depth) and depth < MAX_WALK_DEPTH:
                    try:
                        child = os.open(name, _FOLDER_FLAGS, dir_fd=fd)
                    except OSError:  # vanished, unreadable or swapped for a symlink since it was listed
                        continue
                    child_parts = (*folder_parts, name)
                    try:
                        listing = self._listing(child, child_parts, check)
                    except BaseException:
                        os.close(child)
                        raise
                    stack.append((child, path, child_parts, iter(listing), depth + 1))
        finally:
            for fd, *_ in stack:
                os.close(fd)

    def _listing(self, fd: int, parts: tuple[str, ...], check: Callable[[], None] | None) -> list[tuple[str, bool]]:
        """The visible entries of the open folder ``fd`` (at ``parts``), as ``(name, is_dir)`` sorted by name."""
        if check is not None:
            check()
        lowered = [part.lower() for part in parts] + [""]
        visible = []
        try:
            with os.scandir(fd) as it:
                for entry in it:
                    is_dir = entry.is_dir(follow_symlinks=False)
                    if not is_dir and not entry.is_file(follow_symlinks=False):  # symlinks, FIFOs, sockets, devices
                        continue
                    lowered[-1] = entry.name.lower()
                    if self._patterns.match_at(lowered, len(parts), is_dir):
                        continue
                    if self._protected_parts and (*parts, entry.name) in self._protected_parts:
                        continue
                    if is_dir and entry.name in self.skip_dirs:
                        continue
                    visible.append((entry.name, is_dir))
        except OSError:  # unreadable or vanished while walking: a listing shows what it can
            return []
        return sorted(visible)

    def files(self, start: str | os.PathLike[str], *, check: Callable[[], None] | None = None) -> Iterator[Path]:
        """Every visible regular file below ``start`` (or ``start`` itself when it is a file)."""
        try:
            entry = self.stat(start)
        except (FileNotFoundError, NotADirectoryError):  # gone since the tool checked it: nothing to list
            return
        if not entry.is_dir:
            yield entry.path
            return
        for path, is_dir, _ in self.walk(start, check=check):
            if not is_dir:
                yield path


def _shown(path: object) -> object:
    """A path as a message quotes it: a Path (from a walk) as its text."""
    return os.fspath(path) if isinstance(path, os.PathLike) else path


def _through_link(path: object, parts: Sequence[str]) -> str:
    return f"path {_shown(path)!r} goes through a symbolic link ({'/'.join(parts)}); symbolic links are not followed"


def _excluded_message(path: object) -> str:
    return f"path {_shown(path)!r} is excluded from the workspace (it may hold secrets)"


def _identity(found: os.stat_result) -> tuple[int, int]:
    return found.st_dev, found.st_ino


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:  # not there (yet): a log's side file; only its name is protected then
        return None


def _protected_message(path: object) -> str:
    return f"path {_shown(path)!r} is protected and cannot be read"


def _missing(path: object) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), _shown(path))


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    return "special file"


def _create_temporary(folder: int, name: str) -> tuple[str, int]:
    """A new file next to ``name`` in the open ``folder``, readable by its owner only until it replaces ``name``."""
    for _ in range(100):
        temporary = f".{name[:200]}.{secrets.token_hex(4)}.tmp"
        try:
            return temporary, os.open(temporary, _NEW_FILE_FLAGS, 0o600, dir_fd=folder)
        except FileExistsError:  # that name is taken (a leftover): draw another
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", name)


def _remove_quietly(folder: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=folder)
    except FileNotFoundError:  # never created, or already renamed into place
        pass


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
