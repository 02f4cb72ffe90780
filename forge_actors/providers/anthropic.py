"""Anthropic Messages API: POST /v1/messages, streamed as Server-Sent Events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from forge_actors.providers.base import (
    TOOL_CALLS_FINISH,
    JsonSchema,
    LlmRequest,
    LlmResponse,
    Message,
    StreamChunk,
    ToolCall,
    ToolDefinition,
    Usage,
    tool_call,
)
from forge_actors.providers.errors import (
    AuthenticationError,
    BadRequestError,
    LlmError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProtocolError,
    ProviderConfigError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
)
from forge_actors.providers.http import HttpProvider
from forge_actors.providers.streams import sse_batches
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


class _Delta(msgspec.Struct, gc=False):
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
    index: int = 0  # content_block_*: which block
    content_block: _Block | None = None  # content_block_start: what the block is


class _DeltaEvent(msgspec.Struct, gc=False):
    """The hot event, decoded into the least it needs (most of a stream is these)."""

    delta: _Delta | None = None
    index: int = 0


class _Block(msgspec.Struct):
    type: str = ""
    text: str = ""
    id: str = ""  # tool_use
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


def tool_definitions(tools: tuple[ToolDefinition, ...]) -> list[dict[str, Any]]:
    """The Messages API's ``tools``: name, description, input_schema."""
    return [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools]


