"""Incremental decoders for Server-Sent Events and newline-delimited JSON.

Both take bytes exactly as the network delivers them (split anywhere, even inside a
multi-byte UTF-8 character or between the CR and LF of a line end) and return whole
events. They split on bytes and decode a line only once it is complete, so a split
character is never seen half. ``finish()`` flushes what is left when the stream ends,
including a last event with no blank line after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import msgspec


class SseEvent(msgspec.Struct, frozen=True):
    """One dispatched event. ``data`` is the raw bytes (multi-line data joined with LF)."""

    event: str = "message"
    data: bytes = b""
    id: str | None = None


class SseDecoder:
    """Server-Sent Events, as the WHATWG spec reads them (comments and ``retry`` ignored)."""

    __slots__ = ("_tail", "_data", "_event", "_id", "_names")

    def __init__(self) -> None:
        self._tail = b""
        self._data: list[bytes] = []
        self._event: str | None = None
        self._id: str | None = None
        self._names: dict[bytes, str] = {}  # event names repeat: decode each once

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
        return self._lines(lines)

    def finish(self) -> list[SseEvent]:
        """Flush at end of stream: a pending line, then a pending event."""
        tail, self._tail = self._tail.rstrip(b"\r"), b""
        return self._lines([tail, b""] if tail else [b""])

    def _lines(self, lines: list[bytes]) -> list[SseEvent]:
        # One loop, hot cases first: this runs for every line of every stream.
        events: list[SseEvent] = []
        data = self._data
        event = self._event
        for line in lines:
            if not line:  # blank line: dispatch
                if data:
                    events.append(SseEvent(event or "message", data[0] if len(data) == 1 else b"\n".join(data), self._id))
                    data = []
                event = None
            elif line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line[0] == 58:  # b":" -- a comment (servers send these as keep-alive pings)
                continue
            elif line.startswith(b"event:"):
                value = line[7:] if line[6:7] == b" " else line[6:]
                name = self._names.get(value)
                if name is None:
                    name = self._names[value] = value.decode("utf-8", "replace")
                event = name
            else:
                field, colon, value = line.partition(b":")
                if colon and value[:1] == b" ":
                    value = value[1:]
                if field == b"id" and b"\0" not in value:
                    self._id = value.decode("utf-8", "replace")
                # "retry" and unknown fields are ignored, as the spec says.
        self._data = data
        self._event = event
        return events


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


def sse_events(chunks: Iterable[bytes]) -> Iterator[SseEvent]:
    """Every event of a byte stream, the last one included even without a final blank line."""
    decoder = SseDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.finish()


def ndjson_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Every non-blank line of a byte stream, the last one included even without a final newline."""
    decoder = NdjsonDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.finish()
