"""Ollama's native API: /api/chat streamed as newline-delimited JSON; /api/tags lists models; /api/embed
embeds (with the spec's ``embed_model``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import msgspec

from forge_actors.providers.base import (
    TOOL_CALLS_FINISH,
    LlmRequest,
    LlmResponse,
    Message,
    StreamChunk,
    ToolCall,
    Usage,
    tool_call,
)
from forge_actors.providers.embeddings import Embeddings, checked, decode
from forge_actors.providers.errors import BadRequestError, LlmError, NotFoundError, ProtocolError, ServerError
from forge_actors.providers.http import ErrorDetail, HttpProvider
from forge_actors.providers.openai import function_tools, tool_result_text
from forge_actors.providers.streams import ndjson_batches
from forge_actors.providers.structured import StructuredOutput


class _Function(msgspec.Struct):
    name: str = ""
    arguments: Any = None  # an object; some models' templates give a JSON string instead


class _ToolCall(msgspec.Struct):
    function: _Function | None = None
    id: str = ""  # newer servers give one; older ones none


class _Message(msgspec.Struct):
    content: str = ""
    tool_calls: list[_ToolCall] | None = None


class _Line(msgspec.Struct):
    message: _Message | None = None
    response: str | None = None  # /api/generate's field, accepted too
    done: bool = False
    done_reason: str | None = None
    prompt_eval_count: int | None = None
    eval_count: int | None = None
    error: str | None = None
    model: str = ""


class _Model(msgspec.Struct):
    name: str


class _Embedded(msgspec.Struct):
    embeddings: list[list[float]] = []
    model: str = ""
    prompt_eval_count: int | None = None
    error: str | None = None


class _Tags(msgspec.Struct):
    models: list[_Model] = []


_decode_line = msgspec.json.Decoder(_Line).decode


def wire_message(message: Message) -> dict[str, Any]:
    """One turn in /api/chat form: calls with their arguments as objects, results naming their tool."""
    if message.role == "tool":
        return {"role": "tool", "content": tool_result_text(message), "tool_name": message.name}
    if message.role == "assistant" and message.tool_calls:
        return {"role": "assistant", "content": message.content, "tool_calls": [
            {"function": {"name": call.name, "arguments": call.arguments}} for call in message.tool_calls]}
    return {"role": message.role, "content": message.content}


def _calls_of(message: _Message | None, made: int) -> list[ToolCall]:
    """The calls of one line (ids ``call_N`` continuing from ``made`` when the server gives none)."""
    calls: list[ToolCall] = []
    for raw in (message.tool_calls if message is not None else None) or ():
        function = raw.function or _Function()
        position = made + len(calls) + 1
        call = tool_call(raw.id or f"call_{position}", function.name, function.arguments)
        if not function.name:
            call = msgspec.structs.replace(call, error=call.error or "the call names no tool")
        calls.append(call)
    return calls


class OllamaProvider(StructuredOutput, HttpProvider):
    name = "ollama"
    default_base_url = "http://localhost:11434"
    api_key_env = None
    supports_json = True
    supports_tools = True

    def error_for_type(self, error_type: str | None, message: str, status: int | None) -> LlmError | None:
        # Ollama's errors have no type: inside a stream, a missing model is known by its message.
        if "not found" in message and "model" in message:
            return self._model_missing(message, status)
        return None

    def error_for_status(self, status: int, detail: ErrorDetail, retry_after: float | None) -> LlmError:
        if status == 404 and "model" in detail.message:  # not a wrong path ("404 page not found")
            return self._model_missing(detail.message, status)
        return super().error_for_status(status, detail, retry_after)

    def _model_missing(self, message: str, status: int | None) -> NotFoundError:
        return NotFoundError(
            f"{message}; download it with `ollama pull {self.model}` (or list models with `ollama list`)",
            provider=self.name, status_code=status,
        )

    def _line_error(self, message: str) -> LlmError:
        return self.error_for_type(None, message, None) or ServerError(f"ollama reported: {message}", provider=self.name)

    def body(self, request: LlmRequest, stream: bool) -> dict[str, Any]:
        options: dict[str, Any] = {"num_predict": request.max_tokens}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.stop:
            options["stop"] = list(request.stop)
        body: dict[str, Any] = {
            "model": self.model_for(request),
            "messages": [wire_message(m) for m in request.messages],
            "stream": stream,
            "options": options,
        }
        if request.tools and request.tool_choice != "none":  # Ollama has no tool_choice: not offered at all
            body["tools"] = function_tools(request.tools)
        if request.response_schema is not None:
            body["format"] = request.response_schema.schema  # the JSON then streams as message.content
        return body

    def __init__(self, model: str, *, embed_model: str | None = None, **options: Any) -> None:
        super().__init__(model, **options)
        #: What ``embed`` uses: only the spec's ``embed_model`` (a chat model's vectors are poor; an
        #: embedding model such as nomic-embed-text must be pulled first).
        self.embedding_model = embed_model or None

    def embed(self, texts: Sequence[str]) -> Embeddings:
        """``POST /api/embed``: one vector per text (``embeddings.Embedder``)."""
        if not self.embedding_model:
            raise BadRequestError("no embedding model: name one with ?embed_model=...", provider=self.name)
        answer = self.post_with_retries("/api/embed", {"model": self.embedding_model, "input": list(texts)})
        body: _Embedded = decode(answer, _Embedded, self.name)
        if body.error:
            raise self._line_error(body.error)
        return Embeddings(checked(body.embeddings, len(texts), self.name), body.model or self.embedding_model,
                          Usage(body.prompt_eval_count or 0, 0))

    def list_models(self) -> list[str]:
        """Names of the models this Ollama server has pulled."""
        with self.translate_errors():
            return [m.name for m in msgspec.json.decode(self.get_json("/api/tags"), type=_Tags).models]

    def _complete_once(self, request: LlmRequest) -> LlmResponse:
        with self.translate_errors():
            line = _decode_line(self.post_json("/api/chat", self.body(request, stream=False)))
        if line.error:
            raise self._line_error(line.error)
        text = line.message.content if line.message else (line.response or "")
        calls = tuple(_calls_of(line.message, 0))
        return LlmResponse(text, TOOL_CALLS_FINISH if calls else line.done_reason,
                           Usage(line.prompt_eval_count or 0, line.eval_count or 0),
                           line.model or self.model_for(request), calls)

    def _stream_once(self, request: LlmRequest) -> Iterator[StreamChunk]:
        made = [0]  # calls so far in this response: Ollama gives no ids, ours go on counting
        with self.open_stream("/api/chat", self.body(request, stream=True)) as chunks:
            for lines in ndjson_batches(chunks):
                for data in lines:
                    for chunk in self._chunks(data, made):
                        yield chunk
                        if chunk.is_complete:
                            return
        raise ProtocolError("the stream ended before a line with done=true", provider=self.name)

    def _chunks(self, data: bytes, made: list[int]) -> list[StreamChunk]:
        line = _decode_line(data)
        if line.error:
            raise self._line_error(line.error)
        text = (line.message.content if line.message else line.response) or ""
        chunks = [StreamChunk(text)] if text else []
        if line.message is not None and line.message.tool_calls:
            calls = _calls_of(line.message, made[0])  # each arrives whole, in one line
            made[0] += len(calls)
            chunks += [StreamChunk(tool_call=call) for call in calls]
        if line.done:
            usage = Usage(line.prompt_eval_count or 0, line.eval_count or 0)
            finish = TOOL_CALLS_FINISH if made[0] else (line.done_reason or "stop")
            chunks.append(StreamChunk("", True, finish, usage))
        return chunks
