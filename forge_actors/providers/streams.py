"""Incremental decoders for Server-Sent Events and newline-delimited JSON.

Both take bytes exactly as the network delivers them (split anywhere, even inside a
multi-byte UTF-8 character or between the CR and LF of a line end) and return whole
events. They split on bytes and decode a line only once it is complete, so a split
character is never seen half. ``finish()`` flushes what is left when the stream ends,
including a last event with no blank line after it.
"""

from __future__ import annotations

import msgspec


class SseEvent(msgspec.Struct, frozen=True):
    """One dispatched event. ``data`` is the raw bytes (multi-line data joined with LF)."""

    event: str = "message"
    data: bytes = b""
    id: str | None = None


class SseDecoder:
    """Server-Sent Events, as the WHATWG spec reads them (comments and ``retry`` ignored)."""

    __slots__ = ("_tail", "_data", "_event", "_id")

    def __init__(self) -> None:
        self._tail = b""
        self._data: list[bytes] = []
        self._event: str | None = None
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SseEvent]:
        if self._tail:
            chunk = self._tail + chunk
        if b"\r" in chunk:
            # A CR at the very end may be the first half of a CRLF: keep it for the next chunk.
            held = chunk.endswith(b"\r")
            if held:
                chunk = chunk[:-1]
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            lines = chunk.split(b"\n")
            self._tail = lines.pop() + (b"\r" if held else b"")
        else:
            lines = chunk.split(b"\n")
            self._tail = lines.pop()
        events: list[SseEvent] = []
        for line in lines:
            self._line(line, events)
        return events

    def finish(self) -> list[SseEvent]:
        """Flush at end of stream: a pending line, then a pending event."""
        events: list[SseEvent] = []
        tail, self._tail = self._tail.rstrip(b"\r"), b""
        if tail:
            self._line(tail, events)
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[SseEvent]) -> None:
        if not line:  # blank line: dispatch
            if self._data:
                events.append(SseEvent(self._event or "message", b"\n".join(self._data), self._id))
            self._data = []
            self._event = None
            return
        if line[0] == 58:  # b":" -- a comment (servers send these as keep-alive pings)
            return
        field, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            self._data.append(value)
        elif field == b"event":
            self._event = value.decode("utf-8", "replace")
        elif field == b"id":
            if b"\0" not in value:
                self._id = value.decode("utf-8", "replace")
        # "retry" and unknown fields are ignored, as the spec says.


class NdjsonDecoder:
    """Newline-delimited JSON: returns each non-blank line's bytes (CR stripped), undecoded."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._tail:
            chunk = self._tail + chunk
        lines = chunk.split(b"\n")
        self._tail = lines.pop()
        return [line for line in (raw.rstrip(b"\r") for raw in lines) if line.strip()]

    def finish(self) -> list[bytes]:
        tail, self._tail = self._tail.strip(), b""
        return [tail] if tail else []
