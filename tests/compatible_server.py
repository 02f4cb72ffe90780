"""An OpenAI- and Anthropic-compatible server on 127.0.0.1 (ephemeral port) that answers like a real
model would, in the manner a test chooses — for whole deliberations against servers that behave like
the third-party ones in the wild: answering a streaming request with a whole JSON body, streaming
nothing, refusing ``response_format`` or ``tools`` with a 400, ignoring a forced tool call.

The answers are the offline mock's (``MockProvider`` named by the request's model), so a deliberation
reads them as it reads the mock's: drafts, critiques with scores, syntheses, votes, in text or JSON.
Every request is kept (``requests``: the path and the decoded body) for the tests to count.
"""

from __future__ import annotations

import json
import threading
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from forge_actors.providers import LlmRequest, Message, MockProvider
from forge_actors.providers.base import JsonSchema

#: A tool call the "tooler" model makes in its first reply when offered tools (then it answers).
TOOL_CALL = {"name": "list_files", "arguments": {}}


@dataclass
class Manner:
    """How the server answers. The defaults: a well-behaved server."""

    streams: bool = True  # False: every request is answered with a whole application/json body
    refuses: frozenset[str] = frozenset()  # "response_format", "tools": a 400 naming it, when a request has it
    empty_streams: int = 0  # this many streamed requests get a stream with no text before it behaves
    ignores_structured: bool = False  # answers a structured request (response_format, a forced tool) with text
    empty_whole: bool = False  # a non-streamed answer has no text (and no tool call)
    refuses_embeddings: bool = False  # /embeddings answers a 400 (the model does not embed)


@dataclass
class SeenRequest:
    path: str
    body: dict[str, Any]


class CompatibleServer:
    def __init__(self, manner: Manner | None = None) -> None:
        self.manner = manner or Manner()
        self.requests: list[SeenRequest] = []
        self._lock = threading.Lock()
        self._empty_left = self.manner.empty_streams
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 (the http.server naming)
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                with outer._lock:
                    outer.requests.append(SeenRequest(self.path, body))
                status, content_type, data = outer._answer(self.path, body)
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> CompatibleServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def streamed(self) -> list[SeenRequest]:
        return [r for r in self.requests if r.body.get("stream")]

    # -- answering -----------------------------------------------------------------------------

    def _answer(self, path: str, body: dict[str, Any]) -> tuple[int, str, bytes]:
        if path.endswith("/embeddings"):
            if self.manner.refuses_embeddings:
                error = {"error": {"message": f"{body.get('model')} does not support embeddings",
                                   "type": "invalid_request_error"}}
                return 400, "application/json", json.dumps(error).encode()
            return 200, "application/json", json.dumps(_embeddings(body)).encode()
        anthropic = path.endswith("/messages")
        structured = bool(body.get("response_format")) or (anthropic and "tool_choice" in body)
        for refused, present in (("response_format", structured), ("tools", bool(body.get("tools")) and not (
                anthropic and structured))):
            if refused in self.manner.refuses and present:
                error = {"error": {"message": f"Unsupported parameter: '{refused}' is not supported with this "
                                              "model.", "type": "invalid_request_error", "param": refused}}
                return 400, "application/json", json.dumps(error).encode()
        text, call = self._reply(body, anthropic, structured)
        if body.get("stream") and self.manner.streams:
            with self._lock:
                empty = self._empty_left > 0
                self._empty_left -= empty
            if empty:
                text, call = "", None
            stream = _anthropic_stream(text, call) if anthropic else _openai_stream(text, call)
            return 200, "text/event-stream", stream
        if self.manner.empty_whole:
            text, call = "", None
        whole = _anthropic_whole(text, call, body) if anthropic else _openai_whole(text, call)
        return 200, "application/json", json.dumps(whole).encode()

    def _reply(self, body: dict[str, Any], anthropic: bool, structured: bool) -> tuple[str, dict[str, Any] | None]:
        """The mock's answer to the conversation, and the tool call the "tooler" makes when offered tools."""
        model = str(body.get("model", "mock"))
        messages = _messages(body, anthropic)
        offered = [] if structured and anthropic else body.get("tools") or []
        if offered and model.startswith("tooler") and not any(m.role == "tool" or "TOOL_RESULT" in m.content
                                                               for m in messages):
            return "", TOOL_CALL
        schema = None
        if structured and not self.manner.ignores_structured:
            name = (body["response_format"]["json_schema"]["name"] if body.get("response_format")
                    else body["tool_choice"]["name"])
            schema = JsonSchema(name, {"type": "object"})
        answer = MockProvider(model, word_delay=0).complete(LlmRequest(messages=tuple(messages),
                                                                       response_schema=schema))
        if schema is not None and anthropic:  # Messages gives a structured reply as the forced call's input
            return "", {"name": schema.name, "arguments": json.loads(answer.content)}
        return answer.content, None


