"""A regular expression a model wrote: checked and compiled by RE2, and said again for ripgrep.

Python's ``re`` backtracks: a pattern such as ``(a|aa)+$`` takes exponential time on a line of
``a``s, and its match holds the GIL, so every thread of the process stops with it and the tool's
deadline never fires. RE2 matches in time linear in the text, lets other threads run while it
matches, and has no look-arounds or backreferences (the features that need backtracking). Every
pattern a model gives is compiled here, whichever engine then searches: a pattern RE2 refuses is
refused with what to write instead, so that grep with ripgrep and grep without it take the same
language. ripgrep runs its own linear engine (never PCRE2) on ``ripgrep_pattern``, the same pattern
with RE2's ASCII meaning of ``\\d \\w \\s \\b`` spelled out.
"""

from __future__ import annotations

from typing import Any

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

from forge_actors.tools.base import ToolError

#: The longest pattern a model may give (the tools' schemas say the same).
MAX_PATTERN_CHARS = 1000
#: RE2's memory budget for one pattern: its compiled program and its DFA cache (RE2's default).
#: A pattern whose program does not fit is refused as too large; the cache, once full, is reset.
MAX_PATTERN_MEMORY = 8 << 20
#: RE2's bound on a counted repetition, nested ones multiplied: a{1000} is the most.
MAX_REPEAT = 1000


class Pattern:
    """A model's pattern, compiled by RE2: ``search`` and ``count`` one line at a time."""

    def __init__(self, text: str, *, ignore_case: bool = False) -> None:
        if len(text) > MAX_PATTERN_CHARS:
            raise ToolError(f"the pattern has {len(text)} characters; at most {MAX_PATTERN_CHARS} are accepted")
        self.text = text
        self.ignore_case = ignore_case
        self._regex = _compile(text, ignore_case)

    def __repr__(self) -> str:
        return f"Pattern({self.text!r}, ignore_case={self.ignore_case})"

    def search(self, line: str) -> bool:
        return self._regex.search(line) is not None

    def count(self, line: str) -> int:
        """Non-overlapping matches in ``line``."""
        return sum(1 for _ in self._regex.finditer(line))

    def ripgrep_pattern(self) -> str | None:
        """The pattern for ripgrep's engine with RE2's meaning, or None where ripgrep would read it otherwise."""
        return ripgrep_pattern(self.text)


def _compile(text: str, ignore_case: bool) -> Any:  # a re2._Regexp
    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern on stderr; the model gets our message
    options.max_mem = MAX_PATTERN_MEMORY
    options.case_sensitive = not ignore_case
    try:
        return re2.compile(text, options)
    except re2.error as error:
        reason = error.args[0].decode("utf-8", "replace") if error.args and isinstance(error.args[0], bytes) \
            else str(error)
        raise ToolError(refusal(text, reason)) from None
    finally:
        # re2.compile keeps its last 128 patterns, each with up to MAX_PATTERN_MEMORY of DFA cache: a model's
        # patterns are used for one call, so none is kept (memory stays at what the running calls use).
        re2.purge()


_LOOK_AROUNDS = ("(?=", "(?!", "(?<=", "(?<!")
_NO_ENGINE = "the search engine (RE2, which takes time linear in the text)"


def refusal(pattern: str, reason: str) -> str:
    """What to tell the model about a pattern RE2 refused with ``reason``: what is wrong, and what to write."""
    operator = reason.removeprefix("invalid perl operator: ")
    if reason.startswith("invalid perl operator: ") and operator in _LOOK_AROUNDS:
        return (f"invalid regular expression {pattern!r}: look-arounds ({', '.join(_LOOK_AROUNDS)}) are not "
                f"supported by {_NO_ENGINE}; match the surrounding text too (e.g. 'def start' instead of "
                "'(?<=def )start') and read the lines it finds")
    if (reason.startswith("invalid escape sequence: \\") and reason[-1:].isdigit()) or operator == "(?P":
        return (f"invalid regular expression {pattern!r}: backreferences (\\1, (?P=name)) are not supported by "
                f"{_NO_ENGINE}; write the repeated text out, or search for one part and read the lines it finds")
    if reason == "invalid escape sequence: \\Z":
        return f"invalid regular expression {pattern!r}: write \\z (or $) for the end of the line, not \\Z"
    if operator == "(?>" or reason.startswith("bad repetition operator: ") and reason[-1:] == "+":
        return (f"invalid regular expression {pattern!r}: atomic groups and possessive quantifiers are not "
                f"supported, and not needed: {_NO_ENGINE} never backtracks; write (?:a+) or a+ instead")
    if reason.startswith("invalid repetition size"):
        return (f"invalid regular expression {pattern!r}: {reason}; a counted repetition goes up to "
                f"{{{MAX_REPEAT}}}, nested ones multiplied")
    if reason.startswith("pattern too large"):
        return (f"invalid regular expression {pattern!r}: it compiles to more than the "
                f"{MAX_PATTERN_MEMORY >> 20} MiB the search engine allows; use a shorter pattern or smaller "
                "counted repetitions")
    return f"invalid regular expression {pattern!r}: {reason} (the syntax is RE2's: no look-arounds, no backreferences)"


# -- ripgrep ----------------------------------------------------------------------------------

#: RE2's ASCII classes, written out so that ripgrep (whose \d \w \s are Unicode) means the same.
_ASCII_CLASSES = {"d": "0-9", "w": "0-9A-Za-z_", "s": "\\t\\n\\f\\r "}


def ripgrep_pattern(pattern: str) -> str | None:
    """``pattern`` as ripgrep's engine (Rust's regex) reads it with the meaning RE2 gives it; None when unsure.

    The two syntaxes are alike but for a few points: ``\\d \\w \\s \\b`` are ASCII in RE2 and Unicode
    in Rust (so they are spelled out as classes and ``(?-u:\\b)``), ``\\z`` is after the newline of
    ripgrep's line (so it becomes ``$``, which is before it), and a character class holding
    ``[``, ``&&``, ``--`` or ``~~`` nests or combines classes in Rust where RE2 reads plain characters.
    For those, for ``\\Q...\\E`` and for a NUL (no argv can carry one), None: grep then searches with
    RE2 itself. Whatever Rust refuses beyond this, ripgrep refuses, and grep falls back to RE2 too.
    """
    if "\x00" in pattern:
        return None
    out: list[str] = []
    in_class = False
    class_body = ""  # the characters of the class being read, to spot Rust's set operators
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            escaped = pattern[i + 1]
            if escaped == "Q":
                return None
            if escaped.lower() in _ASCII_CLASSES:
                out.append(f"[{'^' if escaped.isupper() else ''}{_ASCII_CLASSES[escaped.lower()]}]")
            elif escaped in "bB" and not in_class:
                out.append(f"(?-u:\\{escaped})")
            elif escaped == "z" and not in_class:  # ripgrep's \z is after the line's newline; "$" is before it
                out.append("$")
            else:
                out.append(char + escaped)
            class_body += "\\" if in_class else ""
            i += 2
            continue
        if in_class:
            if char == "[" and pattern.startswith("[:", i):  # [:alpha:] means the same in both
                end = pattern.find(":]", i + 2)
                if end < 0:
                    return None
                out.append(pattern[i:end + 2])
                class_body += ":"
                i = end + 2
                continue
            if char == "]" and class_body not in ("", "^"):  # a "]" first in a class is a character
                in_class = False
            elif char == "[" or (char in "&-~" and class_body.endswith(char)):
                return None
            class_body += char
        elif char == "[":
            in_class, class_body = True, ""
        out.append(char)
        i += 1
    return "".join(out)
