"""Native tool calling: the types, the exact requests each API gets, non-streamed calls, the mock."""

from __future__ import annotations

import json

import httpx
import msgspec
import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st
from streams_fixtures import anthropic_stream, ollama_stream, openai_stream
from tool_streams import READ_ARGS

from forge_actors.providers import (
    AnthropicProvider,
    EmptyResponseError,
    JsonSchema,
    LlmRequest,
    Message,
    MockProvider,
    OllamaProvider,
    OpenAIProvider,
    ProviderConfigError,
    collect,
)
from forge_actors.providers.base import StreamChunk, ToolCall, ToolDefinition, Usage, decode_arguments
from forge_actors.providers.cli import CliProvider
from forge_actors.providers.openai import ToolCallAssembler, _FunctionPiece, _ToolCallPiece
from forge_actors.providers.pool import PoolProvider
from forge_actors.providers.replay import ReplayProvider
from forge_actors.providers.toolcalls import parse_tool_calls, render_tool_context, render_tool_results

NO_SLEEP = {"sleep": lambda _s: None}
READ_FILE = ToolDefinition("read_file", "Read a file.", {"type": "object", "properties": {"path": {"type": "string"}},
                                                          "required": ["path"]})
LIST_FILES = ToolDefinition("list_files", "List the files.", {"type": "object", "properties": {}})
CALL_A = ToolCall("id_A", "read_file", {"path": "README.md"})
CALL_B = ToolCall("id_B", "list_files", {})
#: A conversation two tool turns deep: the model asked for two calls, got both results, and the user went on.
CONVERSATION = (
    Message("system", "Be brief."),
    Message("user", "Plan?"),
    Message("assistant", "Let me look.", tool_calls=(CALL_A, CALL_B)),
    Message("tool", "# Title", tool_call_id="id_A", name="read_file"),
    Message("tool", "permission denied", tool_call_id="id_B", name="list_files", is_error=True),
    Message("assistant", "", tool_calls=(ToolCall("id_C", "read_file", {"path": "x.md"}),)),
    Message("tool", "x", tool_call_id="id_C", name="read_file"),
    Message("user", "Go on."),
)
REQUEST = LlmRequest(messages=CONVERSATION, tools=(READ_FILE, LIST_FILES), max_tokens=300)


def anthropic() -> AnthropicProvider:
    return AnthropicProvider("claude-x", api_key="k-123456", base_url="https://anthropic.test", **NO_SLEEP)


def openai() -> OpenAIProvider:
    return OpenAIProvider("gpt-x", api_key="k-123456", **NO_SLEEP)


def ollama() -> OllamaProvider:
    return OllamaProvider("llama3.2", base_url="http://ollama.test", **NO_SLEEP)


# -- types ---------------------------------------------------------------------------------


def test_types_keep_their_old_shapes_and_defaults():
    assert Message("user", "hi") == Message("user", "hi", (), "", "", False)
    assert LlmRequest(messages=()).tools == ()
    assert StreamChunk("x").tool_call is None
    assert collect(iter([StreamChunk("a"), StreamChunk(tool_call=CALL_A), StreamChunk("b"),
                         StreamChunk(tool_call=CALL_B), StreamChunk("", True, "tool_calls", Usage(1, 2))]),
                   "m").tool_calls == (CALL_A, CALL_B)


@pytest.mark.parametrize("name", ["", "a" * 65, "read file", "read.file", "é"])
def test_tool_names_are_checked_like_schema_names(name):
    with pytest.raises(ProviderConfigError, match="1-64"):
        ToolDefinition(name, "", {"type": "object"})


def test_tool_parameters_must_be_an_object_schema():
    with pytest.raises(ProviderConfigError, match="object"):
        ToolDefinition("read_file", "", {"type": "string"})
    ToolDefinition("a-b_9" * 12 + "abcd", "", {"type": "object"})  # 64 characters


@pytest.mark.parametrize(("raw", "expected"), [
    ('{"path": "a"}', ({"path": "a"}, None)),
    (b'{"n": 1}', ({"n": 1}, None)),
    ({"path": "a"}, ({"path": "a"}, None)),
    ("", ({}, None)),
    (None, ({}, None)),
])
def test_decode_arguments_reads_objects(raw, expected):
    assert decode_arguments(raw) == expected


