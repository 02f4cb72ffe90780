"""Configuration: ``forge.toml`` -> ForgeConfig, checked key by key.

::

    [forge]
    database = "forge.db"          # the event log: a file (relative to this file) or postgresql://USER@HOST/DB
    default_model = "claude-sonnet-4-20250514"
    max_participants = 32          # per session, whoever creates it (and humans who join)
    max_iterations = 10           # Synthesis -> Convergence passes at most (formerly max_rounds)
    convergence_threshold = 0.8
    round_timeout_seconds = 300

    [forge.providers.ollama]
    enabled = true
    base_url = "http://localhost:11434"
    timeout = 600

    [[forge.participants]]
    spec = "anthropic:claude-sonnet-4-20250514"
    name = "claude"
    persona = { name = "The Skeptic", traits = ["careful"], tone = "dry" }

    [forge.councils.review]        # a named council: `deliberate(council="review")` over MCP, `forge/review`
    description = "two critics and a judge"
    participants = ["pool:fast", { spec = "ollama:llama3.2", name = "local" }]
    settings = { max_iterations = 2, convergence_threshold = 0.7 }
    tools = "file,search"

    [forge.pricing."claude-sonnet-4-20250514"]
    input_per_mtok = 3.0
    output_per_mtok = 15.0

Found via ``--config``, else ``$FORGE_CONFIG``, else ``./forge.toml``, else the
defaults. An unknown key, a wrong type or an out-of-range value is a ConfigError that
names the key and the file. API keys are read from the environment only: a key in
the file (a provider section, a participant's or the default model's spec, a pool
member's spec) is an error, so that config files can be shared and committed safely; so is
a password in ``database`` (give it in ``PGPASSWORD`` or ``~/.pgpass``, or the whole URL in
``$FORGE_DB``). ``database`` is the log when neither ``--db`` nor ``$FORGE_DB`` names one
(``engine.logs.choose_log``).
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from forge_actors.core.errors import ConfigError
from forge_actors.core.events import ParticipantKind, Persona, RepliesMode, SessionSettings, ToolMode
from forge_actors.core.pricing import Price
from forge_actors.engine.logs import has_password, is_database_url, printable_target

logger = logging.getLogger(__name__)

#: The one word for the bounded loop: an *iteration* is one Synthesis -> Convergence pass, a *round*
#: one step (draft, critique, synthesis or convergence). The setting was first named max_rounds, and
#: is recorded under that name (SessionSettings.max_rounds); it is written max_iterations everywhere
#: a person writes it, and the old name is still read, with a deprecation note.
ITERATIONS_KEY = "max_iterations"
DEPRECATED_ITERATIONS_KEY = "max_rounds"
#: The settings a person writes (forge.toml, create_session, the HTTP API's config).
SETTING_NAMES: tuple[str, ...] = tuple(
    ITERATIONS_KEY if name == DEPRECATED_ITERATIONS_KEY else name for name in SessionSettings.__struct_fields__
)


_DEPRECATION_SAID: set[str] = set()


def recorded_setting_names(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``values`` with ``max_iterations`` as the recorded ``max_rounds``; the old name is read with a
    deprecation note, and both at once (with different values) are a ConfigError."""
    values = dict(values)
    if DEPRECATED_ITERATIONS_KEY in values:
        if ITERATIONS_KEY in values and values[ITERATIONS_KEY] != values[DEPRECATED_ITERATIONS_KEY]:
            raise ConfigError(f"{where + ': ' if where else ''}max_iterations and max_rounds (its old name) "
                              "disagree: keep max_iterations")
        if where not in _DEPRECATION_SAID:  # once per process and place: a service creating sessions says it once
            _DEPRECATION_SAID.add(where)
            logger.warning("%s: max_rounds is deprecated, write max_iterations (the same number: how many "
                           "Synthesis -> Convergence iterations a session may run)", where or "settings")
    if ITERATIONS_KEY in values:
        values[DEPRECATED_ITERATIONS_KEY] = values.pop(ITERATIONS_KEY)
    count = values.get(DEPRECATED_ITERATIONS_KEY)
    if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
        raise ConfigError(f"{where + '.' if where else ''}max_iterations: a whole number of iterations, "
                          f"not {count!r}")
    return values
