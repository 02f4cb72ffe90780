"""Incremental decoders for Server-Sent Events and newline-delimited JSON.

Both take bytes exactly as the network delivers them (split anywhere, even inside a
multi-byte UTF-8 character or between the CR and LF of a line end) and return whole
events. They split on bytes and decode a line only once it is complete, so a split
character is never seen half. ``finish()`` flushes what is left when the stream ends,
including a last event with no blank line after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar

import msgspec

_Item = TypeVar("_Item")


class SseEvent(msgspec.Struct, frozen=True, gc=False):
    """One dispatched event. ``data`` is the raw bytes (multi-line data joined with LF).

    Never tracked by the garbage collector (it holds only text and bytes): one is made per
    event, and tracking would add a third to its cost."""

    event: str = "message"
    data: bytes = b""
    id: str | None = None


#: Distinct ``event:`` lines a decoder remembers decoded (a server sending ever new names gets no more).
MAX_EVENT_NAMES = 64


class SseDecoder:
    """Server-Sent Events, as the WHATWG spec reads them (comments and ``retry`` ignored)."""

    __slots__ = ("_tail", "_data", "_more", "_event", "_id", "_names")

    def __init__(self) -> None:
        self._tail = b""  # the partial line after the last line end seen
        self._data: bytes | None = None  # the first data line of the event being read...
        self._more: list[bytes] | None = None  # ...or all of them, when it has several
        self._event: str | None = None
        self._id: str | None = None
        self._names: dict[bytes, str] = {}  # event lines, decoded: they repeat

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
        # One loop, hot cases first, state in locals: this runs for every line of every stream.
        events: list[SseEvent] = []
        dispatch = events.append
        data, more, event, ident, names = self._data, self._more, self._event, self._id, self._names
        for line in lines:
            if not line:  # blank line: dispatch
                if data is not None:
                    dispatch(SseEvent(event or "message", data if more is None else b"\n".join(more), ident))
                    data = more = None
                event = None
                continue
            if line[0] == 101 and (known := names.get(line)) is not None:  # b"e": an event line seen before
                event = known
                continue
            if line[:6] == b"data: ":
                value = line[6:]
            elif line[:5] == b"data:" or line == b"data":  # a field without a colon has an empty value
                value = line[5:]
            else:
                if line[0] == 58:  # b":" -- a comment (servers send these as keep-alive pings)
                    pass
                elif line[:6] == b"event:":
                    event = (line[7:] if line[6:7] == b" " else line[6:]).decode("utf-8", "replace")
                    if len(names) < MAX_EVENT_NAMES:
                        names[line] = event
                else:
                    field, colon, value = line.partition(b":")
                    if colon and value[:1] == b" ":
                        value = value[1:]
                    if field == b"id" and b"\0" not in value:
                        ident = value.decode("utf-8", "replace")
                    elif field == b"event":  # "event" alone: no type, so "message"
                        event = None
                    # "retry" and unknown fields are ignored, as the spec says.
                continue
            if data is None:  # a data line: most events have one
                data = value
            elif more is None:
                more = [data, value]
            else:
                more.append(value)
        self._data, self._more, self._event, self._id = data, more, event, ident
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


class _Decoder(Protocol[_Item]):
    def feed(self, chunk: bytes) -> list[_Item]: ...

    def finish(self) -> list[_Item]: ...


def _batches(decoder: _Decoder[_Item], chunks: Iterable[bytes]) -> Iterator[list[_Item]]:
    """What ``decoder`` makes of a byte stream, one list per chunk that completed any (the last one
    flushed at the end): a consumer's loop over these resumes this generator once per network read,
    not once per item."""
    for chunk in chunks:
        items = decoder.feed(chunk)
        if items:
            yield items
    yield decoder.finish()


def sse_batches(chunks: Iterable[bytes]) -> Iterator[list[SseEvent]]:
    """``sse_events``, one list per chunk that completed any (see ``_batches``)."""
    return _batches(SseDecoder(), chunks)


def ndjson_batches(chunks: Iterable[bytes]) -> Iterator[list[bytes]]:
    """``ndjson_lines``, one list per chunk that completed any (see ``_batches``)."""
    return _batches(NdjsonDecoder(), chunks)


def ndjson_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Every non-blank line of a byte stream, the last one included even without a final newline."""
    decoder = NdjsonDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.finish()
