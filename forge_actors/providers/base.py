"""The provider interface: requests, responses, stream chunks, and the Provider protocol."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec

from forge_actors.providers.errors import ProviderConfigError

Role = Literal["system", "user", "assistant", "tool"]

#: What both OpenAI (``json_schema.name``) and Anthropic (a tool's ``name``) accept as a name.
_SCHEMA_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _check_name(name: str, what: str) -> None:
    # Checked here, before any request: the APIs would refuse these with a vaguer 400.
    if not _SCHEMA_NAME.fullmatch(name):
        raise ProviderConfigError(
            f"{what} name {name!r} must be 1-64 letters, digits, '_' or '-' (the APIs' rule for names)"
        )


class ToolDefinition(msgspec.Struct, frozen=True):
    """A tool a model may call: its name, what it does, and its arguments as a JSON Schema object."""

    name: str
    description: str
    parameters: dict[str, Any]

    def __post_init__(self) -> None:
        _check_name(self.name, "ToolDefinition")
        if self.parameters.get("type") != "object":
            raise ProviderConfigError(
                f"ToolDefinition {self.name!r} parameters must be a JSON Schema object (\"type\": \"object\"), "
                "as every tool-calling API requires; use {\"type\": \"object\", \"properties\": {}} for no arguments"
            )


class ToolCall(msgspec.Struct, frozen=True):
    """One call a model asked for. ``arguments`` is the decoded JSON object; when what the model
    wrote was not a JSON object, ``arguments`` is empty and ``error`` says what was wrong (never
    guessed). Ids are the API's, or ``call_1``, ``call_2``... in order within one response."""

    id: str
    name: str
    arguments: dict[str, Any]
    error: str | None = None


class Message(msgspec.Struct, frozen=True):
    """One turn. An assistant turn that asked for tools has ``tool_calls`` (its content may be "");
    a ``"tool"`` turn is the result of the call ``tool_call_id`` of tool ``name``."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    name: str = ""
    is_error: bool = False


class Usage(msgspec.Struct, frozen=True):
    input_tokens: int = 0
    output_tokens: int = 0


class JsonSchema(msgspec.Struct, frozen=True):
    """A JSON reply shape to ask a model for (structured output): a name, the JSON Schema, what it is for."""

    name: str
    schema: dict[str, Any]
    description: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name, "JsonSchema")
        if self.schema.get("type") != "object":
            raise ProviderConfigError(
                f"JsonSchema {self.name!r} must describe an object (\"type\": \"object\") at its root, as the "
                "OpenAI and Anthropic structured-output mechanisms require; wrap other values in an object"
            )


class LlmRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One request. An empty ``model`` means the provider's own model.

    ``response_schema`` asks for a reply that is one JSON document of that shape, through
    the API's own mechanism (providers whose ``supports_json`` is true); the JSON text
    then streams as the answer's deltas like any other text.

    ``tools`` offers tools natively (providers whose ``supports_tools`` is true): calls come
    back as ``StreamChunk.tool_call`` / ``LlmResponse.tool_calls``.
    """

    messages: tuple[Message, ...]
    model: str = ""
    temperature: float | None = None
    max_tokens: int = 1024
    stop: tuple[str, ...] = ()
    response_schema: JsonSchema | None = None
    tools: tuple[ToolDefinition, ...] = ()
    #: ``none``: the tools stay defined (a conversation holding tool calls needs them on some APIs) but
    #: the model may not call one (the last turn of a contribution whose tool budget is spent).
    tool_choice: Literal["auto", "none"] = "auto"

    @property
    def system(self) -> str:
        """All system messages, joined (for APIs that take the system prompt apart)."""
        return "\n\n".join(m.content for m in self.messages if m.role == "system")

    @property
    def conversation(self) -> list[Message]:
        return [m for m in self.messages if m.role != "system"]


class StreamChunk(msgspec.Struct, frozen=True):
    """A piece of a streamed answer. The last one has ``is_complete``, ``finish_reason`` and ``usage``.

    ``tool_call`` carries one complete call, as soon as it is assembled; the final chunk's
    ``finish_reason`` is then ``"tool_calls"`` when the model stopped to have tools run.
    """

    delta: str = ""
    is_complete: bool = False
    finish_reason: str | None = None
    usage: Usage | None = None
    tool_call: ToolCall | None = None


