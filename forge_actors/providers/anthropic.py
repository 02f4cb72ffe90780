"""Anthropic Messages API: POST /v1/messages, streamed as Server-Sent Events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from forge_actors.providers.base import JsonSchema, LlmRequest, LlmResponse, StreamChunk, Usage
from forge_actors.providers.errors import (
    AuthenticationError,
    BadRequestError,
    LlmError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
)
from forge_actors.providers.http import HttpProvider
from forge_actors.providers.streams import sse_events
from forge_actors.providers.structured import StructuredOutput

API_VERSION = "2023-06-01"

_ERROR_TYPES: dict[str, type[LlmError]] = {
    "authentication_error": AuthenticationError,
    "permission_error": PermissionDeniedError,
    "not_found_error": NotFoundError,
    "rate_limit_error": RateLimitError,
    "overloaded_error": OverloadedError,
    "api_error": ServerError,
    "timeout_error": RequestTimeoutError,
    "invalid_request_error": BadRequestError,
    "request_too_large": BadRequestError,
}


class _Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None


class _Delta(msgspec.Struct):
    type: str = ""
    text: str = ""
    partial_json: str = ""  # input_json_delta: a piece of a tool call's input (a structured reply)
    stop_reason: str | None = None


class _Message(msgspec.Struct):
    usage: _Usage | None = None


class _Error(msgspec.Struct):
    type: str = ""
    message: str = ""


class _Event(msgspec.Struct):
    """Every streamed event we read, as one loose shape (unknown fields are ignored)."""

    type: str = ""
    delta: _Delta | None = None
    usage: _Usage | None = None
    message: _Message | None = None
    error: _Error | None = None


class _DeltaEvent(msgspec.Struct):
    """The hot event, decoded into the least it needs (most of a stream is these)."""

    delta: _Delta | None = None


class _Block(msgspec.Struct):
    type: str = ""
    text: str = ""
    name: str = ""  # tool_use
    input: Any = None  # tool_use: the call's arguments, decoded


class _Response(msgspec.Struct):
    content: list[_Block] = []
    stop_reason: str | None = None
    usage: _Usage | None = None
    model: str = ""


def _answer_text(delta: _Delta | None) -> str:
    """The text of a delta, if it is answer text: thinking, signature and tool-input deltas are not."""
    return delta.text if delta is not None and delta.type == "text_delta" else ""


_json_encode = msgspec.json.Encoder().encode


def _tool_input_json(delta: _Delta | None) -> str:
    """A piece of the forced tool call's input: a structured reply's only answer text."""
    return delta.partial_json if delta is not None and delta.type == "input_json_delta" else ""


def answer_tool(schema: JsonSchema) -> dict[str, Any]:
    """The tool whose input is ``schema``: forcing a call to it is how Messages gives structured replies."""
    return {"name": schema.name, "description": schema.description or f"Give the {schema.name} reply.",
            "input_schema": schema.schema}


def _structured_content(blocks: list[_Block], schema: JsonSchema) -> str:
    """The forced call's input as compact JSON text (keys in the order given); the text, if the model made no call."""
    calls = [block for block in blocks if block.type == "tool_use"]
    call = next((block for block in calls if block.name == schema.name), calls[0] if calls else None)
    if call is None:
        return "".join(block.text for block in blocks if block.type == "text")
    return _json_encode(call.input).decode()


_decode_event = msgspec.json.Decoder(_Event).decode
_decode_delta_event = msgspec.json.Decoder(_DeltaEvent).decode
_decode_response = msgspec.json.Decoder(_Response).decode


class AnthropicProvider(StructuredOutput, HttpProvider):
    name = "anthropic"
    default_base_url = "https://api.anthropic.com"
    api_key_env = "ANTHROPIC_API_KEY"
    error_types = _ERROR_TYPES
    supports_json = True

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"x-api-key": api_key or "", "anthropic-version": API_VERSION}

    def body(self, request: LlmRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_for(request),
            "max_tokens": request.max_tokens,
            "messages": [{"role": m.role, "content": m.content} for m in request.conversation],
        }
        system = request.system
        if system:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        schema = request.response_schema
        if schema is not None:
            # One forced call of one tool: its input is the reply (no text before it, no second call).
            body["tools"] = [answer_tool(schema)]
            body["tool_choice"] = {"type": "tool", "name": schema.name, "disable_parallel_tool_use": True}
        if stream:
            body["stream"] = True
        return body

    def _complete_once(self, request: LlmRequest) -> LlmResponse:
        with self.translate_errors():
            data = _decode_response(self.post_json("/v1/messages", self.body(request, stream=False)))
        usage = data.usage or _Usage()
        schema = request.response_schema
        return LlmResponse(
            _structured_content(data.content, schema) if schema is not None
            else "".join(block.text for block in data.content if block.type == "text"),
            data.stop_reason,
            Usage(usage.input_tokens or 0, usage.output_tokens or 0),
            data.model or self.model_for(request),
        )

    def _stream_once(self, request: LlmRequest) -> Iterator[StreamChunk]:
        input_tokens = output_tokens = 0
        stop_reason: str | None = None
        # A structured reply's answer is the forced tool call's input; text deltas of other blocks are not.
        answer_of = _answer_text if request.response_schema is None else _tool_input_json
        with self.open_stream("/v1/messages", self.body(request, stream=True)) as chunks:
            for sse in sse_events(chunks):
                if sse.event == "content_block_delta":
                    text = answer_of(_decode_delta_event(sse.data).delta)
                    if text:
                        yield StreamChunk(text)
                    continue
                if sse.event == "ping":
                    continue
                event = _decode_event(sse.data)  # named otherwise, or unnamed: read its type
                kind = event.type
                if kind == "content_block_delta":
                    text = answer_of(event.delta)
                    if text:
                        yield StreamChunk(text)
                elif kind == "message_start":
                    usage = event.message.usage if event.message else None
                    if usage is not None:
                        input_tokens = usage.input_tokens or 0
                        output_tokens = usage.output_tokens or 0
                elif kind == "message_delta":
                    if event.delta is not None and event.delta.stop_reason is not None:
                        stop_reason = event.delta.stop_reason
                    if event.usage is not None:
                        # cumulative counts: assign, never add
                        if event.usage.output_tokens is not None:
                            output_tokens = event.usage.output_tokens
                        if event.usage.input_tokens is not None:
                            input_tokens = event.usage.input_tokens
                elif kind == "message_stop":
                    yield StreamChunk("", True, stop_reason, Usage(input_tokens, output_tokens))
                    return
                elif kind == "error":
                    error = event.error or _Error()
                    raise self.error_for_type(error.type, self.clean(error.message), None) or ServerError(
                        f"{error.type or 'error'} mid-stream: {self.clean(error.message)}", provider=self.name
                    )
        raise ProtocolError("the stream ended before message_stop; the answer may be cut short", provider=self.name)
