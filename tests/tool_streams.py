"""Recorded wire streams of answers that call tools, as each API's servers send them.

Each answer: text ("Let me look."), a read_file call whose arguments are split mid-token,
a list_files call with no arguments, then text after the calls ("Done.").
"""

from __future__ import annotations

import json

from streams_fixtures import sse

TEXT_BEFORE = ["Let me ", "look."]
TEXT_AFTER = ["Done."]
READ_ARGS = {"path": "docs/READ ME.md", "start_line": 3, "note": "é \"q\" ✓"}


def _fragments(text: str, sizes: tuple[int, ...] = (2, 9, 17)) -> list[str]:
    """``text`` cut into uneven pieces (inside keys, strings, escapes, multi-byte characters)."""
    pieces, at, turn = [], 0, 0
    while at < len(text):
        size = sizes[turn % len(sizes)]
        pieces.append(text[at:at + size])
        at += size
        turn += 1
    return pieces


def anthropic_tool_stream(*, crlf: bool = False, read_json: str | None = None, stop: bool = True) -> bytes:
    read_json = json.dumps(READ_ARGS) if read_json is None else read_json

    def ev(name: str, data: dict) -> bytes:
        return sse(name, {"type": name, **data}, crlf=crlf)

    out = ev("message_start", {"message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
                                           "content": [], "usage": {"input_tokens": 30, "output_tokens": 1}}})
    out += ev("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    out += sse("ping", {"type": "ping"}, crlf=crlf)
    for text in TEXT_BEFORE:
        out += ev("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}})
    out += ev("content_block_stop", {"index": 0})
    out += ev("content_block_start", {"index": 1, "content_block": {"type": "tool_use", "id": "toolu_A",
                                                                    "name": "read_file", "input": {}}})
    out += ev("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}})
    for piece in _fragments(read_json):
        out += ev("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta", "partial_json": piece}})
    out += sse("ping", {"type": "ping"}, crlf=crlf)
    out += ev("content_block_stop", {"index": 1})
    if not stop:
        return out
    out += ev("content_block_start", {"index": 2, "content_block": {"type": "tool_use", "id": "toolu_B",
                                                                    "name": "list_files", "input": {}}})
    out += ev("content_block_stop", {"index": 2})
    out += ev("content_block_start", {"index": 3, "content_block": {"type": "text", "text": ""}})
    for text in TEXT_AFTER:
        out += ev("content_block_delta", {"index": 3, "delta": {"type": "text_delta", "text": text}})
    out += ev("content_block_stop", {"index": 3})
    out += ev("message_delta", {"delta": {"stop_reason": "tool_use", "stop_sequence": None},
                                "usage": {"output_tokens": 40}})
    out += ev("message_stop", {})
    return out


def _openai_chunk(delta: dict, finish: str | None = None) -> dict:
    return {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-x",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def _openai_call(index: int, *, id: str | None = None, name: str | None = None, arguments: str = "") -> dict:
    piece: dict = {"index": index, "function": {"arguments": arguments}}
    if id is not None:
        piece.update(id=id, type="function")
        piece["function"]["name"] = name
    return {"tool_calls": [piece]}


def openai_tool_stream(*, crlf: bool = False, interleaved: bool = False, read_json: str | None = None,
                       done: bool = True, finish: bool = True) -> bytes:
    read_json = json.dumps(READ_ARGS) if read_json is None else read_json
    deltas = [{"role": "assistant", "content": ""}] + [{"content": t} for t in TEXT_BEFORE]
    read = _fragments(read_json)
    first = [_openai_call(0, id="call_A", name="read_file")]
    second = [_openai_call(1, id="call_B", name="list_files"), _openai_call(1, arguments="{"),
              _openai_call(1, arguments="}")]
    if interleaved:  # fragments of both calls alternate (some servers batch parallel calls so)
        calls = first + [second[0]] + [_openai_call(0, arguments=p) for p in read] + second[1:]
    else:
        calls = first + [_openai_call(0, arguments=p) for p in read] + second
    out = b"".join(sse(None, _openai_chunk(d), crlf=crlf) for d in deltas + calls)
    out += b": keep-alive\n\n" if not crlf else b": keep-alive\r\n\r\n"
    out += b"".join(sse(None, _openai_chunk({"content": t}), crlf=crlf) for t in TEXT_AFTER)
    if not finish:
        return out
    out += sse(None, _openai_chunk({}, "tool_calls"), crlf=crlf)
    out += sse(None, {"id": "c1", "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 20}}, crlf=crlf)
    if done:
        out += sse(None, "[DONE]", crlf=crlf)
    return out


def ollama_tool_stream(*, crlf: bool = False, string_arguments: bool = False, done: bool = True) -> bytes:
    def line(message: dict, **extra) -> str:
        return json.dumps({"model": "llama3.2", "message": {"role": "assistant", "content": "", **message},
                           "done": False, **extra})
    read_arguments = json.dumps(READ_ARGS) if string_arguments else READ_ARGS
    lines = [line({"content": t}) for t in TEXT_BEFORE]
    lines.append(line({"tool_calls": [{"function": {"name": "read_file", "arguments": read_arguments}}]}))
    lines.append(line({"tool_calls": [{"function": {"name": "list_files", "arguments": {}}}]}))
    lines += [line({"content": t}) for t in TEXT_AFTER]
    if done:
        lines.append(json.dumps({"model": "llama3.2", "message": {"role": "assistant", "content": ""}, "done": True,
                                 "done_reason": "stop", "prompt_eval_count": 9, "eval_count": 12}))
    nl = "\r\n" if crlf else "\n"
    return (nl.join(lines) + nl).encode()
