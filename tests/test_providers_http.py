"""HTTP providers against respx: request shape, stream parsing quirks, error mapping, secrets."""

from __future__ import annotations

import json

import httpx
import pytest
import respx
from streams_fixtures import anthropic_stream, openai_stream, sse

from forge_actors.providers import (
    AnthropicProvider,
    AuthenticationError,
    BadRequestError,
    EmptyResponseError,
    LlmRequest,
    Message,
    MissingApiKeyError,
    NotFoundError,
    OllamaProvider,
    OpenAIProvider,
    OverloadedError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitError,
    ServerError,
    Usage,
    collect,
)

SECRET = "sk-test-SECRET-0123456789"
REQUEST = LlmRequest(
    messages=(Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello"), Message("user", "Plan?")),
    temperature=0.2,
    max_tokens=300,
    stop=("END",),
)
NO_SLEEP = {"sleep": lambda _s: None}


def anthropic(**kw) -> AnthropicProvider:
    return AnthropicProvider("claude-sonnet-4-20250514", api_key=SECRET, base_url="https://anthropic.test", **NO_SLEEP, **kw)


def openai(**kw) -> OpenAIProvider:
    return OpenAIProvider("gpt-4o", api_key=SECRET, **NO_SLEEP, **kw)


def ollama(**kw) -> OllamaProvider:
    return OllamaProvider("llama3.2", base_url="http://ollama.test", **NO_SLEEP, **kw)


@respx.mock
def test_anthropic_request_shape():
    route = respx.post("https://anthropic.test/v1/messages").mock(
        return_value=httpx.Response(200, content=anthropic_stream(["Hi", " there"]))
    )
    chunks = list(anthropic().stream(REQUEST))
    sent = route.calls.last.request
    assert sent.headers["x-api-key"] == SECRET
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["content-type"] == "application/json"
    body = json.loads(sent.content)
    assert body["system"] == "Be brief."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["model"] == "claude-sonnet-4-20250514"  # empty request.model -> the provider's own
    assert (body["max_tokens"], body["temperature"], body["stop_sequences"], body["stream"]) == (300, 0.2, ["END"], True)
    assert "".join(c.delta for c in chunks) == "Hi there"
    final = chunks[-1]
    assert final.is_complete and final.finish_reason == "end_turn" and final.usage == Usage(25, 7)


@respx.mock
def test_anthropic_thinking_and_tool_deltas_do_not_leak_and_usage_is_assigned():
    extras = (
        sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                    "delta": {"type": "thinking_delta", "thinking": "secret thoughts"}})
        + sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                      "delta": {"type": "signature_delta", "signature": "sig"}})
        + sse("content_block_delta", {"type": "content_block_delta", "index": 1,
                                      "delta": {"type": "input_json_delta", "partial_json": "{\"a\""}})
        + sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": None}, "usage": {"output_tokens": 3}})
        + sse("brand_new_event", {"type": "brand_new_event", "surprise": True})
    )
    respx.post("https://anthropic.test/v1/messages").mock(
        return_value=httpx.Response(200, content=anthropic_stream(["ok"], output_tokens=9, extras=extras))
    )
    response = collect(anthropic().stream(REQUEST), "m")
    assert response.content == "ok"
    assert response.usage == Usage(25, 9)  # the last cumulative count, not 3 + 9


@respx.mock
def test_anthropic_refusal_stop_reason_passes_through_and_complete_reads_blocks():
    respx.post("https://anthropic.test/v1/messages").mock(side_effect=[
        httpx.Response(200, content=anthropic_stream(["no"], stop_reason="refusal")),
        httpx.Response(200, json={"content": [{"type": "thinking", "thinking": "x"}, {"type": "text", "text": "A"},
                                              {"type": "text", "text": "B"}],
                                  "stop_reason": "max_tokens", "model": "claude-x",
                                  "usage": {"input_tokens": 4, "output_tokens": 2}}),
    ])
    provider = anthropic()
    assert collect(provider.stream(REQUEST), "m").finish_reason == "refusal"
    response = provider.complete(REQUEST)
    assert (response.content, response.finish_reason, response.usage, response.model) == ("AB", "max_tokens", Usage(4, 2), "claude-x")


