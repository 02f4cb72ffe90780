"""Each layer owns its room: the never-arrows of DESIGN.md, checked on the source.

Every module of ``eventstore/``, ``forge_actors/`` and ``tools/`` is parsed with ``ast``;
every import, relative ones included (``from . import x``, ``from ..providers import y``),
and those inside functions or ``TYPE_CHECKING`` blocks too (an arrow is an arrow), is
resolved to the absolute name of the module it reaches; so is a dynamic import
(``importlib.import_module("x")``, ``__import__("x")``) of a string literal, and one of a
computed name is refused outright in every layer (nobody could tell where it goes). Then each
rule of ``RULES`` says which modules it binds and which targets they must never import, with
the reason of every exception written next to it. ``NO_IO_RULES`` do the same for what the
pure core must not *use*: the file system, the clock, processes, sockets, threads (template
loading allowed by name). ``test_each_rule_catches_a_planted_violation`` proves that the
checker fails when one is broken.
"""

from __future__ import annotations

import ast
import functools
import io
import tokenize
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def _project_root() -> Path:
    # Found by its pyproject.toml, so that the test can move into a sub-folder of tests/.
    for folder in Path(__file__).resolve().parents:
        if (folder / "pyproject.toml").exists() and (folder / "forge_actors").is_dir():
            return folder
    raise RuntimeError("cannot find the project root (a folder with pyproject.toml and forge_actors/)")


ROOT = _project_root()
SCANNED = ("eventstore", "forge_actors", "tools")


# -- reading the source ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    module: str  # absolute dotted name: "forge_actors.surfaces.server.app"
    is_package: bool  # an __init__.py: its relative imports start from itself
    text: str


@dataclass(frozen=True, order=True)
class Import:
    """One arrow: ``module`` imports ``target`` (a module of ours, or the top name of a library)."""

    module: str
    target: str
    name: str | None = None  # the name taken from the target by ``from target import name``
    line: int = 0


class RelativeImportError(ValueError):
    pass


def read_tree(root: Path = ROOT, folders: Iterable[str] = SCANNED) -> dict[str, Source]:
    return dict(_read_tree(root, tuple(folders)))


@functools.cache
def _read_tree(root: Path, folders: tuple[str, ...]) -> dict[str, Source]:
    sources: dict[str, Source] = {}
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            module = ".".join(parts)
            sources[module] = Source(module, is_package, path.read_text())
    return sources


def resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute module a ``from <level dots><target> import ...`` in ``module`` names."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    if level > len(package):
        raise RelativeImportError(f"{module}: a relative import of level {level} goes above the top package")
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, *([target] if target else [])])


@functools.cache  # the planted tests re-check the same tree with one module changed
def _parsed(source: Source) -> ast.Module:
    return ast.parse(source.text, source.module)


#: The calls that import a module named by a value: ``importlib.import_module`` and ``__import__``
#: (as an attribute of anything, or a bare name, ``from importlib import import_module`` included).
DYNAMIC_IMPORTERS = frozenset({"import_module", "__import__"})
#: The target of a dynamic import whose name is computed (``import_module(name)``): no rule can say
#: where it goes, so ``no-computed-imports`` refuses it wherever the rules guard.
COMPUTED = "<computed>"


def _dynamic_importers(tree: ast.Module) -> set[str]:
    """The names ``import_module``/``__import__`` are called by in a module, aliases included."""
    names = set(DYNAMIC_IMPORTERS)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "importlib" and not node.level:
            names.update(alias.asname for alias in node.names if alias.name in DYNAMIC_IMPORTERS and alias.asname)
    return names


def _argument(call: ast.Call, position: int, keyword: str) -> ast.expr | None:
    if len(call.args) > position:
        return call.args[position]
    return next((kw.value for kw in call.keywords if kw.arg == keyword), None)


def _literal(node: ast.expr | None) -> object:
    try:
        return ast.literal_eval(node) if node is not None else None
    except (ValueError, TypeError):  # not a literal: the caller reads None as a computed name
        return None


