"""Providers over real sockets: chunk boundaries, CRLF, pings, cuts, stalls, retries."""

from __future__ import annotations

import time

import pytest
from loopback import DISCONNECT, LoopbackServer, Reply, split_every
from streams_fixtures import anthropic_stream, ollama_stream, openai_stream, sse

from forge_actors.providers import (
    AnthropicProvider,
    AuthenticationError,
    LlmRequest,
    Message,
    NotFoundError,
    OllamaProvider,
    OpenAIProvider,
    ProtocolError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    collect,
)

REQUEST = LlmRequest(messages=(Message("system", "sys"), Message("user", "Go")))
TEXTS = ["Hel", "lo ", "wörld ", "— 日本 ", "🎉"]


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make(kind: str, url: str, **kw):
    kw.setdefault("sleep", Sleeps())
    if kind == "anthropic":
        return AnthropicProvider("claude-x", api_key="k-123456", base_url=url, **kw)
    if kind == "openai":
        return OpenAIProvider("gpt-x", base_url=url + "/v1", **kw)
    return OllamaProvider("llama3.2", base_url=url, **kw)


WIRE = {
    "anthropic": lambda crlf=False: anthropic_stream(TEXTS, crlf=crlf),
    "openai": lambda crlf=False: openai_stream(TEXTS, crlf=crlf),
    "ollama": lambda crlf=False: ollama_stream(TEXTS).replace(b"\n", b"\r\n") if crlf else ollama_stream(TEXTS),
}


@pytest.mark.parametrize("kind", ["anthropic", "openai", "ollama"])
@pytest.mark.parametrize("size", [1, 3, 7, 64, 100_000])
def test_any_chunk_boundary(kind, size):
    with LoopbackServer(Reply(parts=split_every(WIRE[kind](), size))) as server:
        response = collect(make(kind, server.url).stream(REQUEST), "m")
    assert response.content == "".join(TEXTS)
    assert response.finish_reason in ("end_turn", "stop")
    assert response.usage.output_tokens > 0


@pytest.mark.parametrize("kind", ["anthropic", "openai", "ollama"])
def test_crlf_streams(kind):
    with LoopbackServer(Reply(parts=split_every(WIRE[kind](crlf=True), 5))) as server:
        assert collect(make(kind, server.url).stream(REQUEST), "m").content == "".join(TEXTS)


def test_pings_and_comments_between_slow_chunks():
    wire = anthropic_stream(["a", "b"])
    head, tail = wire.split(b"event: content_block_stop")
    parts = [head, b": keep-alive\n\n", 0.05, sse("ping", {"type": "ping"}), 0.05, b"event: content_block_stop" + tail]
    with LoopbackServer(Reply(parts=parts)) as server:
        assert collect(make("anthropic", server.url, timeout=5).stream(REQUEST), "m").content == "ab"


def test_mid_stream_error_event():
    wire = anthropic_stream(["partial"]).split(b"event: content_block_stop")[0]
    error = sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    with LoopbackServer(Reply(parts=[wire, error])) as server:
        chunks = make("anthropic", server.url).stream(REQUEST)
        assert next(chunks).delta == "partial"
        with pytest.raises(Exception) as info:
            list(chunks)
        assert info.value.retryable and len(server.requests) == 1  # text was out: not retried silently