#: The normalised finish reason of an answer that stopped to call tools (every provider).
TOOL_CALLS_FINISH = "tool_calls"


class LlmResponse(msgspec.Struct, frozen=True):
    content: str
    finish_reason: str | None
    usage: Usage
    model: str
    tool_calls: tuple[ToolCall, ...] = ()


class StructuredResponse(msgspec.Struct, frozen=True):
    """A structured reply: the JSON text as the model wrote it, and ``data`` decoded from it."""

    content: str
    data: Any
    finish_reason: str | None
    usage: Usage
    model: str


@runtime_checkable
class Provider(Protocol):
    """What every provider offers. Implementations are used from one thread at a time."""

    name: str
    model: str
    #: True when ``stream``/``complete`` honour ``LlmRequest.response_schema`` natively.
    supports_json: bool
    #: True when ``stream``/``complete`` honour ``LlmRequest.tools`` natively.
    supports_tools: bool

    def complete(self, request: LlmRequest) -> LlmResponse: ...

    def complete_json(self, request: LlmRequest, schema: JsonSchema, type: type | None = None) -> StructuredResponse:
        """``complete`` asking for ``schema`` (natively, or by instructions when ``supports_json`` is
        false), the reply decoded into ``type`` (plain JSON when None); ``MalformedReplyError`` when
        it does not decode. Every provider gets it from ``structured.StructuredOutput``."""
        ...

    def stream(self, request: LlmRequest) -> Iterator[StreamChunk]:
        """Deltas as they arrive; closing the iterator early ends the request at once."""
        ...

    def abort(self) -> None:
        """End the stream in progress now. Safe from any thread; a no-op when none is.

        The reading thread then sees an error (or the end of the stream) at once, even
        when it is blocked waiting for the network or a process.
        """
        ...

    def close(self) -> None: ...


def chunks_of(response: LlmResponse) -> Iterator[StreamChunk]:
    """A whole response as a stream would have given it: its text, its calls, then the last chunk
    (the inverse of ``collect``)."""
    if response.content:
        yield StreamChunk(response.content)
    for call in response.tool_calls:
        yield StreamChunk(tool_call=call)
    yield StreamChunk("", True, response.finish_reason, response.usage)


def collect(chunks: Iterator[StreamChunk], model: str) -> LlmResponse:
    """Join a stream into one response."""
    parts: list[str] = []
    calls: list[ToolCall] = []
    finish_reason: str | None = None
    usage = Usage()
    for chunk in chunks:
        if chunk.delta:
            parts.append(chunk.delta)
        if chunk.tool_call is not None:
            calls.append(chunk.tool_call)
        if chunk.is_complete:
            finish_reason = chunk.finish_reason
            usage = chunk.usage or usage
    return LlmResponse("".join(parts), finish_reason, usage, model, tuple(calls))


def decode_arguments(raw: str | bytes | dict[str, Any] | Any) -> tuple[dict[str, Any], str | None]:
    """A call's arguments as the model gave them (JSON text, or already decoded) -> (object, error).

    Anything but a JSON object is refused with a reason, never repaired: a truncated or
    malformed argument string is something the model must be told about, not guessed at.
    An empty string counts as no arguments (some servers send "" for a call without any).
    """
    if isinstance(raw, dict):
        return raw, None
    if raw is None:
        return {}, None
    if isinstance(raw, (str, bytes)):
        text = raw.strip()
        if not text:
            return {}, None
        try:
            value = msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            excerpt = (raw if isinstance(raw, str) else raw.decode("utf-8", "replace"))[:200]
            return {}, f"the arguments are not valid JSON ({exc}): {excerpt!r}"
        if isinstance(value, dict):
            return value, None
        return {}, f"the arguments must be a JSON object, not {json_kind(value)}"
    return {}, f"the arguments must be a JSON object, not {json_kind(raw)}"


def json_kind(value: Any) -> str:
    """How a JSON value that is not an object is named in an error ("an array", "null"...)."""
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def tool_call(id: str, name: str, raw_arguments: str | bytes | dict[str, Any] | Any) -> ToolCall:
    """A ToolCall from the model's raw arguments (``decode_arguments``)."""
    arguments, error = decode_arguments(raw_arguments)
    return ToolCall(id, name, arguments, error)
