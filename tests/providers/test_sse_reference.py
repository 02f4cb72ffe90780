"""The SSE decoder against a plain reading of the WHATWG spec, on streams of every field kind.

The decoder is written for speed (state in locals, hot fields first); this reference is
written for obviousness. Any stream, cut anywhere, must decode the same by both, and
``sse_batches`` must give the same events as ``sse_events``.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from forge_actors.providers.streams import SseEvent, sse_batches, sse_events


def reference(raw: bytes) -> list[SseEvent]:
    """Line by line, as the spec says (CRLF, LF and CR end lines; a last event needs no blank line)."""
    events: list[SseEvent] = []
    data: list[bytes] | None = None
    event = ""
    last_id: str | None = None
    for line in [*re.split(rb"\r\n|\r|\n", raw), b""]:
        if line == b"":
            if data is not None:
                events.append(SseEvent(event or "message", b"\n".join(data), last_id))
            data, event = None, ""
            continue
        if line.startswith(b":"):
            continue
        field, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data = [*(data or []), value]
        elif field == b"event":
            event = value.decode("utf-8", "replace")
        elif field == b"id" and b"\0" not in value:
            last_id = value.decode("utf-8", "replace")
    return events


LINES = st.sampled_from([
    b"data: {\"x\": 1}", b"data:tight", b"data:", b"data: ", b"event: content_block_delta", b"event:", b"event: \xc3\xa9",
    b"id: 7", b"id", b"retry: 10", b": ping", b":", b"foo: bar", b"data", b"",
])
ENDS = st.sampled_from([b"\n", b"\r\n", b"\r"])


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.tuples(LINES, ENDS), max_size=40))
    raw = b"".join(line + end for line, end in lines)
    return raw + draw(st.sampled_from([b"", b"data: unterminated"]))


def cut(raw: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(raw) + 1) for p in points})
    return [raw[a:b] for a, b in zip([0, *marks], [*marks, len(raw)], strict=True)]


@settings(max_examples=300, deadline=None)
@given(streams(), st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_the_decoder_reads_any_stream_as_the_spec_does(raw, points):
    parts = cut(raw, points)
    assert list(sse_events(parts)) == reference(raw)
    assert [event for batch in sse_batches(parts) for event in batch] == reference(raw)


def test_an_event_split_over_many_reads_comes_out_once_whole():
    raw = b"event: delta\r\nid: 3\r\ndata: one\r\ndata: two\r\n\r\n"
    parts = [raw[i:i + 1] for i in range(len(raw))]
    assert [event for batch in sse_batches(parts) for event in batch] == [SseEvent("delta", b"one\ntwo", "3")]
