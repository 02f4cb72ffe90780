"""Who deliberates, and on what: specs -> providers, for new and for recorded participants.

``Participants`` builds every provider the engine uses (with the config's defaults and the
engine's retry rule), keeps the pools' health and the HTTP clients its providers share
(one per server), keeps in memory the keys a trusted caller gave inline, and answers "who
deliberates when nobody is named" and "is each provider reachable". Provider errors stop
here: they leave as ``ParticipantSetupError``.

A participant's provider is built by whoever needs it (``describe`` to check a new one,
the supervisor for its actor): building one reads its options and key and makes no client
and no connection (an HTTP provider takes the shared client at its first request), so a
check costs microseconds and nothing built for it needs keeping until the session's
actors start, which may be later, in another engine, or never.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from forge_actors.core.events import Event, ParticipantInfo, Persona, RepliesMode, ToolMode
from forge_actors.engine.config import ENGINE_SPEC_OPTIONS, ForgeConfig, ParticipantSpec
from forge_actors.engine.errors import ConfigError, ParticipantKeyMissingError, provider_setup_errors
from forge_actors.engine.replay import REPLAY_PREFIX, replay_provider
from forge_actors.providers.base import Provider
from forge_actors.providers.cli import argv_option
from forge_actors.providers.clients import HttpClients
from forge_actors.providers.errors import MissingApiKeyError
from forge_actors.providers.pool import HealthPolicy, MemberHealth, PoolHealth
from forge_actors.providers.probe import HTTP_PROVIDERS, ProviderProbe, probe, probe_command
from forge_actors.providers.registry import (
    ProviderSpec,
    get_provider,
    known_providers,
    parse_spec,
    redact_spec,
    takes_option,
)
from forge_actors.tools import DEFAULT_TOOLS, UnknownToolError, select_tools

#: The three members a session gets on the default model when nobody is named.
DEFAULT_PERSONAS: tuple[tuple[str, Persona], ...] = (
    ("pragmatist", Persona("The Pragmatist", ("practical", "delivery-minded"), "direct",
                           "smallest thing that works first", ("planning", "trade-offs"))),
    ("skeptic", Persona("The Skeptic", ("careful", "probing"), "dry", "look for what breaks",
                        ("risks", "security", "failure modes"))),
    ("architect", Persona("The Architect", ("structured", "long-term"), "measured", "clear boundaries",
                          ("system design", "interfaces"))),
)

REPLIES_MODES: tuple[RepliesMode, ...] = ("json", "text", "auto")
TOOL_MODES: tuple[ToolMode, ...] = ("native", "text", "off", "auto")


def default_model_spec(model: str) -> str:
    """A spec for the config's ``default_model``: a spec as is, else the provider its name implies."""
    if ":" in model:
        return model
    if model.startswith("claude"):
        return f"anthropic:{model}"
    if model.startswith(("gpt-", "o1", "o3", "o4", "chatgpt")):
        return f"openai:{model}"
    return f"ollama:{model}"


def probe_providers(config: ForgeConfig, names: Iterable[str] | None = None, timeout: float = 3.0,
                    pool_health: Mapping[str, list[MemberHealth]] | None = None) -> list[ProviderProbe]:
    """``Forge.providers`` without a log: every enabled provider kind (or ``names``), then each
    configured command-line tool (is its program on PATH?) and pool (its members' health)."""
    chosen = list(names) if names is not None else [n for n in known_providers() if config.provider_enabled(n)]
    probes = [probe(name, base_url=config.provider_options(name).get("base_url"), timeout=timeout)
              for name in chosen if name not in ("cli", "daemon", "pool")]
    for kind, tools in (("cli", config.cli), ("daemon", config.daemon)):
        if kind in chosen:
            probes += [probe_command(f"{kind}:{name}", argv_option(tool.command)) for name, tool in tools.items()]
    if "pool" in chosen:
        for name, pool in config.pools.items():
            health = {h.member: h for h in (pool_health or {}).get(name, [])}
            labels = [redact_spec(m) for m in pool.members]  # as the pool labels them: never a key
            members = ", ".join(f"{m} ({health[m].state})" if m in health else m for m in labels)
            probes.append(ProviderProbe(f"pool:{name}", None, False, False, "", None, f"{pool.strategy}: {members}"))
    return probes


