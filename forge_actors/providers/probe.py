"""What a provider needs and whether it answers: for `forge providers` and health checks.

It never shows a key, only whether its environment variable is set.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping

import httpx
import msgspec

from forge_actors.providers.anthropic import AnthropicProvider
from forge_actors.providers.errors import LlmError
from forge_actors.providers.http import HttpProvider, safe_url
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


def probe(
    provider: str,
    *,
    base_url: str | None = None,
    timeout: float = 3.0,
    environ: Mapping[str, str] = os.environ,
    transport: httpx.BaseTransport | None = None,
) -> ProviderProbe:
    cls = HTTP_PROVIDERS.get(provider)
    if cls is None:
        return ProviderProbe(provider, None, False, False, "", None, "offline: nothing to reach")
    url = (base_url or cls.default_base_url).rstrip("/")
    key_env = cls.api_key_env
    key_present = bool(key_env and environ.get(key_env))
    key_needed = key_env is not None and (provider != "openai" or url == cls.default_base_url)
    try:
        with httpx.Client(timeout=timeout, transport=transport) as client:
            response = client.get(url)
        reachable, detail = True, f"HTTP {response.status_code}"
    except httpx.HTTPError as exc:
        reachable, detail = False, f"{type(exc).__name__}: {exc}".replace(url, safe_url(url))
    models: tuple[str, ...] = ()
    if provider == "ollama" and reachable:
        ollama = OllamaProvider("probe", base_url=url, timeout=timeout, transport=transport)
        try:
            models = tuple(ollama.list_models())
        except LlmError as exc:
            detail = str(exc)
        finally:
            ollama.close()
    return ProviderProbe(provider, key_env, key_needed, key_present, safe_url(url), reachable, detail, models)


def probe_command(label: str, argv: list[str], environ: Mapping[str, str] = os.environ) -> ProviderProbe:
    """A command-line tool: is its program on PATH?"""
    program = argv[0] if argv else ""
    found = shutil.which(program, path=environ.get("PATH", os.defpath)) if program else None
    detail = found or f"{program!r} not found on PATH"
    return ProviderProbe(label, None, False, False, program, found is not None, detail)