def dynamic_import(source: Source, call: ast.Call, importers: set[str], known: set[str]) -> list[Import]:
    """The modules a call of ``import_module``/``__import__`` reaches: [] when it is no such call,
    the module named when its name is a string literal (a relative one, ``import_module(".x",
    __package__)``, from ``source``'s package), else one import of ``COMPUTED``."""
    func = call.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if called not in importers:
        return []
    name = _literal(_argument(call, 0, "name"))
    if not isinstance(name, str):
        return [Import(source.module, COMPUTED, None, call.lineno)]
    level = len(name) - len(name.lstrip("."))
    if called == "__import__" and isinstance(depth := _literal(_argument(call, 4, "level")), int):
        level = depth
    package = _literal(_argument(call, 1, "package")) if called == "import_module" else None
    start = Source(package, True, "") if isinstance(package, str) else source  # else __package__, or unsaid
    target = resolve_relative(start.module, start.is_package, level, name.lstrip(".") or None) if level else name
    from_list = _literal(_argument(call, 3, "fromlist")) if called == "__import__" else None
    if isinstance(from_list, (list, tuple)) and from_list:  # __import__("pkg", fromlist=["mod"]): from pkg import mod
        return [Import(source.module, f"{target}.{item}", None, call.lineno) if f"{target}.{item}" in known
                else Import(source.module, target, str(item), call.lineno) for item in from_list]
    return [Import(source.module, target, None, call.lineno)]