@respx.mock
@pytest.mark.parametrize("error_type, expected", [
    ("overloaded_error", OverloadedError), ("rate_limit_error", RateLimitError), ("api_error", ServerError),
    ("invalid_request_error", BadRequestError), ("authentication_error", AuthenticationError),
])
def test_anthropic_error_event_after_200(error_type, expected):
    stream = anthropic_stream(["partial"]).split(b"event: content_block_stop")[0] + sse(
        "error", {"type": "error", "error": {"type": error_type, "message": "Overloaded"}})
    respx.post("https://anthropic.test/v1/messages").mock(return_value=httpx.Response(200, content=stream))
    chunks = anthropic(max_retries=0).stream(REQUEST)
    assert next(chunks).delta == "partial"
    with pytest.raises(expected):
        next(chunks)


@respx.mock
def test_openai_request_shape_and_quirks():
    body = (
        b": keep-alive\n\n"
        + sse(None, {"choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": "hmm"}}]})
        + sse(None, {"choices": [{"index": 0, "delta": {"role": "assistant", "reasoning": "think"}}]})
        + sse(None, {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}],
                     "usage": {"prompt_tokens": 5, "completion_tokens": 1}})
        + sse(None, {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "lo"}, "finish_reason": None}],
                     "usage": {"prompt_tokens": 5, "completion_tokens": 2}})
        + sse(None, {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}], "x_unknown": 1})
        + sse(None, {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}})
        + sse(None, "[DONE]")
    )
    route = respx.post("https://api.openai.com/v1/chat/completions").mock(return_value=httpx.Response(200, content=body))
    chunks = list(openai().stream(REQUEST))
    sent = route.calls.last.request
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    payload = json.loads(sent.content)
    assert payload["stream_options"] == {"include_usage": True} and payload["stream"] is True
    assert payload["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (payload["model"], payload["max_tokens"], payload["stop"]) == ("gpt-4o", 300, ["END"])
    assert "".join(c.delta for c in chunks) == "Hello"
    assert (chunks[-1].finish_reason, chunks[-1].usage) == ("length", Usage(5, 3))


@respx.mock
def test_openai_usage_absent_and_no_done():
    respx.post("http://local.test/v1/chat/completions").mock(
        return_value=httpx.Response(200, content=openai_stream(["a", "b"], usage=False, done=False)))
    provider = OpenAIProvider("local-model", base_url="http://local.test/v1", **NO_SLEEP)  # no key needed
    response = collect(provider.stream(REQUEST), "m")
    assert (response.content, response.finish_reason, response.usage) == ("ab", "stop", Usage(0, 0))


@respx.mock
def test_openai_local_server_gets_no_authorization_header(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    route = respx.post("http://local.test/v1/chat/completions").mock(
        return_value=httpx.Response(200, content=openai_stream(["a"])))
    list(OpenAIProvider("m", base_url="http://local.test/v1").stream(REQUEST))
    assert "authorization" not in route.calls.last.request.headers
    with pytest.raises(MissingApiKeyError, match="OPENAI_API_KEY"):
        OpenAIProvider("gpt-4o")


@respx.mock
def test_openai_error_inside_200_and_finish_reason_error():
    respx.post("https://api.openai.com/v1/chat/completions").mock(side_effect=[
        httpx.Response(200, content=sse(None, {"choices": [{"index": 0, "delta": {"content": "x"}}]})
                       + sse(None, {"error": {"message": "rate limited", "type": "requests", "code": "rate_limit_exceeded"}})),
        httpx.Response(200, content=sse(None, {"choices": [{"index": 0, "delta": {"content": "y"}}]})
                       + sse(None, {"choices": [{"index": 0, "delta": {}, "finish_reason": "error"}]})),
    ])
    provider = openai(max_retries=0)
    with pytest.raises(RateLimitError):
        list(provider.stream(REQUEST))
    with pytest.raises(ServerError, match="finish_reason=error"):
        list(provider.stream(REQUEST))


@respx.mock
def test_openai_complete():
    respx.post("https://api.openai.com/v1/chat/completions").mock(return_value=httpx.Response(200, json={
        "model": "gpt-4o-2024", "choices": [{"message": {"role": "assistant", "content": "Done"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1}}))
    response = openai().complete(REQUEST)
    assert (response.content, response.usage, response.model) == ("Done", Usage(3, 1), "gpt-4o-2024")


@respx.mock
def test_ollama_request_shape_complete_and_list_models():
    route = respx.post("http://ollama.test/api/chat").mock(return_value=httpx.Response(200, json={
        "model": "llama3.2", "message": {"role": "assistant", "content": "Yo"}, "done": True, "done_reason": "stop",
        "prompt_eval_count": 12, "eval_count": 2}))
    respx.get("http://ollama.test/api/tags").mock(return_value=httpx.Response(200, json={
        "models": [{"name": "llama3.2:latest", "size": 1}, {"name": "qwen2.5:7b"}]}))
    provider = ollama()
    response = provider.complete(REQUEST)
    body = json.loads(route.calls.last.request.content)
    assert body["options"] == {"num_predict": 300, "temperature": 0.2, "stop": ["END"]} and body["stream"] is False
    assert (response.content, response.usage) == ("Yo", Usage(12, 2))
    assert provider.list_models() == ["llama3.2:latest", "qwen2.5:7b"]


@respx.mock
@pytest.mark.parametrize("status, expected, retryable", [
    (400, BadRequestError, False), (401, AuthenticationError, False), (403, PermissionDeniedError, False),
    (404, NotFoundError, False), (429, RateLimitError, True), (500, ServerError, True),
    (502, ServerError, True), (503, OverloadedError, True), (529, OverloadedError, True),
])
def test_status_codes_map_to_typed_errors(status, expected, retryable):
    respx.post("https://api.openai.com/v1/chat/completions").mock(
        return_value=httpx.Response(status, json={"error": {"message": f"boom {status}"}}, headers={"retry-after": "3"}))
    with pytest.raises(expected) as info:
        list(openai(max_retries=0).stream(REQUEST))
    error = info.value
    assert error.status_code == status and error.retryable is retryable
    assert f"boom {status}" in str(error)
    if expected is RateLimitError:
        assert error.retry_after == 3.0


@respx.mock
def test_empty_answer_is_an_empty_response_error():
    respx.post("https://anthropic.test/v1/messages").mock(return_value=httpx.Response(200, content=anthropic_stream([])))
    with pytest.raises(EmptyResponseError):
        list(anthropic(max_retries=0).stream(REQUEST))


@respx.mock
def test_malformed_json_in_stream_is_a_protocol_error():
    respx.post("https://anthropic.test/v1/messages").mock(
        return_value=httpx.Response(200, content=b"event: content_block_delta\ndata: {nope\n\n"))
    with pytest.raises(ProtocolError, match="malformed"):
        list(anthropic(max_retries=0).stream(REQUEST))


@respx.mock
def test_api_key_never_appears_in_errors_or_reprs():
    echo = f"Incorrect API key provided: {SECRET}. You can find your API key at ..."
    respx.post("https://api.openai.com/v1/chat/completions").mock(
        return_value=httpx.Response(401, json={"error": {"message": echo, "type": "invalid_request_error", "code": "invalid_api_key"}}))
    respx.post("https://anthropic.test/v1/messages").mock(
        return_value=httpx.Response(200, content=sse("error", {"type": "error", "error": {"type": "api_error", "message": echo}})))
    for provider in (openai(max_retries=0), anthropic(max_retries=0)):
        assert SECRET not in repr(provider) and SECRET not in str(vars(provider).get("retry_policy"))
        with pytest.raises(Exception) as info:
            list(provider.stream(REQUEST))
        for text in (str(info.value), repr(info.value), info.value.message):
            assert SECRET not in text
        assert "***" in str(info.value)


@respx.mock
def test_anthropic_stream_without_event_lines_reads_the_data_type():
    wire = b"\n".join(line for line in anthropic_stream(["a", "b"]).split(b"\n") if not line.startswith(b"event:"))
    respx.post("https://anthropic.test/v1/messages").mock(return_value=httpx.Response(200, content=wire))
    response = collect(anthropic().stream(REQUEST), "m")
    assert (response.content, response.finish_reason, response.usage) == ("ab", "end_turn", Usage(25, 7))