def tool_choice(parsed: ProviderSpec, spec: ParticipantSpec, default_tools: str) -> tuple[tuple[str, ...], ToolMode]:
    """The tools a participant may call (names; from its spec's ``?tools=``, its ``tools``, else the
    session's default) and how it asked to call them (``?tool_mode=``, else its ``tool_mode``)."""
    selection = parsed.options.get("tools") or spec.tools or default_tools
    mode = parsed.options.get("tool_mode", spec.tool_mode)
    where = f"{parsed.provider}:{parsed.model}"
    if selection.strip() in TOOL_MODES:
        # ``tools=native|text|auto|off`` names only how to call: the session's tools, else the read-only ones.
        mode = selection.strip()
        named_tools = default_tools.strip() and default_tools.strip() not in TOOL_MODES
        selection = default_tools if named_tools else ",".join(DEFAULT_TOOLS)
    if mode not in TOOL_MODES:
        raise ConfigError(f"tool_mode={mode} in {where}: write tool_mode=native, text, off or auto")
    if mode == "off" or not selection.strip():
        return (), "off"
    try:
        return select_tools(selection), mode  # type: ignore[return-value]
    except UnknownToolError as unknown:
        raise ConfigError(f"tools={selection} in {where}: {unknown}") from None


def resolve_tool_mode(names: tuple[str, ...], mode: ToolMode, provider: Provider, where: str) -> ToolMode:
    """``auto`` becomes native when the provider has tool calling, else text; native without it is an error."""
    if not names:
        return "off"
    native = bool(getattr(provider, "supports_tools", False))
    if mode == "auto":
        return "native" if native else "text"
    if mode == "native" and not native:
        raise ConfigError(f"{where} has no tool-calling API: use tool_mode=text (TOOL_CALL: lines) or auto")
    return mode


def replies_option(parsed: ProviderSpec, default: RepliesMode = "auto") -> tuple[ProviderSpec, RepliesMode]:
    """Take the engine's ``replies`` option out of a spec (it is not the provider's): the spec
    the provider is built from, and the mode asked for (the spec's, else ``default``)."""
    options = {k: v for k, v in parsed.options.items() if k not in ENGINE_SPEC_OPTIONS}
    mode = parsed.options.get("replies", default)
    if mode not in REPLIES_MODES:
        raise ConfigError(f"replies={mode} in {parsed.provider}:{parsed.model}: write replies=json, text or auto")
    return ProviderSpec(parsed.provider, parsed.model, options), mode  # type: ignore[return-value]


def resolve_replies(mode: RepliesMode, provider: Provider) -> RepliesMode:
    """``auto`` becomes json when the provider has a structured-output mechanism, else text."""
    if mode == "auto":
        return "json" if getattr(provider, "supports_json", False) else "text"
    return mode


def _replies_with_tools(resolved: RepliesMode, asked: RepliesMode, tools: tuple[str, ...], where: str) -> RepliesMode:
    """A participant with tools answers critiques and votes in text: a structured-output request and
    tool calls do not mix on every API (Anthropic's structured output is itself a forced tool call)."""
    if not tools or resolved == "text":
        return resolved
    if asked == "json":
        raise ConfigError(f"{where}: replies=json cannot be combined with tools; use replies=text or auto")
    return "text"


class InlineSpecs:
    """Specs that carried a key (``anthropic:x?api_key=...``), by session and participant.

    The log records a participant's spec without its key, so rebuilding its provider from
    the log (when its session's actors start again) would lose the key the trusted caller
    gave. This keeps the full spec in memory for the life of the engine, and only here:
    it is never recorded, shown or logged, and its repr holds no spec. A full spec is
    used only while the participant's recorded spec is still the one it was given with.
    """

    def __init__(self) -> None:
        self._specs: dict[tuple[str, str], tuple[str, str]] = {}
        self._lock = threading.Lock()

    def remember(self, session_id: str, participant: str, spec: ProviderSpec) -> None:
        """Keep ``spec`` if it has secrets; else drop what was kept (a switch to a spec without a key)."""
        with self._lock:
            if spec.has_secrets:
                self._specs[(session_id, participant)] = (str(spec.redacted()), str(spec))
            else:
                self._specs.pop((session_id, participant), None)

    def inherit(self, parent_id: str, child_id: str) -> None:
        """A fork's participants keep the keys their parent's were given (a key is never recorded)."""
        with self._lock:
            for (session_id, participant), kept in list(self._specs.items()):
                if session_id == parent_id:
                    self._specs.setdefault((child_id, participant), kept)

    def keyed(self, session_id: str) -> list[str]:
        """The session's participants whose spec carried a key (never the key)."""
        with self._lock:
            return [participant for (session, participant) in self._specs if session == session_id]

    def full_spec(self, session_id: str, participant: str, recorded: str) -> str | None:
        with self._lock:
            kept = self._specs.get((session_id, participant))
        return kept[1] if kept is not None and kept[0] == recorded else None

    def __repr__(self) -> str:
        return f"<{len(self._specs)} participant spec(s) with keys, kept in memory only>"


