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

The rest of an untrusted request is checked here too, field by field, so that every surface
(HTTP, WebSocket, the OpenAI-compatible ``/v1``, MCP) applies one policy through the engine
(``Forge.create_session(trusted=False)``, ``add_human_draft``/``cast_vote``/``cancel`` with
``trusted=False``), whatever else the caller names or leaves out:

- every text it writes has a cap (``TEXT_CAPS``, in characters; lists have a cap on their items),
  and names and titles are one printable line;
- of the settings, it may choose those that change how a session decides (``FREE_SETTINGS``),
  lower those that bound what a session spends — calls, tokens, time, log space — but never ask
  for more than the operator's value (``CAPPED_SETTINGS``), and never set the workspace
  (``OPERATOR_SETTINGS``), whose refusal says nothing about the path it named;
- participants it leaves out are the operator's (a council, or the server's defaults): those are
  used as written, and only the caller's own fields are checked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from forge_actors.core.errors import ConfigError, UntrustedSpecError
from forge_actors.core.events import ParticipantInfo, Persona, SessionSettings
from forge_actors.core.rounds import with_log_limits
from forge_actors.engine.config import (
    DEPRECATED_ITERATIONS_KEY,
    ENGINE_SPEC_OPTIONS,
    ITERATIONS_KEY,
    SETTING_RANGES,
    ForgeConfig,
    ParticipantSpec,
    SettingRange,
    participant_spec,
    recorded_setting_names,
)
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
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,99}")


# -- texts -------------------------------------------------------------------------------------------


class TextCap(msgspec.Struct, frozen=True):
    """The most an untrusted caller may write in one field: ``chars`` per text, ``items`` per list."""

    chars: int
    items: int = 1


#: Every text an untrusted caller writes, at most. A goal or a human's draft is a prompt, not a
#: document; names and titles are labels. docs/security.md has this table.
TEXT_CAPS: Mapping[str, TextCap] = {
    "goal": TextCap(20_000),
    "title": TextCap(200),
    "constraints": TextCap(4_000, items=50),
    "name": TextCap(100),  # a participant's (given, or its spec's model), a persona's, a human's
    "persona.tone": TextCap(500),
    "persona.approach": TextCap(500),
    "persona.traits": TextCap(100, items=20),
    "persona.specialties": TextCap(100, items=20),
    "draft": TextCap(20_000),
    "reasons": TextCap(1_000, items=20),
    "concerns": TextCap(1_000, items=20),
    "reason": TextCap(500),  # why a session is cancelled
}
#: Fields shown as labels (names, titles): one line, without control characters.
LABELS = frozenset({"title", "name"})
#: What a label may not hold: control characters (C0, DEL, C1) and line or paragraph separators. As a
#: pattern of the characters it may hold, for the HTTP API's document: ``LABEL_PATTERN``.
_NOT_IN_A_LABEL = "\x00-\x1f\x7f-\x9f\u2028\u2029"
LABEL_PATTERN = f"^[^{_NOT_IN_A_LABEL}]*$"
_LABEL_BREAKER = re.compile(f"[{_NOT_IN_A_LABEL}]")


def check_untrusted_text(field: str, value: Any) -> None:
    """Refuse (UntrustedSpecError) a text, or a list of texts, over its cap in ``TEXT_CAPS``."""
    cap = TEXT_CAPS[field]
    texts = value if cap.items > 1 else [value]
    if cap.items > 1 and (isinstance(value, str) or len(texts) > cap.items):
        raise UntrustedSpecError(f"{field}: at most {cap.items} items through the API", option=field)
    for text in texts:
        if not isinstance(text, str):
            raise UntrustedSpecError(f"{field}: text is expected, not {type(text).__name__}", option=field)
        if len(text) > cap.chars:
            raise UntrustedSpecError(f"{field}: {len(text):,} characters, over the {cap.chars:,} an API caller may "
                                     "write there", option=field)
        if field in LABELS and _LABEL_BREAKER.search(text):
            raise UntrustedSpecError(f"{field}: one line without control characters or line breaks",
                                     option=field)


def check_untrusted_persona(persona: Persona | None) -> None:
    if persona is None:
        return
    check_untrusted_text("name", persona.name)
    for field in ("tone", "approach", "traits", "specialties"):
        check_untrusted_text(f"persona.{field}", list(getattr(persona, field)) if field in ("traits", "specialties")
                             else getattr(persona, field))


