"""The engine's front door: the one import of the surfaces (CLI, server, tools) and of embedders.

::

    from forge_actors.engine import Forge   # or AsyncForge: the same calls as coroutines

    with Forge("forge.db") as forge:
        session_id = forge.create_session("Design a TODO app API", ["mock:alice", "mock:bob", "mock:carol"])
        for recorded in forge.deliberate(session_id):   # committed events, live
            print(recorded.position, recorded.event)

Inside, one module per seam: ``forge`` (the facade: commands and queries), ``participants``
(specs -> providers, pools, personas, probes), ``supervisor`` (actors and leases), ``states``
(the shared fold), ``live`` (following a session), ``replay`` (re-runs and paced replays),
``summaries`` (the session list), ``async_forge`` (``AsyncForge``: the calls as coroutines),
``evaluation`` (does a council beat one model:
``Forge.evaluate``), ``tracing`` and ``otel`` (OpenTelemetry spans and metrics, an optional extra), ``logs`` (choosing the log: a file or a
``postgresql://`` URL, shown without its password; ``migrate_log``), ``config`` and ``trust`` (what the operator and an untrusted
caller may name), ``errors`` (everything a caller catches).
"""

from eventstore import RecordedEvent, Subscription
from forge_actors.core.audit import ForkCheck, Violation
from forge_actors.core.events import ROUND_KINDS, Event, RoundKind
from forge_actors.core.state import Lineage, RoundState, SessionState
from forge_actors.core.usage import UsageReport
from forge_actors.engine.async_forge import AsyncForge
from forge_actors.engine.config import (
    DEFAULT_COUNCIL,
    DEPRECATED_ITERATIONS_KEY,
    ITERATIONS_KEY,
    ForgeConfig,
    ParticipantSpec,
    SettingRange,
    load_config,
)
from forge_actors.engine.errors import (
    RETRY_AFTER_SECONDS,
    BackendMissingError,
    ConcurrencyError,
    ConfigError,
    CorruptEventError,
    CorruptLogError,
    DiskFullError,
    EventStoreError,
    ForgeError,
    HumanInputQueuedError,
    InvalidCommandError,
    LogCopyError,
    LogOutage,
    LogReadError,
    LogUnavailableError,
    LogUnavailableWriteError,
    LogWriteError,
    NoEventLogError,
    NotAnEventLogError,
    ParticipantKeyMissingError,
    ParticipantSetupError,
    SessionBusyError,
    SessionNotFoundError,
    SessionStartError,
    SessionStoppedError,
    UnknownPriceError,
    UntrustedSpecError,
    log_outage,
)
from forge_actors.engine.evaluation import SHIPPED_SETS, baseline, council, read_task_file
from forge_actors.engine.forge import DEFAULT_CLOSE_TIMEOUT, DEFAULT_LEASE_TTL, Forge
from forge_actors.engine.logs import (
    DEFAULT_COPY_BATCH,
    DEFAULT_LOG,
    CopyReport,
    LogChoice,
    choose_log,
    has_password,
    is_database_url,
    migrate_log,
    printable_target,
    same_log,
)
from forge_actors.engine.participants import probe_providers
from forge_actors.engine.summaries import SessionSummary
from forge_actors.engine.tracing import trace_sessions
from forge_actors.engine.trust import (
    CAPPED_SETTINGS,
    FREE_SETTINGS,
    LABEL_PATTERN,
    LABELS,
    TEXT_CAPS,
    TextCap,
    check_untrusted_tools,
    untrusted_setting_ranges,
)
from forge_actors.providers.pool import MemberHealth
from forge_actors.providers.probe import ProviderProbe
from forge_actors.tools import HistoryHit

__all__ = [
    "AsyncForge", "trace_sessions",
    "BackendMissingError", "ConcurrencyError", "CopyReport", "DEFAULT_COPY_BATCH", "DEFAULT_LOG", "LogChoice", "LogCopyError",
    "LogUnavailableError", "choose_log", "has_password", "is_database_url", "migrate_log", "printable_target",
    "same_log", "ConfigError", "CorruptEventError", "CorruptLogError", "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_LEASE_TTL", "DiskFullError", "Event", "EventStoreError", "Forge", "ForgeConfig", "ForgeError",
    "HistoryHit", "HumanInputQueuedError", "InvalidCommandError", "LogReadError", "LogWriteError",
    "MemberHealth", "NoEventLogError", "NotAnEventLogError", "ParticipantKeyMissingError", "ParticipantSetupError",
    "ParticipantSpec", "ProviderProbe", "ROUND_KINDS", "RecordedEvent", "RoundKind", "RoundState",
    "SessionBusyError", "SessionNotFoundError", "SessionStartError", "SessionState", "SessionStoppedError",
    "SessionSummary", "Subscription", "TEXT_CAPS", "TextCap", "UnknownPriceError", "UntrustedSpecError", "UsageReport", "Violation",
    "DEFAULT_COUNCIL", "CAPPED_SETTINGS", "FREE_SETTINGS", "SettingRange", "check_untrusted_tools", "load_config",
    "ITERATIONS_KEY", "DEPRECATED_ITERATIONS_KEY",
    "untrusted_setting_ranges", "LABEL_PATTERN", "LABELS",
    "ForkCheck", "Lineage",
    "probe_providers", "LogUnavailableWriteError", "LogOutage", "RETRY_AFTER_SECONDS", "log_outage",
    "SHIPPED_SETS", "baseline", "council", "read_task_file",
]