@pytest.mark.parametrize(("raw", "problem"), [
    ('{"path": "a"', "not valid JSON"), ("[1]", "not an array"), ('"a"', "not a string"),
    ("3", "not a number"), ("null", "not null"), ([1], "not an array"), (True, "not a boolean"),
])
def test_decode_arguments_refuses_everything_else(raw, problem):
    arguments, error = decode_arguments(raw)
    assert arguments == {} and error is not None and problem in error


def test_supports_tools_says_who_calls_tools_natively(tmp_path):
    mock = MockProvider("a")
    assert (anthropic().supports_tools, openai().supports_tools, ollama().supports_tools, mock.supports_tools) == (
        True, True, True, True)
    assert CliProvider("cat", command=["cat"]).supports_tools is False
    assert ReplayProvider("a", []).supports_tools is True  # recorded calls come back as they were made
    assert PoolProvider("p", members=[("a", mock), ("b", MockProvider("b"))]).supports_tools is True
    assert PoolProvider("p", members=[("a", mock), ("c", CliProvider("cat", command=["cat"]))]).supports_tools is False


# -- the exact requests ----------------------------------------------------------------------


@respx.mock
def test_anthropic_request_with_tools_and_results():
    route = respx.post("https://anthropic.test/v1/messages").mock(
        return_value=httpx.Response(200, content=anthropic_stream(["ok"])))
    list(anthropic().stream(REQUEST))
    body = json.loads(route.calls.last.request.content)
    assert body == {
        "model": "claude-x", "max_tokens": 300, "system": "Be brief.", "stream": True,
        "tools": [
            {"name": "read_file", "description": "Read a file.", "input_schema": READ_FILE.parameters},
            {"name": "list_files", "description": "List the files.", "input_schema": LIST_FILES.parameters},
        ],
        "messages": [
            {"role": "user", "content": "Plan?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "id_A", "name": "read_file", "input": {"path": "README.md"}},
                {"type": "tool_use", "id": "id_B", "name": "list_files", "input": {}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "id_A", "content": "# Title", "is_error": False},
                {"type": "tool_result", "tool_use_id": "id_B", "content": "permission denied", "is_error": True},
            ]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "id_C", "name": "read_file", "input": {"path": "x.md"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "id_C", "content": "x", "is_error": False}]},
            {"role": "user", "content": "Go on."},
        ],
    }


@respx.mock
def test_openai_request_with_tools_and_results():
    route = respx.post("https://api.openai.com/v1/chat/completions").mock(
        return_value=httpx.Response(200, content=openai_stream(["ok"])))
    list(openai().stream(REQUEST))
    body = json.loads(route.calls.last.request.content)
    assert body == {
        "model": "gpt-x", "max_tokens": 300, "stream": True, "stream_options": {"include_usage": True},
        "tools": [
            {"type": "function", "function": {"name": "read_file", "description": "Read a file.",
                                              "parameters": READ_FILE.parameters}},
            {"type": "function", "function": {"name": "list_files", "description": "List the files.",
                                              "parameters": LIST_FILES.parameters}},
        ],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Plan?"},
            {"role": "assistant", "content": "Let me look.", "tool_calls": [
                {"id": "id_A", "type": "function", "function": {"name": "read_file", "arguments": '{"path":"README.md"}'}},
                {"id": "id_B", "type": "function", "function": {"name": "list_files", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "id_A", "content": "# Title"},
            {"role": "tool", "tool_call_id": "id_B", "content": "ERROR: permission denied"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "id_C", "type": "function", "function": {"name": "read_file", "arguments": '{"path":"x.md"}'}}]},
            {"role": "tool", "tool_call_id": "id_C", "content": "x"},
            {"role": "user", "content": "Go on."},
        ],
    }


