"""The shared SSE and NDJSON decoders: any split of the bytes decodes the same."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from streams_fixtures import anthropic_stream, ollama_stream, openai_stream

from forge_actors.providers.streams import NdjsonDecoder, SseDecoder, SseEvent


def decode_sse(parts: list[bytes]) -> list[SseEvent]:
    decoder = SseDecoder()
    events = []
    for part in parts:
        events += decoder.feed(part)
    return events + decoder.finish()


def decode_ndjson(parts: list[bytes]) -> list[bytes]:
    decoder = NdjsonDecoder()
    lines = []
    for part in parts:
        lines += decoder.feed(part)
    return lines + decoder.finish()


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def test_fields_comments_multiline_and_ids():
    raw = b": ping\n\nevent: greet\nid: 7\ndata: line one\ndata: line two\nretry: 100\nfoo: bar\n\ndata:no-space\n\n"
    events = decode_sse([raw])
    assert events == [SseEvent("greet", b"line one\nline two", "7"), SseEvent("message", b"no-space", "7")]


def test_crlf_lf_and_cr_line_ends_are_the_same():
    for nl in (b"\n", b"\r\n", b"\r"):
        raw = b"event: a" + nl + b"data: x" + nl + nl + b"data: y" + nl + nl
        assert decode_sse([raw]) == [SseEvent("a", b"x"), SseEvent("message", b"y")]


def test_crlf_split_between_cr_and_lf():
    assert decode_sse([b"data: x\r", b"\n\r", b"\ndata: y\r\n\r\n"]) == [SseEvent("message", b"x"), SseEvent("message", b"y")]


def test_trailing_event_without_blank_line_is_delivered():
    assert decode_sse([b"data: last"]) == [SseEvent("message", b"last")]
    assert decode_ndjson([b'{"a": 1}\n{"b": 2}']) == [b'{"a": 1}', b'{"b": 2}']


def test_multibyte_utf8_split_inside_a_character():
    raw = "event: é\ndata: {\"text\": \"naïve — 日本 🎉\"}\n\n".encode()
    whole = decode_sse([raw])
    for cut in range(1, len(raw)):
        assert decode_sse([raw[:cut], raw[cut:]]) == whole
    assert whole[0].event == "é"


def test_ndjson_skips_blank_lines_and_strips_cr():
    assert decode_ndjson([b'{"a":1}\r\n\r\n  \n{"b":2}\r\n']) == [b'{"a":1}', b'{"b":2}']


STREAMS = [
    anthropic_stream(["Hel", "lo, ", "wörld 🎉"]),
    anthropic_stream(["a", "b"], crlf=True),
    openai_stream(["x", "y", "ž"]),
    openai_stream(["x"], crlf=True),
    b": comment\r\n\r\nevent: e\r\ndata: 1\r\ndata: 2\r\n\r\n:\n\ndata: tail",
]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(STREAMS), st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
def test_sse_any_split_decodes_identically(raw, cuts):
    assert decode_sse(split_at(raw, cuts)) == decode_sse([raw])


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([ollama_stream(["a", "ü", "日本"]), b'{"x":1}\r\n{"y":2}']),
       st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
def test_ndjson_any_split_decodes_identically(raw, cuts):
    assert decode_ndjson(split_at(raw, cuts)) == decode_ndjson([raw])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=20).filter(lambda b: b"\r" not in b and b"\n" not in b), max_size=6),
       st.lists(st.integers(min_value=0, max_value=500), max_size=10))
def test_random_data_lines_survive_any_split(payloads, cuts):
    raw = b"".join(b"data: " + p + b"\r\n\r\n" for p in payloads if p)
    expected = [SseEvent("message", p) for p in payloads if p]
    assert decode_sse(split_at(raw, cuts)) == expected
