"""Prompt templates: plain text files in ``forge_actors/core/prompts/``, shipped in the wheel.

Placeholders are ``{{name}}``. Filling is one pass over the template, so text put in
(a goal, a draft, a persona) is never scanned again: braces, ``{{...}}`` or ``$x`` in
user text come out exactly as they went in.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_PLACEHOLDER = re.compile(r"\{\{([a-z_][a-z0-9_]*)\}\}")


class TemplateError(ValueError):
    """A template is missing, or was filled with the wrong names."""


@cache
def load_template(name: str) -> str:
    """The text of ``prompts/NAME.txt`` from the installed package."""
    path = resources.files("forge_actors.core").joinpath("prompts", f"{name}.txt")
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TemplateError(f"no prompt template named {name!r} (looked for {path})") from None


def placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))


def fill(template: str, /, **values: str) -> str:
    """Replace every ``{{name}}`` with ``values[name]``; a missing or extra name is an error."""
    wanted = placeholders(template)
    missing = wanted - values.keys()
    extra = values.keys() - wanted
    if missing or extra:
        raise TemplateError(
            f"template placeholders {sorted(wanted)} were filled with {sorted(values)}"
            f" (missing {sorted(missing)}, unexpected {sorted(extra)})"
        )
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def render(template_name: str, /, **values: str) -> str:
    return fill(load_template(template_name), **values)
