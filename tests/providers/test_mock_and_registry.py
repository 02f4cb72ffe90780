"""The offline mock and provider specs."""

from __future__ import annotations

import time

import pytest

from forge_actors.core import reply_reading
from forge_actors.providers import (
    AnthropicProvider,
    LlmRequest,
    Message,
    MissingApiKeyError,
    MockProvider,
    OllamaProvider,
    ProviderConfigError,
    ServerError,
    UnknownProviderError,
    collect,
    get_provider,
    parse_spec,
)


def request(round_kind: str, extra: str = "", goal: str = "Design a TODO app API") -> LlmRequest:
    return LlmRequest(messages=(Message("system", "You are a member."),
                                Message("user", f"Round: {round_kind}\nIteration: 1\nGoal: {goal}\n{extra}")))


def test_mock_is_deterministic_per_name_seed_and_request():
    a1 = get_provider("mock:alice?seed=7").complete(request("draft")).content
    a2 = get_provider("mock:alice?seed=7").complete(request("draft")).content
    b = get_provider("mock:bob?seed=7").complete(request("draft")).content
    a3 = get_provider("mock:alice?seed=8").complete(request("draft")).content
    assert a1 == a2 and a1 != b and a1 != a3
    assert "TODO" in a1 and "Risks and mitigations" in a1  # topic-aware, structured


def test_mock_stream_equals_complete_word_by_word_with_usage():
    provider = MockProvider("carol")
    chunks = list(provider.stream(request("synthesis")))
    assert "".join(c.delta for c in chunks) == provider.complete(request("synthesis")).content
    assert len(chunks) > 20 and chunks[-1].is_complete and chunks[-1].usage.output_tokens == len(chunks) - 1
    assert chunks[-1].usage.input_tokens > 0


def test_mock_answers_in_the_formats_the_parsers_read():
    provider = MockProvider("dave", seed=3)
    critique = provider.complete(request("critique", "### Proposal A\nx\n### Proposal B\ny\n")).content
    parsed = reply_reading.parse_critiques(critique, ["A", "B"])
    assert all(p.score is not None and 1 <= p.score <= 100 and p.strengths for p in parsed.values())
    vote = reply_reading.parse_vote(provider.complete(request("convergence")).content)
    assert vote is not None and vote.vote in ("AGREE", "DISAGREE")


def test_mock_word_delay_and_early_close():
    provider = get_provider("mock:erin?word_delay=0.02")
    chunks = provider.stream(request("draft"))
    start = time.monotonic()
    for _ in range(5):
        next(chunks)
    assert time.monotonic() - start >= 0.08
    chunks.close()


def test_mock_failure_and_garble_options():
    with pytest.raises(ServerError, match="told to fail"):
        collect(get_provider("mock:x?fail_on=critique").stream(request("critique")), "m")
    assert get_provider("mock:x?fail_on=critique").complete(request("draft")).content
    garbled = get_provider("mock:x?garble=convergence").complete(request("convergence")).content
    assert reply_reading.parse_vote(garbled) is None


def test_specs_and_options():
    spec = parse_spec("ollama:llama3.2?base_url=http://gpu-box:11434&timeout=600")
    assert (spec.provider, spec.model, spec.options) == ("ollama", "llama3.2", {"base_url": "http://gpu-box:11434", "timeout": "600"})
    provider = get_provider(spec)
    assert isinstance(provider, OllamaProvider) and provider.timeout == 600.0 and provider.base_url == "http://gpu-box:11434"
    assert get_provider("ollama:llama3.2?timeout=600", timeout=5).timeout == 5.0  # keyword wins
    mock = get_provider("mock:alice?seed=7&word_delay=0.05")
    assert isinstance(mock, MockProvider) and (mock.seed, mock.word_delay) == (7, 0.05)
    assert isinstance(get_provider("mock:alice", base_url="x", api_key="y", timeout=1, max_retries=0), MockProvider)
    key_spec = parse_spec("anthropic:claude-x?api_key=sk-very-secret&timeout=3")
    assert "sk-very-secret" not in str(key_spec.redacted()) and "timeout=3" in str(key_spec.redacted())


@pytest.mark.parametrize("spec, error, words", [
    ("gemini:pro", UnknownProviderError, "known providers: anthropic, cli, daemon, mock, ollama, openai, pool"),
    ("anthropic", ProviderConfigError, "names no model"),
    ("mock:a?colour=red", ProviderConfigError, "does not take the option(s) colour"),
    ("ollama:x?timeout=soon", ProviderConfigError, "timeout='soon' is not a valid float"),
    ("", ProviderConfigError, "non-empty"),
])
def test_bad_specs_are_typed_errors(spec, error, words):
    with pytest.raises(error) as info:
        get_provider(spec)
    assert words in str(info.value)


def test_missing_key_and_secret_option_values_are_never_shown(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(MissingApiKeyError, match="ANTHROPIC_API_KEY"):
        get_provider("anthropic:claude-sonnet-4-20250514")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-env-key-123")
    provider = get_provider("anthropic:claude-sonnet-4-20250514")
    assert isinstance(provider, AnthropicProvider) and "sk-env-key-123" not in repr(provider)
    with pytest.raises(ProviderConfigError) as info:
        get_provider("anthropic:x?api_key=sk-zzz-secret&max_retries=lots")
    assert "sk-zzz-secret" not in str(info.value)