@pytest.mark.parametrize("kind", ["anthropic", "openai", "ollama"])
def test_disconnect_after_text_is_reported_not_retried(kind):
    wire = WIRE[kind]()
    with LoopbackServer(Reply(parts=[wire[: len(wire) // 2], DISCONNECT]), Reply(parts=[wire])) as server:
        chunks = make(kind, server.url).stream(REQUEST)
        got = []
        with pytest.raises(ProtocolError):
            for chunk in chunks:
                got.append(chunk.delta)
        assert got and len(server.requests) == 1


def test_disconnect_before_first_delta_is_retried():
    wire = openai_stream(TEXTS)
    with LoopbackServer(Reply(parts=[b": hello\n\n", DISCONNECT]), Reply(parts=[wire])) as server:
        sleeps = Sleeps()
        response = collect(make("openai", server.url, sleep=sleeps).stream(REQUEST), "m")
        assert response.content == "".join(TEXTS)
        assert len(server.requests) == 2 and len(sleeps) == 1


def test_malformed_data_line():
    with LoopbackServer(Reply(parts=[b"data: {\"choices\": [\n\n"])) as server:
        with pytest.raises(ProtocolError):
            list(make("openai", server.url, max_retries=0).stream(REQUEST))


def test_stall_beyond_timeout_raises_timeout():
    wire = openai_stream(TEXTS)
    with LoopbackServer(Reply(parts=[wire[:120], 3.0, wire[120:]])) as server:
        start = time.monotonic()
        chunks = make("openai", server.url, timeout=0.4, max_retries=0).stream(REQUEST)
        with pytest.raises(RequestTimeoutError, match="0.4"):
            list(chunks)
        assert time.monotonic() - start < 2.5


def test_429_with_retry_after_then_success():
    wire = anthropic_stream(TEXTS)
    limited = Reply(429, [b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}'],
                    headers={"retry-after": "2"}, content_type="application/json")
    with LoopbackServer(limited, Reply(parts=[wire])) as server:
        sleeps = Sleeps()
        response = collect(make("anthropic", server.url, sleep=sleeps).stream(REQUEST), "m")
        assert response.content == "".join(TEXTS)
        assert sleeps == [2.0]  # honoured Retry-After


def test_429_retry_after_ms_and_exhaustion():
    limited = Reply(429, [b'{"error":{"message":"slow"}}'], headers={"retry-after-ms": "1500"}, content_type="application/json")
    with LoopbackServer(limited, limited, limited) as server:
        sleeps = Sleeps()
        with pytest.raises(RateLimitError):
            list(make("openai", server.url, sleep=sleeps, max_retries=2).stream(REQUEST))
        assert sleeps == [1.5, 1.5] and len(server.requests) == 3


def test_401_is_not_retried():
    denied = Reply(401, [b'{"error":{"message":"bad key"}}'], content_type="application/json")
    with LoopbackServer(denied, Reply(parts=[openai_stream(TEXTS)])) as server:
        with pytest.raises(AuthenticationError):
            list(make("openai", server.url).stream(REQUEST))
        assert len(server.requests) == 1


def test_500_then_success():
    with LoopbackServer(Reply(500, [b"oops"], content_type="text/plain"), Reply(parts=[ollama_stream(TEXTS)])) as server:
        sleeps = Sleeps()
        response = collect(make("ollama", server.url, sleep=sleeps).stream(REQUEST), "m")
        assert response.content == "".join(TEXTS) and len(sleeps) == 1
        assert 0.3 <= sleeps[0] <= 0.7  # base 0.5 s with jitter


def test_ollama_model_not_found_says_pull():
    missing = Reply(404, [b'{"error":"model \\"llama3.2\\" not found, try pulling it first"}'], content_type="application/json")
    with LoopbackServer(missing) as server:
        with pytest.raises(NotFoundError, match="ollama pull llama3.2"):
            list(make("ollama", server.url).stream(REQUEST))


@pytest.mark.parametrize("where", ["before", "after"])
def test_ollama_error_line(where):
    error = b'{"error":"an unexpected error occurred"}\n'
    parts = [error] if where == "before" else [ollama_stream(["a"]).split(b"\n")[0] + b"\n", error]
    with LoopbackServer(Reply(parts=parts, content_type="application/x-ndjson")) as server:
        with pytest.raises(ServerError, match="unexpected error"):
            list(make("ollama", server.url, max_retries=0).stream(REQUEST))


def test_connection_refused_is_a_connect_error():
    with LoopbackServer() as server:
        url = server.url
    from forge_actors.providers import ConnectError
    with pytest.raises(ConnectError, match="cannot connect"):
        list(make("ollama", url, max_retries=0).stream(REQUEST))


def test_closing_the_iterator_closes_the_response_at_once():
    many = [sse(None, {"choices": [{"index": 0, "delta": {"content": f"w{i} "}}]}) for i in range(400)]
    parts = [p for chunk in many for p in (chunk, 0.01)]
    with LoopbackServer(Reply(parts=parts)) as server:
        chunks = make("openai", server.url).stream(REQUEST)
        assert next(chunks).delta == "w0 "
        chunks.close()
        deadline = time.monotonic() + 3
        while server.disconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.disconnects == 1  # the server noticed long before its 4 s of writing


@pytest.mark.parametrize("kind", ["anthropic", "openai", "ollama"])
def test_abort_from_another_thread_wakes_a_stalled_read(kind):
    import threading

    from forge_actors.providers import CancelledError

    wire = WIRE[kind]()
    cut = wire.index(b"\"w")  # inside the third delta: the first two are through
    with LoopbackServer(Reply(parts=[wire[:cut], 30.0, wire[cut:]])) as server:
        provider = make(kind, server.url, timeout=30)
        chunks = provider.stream(REQUEST)
        first = next(chunks)  # the stream is live and the server now stalls for 30 s
        assert first.delta
        threading.Timer(0.2, provider.abort).start()
        with pytest.raises(CancelledError):  # not a ProtocolError: an aborted stream is never retried
            list(chunks)
        assert len(server.requests) == 1
        provider.abort()  # no stream live: a no-op
        provider.close()


def test_mock_abort_cuts_its_word_delay():
    import threading

    from forge_actors.providers import CancelledError, MockProvider

    mock = MockProvider("alice", word_delay=0.5)
    chunks = mock.stream(REQUEST)
    threading.Timer(0.1, mock.abort).start()
    start = time.monotonic()
    with pytest.raises(CancelledError):
        list(chunks)
    assert time.monotonic() - start < 0.45
    mock.word_delay = 0.0
    assert collect(mock.stream(REQUEST), "m").content  # the next stream is not affected


def test_the_same_malformed_line_again_is_not_retried_a_third_time():
    bad = Reply(parts=[b"data: {\"choices\": [\n\n"])
    with LoopbackServer(bad, bad, bad, bad) as server:
        with pytest.raises(ProtocolError, match="malformed"):
            list(make("openai", server.url, max_retries=3).stream(REQUEST))
        assert len(server.requests) == 2
