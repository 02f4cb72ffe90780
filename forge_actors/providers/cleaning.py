"""Turning a terminal program's output into the answer text, incrementally.

Command-line assistants write for a terminal: colours and cursor moves (ANSI CSI and
OSC sequences), spinners redrawn in place with carriage returns, braille "thinking"
frames, banners and hints. ``TerminalCleaner`` takes the output in whatever pieces it
arrives (an escape sequence may be split across reads) and gives back clean text:

- escape sequences are removed (CSI ``ESC [ ... final``, OSC ``ESC ] ... BEL|ESC \\``,
  and two-byte ``ESC x`` ones); backspaces erase;
- a line is released when its newline arrives, as it finally stood: text overwritten
  by a carriage return is dropped, so spinner redraws vanish;
- lines of spinner frames only, and lines matching a configured noise pattern, are
  dropped; braille spinner characters are removed anywhere.

A line still open can be released early with ``flush_partial()``: the providers release
its whole words as they arrive, and the rest after a short quiet spell, so text streams
before its line ends — unless the line looks like a spinner or status line that a
carriage return may still redraw.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_CSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_OSC = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
_TWO_BYTE = re.compile(r"\x1b[()*+][0-9A-Za-z]|\x1b[@-Z\\-_=>78]")
#: An escape sequence that may still be going on at the end of a piece.
_UNFINISHED = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*\x1b?|[()*+])?$")
_CONTROL = re.compile(r"[\x00-\x07\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]")
_BRAILLE = re.compile(r"[\u2800-\u28ff]")
_SPINNER_ONLY = re.compile(r"^[\s\u2800-\u28ff|/\\\-◐◓◑◒◴◷◶◵○◔◕●✶✸✹✺✻✽·•.…]*$")


def strip_escapes(text: str) -> str:
    """``text`` without escape sequences and control characters (tabs and newlines kept)."""
    text = _OSC.sub("", text)
    text = _CSI.sub("", text)
    text = _TWO_BYTE.sub("", text)
    return _CONTROL.sub("", text)


def _apply_backspaces(line: str) -> str:
    if "\b" not in line:
        return line
    out: list[str] = []
    for char in line:
        if char == "\b":
            if out:
                out.pop()
        else:
            out.append(char)
    return "".join(out)


class TerminalCleaner:
    def __init__(self, noise: Iterable[str] = ()) -> None:
        self._noise = [re.compile(pattern) for pattern in noise]
        self._raw_tail = ""  # an escape sequence cut off at the end of the last piece
        self._line = ""  # the current, unfinished line (may hold carriage returns)
        self._released = 0  # characters of the current line already given out early

    def feed(self, piece: str) -> str:
        """Clean text of every line ``piece`` completes."""
        text = self._raw_tail + piece
        unfinished = _UNFINISHED.search(text)
        if unfinished and unfinished.group(0):
            self._raw_tail, text = unfinished.group(0), text[: unfinished.start()]
        elif text.endswith("\r"):  # maybe the first half of "\r\n"
            self._raw_tail, text = "\r", text[:-1]
        else:
            self._raw_tail = ""
        text = strip_escapes(text.replace("\r\n", "\n"))
        out: list[str] = []
        *complete, self._line = (self._line + text).split("\n")
        for line in complete:
            out.append(self._finish_line(line))
        return "".join(out)

    def flush_partial(self, whole_words: bool = False) -> str:
        """Release what the open line holds so far — unless it looks like a spinner or status line
        that a carriage return may still redraw. ``whole_words``: only up to its last space."""
        visible = self._line.rsplit("\r", 1)[-1]  # what a redraw left standing
        if "\b" in visible or _BRAILLE.search(visible):
            return ""
        if not visible.strip() or self._noisy(visible) or _SPINNER_ONLY.match(visible):
            return ""
        end = visible.rfind(" ") + 1 if whole_words else len(visible)
        if end <= self._released:
            return ""
        fresh = visible[self._released:end]
        self._released = end
        return fresh

    def open_line(self) -> str:
        """The line still being written, as it stands now (e.g. a tool's prompt waiting for input)."""
        return _BRAILLE.sub("", _apply_backspaces(self._line.rsplit("\r", 1)[-1]))

    def finish(self) -> str:
        """The end of the output: release the open line too."""
        line = self._line + strip_escapes(self._raw_tail.replace("\r", ""))
        rest = self._finish_line(line, newline=False) if line else ""
        self._line, self._raw_tail = "", ""
        return rest

    def _finish_line(self, line: str, newline: bool = True) -> str:
        released, self._released = self._released, 0
        final = _BRAILLE.sub("", _apply_backspaces(line.rsplit("\r", 1)[-1]))
        if released:  # its start went out early: give the rest, whatever a redraw did
            return final[released:] + ("\n" if newline else "")
        if (final.strip() and _SPINNER_ONLY.match(final)) or self._noisy(final):
            return ""
        return final + ("\n" if newline else "")

    def _noisy(self, line: str) -> bool:
        return any(pattern.search(line) for pattern in self._noise)


def clean(text: str, noise: Iterable[str] = ()) -> str:
    """All of ``text`` cleaned at once."""
    cleaner = TerminalCleaner(noise)
    return cleaner.feed(text) + cleaner.finish()
