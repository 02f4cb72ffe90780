"""What a provider needs and whether it answers: for `forge providers` and health checks.

It never shows a key, only whether its environment variable is set.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping

import httpx
import msgspec

from forge_actors.providers.anthropic import API_VERSION as ANTHROPIC_API_VERSION
from forge_actors.providers.anthropic import AnthropicProvider
from forge_actors.providers.errors import redact
from forge_actors.providers.http import HttpProvider, error_detail, safe_url
from forge_actors.providers.ollama import OllamaProvider
from forge_actors.providers.openai import OpenAIProvider

HTTP_PROVIDERS: dict[str, type[HttpProvider]] = {
    "anthropic": AnthropicProvider,
    "openai": OpenAIProvider,
    "ollama": OllamaProvider,
}


class ProviderProbe(msgspec.Struct, frozen=True):
    provider: str
    #: The environment variable the key is read from (None: no key is used).
    key_env: str | None
    key_needed: bool
    key_present: bool
    base_url: str
    #: None when there is nothing to reach (offline providers).
    reachable: bool | None
    detail: str = ""
    models: tuple[str, ...] = ()


class _ModelId(msgspec.Struct):
    id: str


class _ModelList(msgspec.Struct):
    """``GET /models`` of OpenAI-compatible servers and Anthropic's ``GET /v1/models``."""

    data: list[_ModelId] = []


class _OllamaModel(msgspec.Struct):
    name: str


class _OllamaTags(msgspec.Struct):
    models: list[_OllamaModel] = []


def _model_ids(body: bytes) -> tuple[str, ...]:
    return tuple(model.id for model in msgspec.json.decode(body, type=_ModelList).data)


def _ollama_names(body: bytes) -> tuple[str, ...]:
    return tuple(model.name for model in msgspec.json.decode(body, type=_OllamaTags).models)


def _openai_headers(key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if key else {}


def _anthropic_headers(key: str | None) -> dict[str, str]:
    return {"anthropic-version": ANTHROPIC_API_VERSION, **({"x-api-key": key} if key else {})}


class _Endpoint(msgspec.Struct, frozen=True):
    """Where a provider kind lists its models, how to send the key, how to read the list."""

    path: str
    headers: Callable[[str | None], dict[str, str]]
    models: Callable[[bytes], tuple[str, ...]]


_ENDPOINTS: dict[str, _Endpoint] = {
    "openai": _Endpoint("/models", _openai_headers, _model_ids),
    "anthropic": _Endpoint("/v1/models", _anthropic_headers, _model_ids),
    "ollama": _Endpoint("/api/tags", lambda _key: {}, _ollama_names),
}


def probe(
    provider: str,
    *,
    base_url: str | None = None,
    timeout: float = 3.0,
    environ: Mapping[str, str] = os.environ,
    transport: httpx.BaseTransport | None = None,
) -> ProviderProbe:
    """Is ``provider`` reachable, and which models does it list? One GET of its model list.

    A 401/403 there still means reachable (the key was rejected). The key goes in the
    request's headers only: never in ``detail``, which is redacted of it besides.
    """
    cls = HTTP_PROVIDERS.get(provider)
    if cls is None:
        return ProviderProbe(provider, None, False, False, "", None, "offline: nothing to reach")
    url = (base_url or cls.default_base_url).rstrip("/")
    key_env = cls.api_key_env
    key = (environ.get(key_env) or None) if key_env else None
    key_needed = key_env is not None and (provider != "openai" or url == cls.default_base_url)
    endpoint = _ENDPOINTS[provider]
    reachable, detail, models = _get_models(url, endpoint, key, timeout, transport)
    return ProviderProbe(provider, key_env, key_needed, key is not None, safe_url(url), reachable,
                         redact(detail, [key]), models)


def _get_models(url: str, endpoint: _Endpoint, key: str | None, timeout: float,
                transport: httpx.BaseTransport | None) -> tuple[bool, str, tuple[str, ...]]:
    """(reachable, detail, models) from one GET of ``endpoint``."""
    try:
        with httpx.Client(timeout=timeout, transport=transport) as client:
            response = client.get(url + endpoint.path, headers=endpoint.headers(key))
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__}: {exc}".replace(url, safe_url(url)), ()
    status = response.status_code
    if status in (401, 403):
        said = "no key was sent" if key is None else "the key was rejected"
        return True, f"reachable, but {said} (HTTP {status} from {endpoint.path})", ()
    if status >= 400:
        message = error_detail(response.content).message
        return True, f"HTTP {status} from {endpoint.path} ({message[:200]})", ()
    try:
        models = endpoint.models(response.content)
    except msgspec.DecodeError:  # the probe's answer says so; the list is only a courtesy
        return True, f"HTTP {status}; {endpoint.path} did not return the usual model list", ()
    return True, f"HTTP {status}", models


def probe_command(label: str, argv: list[str], environ: Mapping[str, str] = os.environ) -> ProviderProbe:
    """A command-line tool: is its program on PATH?"""
    program = argv[0] if argv else ""
    found = shutil.which(program, path=environ.get("PATH", os.defpath)) if program else None
    detail = found or f"{program!r} not found on PATH"
    return ProviderProbe(label, None, False, False, program, found is not None, detail)