@respx.mock
def test_ollama_request_with_tools_and_results():
    route = respx.post("http://ollama.test/api/chat").mock(return_value=httpx.Response(200, content=ollama_stream(["ok"])))
    list(ollama().stream(REQUEST))
    body = json.loads(route.calls.last.request.content)
    assert body == {
        "model": "llama3.2", "stream": True, "options": {"num_predict": 300},
        "tools": [
            {"type": "function", "function": {"name": "read_file", "description": "Read a file.",
                                              "parameters": READ_FILE.parameters}},
            {"type": "function", "function": {"name": "list_files", "description": "List the files.",
                                              "parameters": LIST_FILES.parameters}},
        ],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Plan?"},
            {"role": "assistant", "content": "Let me look.", "tool_calls": [
                {"function": {"name": "read_file", "arguments": {"path": "README.md"}}},
                {"function": {"name": "list_files", "arguments": {}}},
            ]},
            {"role": "tool", "content": "# Title", "tool_name": "read_file"},
            {"role": "tool", "content": "ERROR: permission denied", "tool_name": "list_files"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "read_file", "arguments": {"path": "x.md"}}}]},
            {"role": "tool", "content": "x", "tool_name": "read_file"},
            {"role": "user", "content": "Go on."},
        ],
    }


@respx.mock
def test_requests_without_tools_are_as_before():
    route = respx.post("https://api.openai.com/v1/chat/completions").mock(
        return_value=httpx.Response(200, content=openai_stream(["ok"])))
    list(openai().stream(LlmRequest(messages=(Message("user", "Hi"),))))
    assert "tools" not in json.loads(route.calls.last.request.content)


SCHEMA = JsonSchema("answer", {"type": "object", "properties": {"a": {"type": "string"}}})


def test_anthropic_refuses_tools_with_a_response_schema():
    request = msgspec.structs.replace(REQUEST, response_schema=SCHEMA)
    with pytest.raises(ProviderConfigError, match="tools.*response_schema"):
        list(anthropic().stream(request))
    with pytest.raises(ProviderConfigError, match="separate requests"):
        anthropic().complete(request)


@respx.mock
def test_openai_sends_tools_and_a_response_schema_together():
    route = respx.post("https://api.openai.com/v1/chat/completions").mock(
        return_value=httpx.Response(200, content=openai_stream(['{"a": "b"}'])))
    list(openai().stream(msgspec.structs.replace(REQUEST, response_schema=SCHEMA)))
    body = json.loads(route.calls.last.request.content)
    assert body["response_format"]["json_schema"]["name"] == "answer" and len(body["tools"]) == 2


# -- non-streamed answers that call tools ------------------------------------------------------


@respx.mock
def test_anthropic_complete_with_calls_and_no_text():
    respx.post("https://anthropic.test/v1/messages").mock(return_value=httpx.Response(200, json={
        "model": "claude-x", "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 6},
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": READ_ARGS},
                    {"type": "tool_use", "id": "toolu_2", "name": "list_files", "input": {}}]}))
    response = anthropic().complete(REQUEST)
    assert response.content == "" and response.finish_reason == "tool_calls"
    assert response.tool_calls == (ToolCall("toolu_1", "read_file", READ_ARGS), ToolCall("toolu_2", "list_files", {}))


@respx.mock
def test_openai_complete_with_calls_and_bad_arguments():
    respx.post("https://api.openai.com/v1/chat/completions").mock(return_value=httpx.Response(200, json={
        "model": "gpt-x", "usage": {"prompt_tokens": 1, "completion_tokens": 2},
        "choices": [{"finish_reason": "tool_calls", "message": {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_9", "type": "function", "function": {"name": "read_file", "arguments": json.dumps(READ_ARGS)}},
            {"id": "call_10", "type": "function", "function": {"name": "read_file", "arguments": '{"path": '}},
        ]}}]}))
    response = openai().complete(REQUEST)
    good, bad = response.tool_calls
    assert good == ToolCall("call_9", "read_file", READ_ARGS)
    assert bad.id == "call_10" and bad.arguments == {} and "not valid JSON" in (bad.error or "")
    assert response.finish_reason == "tool_calls" and response.content == ""


@respx.mock
def test_ollama_complete_with_calls_gets_stable_ids():
    respx.post("http://ollama.test/api/chat").mock(return_value=httpx.Response(200, json={
        "model": "llama3.2", "done": True, "done_reason": "stop", "message": {"role": "assistant", "content": "",
        "tool_calls": [{"function": {"name": "read_file", "arguments": READ_ARGS}},
                       {"function": {"name": "list_files", "arguments": "{}"}},
                       {"function": {"name": "read_file", "arguments": "[1]"}}]}}))
    response = ollama().complete(REQUEST)
    assert [c.id for c in response.tool_calls] == ["call_1", "call_2", "call_3"]
    assert response.tool_calls[:2] == (ToolCall("call_1", "read_file", READ_ARGS), ToolCall("call_2", "list_files", {}))
    assert response.tool_calls[2].error and response.finish_reason == "tool_calls"


