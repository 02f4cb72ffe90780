"""The OpenAI-compatible endpoint, through the official ``openai`` SDK and raw SSE, on a real server thread."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest

from forge_actors.engine import Forge, load_config
from forge_actors.surfaces.server.openai_compat import ChatMessage, ContentPart, chat_goal, pieces
from forge_actors.surfaces.server.runner import ServerThread

TOKEN = "test-token-123"
CONFIG = """
[[forge.participants]]
spec = "mock:alice?word_delay=0"
[[forge.participants]]
spec = "mock:bob?word_delay=0"

[forge.councils.pair]
description = "two mocks"
participants = ["mock:left?word_delay=0", "mock:right?word_delay=0"]
settings = { max_iterations = 1, seed = 3 }

[forge.councils.forge]
participants = ["mock:a?word_delay=0", "mock:b?word_delay=0"]
settings = { max_iterations = 1 }
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder: Path = tmp_path_factory.mktemp("openai")
    (folder / "forge.toml").write_text(CONFIG)
    forge = Forge(str(folder / "forge.db"), load_config(str(folder / "forge.toml"), {}))
    with ServerThread(forge, token=TOKEN) as server:
        yield server, forge
    forge.close()


@pytest.fixture(scope="module")
def client(served):
    server, _ = served
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=TOKEN, max_retries=0, timeout=60) as sdk:
        yield sdk


def session_of(completion_id: str) -> str:
    assert completion_id.startswith("chatcmpl-forge-")
    return completion_id.removeprefix("chatcmpl-forge-")


def test_models_list_the_default_council_and_each_configured_one(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["forge", "forge/forge", "forge/pair"]
    assert all(m.object == "model" and m.owned_by == "forge" and m.created > 0 for m in models.data)


def test_a_completion_answers_with_the_recorded_sessions_final_synthesis(served, client):
    _, forge = served
    raw = client.chat.completions.with_raw_response.create(
        model="forge/pair",
        messages=[{"role": "system", "content": "Answer in one paragraph."},
                  {"role": "user", "content": "Which cache?"},
                  {"role": "assistant", "content": "Redis or memcached."},
                  {"role": "user", "content": "Pick one for sessions."}])
    completion = raw.parse()
    session_id = raw.headers["x-forge-session"]
    assert session_of(completion.id) == session_id
    state = forge.state(session_id)
    assert state.ended and state.synthesis is not None
    assert completion.choices[0].message.content == state.synthesis.content
    assert completion.choices[0].message.role == "assistant" and completion.choices[0].finish_reason == "stop"
    # The conversation is in the goal, the system message is a constraint, the council's participants ran.
    assert state.goal.endswith("Pick one for sessions.") and "assistant: Redis or memcached." in state.goal
    assert state.constraints == ("Answer in one paragraph.",)
    assert sorted(state.participants) == ["left", "right"]
    total = forge.usage(session_id).total
    assert completion.usage.prompt_tokens == total.input_tokens > 0
    assert completion.usage.completion_tokens == total.output_tokens > 0
    assert completion.usage.total_tokens == total.input_tokens + total.output_tokens


def test_the_model_forge_is_the_council_named_forge_when_configured(served, client):
    _, forge = served
    completion = client.chat.completions.create(model="forge", messages=[{"role": "user", "content": "Hi?"}])
    assert sorted(forge.state(session_of(completion.id)).participants) == ["a", "b"]


def test_a_stream_shows_the_debate_as_reasoning_and_the_synthesis_as_content(served, client):
    _, forge = served
    stream = client.chat.completions.create(model="forge/pair", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "Name a colour."}])
    chunks = list(stream)
    session_id = session_of(chunks[0].id)
    assert chunks[0].choices[0].delta.role == "assistant"
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    state = forge.state(session_id)
    assert content == state.synthesis.content
    assert "draft" in reasoning and "critique" in reasoning and "votes" in reasoning and "finished" in reasoning
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == sum(
        (forge.usage(session_id).total.input_tokens, forge.usage(session_id).total.output_tokens))