#: Options of a participant's spec that the engine reads itself (the provider never sees them).
ENGINE_SPEC_OPTIONS: tuple[str, ...] = ("replies", "tools", "tool_mode")
DEFAULT_MODEL = "claude-sonnet-4-20250514"
#: Participants a session may have unless ``[forge] max_participants`` says otherwise.
DEFAULT_MAX_PARTICIPANTS = 32
#: A quorum larger than this could never be met by any session.
MAX_MIN_VOTES = 10_000
CONFIG_FILE_NAME = "forge.toml"


class ParticipantSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A participant: a provider spec (``mock:alice``, ``anthropic:claude-…``) or a human.

    ``name`` defaults to the spec's model (``alice`` for ``mock:alice``). ``replies``: how its
    critiques and votes are asked for (json, text, or auto: json when the provider supports it);
    a spec's ``?replies=`` option says the same.
    """

    spec: str = ""
    name: str | None = None
    persona: Persona | None = None
    kind: ParticipantKind = "ai"
    replies: RepliesMode = "auto"
    #: Tools it may call, by name or category (``"file,search"``); empty: the session's default
    #: (``create_session(tools=...)``, ``forge run --tools``), else none. ``?tools=`` says the same.
    tools: str = ""
    #: How it calls them: native (the provider's API), text (``TOOL_CALL:`` lines), off, or auto
    #: (native when the provider supports tool calling). ``?tool_mode=`` says the same.
    tool_mode: ToolMode = "auto"


class ProviderSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[forge.providers.NAME]``: defaults for every participant of that provider."""

    enabled: bool = True
    base_url: str | None = None
    timeout: float | None = None
    max_retries: int | None = None

    def options(self) -> dict[str, Any]:
        values = {"base_url": self.base_url, "timeout": self.timeout, "max_retries": self.max_retries}
        return {key: value for key, value in values.items() if value is not None}


