"""Structured replies in every provider: each API's own wire format, the mock, replay, pools, complete_json.

The wire shapes follow the official docs: OpenAI Chat Completions ``response_format`` /
``json_schema`` and ``refusal``; Anthropic Messages tools with a forced ``tool_choice``,
streamed ``tool_use`` blocks and ``input_json_delta``; Ollama ``/api/chat`` ``format``.
"""

from __future__ import annotations

import json

import httpx
import msgspec
import pytest
import respx
from fake_tools import ASSISTANT, env_with, write_tool
from loopback import LoopbackServer, Reply, split_every
from streams_fixtures import anthropic_stream, sse

from forge_actors.core import reply_format, reply_reading
from forge_actors.providers import (
    AnthropicProvider,
    LlmRequest,
    Message,
    MockProvider,
    OllamaProvider,
    OpenAIProvider,
    ProtocolError,
    ProviderConfigError,
    collect,
)
from forge_actors.providers.base import (
    JsonSchema,
    LlmResponse,
    StreamChunk,
    StructuredResponse,
    Usage,
)
from forge_actors.providers.cli import CliProvider
from forge_actors.providers.daemon import DaemonProvider
from forge_actors.providers.errors import MalformedReplyError, RefusalError
from forge_actors.providers.openai import response_format, strict_ready
from forge_actors.providers.pool import PoolProvider
from forge_actors.providers.replay import RecordedAnswer, ReplayProvider, prompt_key
from forge_actors.providers.structured import StructuredOutput, schema_instructions

SECRET = "sk-test-SECRET-0123456789"
VOTE = JsonSchema(reply_format.VOTE_SCHEMA_NAME, reply_format.VOTE_SCHEMA, "your vote on the plan")
CRITIQUE = JsonSchema(reply_format.CRITIQUE_SCHEMA_NAME, reply_format.critique_schema(["A", "B"]))
VOTE_JSON = '{"vote":"AGREE","reasons":["covers \\"auth\\" end to end","clear → plan"],"concerns":[],"confidence":0.8}'
#: VOTE_JSON cut at awkward places: inside a key, after a backslash, inside a multi-byte character's string
VOTE_PIECES = ['{"vo', 'te":"AG', 'REE","reasons":["covers \\', '"auth\\" end to end","clear ', '→', ' plan"]',
               ',"concerns":[],"conf', 'idence":0.8}']
assert "".join(VOTE_PIECES) == VOTE_JSON
MESSAGES = (Message("system", "Be brief."), Message("user", "Round: convergence\nGoal: g\nVote."))
REQUEST = LlmRequest(messages=MESSAGES, max_tokens=300, response_schema=VOTE)
PLAIN = LlmRequest(messages=MESSAGES, max_tokens=300)
NO_SLEEP = {"sleep": lambda _s: None}


def anthropic(url: str = "https://anthropic.test", **kw) -> AnthropicProvider:
    return AnthropicProvider("claude-sonnet-4-20250514", api_key=SECRET, base_url=url, **NO_SLEEP, **kw)


def openai(url: str = "https://api.openai.com/v1", **kw) -> OpenAIProvider:
    return OpenAIProvider("gpt-4o-2024-08-06", api_key=SECRET, base_url=url, **NO_SLEEP, **kw)


def ollama(url: str = "http://ollama.test", **kw) -> OllamaProvider:
    return OllamaProvider("llama3.1", base_url=url, **NO_SLEEP, **kw)


# -- wire streams, as the docs show them ------------------------------------------------------------


