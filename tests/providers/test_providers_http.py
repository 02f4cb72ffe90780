"""HTTP providers against respx: request shape, stream parsing quirks, error mapping, secrets."""

from __future__ import annotations

import json

import httpx
import msgspec
import pytest
import respx
from streams_fixtures import anthropic_stream, openai_stream, sse

from forge_actors.providers import (
    AnthropicProvider,
    AuthenticationError,
    BadRequestError,
    CancelledError,
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
from forge_actors.providers.errors import ERRORS_BY_KIND, QuotaExceededError
from forge_actors.providers.probe import probe

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


# -- classification by status first (as the official SDKs do), the body refining within it ----------------

def _openai_error(status: int, message: str, type_: str | None, code: str | None, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": type_, "param": None, "code": code}},
                          headers=headers)


OPENAI_ERRORS = [
    # (status, type, code, expected class, retryable, words the message must have)
    (401, "invalid_request_error", "invalid_api_key", AuthenticationError, False, "OPENAI_API_KEY"),
    (400, "invalid_request_error", "context_length_exceeded", BadRequestError, False, "context window"),
    (400, "invalid_request_error", None, BadRequestError, False, "refused"),
    (403, "invalid_request_error", "unsupported_country_region_territory", PermissionDeniedError, False, "may not"),
    (404, "invalid_request_error", "model_not_found", NotFoundError, False, "model name"),
    (404, None, None, NotFoundError, False, "base_url"),
    (409, "invalid_request_error", None, BadRequestError, False, "409"),
    (422, "invalid_request_error", None, BadRequestError, False, "422"),
    (429, "requests", "rate_limit_exceeded", RateLimitError, True, "rate limited"),
    (429, "insufficient_quota", "insufficient_quota", QuotaExceededError, False, "billing"),
    (500, "invalid_request_error", None, ServerError, True, "500"),  # compatible servers label 5xx so
    (503, "server_error", None, OverloadedError, True, "overloaded"),
]


@respx.mock
@pytest.mark.parametrize("status, type_, code, expected, retryable, hint", OPENAI_ERRORS)
def test_openai_errors_by_status_then_type(status, type_, code, expected, retryable, hint):
    respx.post("https://api.openai.com/v1/chat/completions").mock(
        return_value=_openai_error(status, f"boom {status}", type_, code, **{"retry-after": "2"}))
    for call in (lambda p: list(p.stream(REQUEST)), lambda p: p.complete(REQUEST)):
        with pytest.raises(expected) as info:
            call(openai(max_retries=0))
        error = info.value
        assert type(error) is expected and error.status_code == status and error.retryable is retryable
        assert hint in str(error) and f"boom {status}" in str(error)
        if expected is RateLimitError:
            assert error.retry_after == 2.0


@respx.mock
def test_openai_real_401_body_says_check_the_key_and_is_not_retried():
    route = respx.post("https://api.openai.com/v1/chat/completions").mock(return_value=_openai_error(
        401, "Incorrect API key provided: sk-abc***xyz. You can find your API key at "
             "https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key"))
    with pytest.raises(AuthenticationError, match="check OPENAI_API_KEY"):
        list(openai().stream(REQUEST))
    assert route.call_count == 1


@respx.mock
def test_insufficient_quota_is_not_retried():
    route = respx.post("https://api.openai.com/v1/chat/completions").mock(return_value=_openai_error(
        429, "You exceeded your current quota, please check your plan and billing details.", "insufficient_quota",
        "insufficient_quota"))
    with pytest.raises(QuotaExceededError) as info:
        list(openai(max_retries=3).stream(REQUEST))
    assert route.call_count == 1 and isinstance(info.value, RateLimitError) and info.value.kind == "quota_exceeded"
    assert ERRORS_BY_KIND["quota_exceeded"] is QuotaExceededError


@respx.mock
@pytest.mark.parametrize("code, expected", [("insufficient_quota", QuotaExceededError),
                                            ("rate_limit_exceeded", RateLimitError), (None, ServerError)])
def test_openai_mid_stream_errors_are_classified_by_code(code, expected):
    respx.post("https://api.openai.com/v1/chat/completions").mock(return_value=httpx.Response(
        200, content=sse(None, {"error": {"message": "stop", "type": code, "code": code}})))
    with pytest.raises(expected):
        list(openai(max_retries=0).stream(REQUEST))


@respx.mock
@pytest.mark.parametrize("status, type_, expected", [
    (400, "invalid_request_error", BadRequestError), (401, "authentication_error", AuthenticationError),
    (403, "permission_error", PermissionDeniedError), (404, "not_found_error", NotFoundError),
    (413, "request_too_large", BadRequestError), (429, "rate_limit_error", RateLimitError),
    (500, "api_error", ServerError), (529, "overloaded_error", OverloadedError),
    (500, "invalid_request_error", ServerError),  # the status wins over a mislabelled body
])
def test_anthropic_errors_by_status(status, type_, expected):
    respx.post("https://anthropic.test/v1/messages").mock(return_value=httpx.Response(
        status, json={"type": "error", "error": {"type": type_, "message": "nope"}}))
    with pytest.raises(expected) as info:
        list(anthropic(max_retries=0).stream(REQUEST))
    assert type(info.value) is expected and info.value.status_code == status
    if status == 401:
        assert "ANTHROPIC_API_KEY" in str(info.value)


@respx.mock
def test_ollama_404_says_pull_only_for_a_missing_model():
    route = respx.post("http://ollama.test/api/chat")
    route.mock(return_value=httpx.Response(404, json={"error": 'model "llama3.2" not found, try pulling it first'}))
    with pytest.raises(NotFoundError, match="ollama pull llama3.2"):
        list(ollama(max_retries=0).stream(REQUEST))
    route.mock(return_value=httpx.Response(404, text="404 page not found"))
    with pytest.raises(NotFoundError) as info:
        list(ollama(max_retries=0).stream(REQUEST))
    assert "ollama pull" not in str(info.value) and "base_url" in str(info.value)
    route.mock(return_value=httpx.Response(500, json={"error": "model runner crashed"}))
    with pytest.raises(ServerError):
        list(ollama(max_retries=0).stream(REQUEST))


# -- the stream -> non-stream fallback signal -------------------------------------------------------------

@pytest.mark.parametrize("error, fallback", [
    (ProtocolError("the stream ended before [DONE]"), True),
    (BadRequestError("the request was refused (400: stream is not supported)", status_code=400), True),
    (BadRequestError("the request was refused (422: Streaming not supported for this model)", status_code=422), True),
    (BadRequestError("This model does not support streaming.", status_code=400), True),
    (BadRequestError("Unsupported value: 'stream' does not support true with this model.", status_code=400), True),
    (BadRequestError("the request was refused (400: max_tokens is too large)", status_code=400), False),
    (BadRequestError("streaming not supported", status_code=404), False),
    (ServerError("streaming not supported", status_code=500), False),
    (CancelledError("the request was aborted"), False),
    (RateLimitError("slow down", status_code=429), False),
])
def test_stream_fallback_flag(error, fallback):
    assert error.stream_fallback is fallback


@respx.mock
def test_a_server_that_rejects_streaming_gives_the_fallback_signal():
    respx.post("https://api.openai.com/v1/chat/completions").mock(
        return_value=_openai_error(400, "stream is not supported", "invalid_request_error", None))
    with pytest.raises(BadRequestError) as info:
        list(openai(max_retries=0).stream(REQUEST))
    assert info.value.stream_fallback


# -- probes ----------------------------------------------------------------------------------------------

@respx.mock
def test_probe_openai_compatible_lists_models_with_the_bearer_key():
    route = respx.get("http://vllm.test/v1/models").mock(return_value=httpx.Response(
        200, json={"object": "list", "data": [{"id": "qwen2.5", "object": "model"}, {"id": "llama3", "object": "model"}]}))
    result = probe("openai", base_url="http://vllm.test/v1/", environ={"OPENAI_API_KEY": SECRET})
    assert result.reachable and result.models == ("qwen2.5", "llama3") and result.key_present
    assert route.calls.last.request.headers["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in repr(result) and SECRET not in msgspec.json.encode(result).decode()


@respx.mock
def test_probe_openai_without_a_key_sends_none_and_a_rejection_is_reachable():
    route = respx.get("https://api.openai.com/v1/models").mock(return_value=_openai_error(
        401, f"Incorrect API key provided: {SECRET}.", "invalid_request_error", "invalid_api_key"))
    result = probe("openai", environ={})
    assert "authorization" not in route.calls.last.request.headers
    assert result.reachable is True and "no key was sent" in result.detail and result.key_needed
    result = probe("openai", environ={"OPENAI_API_KEY": SECRET})
    assert result.reachable is True and "key was rejected" in result.detail and SECRET not in result.detail


@respx.mock
def test_probe_anthropic_and_ollama_endpoints():
    anthropic_route = respx.get("https://api.anthropic.com/v1/models").mock(return_value=httpx.Response(
        200, json={"data": [{"id": "claude-sonnet-4-20250514", "type": "model"}], "has_more": False}))
    respx.get("http://ollama.test/api/tags").mock(return_value=httpx.Response(
        200, json={"models": [{"name": "llama3.2:latest"}, {"name": "qwen2.5:7b"}]}))
    result = probe("anthropic", environ={"ANTHROPIC_API_KEY": SECRET})
    headers = anthropic_route.calls.last.request.headers
    assert headers["x-api-key"] == SECRET and headers["anthropic-version"]
    assert result.models == ("claude-sonnet-4-20250514",) and SECRET not in repr(result)
    result = probe("ollama", base_url="http://ollama.test")
    assert result.reachable and result.models == ("llama3.2:latest", "qwen2.5:7b")


@respx.mock
def test_probe_unreachable_and_odd_bodies():
    respx.get("http://down.test/v1/models").mock(side_effect=httpx.ConnectError("refused"))
    respx.get("http://odd.test/v1/models").mock(return_value=httpx.Response(200, text="<html>hi</html>"))
    respx.get("http://user:pw@gone.test/models").mock(return_value=httpx.Response(404, text="404 page not found"))
    down = probe("openai", base_url="http://down.test/v1", environ={})
    assert down.reachable is False and "ConnectError" in down.detail
    odd = probe("openai", base_url="http://odd.test/v1", environ={})
    assert odd.reachable and odd.models == () and "model list" in odd.detail
    gone = probe("openai", base_url="http://user:pw@gone.test", environ={})
    assert gone.reachable and "404" in gone.detail and "pw" not in gone.base_url
