"""Provider specs: ``PROVIDER:MODEL?option=value&...`` -> a Provider.

``ollama:llama3.2?base_url=http://gpu-box:11434&timeout=600`` or
``mock:alice?seed=7&word_delay=0.05`` describe a participant fully on one command
line. Keyword options to ``get_provider`` override those in the spec.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

import msgspec

from forge_actors.providers.anthropic import AnthropicProvider
from forge_actors.providers.base import Provider
from forge_actors.providers.errors import ProviderConfigError, UnknownProviderError
from forge_actors.providers.mock import MockProvider
from forge_actors.providers.ollama import OllamaProvider
from forge_actors.providers.openai import OpenAIProvider

#: Options every provider accepts (those that do not apply to one are ignored by it).
COMMON_OPTIONS: dict[str, type] = {"base_url": str, "api_key": str, "timeout": float, "max_retries": int}
#: Options whose values must never be recorded or shown.
SECRET_OPTIONS = frozenset({"api_key"})


class ProviderSpec(msgspec.Struct, frozen=True):
    provider: str
    model: str
    options: dict[str, str] = {}

    def __str__(self) -> str:
        query = urlencode(sorted(self.options.items()))
        return f"{self.provider}:{self.model}" + (f"?{query}" if query else "")

    def redacted(self) -> ProviderSpec:
        """The spec without secret options: what may go into the log."""
        return ProviderSpec(self.provider, self.model, {k: v for k, v in self.options.items() if k not in SECRET_OPTIONS})


class _Entry(msgspec.Struct, frozen=True):
    factory: Callable[..., Provider]
    options: dict[str, type]


def _entry(factory: Callable[..., Provider], options: Mapping[str, type] | None = None) -> _Entry:
    return _Entry(factory, {**COMMON_OPTIONS, **(options or {})})


def _mock_factory(model: str, **options: Any) -> Provider:
    for ignored in COMMON_OPTIONS:
        options.pop(ignored, None)
    return MockProvider(model, **options)


_REGISTRY: dict[str, _Entry] = {
    "anthropic": _entry(AnthropicProvider),
    "openai": _entry(OpenAIProvider),
    "ollama": _entry(OllamaProvider),
    "mock": _entry(_mock_factory, {"seed": int, "word_delay": float, "fail_on": str, "garble": str}),
}


def register_provider(name: str, factory: Callable[..., Provider], options: Mapping[str, type] | None = None) -> None:
    """Add a provider kind. ``factory(model, **options)`` builds one; ``options`` maps names to types."""
    _REGISTRY[name] = _entry(factory, options)


def known_providers() -> list[str]:
    return sorted(_REGISTRY)


def parse_spec(spec: str) -> ProviderSpec:
    """Split ``PROVIDER:MODEL?k=v&...``; the provider must be known."""
    if not isinstance(spec, str) or not spec.strip():
        raise ProviderConfigError("a provider spec is a non-empty string like anthropic:claude-sonnet-4-20250514")
    head, _, query = spec.strip().partition("?")
    provider, colon, model = head.partition(":")
    provider = provider.strip().lower()
    if provider not in _REGISTRY:
        raise UnknownProviderError(provider, _REGISTRY)
    if not colon or not model.strip():
        raise ProviderConfigError(f"provider spec {head!r} names no model: write {provider}:MODEL")
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise ProviderConfigError(f"cannot read the options in {spec.split('?')[0]}?...: write key=value&key=value") from None
    return ProviderSpec(provider, model.strip(), options)


def _convert(provider: str, key: str, value: Any, wanted: type) -> Any:
    if isinstance(value, wanted) and not isinstance(value, bool):
        return value
    try:
        return wanted(value)
    except (TypeError, ValueError):
        shown = "***" if key in SECRET_OPTIONS else repr(value)
        raise ProviderConfigError(f"{provider} option {key}={shown} is not a valid {wanted.__name__}") from None


def provider_options(spec: ProviderSpec, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The spec's options merged with ``overrides``, checked and converted to their types."""
    entry = _REGISTRY[spec.provider]
    merged: dict[str, Any] = {**spec.options, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    unknown = sorted(set(merged) - set(entry.options))
    if unknown:
        raise ProviderConfigError(
            f"{spec.provider} does not take the option(s) {', '.join(unknown)}; it takes {', '.join(sorted(entry.options))}"
        )
    return {key: _convert(spec.provider, key, value, entry.options[key]) for key, value in merged.items()}


def get_provider(spec: str | ProviderSpec, **options: Any) -> Provider:
    """Build the provider a spec names. Raises ProviderConfigError (unknown provider, bad option)
    or MissingApiKeyError before any request is made."""
    parsed = spec if isinstance(spec, ProviderSpec) else parse_spec(spec)
    entry = _REGISTRY[parsed.provider]
    return entry.factory(parsed.model, **provider_options(parsed, options))
