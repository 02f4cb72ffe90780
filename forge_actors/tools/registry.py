"""Choosing tools, checking a model's arguments, and running one call within its limits.

``Toolbox.call`` is the only way the engine runs a tool, and it never raises for anything a
model did: an unknown tool, arguments that fail the schema, a refused path, a timeout, an
exhausted budget, an OSError — each becomes a ``ToolResult`` whose ``error`` tells the model
what to do instead.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from forge_actors.tools.base import (
    CATEGORIES,
    Tool,
    ToolContext,
    ToolError,
    ToolResult,
    ToolSpec,
    timeout_message,
)
from forge_actors.tools.workspace import PathRefused

logger = logging.getLogger(__name__)


class UnknownToolError(ValueError):
    """A tool or category name that does not exist (operator configuration, not model input)."""


def default_registry() -> Mapping[str, Tool]:
    """Every built-in tool by name, in category order."""
    # Imported here: the tool modules import Tool from base, and this module is imported by __init__.
    from forge_actors.tools import advanced, edit, files, git, search, shell

    tools: dict[str, Tool] = {}
    for module in (files, search, git, edit, shell, advanced):
        for tool in module.TOOLS:
            if tool.name in tools:
                raise ValueError(f"two tools are named {tool.name!r}")
            tools[tool.name] = tool
    return MappingProxyType(tools)


def select_tools(spec: str | Iterable[str], *, registry: Mapping[str, Tool] | None = None) -> tuple[str, ...]:
    """The tool names a comma list (or iterable) of tool and category names stands for, in a stable order.

    A category stands for all its tools in registry order; a name given twice counts once.
    """
    registry = registry if registry is not None else _default()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    chosen: dict[str, None] = {}
    unknown: list[str] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        if item in registry:
            chosen[item] = None
        elif item in CATEGORIES:
            chosen.update({name: None for name, tool in registry.items() if tool.category == item})
        else:
            unknown.append(item)
    if unknown:
        raise UnknownToolError(f"unknown tool or category {', '.join(map(repr, unknown))}; "
                               f"categories: {', '.join(CATEGORIES)}; tools: {', '.join(registry)}")
    return tuple(chosen)


_DEFAULT: Mapping[str, Tool] | None = None


def _default() -> Mapping[str, Tool]:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = default_registry()
    return _DEFAULT


# -- budget -----------------------------------------------------------------------------------


@dataclass
class ToolBudget:
    """What one contribution may still spend on tools; Toolbox.budget() makes a fresh one."""

    max_calls: int
    max_total_seconds: float
    calls: int = 0
    seconds: float = 0.0

    def refusal(self) -> str | None:
        if self.calls >= self.max_calls:
            return (f"the tool budget is spent ({self.max_calls} calls per contribution); "
                    "answer now with what you have found")
        if self.seconds >= self.max_total_seconds:
            return (f"the tool budget is spent ({self.max_total_seconds:g}s of tool time per contribution); "
                    "answer now with what you have found")
        return None

    def remaining_seconds(self) -> float:
        return max(0.0, self.max_total_seconds - self.seconds)


# -- argument validation ----------------------------------------------------------------------

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "array": (list, tuple), "object": (dict,),
}


class ArgumentError(ToolError):
    pass


def validate_arguments(schema: Mapping[str, Any], arguments: Any) -> dict[str, Any]:
    """``arguments`` checked against the schema subset the tools use, with defaults filled in.

    Checked: object type, required, no extra keys, types, enum, minimum/maximum,
    minLength/maxLength, minItems/maxItems and array items. ArgumentError says what is wrong.
    """
    if not isinstance(arguments, Mapping):
        raise ArgumentError(f"arguments must be a JSON object, not {type(arguments).__name__}")
    properties: Mapping[str, Any] = schema.get("properties", {})
    extra = sorted(str(k) for k in arguments if k not in properties)
    if extra and schema.get("additionalProperties", True) is False:
        raise ArgumentError(f"unknown argument(s) {', '.join(map(repr, extra))}; accepted: {', '.join(properties) or 'none'}")
    missing = [name for name in schema.get("required", ()) if name not in arguments]
    if missing:
        raise ArgumentError(f"missing required argument(s) {', '.join(map(repr, missing))}")
    checked: dict[str, Any] = {}
    for name, rule in properties.items():
        if name in arguments and arguments[name] is not None:
            checked[name] = _check_value(name, rule, arguments[name])
        elif "default" in rule:
            checked[name] = rule["default"]
    return checked


def _check_value(name: str, rule: Mapping[str, Any], value: Any) -> Any:
    kind = rule.get("type")
    if kind is not None:
        allowed = _TYPES[kind]
        if isinstance(value, bool) and kind in ("integer", "number"):  # JSON true is not 1
            raise ArgumentError(f"argument {name!r} must be {kind}, not a boolean")
        if kind == "integer" and isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, allowed):
            raise ArgumentError(f"argument {name!r} must be {'an' if kind[0] in 'aio' else 'a'} {kind}, "
                                f"not {type(value).__name__}")
        if kind == "number" and isinstance(value, float) and not math.isfinite(value):
            raise ArgumentError(f"argument {name!r} must be a finite number")
    if "enum" in rule and value not in rule["enum"]:
        raise ArgumentError(f"argument {name!r} must be one of {', '.join(map(repr, rule['enum']))}")
    if "minimum" in rule and value < rule["minimum"]:
        raise ArgumentError(f"argument {name!r} must be at least {rule['minimum']}")
    if "maximum" in rule and value > rule["maximum"]:
        raise ArgumentError(f"argument {name!r} must be at most {rule['maximum']}")
    if isinstance(value, str):
        if "minLength" in rule and len(value) < rule["minLength"]:
            raise ArgumentError(f"argument {name!r} must have at least {rule['minLength']} character(s)")
        if "maxLength" in rule and len(value) > rule["maxLength"]:
            raise ArgumentError(f"argument {name!r} must have at most {rule['maxLength']} characters")
    if isinstance(value, (list, tuple)):
        if "minItems" in rule and len(value) < rule["minItems"]:
            raise ArgumentError(f"argument {name!r} needs at least {rule['minItems']} item(s)")
        if "maxItems" in rule and len(value) > rule["maxItems"]:
            raise ArgumentError(f"argument {name!r} takes at most {rule['maxItems']} items")
        items = rule.get("items")
        value = [_check_value(f"{name}[{i}]", items, v) for i, v in enumerate(value)] if items else list(value)
    return value


# -- the toolbox ------------------------------------------------------------------------------


def truncate(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to at most ``limit`` characters, note included, at a line boundary when one is in the last half."""
    if len(text) <= limit:
        return text, False

    def note(shown: int) -> str:
        return (f"\n[output truncated: {shown} of {len(text)} characters shown; "
                "ask for less (a line range, a narrower path or pattern)]")

    room = max(limit - len(note(limit)), 0)
    cut = text.rfind("\n", 0, room)
    if cut < room // 2:
        cut = room
    return text[:cut] + note(cut), True