def test_an_unknown_model_is_a_404_model_not_found(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    error = caught.value.body
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert error["type"] == "invalid_request_error" and "forge/pair" in error["message"]


def test_a_missing_or_wrong_token_is_a_401_in_openais_shape(served):
    server, _ = served
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0) as sdk:
        with pytest.raises(openai.AuthenticationError) as caught:
            sdk.models.list()
    assert caught.value.body["code"] == "invalid_api_key"
    response = httpx.get(f"{server.url}/v1/models")
    assert response.status_code == 401 and response.json()["error"]["type"] == "invalid_request_error"


def test_a_bad_body_is_a_400_in_openais_shape(served):
    server, _ = served
    auth = {"authorization": f"Bearer {TOKEN}"}
    for body in ({"model": "forge"}, {"model": "forge", "messages": [{"role": "assistant", "content": "x"}]}):
        response = httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=auth)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["type"] == "invalid_request_error"


def test_raw_sse_is_data_lines_of_chunks_ending_with_done(served):
    server, forge = served
    frames: list[str] = []
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", timeout=60,
                      headers={"authorization": f"Bearer {TOKEN}"},
                      json={"model": "forge/pair", "stream": True,
                            "messages": [{"role": "user", "content": "Name a fruit."}]}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        session_id = response.headers["x-forge-session"]
        frames = [line for line in response.iter_lines() if line]
    assert frames[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in frames[:-1] if not line.startswith(":")]
    assert all(line.startswith(("data: ", ":")) for line in frames)
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == f"chatcmpl-forge-{session_id}" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and "usage" not in chunks[-1]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert content == forge.state(session_id).synthesis.content


def test_the_goal_is_the_last_user_message_with_the_conversation_before_it():
    goal, constraints = chat_goal([ChatMessage(role="system", content="Be brief."),
                                   ChatMessage(role="user", content=[ContentPart(type="text", text="Q1")]),
                                   ChatMessage(role="assistant", content="A1"),
                                   ChatMessage(role="user", content="Q2")])
    assert constraints == ["Be brief."]
    assert goal.startswith("Conversation so far:") and "user: Q1" in goal and "assistant: A1" in goal
    assert goal.endswith("Q2")
    assert chat_goal([ChatMessage(role="user", content="Only")]) == ("Only", [])


def test_pieces_join_to_the_text():
    text = "word " * 100 + "x" * 300 + "\nend"
    assert "".join(pieces(text)) == text and len(pieces(text)) > 3


def test_without_a_council_named_forge_the_model_forge_is_the_servers_default_participants(tmp_path):
    toml = '[forge]\nmax_iterations = 1\n[[forge.participants]]\nspec = "mock:solo?word_delay=0"\n'
    (tmp_path / "forge.toml").write_text(toml)
    with Forge(str(tmp_path / "forge.db"), load_config(str(tmp_path / "forge.toml"), {})) as forge, \
            ServerThread(forge) as server:
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=60) as sdk:
            assert [m.id for m in sdk.models.list().data] == ["forge"]
            completion = sdk.chat.completions.create(model="forge", messages=[{"role": "user", "content": "Hi?"}])
        state = forge.state(session_of(completion.id))
        assert list(state.participants) == ["solo"]  # the operator's [[forge.participants]]
        assert completion.choices[0].message.content == state.synthesis.content


