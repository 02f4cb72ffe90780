"""OpenAI Chat Completions and every server that speaks it (vLLM, llama.cpp, LM Studio, Ollama /v1, OpenRouter)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
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
from forge_actors.providers.embeddings import OPENAI_EMBEDDING_MODEL, Embeddings, checked, decode
from forge_actors.providers.errors import (
    AuthenticationError,
    BadRequestError,
    LlmError,
    NotFoundError,
    OverloadedError,
    ProtocolError,
    QuotaExceededError,
    RateLimitError,
    RefusalError,
    ServerError,
)
from forge_actors.providers.http import ErrorDetail, HttpProvider
from forge_actors.providers.streams import sse_batches, sse_events
from forge_actors.providers.structured import StructuredOutput

logger = logging.getLogger(__name__)

OPENAI_BASE_URL = "https://api.openai.com/v1"

#: Error types and codes, for the errors that come without a status: inside a stream, or in a 200 body.
#: An error response is classified by its status first (``error_for_status``).
_ERROR_TYPES: dict[str, type[LlmError]] = {
    "rate_limit_exceeded": RateLimitError,
    "insufficient_quota": QuotaExceededError,
    "invalid_api_key": AuthenticationError,
    "authentication_error": AuthenticationError,
    "model_not_found": NotFoundError,
    "invalid_request_error": BadRequestError,
    "context_length_exceeded": BadRequestError,
    "server_error": ServerError,
    "overloaded": OverloadedError,
}


class _FunctionPiece(msgspec.Struct, gc=False):
    name: str | None = None
    arguments: str | None = None


class _ToolCallPiece(msgspec.Struct, gc=False):
    """A fragment of a streamed call: ``index`` says which; id and name come in its first fragment."""

    index: int = 0
    id: str | None = None
    function: _FunctionPiece | None = None


class _Delta(msgspec.Struct, gc=False):
    content: str | None = None  # `reasoning` / `reasoning_content` are not declared: never answer text
    tool_calls: list[_ToolCallPiece] | None = None


class _Choice(msgspec.Struct, gc=False):
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _Error(msgspec.Struct):
    message: str = ""
    type: str | None = None
    code: str | int | None = None


class _Chunk(msgspec.Struct, gc=False):
    choices: list[_Choice] = []
    usage: _Usage | None = None
    error: _Error | None = None


class _Function(msgspec.Struct):
    name: str = ""
    arguments: Any = None  # a JSON string, as the API sends it (some servers send the object)


class _FullToolCall(msgspec.Struct):
    id: str = ""
    function: _Function | None = None


class _Message(msgspec.Struct):
    content: str | None = None
    refusal: str | None = None  # structured requests: the model declined (never answer text)
    tool_calls: list[_FullToolCall] | None = None


# A structured request's stream, read apart so that the ordinary path decodes no more than it did.


class _StructuredDelta(msgspec.Struct):
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[_ToolCallPiece] | None = None


class _StructuredChoice(msgspec.Struct):
    delta: _StructuredDelta | None = None
    finish_reason: str | None = None


class _StructuredChunk(msgspec.Struct):
    choices: list[_StructuredChoice] = []
    usage: _Usage | None = None
    error: _Error | None = None


class _FullChoice(msgspec.Struct):
    message: _Message | None = None
    finish_reason: str | None = None


class _Completion(msgspec.Struct):
    choices: list[_FullChoice] = []
    usage: _Usage | None = None
    model: str = ""
    error: _Error | None = None


_decode_chunk = msgspec.json.Decoder(_Chunk).decode
_decode_completion = msgspec.json.Decoder(_Completion).decode
_decode_structured_chunk = msgspec.json.Decoder(_StructuredChunk).decode


_json_encode = msgspec.json.Encoder().encode


def function_tools(tools: tuple[ToolDefinition, ...]) -> list[dict[str, Any]]:
    """``tools`` in the function shape Chat Completions (and Ollama) take."""
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": t.parameters}} for t in tools]


def tool_result_text(message: Message) -> str:
    """A tool turn's content; marked as an error when it is one (this API has no flag for it)."""
    return f"ERROR: {message.content}" if message.is_error else message.content