class Switch:
    """A participant's new provider, built and checked, ready for ``SwitchProvider``."""

    __slots__ = ("parsed", "provider", "replies", "tool_mode")

    def __init__(self, parsed: ProviderSpec, provider: Provider, replies: RepliesMode,
                 tool_mode: ToolMode | None) -> None:
        self.parsed = parsed
        self.provider = provider
        self.replies = replies
        self.tool_mode = tool_mode


class Participants:
    """Builds the providers of one engine's participants. Thread-safe."""

    def __init__(self, config: ForgeConfig, pool_clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._pool_healths: dict[str, PoolHealth] = {}
        self._pool_clock = pool_clock
        self._lock = threading.Lock()
        self.inline_specs = InlineSpecs()
        #: The HTTP clients of this engine's providers, one per server; closed with the engine.
        self.clients = HttpClients()

    # -- new participants ------------------------------------------------------------------------

    def describe(self, specs: list[ParticipantSpec],
                 default_tools: str = "") -> tuple[list[ParticipantInfo], dict[str, ProviderSpec]]:
        """Each participant as recorded (unique names, specs without keys), and the full specs of
        those whose spec carried a key (kept in memory only, by name). Every provider is built
        (no client, no connection) and closed, so that a bad option or a missing key fails now,
        before anything is written."""
        infos: list[ParticipantInfo] = []
        full_specs: dict[str, ProviderSpec] = {}
        taken: set[str] = set()
        for spec in specs:
            parsed: ProviderSpec | None = None
            replies: RepliesMode = "text"
            tools: tuple[str, ...] = ()
            tool_mode: ToolMode = "off"
            if spec.kind == "human":
                if not spec.name:
                    raise ConfigError("a human participant needs a name")
                name, provider, model = spec.name, "", ""
            else:
                with provider_setup_errors():
                    given = parse_spec(spec.spec)
                tools, tool_mode = tool_choice(given, spec, default_tools)
                parsed, replies = replies_option(given, spec.replies)
                self._check_enabled(parsed)
                built = self.build(str(parsed))
                where = spec.name or str(parsed.redacted())
                tool_mode = resolve_tool_mode(tools, tool_mode, built, where)
                replies = _replies_with_tools(resolve_replies(replies, built), replies, tools, where)
                built.close()
                name, provider, model = spec.name or parsed.model, str(parsed.redacted()), parsed.model
            if name in taken:
                if spec.name:
                    raise ConfigError(f"two participants are named {name!r}: give each its own name")
                name = next(f"{name}-{n}" for n in itertools.count(2) if f"{name}-{n}" not in taken)
            taken.add(name)
            if parsed is not None and parsed.has_secrets:
                full_specs[name] = parsed
            infos.append(ParticipantInfo(name, spec.kind, provider, model, spec.persona, replies, tools, tool_mode))
        return infos, full_specs

    def switch(self, spec: str, current: ParticipantInfo) -> Switch:
        """The provider ``current`` is moving to, built now (so a bad spec changes nothing). Its tools
        stay; how it calls them follows the new provider (text when it has no tool-calling API)."""
        with provider_setup_errors():
            parsed, replies = replies_option(parse_spec(spec))
        self._check_enabled(parsed)
        provider = self.build(str(parsed))
        where = f"{current.name} ({parsed.redacted()})"
        try:
            replies = _replies_with_tools(resolve_replies(replies, provider), replies, current.tools, where)
        except ConfigError:
            provider.close()
            raise
        tool_mode: ToolMode | None = None
        if current.tools:
            native = bool(getattr(provider, "supports_tools", False))
            tool_mode = "native" if native and current.tool_mode == "native" else "text"
        return Switch(parsed, provider, replies, tool_mode)

    def _check_enabled(self, parsed: ProviderSpec) -> None:
        if not self.config.provider_enabled(parsed.provider):
            raise ConfigError(f"provider {parsed.provider} is disabled in {self.config.source or 'the config'}: "
                              f"set enabled = true under [forge.providers.{parsed.provider}]")

    def build(self, spec: str) -> Provider:
        """The provider ``spec`` names, with the config's defaults (the spec's own options win)."""
        with provider_setup_errors():
            return self._build(spec)

    def _build(self, spec: str) -> Provider:
        parsed = parse_spec(spec)
        # The engine retries failed attempts itself, so that each retry is a fact in the log;
        # a spec that sets max_retries keeps its own.
        defaults: dict[str, Any] = {"max_retries": 0, **self.config.options_for(parsed.provider, parsed.model)}
        if parsed.provider == "pool":
            defaults["health"] = self._pool_health(parsed.model)
            defaults["member_factory"] = self._build  # members get the config's defaults too
        if takes_option(parsed.provider, "clients"):
            defaults["clients"] = self.clients
        return get_provider(parsed, **{k: v for k, v in defaults.items() if k not in parsed.options})

    # -- recorded participants -------------------------------------------------------------------

    def for_recorded(self, info: ParticipantInfo, session_id: str,
                     events_of: Callable[[str], list[Event]]) -> Provider:
        """The provider of a recorded participant: its recorded spec, with the key it was given
        in this engine merged back when there was one; a re-run's participant answers from the
        recording of its source session (``events_of`` reads it)."""
        if info.provider.startswith(REPLAY_PREFIX):
            return replay_provider(events_of(info.provider[len(REPLAY_PREFIX):]), info.name, info.model)
        full = self.inline_specs.full_spec(session_id, info.name, info.provider)
        with provider_setup_errors():
            try:
                return self._build(full or info.provider)
            except MissingApiKeyError as missing:  # said of the participant: which one cannot be resumed here
                raise ParticipantKeyMissingError.for_participant(info.name, info.provider, missing.env_var) from None

    # -- pools, defaults, probes -----------------------------------------------------------------

    def _pool_health(self, name: str) -> PoolHealth:
        """One health record per pool definition, shared by every participant using it."""
        with self._lock:
            health = self._pool_healths.get(name)
            if health is None:
                settings = self.config.pools.get(name)
                policy = HealthPolicy(settings.degraded_after, settings.unavailable_after, settings.window_seconds,
                                      settings.cooldown_seconds) if settings else HealthPolicy()
                health = self._pool_healths[name] = PoolHealth(policy, self._pool_clock)
            return health

    def pool_health(self) -> dict[str, list[MemberHealth]]:
        """Each configured pool's members (as the pool labels them: never a key) and their health
        as this engine has seen it."""
        return {name: self._pool_health(name).snapshot([redact_spec(m) for m in settings.members])
                for name, settings in self.config.pools.items()}

    def probes(self, names: Iterable[str] | None = None, timeout: float = 3.0) -> list[ProviderProbe]:
        return probe_providers(self.config, names, timeout, self.pool_health())

    def defaults(self, environ: Mapping[str, str] = os.environ) -> tuple[list[ParticipantSpec], str]:
        """Who deliberates when nobody is named: the config's participants; else three members on
        the default model when its key is present; else three offline mocks. With a line saying which."""
        if self.config.participants:
            names = ", ".join(p.name or p.spec for p in self.config.participants)
            return list(self.config.participants), f"participants from {self.config.source}: {names}"
        spec = default_model_spec(self.config.default_model)
        provider = spec.split(":", 1)[0]
        key_env = HTTP_PROVIDERS[provider].api_key_env if provider in HTTP_PROVIDERS else None
        if key_env is None or environ.get(key_env):
            members = [ParticipantSpec(spec=spec, name=name, persona=persona) for name, persona in DEFAULT_PERSONAS]
            return members, f"no participants given: three members on {spec} ({', '.join(n for n, _ in DEFAULT_PERSONAS)})"
        # A small word delay, so that the text streams at a pace a person can watch.
        mocks = [ParticipantSpec(spec=f"mock:{name}?word_delay=0.01") for name in ("alice", "bob", "carol")]
        return mocks, (f"no participants given and {key_env} is not set (default model {spec}): "
                       "using three offline mock participants (alice, bob, carol)")
