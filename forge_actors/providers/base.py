"""The provider interface: requests, responses, stream chunks, and the Provider protocol."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec

from forge_actors.providers.errors import ProviderConfigError

Role = Literal["system", "user", "assistant"]

#: What both OpenAI (``json_schema.name``) and Anthropic (a tool's ``name``) accept as a name.
_SCHEMA_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Message(msgspec.Struct, frozen=True):
    role: Role
    content: str


class Usage(msgspec.Struct, frozen=True):
    input_tokens: int = 0
    output_tokens: int = 0


class JsonSchema(msgspec.Struct, frozen=True):
    """A JSON reply shape to ask a model for (structured output): a name, the JSON Schema, what it is for."""

    name: str
    schema: dict[str, Any]
    description: str = ""

    def __post_init__(self) -> None:
        # Checked here, before any request: the APIs would refuse these with a vaguer 400.
        if not _SCHEMA_NAME.fullmatch(self.name):
            raise ProviderConfigError(
                f"JsonSchema name {self.name!r} must be 1-64 letters, digits, '_' or '-' (the APIs' rule for names)"
            )
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
    """

    messages: tuple[Message, ...]
    model: str = ""
    temperature: float | None = None
    max_tokens: int = 1024
    stop: tuple[str, ...] = ()
    response_schema: JsonSchema | None = None

    @property
    def system(self) -> str:
        """All system messages, joined (for APIs that take the system prompt apart)."""
        return "\n\n".join(m.content for m in self.messages if m.role == "system")

    @property
    def conversation(self) -> list[Message]:
        return [m for m in self.messages if m.role != "system"]


class StreamChunk(msgspec.Struct, frozen=True):
    """A piece of a streamed answer. The last one has ``is_complete``, ``finish_reason`` and ``usage``."""

    delta: str = ""
    is_complete: bool = False
    finish_reason: str | None = None
    usage: Usage | None = None


class LlmResponse(msgspec.Struct, frozen=True):
    content: str
    finish_reason: str | None
    usage: Usage
    model: str


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


def collect(chunks: Iterator[StreamChunk], model: str) -> LlmResponse:
    """Join a stream into one response."""
    parts: list[str] = []
    finish_reason: str | None = None
    usage = Usage()
    for chunk in chunks:
        if chunk.delta:
            parts.append(chunk.delta)
        if chunk.is_complete:
            finish_reason = chunk.finish_reason
            usage = chunk.usage or usage
    return LlmResponse("".join(parts), finish_reason, usage, model)