def check_untrusted_human(name: str, *, draft: str | None = None, reasons: Iterable[str] = (),
                          concerns: Iterable[str] = ()) -> None:
    """A human's draft or vote from an untrusted caller: its name and texts within their caps."""
    check_untrusted_text("name", name)
    if draft is not None:
        check_untrusted_text("draft", draft)
    check_untrusted_text("reasons", list(reasons))
    check_untrusted_text("concerns", list(concerns))


# -- settings ----------------------------------------------------------------------------------------


#: Settings an untrusted caller may choose: they change how a session decides, not what it may spend.
FREE_SETTINGS: tuple[str, ...] = ("convergence_threshold", "synthesizer", "seed", "temperature", "min_votes",
                                  "convergence", "similarity_threshold")
#: Settings it may only lower: each bounds what a session spends (paid calls, tokens, time, log
#: space), so the operator's value ([forge] in forge.toml, else the default) is the most it may ask.
CAPPED_SETTINGS: tuple[str, ...] = (
    "max_rounds", "round_timeout_seconds", "max_tokens", "max_retries", "max_tool_calls", "max_tool_seconds",
    "human_wait_seconds", "max_reply_chars", "max_session_bytes", "max_cost_usd", "max_session_tokens",
)
#: Settings only the operator sets: the workspace is a path on the server.
OPERATOR_SETTINGS: tuple[str, ...] = ("workspace",)


def check_untrusted_settings(settings: Mapping[str, Any], tools: str, config: ForgeConfig,
                             operator: SessionSettings | None = None) -> None:
    """Refuse the session settings an untrusted caller may not choose (see ``FREE_SETTINGS``,
    ``CAPPED_SETTINGS``, ``OPERATOR_SETTINGS``), and tools beyond ``[forge.tools] api_tools``.

    ``operator``: the operator's settings for this session (forge.toml's, a council's on top; by
    default forge.toml's), which a capped setting may not exceed. A capped setting must be a number
    (not text a conversion would turn into one); a setting that is not one at all is left to
    ``config.session_settings`` to name."""
    if not isinstance(settings, Mapping):
        raise ConfigError(f"settings are a mapping of setting names to values, not {type(settings).__name__}")
    if "workspace" in settings:  # never the path, nor whether it exists: the same answer for any value
        raise UntrustedSpecError("the workspace cannot be set through the API: the server's [forge] workspace in "
                                 "forge.toml applies (tools read only the folder the operator chose)",
                                 option="workspace")
    asked = recorded_setting_names({k: v for k, v in settings.items() if v is not None}, "")
    for name in CAPPED_SETTINGS:
        value = asked.get(name)
        if value is None:
            continue
        shown = ITERATIONS_KEY if name == DEPRECATED_ITERATIONS_KEY else name
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UntrustedSpecError(f"{shown} is a number (not {type(value).__name__})", option=shown)
        most = _operator_value(operator or config.settings, name)
        if most is not None and value > most:
            raise UntrustedSpecError(f"{shown} may be at most {_number(most)} through the API (this server's own "
                                     f"setting); ask the operator to raise it in forge.toml", option=shown)
    check_untrusted_tools(config, tools, "the session's tools")


def untrusted_setting_ranges(config: ForgeConfig) -> dict[str, SettingRange]:
    """The numeric settings an untrusted caller may set on this server, each with the range it must
    keep: the engine's, its top lowered to the operator's value for a capped setting (what the HTTP
    API's document says; ``check_untrusted_settings`` and the engine's own check enforce it)."""
    ranges: dict[str, SettingRange] = {}
    for name in (*FREE_SETTINGS, *CAPPED_SETTINGS):
        allowed = SETTING_RANGES.get(name)
        if allowed is None:
            continue  # not a number (the synthesizer names a participant)
        most = _operator_value(config.settings, name) if name in CAPPED_SETTINGS else None
        if most is not None and most < allowed.high:
            low = f"more than {allowed.low:g}" if allowed.low_open else f"at least {allowed.low:g}"
            allowed = msgspec.structs.replace(allowed, high=most, high_open=False, says=(
                f"{low} and at most {_number(most)} through the API (this server's own setting)"))
        ranges[name] = allowed
    return ranges