def wire_message(message: Message) -> dict[str, Any]:
    """One turn in Chat Completions form (calls' arguments as JSON strings, results as ``tool`` turns)."""
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": tool_result_text(message)}
    if message.role == "assistant" and message.tool_calls:
        return {"role": "assistant", "content": message.content or None, "tool_calls": [
            {"id": call.id, "type": "function",
             "function": {"name": call.name, "arguments": _json_encode(call.arguments).decode()}}
            for call in message.tool_calls]}
    return {"role": message.role, "content": message.content}


class ToolCallAssembler:
    """Streamed call fragments, keyed by ``index``, put together into whole calls.

    A call is yielded as soon as the next index starts, provided its arguments so far are
    a whole JSON object (so that a server interleaving fragments of several calls loses
    none); whatever is still open is yielded by ``finish()``, in index order.
    """

    __slots__ = ("_open", "_done", "made")

    def __init__(self) -> None:
        self._open: dict[int, list[Any]] = {}  # index -> [id, name, argument pieces]
        self._done: set[int] = set()
        self.made = 0

    def feed(self, pieces: list[_ToolCallPiece]) -> list[ToolCall]:
        ready: list[ToolCall] = []
        for piece in pieces:
            index = piece.index
            if index in self._done:
                if not piece.id:
                    if piece.function is not None and (piece.function.arguments or "").strip():
                        logger.warning("ignored a fragment of tool call %d, which was already complete", index)
                    continue
                self._done.discard(index)  # a new id at a used index: a server that numbers every call 0
            entry = self._open.get(index)
            if entry is not None and piece.id and entry[0] and piece.id != entry[0]:
                ready.append(self._emit(index))  # the same: the call at this index is over
                self._done.discard(index)
                entry = None
            if entry is None:
                ready += self._close_complete()
                entry = self._open[index] = ["", "", []]
            if piece.id:
                entry[0] = piece.id
            function = piece.function
            if function is not None:
                if function.name and not entry[1]:  # the first fragment names it (some servers repeat it)
                    entry[1] = function.name
                if function.arguments:
                    entry[2].append(function.arguments)
        return ready

    def _close_complete(self) -> list[ToolCall]:
        ready = []
        for index in sorted(self._open):
            arguments = "".join(self._open[index][2])
            if _whole_object(arguments):
                ready.append(self._emit(index))
        return ready

    def _emit(self, index: int) -> ToolCall:
        id, name, pieces = self._open.pop(index)
        self._done.add(index)
        self.made += 1
        call = tool_call(id or f"call_{self.made}", name, "".join(pieces))
        if not name:
            call = msgspec.structs.replace(call, error=call.error or "the call names no tool")
        return call

    def finish(self) -> list[ToolCall]:
        return [self._emit(index) for index in sorted(self._open)]


def _whole_object(text: str) -> bool:
    try:
        return isinstance(msgspec.json.decode(text), dict) if text.strip() else False
    except msgspec.DecodeError:  # not whole yet: more fragments are to come
        return False


def _finish(finish_reason: str | None, made_calls: bool) -> str | None:
    """``tool_calls`` when the model stopped to have tools run (some servers say ``stop`` then)."""
    if made_calls and finish_reason in (None, "stop", "tool_calls", "function_call"):
        return TOOL_CALLS_FINISH
    return finish_reason


def _usage(usage: _Usage | None) -> Usage:
    if usage is None:
        return Usage()
    return Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0)


class _EmbeddingItem(msgspec.Struct):
    embedding: list[float]
    index: int = 0


class _EmbeddingsBody(msgspec.Struct):
    data: list[_EmbeddingItem]
    model: str = ""
    usage: _Usage | None = None


def strict_ready(schema: Any) -> bool:
    """Whether ``schema`` meets what strict structured outputs demand of every object in it:
    ``additionalProperties: false`` and every property required. The API refuses a strict
    request whose schema does not, so such a schema is sent with ``strict: false``."""
    if isinstance(schema, list):
        return all(strict_ready(item) for item in schema)
    if not isinstance(schema, dict):
        return True
    properties = schema.get("properties")
    if schema.get("type") == "object" or isinstance(properties, dict):
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required") or ()) != set(properties or {}):
            return False
    return all(strict_ready(value) for key, value in schema.items()
               if key in _SUBSCHEMA_KEYS or (key == "properties" and isinstance(value, dict)))


#: Keywords whose values hold subschemas ("properties" maps names to them).
_SUBSCHEMA_KEYS = frozenset({"items", "anyOf", "allOf", "oneOf", "$defs", "definitions", "not"})


