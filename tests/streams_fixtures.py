"""Pre-rendered wire streams of each API, as their servers send them."""

from __future__ import annotations

import json


def sse(event: str | None, data: dict | str, *, crlf: bool = False) -> bytes:
    nl = "\r\n" if crlf else "\n"
    body = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}{nl}" if event else ""
    return (head + f"data: {body}{nl}{nl}").encode()


def anthropic_stream(texts: list[str], *, stop_reason: str = "end_turn", input_tokens: int = 25,
                     output_tokens: int = 7, crlf: bool = False, extras: bytes = b"") -> bytes:
    out = sse("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
        "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}, crlf=crlf)
    out += sse("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}}, crlf=crlf)
    out += sse("ping", {"type": "ping"}, crlf=crlf)
    out += extras
    for text in texts:
        out += sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                           "delta": {"type": "text_delta", "text": text}}, crlf=crlf)
    out += sse("content_block_stop", {"type": "content_block_stop", "index": 0}, crlf=crlf)
    out += sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                 "usage": {"output_tokens": output_tokens}}, crlf=crlf)
    out += sse("message_stop", {"type": "message_stop"}, crlf=crlf)
    return out


def openai_stream(texts: list[str], *, finish_reason: str = "stop", usage: bool = True,
                  crlf: bool = False, done: bool = True) -> bytes:
    def chunk(delta: dict, finish: str | None = None) -> dict:
        return {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-x",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    out = sse(None, chunk({"role": "assistant", "content": ""}), crlf=crlf)
    for text in texts:
        out += sse(None, chunk({"role": "assistant", "content": text}), crlf=crlf)
    out += sse(None, chunk({}, finish_reason), crlf=crlf)
    if usage:
        out += sse(None, {"id": "c1", "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": len(texts),
                                                               "total_tokens": 11 + len(texts)}}, crlf=crlf)
    if done:
        out += sse(None, "[DONE]", crlf=crlf)
    return out


def ollama_stream(texts: list[str], *, done_reason: str = "stop") -> bytes:
    lines = [json.dumps({"model": "llama3.2", "message": {"role": "assistant", "content": t}, "done": False})
             for t in texts]
    lines.append(json.dumps({"model": "llama3.2", "message": {"role": "assistant", "content": ""}, "done": True,
                             "done_reason": done_reason, "prompt_eval_count": 9, "eval_count": len(texts)}))
    return ("\n".join(lines) + "\n").encode()