def wire_messages(conversation: list[Message]) -> list[dict[str, Any]]:
    """The conversation in Messages form: an assistant turn's calls as ``tool_use`` blocks after its
    text; consecutive ``tool`` turns as ONE user turn of ``tool_result`` blocks (the API wants the
    results of one assistant turn together, in the user turn right after it)."""
    out: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for message in conversation:
        if message.role == "tool":
            results.append({"type": "tool_result", "tool_use_id": message.tool_call_id,
                            "content": message.content, "is_error": message.is_error})
            continue
        if results:
            out.append({"role": "user", "content": results})
            results = []
        if message.role == "assistant" and message.tool_calls:
            blocks: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
            blocks += [{"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
                       for call in message.tool_calls]
            out.append({"role": "assistant", "content": blocks})
        else:
            out.append({"role": message.role, "content": message.content})
    if results:
        out.append({"role": "user", "content": results})
    return out


class _ToolUses:
    """The tool_use blocks of a stream being put together: by block index, id, name, input pieces."""

    __slots__ = ("_open", "made")

    def __init__(self) -> None:
        self._open: dict[int, tuple[str, str, list[str]]] = {}
        self.made = 0

    def start(self, index: int, block: _Block) -> None:
        if block.type == "tool_use":
            self._open[index] = (block.id, block.name, [])

    def feed(self, index: int, delta: _Delta | None) -> None:
        use = self._open.get(index)
        if use is not None and delta is not None and delta.type == "input_json_delta":
            use[2].append(delta.partial_json)

    def stop(self, index: int) -> ToolCall | None:
        use = self._open.pop(index, None)
        if use is None:
            return None  # a text (or thinking) block ended
        self.made += 1
        id, name, pieces = use
        return tool_call(id or f"call_{self.made}", name, "".join(pieces))


_decode_event = msgspec.json.Decoder(_Event).decode
_decode_delta_event = msgspec.json.Decoder(_DeltaEvent).decode
_decode_response = msgspec.json.Decoder(_Response).decode


class AnthropicProvider(StructuredOutput, HttpProvider):
    name = "anthropic"
    default_base_url = "https://api.anthropic.com"
    api_key_env = "ANTHROPIC_API_KEY"
    error_types = _ERROR_TYPES
    supports_json = True
    supports_tools = True

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"x-api-key": api_key or "", "anthropic-version": API_VERSION}

    def body(self, request: LlmRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_for(request),
            "max_tokens": request.max_tokens,
            "messages": wire_messages(request.conversation),
        }
        system = request.system
        if system:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        schema = request.response_schema
        if request.tools and schema is not None:
            raise ProviderConfigError(
                "anthropic gives structured replies through a forced tool call, which cannot be combined "
                "with offering tools: send `tools` and `response_schema` in separate requests"
            )
        if request.tools:
            body["tools"] = tool_definitions(request.tools)
            if request.tool_choice == "none":
                body["tool_choice"] = {"type": "none"}
        if schema is not None:
            # One forced call of one tool: its input is the reply (no text before it, no second call).
            body["tools"] = [answer_tool(schema)]
            body["tool_choice"] = {"type": "tool", "name": schema.name, "disable_parallel_tool_use": True}
        if stream:
            body["stream"] = True
        return body

    def _complete_once(self, request: LlmRequest) -> LlmResponse:
        with self.translate_errors():
            return self._completion(self.post_json("/v1/messages", self.body(request, stream=False)), request)

    def _completion(self, body: bytes, request: LlmRequest) -> LlmResponse:
        """A non-streaming response's answer (also the body a server that does not stream sends to a
        streaming request)."""
        data = _decode_response(body)
        usage = data.usage or _Usage()
        schema = request.response_schema
        calls: tuple[ToolCall, ...] = ()
        stop_reason = data.stop_reason
        if request.tools:
            uses = [block for block in data.content if block.type == "tool_use"]
            calls = tuple(tool_call(block.id or f"call_{i}", block.name, block.input) for i, block in enumerate(uses, 1))
            stop_reason = _finish(stop_reason, bool(calls))
        return LlmResponse(
            _structured_content(data.content, schema) if schema is not None
            else "".join(block.text for block in data.content if block.type == "text"),
            stop_reason,
            Usage(usage.input_tokens or 0, usage.output_tokens or 0),
            data.model or self.model_for(request),
            calls,
        )

    def _stream_once(self, request: LlmRequest) -> Iterator[StreamChunk]:
        input_tokens = output_tokens = 0
        stop_reason: str | None = None
        # A structured reply's answer is the forced tool call's input; text deltas of other blocks are not,
        # unless the model (or a server that ignores tool_choice) makes no call at all: then its text is
        # the answer, read as text (held until the end, when it is known that no call came).
        structured = request.response_schema is not None
        answer_of = _tool_input_json if structured else _answer_text
        held: list[str] = []
        answered = False
        # Offered tools: each tool_use block is put together from its input_json_delta pieces and
        # goes out whole, as one tool_call chunk, at its content_block_stop.
        uses = _ToolUses() if request.tools else None
        with self.open_stream("/v1/messages", self.body(request, stream=True),
                              lambda body: self._completion(body, request)) as chunks:
            for events in sse_batches(chunks):
                for sse in events:
                    if sse.event == "content_block_delta":  # the hot event: decoded into the least it needs
                        delta_event = _decode_delta_event(sse.data)
                        delta = delta_event.delta
                        if not structured and delta is not None and delta.type == "text_delta" and delta.text:
                            yield StreamChunk(delta.text)
                            continue
                        text = answer_of(delta)
                        if text:
                            answered = True
                            yield StreamChunk(text)
                        elif structured:
                            held.append(_answer_text(delta))
                        elif uses is not None:
                            uses.feed(delta_event.index, delta)
                        continue
                    if sse.event == "ping":
                        continue
                    event = _decode_event(sse.data)  # named otherwise, or unnamed: read its type
                    kind = event.type
                    if kind == "content_block_delta":
                        text = answer_of(event.delta)
                        if text:
                            answered = True
                            yield StreamChunk(text)
                        elif structured:
                            held.append(_answer_text(event.delta))
                        elif uses is not None:
                            uses.feed(event.index, event.delta)
                    elif kind == "content_block_start":
                        if uses is not None and event.content_block is not None:
                            uses.start(event.index, event.content_block)
                    elif kind == "content_block_stop":
                        call = uses.stop(event.index) if uses is not None else None
                        if call is not None:
                            yield StreamChunk(tool_call=call)
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
                        if not answered and "".join(held):  # a structured request answered with text only
                            yield StreamChunk("".join(held))
                        finish = _finish(stop_reason, uses.made > 0) if uses is not None else stop_reason
                        yield StreamChunk("", True, finish, Usage(input_tokens, output_tokens))
                        return
                    elif kind == "error":
                        error = event.error or _Error()
                        raise self.error_for_type(error.type, self.clean(error.message), None) or ServerError(
                            f"{error.type or 'error'} mid-stream: {self.clean(error.message)}", provider=self.name
                        )
        raise ProtocolError("the stream ended before message_stop; the answer may be cut short", provider=self.name)


def _finish(stop_reason: str | None, made_calls: bool) -> str | None:
    """Messages says ``tool_use`` when the model stopped to have tools run: normalised to ``tool_calls``."""
    if stop_reason == "tool_use" or (made_calls and stop_reason in (None, "end_turn")):
        return TOOL_CALLS_FINISH
    return stop_reason