def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
    """``/v1/embeddings``: each text's words hashed into 64 dimensions (texts sharing words point alike)."""
    data = []
    for index, text in enumerate(body["input"]):
        vector = [0.0] * 64
        for word in text.lower().split():
            vector[zlib.crc32(word.encode()) % 64] += 1.0
        data.append({"object": "embedding", "index": index, "embedding": vector})
    return {"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1}}


def _messages(body: dict[str, Any], anthropic: bool) -> list[Message]:
    found = [Message("system", body["system"])] if anthropic and body.get("system") else []
    for message in body.get("messages", []):
        role, content = message.get("role", "user"), message.get("content")
        if isinstance(content, list):  # Anthropic blocks, tool results among them
            if any(block.get("type") == "tool_result" for block in content):
                role = "tool"
            content = " ".join(str(block.get("text") or block.get("content") or "") for block in content)
        found.append(Message(role if role in ("system", "user", "assistant", "tool") else "user", content or ""))
    return found


def _sse(data: dict[str, Any] | str, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


def _openai_stream(text: str, call: dict[str, Any] | None) -> bytes:
    parts = [_sse({"choices": [{"index": 0, "delta": {"content": word}}]}) for word in _words(text)]
    if call is not None:
        parts.append(_sse({"choices": [{"index": 0, "delta": {"tool_calls": [{
            "index": 0, "id": "call_1", "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])}}]}}]}))
    finish = "tool_calls" if call is not None else "stop"
    parts.append(_sse({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
                       "usage": {"prompt_tokens": 10, "completion_tokens": 5}}))
    parts.append(_sse("[DONE]"))
    return b"".join(parts)


def _openai_whole(text: str, call: dict[str, Any] | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if call is not None:
        message["tool_calls"] = [{"id": "call_1", "type": "function", "function": {
            "name": call["name"], "arguments": json.dumps(call["arguments"])}}]
    return {"id": "x", "object": "chat.completion", "model": "m", "usage": {"prompt_tokens": 10,
                                                                           "completion_tokens": 5},
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if call else "stop"}]}


def _anthropic_stream(text: str, call: dict[str, Any] | None) -> bytes:
    parts = [_sse({"type": "message_start", "message": {"usage": {"input_tokens": 10, "output_tokens": 1}}},
                  "message_start")]
    if text:
        parts.append(_sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                          "content_block_start"))
        parts += [_sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}},
                       "content_block_delta") for word in _words(text)]
        parts.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
    if call is not None:
        parts.append(_sse({"type": "content_block_start", "index": 1, "content_block": {
            "type": "tool_use", "id": "toolu_1", "name": call["name"], "input": {}}}, "content_block_start"))
        parts.append(_sse({"type": "content_block_delta", "index": 1, "delta": {
            "type": "input_json_delta", "partial_json": json.dumps(call["arguments"])}}, "content_block_delta"))
        parts.append(_sse({"type": "content_block_stop", "index": 1}, "content_block_stop"))
    stop = "tool_use" if call is not None else "end_turn"
    parts.append(_sse({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 5}},
                      "message_delta"))
    parts.append(_sse({"type": "message_stop"}, "message_stop"))
    return b"".join(parts)


def _anthropic_whole(text: str, call: dict[str, Any] | None, body: dict[str, Any]) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    if call is not None:
        blocks.append({"type": "tool_use", "id": "toolu_1", "name": call["name"], "input": call["arguments"]})
    return {"id": "msg", "type": "message", "role": "assistant", "model": "m", "content": blocks,
            "stop_reason": "tool_use" if call else "end_turn", "usage": {"input_tokens": 10, "output_tokens": 5}}


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [word + (" " if i < len(words) - 1 else "") for i, word in enumerate(words) if word or i == 0]
