"""Embeddings: OpenAI-compatible /embeddings and Ollama's /api/embed, against respx and a loopback server."""

from __future__ import annotations

import json

import httpx
import pytest
import respx
from loopback import LoopbackServer, Reply

from forge_actors.providers import (
    AuthenticationError,
    MockProvider,
    NotFoundError,
    OllamaProvider,
    OpenAIProvider,
    RateLimitError,
    get_provider,
)
from forge_actors.providers.embeddings import OPENAI_EMBEDDING_MODEL, embedder_of
from forge_actors.providers.errors import MalformedEmbeddingsError

SECRET = "sk-test-SECRET-0123456789"
NO_SLEEP = {"sleep": lambda _s: None}


def openai(**kw) -> OpenAIProvider:
    return OpenAIProvider("gpt-4o", api_key=SECRET, **NO_SLEEP, **kw)


def ollama(**kw) -> OllamaProvider:
    return OllamaProvider("llama3.2", base_url="http://ollama.test", **NO_SLEEP, **kw)


def openai_body(*vectors: list[float], model: str = "text-embedding-3-small", reverse: bool = False) -> dict:
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    return {"object": "list", "data": data[::-1] if reverse else data, "model": model,
            "usage": {"prompt_tokens": 7, "total_tokens": 7}}


@respx.mock
def test_openai_embeds_with_its_default_model_in_the_order_asked():
    route = respx.post("https://api.openai.com/v1/embeddings").mock(
        return_value=httpx.Response(200, json=openai_body([1.0, 0.0], [0.0, 1.0], reverse=True)))
    embeddings = openai().embed(["first", "second"])
    sent = json.loads(route.calls.last.request.content)
    assert sent == {"model": OPENAI_EMBEDDING_MODEL, "input": ["first", "second"]}
    assert route.calls.last.request.headers["authorization"] == f"Bearer {SECRET}"
    assert embeddings.vectors == ((1.0, 0.0), (0.0, 1.0))  # by index, not by the order the server listed them
    assert embeddings.model == "text-embedding-3-small" and embeddings.usage.input_tokens == 7


def test_a_compatible_server_embeds_only_with_the_model_its_spec_names():
    assert embedder_of(openai(base_url="http://vllm.test/v1")) is None  # its chat model may not embed
    named = get_provider("openai:qwen?base_url=http://vllm.test/v1&embed_model=bge-small")
    assert embedder_of(named) is named and named.embedding_model == "bge-small"
    assert embedder_of(ollama()) is None and embedder_of(ollama(embed_model="nomic-embed-text")) is not None
    assert embedder_of(MockProvider("alice")) is None  # no embeddings: the session measures lexically


@respx.mock
def test_ollama_embeds_through_api_embed():
    route = respx.post("http://ollama.test/api/embed").mock(return_value=httpx.Response(200, json={
        "model": "nomic-embed-text", "embeddings": [[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]], "prompt_eval_count": 12}))
    embeddings = ollama(embed_model="nomic-embed-text").embed(["a", "b"])
    assert json.loads(route.calls.last.request.content) == {"model": "nomic-embed-text", "input": ["a", "b"]}
    assert embeddings.vectors == ((0.1, 0.2, 0.3), (0.3, 0.2, 0.1)) and embeddings.usage.input_tokens == 12


@respx.mock
@pytest.mark.parametrize(("status", "body", "error"), [
    (401, {"error": {"message": "Incorrect API key", "type": "invalid_request_error"}}, AuthenticationError),
    (404, {"error": {"message": "The model does not exist", "code": "model_not_found"}}, NotFoundError),
    (429, {"error": {"message": "slow down", "type": "rate_limit_exceeded"}}, RateLimitError),
])
def test_openai_embedding_errors_are_typed_as_a_completions(status, body, error):
    respx.post("https://api.openai.com/v1/embeddings").mock(return_value=httpx.Response(status, json=body))
    with pytest.raises(error) as raised:
        openai(max_retries=0).embed(["x"])
    assert SECRET not in str(raised.value)


@respx.mock
def test_ollama_names_the_missing_embedding_model_and_how_to_get_it():
    respx.post("http://ollama.test/api/embed").mock(return_value=httpx.Response(
        404, json={"error": "model \"nomic-embed-text\" not found, try pulling it first"}))
    with pytest.raises(NotFoundError, match="ollama pull"):
        ollama(embed_model="nomic-embed-text").embed(["x"])


@respx.mock
@pytest.mark.parametrize(("body", "says"), [
    (openai_body([1.0, 0.0]), "asked to embed 2 text"),
    (openai_body([1.0, 0.0], [1.0]), "lengths"),
    ({"data": "nope"}, "expected shape"),
])
def test_an_answer_that_is_not_one_vector_per_text_is_malformed_and_not_retried(body, says):
    route = respx.post("https://api.openai.com/v1/embeddings").mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(MalformedEmbeddingsError, match=says) as raised:
        openai().embed(["a", "b"])
    assert raised.value.kind == "malformed_embeddings" and not raised.value.retryable
    assert route.call_count == 1


def test_embeddings_over_a_real_socket_are_retried_after_a_server_error():
    answer = json.dumps(openai_body([0.5, 0.5], model="bge-small")).encode()
    with LoopbackServer(Reply(503, [b'{"error": {"message": "busy"}}'], content_type="application/json"),
                        Reply(200, [answer], content_type="application/json")) as server:
        provider = OpenAIProvider("qwen", base_url=server.url + "/v1", embed_model="bge-small", **NO_SLEEP)
        embeddings = provider.embed(["only"])
    assert embeddings.vectors == ((0.5, 0.5),) and embeddings.model == "bge-small"
    assert [r.path for r in server.requests] == ["/v1/embeddings", "/v1/embeddings"]
