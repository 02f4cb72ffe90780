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
from forge_actors.providers.cli import CliProvider, argv_option
from forge_actors.providers.clients import HttpClients
from forge_actors.providers.daemon import DaemonProvider
from forge_actors.providers.errors import ProviderConfigError, UnknownProviderError
from forge_actors.providers.mock import MockProvider
from forge_actors.providers.ollama import OllamaProvider
from forge_actors.providers.openai import OpenAIProvider
from forge_actors.providers.pool import PoolProvider

#: Options every provider accepts (those that do not apply to one are ignored by it).
COMMON_OPTIONS: dict[str, Callable[[Any], Any]] = {"base_url": str, "api_key": str, "timeout": float, "max_retries": int}
#: Options whose values must never be recorded or shown.
SECRET_OPTIONS = frozenset({"api_key"})
#: The option of a pool that holds member specs (which may carry secrets of their own).
MEMBERS_OPTION = "members"


class ProviderSpec(msgspec.Struct, frozen=True):
    provider: str
    model: str
    options: dict[str, str] = {}

    def __str__(self) -> str:
        query = urlencode(sorted(self.options.items()))
        return f"{self.provider}:{self.model}" + (f"?{query}" if query else "")

    def redacted(self) -> ProviderSpec:
        """The spec without secret options, its pool members' included: what may go into the log."""
        return ProviderSpec(self.provider, self.model, {
            key: ",".join(redact_spec(m) for m in _strings(value)) if key == MEMBERS_OPTION else value
            for key, value in self.options.items() if key not in SECRET_OPTIONS
        })

    @property
    def has_secrets(self) -> bool:
        """Whether a secret option is set here or in a member spec (so the spec must never be shown)."""
        return self.redacted() != self


def redact_spec(spec: str) -> str:
    """``spec`` without its secret options (members' included), for labels and displays.

    A spec without secrets comes back unchanged (same text, same option order), so labels
    still match the config's member strings; one that cannot be read loses its whole query.
    """
    try:
        parsed = parse_spec(spec)
    except ProviderConfigError:  # unreadable: drop the whole query, where a secret could be
        return spec.partition("?")[0]
    return str(parsed.redacted()) if parsed.has_secrets else spec


def secret_options(spec: str) -> list[str]:
    """The names of the secret options ``spec`` sets, its members' included (for refusing them)."""
    head, _, query = spec.partition("?")
    found: list[str] = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in SECRET_OPTIONS:
            found.append(key)
        elif key == MEMBERS_OPTION:
            found += [name for member in value.split(",") for name in secret_options(member)]
    return sorted(set(found))


#: An option's type: a class, or a function that converts (and checks) a value.
OptionType = Callable[[Any], Any]


class _Entry(msgspec.Struct, frozen=True):
    factory: Callable[..., Provider]
    options: dict[str, OptionType]


def _entry(factory: Callable[..., Provider], options: Mapping[str, OptionType] | None = None) -> _Entry:
    return _Entry(factory, {**COMMON_OPTIONS, **(options or {})})


def _strings(value: Any) -> list[str]:
    """A list of strings: a list, or one comma-separated string (as in a spec's query)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("1", "true", "yes", "on"):
        return True
    if str(value).lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def _anything(value: Any) -> Any:
    return value


def _pool_factory(model: str, *, members: list[str] | None = None, strategy: str = "failover",
                  health: Any = None, member_factory: Any = None, **_common: Any) -> Provider:
    """``members`` are specs; ``member_factory(spec)`` builds each (default: get_provider)."""
    build = member_factory or (lambda spec: get_provider(spec, max_retries=0))
    specs = members or []
    if any(spec.split(":", 1)[0].strip().lower() == "pool" for spec in specs):
        raise ProviderConfigError(f"pool:{model} lists a pool among its members; pools do not nest")
    # A member's label is what health is keyed by and what ``served_by`` records: never a key.
    return PoolProvider(model, members=[(redact_spec(spec), build(spec)) for spec in specs],  # type: ignore[arg-type]
                        strategy=strategy, health=health)


def _http_clients(value: Any) -> HttpClients:
    """The engine's shared HTTP clients: given by the engine, never written in a spec."""
    if isinstance(value, HttpClients):
        return value
    raise ValueError(value)


#: Options of the providers that speak HTTP, besides the common ones.
HTTP_OPTIONS: dict[str, OptionType] = {"clients": _http_clients}
#: The providers that can embed: with which model (``providers.embeddings``).
EMBEDDING_OPTIONS: dict[str, OptionType] = {"embed_model": str}


def takes_option(provider: str, option: str) -> bool:
    """Whether the provider kind ``provider`` (a known one) takes ``option``."""
    return option in _REGISTRY[provider].options


def _mock_factory(model: str, **options: Any) -> Provider:
    for ignored in COMMON_OPTIONS:
        options.pop(ignored, None)
    return MockProvider(model, **options)


_REGISTRY: dict[str, _Entry] = {
    "anthropic": _entry(AnthropicProvider, HTTP_OPTIONS),
    "openai": _entry(OpenAIProvider, {**HTTP_OPTIONS, **EMBEDDING_OPTIONS}),
    "ollama": _entry(OllamaProvider, {**HTTP_OPTIONS, **EMBEDDING_OPTIONS}),
    "mock": _entry(_mock_factory, {"seed": int, "word_delay": float, "fail_on": str, "garble": str,
                                    "accuracy": float}),
    # The command-line providers take (and ignore) the HTTP-only common options themselves.
    "cli": _entry(CliProvider, {
        "command": argv_option, "history": str, "resume_args": argv_option, "noise": _strings,
        "flush_after": float, "env": dict,
    }),
    "daemon": _entry(DaemonProvider, {
        "command": argv_option, "prompt_marker": str, "end_marker": str, "quiet_seconds": float,
        "startup_seconds": float, "quit_command": str, "noise": _strings, "line_join": str, "flush_after": float,
        "env": dict,
    }),
    "pool": _entry(_pool_factory, {
        "members": _strings, "strategy": str, "health": _anything, "member_factory": _anything,
    }),
}


def register_provider(name: str, factory: Callable[..., Provider], options: Mapping[str, OptionType] | None = None) -> None:
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


def _convert(provider: str, key: str, value: Any, wanted: Callable[[Any], Any]) -> Any:
    if isinstance(wanted, type) and isinstance(value, wanted) and not isinstance(value, bool):
        return value
    try:
        return wanted(value)
    except (TypeError, ValueError):
        shown = "***" if key in SECRET_OPTIONS else repr(value)
        kind = getattr(wanted, "__name__", "value").strip("_")
        raise ProviderConfigError(f"{provider} option {key}={shown} is not a valid {kind}") from None


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