class CliTool(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[forge.cli.NAME]``: a command-line assistant run once per call (``cli:NAME``)."""

    command: list[str] | str
    history: Literal["resend", "resume"] = "resend"
    resume_args: list[str] = []
    noise: list[str] = []
    timeout: float = 300.0


class DaemonTool(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[forge.daemon.NAME]``: an interactive assistant kept running (``daemon:NAME``)."""

    command: list[str] | str
    prompt_marker: str | None = None
    end_marker: str | None = None
    quiet_seconds: float = 2.0
    startup_seconds: float = 10.0
    quit_command: str | None = None
    timeout: float = 300.0
    noise: list[str] = []
    line_join: str = " "


class PoolSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[forge.pools.NAME]``: member specs behind one provider (``pool:NAME``)."""

    members: list[str]
    strategy: Literal["round_robin", "failover"] = "failover"
    degraded_after: int = 2
    unavailable_after: int = 4
    window_seconds: float = 60.0
    cooldown_seconds: float = 30.0


class ToolSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[forge.tools]``: what participants' tools may reach, beyond reading the workspace."""

    #: Tools (names or categories) an HTTP caller may give a participant; read-only ones only.
    api_tools: tuple[str, ...] = ("file", "search", "git")
    #: Programs ``run_command`` may start (bare names, found on PATH); empty: none.
    shell_programs: tuple[str, ...] = ()
    #: Hosts ``http_get`` may fetch from; empty: none.
    http_hosts: tuple[str, ...] = ()
    #: Patterns no tool may read, list or search, added to ``tools.DEFAULT_EXCLUDES`` (same syntax:
    #: ``"secrets/"``, ``"*.sqlite"``, ``"config/prod.yml"``).
    exclude: tuple[str, ...] = ()


#: The longest ``[forge.tools] exclude`` pattern.
MAX_EXCLUSION_CHARS = 200

#: A council's name: it is also a model name (``forge/NAME``) and a tool argument, so plain characters only.
COUNCIL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


#: The council a surface that takes councils uses when its caller names none (and, for an untrusted
#: caller naming no participants, the one ``Forge.create_session`` picks), when it is configured.
DEFAULT_COUNCIL = "forge"


class CouncilSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[forge.councils.NAME]``: a named set of participants with session settings of their own.

    The council named ``forge``, when there is one, is the default of the surfaces that take a
    council (``forge mcp``; the model ``forge`` of the OpenAI-compatible endpoint).

    Written by the operator, so it is used as written (trusted, like ``[[forge.participants]]``
    as a server's defaults): an untrusted caller (MCP, HTTP) may *name* a council, and what it
    adds on top of it (constraints, max_iterations, convergence_threshold, tools) is checked by
    the untrusted-caller rule (``engine.trust``): tools within ``[forge.tools] api_tools``, never
    a workspace. Checked when the file is read: the specs carry no keys, the settings are known
    names in range, the tools exist, and there are 1..max_participants participants.
    """

    participants: tuple[ParticipantSpec, ...]
    #: Session settings (``max_iterations``, ``convergence_threshold``, ``seed``...), as written;
    #: applied over ``[forge]``'s and under a caller's own.
    settings: dict[str, Any] = {}
    #: What its AI participants may call when their spec names no tools (``"file,search"``).
    tools: str = ""
    #: One line for people choosing a council (listed by the MCP server and ``/v1/models``).
    description: str = ""


class ForgeConfig(msgspec.Struct, frozen=True, kw_only=True):
    #: Defaults of every new session; ``create_session(**overrides)`` changes them per session.
    settings: SessionSettings = SessionSettings()
    #: The model used when no participants are given and its key is present.
    default_model: str = DEFAULT_MODEL
    providers: dict[str, ProviderSettings] = {}
    #: Who deliberates when no participants are given.
    participants: tuple[ParticipantSpec, ...] = ()
    #: The most participants (AI and human) one session may have: creating a bigger one, or a
    #: human joining a full one, is refused. Every participant costs a thread and model calls.
    max_participants: int = DEFAULT_MAX_PARTICIPANTS
    #: Price overrides by model name (merged over the shipped table).
    pricing: dict[str, Price] = {}
    cli: dict[str, CliTool] = {}
    daemon: dict[str, DaemonTool] = {}
    pools: dict[str, PoolSettings] = {}
    tools: ToolSettings = ToolSettings()
    #: Named councils (``[forge.councils.NAME]``), by name.
    councils: dict[str, CouncilSettings] = {}
    #: ``[forge] database``: the event log when neither ``--db`` nor ``$FORGE_DB`` names one; a
    #: relative path is resolved against the file's folder. None: ./forge.db.
    database: str | None = None
    #: The file this came from, None for the defaults.
    source: str | None = None

    def provider_options(self, provider: str) -> dict[str, Any]:
        section = self.providers.get(provider)
        return section.options() if section is not None else {}

    def options_for(self, provider: str, model: str) -> dict[str, Any]:
        """Options for the provider a spec names: its tool or pool definition, or its provider section."""
        tool: Any = {"cli": self.cli, "daemon": self.daemon}.get(provider, {}).get(model)
        if tool is not None:
            return {k: v for k, v in msgspec.structs.asdict(tool).items() if v is not None}
        if provider == "pool":
            pool = self.pools.get(model)
            if pool is None:
                known = ", ".join(sorted(self.pools)) or "none defined"
                raise ConfigError(f"pool:{model} is not defined: add [forge.pools.{model}] with members = [...] "
                                  f"to forge.toml (pools: {known})")
            return {"members": list(pool.members), "strategy": pool.strategy}
        return self.provider_options(provider)

    def council(self, name: str) -> CouncilSettings:
        """The council ``name``; a ConfigError naming the known ones when there is none."""
        council = self.councils.get(name) if isinstance(name, str) else None
        if council is None:
            known = ", ".join(sorted(self.councils)) or "none configured"
            raise ConfigError(f"no council named {str(name)[:64]!r}: add [forge.councils.NAME] to "
                              f"{self.source or 'forge.toml'} (councils: {known})")
        return council

    def provider_enabled(self, provider: str) -> bool:
        section = self.providers.get(provider)
        return section is None or section.enabled


# -- settings ---------------------------------------------------------------------------------------


#: Upper bounds of the settings: a session is created by API callers too, on the operator's
#: keys, so none may ask for unbounded rounds, retries, tokens or time.
MAX_ROUNDS = 100
MAX_RETRIES = 10
MAX_TOKENS = 128_000
MAX_ROUND_TIMEOUT_SECONDS = 86_400.0
MAX_TOOL_CALLS = 64
MAX_TOOL_SECONDS = 3_600.0
#: A reply (characters), and a session's events in the log (bytes), at most: the log's growth stays bounded.
MAX_REPLY_CHARS = 1_000_000
MAX_SESSION_BYTES = 10_000_000_000
#: A session's spending budget at most (dollars; tokens): a bound on a typo, not on anyone's wallet.
MAX_COST_USD = 1_000_000.0
MAX_SESSION_TOKENS = 10_000_000_000
#: Seeds are recorded as JSON integers: keep them within 64 bits.
SEED_LIMIT = 2**63


class SettingRange(msgspec.Struct, frozen=True):
    """The values a numeric setting may take, and how a mistake is told: ``NAME must be {says}``.

    ``low``..``high``, either end left out when ``low_open``/``high_open``. The one table of them,
    ``SETTING_RANGES``, serves the engine's check, the policy for untrusted callers (which lowers a
    capped setting's ``high`` to the operator's value) and the HTTP API's document."""

    kind: Literal["integer", "number"]
    low: float
    high: float
    says: str
    low_open: bool = False
    high_open: bool = False

    def holds(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def message(self, name: str) -> str:
        shown = ITERATIONS_KEY if name == DEPRECATED_ITERATIONS_KEY else name
        return f"{shown} must be {self.says}"


#: Each numeric setting's range (a setting that may be None, like min_votes, is checked when set).
SETTING_RANGES: Mapping[str, SettingRange] = {
    "convergence_threshold": SettingRange("number", 0.0, 1.0, "between 0 and 1"),
    "similarity_threshold": SettingRange("number", 0.0, 1.0, "between 0 and 1"),
    "max_rounds": SettingRange("integer", 1, MAX_ROUNDS, f"at least 1 and at most {MAX_ROUNDS}"),
    "round_timeout_seconds": SettingRange("number", 0.0, MAX_ROUND_TIMEOUT_SECONDS, "more than 0 and at most "
                                          f"{MAX_ROUND_TIMEOUT_SECONDS:.0f} (a day)", low_open=True),
    "max_retries": SettingRange("integer", 0, MAX_RETRIES, f"0 or more and at most {MAX_RETRIES}"),
    "max_tokens": SettingRange("integer", 1, MAX_TOKENS, f"at least 1 and at most {MAX_TOKENS}"),
    "temperature": SettingRange("number", 0.0, 2.0, "between 0 and 2"),
    "seed": SettingRange("integer", -SEED_LIMIT, SEED_LIMIT, "a 64-bit integer", low_open=True, high_open=True),
    "min_votes": SettingRange("integer", 1, MAX_MIN_VOTES, f"at least 1 and at most {MAX_MIN_VOTES}"),
    "max_tool_calls": SettingRange("integer", 0, MAX_TOOL_CALLS, f"0 or more and at most {MAX_TOOL_CALLS}"),
    "max_tool_seconds": SettingRange("number", 0.0, MAX_TOOL_SECONDS,
                                     f"more than 0 and at most {MAX_TOOL_SECONDS:.0f}", low_open=True),
    "human_wait_seconds": SettingRange("number", 0.0, MAX_ROUND_TIMEOUT_SECONDS,
                                       f"0 or more and at most {MAX_ROUND_TIMEOUT_SECONDS:.0f} (a day)"),
    "max_reply_chars": SettingRange("integer", 1, MAX_REPLY_CHARS, f"at least 1 and at most {MAX_REPLY_CHARS:,}"),
    "max_session_bytes": SettingRange("integer", 1, MAX_SESSION_BYTES,
                                      f"at least 1 and at most {MAX_SESSION_BYTES:,}"),
    "max_cost_usd": SettingRange("number", 0.0, MAX_COST_USD, f"more than 0 and at most {MAX_COST_USD:,.0f} "
                                 "(US dollars)", low_open=True),
    "max_session_tokens": SettingRange("integer", 1, MAX_SESSION_TOKENS,
                                       f"at least 1 and at most {MAX_SESSION_TOKENS:,}"),
}


def _check_ranges(settings: SessionSettings) -> None:
    for name, allowed in SETTING_RANGES.items():
        value = getattr(settings, name)
        if value is not None and not allowed.holds(value):
            raise ConfigError(allowed.message(name))
    if settings.workspace is not None and not settings.workspace.strip():
        raise ConfigError("workspace must name a folder")


def session_settings(base: SessionSettings, overrides: Mapping[str, Any]) -> SessionSettings:
    """``base`` with ``overrides`` applied (None values ignored), type- and range-checked."""
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"session settings are a mapping of setting names to values, not {type(overrides).__name__}")
    unknown = sorted(str(key) for key in set(overrides) - set(SETTING_NAMES) - {DEPRECATED_ITERATIONS_KEY})
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; the settings are {', '.join(SETTING_NAMES)} "
                          "(goal, title, participants and constraints are not settings)")
    given = recorded_setting_names({k: v for k, v in overrides.items() if v is not None}, "")
    merged = {**msgspec.structs.asdict(base), **given}
    settings = _convert(merged, SessionSettings, "")
    _check_ranges(settings)
    return settings