def openai_json_stream(pieces: list[str], *, refusal: list[str] | None = None, finish: str = "stop") -> bytes:
    def chunk(delta: dict, finish_reason: str | None = None) -> dict:
        return {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1723000000,
                "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_1",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
    out = sse(None, chunk({"role": "assistant", "content": "", "refusal": None}))
    for piece in pieces:
        out += sse(None, chunk({"content": piece}))
    for piece in refusal or []:
        out += sse(None, chunk({"refusal": piece}))
    out += sse(None, chunk({}, finish))
    out += sse(None, {"id": "chatcmpl-9", "object": "chat.completion.chunk", "choices": [],
                      "usage": {"prompt_tokens": 81, "completion_tokens": 12, "total_tokens": 93}})
    return out + sse(None, "[DONE]")


def anthropic_tool_stream(pieces: list[str], *, name: str = "vote", text_first: str = "") -> bytes:
    out = sse("message_start", {"type": "message_start", "message": {
        "id": "msg_014p7gG3wDgGV9EUtLvnow3U", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-20250514", "stop_sequence": None, "usage": {"input_tokens": 472, "output_tokens": 2},
        "content": [], "stop_reason": None}})
    index = 0
    if text_first:  # a text block before the call (never there when the tool is forced, but ignored if it is)
        out += sse("content_block_start", {"type": "content_block_start", "index": 0,
                                           "content_block": {"type": "text", "text": ""}})
        out += sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                           "delta": {"type": "text_delta", "text": text_first}})
        out += sse("content_block_stop", {"type": "content_block_stop", "index": 0})
        index = 1
    out += sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": {
        "type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": name, "input": {}}})
    out += sse("ping", {"type": "ping"})
    for piece in ["", *pieces]:  # the docs' streams open with an empty partial_json
        out += sse("content_block_delta", {"type": "content_block_delta", "index": index,
                                           "delta": {"type": "input_json_delta", "partial_json": piece}})
    out += sse("content_block_stop", {"type": "content_block_stop", "index": index})
    out += sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                                 "usage": {"output_tokens": 89}})
    return out + sse("message_stop", {"type": "message_stop"})


def ollama_json_stream(pieces: list[str]) -> bytes:
    lines = [json.dumps({"model": "llama3.1", "created_at": "2024-12-06T00:48:09.983619Z",
                         "message": {"role": "assistant", "content": p}, "done": False}) for p in pieces]
    lines.append(json.dumps({"model": "llama3.1", "created_at": "2024-12-06T00:48:10.1Z",
                             "message": {"role": "assistant", "content": ""}, "done_reason": "stop", "done": True,
                             "total_duration": 1234, "prompt_eval_count": 40, "eval_count": len(pieces)}))
    return ("\n".join(lines) + "\n").encode()


def sent_body(route: respx.Route) -> dict:
    return json.loads(route.calls.last.request.content)


# -- OpenAI ---------------------------------------------------------------------------------------------


@respx.mock
def test_openai_asks_with_a_strict_json_schema_and_streams_the_json_as_content():
    route = respx.post("https://api.openai.com/v1/chat/completions").mock(
        return_value=httpx.Response(200, content=openai_json_stream(VOTE_PIECES)))
    response = collect(openai().stream(REQUEST), "m")
    body = sent_body(route)
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "vote", "schema": reply_format.VOTE_SCHEMA, "strict": True, "description": "your vote on the plan"}}
    assert body["stream"] is True and body["messages"][1]["content"] == MESSAGES[1].content
    assert response.content == VOTE_JSON and response.finish_reason == "stop" and response.usage == Usage(81, 12)


@respx.mock
def test_openai_complete_json_reads_message_content():
    route = respx.post("https://api.openai.com/v1/chat/completions").mock(return_value=httpx.Response(200, json={
        "id": "chatcmpl-9", "object": "chat.completion", "created": 1723000000, "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": VOTE_JSON, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 81, "completion_tokens": 12, "total_tokens": 93}}))
    reply = openai().complete_json(PLAIN, VOTE, reply_format.VoteReply)
    assert sent_body(route)["response_format"]["json_schema"]["name"] == "vote"
    assert "stream" not in sent_body(route)
    assert reply == StructuredResponse(VOTE_JSON, reply_format.VoteReply(
        "AGREE", ['covers "auth" end to end', "clear → plan"], [], 0.8), "stop", Usage(81, 12), "gpt-4o-2024-08-06")