@respx.mock
def test_an_answer_without_text_or_calls_is_still_empty():
    respx.post("http://ollama.test/api/chat").mock(return_value=httpx.Response(200, json={
        "model": "llama3.2", "done": True, "done_reason": "stop", "message": {"role": "assistant", "content": ""}}))
    with pytest.raises(EmptyResponseError):
        ollama().complete(REQUEST)


@respx.mock
def test_tools_offered_but_not_called_finish_as_before():
    respx.post("https://anthropic.test/v1/messages").mock(
        return_value=httpx.Response(200, content=anthropic_stream(["Just text."])))
    response = collect(anthropic().stream(REQUEST), "m")
    assert (response.content, response.finish_reason, response.tool_calls) == ("Just text.", "end_turn", ())


# -- the mock ----------------------------------------------------------------------------------


def draft(goal: str = "Improve README.md and src/app.py", *extra: Message, system: str = "You are alice.") -> tuple:
    return (Message("system", system), Message("user", f"Round: draft\nGoal: {goal}\n"), *extra)


def test_mock_calls_read_file_natively_in_a_draft():
    chunks = list(MockProvider("alice").stream(LlmRequest(messages=draft(), tools=(READ_FILE, LIST_FILES))))
    assert "".join(c.delta for c in chunks) == "Let me read README.md."
    assert [c.tool_call for c in chunks if c.tool_call] == [ToolCall("call_1", "read_file", {"path": "README.md"})]
    assert chunks[-1].is_complete and chunks[-1].finish_reason == "tool_calls"


@pytest.mark.parametrize(("goal", "path"), [
    ("Refactor src/app.py for speed", "src/app.py"),
    ("Review `pyproject.toml`, then the docs", "pyproject.toml"),
    ("See https://example.com/x and notes.txt.", "notes.txt"),
    ("Tidy the docs/ folder", "docs/"),
])
def test_mock_reads_the_first_path_of_the_goal(goal, path):
    response = MockProvider("a").complete(LlmRequest(messages=draft(goal), tools=(READ_FILE,)))
    assert response.tool_calls == (ToolCall("call_1", "read_file", {"path": path}),)


def test_mock_falls_back_to_list_files_then_to_a_plain_draft():
    mock = MockProvider("a")
    no_path = LlmRequest(messages=draft("Design a chat system"), tools=(READ_FILE, LIST_FILES))
    assert mock.complete(no_path).tool_calls == (ToolCall("call_1", "list_files", {}),)
    only_list = LlmRequest(messages=draft(), tools=(LIST_FILES,))
    assert mock.complete(only_list).tool_calls == (ToolCall("call_1", "list_files", {}),)
    neither = LlmRequest(messages=draft("Design a chat system"), tools=(READ_FILE,))
    plain = mock.complete(neither)
    assert plain.tool_calls == () and plain.content == mock.complete(LlmRequest(messages=draft("Design a chat system"))).content


def test_mock_drafts_with_evidence_once_results_are_in():
    mock = MockProvider("alice")
    results = (Message("assistant", "Let me read README.md.", tool_calls=(CALL_A,)),
               Message("tool", "\n\n# Forge\nA deliberation engine.\nMore.", tool_call_id="id_A", name="read_file"))
    response = mock.complete(LlmRequest(messages=draft("Improve README.md", *results), tools=(READ_FILE,)))
    assert response.tool_calls == () and response.finish_reason == "stop"
    assert response.content.startswith("## Proposal from alice")
    assert '### Evidence\n- read_file shows: "# Forge / A deliberation engine."' in response.content
    failed = (results[0], Message("tool", "no such file: README.md", tool_call_id="id_A", name="read_file", is_error=True))
    text = mock.complete(LlmRequest(messages=draft("Improve README.md", *failed), tools=(READ_FILE,))).content
    assert '- read_file failed: "no such file: README.md"' in text