def _number(value: float) -> str:
    """``100,000,000`` and ``0.5``, not ``1e+08``."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _operator_value(operator: SessionSettings, name: str) -> float | None:
    """The operator's value of a capped setting (None: no bound of its own), its log limits as a
    session created now would record them."""
    value = getattr(with_log_limits(operator), name)
    return None if value is None else float(value)


# -- participants and whole requests -------------------------------------------------------------------


def check_untrusted_session(config: ForgeConfig, *, goal: str, title: str | None, constraints: Iterable[str],
                            participants: Iterable[str | ParticipantSpec | Mapping[str, Any]] | None,
                            settings: Mapping[str, Any], tools: str, operator: SessionSettings | None = None) -> None:
    """Every field of a session an untrusted caller asks for, checked before anything is built:
    its texts, its settings (within ``operator``'s, see ``check_untrusted_settings``) and tools, and
    the participants it names (None: the operator's)."""
    check_untrusted_text("goal", goal)
    if title is not None:
        check_untrusted_text("title", title)
    check_untrusted_text("constraints", list(constraints))
    check_untrusted_settings(settings, tools, config, operator)
    for participant in participants or ():
        check_untrusted_participant(config, participant)


def check_untrusted_fork(config: ForgeConfig, *, participants: Iterable[str | ParticipantSpec | Mapping[str, Any]],
                         drop: Iterable[str], humans: Iterable[str], constraints: Iterable[str],
                         settings: Mapping[str, Any]) -> None:
    """What an untrusted caller asks of a fork, checked as a new session's fields are: the participants
    it adds or moves (only what the operator configured), the settings it changes (within forge.toml's),
    its constraints and the names it drops or adds, within their caps. (What the parent already had was
    the operator's or checked when it was given: it is copied as it is.)"""
    check_untrusted_text("constraints", list(constraints))
    check_untrusted_settings(settings, "", config)
    for name in (*drop, *humans):
        check_untrusted_human(name)
    for participant in participants:
        check_untrusted_participant(config, participant)


def untrusted_fork_inheritance(config: ForgeConfig, settings: SessionSettings, participants: Iterable[ParticipantInfo],
                               constraints: Sequence[str], keyed: Iterable[str],
                               server_workspace: str | None) -> SessionSettings:
    """What an untrusted caller's fork may keep of its parent, whose creator may have been trusted: no
    more than the caller could have asked for itself.

    - each capped setting at most the operator's (the operator's where the parent had none, as a new
      session gets it);
    - the workspace only the server's own (``server_workspace``, resolved as a new session's is);
    - tools only those ``api_tools`` allows;
    - the constraints, the parent's and the added together, within their caps;
    - no participant whose key its creator gave inline (``keyed``): a key is the creator's, never an
      API caller's.

    Returns the settings to record; UntrustedSpecError for what it may not keep."""
    operator = with_log_limits(config.settings)
    lowered: dict[str, Any] = {}
    for name in CAPPED_SETTINGS:
        most = getattr(operator, name)
        value = getattr(settings, name)
        if most is not None and (value is None or value > most):
            lowered[name] = most
    if settings.workspace is not None and settings.workspace != server_workspace:
        raise UntrustedSpecError("this session reads a workspace its creator chose, not the server's own: an API "
                                 "caller cannot fork it (fork it with the forge command or the Python API)",
                                 option="workspace")
    check_untrusted_text("constraints", list(constraints))
    for info in participants:
        if info.kind == "ai" and info.tools:
            check_untrusted_tools(config, ",".join(info.tools), f"participant {info.name}")
    for name in keyed:
        raise UntrustedSpecError(f"participant {name} was given its key inline by the session's creator: an API "
                                 "caller cannot fork it with that key (drop it, or fork with the forge command)",
                                 option="participants")
    return msgspec.structs.replace(settings, **lowered) if lowered else settings


def check_untrusted_participant(config: ForgeConfig, participant: str | ParticipantSpec | Mapping[str, Any]) -> None:
    """Refuse (UntrustedSpecError) a participant an untrusted caller may not name; see the module."""
    spec = participant_spec(participant)
    if spec.name is not None:
        check_untrusted_text("name", spec.name)
    check_untrusted_persona(spec.persona)
    if spec.kind == "human":
        return
    check_untrusted_spec(config, spec.spec)  # the spec's model, its name when none is given, is bounded there
    check_untrusted_tools(config, spec.tools, f"participant {spec.name or spec.spec.split('?')[0]}")


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