def participant_spec(value: str | ParticipantSpec | Mapping[str, Any]) -> ParticipantSpec:
    """A spec string, a ParticipantSpec, or a mapping with its fields."""
    if isinstance(value, ParticipantSpec):
        return value
    if isinstance(value, str):
        return ParticipantSpec(spec=value)
    if not isinstance(value, Mapping):
        raise ConfigError(f"a participant is a spec string or a table of spec/name/persona/kind, not {value!r}")
    return _convert(dict(value), ParticipantSpec, "")


def _convert(value: Any, type_: type, where: str) -> Any:
    """msgspec.convert, with its error's ``$.path`` rewritten as the key people write."""
    try:
        return msgspec.convert(value, type_, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = re.search(r" - at `\$(.*)`$", message)
        key = where + (match.group(1) if match else "")
        message = re.sub(r" - at `.*`$", "", message).replace("Object contains unknown field", "unknown key")
        if message.startswith("Invalid enum value"):  # say what it may be
            choices = _choices(type_, key.rsplit(".", 1)[-1])
            message += f"; write one of {', '.join(choices)}" if choices else ""
        raise ConfigError(f"{key.lstrip('.')}: {message}" if key else message) from None


def _choices(type_: type, field: str) -> tuple[str, ...]:
    """The words a Literal field of ``type_`` (or of the Structs it holds) may take; () if it is none."""
    for struct in (type_, SessionSettings, ParticipantSpec):
        hint = typing.get_type_hints(struct).get(field) if hasattr(struct, "__struct_fields__") else None
        words = tuple(str(a) for a in typing.get_args(hint) if isinstance(a, str)) if hint is not None else ()
        if words:
            return words
    return ()


# -- the file ---------------------------------------------------------------------------------------


def find_config(explicit: str | os.PathLike[str] | None = None, environ: Mapping[str, str] = os.environ) -> Path | None:
    """``explicit``, else $FORGE_CONFIG, else ./forge.toml if it exists, else None (defaults)."""
    for given, origin in ((explicit, "--config"), (environ.get("FORGE_CONFIG"), "FORGE_CONFIG")):
        if given:
            path = Path(given)
            if not path.is_file():
                raise ConfigError(f"{path}: no such config file (given by {origin})")
            return path
    local = Path(CONFIG_FILE_NAME)
    return local if local.is_file() else None


def load_config(explicit: str | os.PathLike[str] | None = None, environ: Mapping[str, str] = os.environ) -> ForgeConfig:
    path = find_config(explicit, environ)
    if path is None:
        return ForgeConfig()
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        return parse_config(document, source=str(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def parse_config(document: Mapping[str, Any], source: str | None = None) -> ForgeConfig:
    unknown = sorted(set(document) - {"forge"})
    if unknown:
        raise ConfigError(f"unknown table(s) {', '.join(unknown)}: everything goes under [forge]")
    section = dict(document.get("forge", {}))
    providers = _providers(section.pop("providers", {}))
    participants = _participants(section.pop("participants", []))
    pricing = {model: _convert(price, Price, f"forge.pricing.{model}")
               for model, price in _table(section.pop("pricing", {}), "forge.pricing").items()}
    tools = {kind: {name: _convert(_no_keys(entry, f"forge.{kind}.{name}"), cls, f"forge.{kind}.{name}")
                    for name, entry in _table(section.pop(kind, {}), f"forge.{kind}").items()}
             for kind, cls in (("cli", CliTool), ("daemon", DaemonTool))}
    pools = {name: _pool(entry, f"forge.pools.{name}")
             for name, entry in _table(section.pop("pools", {}), "forge.pools").items()}
    tool_settings = _tool_settings(section.pop("tools", {}))
    councils_table = section.pop("councils", {})
    default_model = section.pop("default_model", DEFAULT_MODEL)
    if not isinstance(default_model, str) or not default_model:
        raise ConfigError("forge.default_model: a model name or a provider spec")
    _refuse_secrets(default_model, "forge.default_model")
    max_participants = section.pop("max_participants", DEFAULT_MAX_PARTICIPANTS)
    if not isinstance(max_participants, int) or isinstance(max_participants, bool) or max_participants < 1:
        raise ConfigError("forge.max_participants: a whole number, at least 1 (the most participants one session "
                          f"may have; default {DEFAULT_MAX_PARTICIPANTS})")
    database = _database(section.pop("database", None), source)
    unknown = sorted(set(section) - set(SETTING_NAMES) - {DEPRECATED_ITERATIONS_KEY})
    if unknown:
        raise ConfigError(f"unknown key(s) forge.{', forge.'.join(unknown)}; the [forge] keys are database, "
                          f"default_model, max_participants, {', '.join(SETTING_NAMES)}, and the tables providers, "
                          "participants, pricing, cli, daemon, pools, tools, councils")
    settings = _convert(recorded_setting_names(section, "forge"), SessionSettings, "forge")
    try:
        _check_ranges(settings)
    except ConfigError as exc:
        raise ConfigError(f"forge.{exc}") from None
    councils = {name: _council(name, entry, settings, max_participants)
                for name, entry in _table(councils_table, "forge.councils").items()}
    return ForgeConfig(settings=settings, default_model=default_model, providers=providers,
                       participants=participants, max_participants=max_participants, pricing=pricing,
                       cli=tools["cli"], daemon=tools["daemon"], pools=pools, tools=tool_settings,
                       councils=councils, database=database, source=source)


def _database(value: Any, source: str | None) -> str | None:
    """``[forge] database``: a file path (relative to the config file's folder) or a PostgreSQL URL
    without a password (the file may be shared and committed: the password comes from elsewhere)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("forge.database: the event log, a file path or a postgresql:// URL (a string)")
    if is_database_url(value):
        if has_password(value):
            raise ConfigError(f"forge.database ({printable_target(value)}): a password does not belong in the "
                              "configuration file: give it in PGPASSWORD or ~/.pgpass, or put the whole URL in "
                              "FORGE_DB")
        return value
    path = Path(value).expanduser()
    if not path.is_absolute() and source is not None:
        path = Path(source).parent / path
    return str(path)


def _council(name: str, entry: Any, base: SessionSettings, max_participants: int) -> CouncilSettings:
    from forge_actors.tools import UnknownToolError, select_tools

    key = f"forge.councils.{name}"
    if not COUNCIL_NAME.fullmatch(name):
        raise ConfigError(f"{key}: a council's name is letters, digits and . _ - (at most 64, starting with a letter "
                          "or digit): it is also a model name (forge/NAME)")
    table = _table(entry, key)
    unknown = sorted(set(table) - set(CouncilSettings.__struct_fields__))
    if unknown:
        raise ConfigError(f"{key}: unknown key(s) {', '.join(unknown)}; a council has "
                          f"{', '.join(CouncilSettings.__struct_fields__)}")
    if "participants" not in table:
        raise ConfigError(f"{key}.participants: a council needs participants (specs such as \"mock:alice\" or "
                          "tables with spec, name, persona)")
    participants = _participants(table.pop("participants"), f"{key}.participants", bare_specs=True)
    if not 1 <= len(participants) <= max_participants:
        raise ConfigError(f"{key}.participants: {len(participants)} participants; a council has at least 1 and at "
                          f"most {max_participants} (forge.max_participants)")
    settings = _table(table.pop("settings", {}), f"{key}.settings")
    try:
        session_settings(base, settings)  # known names, types and ranges, now rather than at the first call
    except ConfigError as exc:
        raise ConfigError(f"{key}.settings: {exc}") from None
    tools = table.pop("tools", "")
    if isinstance(tools, list) and all(isinstance(t, str) for t in tools):
        tools = ",".join(tools)
    if not isinstance(tools, str):
        raise ConfigError(f"{key}.tools: tool and category names, as a string (\"file,search\") or an array")
    if tools.strip():
        try:
            select_tools(tools)
        except UnknownToolError as unknown_tool:
            raise ConfigError(f"{key}.tools: {unknown_tool}") from None
    description = table.pop("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{key}.description: a line of text")
    return CouncilSettings(participants=participants, settings=settings, tools=tools, description=description)


def _tool_settings(value: Any) -> ToolSettings:
    from forge_actors.tools import REGISTRY, UnknownToolError, select_tools

    settings: ToolSettings = _convert(_table(value, "forge.tools"), ToolSettings, "forge.tools")
    try:
        allowed = select_tools(settings.api_tools)
    except UnknownToolError as unknown:
        raise ConfigError(f"forge.tools.api_tools: {unknown}") from None
    writers = [name for name in allowed if not REGISTRY[name].read_only]
    if writers:
        raise ConfigError(f"forge.tools.api_tools: {', '.join(writers)} write, run programs or reach the network; "
                          "an HTTP caller may enable read-only tools only (file, search, git, calculate...)")
    for index, pattern in enumerate(settings.exclude):
        _check_exclusion(pattern, f"forge.tools.exclude[{index}]")
    return settings


def _check_exclusion(pattern: str, key: str) -> None:
    """An exclusion pattern matches names inside the workspace, at any depth: relative, without '..'."""
    example = 'e.g. "secrets/", "*.sqlite", "config/prod.yml"'
    segments = pattern.strip("/").split("/")
    if not pattern.strip("/") or "\x00" in pattern or len(pattern) > MAX_EXCLUSION_CHARS:
        raise ConfigError(f"{key}: a file or folder name pattern of 1 to {MAX_EXCLUSION_CHARS} characters ({example})")
    if pattern.startswith(("/", "~")):
        raise ConfigError(f"{key}: {pattern!r} is matched inside the workspace, at any depth: write it without a "
                          f"leading '/' or '~' ({example})")
    if any(segment in ("", ".", "..") for segment in segments):
        raise ConfigError(f"{key}: {pattern!r} has an empty, '.' or '..' component; name files and folders "
                          f"({example})")


def _refuse_secrets(spec: str, key: str) -> None:
    """A spec in the file must not carry a key (``api_key=``...): keys come from the environment."""
    from forge_actors.providers.registry import secret_options

    found = secret_options(spec)
    if found:
        raise ConfigError(f"{key}: {', '.join(found)} in a spec: API keys are read from the environment only, never "
                          "from the file; remove it and set the provider's variable (e.g. ANTHROPIC_API_KEY)")


def _pool(entry: Any, key: str) -> PoolSettings:
    pool = _convert(entry, PoolSettings, key)
    for index, member in enumerate(pool.members):
        _refuse_secrets(member, f"{key}.members[{index}]")
    return pool


def _no_keys(entry: Any, key: str) -> Any:
    if isinstance(entry, Mapping) and "env" in entry:
        raise ConfigError(f"{key}.env: environment for tools is not read from the file (keys must not be in it); "
                          "set variables in the environment forge runs in")
    return entry


def _table(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected a table")
    return dict(value)


def _providers(value: Any) -> dict[str, ProviderSettings]:
    from forge_actors.providers.registry import known_providers

    providers: dict[str, ProviderSettings] = {}
    for name, section in _table(value, "forge.providers").items():
        key = f"forge.providers.{name}"
        if name not in known_providers():
            raise ConfigError(f"{key}: unknown provider {name!r}; known providers: {', '.join(known_providers())}")
        if isinstance(section, Mapping) and "api_key" in section:
            raise ConfigError(f"{key}.api_key: API keys are read from the environment only, never from the "
                              "file; remove it and set the provider's variable (e.g. ANTHROPIC_API_KEY)")
        providers[name] = _convert(section, ProviderSettings, key)
    return providers


def _participants(value: Any, where: str = "forge.participants", *,
                  bare_specs: bool = False) -> tuple[ParticipantSpec, ...]:
    """An array of participant tables; with ``bare_specs`` (a council's), spec strings too."""
    if not isinstance(value, list):
        expected = "an array of specs or tables" if bare_specs else "an array of tables ([[forge.participants]])"
        raise ConfigError(f"{where}: expected {expected}")
    specs = []
    for index, entry in enumerate(value):
        key = f"{where}[{index}]"
        if bare_specs and isinstance(entry, str):  # "mock:alice", as a session's participants are given
            entry = {"spec": entry}
        persona = entry.get("persona") if isinstance(entry, Mapping) else None
        if isinstance(persona, Mapping):
            unknown = sorted(set(persona) - set(Persona.__struct_fields__))
            if unknown:
                raise ConfigError(f"{key}.persona: unknown key(s) {', '.join(unknown)}; a persona has "
                                  f"{', '.join(Persona.__struct_fields__)}")
        spec = _convert(entry, ParticipantSpec, key)
        _refuse_secrets(spec.spec, f"{key}.spec")
        specs.append(spec)
    return tuple(specs)