@respx.mock
def test_openai_refusal_is_a_refusal_error_streamed_or_not_and_is_not_retried():
    route = respx.post("https://api.openai.com/v1/chat/completions").mock(side_effect=[
        httpx.Response(200, content=openai_json_stream([], refusal=["I'm sorry,", " I cannot assist with that."])),
        httpx.Response(200, json={"id": "c", "object": "chat.completion", "model": "gpt-4o", "choices": [{
            "index": 0, "message": {"role": "assistant", "content": None, "refusal": "I'm sorry, I cannot."},
            "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}),
    ])
    provider = openai(max_retries=3)
    with pytest.raises(RefusalError, match="I'm sorry, I cannot assist with that.") as streamed:
        collect(provider.stream(REQUEST), "m")
    assert not streamed.value.retryable and streamed.value.kind == "refusal"
    with pytest.raises(RefusalError, match="I'm sorry, I cannot."):
        provider.complete_json(PLAIN, VOTE)
    assert route.call_count == 2  # one call each: a refusal is not retried


@respx.mock
def test_openai_ordinary_requests_carry_no_response_format():
    route = respx.post("https://api.openai.com/v1/chat/completions").mock(
        return_value=httpx.Response(200, content=openai_json_stream(["plain ", "text"])))
    assert collect(openai().stream(PLAIN), "m").content == "plain text"
    assert "response_format" not in sent_body(route)


def test_strict_mode_only_for_schemas_that_meet_its_rules():
    assert strict_ready(reply_format.VOTE_SCHEMA) and strict_ready(reply_format.critique_schema(["A"]))
    open_object = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    optional = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
                "required": ["a"], "additionalProperties": False}
    nested = {"type": "object", "properties": {"items": {"type": "array", "items": open_object}},
              "required": ["items"], "additionalProperties": False}
    for schema in (open_object, optional, nested):
        assert not strict_ready(schema)
        assert response_format(JsonSchema("x", schema))["json_schema"]["strict"] is False
    assert "description" not in response_format(JsonSchema("x", reply_format.VOTE_SCHEMA))["json_schema"]


# -- Anthropic ------------------------------------------------------------------------------------------


@respx.mock
def test_anthropic_forces_one_call_of_the_schema_tool_and_streams_its_input_json():
    route = respx.post("https://anthropic.test/v1/messages").mock(
        return_value=httpx.Response(200, content=anthropic_tool_stream(VOTE_PIECES, text_first="Let me vote.")))
    chunks = list(anthropic().stream(REQUEST))
    body = sent_body(route)
    assert body["tools"] == [{"name": "vote", "description": "your vote on the plan",
                              "input_schema": reply_format.VOTE_SCHEMA}]
    assert body["tool_choice"] == {"type": "tool", "name": "vote", "disable_parallel_tool_use": True}
    assert body["system"] == "Be brief." and body["stream"] is True
    assert [c.delta for c in chunks if c.delta] == VOTE_PIECES  # the text block's delta is not answer text
    assert chunks[-1].is_complete and chunks[-1].finish_reason == "tool_use" and chunks[-1].usage == Usage(472, 89)


@respx.mock
def test_anthropic_complete_json_reencodes_the_tool_input_compactly_in_its_order():
    tool_input = {"vote": "DISAGREE", "reasons": ["too big"], "concerns": ["no tests", "ünïcode"], "confidence": 0.4}
    route = respx.post("https://anthropic.test/v1/messages").mock(return_value=httpx.Response(200, json={
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514",
        "content": [{"type": "tool_use", "id": "toolu_01", "name": "vote", "input": tool_input}],
        "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 50, "output_tokens": 30}}))
    reply = anthropic().complete_json(PLAIN, VOTE)
    assert sent_body(route)["tool_choice"]["name"] == "vote" and "stream" not in sent_body(route)
    assert reply.content == json.dumps(tool_input, separators=(",", ":"), ensure_ascii=False)
    assert reply.data == tool_input and list(reply.data) == list(tool_input)
    assert (reply.finish_reason, reply.usage, reply.model) == ("tool_use", Usage(50, 30), "claude-sonnet-4-20250514")


@respx.mock
def test_anthropic_ordinary_requests_take_text_only_and_send_no_tools():
    route = respx.post("https://anthropic.test/v1/messages").mock(
        return_value=httpx.Response(200, content=anthropic_tool_stream(VOTE_PIECES, text_first="Only this.")))
    assert collect(anthropic().stream(PLAIN), "m").content == "Only this."
    assert "tools" not in sent_body(route) and "tool_choice" not in sent_body(route)


@respx.mock
def test_anthropic_stream_split_at_awkward_places_in_unnamed_events_too():
    wire = anthropic_tool_stream(VOTE_PIECES).replace(b"event: content_block_delta\n", b"")
    respx.post("https://anthropic.test/v1/messages").mock(return_value=httpx.Response(200, content=wire))
    assert collect(anthropic().stream(REQUEST), "m").content == VOTE_JSON


# -- Ollama -----------------------------------------------------------------------------------------------


@respx.mock
def test_ollama_sends_the_schema_as_format_and_streams_ndjson_content():
    route = respx.post("http://ollama.test/api/chat").mock(
        return_value=httpx.Response(200, content=ollama_json_stream(VOTE_PIECES)))
    response = collect(ollama().stream(REQUEST), "m")
    body = sent_body(route)
    assert body["format"] == reply_format.VOTE_SCHEMA and body["stream"] is True
    assert response.content == VOTE_JSON and response.usage == Usage(40, len(VOTE_PIECES))


@respx.mock
def test_ollama_complete_json_and_plain_requests_without_format():
    route = respx.post("http://ollama.test/api/chat").mock(side_effect=[
        httpx.Response(200, json={"model": "llama3.1", "created_at": "2024-12-06T00:46:58.265747Z",
                                  "message": {"role": "assistant", "content": VOTE_JSON}, "done_reason": "stop",
                                  "done": True, "prompt_eval_count": 40, "eval_count": 20}),
        httpx.Response(200, content=ollama_json_stream(["hi"])),
    ])
    reply = ollama().complete_json(PLAIN, VOTE, reply_format.VoteReply)
    assert sent_body(route)["format"] == reply_format.VOTE_SCHEMA and sent_body(route)["stream"] is False
    assert reply.data.vote == "AGREE" and reply.usage == Usage(40, 20)
    collect(ollama().stream(PLAIN), "m")
    assert "format" not in sent_body(route)


# -- over real sockets --------------------------------------------------------------------------------------

WIRES = {
    "anthropic": (lambda: anthropic_tool_stream(VOTE_PIECES), lambda url: anthropic(url), "tool_choice"),
    "openai": (lambda: openai_json_stream(VOTE_PIECES), lambda url: openai(url + "/v1"), "response_format"),
    "ollama": (lambda: ollama_json_stream(VOTE_PIECES), lambda url: ollama(url), "format"),
}


@pytest.mark.parametrize("kind", sorted(WIRES))
def test_loopback_structured_stream_yields_the_json_pieces(kind):
    wire, make, field = WIRES[kind]
    with LoopbackServer(Reply(parts=split_every(wire(), 5))) as server:
        chunks = list(make(server.url).stream(REQUEST))
    assert field in json.loads(server.requests[0].body)
    assert "".join(c.delta for c in chunks) == VOTE_JSON and chunks[-1].is_complete
    assert reply_reading.parse_vote_json("".join(c.delta for c in chunks)) == reply_format.ParsedVote(
        "AGREE", ('covers "auth" end to end', "clear → plan"), (), 0.8)


# -- the mock ---------------------------------------------------------------------------------------------

CRITIQUE_PROMPT = (Message("system", "You review."), Message(
    "user", "Round: critique\nGoal: a todo app\n\n### Proposal A\nplan a\n\n### Proposal B\nplan b\n"))
VOTE_PROMPT = (Message("system", "You vote."), Message("user", "Round: convergence\nIteration: 2\nGoal: a todo app\n"))


def test_mock_critique_json_says_what_its_text_says_and_is_deterministic():
    mock = MockProvider("alice", seed=3)
    text = mock.complete(LlmRequest(messages=CRITIQUE_PROMPT)).content
    asked = LlmRequest(messages=CRITIQUE_PROMPT, response_schema=CRITIQUE)
    chunks = list(mock.stream(asked))
    content = "".join(c.delta for c in chunks)
    assert content == MockProvider("alice", seed=3).complete(asked).content  # same request, same JSON
    assert len([c for c in chunks if c.delta]) > 10 and chunks[-1].is_complete  # streamed in small pieces
    assert reply_reading.parse_critique_json(content, ["A", "B"]) == reply_reading.parse_critiques(text, ["A", "B"])
    assert mock.complete_json(asked, CRITIQUE, reply_format.CritiqueReply).data.reviews[1].proposal == "B"
    assert content != MockProvider("bob", seed=3).complete(asked).content


def test_mock_vote_json_adds_a_seeded_confidence_to_its_text_vote():
    mock = MockProvider("alice", seed=1)
    text_vote = reply_reading.parse_vote(mock.complete(LlmRequest(messages=VOTE_PROMPT)).content)
    reply = mock.complete_json(LlmRequest(messages=VOTE_PROMPT), VOTE, reply_format.VoteReply)
    vote = reply_reading.parse_vote_json(reply.content)
    assert vote is not None and text_vote is not None
    assert msgspec.structs.replace(vote, confidence=None) == text_vote
    assert 0.5 <= vote.confidence <= 0.95
    assert reply.content == MockProvider("alice", seed=1).complete_json(LlmRequest(messages=VOTE_PROMPT), VOTE).content


def test_mock_takes_the_round_from_the_schema_without_a_marker_and_ignores_it_in_other_rounds():
    mock = MockProvider("alice")
    bare = LlmRequest(messages=(Message("user", "How sure are you?"),))
    assert reply_reading.parse_vote_json(mock.complete_json(bare, VOTE).content) is not None
    draft = LlmRequest(messages=(Message("user", "Round: draft\nGoal: g"),), response_schema=VOTE)
    assert mock.complete(draft).content == mock.complete(msgspec.structs.replace(draft, response_schema=None)).content
    with pytest.raises(MalformedReplyError):  # a draft is text, whatever was asked
        mock.complete_json(draft, VOTE)


def test_mock_garble_answers_json_requests_with_prose_too():
    with pytest.raises(MalformedReplyError, match="'vote' reply is not JSON") as caught:
        MockProvider("alice", garble="convergence").complete_json(LlmRequest(messages=VOTE_PROMPT), VOTE)
    assert "will not use any particular format" in caught.value.content and not caught.value.retryable


# -- replay and pools --------------------------------------------------------------------------------------


def test_replay_gives_back_recorded_json_deltas():
    asked = LlmRequest(messages=VOTE_PROMPT, response_schema=VOTE)
    recorded = list(MockProvider("alice").stream(asked))
    answer = RecordedAnswer("c1", prompt_key(asked.messages), [c.delta for c in recorded if c.delta],
                            "".join(c.delta for c in recorded), "stop", recorded[-1].usage)
    replay = ReplayProvider("alice", [answer, msgspec.structs.replace(answer, contribution_id="c2")])
    assert replay.supports_json and not ReplayProvider("bob", [], supports_json=False).supports_json
    assert [c.delta for c in replay.stream(asked)] == [c.delta for c in recorded]
    reply = replay.complete_json(LlmRequest(messages=VOTE_PROMPT), VOTE, reply_format.VoteReply)
    assert reply.content == answer.content and replay.remaining() == 0


def test_replay_raises_a_recorded_refusal_as_a_refusal():
    answer = RecordedAnswer("c1", prompt_key(VOTE_PROMPT), [], None, error_kind="refusal", error_message="no")
    with pytest.raises(RefusalError):
        list(ReplayProvider("alice", [answer]).stream(LlmRequest(messages=VOTE_PROMPT)))


class Fake(StructuredOutput):
    """A provider that answers ``reply`` and remembers what it was asked."""

    name = "fake"
    model = "fake-1"

    def __init__(self, reply: str, supports_json: bool = False, finish_reason: str = "stop") -> None:
        self.reply, self.supports_json, self.finish_reason = reply, supports_json, finish_reason
        self.requests: list[LlmRequest] = []

    def complete(self, request: LlmRequest) -> LlmResponse:
        self.requests.append(request)
        return LlmResponse(self.reply, self.finish_reason, Usage(1, 2), self.model)

    def stream(self, request: LlmRequest):
        response = self.complete(request)
        yield StreamChunk(response.content)
        yield StreamChunk("", True, response.finish_reason, response.usage)

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_pool_supports_json_only_when_every_member_does_and_passes_the_schema_on():
    native, other = Fake(VOTE_JSON, supports_json=True), Fake(VOTE_JSON)
    assert PoolProvider("p", members=[("a", native), ("b", MockProvider("m"))]).supports_json
    mixed = PoolProvider("p", members=[("a", native), ("b", other)])
    assert not mixed.supports_json
    reply = mixed.complete_json(PLAIN, VOTE, reply_format.VoteReply)
    assert reply.data.vote == "AGREE"
    sent = native.requests[-1]
    assert sent.response_schema == VOTE  # the member that can use it natively still gets it
    assert sent.messages[-1].content.endswith(schema_instructions(VOTE))


# -- complete_json ------------------------------------------------------------------------------------------


def test_without_native_support_the_schema_goes_into_the_last_user_message():
    fake = Fake("```json\n" + VOTE_JSON + "\n```\n")  # a fence around it is taken off, nothing more
    conversation = LlmRequest(messages=(Message("system", "s"), Message("user", "first"),
                                        Message("assistant", "ok"), Message("user", "Vote now.")))
    reply = fake.complete_json(conversation, VOTE, reply_format.VoteReply)
    sent = fake.requests[0].messages
    assert [m.content for m in sent[:3]] == ["s", "first", "ok"]
    assert sent[3].content == "Vote now.\n\n" + schema_instructions(VOTE)
    assert json.loads(schema_instructions(VOTE).split("\n", 1)[1]) == reply_format.VOTE_SCHEMA
    assert "'vote'" in schema_instructions(VOTE) and "your vote on the plan" in schema_instructions(VOTE)
    assert reply.data.reasons[1] == "clear → plan" and reply.content.startswith("```json")


def test_native_support_sends_the_messages_as_they_are():
    fake = Fake(VOTE_JSON, supports_json=True)
    assert fake.complete_json(PLAIN, VOTE).data["vote"] == "AGREE"
    assert fake.requests[0].messages == PLAIN.messages and fake.requests[0].response_schema == VOTE


@pytest.mark.parametrize("reply, words", [
    ("", "the reply is empty"),
    ("VOTE: AGREE", "malformed"),
    ('{"vote": "MAYBE", "reasons": []}', "$.vote"),
    ('{"vote": "AGREE", "reasons": "all good"}', "$.reasons"),
    ('["AGREE"]', "expected a JSON object, got an array"),
])
def test_replies_of_the_wrong_shape_are_malformed_reply_errors(reply, words):
    kind = reply_format.VoteReply if "$" in words else None
    with pytest.raises(MalformedReplyError) as caught:
        Fake(reply).complete_json(PLAIN, VOTE, kind)
    assert words in str(caught.value) and "'vote'" in str(caught.value) and "fake: " in str(caught.value)
    assert caught.value.content == reply and not caught.value.retryable and caught.value.kind == "malformed_reply"


def test_a_reply_cut_at_max_tokens_says_to_raise_it():
    with pytest.raises(MalformedReplyError, match="raise max_tokens"):
        Fake(VOTE_JSON[:30], finish_reason="length").complete_json(PLAIN, VOTE, reply_format.VoteReply)


@pytest.mark.parametrize("name, schema, words", [
    ("has space", reply_format.VOTE_SCHEMA, "letters, digits"),
    ("x" * 65, reply_format.VOTE_SCHEMA, "1-64"),
    ("list", {"type": "array", "items": {"type": "string"}}, "must describe an object"),
])
def test_bad_schemas_are_refused_before_any_request(name, schema, words):
    with pytest.raises(ProviderConfigError, match=words):
        JsonSchema(name, schema)


def test_cli_and_daemon_ask_in_words_and_every_provider_offers_complete_json():
    assert CliProvider.supports_json is False and DaemonProvider.supports_json is False
    for cls in (AnthropicProvider, OpenAIProvider, OllamaProvider, MockProvider, ReplayProvider, PoolProvider,
                CliProvider, DaemonProvider):
        assert callable(cls.complete_json)
    assert AnthropicProvider.supports_json and OpenAIProvider.supports_json and OllamaProvider.supports_json


@respx.mock
def test_anthropic_structured_stream_without_the_tool_call_answers_its_text():
    # Asked for JSON, the model (or a server that ignores tool_choice) wrote only text: that text is the
    # answer, for the lenient reader, as the docs promise; never an empty answer, nor a failover in a pool.
    respx.post("https://anthropic.test/v1/messages").mock(
        return_value=httpx.Response(200, content=anthropic_stream(["VOTE: AGREE", " — it meets the goal"])))
    answer = collect(anthropic(max_retries=0).stream(REQUEST), "m")
    assert answer.content == "VOTE: AGREE — it meets the goal"


@respx.mock
def test_openai_structured_stream_without_done_ends_on_its_finish_reason_or_is_cut():
    finished = openai_json_stream(VOTE_PIECES).replace(sse(None, "[DONE]"), b"")
    cut = finished.split(b'"finish_reason": "stop"')[0].rsplit(b"data:", 1)[0]
    respx.post("https://api.openai.com/v1/chat/completions").mock(side_effect=[
        httpx.Response(200, content=finished), httpx.Response(200, content=cut)])
    assert collect(openai().stream(REQUEST), "m").content == VOTE_JSON
    with pytest.raises(ProtocolError, match="before \\[DONE\\]"):
        collect(openai(max_retries=0).stream(REQUEST), "m")


def test_a_command_line_tool_gets_the_schema_in_its_prompt(tmp_path):
    write_tool(tmp_path, "fakeai", ASSISTANT)
    tool = CliProvider("fakeai", command=["fakeai", "{prompt}"], env=env_with(tmp_path, FAKE_MODE="args"))
    with pytest.raises(MalformedReplyError, match="got an array") as caught:  # the tool echoes its argv
        tool.complete_json(PLAIN, VOTE)
    (prompt,) = json.loads(caught.value.content)
    assert prompt.endswith(MESSAGES[1].content + "\n\n" + schema_instructions(VOTE))