def imports_of(source: Source, known: Iterable[str]) -> list[Import]:
    """Every import of ``source``, each resolved to the module it reaches.

    ``from pkg import name`` reaches the submodule ``pkg.name`` when there is one, else ``pkg``
    itself (``name`` is then an attribute of it, kept in ``Import.name``). A dynamic import is
    an arrow too (``dynamic_import``).
    """
    known = set(known)
    found: list[Import] = []
    tree = _parsed(source)
    importers = _dynamic_importers(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            found.extend(dynamic_import(source, node, importers, known))
        elif isinstance(node, ast.Import):
            found.extend(Import(source.module, alias.name, None, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = resolve_relative(source.module, source.is_package, node.level, node.module)
            else:
                base = node.module or ""
            if base == "__future__":
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in known:
                    found.append(Import(source.module, submodule, None, node.lineno))
                else:
                    found.append(Import(source.module, base, alias.name, node.lineno))
    return found


@functools.cache
def _imports_cached(source: Source, known: frozenset[str]) -> tuple[Import, ...]:
    return tuple(imports_of(source, known))


def all_imports(sources: Mapping[str, Source]) -> list[Import]:
    known = frozenset(sources)
    return [imp for source in sources.values() for imp in _imports_cached(source, known)]


# -- the rules ------------------------------------------------------------------------------------


def _under(*prefixes: str) -> Callable[[str], bool]:
    """True for each prefix itself and everything below it (``forge_actors.surfaces.server`` and ``.server.app``)."""
    return lambda name: any(name == p or name.startswith(p + ".") for p in prefixes)


CORE = "forge_actors.core"
ACTORS = "forge_actors.actors"
ENGINE = "forge_actors.engine"
PROVIDERS = "forge_actors.providers"
REPLY_FORMAT = "forge_actors.core.reply_format"  # what prompts, the mock and the providers share (not the readers)
TOOLS = "forge_actors.tools"
SURFACES = ("forge_actors.surfaces", "tools")  # tools/ holds scripts over the engine (tools/replay.py)
is_surface = _under(*SURFACES)  # forge_actors.providers.cli is a provider, not a surface
is_actor = _under(ACTORS)
is_core = _under(CORE)
IO_LIBRARIES = ("httpx", "sqlite3", "socket", "subprocess", "eventstore", "sqlite_utils", "uvicorn", "starlette",
                "urllib.request", "http.client", "asyncio", "threading")

#: What a surface may import of ours: the engine's front door (the package itself, not its modules),
#: the pure core's types and functions (to show what it is given), and other surfaces.
FRONT_DOOR = (
    "forge_actors",  # the package itself: __version__
    ENGINE,  # Forge, its read types, its config, every error a caller catches
)


def _front_door(target: str) -> bool:
    return target in FRONT_DOOR or is_core(target) or is_surface(target)


@dataclass(frozen=True)
class Allow:
    """An arrow a rule lets through: ``module`` may import ``target`` (only ``names`` of it, if given)."""

    module: str
    target: str
    reason: str
    names: frozenset[str] | None = None

    def covers(self, imp: Import) -> bool:
        if imp.module != self.module or not _under(self.target)(imp.target):
            return False
        return self.names is None or (imp.name is not None and imp.name in self.names)


@dataclass(frozen=True)
class Rule:
    name: str
    binds: Callable[[str], bool]  # which importing modules the rule is about
    forbids: Callable[[str], bool]  # which targets they must never import
    why: str
    allow: tuple[Allow, ...] = field(default=())

    def violations(self, imports: Iterable[Import]) -> list[str]:
        return [
            f"{self.name}: {imp.module} (line {imp.line}) imports {imp.target}"
            + (f".{imp.name}" if imp.name else "") + f" — {self.why}"
            for imp in imports
            if self.binds(imp.module) and self.forbids(imp.target) and not any(a.covers(imp) for a in self.allow)
        ]


def _ours(name: str) -> bool:
    return _under("forge_actors", "eventstore", "tools")(name)


RULES: tuple[Rule, ...] = (
    Rule(
        "eventstore-knows-nothing-of-forge",
        binds=_under("eventstore"),
        forbids=_under("forge_actors", "tools"),
        why="the event log is a library of its own; the domain uses it, never the reverse",
    ),
    Rule(
        "providers-know-only-providers-and-formats",
        binds=_under(PROVIDERS),
        forbids=lambda t: (_ours(t) and not _under(PROVIDERS, REPLY_FORMAT)(t)) or _under("pykka")(t),
        why="a provider talks to a model; the reply-format leaf (markers, schemas, rendering) is shared with the "
            "mock and the prompts; the readers and the rest of the domain are not",
    ),
    Rule(
        "the-reply-format-is-a-leaf",
        binds=_under(REPLY_FORMAT),
        forbids=_ours,
        why="the providers may import it: whatever it imported of ours, they would reach through it",
    ),
    Rule(
        "tools-know-only-tools",
        binds=_under(TOOLS),
        forbids=lambda t: _ours(t) and not _under(TOOLS)(t),
        why="a tool reads a workspace for whoever asks; it knows nothing of sessions, models or the log",
    ),
    Rule(
        "pure-core-does-no-io-and-uses-no-actors",
        binds=is_core,
        forbids=lambda t: _under("pykka", *IO_LIBRARIES)(t) or (_ours(t) and not is_core(t)),
        # templates reads its prompt files as package data (importlib.resources): no arrow to rule on.
        why="the core is data and functions of data: no actors, no I/O, nothing above it",
        allow=(
            Allow("forge_actors.core.audit", "eventstore", "verifies recorded events (positions, times): reads the "
                  "RecordedEvent struct, never opens a store", names=frozenset({"RecordedEvent"})),
            Allow("forge_actors.core.export", "eventstore", "writes a recorded event's wire form: reads the "
                  "RecordedEvent struct, never opens a store", names=frozenset({"RecordedEvent"})),
            Allow("forge_actors.core.records", "eventstore", "the one mapping between domain events and the log's "
                  "records: makes NewEvent and reads RecordedEvent structs, never opens a store",
                  names=frozenset({"NewEvent", "RecordedEvent"})),
        ),
    ),
    Rule(
        "actors-import-no-engine-and-no-surface",
        binds=is_actor,
        forbids=lambda t: _under(ENGINE)(t) or is_surface(t),
        why="actors are driven by the engine; they never reach up to it or to a surface",
    ),
    Rule(
        "the-engine-imports-no-surface",
        binds=_under(ENGINE),
        forbids=is_surface,
        why="the engine serves every surface alike; it knows none of them",
    ),
    Rule(
        "only-surfaces-import-the-engine-or-a-surface",
        binds=lambda m: _under("forge_actors")(m) and not is_surface(m) and not _under(ENGINE)(m),
        forbids=lambda t: _under(ENGINE)(t) or is_surface(t),
        why="the engine is the top of the library; below it nothing knows who drives it",
    ),
    Rule(
        "surfaces-use-the-front-door-only",
        binds=is_surface,
        forbids=lambda t: _under("eventstore", "pykka")(t) or (_ours(t) and not _front_door(t)),
        why="a surface drives the engine through `forge_actors.engine` alone (and shows the pure core's types); "
            "never the engine's modules, actors, providers or the log directly",
    ),
    Rule(
        "no-computed-imports",
        binds=_under(*SCANNED),  # every layer a rule above guards: eventstore, forge_actors, tools/
        forbids=lambda t: t == COMPUTED,
        why="an import_module/__import__ of a name computed at run time could reach any layer, and no rule can "
            "check it: name the module with a string literal",
    ),
)


# -- what the pure core must not use ----------------------------------------------------------------

#: Modules every use of which is I/O, the clock or concurrency: ``os.*`` (files, the environment,
#: processes; ``os.path`` too), ``time.*`` (a clock read would make a resumed session decide
#: otherwise), ``subprocess``, ``socket``, ``threading``, ``shutil``.
IO_MODULES = ("os", "time", "subprocess", "socket", "threading", "shutil")
IO_BUILTINS = frozenset({"open"})
#: ``Path``'s methods that read or write a file: looked for on any object, whose type a parse cannot know.
IO_METHODS = frozenset({"read_text", "write_text", "read_bytes", "write_bytes", "open"})


@dataclass(frozen=True, order=True)
class Use:
    """One use of I/O: ``what`` ("os.getcwd", "open", ".read_text") at ``line`` of ``module``,
    inside ``function`` (its qualified name; "" at module level)."""

    module: str
    what: str
    line: int
    function: str = ""


def _io_aliases(tree: ast.Module) -> dict[str, str]:
    """Each name a module binds to an I/O module or to something of one: ``import time as t`` binds
    t to time, ``from os import path`` binds path to os.path."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]  # import os.path binds os
                if _under(*IO_MODULES)(alias.name):
                    aliases[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ImportFrom) and not node.level and _under(*IO_MODULES)(node.module or ""):
            aliases.update({alias.asname or alias.name: f"{node.module}.{alias.name}" for alias in node.names})
    return aliases


class _UseFinder(ast.NodeVisitor):
    def __init__(self, module: str, aliases: dict[str, str], importers: set[str]) -> None:
        self.module, self.aliases, self.importers = module, aliases, importers
        self.scope: list[str] = []
        self.found: list[Use] = []

    def _record(self, what: str, node: ast.AST) -> None:
        self.found.append(Use(self.module, what, getattr(node, "lineno", 0), ".".join(self.scope)))

    def _scoped(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    def _root(self, node: ast.expr) -> str | None:
        """The I/O module (or member) an expression's root stands for: an alias, or a literal
        ``__import__("os")``; None for anything else."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id)
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            name = _literal(_argument(node, 0, "name")) if called in self.importers else None
            return name if isinstance(name, str) and _under(*IO_MODULES)(name) else None
        return None

    def visit_Attribute(self, node: ast.Attribute) -> None:
        parts: list[str] = []
        base: ast.expr = node
        while isinstance(base, ast.Attribute):
            parts.append(base.attr)
            base = base.value
        root = self._root(base)
        if root is not None:
            self._record(".".join([root, *reversed(parts)]), node)
            return  # its inner attributes are the same use
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            if node.id in self.aliases:
                self._record(self.aliases[node.id], node)
            elif node.id in IO_BUILTINS:
                self._record(node.id, node)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Attribute) and node.func.attr in IO_METHODS and self._root(node.func) is None:
            self._record("." + node.func.attr, node)
        elif (root := self._root(node)) is not None:
            self._record(root, node)  # __import__("os") itself
        self.generic_visit(node)


@functools.cache
def io_uses(source: Source) -> tuple[Use, ...]:
    """Every use of I/O in ``source``: a name bound to an I/O module (or its member), its
    attributes, a literal dynamic import of one, ``open``, and calls of a ``Path``'s I/O methods."""
    tree = _parsed(source)
    finder = _UseFinder(source.module, _io_aliases(tree), _dynamic_importers(tree))
    finder.visit(tree)
    return tuple(finder.found)


@dataclass(frozen=True)
class AllowUse:
    """What a rule lets ``function`` of ``module`` use (by name: nothing else there, nothing elsewhere)."""

    module: str
    function: str
    what: frozenset[str]
    reason: str

    def covers(self, use: Use) -> bool:
        return use.module == self.module and use.function == self.function and use.what in self.what


@dataclass(frozen=True)
class NoIoRule:
    name: str
    binds: Callable[[str], bool]
    why: str
    allow: tuple[AllowUse, ...] = field(default=())

    def violations(self, uses: Iterable[Use]) -> list[str]:
        return [f"{self.name}: {use.module} (line {use.line}) uses {use.what} — {self.why}"
                for use in uses if self.binds(use.module) and not any(a.covers(use) for a in self.allow)]


NO_IO_RULES: tuple[NoIoRule, ...] = (
    NoIoRule(
        "pure-core-uses-no-io",
        binds=is_core,
        why="the core is data and functions of data: no files, no clock, no processes, sockets or threads "
            "(the engine does them and hands the core their results)",
        allow=(
            AllowUse("forge_actors.core.templates", "load_template", frozenset({".read_text"}),
                     "reads a prompt template shipped in the package (importlib.resources): data of the code, "
                     "the same on every run, read once (cached); nothing else of the core reads a file"),
        ),
    ),
)


def all_uses(sources: Mapping[str, Source]) -> list[Use]:
    return [use for source in sources.values() for use in io_uses(source)]


def violations(sources: Mapping[str, Source], rules: Iterable[Rule] = RULES,
               no_io_rules: Iterable[NoIoRule] = NO_IO_RULES) -> list[str]:
    imports = all_imports(sources)
    uses = all_uses(sources)
    return [v for rule in rules for v in rule.violations(imports)] + [
        v for rule in no_io_rules for v in rule.violations(uses)]


# -- the tests ------------------------------------------------------------------------------------


def test_the_tree_keeps_every_rule():
    sources = read_tree()
    assert {"eventstore.sqlite", "forge_actors.engine", "forge_actors.surfaces.server.app", "tools.replay"} <= set(sources)
    assert violations(sources) == []


def test_every_rule_binds_some_module():
    # A rule whose modules were renamed away would pass for ever.
    modules = read_tree()
    for rule in (*RULES, *NO_IO_RULES):
        assert any(rule.binds(m) for m in modules), rule.name
    for package in (CORE, ACTORS, ENGINE, PROVIDERS, TOOLS, *SURFACES):
        assert any(_under(package)(m) for m in modules), package


def test_every_allowance_is_used():
    # An exception nobody needs any more should go: it would hide the next violation.
    imports = all_imports(read_tree())
    for rule in RULES:
        for allowance in rule.allow:
            assert any(allowance.covers(i) and rule.forbids(i.target) for i in imports), (rule.name, allowance)
    uses = all_uses(read_tree())
    for io_rule in NO_IO_RULES:
        for allowed in io_rule.allow:
            assert any(allowed.covers(u) and io_rule.binds(u.module) for u in uses), (io_rule.name, allowed)


@pytest.mark.parametrize(
    ("module", "is_package", "level", "target", "expected"),
    [
        ("forge_actors.surfaces.server.app", False, 1, None, "forge_actors.surfaces.server"),
        ("forge_actors.surfaces.server.app", False, 3, "providers", "forge_actors.providers"),
        ("forge_actors.surfaces.server.app", False, 3, "providers.errors", "forge_actors.providers.errors"),
        ("forge_actors.providers", True, 1, "base", "forge_actors.providers.base"),
        ("forge_actors.providers", True, 2, None, "forge_actors"),
        ("forge_actors.core.state", False, 1, "events", "forge_actors.core.events"),
    ],
)
def test_relative_imports_resolve_to_absolute_modules(module, is_package, level, target, expected):
    assert resolve_relative(module, is_package, level, target) == expected


def test_a_relative_import_above_the_top_package_is_refused():
    with pytest.raises(RelativeImportError):
        resolve_relative("forge_actors.core.state", False, 3, "x")


def test_from_package_import_submodule_reaches_the_submodule():
    known = {"forge_actors", "forge_actors.actors", "forge_actors.actors.session", "forge_actors.surfaces.server",
             "forge_actors.surfaces.server.app"}
    source = Source("forge_actors.surfaces.server.app", False,
                    "from ...actors import session\nfrom ... import __version__\nfrom . import x\n")
    targets = {(i.target, i.name) for i in imports_of(source, known)}
    assert targets == {("forge_actors.actors.session", None), ("forge_actors", "__version__"), ("forge_actors.surfaces.server", "x")}


def test_providers_cli_is_a_provider_not_a_surface():
    assert not is_surface("forge_actors.providers.cli")
    assert is_surface("forge_actors.surfaces.cli") and is_surface("forge_actors.surfaces.server.app") and is_surface("tools.replay")


#: (rule, module planted into, is it a package, source): each breaks the rule named (some a second
#: one too: an actor importing the engine does), most through a relative import, the kind the first
#: version of this test skipped, some inside a function or a TYPE_CHECKING block.
PLANTED = [
    ("eventstore-knows-nothing-of-forge", "eventstore.planted", False, "from forge_actors.core.events import Event\n"),
    ("eventstore-knows-nothing-of-forge", "eventstore", True, "import forge_actors.core.state\n"),
    ("providers-know-only-providers-and-formats", "forge_actors.providers.planted", False,
     "from ..actors.session import SessionActor\n"),
    ("providers-know-only-providers-and-formats", "forge_actors.providers.cli", False,
     "from .. import engine\n"),  # the provider named cli is bound as a provider
    ("providers-know-only-providers-and-formats", "forge_actors.providers.planted", False,
     "def later():\n    from eventstore import EventStore\n"),
    ("tools-know-only-tools", "forge_actors.tools.files", False, "from ..core.events import ToolCalled\n"),
    ("tools-know-only-tools", "forge_actors.tools.planted", False, "from forge_actors.engine import Forge\n"),
    ("pure-core-does-no-io-and-uses-no-actors", "forge_actors.core.state", False, "from ..actors import session\n"),
    ("pure-core-does-no-io-and-uses-no-actors", "forge_actors.core.rounds", False, "import httpx\n"),
    ("pure-core-does-no-io-and-uses-no-actors", "forge_actors.core.events", False, "from ..engine import Forge\n"),
    ("pure-core-does-no-io-and-uses-no-actors", "forge_actors.core.audit", False,
     "from eventstore import EventStore\n"),  # RecordedEvent is allowed, the store is not
    ("pure-core-does-no-io-and-uses-no-actors", "forge_actors.core.export", False,
     "from ..actors.messages import Contribute\n"),
    ("actors-import-no-engine-and-no-surface", "forge_actors.actors.scheduler", False, "from ..engine import Forge\n"),
    ("actors-import-no-engine-and-no-surface", "forge_actors.actors.participant", False,
     "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..surfaces.server.app import create_app\n"),
    ("the-engine-imports-no-surface", "forge_actors.engine.replay", False, "from ..surfaces import cli\n"),
    ("only-surfaces-import-the-engine-or-a-surface", "forge_actors.providers.planted", False,
     "from ..surfaces import cli\n"),
    ("surfaces-use-the-front-door-only", "forge_actors.surfaces.server.planted", False,
     "from ...providers.errors import LlmError\n"),
    ("surfaces-use-the-front-door-only", "forge_actors.surfaces.server.planted", False,
     "from ...actors import participant\n"),
    ("surfaces-use-the-front-door-only", "forge_actors.surfaces.cli", False, "from eventstore import EventStore\n"),
    ("surfaces-use-the-front-door-only", "forge_actors.surfaces.cli", False,
     "from forge_actors.engine.forge import Forge\n"),  # a module of the engine, not its front door
    ("surfaces-use-the-front-door-only", "tools.planted", False, "from forge_actors.actors.session import SessionActor\n"),
    ("providers-know-only-providers-and-formats", "forge_actors.providers.mock", False,
     "from ..core.reply_reading import parse_vote\n"),  # the readers are the rounds' business, not a provider's
    ("the-reply-format-is-a-leaf", "forge_actors.core.reply_format", False,
     "from .reply_reading import parse_vote\n"),  # (a re-export would hand the providers the readers)
    # dynamic imports of a literal name are arrows like the others (relative ones resolved too)
    ("surfaces-use-the-front-door-only", "forge_actors.surfaces.cli", False,
     "import importlib\nFORGE = importlib.import_module('forge_actors.engine.forge')\n"),
    ("pure-core-does-no-io-and-uses-no-actors", "forge_actors.core.state", False,
     "def later():\n    return __import__('sqlite3')\n"),
    ("providers-know-only-providers-and-formats", "forge_actors.providers.planted", False,
     "from importlib import import_module as load\nload('..actors.session', __package__)\n"),
    ("eventstore-knows-nothing-of-forge", "eventstore.sqlite", False,
     "import importlib\nimportlib.import_module('.state', package='forge_actors.core')\n"),
    ("tools-know-only-tools", "forge_actors.tools.files", False,
     "__import__('forge_actors.core', fromlist=['events'])\n"),
    # ... and one of a computed name is refused in every layer
    ("no-computed-imports", "forge_actors.core.rounds", False,
     "import importlib\ndef plugin(name):\n    return importlib.import_module(name)\n"),
    ("no-computed-imports", "eventstore.open", False,
     "def backend(kind):\n    return __import__(f'eventstore.{kind}')\n"),
    ("no-computed-imports", "tools.planted", False, "from importlib import import_module\nimport_module('x' + 'y')\n"),
    # I/O in the pure core, however it is reached
    ("pure-core-uses-no-io", "forge_actors.core.state", False, "import os\ndef here():\n    return os.getcwd()\n"),
    ("pure-core-uses-no-io", "forge_actors.core.rounds", False, "import time\nSTARTED = time.time()\n"),
    ("pure-core-uses-no-io", "forge_actors.core.rounds", False,
     "from time import monotonic as clock\ndef now():\n    return clock()\n"),
    ("pure-core-uses-no-io", "forge_actors.core.events", False, "import os.path\nHOME = os.path.expanduser('~')\n"),
    ("pure-core-uses-no-io", "forge_actors.core.export", False,
     "def save(path, text):\n    open(path, 'w').write(text)\n"),
    ("pure-core-uses-no-io", "forge_actors.core.audit", False, "def load(path):\n    return path.read_bytes()\n"),
    ("pure-core-uses-no-io", "forge_actors.core.state", False, "def env():\n    return __import__('os').environ\n"),
    ("pure-core-uses-no-io", "forge_actors.core.templates", False,  # the allowance is load_template's read only
     "def save_template(path, text):\n    path.write_text(text)\ndef peek(path):\n    return path.read_text()\n"),
    ("pure-core-uses-no-io", "forge_actors.core.usage", False,
     "from subprocess import run\ndef count():\n    return run(['wc'])\n"),  # (the import is refused too)
    ("pure-core-uses-no-io", "forge_actors.core.rounds", False,
     "import threading\nLOCK = threading.Lock()\n"),  # (the import is refused too)
]


@pytest.mark.parametrize(("rule", "module", "is_package", "text"), PLANTED,
                         ids=[f"{r}:{m}:{i}" for i, (r, m, _, _) in enumerate(PLANTED)])
def test_each_rule_catches_a_planted_violation(rule, module, is_package, text):
    sources = dict(read_tree())
    original = sources.get(module)
    planted = (original.text + "\n" if original else "") + text
    sources[module] = Source(module, is_package, planted)
    found = violations(sources)
    assert any(v.startswith(f"{rule}: {module} ") for v in found), found
    # It may break a second rule too (an actor importing the engine does), but nothing else is reported.
    assert all(f": {module} (line" in v for v in found), found


@pytest.mark.parametrize(("text", "found"), [
    ("import time\ndef f():\n    return time.sleep(1)\n", ["time.sleep"]),
    ("import os as system\nX = system.environ['HOME']\n", ["os.environ"]),  # not only calls: reading the environment
    ("from os import path\nX = path.join('a', 'b')\n", ["os.path.join"]),
    ("import importlib\nX = importlib.import_module('socket').socket()\n", ["socket.socket"]),
    ("def f(time, text, path):\n    return time + len(text.splitlines()) + len(path.name)\n", []),  # no module named so
    ("from pathlib import PurePath\nX = PurePath('a') / 'b'\n", []),  # a path is a value; reading it is I/O
])
def test_io_uses_are_named_as_written(text, found):
    assert [use.what for use in io_uses(Source("forge_actors.core.planted", False, text))] == found


def test_every_rule_has_a_planted_violation():
    assert {rule.name for rule in (*RULES, *NO_IO_RULES)} == {planted[0] for planted in PLANTED}


# -- no silent failure ----------------------------------------------------------------------------


def _comment_lines(text: str) -> set[int]:
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    return {tok.start[0] for tok in tokens if tok.type == tokenize.COMMENT}


def _is_silent(handler: ast.ExceptHandler) -> bool:
    """Only pass/continue/break/return, none of them using the exception: it vanishes without a word."""
    if not all(isinstance(stmt, (ast.Pass, ast.Continue, ast.Break, ast.Return)) for stmt in handler.body):
        return False
    return not (handler.name and any(isinstance(n, ast.Name) and n.id == handler.name
                                     for stmt in handler.body for n in ast.walk(stmt)))


def silent_excepts(source: Source) -> list[str]:
    """Each ``except`` that swallows its exception with no comment saying why silence is right."""
    comments = _comment_lines(source.text)
    found = []
    for node in ast.walk(_parsed(source)):
        if isinstance(node, ast.ExceptHandler) and _is_silent(node):
            span = range(node.lineno, node.body[-1].end_lineno + 1)  # type: ignore[operator]
            if not comments.intersection(span):
                found.append(f"{source.module} line {node.lineno}: an except that swallows its exception silently; "
                             "log it (logger.warning/debug, exc_info=True) or say in a comment why silence is right")
    return found


def test_no_exception_is_swallowed_without_a_word():
    assert [s for source in read_tree().values() for s in silent_excepts(source)] == []


@pytest.mark.parametrize(("body", "silent"), [
    ("except ValueError:\n    pass\n", True),
    ("except Exception:\n    return None\n", True),
    ("except OSError as exc:\n    continue\n", True),
    ("except ValueError:  # not a number: the next header may say\n    pass\n", False),
    ("except ValueError:\n    pass  # the answer sought\n", False),
    ("except Exception:\n    logger.warning('x failed', exc_info=True)\n", False),
    ("except OSError as exc:\n    return str(exc)\n", False),  # the caller gets the failure
    ("except KeyError:\n    raise LookupError('say what to do') from None\n", False),
])
def test_a_silent_except_is_caught(body, silent):
    text = "def f():\n  for _ in ():\n    try:\n        g()\n    " + body.replace("\n    ", "\n        ")
    source = Source("forge_actors.planted", False, text)
    assert bool(silent_excepts(source)) is silent


#: Who may configure logging: the commands, never the library (an embedding application owns its handlers).
LOGGING_CONFIGURERS = ("forge_actors.surfaces.cli",)
_CONFIGURING_CALLS = {"basicConfig", "addHandler", "dictConfig", "fileConfig"}


def logging_configured_in(source: Source) -> list[str]:
    return [f"{source.module} line {node.lineno}: {node.func.attr}"
            for node in ast.walk(_parsed(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in _CONFIGURING_CALLS]


def test_only_the_commands_configure_logging():
    found = [hit for source in read_tree().values() if source.module not in LOGGING_CONFIGURERS
             for hit in logging_configured_in(source)]
    assert found == []
    assert logging_configured_in(Source("forge_actors.planted", False, "import logging\nlogging.basicConfig()\n"))