class Toolbox:
    """The tools one participant may use, with the context they run in."""

    def __init__(self, names: str | Iterable[str], context: ToolContext,
                 registry: Mapping[str, Tool] | None = None) -> None:
        """``names``: tool and category names, as ``select_tools`` takes them (UnknownToolError for others)."""
        self.registry = registry if registry is not None else _default()
        self.names = select_tools(names, registry=self.registry)
        self.context = context
        self.tools = {name: self.registry[name] for name in self.names}

    def __repr__(self) -> str:
        return f"Toolbox({list(self.names)!r})"

    def __len__(self) -> int:
        return len(self.tools)

    def definitions(self) -> list[ToolSpec]:
        return [ToolSpec(t.name, t.description, dict(t.parameters)) for t in self.tools.values()]

    def describe(self) -> str:
        """One line per tool for a prompt: ``name(arg, opt?) - description``."""
        lines = []
        for tool in self.tools.values():
            props = tool.parameters.get("properties", {})
            required = set(tool.parameters.get("required", ()))
            args = ", ".join(name if name in required else f"{name}?" for name in props)
            lines.append(f"- {tool.name}({args}): {tool.description}")
        return "\n".join(lines)

    def budget(self) -> ToolBudget:
        limits = self.context.limits
        return ToolBudget(max_calls=limits.max_calls, max_total_seconds=limits.max_total_seconds)

    def call(self, name: str, arguments: Mapping[str, Any] | None, budget: ToolBudget | None = None) -> ToolResult:
        started = time.monotonic()

        def failed(message: str, output: str = "") -> ToolResult:
            return ToolResult(output=output, error=message, duration_ms=(time.monotonic() - started) * 1000)

        if budget is not None:  # every attempt counts, so that a model repeating a bad call still runs out
            refusal = budget.refusal()
            if refusal is not None:
                return failed(refusal)
            budget.calls += 1
        tool = self.tools.get(name) if isinstance(name, str) else None
        if tool is None:
            known = ", ".join(self.names) or "none"
            if isinstance(name, str) and name in self.registry:
                return failed(f"tool {name!r} is not enabled for you; available tools: {known}")
            return failed(f"there is no tool {name!r}; available tools: {known}")
        limits = self.context.limits
        seconds = limits.timeout_seconds if budget is None else min(limits.timeout_seconds, budget.remaining_seconds())
        try:
            try:
                args = validate_arguments(tool.parameters, arguments if arguments is not None else {})
                output = tool.run(args, self.context.with_deadline(started + seconds))
            except (ToolError, PathRefused) as error:
                return failed(str(error))
            except TimeoutError:  # a library's own timeout (httpx): the model is told, as for ours
                return failed(timeout_message(seconds))
            except RecursionError:  # a deeply nested input (ast, regex): the model can simplify it
                return failed("the input is nested too deeply to process; simplify it")
            except OSError as error:
                return failed(f"the operation failed: {error.strerror or type(error).__name__}")
            except Exception:  # a bug of ours, not the model's: logged, and still a result the model can read
                logger.exception("tool %s failed unexpectedly", name)
                return failed(f"tool {name!r} failed with an internal error; try another approach")
        finally:
            if budget is not None:
                budget.seconds += time.monotonic() - started
        result = output if isinstance(output, ToolResult) else ToolResult(output=output)
        text, cut = truncate(result.output, limits.max_output_chars)
        return ToolResult(output=text, truncated=result.truncated or cut, error=result.error,
                          duration_ms=(time.monotonic() - started) * 1000)