def test_mock_speaks_the_text_protocol():
    mock = MockProvider("bob")
    system = "You are bob.\n\n" + render_tool_context([READ_FILE, LIST_FILES])
    first = mock.complete(LlmRequest(messages=draft("Improve README.md", system=system)))
    assert first.tool_calls == () and first.content.startswith("TOOL_CALL: ")
    calls = parse_tool_calls(first.content)
    assert calls == [ToolCall("call_1", "read_file", {"path": "README.md"})]
    feedback = render_tool_results([(calls[0], "# Forge\nline two")])
    second = mock.complete(LlmRequest(messages=draft("Improve README.md", Message("assistant", first.content),
                                                     Message("user", feedback), system=system)))
    assert '- read_file shows: "# Forge / line two"' in second.content and "TOOL_CALL" not in second.content
    failed = render_tool_results([(calls[0], Message("tool", "denied", is_error=True))])
    third = mock.complete(LlmRequest(messages=draft("Improve README.md", Message("assistant", first.content),
                                                    Message("user", failed), system=system)))
    assert '- read_file failed: "denied"' in third.content


def test_mock_other_rounds_ignore_tools_and_answers_are_deterministic():
    mock = MockProvider("a", seed=3)
    critique = (Message("user", "Round: critique\nGoal: Improve README.md\n### Proposal A\ntext"),)
    with_tools = mock.complete(LlmRequest(messages=critique, tools=(READ_FILE,)))
    assert with_tools.tool_calls == () and with_tools.content == mock.complete(LlmRequest(messages=critique)).content
    request = LlmRequest(messages=draft(), tools=(READ_FILE,))
    assert list(MockProvider("a", seed=3).stream(request)) == list(MockProvider("a", seed=3).stream(request))
    garbled = MockProvider("a", garble="draft").complete(request)
    assert garbled.tool_calls == ()


# -- OpenAI fragments, any way a server cuts and orders them -----------------------------------

_ARGS = st.dictionaries(st.text(max_size=6), st.integers() | st.text(max_size=8) | st.none(), max_size=3)


@settings(max_examples=120, deadline=None)
@given(calls=st.lists(_ARGS, min_size=1, max_size=3), data=st.data())
def test_assembler_puts_any_fragmentation_and_interleaving_together(calls, data):
    texts = [json.dumps(arguments) for arguments in calls]
    queues = []
    for index, text in enumerate(texts):
        cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=4)))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True) if text[a:b]]
        first = _ToolCallPiece(index, f"id{index}", _FunctionPiece(f"tool{index}", ""))
        queues.append([first] + [_ToolCallPiece(index, None, _FunctionPiece(None, p)) for p in pieces])
    interleave = data.draw(st.booleans())
    order: list[_ToolCallPiece] = []
    if interleave:  # each call's first fragment comes before its others, as every server sends them
        while any(queues):
            live = [q for q in queues if q]
            order.append(data.draw(st.sampled_from(live)).pop(0))
    else:
        order = [piece for queue in queues for piece in queue]
    assembler = ToolCallAssembler()
    made = []
    for piece in order:
        made += assembler.feed([piece])
    made += assembler.finish()
    assert sorted(made, key=lambda c: c.id) == [ToolCall(f"id{i}", f"tool{i}", a) for i, a in enumerate(calls)]
    if not interleave:
        assert [c.id for c in made] == [f"id{i}" for i in range(len(calls))]


def test_assembler_tells_calls_apart_by_id_when_a_server_numbers_them_all_zero():
    assembler = ToolCallAssembler()
    made = assembler.feed([_ToolCallPiece(0, "a", _FunctionPiece("read_file", '{"path": "x"}'))])
    made += assembler.feed([_ToolCallPiece(0, "b", _FunctionPiece("list_files", "{}"))])
    made += assembler.feed([_ToolCallPiece(0, None, _FunctionPiece(None, ""))])  # an empty trailing fragment
    made += assembler.finish()
    assert made == [ToolCall("a", "read_file", {"path": "x"}), ToolCall("b", "list_files", {})]


def test_assembler_reports_a_call_without_a_name():
    assembler = ToolCallAssembler()
    assembler.feed([_ToolCallPiece(0, None, _FunctionPiece(None, "{}"))])
    (call,) = assembler.finish()
    assert call.id == "call_1" and call.error == "the call names no tool"
