"""Who an untrusted caller may name as a participant: only what the operator configured.

The CLI and the Python API are trusted: their specs may carry commands, base URLs and
keys. A caller over HTTP or WebSocket is not: a spec from it could run a command as the
server's user (``cli:x?command=...``) or send the operator's API key to a host of its
choosing (``anthropic:x?base_url=...``). Such a caller may name exactly:

- ``mock:NAME`` with at most the mock's harmless options (``seed``, ``word_delay`` up to
  MAX_WORD_DELAY seconds, and the test aids ``fail_on`` and ``garble``, which only make
  the mock's own answers fail or lose their format);
- ``anthropic:MODEL``, ``openai:MODEL``, ``ollama:MODEL`` (any kind but the four below) with
  no options at all, when that kind is enabled in the config; the operator's options for it
  (``[forge.providers.KIND]``: base URL, timeout) then apply as for anyone;
- ``pool:NAME`` for a pool under ``[forge.pools.NAME]``, no options;
- ``cli:NAME`` / ``daemon:NAME`` for a tool under ``[forge.cli.NAME]`` / ``[forge.daemon.NAME]``
  (not the built-in presets, which the operator did not choose), no options;
- humans (``kind = "human"``): a name, nothing is run for them.

Any of these may also carry the engine's own options (``replies=``), which say how the
engine asks, not what it runs. Names, personas and the rest of a participant are data. Everything else raises
UntrustedSpecError (a ConfigError: 422 over HTTP) naming the refused option or the
reason, never an option's value. Pure: no I/O, nothing is built here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from forge_actors.core.errors import UntrustedSpecError
from forge_actors.engine.config import ENGINE_SPEC_OPTIONS, ForgeConfig, ParticipantSpec, participant_spec
from forge_actors.providers.registry import parse_spec
from forge_actors.tools import REGISTRY, UnknownToolError, select_tools

#: Mock options an untrusted caller may set: none runs anything or reaches the network.
MOCK_OPTIONS = ("seed", "word_delay", "fail_on", "garble")
#: A mock's pause between words, at most (a longer one would only hold a thread).
MAX_WORD_DELAY = 1.0
#: Kinds that name an operator-configured entry, never a free model.
CONFIGURED_KINDS = ("pool", "cli", "daemon")
#: A model name an untrusted caller may give: model-name characters only (Ollama's
#: ``hf.co/user/model:Q4_K_M`` included), no spaces, quotes or control characters.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}")


def check_untrusted_participant(config: ForgeConfig, participant: str | ParticipantSpec | Mapping[str, Any]) -> None:
    """Refuse (UntrustedSpecError) a participant an untrusted caller may not name; see the module."""
    spec = participant_spec(participant)
    if spec.kind == "human":
        return
    check_untrusted_spec(config, spec.spec)
    check_untrusted_tools(config, spec.tools, f"participant {spec.name or spec.spec.split('?')[0]}")


def check_untrusted_settings(settings: Mapping[str, Any], tools: str, config: ForgeConfig) -> None:
    """Refuse the session settings an untrusted caller may not choose: the workspace (a path on the
    server: the operator's ``[forge] workspace`` applies), and tools beyond ``[forge.tools] api_tools``."""
    if "workspace" in settings:
        raise UntrustedSpecError("the workspace cannot be set through the API: the server's [forge] workspace in "
                                 "forge.toml applies (tools read only the folder the operator chose)",
                                 option="workspace")
    check_untrusted_tools(config, tools, "the session's tools")


def check_untrusted_tools(config: ForgeConfig, selection: str, where: str) -> None:
    """Refuse tools an untrusted caller may not enable: any not in ``api_tools``, and any that writes,
    runs a program or reaches the network, whatever the operator listed."""
    if not selection or not selection.strip():
        return
    try:
        asked = select_tools(selection)
        allowed = set(select_tools(config.tools.api_tools))
    except UnknownToolError as unknown:
        raise UntrustedSpecError(f"{where}: {unknown}", option="tools") from None
    refused = [name for name in asked if name not in allowed or not REGISTRY[name].read_only]
    if refused:
        shown = ", ".join(sorted(name for name in allowed if REGISTRY[name].read_only)) or "none"
        raise UntrustedSpecError(f"{where}: the tool(s) {', '.join(refused)} cannot be enabled through the API; "
                                 f"this server allows {shown} ([forge.tools] api_tools, read-only tools only)",
                                 option="tools")


def check_untrusted_spec(config: ForgeConfig, spec: str) -> None:
    """Refuse (UntrustedSpecError) a provider spec an untrusted caller may not use; see the module.

    An unknown provider or an unreadable spec raises the registry's ProviderConfigError.
    """
    parsed = parse_spec(spec)
    check_untrusted_tools(config, parsed.options.get("tools", ""), f"{parsed.provider}:{parsed.model}")
    kind, name = parsed.provider, parsed.model
    options = {k: v for k, v in parsed.options.items() if k not in ENGINE_SPEC_OPTIONS}
    shown = f"{kind}:{name}"  # never the query: it may hold a key
    if not MODEL_NAME.fullmatch(name):
        raise UntrustedSpecError(f"{kind}: the name {name[:40]!r} is not a model or tool name (letters, digits "
                                 "and . _ : / @ + - only)", spec=kind)
    if kind == "mock":
        refused = sorted(set(options) - set(MOCK_OPTIONS))
        if refused:
            raise UntrustedSpecError(f"{shown}: the option {refused[0]} cannot be set through the API; a mock takes "
                                     f"only {', '.join(MOCK_OPTIONS)} here", spec=shown, option=refused[0])
        _check_word_delay(shown, options.get("word_delay"))
        return
    if options:
        option = sorted(options)[0]
        raise UntrustedSpecError(
            f"{shown}: the option {option} cannot be set through the API: name {kind}:{name} alone and the "
            f"server's configuration applies (only the operator sets connections, commands and keys, in forge.toml)",
            spec=shown, option=option,
        )
    if kind in CONFIGURED_KINDS:
        sections: dict[str, Mapping[str, Any]] = {"pool": config.pools, "cli": config.cli, "daemon": config.daemon}
        configured = sections[kind]
        if name not in configured:
            section = "pools" if kind == "pool" else kind
            known = ", ".join(f"{kind}:{n}" for n in sorted(configured)) or "none"
            raise UntrustedSpecError(f"{shown} is not configured on this server: the API may name only the {kind} "
                                     f"entries under [forge.{section}.NAME] in its forge.toml (configured: {known})",
                                     spec=shown)
        return
    if not config.provider_enabled(kind):
        raise UntrustedSpecError(f"provider {kind} is disabled on this server", spec=shown)


def _check_word_delay(shown: str, value: str | None) -> None:
    if value is None:
        return
    try:
        delay = float(value)
    except ValueError:
        return  # not a number: the registry refuses it, with its own message
    if not math.isfinite(delay) or delay > MAX_WORD_DELAY:
        raise UntrustedSpecError(f"{shown}: word_delay may be at most {MAX_WORD_DELAY} seconds through the API",
                                 spec=shown, option="word_delay")