def test_a_client_that_hangs_up_mid_stream_interrupts_the_session(tmp_path):
    import time

    slow = '[forge.councils.slow]\nparticipants = ["mock:s?word_delay=0.02", "mock:t?word_delay=0.02"]\n'
    (tmp_path / "forge.toml").write_text(slow)
    with Forge(str(tmp_path / "forge.db"), load_config(str(tmp_path / "forge.toml"), {})) as forge, \
            ServerThread(forge) as server:
        with httpx.stream("POST", f"{server.url}/v1/chat/completions", timeout=60,
                          json={"model": "forge/slow", "stream": True,
                                "messages": [{"role": "user", "content": "Take your time."}]}) as response:
            session_id = response.headers["x-forge-session"]
            for line in response.iter_lines():
                if "reasoning_content" in line:
                    break  # the debate has begun: hang up
        deadline = time.monotonic() + 30  # a bound on waiting, not an assertion on speed
        while forge.state(session_id).status != "interrupted" and time.monotonic() < deadline:
            time.sleep(0.05)
        state = forge.state(session_id)
        assert state.status == "interrupted" and "went away" in (state.end_reason or "")


def test_a_council_that_cannot_run_here_is_a_422_in_openais_shape(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    (tmp_path / "forge.toml").write_text('[forge.councils.cloud]\nparticipants = ["anthropic:claude-x"]\n')
    with Forge(str(tmp_path / "forge.db"), load_config(str(tmp_path / "forge.toml"), {})) as forge, \
            ServerThread(forge) as server:
        response = httpx.post(f"{server.url}/v1/chat/completions", timeout=30,
                              json={"model": "forge/cloud", "messages": [{"role": "user", "content": "Hi"}]})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "config_error" and "ANTHROPIC_API_KEY" in error["message"]
        assert forge.sessions() == []  # refused before anything was written


def test_an_unexpected_failure_is_a_500_naming_an_incident_the_log_holds(served, monkeypatch, caplog):
    server, forge = served

    def broken(session_id):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(forge, "usage", broken)
    with caplog.at_level("ERROR", logger="forge_actors.surfaces.server.openai_compat"):
        response = httpx.post(f"{server.url}/v1/chat/completions", timeout=60,
                              headers={"authorization": f"Bearer {TOKEN}"},
                              json={"model": "forge/pair", "messages": [{"role": "user", "content": "Hi"}]})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "server_error" and "secret" not in error["message"]
    incident = error["message"].split("incident ")[1].split(":")[0]
    assert any(incident in r.getMessage() and r.exc_info for r in caplog.records)


def test_errors_written_below_the_endpoint_are_in_openais_shape_too(served, client):
    server, _ = served
    auth = {"authorization": f"Bearer {TOKEN}"}
    with pytest.raises(openai.NotFoundError) as missing:  # no such route: the router's 404, reshaped
        client.get("/embeddings", cast_to=object)
    assert "message" in missing.value.body
    wrong_type = httpx.post(f"{server.url}/v1/chat/completions", content=b"model=forge", headers={
        **auth, "content-type": "text/plain"})  # the browser guard's 415
    assert wrong_type.status_code == 415
    error = wrong_type.json()["error"]
    assert isinstance(error, dict) and error["type"] == "invalid_request_error" and "JSON" in error["message"]
    assert int(wrong_type.headers["content-length"]) == len(wrong_type.content)
    # Outside /v1 the API keeps its own shape.
    assert isinstance(httpx.get(f"{server.url}/api/v1/forge/nope", headers=auth).json()["error"], str)


def test_a_client_that_hangs_up_on_a_non_streamed_request_interrupts_the_session(tmp_path):
    from support import wait_until

    slow = '[forge.councils.slow]\nparticipants = ["mock:s?word_delay=0.05", "mock:t?word_delay=0.05"]\n'
    (tmp_path / "forge.toml").write_text(slow)
    with Forge(str(tmp_path / "forge.db"), load_config(str(tmp_path / "forge.toml"), {})) as forge, \
            ServerThread(forge) as server:
        with pytest.raises(httpx.ReadTimeout):  # the client gives up waiting for the whole deliberation
            httpx.post(f"{server.url}/v1/chat/completions", timeout=1.0,
                       json={"model": "forge/slow", "messages": [{"role": "user", "content": "Take your time."}]})
        assert wait_until(lambda: forge.sessions() and forge.state(forge.sessions()[-1]).status == "interrupted")
        assert "went away" in forge.state(forge.sessions()[-1]).end_reason