def response_format(schema: JsonSchema) -> dict[str, Any]:
    """The Chat Completions ``response_format`` asking for ``schema``."""
    json_schema: dict[str, Any] = {"name": schema.name, "schema": schema.schema, "strict": strict_ready(schema.schema)}
    if schema.description:
        json_schema["description"] = schema.description
    return {"type": "json_schema", "json_schema": json_schema}


class OpenAIProvider(StructuredOutput, HttpProvider):
    name = "openai"
    default_base_url = OPENAI_BASE_URL
    api_key_env = "OPENAI_API_KEY"
    error_types = _ERROR_TYPES
    supports_json = True
    supports_tools = True

    def __init__(self, model: str, *, embed_model: str | None = None, **options: Any) -> None:
        super().__init__(model, **options)
        #: What ``embed`` uses: the spec's ``embed_model``; on api.openai.com, else a default. A compatible
        #: server embeds only when told with which model (its chat model may not embed).
        self.embedding_model = embed_model or (
            OPENAI_EMBEDDING_MODEL if self.base_url.startswith(OPENAI_BASE_URL) else None)

    def embed(self, texts: Sequence[str]) -> Embeddings:
        """``POST /embeddings``: one vector per text (``embeddings.Embedder``)."""
        if not self.embedding_model:
            raise BadRequestError("no embedding model: name one with ?embed_model=...", provider=self.name)
        answer = self.post_with_retries("/embeddings", {"model": self.embedding_model, "input": list(texts)})
        body: _EmbeddingsBody = decode(answer, _EmbeddingsBody, self.name)
        ordered = [item.embedding for item in sorted(body.data, key=lambda item: item.index)]
        usage = _usage(body.usage)
        return Embeddings(checked(ordered, len(texts), self.name), body.model or self.embedding_model,
                          Usage(usage.input_tokens, 0))

    def requires_api_key(self) -> bool:
        # Local and compatible servers (vLLM, llama.cpp, LM Studio, Ollama) need no key.
        return self.base_url.startswith(OPENAI_BASE_URL)

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"} if api_key else {}

    def error_for_status(self, status: int, detail: ErrorDetail, retry_after: float | None) -> LlmError:
        # The status decides, as in the official SDK (a 401 says "invalid_request_error" in its body,
        # compatible servers label 5xx failures so too); the body's type/code only refine within it.
        labels, message = detail.labels, detail.message
        kwargs: dict[str, Any] = {"provider": self.name, "status_code": status}
        if status == 429 and "insufficient_quota" in labels:
            return QuotaExceededError(
                f"the account is out of quota ({message}); check the plan and billing details of this key: "
                "retrying will not help", **kwargs)
        if status == 400 and "context_length_exceeded" in labels:
            return BadRequestError(
                f"the prompt does not fit the model's context window ({message}); shorten the conversation "
                "or choose a model with a longer context", **kwargs)
        if status == 404 and "model_not_found" in labels:
            return NotFoundError(
                f"no model {self.model!r} here ({message}); check the model name, and that base_url is the "
                "server that serves it", **kwargs)
        return super().error_for_status(status, detail, retry_after)

    def _mid_stream_error(self, error: _Error) -> LlmError:
        code = str(error.code) if error.code is not None else error.type
        message = self.clean(error.message or "error inside the stream")
        return self.error_for_type(code, message, None) or self.error_for_type(error.type, message, None) or ServerError(
            f"the server reported an error mid-stream: {message}", provider=self.name
        )

    def body(self, request: LlmRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_for(request),
            "messages": [wire_message(m) for m in request.messages],
            "max_tokens": request.max_tokens,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.stop:
            body["stop"] = list(request.stop)
        if request.response_schema is not None:
            body["response_format"] = response_format(request.response_schema)
        if request.tools:
            body["tools"] = function_tools(request.tools)
            if request.tool_choice == "none":
                body["tool_choice"] = "none"
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def _complete_once(self, request: LlmRequest) -> LlmResponse:
        with self.translate_errors():
            return self._completion(self.post_json("/chat/completions", self.body(request, stream=False)), request)

    def _completion(self, body: bytes, request: LlmRequest) -> LlmResponse:
        """A non-streaming response's answer (also the body a server that does not stream sends to a
        streaming request)."""
        data = _decode_completion(body)
        if data.error is not None:
            raise self._mid_stream_error(data.error)
        if not data.choices:
            raise ProtocolError("the response has no choices", provider=self.name)
        choice = data.choices[0]
        if choice.message is not None and choice.message.refusal:
            raise self._refusal(choice.message.refusal)
        content = (choice.message.content if choice.message else None) or ""
        calls = tuple(
            _whole_call(call, position)
            for position, call in enumerate((choice.message.tool_calls if choice.message else None) or (), 1)
        )
        return LlmResponse(content, _finish(choice.finish_reason, bool(calls)), _usage(data.usage),
                           data.model or self.model_for(request), calls)

    def _refusal(self, text: str) -> RefusalError:
        return RefusalError(f"the model refused to answer: {self.clean(text)}", provider=self.name)

    def _stream_once(self, request: LlmRequest) -> Iterator[StreamChunk]:
        if request.response_schema is not None:
            return self._stream_structured(request)
        return self._stream_text(request)

    def _stream_text(self, request: LlmRequest) -> Iterator[StreamChunk]:
        finish_reason: str | None = None
        usage: _Usage | None = None
        calls = ToolCallAssembler()
        with self.open_stream("/chat/completions", self.body(request, stream=True),
                              lambda body: self._completion(body, request)) as chunks:
            for events in sse_batches(chunks):
                for sse in events:
                    if sse.data == b"[DONE]":
                        for call in calls.finish():
                            yield StreamChunk(tool_call=call)
                        yield StreamChunk("", True, _finish(finish_reason, calls.made > 0), _usage(usage))
                        return
                    chunk = _decode_chunk(sse.data)
                    if chunk.error is not None:
                        raise self._mid_stream_error(chunk.error)
                    if chunk.usage is not None:
                        usage = chunk.usage  # some servers repeat it on every chunk: keep the last
                    for choice in chunk.choices:
                        delta = choice.delta
                        if delta is not None:
                            if delta.content:
                                yield StreamChunk(delta.content)
                            if delta.tool_calls:
                                for call in calls.feed(delta.tool_calls):
                                    yield StreamChunk(tool_call=call)
                        if choice.finish_reason is not None:
                            if choice.finish_reason == "error":
                                raise ServerError("the server ended the answer with finish_reason=error",
                                                  provider=self.name)
                            finish_reason = choice.finish_reason
                            for call in calls.finish():
                                yield StreamChunk(tool_call=call)
        if finish_reason is not None:  # some servers close without [DONE] after a finished answer
            yield StreamChunk("", True, _finish(finish_reason, calls.made > 0), _usage(usage))
            return
        raise ProtocolError("the stream ended before [DONE]; the answer may be cut short", provider=self.name)

    def _stream_structured(self, request: LlmRequest) -> Iterator[StreamChunk]:
        """The JSON streams as ``delta.content``; ``delta.refusal`` pieces, joined, are a RefusalError."""
        finish_reason: str | None = None
        usage: _Usage | None = None
        refusal: list[str] = []
        calls = ToolCallAssembler()
        with self.open_stream("/chat/completions", self.body(request, stream=True),
                              lambda body: self._completion(body, request)) as chunks:
            for sse in sse_events(chunks):
                if sse.data == b"[DONE]":
                    break
                chunk = _decode_structured_chunk(sse.data)
                if chunk.error is not None:
                    raise self._mid_stream_error(chunk.error)
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta is not None:
                        if delta.refusal:
                            refusal.append(delta.refusal)
                        elif delta.content:
                            yield StreamChunk(delta.content)
                        if delta.tool_calls:
                            for call in calls.feed(delta.tool_calls):
                                yield StreamChunk(tool_call=call)
                    if choice.finish_reason is not None:
                        if choice.finish_reason == "error":
                            raise ServerError("the server ended the answer with finish_reason=error",
                                              provider=self.name)
                        finish_reason = choice.finish_reason
            else:
                if finish_reason is None:
                    raise ProtocolError("the stream ended before [DONE]; the answer may be cut short",
                                        provider=self.name)
        if refusal:
            raise self._refusal("".join(refusal))
        for call in calls.finish():
            yield StreamChunk(tool_call=call)
        yield StreamChunk("", True, _finish(finish_reason, calls.made > 0), _usage(usage))


def _whole_call(call: _FullToolCall, position: int) -> ToolCall:
    function = call.function or _Function()
    made = tool_call(call.id or f"call_{position}", function.name, function.arguments)
    if not function.name:
        made = msgspec.structs.replace(made, error=made.error or "the call names no tool")
    return made
