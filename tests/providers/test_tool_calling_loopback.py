"""Streamed tool calls over real sockets: every chunk boundary, CRLF, pings, bad arguments, cuts."""

from __future__ import annotations

import json

import pytest
from loopback import DISCONNECT, LoopbackServer, Reply, split_every
from tool_streams import READ_ARGS, anthropic_tool_stream, ollama_tool_stream, openai_tool_stream

from forge_actors.providers import (
    AnthropicProvider,
    LlmRequest,
    Message,
    OllamaProvider,
    OpenAIProvider,
    ProtocolError,
    collect,
)
from forge_actors.providers.base import ToolCall, ToolDefinition

READ_FILE = ToolDefinition("read_file", "Read a file.", {"type": "object", "properties": {"path": {"type": "string"}},
                                                          "required": ["path"]})
LIST_FILES = ToolDefinition("list_files", "List the files.", {"type": "object", "properties": {}})
REQUEST = LlmRequest(messages=(Message("system", "sys"), Message("user", "Go")), tools=(READ_FILE, LIST_FILES))

IDS = {"anthropic": ("toolu_A", "toolu_B"), "openai": ("call_A", "call_B"), "ollama": ("call_1", "call_2")}
WIRE = {
    "anthropic": lambda crlf=False: anthropic_tool_stream(crlf=crlf),
    "openai": lambda crlf=False: openai_tool_stream(crlf=crlf),
    "ollama": lambda crlf=False: ollama_tool_stream(crlf=crlf),
}


def make(kind: str, url: str):
    kw = {"sleep": lambda _s: None, "max_retries": 0}
    if kind == "anthropic":
        return AnthropicProvider("claude-x", api_key="k-123456", base_url=url, **kw)
    if kind == "openai":
        return OpenAIProvider("gpt-x", base_url=url + "/v1", **kw)
    return OllamaProvider("llama3.2", base_url=url, **kw)


def expected_calls(kind: str) -> list[ToolCall]:
    first, second = IDS[kind]
    return [ToolCall(first, "read_file", READ_ARGS), ToolCall(second, "list_files", {})]


def check(kind: str, chunks) -> None:
    calls = [c.tool_call for c in chunks if c.tool_call is not None]
    assert calls == expected_calls(kind)
    assert "".join(c.delta for c in chunks) == "Let me look.Done."
    final = chunks[-1]
    assert final.is_complete and final.finish_reason == "tool_calls" and final.tool_call is None
    assert sum(c.is_complete for c in chunks) == 1
    # Text before the calls streams before them; the first call goes out as soon as it is whole.
    order = [c.delta or c.tool_call.name for c in chunks if c.delta or c.tool_call]
    assert order[:3] == ["Let me ", "look.", "read_file"]
    if kind != "openai":  # OpenAI's last call is only known whole when the stream finishes
        assert order[3:] == ["list_files", "Done."]


STRIDE = 61


@pytest.mark.parametrize("kind", ["anthropic", "openai", "ollama"])
def test_a_chunk_boundary_at_every_byte_position(kind):
    """Reply ``offset`` is cut at ``offset``, then every STRIDE bytes: over all replies, every
    byte position of the recorded stream is a chunk boundary once (a reply per position would
    take a minute of sockets)."""
    wire = WIRE[kind]()
    replies = [Reply(parts=[wire[:offset], *split_every(wire[offset:], STRIDE)]) for offset in range(1, STRIDE + 1)]
    with LoopbackServer(*replies) as server:
        provider = make(kind, server.url)
        for _ in replies:
            check(kind, list(provider.stream(REQUEST)))
        provider.close()


@pytest.mark.parametrize("kind", ["anthropic", "openai", "ollama"])
@pytest.mark.parametrize("crlf", [False, True])
def test_byte_by_byte_and_crlf(kind, crlf):
    with LoopbackServer(Reply(parts=split_every(WIRE[kind](crlf), 1)),
                        Reply(parts=split_every(WIRE[kind](crlf), 5))) as server:
        provider = make(kind, server.url)
        check(kind, list(provider.stream(REQUEST)))
        response = collect(provider.stream(REQUEST), "m")
    assert response.tool_calls == tuple(expected_calls(kind))
    assert response.content == "Let me look.Done." and response.finish_reason == "tool_calls"


def test_openai_interleaved_fragments_are_put_together_by_index():
    wire = openai_tool_stream(interleaved=True)
    with LoopbackServer(Reply(parts=split_every(wire, 3))) as server:
        response = collect(make("openai", server.url).stream(REQUEST), "m")
    assert response.tool_calls == tuple(expected_calls("openai"))


@pytest.mark.parametrize("bad", ['{"path": "README.md"', '["README.md"]', '{"path": README.md}', '"x"'])
@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_malformed_argument_json_is_a_call_error(kind, bad):
    wire = anthropic_tool_stream(read_json=bad) if kind == "anthropic" else openai_tool_stream(read_json=bad)
    with LoopbackServer(Reply(parts=split_every(wire, 7))) as server:
        response = collect(make(kind, server.url).stream(REQUEST), "m")
    read, listed = response.tool_calls
    assert read.name == "read_file" and read.arguments == {} and read.error
    assert bad[:10] in read.error or "object" in read.error
    assert listed.error is None and response.finish_reason == "tool_calls"


def test_ollama_accepts_arguments_as_a_json_string():
    with LoopbackServer(Reply(parts=[ollama_tool_stream(string_arguments=True)], content_type="application/x-ndjson")) as server:
        response = collect(make("ollama", server.url).stream(REQUEST), "m")
    assert response.tool_calls == tuple(expected_calls("ollama"))


@pytest.mark.parametrize(("kind", "wire"), [
    ("anthropic", anthropic_tool_stream(stop=False)),
    ("openai", openai_tool_stream(finish=False)),
    ("ollama", ollama_tool_stream(done=False)),
])
def test_a_stream_that_ends_mid_answer_is_a_malformed_stream(kind, wire):
    cut = wire[: len(wire) - 30]  # inside the last event too
    with LoopbackServer(Reply(parts=[cut]), Reply(parts=[wire[:200], DISCONNECT])) as server:
        provider = make(kind, server.url)
        for _ in range(2):
            with pytest.raises(ProtocolError):
                list(provider.stream(REQUEST))


def test_the_request_sent_over_the_socket_offers_the_tools():
    with LoopbackServer(Reply(parts=[openai_tool_stream()])) as server:
        list(make("openai", server.url).stream(REQUEST))
        body = json.loads(server.requests[0].body)
    assert [t["function"]["name"] for t in body["tools"]] == ["read_file", "list_files"]
