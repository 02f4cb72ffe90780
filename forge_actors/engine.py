"""Forge: the embedding API. Everything a service, the CLI or the server does goes through here.

::

    with Forge("forge.db") as forge:
        session_id = forge.create_session("Design a TODO app API", ["mock:alice", "mock:bob", "mock:carol"])
        for recorded in forge.deliberate(session_id):   # committed events, live
            print(recorded.position, recorded.event)
        print(forge.state(session_id).status)

One engine owns one event log file, a batching writer, one scheduler thread, and an
actor per running session plus one per AI participant of it. Sessions not running
in this process are just events in the log: ``state`` folds them, ``deliberate`` or
``resume`` starts their actors again, ``replay`` and ``rerun`` read them.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from typing import Any

import msgspec
import pykka

from eventstore import (
    ANY,
    NO_STREAM,
    AppendTicket,
    BatchingWriter,
    CorruptLogError,
    EventStore,
    EventStoreError,
    Lease,
    LeaseHeldError,
    LeaseLostError,
    LogWriteError,
    NewEvent,
    ProjectionRunner,
    RecordedEvent,
    SqliteLeases,
    Subscription,
)
from forge_actors.audit import Violation, verify
from forge_actors.config import ENGINE_SPEC_OPTIONS, ForgeConfig, ParticipantSpec, participant_spec, session_settings
from forge_actors.errors import (
    ConfigError,
    InvalidCommandError,
    ParticipantKeyMissingError,
    SessionBusyError,
    SessionNotFoundError,
    SessionStoppedError,
)
from forge_actors.events import (
    ROUND_KINDS,
    Event,
    HumanDraftAdded,
    ParticipantAdded,
    ParticipantInfo,
    Persona,
    RepliesMode,
    RoundKind,
    RoundStarted,
    SessionCreated,
    SessionEnded,
    VoteChoice,
    decode_event,
)
from forge_actors.messages import (
    AddHumanDraft,
    CancelSession,
    CastVote,
    Deliberate,
    Interrupt,
    Recover,
    RunRound,
    SwitchProvider,
)
from forge_actors.participant import ParticipantActor
from forge_actors.providers.base import Provider
from forge_actors.providers.cli import argv_option
from forge_actors.providers.errors import MissingApiKeyError
from forge_actors.providers.pool import HealthPolicy, MemberHealth, PoolHealth
from forge_actors.providers.probe import HTTP_PROVIDERS, ProviderProbe, probe, probe_command
from forge_actors.providers.registry import ProviderSpec, get_provider, known_providers, parse_spec, redact_spec
from forge_actors.providers.retry import RetryPolicy
from forge_actors.recordings import replay_provider
from forge_actors.scheduler import Scheduler
from forge_actors.session import SessionActor, as_new_event
from forge_actors.state import RoundState, SessionState, apply
from forge_actors.trust import check_untrusted_participant, check_untrusted_spec
from forge_actors.usage import SessionSummary, SummaryProjection, UsageReport, read_summaries, usage_report

logger = logging.getLogger(__name__)

#: Spec prefix of a participant re-run from a recorded session: ``replay:SESSION_ID``.
REPLAY_PREFIX = "replay:"

#: Seconds a session's lease lasts unless its engine renews it (every third of that): after a
#: crash, how long an engine on another host waits before it may resume the session.
DEFAULT_LEASE_TTL = 6.0
#: Seconds ``Forge.close()`` waits, in all, for every actor to stop.
DEFAULT_CLOSE_TIMEOUT = 1.0


#: The three members a session gets on the default model when nobody is named.
DEFAULT_PERSONAS: tuple[tuple[str, Persona], ...] = (
    ("pragmatist", Persona("The Pragmatist", ("practical", "delivery-minded"), "direct",
                           "smallest thing that works first", ("planning", "trade-offs"))),
    ("skeptic", Persona("The Skeptic", ("careful", "probing"), "dry", "look for what breaks",
                        ("risks", "security", "failure modes"))),
    ("architect", Persona("The Architect", ("structured", "long-term"), "measured", "clear boundaries",
                          ("system design", "interfaces"))),
)


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


REPLIES_MODES: tuple[RepliesMode, ...] = ("json", "text", "auto")


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


def new_session_id() -> str:
    return uuid.uuid4().hex[:12]


def _default_title(goal: str) -> str:
    first_line = goal.strip().splitlines()[0] if goal.strip() else ""
    return first_line if len(first_line) <= 80 else first_line[:77] + "..."


def _stop_all(actors: list[pykka.ActorRef], deadline: float) -> None:
    """Ask every actor to stop at once, then wait for each until ``deadline`` (time.monotonic)."""
    stopping = [(actor, actor.stop(block=False)) for actor in actors]
    for actor, stopped in stopping:
        try:
            stopped.get(timeout=max(0.0, deadline - time.monotonic()))
        except pykka.Timeout:  # e.g. a provider that ignores abort(); a daemon thread, it dies with the process
            logger.warning("%s did not stop in time; leaving it behind", actor)


def engine_owner_id() -> str:
    """``host:pid:token``: names one engine in lease rows and in SessionBusyError messages."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _process_exists(pid: int) -> bool:
    if os.name != "posix":  # no cheap, harmless probe (os.kill(pid, 0) is not one on Windows)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:  # the answer sought: no such process
        return False
    except OSError:  # e.g. EPERM: it exists, under another user
        return True
    return True


def owner_is_dead_here(lease: Lease) -> bool:
    """A lease left by an engine of this host whose process is gone (e.g. ``kill -9``): take it at
    once. An owner on another host, or one this check cannot read, keeps its lease until it expires."""
    host, _, rest = lease.owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid() or _process_exists(pid):
        return False
    logger.info("taking over lease %s: its owner %s was a process of this host that no longer exists",
                lease.name, lease.owner)
    return True


#: Locks that single-flight the folds of sessions' states (a session's is picked by its id's hash).
_FOLD_LOCK_STRIPES = 64


def _lease_name(session_id: str) -> str:
    return f"session:{session_id}"


class _LeaseFence:
    """The writer as one session's actor sees it: once this engine has lost the session's lease,
    every append is refused (LeaseLostError), so the actor stops without writing more."""

    __slots__ = ("_writer", "lost")

    def __init__(self, writer: BatchingWriter) -> None:
        self._writer = writer
        self.lost: LeaseLostError | None = None

    def append(self, stream_id: str, events: Iterable[NewEvent], expected_version: Any = ANY) -> AppendTicket:
        if self.lost is not None:
            raise self.lost
        return self._writer.append(stream_id, events, expected_version)


def _write_failure_for(lost: EventStoreError, session_id: str) -> EventStoreError:
    """The store's error that stopped a session, saying how to carry on with it."""
    if isinstance(lost, LogWriteError):
        return lost.with_next_step(f"resume session {session_id}")
    if isinstance(lost, CorruptLogError):
        return CorruptLogError(lost.path, lost.reason)
    return lost


class _MemoryRows:
    """Rows of an in-memory SQLite database, read the way ``read_summaries`` reads a store."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def query(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        return self._conn.execute(sql, parameters).fetchall()


def _summaries_without_writing(store: EventStore) -> list[SessionSummary]:
    """What the summary projection holds, folded in memory from the whole log: for a log
    that cannot take the projection's writes (the same fold, so the same rows)."""
    projection = SummaryProjection()
    conn = sqlite3.connect(":memory:")
    try:
        projection.setup(conn)
        for recorded in store.read_all():
            projection.apply(conn, recorded)
        return read_summaries(_MemoryRows(conn))  # type: ignore[arg-type]
    finally:
        conn.close()


class _Running(msgspec.Struct):
    session: pykka.ActorRef
    participants: list[pykka.ActorRef]
    fence: _LeaseFence


class _InlineSpecs:
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

    def full_spec(self, session_id: str, participant: str, recorded: str) -> str | None:
        with self._lock:
            kept = self._specs.get((session_id, participant))
        return kept[1] if kept is not None and kept[0] == recorded else None

    def __repr__(self) -> str:
        return f"<{len(self._specs)} participant spec(s) with keys, kept in memory only>"


class Forge:
    """The deliberation engine over one event log. Thread-safe; close it when done."""

    def __init__(
        self,
        db_path: str,
        config: ForgeConfig | None = None,
        *,
        clock_ns: Callable[[], int] | None = None,
        id_factory: Callable[[], str] = new_session_id,
        retry_policy: RetryPolicy | None = None,
        synchronous: str = "NORMAL",
        writer_max_delay: float = 0.004,
        create: bool = True,
        pool_clock: Callable[[], float] = time.monotonic,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        lease_clock: Callable[[], int] = time.time_ns,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        """``clock_ns`` stamps events and times contributions (inject one for repeatable logs);
        ``id_factory`` names new sessions; ``retry_policy`` paces retries of failed attempts;
        ``create=False`` refuses a path that is not an existing log (NotAnEventLogError).

        Driving a session (``deliberate``, ``resume``, a step, a draft, a vote, ``cancel``) takes
        its lease for ``lease_ttl`` seconds, renewed while this engine runs it; a session another
        engine drives raises SessionBusyError. ``lease_clock`` is wall-clock ns (kept apart from
        ``clock_ns``: leases are compared across processes). ``close()`` waits at most
        ``close_timeout`` seconds in all for the actors to stop."""
        if isinstance(lease_ttl, bool) or not isinstance(lease_ttl, (int, float)) or not 0 < lease_ttl < float("inf"):
            raise ConfigError(f"lease_ttl is a number of seconds > 0, not {lease_ttl!r}")
        self.config = config or ForgeConfig()
        self.store = EventStore(db_path, synchronous=synchronous, clock=clock_ns or time.time_ns, create=create)
        self._writer = BatchingWriter(self.store, max_delay=writer_max_delay)
        self._scheduler = Scheduler()
        self._latency_clock = clock_ns or time.monotonic_ns
        self._id_factory = id_factory
        self._retry_policy = retry_policy or RetryPolicy()
        self._lock = threading.RLock()
        self._running: dict[str, _Running] = {}
        self._stopped_participants: list[pykka.ActorRef] = []
        self._states: dict[str, tuple[int, SessionState]] = {}
        # Single flight: concurrent first readers of a session wait for one fold instead of each
        # folding it all. Striped rather than one lock per id, so that ids nobody has (asked for
        # over HTTP, say) leave nothing behind.
        self._fold_locks = tuple(threading.Lock() for _ in range(_FOLD_LOCK_STRIPES))
        self._summaries: ProjectionRunner | None = None
        self._pool_healths: dict[str, PoolHealth] = {}
        self._pool_clock = pool_clock
        self._inline_specs = _InlineSpecs()
        # Held while a new human joins (count, then join), so concurrent joins cannot pass the cap together.
        self._joins_lock = threading.Lock()
        self._closed = False
        #: This engine's name in the session leases it holds (``host:pid:token``).
        self.owner = engine_owner_id()
        self._leases = SqliteLeases(self.store, clock=lease_clock)
        self._lease_ttl = float(lease_ttl)
        self._close_timeout = close_timeout
        self._held: set[str] = set()  # sessions whose lease this engine holds
        self._renewer: threading.Thread | None = None  # runs while this engine holds a lease
        self._renewer_wake = threading.Event()  # set when the last lease goes, or on close

    # -- creating -------------------------------------------------------------------------------

    def create_session(
        self,
        goal: str,
        participants: Iterable[str | ParticipantSpec | Mapping[str, Any]] | None = None,
        title: str | None = None,
        *,
        constraints: Iterable[str] = (),
        settings: Mapping[str, Any] | None = None,
        trusted: bool = True,
        **overrides: Any,
    ) -> str:
        """Record a new session and return its id. Nothing runs until ``deliberate`` or ``run_round``.

        Every provider is built once here, so an unknown provider, a bad option or a
        missing API key fails now, before anything is written. ``settings`` (a mapping)
        and ``overrides`` (keywords, which win) are session settings (``max_rounds=3``,
        ``seed=7``...); any other name is a ConfigError.

        ``trusted=False`` is for callers from outside (the HTTP server): each participant
        must then be one the operator configured (``forge_actors.trust``), checked before
        anything is built; the CLI and the Python API are trusted and keep full specs.
        A key given in a trusted spec (``?api_key=...``) is used for the life of this engine
        and never recorded. At most ``config.max_participants`` participants.
        """
        self._check_open()
        if not isinstance(goal, str) or not goal.strip():
            raise ConfigError("the goal is empty: say what the participants should work on")
        given = list(participants) if participants is not None else list(self.config.participants)
        self._check_participant_count(len(given))
        specs = [participant_spec(p) for p in given]
        if not specs:
            raise ConfigError("a session needs participants: give specs such as mock:alice or anthropic:MODEL")
        chosen = session_settings(self.config.settings, {**self._settings_mapping(settings), **overrides})
        if not trusted:
            for spec in specs:
                check_untrusted_participant(self.config, spec)
        infos, full_specs = self._participant_infos(specs)
        ai_names = [p.name for p in infos if p.kind == "ai"]
        if chosen.synthesizer is not None and chosen.synthesizer not in ai_names:
            raise ConfigError(f"synthesizer {chosen.synthesizer!r} is not an AI participant ({', '.join(ai_names)})")
        session_id = self._id_factory()
        created = SessionCreated(session_id, title or _default_title(goal), goal, chosen, tuple(infos),
                                 tuple(str(c) for c in constraints))
        self.store.append(session_id, [as_new_event(created)], expected_version=NO_STREAM)
        for name, parsed in full_specs.items():
            self._inline_specs.remember(session_id, name, parsed)
        return session_id

    @staticmethod
    def _settings_mapping(settings: Mapping[str, Any] | None) -> Mapping[str, Any]:
        if settings is None:
            return {}
        if not isinstance(settings, Mapping):
            raise ConfigError(f"settings are a mapping of setting names to values, not {type(settings).__name__}")
        return settings

    def _check_participant_count(self, count: int) -> None:
        cap = self.config.max_participants
        if count > cap:
            raise ConfigError(f"{count} participants: a session takes at most {cap}; {self._raise_the_cap()}")

    def _raise_the_cap(self) -> str:
        return f"to allow more, raise max_participants under [forge] in {self.config.source or 'forge.toml'}"

    def _participant_infos(self, specs: list[ParticipantSpec]) -> tuple[list[ParticipantInfo], dict[str, ProviderSpec]]:
        """Each participant as recorded (unique names, specs without keys), and the full
        specs of those whose spec carried a key (kept in memory only, by name)."""
        infos: list[ParticipantInfo] = []
        full_specs: dict[str, ProviderSpec] = {}
        taken: set[str] = set()
        for spec in specs:
            parsed: ProviderSpec | None = None
            if spec.kind == "human":
                if not spec.name:
                    raise ConfigError("a human participant needs a name")
                name, provider, model = spec.name, "", ""
            else:
                parsed, replies = replies_option(parse_spec(spec.spec), spec.replies)
                if not self.config.provider_enabled(parsed.provider):
                    raise ConfigError(f"provider {parsed.provider} is disabled in {self.config.source or 'the config'}: "
                                      f"set enabled = true under [forge.providers.{parsed.provider}]")
                built = self._provider_for_spec(str(parsed))  # fails now on a bad option or missing key
                replies = resolve_replies(replies, built)
                built.close()
                name, provider, model = spec.name or parsed.model, str(parsed.redacted()), parsed.model
            if name in taken:
                if spec.name:
                    raise ConfigError(f"two participants are named {name!r}: give each its own name")
                name = next(f"{name}-{n}" for n in itertools.count(2) if f"{name}-{n}" not in taken)
            taken.add(name)
            if parsed is not None and parsed.has_secrets:
                full_specs[name] = parsed
            infos.append(ParticipantInfo(name, spec.kind, provider, model, spec.persona,
                                         replies if spec.kind == "ai" else "text"))
        return infos, full_specs

    def _provider_for_spec(self, spec: str) -> Provider:
        parsed = parse_spec(spec)
        # The engine retries failed attempts itself, so that each retry is a fact in the log;
        # a spec that sets max_retries keeps its own.
        defaults: dict[str, Any] = {"max_retries": 0, **self.config.options_for(parsed.provider, parsed.model)}
        if parsed.provider == "pool":
            defaults["health"] = self._pool_health(parsed.model)
            defaults["member_factory"] = self._provider_for_spec  # members get the config's defaults too
        return get_provider(parsed, **{k: v for k, v in defaults.items() if k not in parsed.options})

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

    def _provider_for(self, info: ParticipantInfo, session_id: str | None = None) -> Provider:
        """The provider of a recorded participant: its recorded spec, with the key it was given
        in this engine merged back (``_InlineSpecs``) when there was one."""
        if info.provider.startswith(REPLAY_PREFIX):
            source = info.provider[len(REPLAY_PREFIX):]
            return replay_provider(self.events(source), info.name, info.model)
        full = self._inline_specs.full_spec(session_id, info.name, info.provider) if session_id else None
        try:
            return self._provider_for_spec(full or info.provider)
        except MissingApiKeyError as missing:
            raise ParticipantKeyMissingError(info.name, info.provider, missing.provider, missing.env_var) from None

    # -- running ---------------------------------------------------------------------------------

    def deliberate(self, session_id: str, from_position: int = 0) -> Iterator[RecordedEvent]:
        """Run the session to its end (resuming it if a process stopped mid-way) and return
        its committed events, from ``from_position`` on, live, until SessionEnded.

        The deliberation starts at once; iterating is only watching it.
        """
        session = self._attach(session_id)
        if session is not None:
            session.tell(Deliberate())
        return self._follow(session_id, from_position)

    def resume(self, session_id: str) -> Iterator[RecordedEvent]:
        """Continue a session a stopped process left unfinished: what was in flight is recorded
        as abandoned and run again. Returns the events from now on, live, until it ends."""
        return self.deliberate(session_id, from_position=self.last_position())

    def run_round(self, session_id: str, kind: RoundKind, timeout: float | None = None) -> RoundState:
        """Run one round of ``kind`` and return how it went. Raises InvalidCommandError when the
        round does not fit the session now (e.g. convergence before any synthesis)."""
        return self.start_round(session_id, kind)[1].result(timeout)

    def start_round(self, session_id: str, kind: RoundKind) -> tuple[int, Future]:
        """Start one round of ``kind`` without waiting: (its number, a Future of its RoundState).
        Raises InvalidCommandError at once when the round does not fit."""
        if kind not in ROUND_KINDS:
            raise ConfigError(f"unknown round kind {kind!r}; the kinds are {', '.join(ROUND_KINDS)}")
        done: Future = Future()
        return self._command(session_id, RunRound(kind, done)), done

    def add_human_draft(self, session_id: str, author: str, content: str) -> int:
        """Add a human's draft (joining the draft round, or the first one to come); returns its round.
        A new human joins only while the session has fewer than ``config.max_participants``."""
        return self._human_command(session_id, author, AddHumanDraft(author, content))

    def cast_vote(self, session_id: str, voter: str, vote: VoteChoice, reasons: Iterable[str] = (),
                  concerns: Iterable[str] = ()) -> int:
        """A human's vote on the current synthesis; returns the convergence round it counts in.
        A new human joins only while the session has fewer than ``config.max_participants``."""
        vote_cast = CastVote(voter, str(vote).upper(), tuple(reasons), tuple(concerns))  # type: ignore[arg-type]
        return self._human_command(session_id, voter, vote_cast)

    def _human_command(self, session_id: str, name: str, message: Any) -> Any:
        """Send a human's command; one from a human not yet in the session joins it, so the
        participant cap is checked first (under a lock: two joins cannot both take the last seat)."""
        state = self.state(session_id)
        if name in state.participants or state.ended:  # no new seat (an ended session says so itself)
            return self._command(session_id, message)
        with self._joins_lock:
            participants = self.state(session_id).participants
            count = len(participants)
            if name not in participants and count >= self.config.max_participants:
                raise InvalidCommandError(
                    f"session {session_id} is full ({count} participants, at most {self.config.max_participants}): "
                    f"{name} cannot join; {self._raise_the_cap()}"
                )
            return self._command(session_id, message)

    def cancel(self, session_id: str, reason: str = "cancelled by the user") -> SessionState:
        """End the session as cancelled; contributions in flight stop at once. No-op once ended."""
        session = self._attach(session_id)
        if session is not None:
            try:
                session.ask(CancelSession(reason))
            except pykka.ActorDeadError:  # it ended on its own meanwhile
                pass
        return self.state(session_id)

    def switch_provider(self, session_id: str, participant: str, spec: str, *, trusted: bool = True) -> SessionState:
        """Between rounds, move ``participant`` to the provider ``spec`` names (``ProviderSwitched``).

        The new provider is built first, so a bad spec or a missing key changes nothing.
        ``trusted=False`` (the HTTP server) allows only what the operator configured, as for
        ``create_session``; a key in a trusted spec is used for the life of this engine, never recorded.
        """
        if not trusted:
            check_untrusted_spec(self.config, spec)
        parsed, replies = replies_option(parse_spec(spec))
        if not self.config.provider_enabled(parsed.provider):
            raise ConfigError(f"provider {parsed.provider} is disabled in {self.config.source or 'the config'}")
        provider = self._provider_for_spec(str(parsed))
        try:
            self._command(session_id, SwitchProvider(participant, str(parsed.redacted()), parsed.model, provider,
                                                     resolve_replies(replies, provider)))
        except BaseException:
            provider.close()
            raise
        self._inline_specs.remember(session_id, participant, parsed)  # or forget the previous provider's key
        return self.state(session_id)

    def interrupt(self, session_id: str, reason: str = "interrupted by the user") -> SessionState:
        """Stop running the session here without ending it (what Ctrl-C does): what was in flight
        is recorded as abandoned, then ``SessionInterrupted``; ``resume`` continues it."""
        with self._lock:
            running = self._running.get(session_id)
        if running is not None:
            try:
                running.session.ask(Interrupt(reason))
            except pykka.ActorDeadError:  # it stopped on its own meanwhile: nothing left to interrupt
                pass
            # The actor stops itself after recording the interruption; wait (briefly) until it has,
            # so that its lease is released and a resume elsewhere can start right away.
            _stop_all([running.session], time.monotonic() + self._close_timeout)
        return self.state(session_id)

    def _command(self, session_id: str, message: Any) -> Any:
        """Ask the session's actor; a session that ended (even just now) is an InvalidCommandError."""
        for _ in range(2):
            session = self._attach(session_id)
            if session is None:
                break
            try:
                return session.ask(message)
            except pykka.ActorDeadError:  # it stopped between attach and ask: look again
                continue
        state = self.state(session_id)
        raise InvalidCommandError(f"the session has ended ({state.status}): {state.end_reason}")

    def _attach(self, session_id: str) -> pykka.ActorRef | None:
        """The session's actor, started from its log if no actor runs it; None once it has ended.

        Starting one takes the session's lease first: SessionBusyError when another engine holds it.
        """
        with self._lock:
            self._check_open()
            running = self._running.get(session_id)
            if running is not None and running.session.is_alive() and running.fence.lost is None:
                return running.session
            if running is not None:  # stopping right now: its participants still need joining on close
                self._stopped_participants += running.participants
            if self._load(session_id)[0].ended:  # an ended session needs no driver, hence no lease
                return None
            self._take_lease(session_id)
            try:
                return self._start_session(session_id)
            except BaseException:
                self._release_lease(session_id)
                raise

    def _start_session(self, session_id: str) -> pykka.ActorRef | None:
        """Under the lock, holding the lease: the session's actors, from the log as it stands now."""
        # Read after taking the lease: the previous driver's last events count in the version we start
        # from (a previous actor of ours may have appends queued, hence the flush).
        self._writer.flush()
        state, version = self._load(session_id)
        if state.ended:
            self._release_lease(session_id)
            return None
        participants: dict[str, pykka.ActorRef] = {}
        try:
            for info in state.participants.values():
                if info.kind == "ai":
                    participants[info.name] = ParticipantActor.start(
                        info.name, self._provider_for(info, session_id), self._latency_clock
                    )
        except BaseException:
            for ref in participants.values():
                ref.stop(block=False)
            raise
        fence = _LeaseFence(self._writer)
        session = SessionActor.start(
            state=state, version=version, writer=fence, participants=participants,  # type: ignore[arg-type]
            scheduler=self._scheduler, retry_policy=self._retry_policy, on_stopped=self._forget,
        )
        self._running[session_id] = _Running(session, list(participants.values()), fence)
        if state.status in ("running", "interrupted") or state.streaming:
            session.tell(Recover())
        return session

    def _forget(self, session_id: str, urn: str) -> None:
        """Called by a session actor as it stops (only its own entry goes: a successor may be registered)."""
        with self._lock:
            running = self._running.get(session_id)
            if running is not None and running.session.actor_urn == urn:
                del self._running[session_id]
                self._stopped_participants = [r for r in self._stopped_participants if r.is_alive()]
                self._stopped_participants += running.participants
                if running.fence.lost is None:
                    self._release_lease(session_id)

    def running_sessions(self) -> list[str]:
        """The sessions this engine drives now (their actors run here)."""
        with self._lock:
            return [sid for sid, running in self._running.items() if running.session.is_alive()]

    # -- leases: one driver per session ----------------------------------------------------------

    def lease_holder(self, session_id: str) -> Lease | None:
        """Who drives the session now (any engine on this log), None when nobody does. Writes nothing."""
        return self._leases.holder(_lease_name(session_id))

    def _take_lease(self, session_id: str) -> None:
        """Under the lock. Takes (or keeps) the session's lease; SessionBusyError if another engine holds it."""
        try:
            self._leases.acquire(_lease_name(session_id), self.owner, self._lease_ttl, stale=owner_is_dead_here)
        except LeaseHeldError as held:
            raise SessionBusyError(session_id, held.owner, held.expires_in) from None
        self._held.add(session_id)
        if self._renewer is None:
            self._renewer = threading.Thread(target=self._renew_leases, name="forge-lease-renewer", daemon=True)
            self._renewer.start()

    def _release_lease(self, session_id: str) -> None:
        """Under the lock. What our actors queued is committed first, so that the next driver reads it."""
        if session_id not in self._held:
            return
        self._held.discard(session_id)
        if not self._held:
            self._renewer_wake.set()  # nothing left to renew: let the thread end now
        try:
            self._writer.flush()
            self._leases.release(_lease_name(session_id), self.owner)
        except EventStoreError as exc:  # e.g. the log is closed; the lease then simply expires
            logger.warning("could not release the lease of session %s (it expires in %g s): %s",
                           session_id, self._lease_ttl, exc)

    def _renew_leases(self) -> None:
        """The renewal thread: every third of the ttl, renew each lease held; act on any found lost.
        It ends when the engine holds no lease any more (the next lease taken starts another)."""
        while True:
            self._renewer_wake.wait(self._lease_ttl / 3)
            with self._lock:
                self._renewer_wake.clear()
                if self._closed or not self._held:
                    self._renewer = None
                    return
                held = sorted(self._held)
            for session_id in held:
                with self._lock:
                    if session_id not in self._held or self._closed:
                        continue
                    try:
                        self._leases.renew(_lease_name(session_id), self.owner, self._lease_ttl)
                    except LeaseLostError as lost:
                        self._lease_lost(session_id, lost)
                    except Exception:  # e.g. the database stayed locked past busy_timeout: the next turn tries again
                        logger.exception("could not renew the lease of session %s", session_id)

    def _lease_lost(self, session_id: str, lost: LeaseLostError) -> None:
        """Under the lock. Another engine took the session (this process was paused past its lease, or
        its renewals failed): stop our actors, and let them write nothing more."""
        self._held.discard(session_id)
        running = self._running.get(session_id)
        logger.error("session %s: %s; stopping its actors here without writing more", session_id, lost)
        if running is not None:
            running.fence.lost = lost
            running.session.stop(block=False)

    def _follow(self, session_id: str, from_position: int) -> Iterator[RecordedEvent]:
        """The session's events after ``from_position`` until SessionEnded. Live ones are handed
        over by the writer as they commit; the 0.25 s wait is only how often it looks whether the
        session stopped without ending."""
        if self._ended_before(session_id, from_position):
            return  # opened at or past the end of an ended session
        subscription = self.subscribe(session_id, from_position)
        try:
            while True:
                recorded = subscription.poll(0.25)
                if recorded is not None:
                    yield recorded
                    if isinstance(recorded.event, SessionEnded):
                        return
                    continue
                if subscription.closed:
                    raise SessionStoppedError("the engine was closed while following the session")
                if session_id not in self.running_sessions():
                    # Stopped: whatever it wrote is readable now; after that, it either ended or stopped short.
                    for recorded in iter(lambda: subscription.poll(0), None):
                        yield recorded
                        if isinstance(recorded.event, SessionEnded):
                            return
                    if self.state(session_id).ended:
                        return
                    lost = self._writer.write_failure(session_id)
                    if lost is not None:  # the log could not take its appends: say why, as the store did
                        raise _write_failure_for(lost, session_id)
                    raise SessionStoppedError(
                        f"session {session_id} stopped before it ended; its log is intact: resume it"
                    )
        finally:
            subscription.close()

    def _ended_before(self, session_id: str, position: int) -> bool:
        """Whether the session ended at or before log position ``position``: its last event is
        SessionEnded and nothing of it comes after ``position``. Reads one row, folds nothing (a
        follower of a live session must not pay for a fold of everything it is about to stream)."""
        version = self.store.stream_version(session_id)
        if version == 0 or self.store.version_at(session_id, position) < version:
            return False
        last = next(self.store.read_stream(session_id, after_version=version - 1), None)
        return last is not None and last.type == SessionEnded.__name__

    # -- reading -----------------------------------------------------------------------------------

    def state(self, session_id: str) -> SessionState:
        """The session as its committed events fold it."""
        return self._load(session_id)[0]

    def _load(self, session_id: str) -> tuple[SessionState, int]:
        """The cached (state, version) of the session, extended by what was committed since.

        One fold at a time per session: whoever comes while it runs waits for it, then only
        reads what was committed after it (usually nothing)."""
        with self._fold_locks[hash(session_id) % _FOLD_LOCK_STRIPES]:
            with self._lock:
                version, state = self._states.get(session_id, (0, SessionState()))
            for recorded in self.store.read_stream(session_id, after_version=version, codec=decode_event):
                state = apply(state, recorded.event)
                version = recorded.version
            if version == 0:
                raise SessionNotFoundError(session_id)
            with self._lock:
                cached = self._states.get(session_id)
                if cached is None or cached[0] < version:
                    self._states[session_id] = (version, state)
        return state, version

    def sessions(self) -> list[str]:
        """Every session id in the log, oldest first."""
        return [stream_id for stream_id, _ in self.store.streams()]

    def summaries(self) -> list[SessionSummary]:
        """One row per session (title, status, rounds, tokens), from a projection kept up to date here."""
        with self._lock:
            try:
                if self._summaries is None:
                    self._summaries = ProjectionRunner(self.store, SummaryProjection())
                self._summaries.catch_up()
            except LogWriteError as exc:  # e.g. a full disk: the log is still there to read
                logger.warning("could not save the session summaries in %s (%s); read them from the log instead",
                               exc.path, exc.reason)
                return _summaries_without_writing(self.store)
        return read_summaries(self.store)

    def resolve(self, prefix: str) -> str:
        """The session id ``prefix`` names: itself, or the only id that starts with it (like git)."""
        if self.store.stream_version(prefix) > 0:
            return prefix
        matches = [sid for sid in self.sessions() if sid.startswith(prefix)] if prefix else []
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise SessionNotFoundError(prefix, f"{len(matches)} sessions start with {prefix!r} "
                                               f"({', '.join(matches[:5])}); give more of the id")
        raise SessionNotFoundError(prefix)

    def _require(self, session_id: str) -> None:
        """SessionNotFoundError unless the log holds the session."""
        if self.store.stream_version(session_id) == 0:
            raise SessionNotFoundError(session_id)

    def verify(self, session_id: str) -> list[Violation]:
        """The log's invariants, checked on this session (empty list: sound)."""
        self._require(session_id)
        return verify(self.store.read_stream(session_id, codec=decode_event))

    def usage(self, session_id: str) -> UsageReport:
        """Tokens and estimated cost per participant, per round and in all."""
        return usage_report(self.state(session_id), self.config.pricing)

    def providers(self, names: Iterable[str] | None = None, timeout: float = 3.0) -> list[ProviderProbe]:
        """Each provider's key (present or not, never its value), base URL, reachability, Ollama's models."""
        return probe_providers(self.config, names, timeout, self.pool_health())

    def default_participants(self, environ: Mapping[str, str] = os.environ) -> tuple[list[ParticipantSpec], str]:
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

    def events(self, session_id: str) -> list[Event]:
        """Every event of the session, decoded, in order."""
        events = [r.event for r in self.store.read_stream(session_id, codec=decode_event)]
        if not events:
            raise SessionNotFoundError(session_id)
        return events

    def subscribe(self, session_id: str, from_position: int = 0, *, decoded: bool = True) -> Subscription:
        """The session's committed events after ``from_position``: stored ones, then live ones.

        ``decoded=False`` leaves ``.event`` empty: for relays that only pass the JSON on
        (``.data``, ``.type``) and need not pay for decoding every event.
        """
        self._require(session_id)
        return self.store.subscribe(from_position, stream_id=session_id, codec=decode_event if decoded else None)

    def last_position(self) -> int:
        """The position of the last event committed to the log (any session)."""
        return self.store.last_position()

    def version_at(self, session_id: str, position: int) -> int:
        """How many events of the session the log held as of ``position``."""
        return self.store.version_at(session_id, position)

    def events_page(self, session_id: str, after_version: int, limit: int = 500, *,
                    decoded: bool = False) -> list[RecordedEvent]:
        """Up to ``limit`` committed events of the session after its version ``after_version``."""
        records = self.store.read_stream(session_id, after_version, codec=decode_event if decoded else None,
                                         page_size=limit)
        return list(itertools.islice(records, limit))

    def replay(self, session_id: str, speed: float = 1.0, *,
               sleep: Callable[[float], None] = time.sleep, max_pause: float | None = None) -> Iterator[RecordedEvent]:
        """The recorded events again, paced as they were recorded, ``speed`` times faster
        (``speed=0``: no pauses). ``max_pause`` caps any one pause (idle time between steps)."""
        if speed < 0:
            raise ConfigError("speed must be 0 (as fast as possible) or more")
        self._require(session_id)
        return self._paced(self.store.read_stream(session_id, codec=decode_event), speed, sleep, max_pause)

    @staticmethod
    def _paced(records: Iterator[RecordedEvent], speed: float, sleep: Callable[[float], None],
               max_pause: float | None) -> Iterator[RecordedEvent]:
        previous: int | None = None
        for recorded in records:
            if speed > 0 and previous is not None:
                pause = max(0, recorded.recorded_at - previous) / 1e9 / speed
                if max_pause is not None:
                    pause = min(pause, max_pause)
                if pause > 0:
                    sleep(pause)
            previous = recorded.recorded_at
            yield recorded

    def rerun(self, session_id: str, *, wait: bool = True, timeout: float | None = None) -> str:
        """Run a recorded session again with every AI participant answered from its recording.

        The new session sends the same prompts and gets the same answers, so it records the
        same events (ids, timestamps and latencies aside). It runs the original's rounds, in
        order, and ends as the original ended (an original left open leaves the re-run open
        after the same rounds). Human drafts given before the first round are carried over.
        Returns the new session's id once it is done; with ``wait=False`` at once (watch it
        with ``subscribe``).
        """
        events = self.events(session_id)
        created = events[0]
        if not isinstance(created, SessionCreated):
            raise ConfigError(f"session {session_id} does not start with SessionCreated; it cannot be re-run")
        plan = tuple(e.kind for e in events if isinstance(e, RoundStarted))
        ended = next((e for e in reversed(events) if isinstance(e, SessionEnded)), None)
        before_rounds: list[Event] = []
        for event in events[1:]:
            if isinstance(event, RoundStarted):
                break
            if isinstance(event, (ParticipantAdded, HumanDraftAdded)):
                before_rounds.append(event)
        new_id = self._id_factory()
        participants = tuple(
            msgspec.structs.replace(p, provider=REPLAY_PREFIX + session_id) if p.kind == "ai" else p
            for p in created.participants
        )
        new_created = msgspec.structs.replace(created, session_id=new_id, participants=participants)
        self.store.append(new_id, [as_new_event(e) for e in (new_created, *before_rounds)], expected_version=NO_STREAM)
        session = self._attach(new_id)
        assert session is not None
        cancel_reason = ended.reason if ended is not None and ended.outcome == "cancelled" else None
        done: Future = Future()
        session.tell(Deliberate(plan, cancel_reason, done))
        if wait:
            done.result(timeout)
        return new_id

    # -- lifecycle -------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise SessionStoppedError("this Forge is closed")

    def close(self) -> None:
        """Stop every actor (contributions in flight stop at once), commit what is queued, release
        the leases, close the log. Returns within about ``close_timeout`` seconds: an actor that
        has not stopped by then (a provider ignoring abort) is logged and left behind.

        Sessions still running stay unfinished in the log; ``resume`` continues them later.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            running = list(self._running.values())
        self._renewer_wake.set()
        deadline = time.monotonic() + self._close_timeout
        # Sessions first: a participant stopped under a running session would fail its round.
        _stop_all([entry.session for entry in running], deadline)
        with self._lock:
            participants = [ref for entry in running for ref in entry.participants] + self._stopped_participants
        # A stopped session's participants are in both lists (its _forget moved them): each once.
        _stop_all(list({ref.actor_urn: ref for ref in participants}.values()), deadline)
        self._scheduler.close()
        self._writer.close()  # from here on nothing of ours reaches the log: the leases can go
        with self._lock:
            for session_id in sorted(self._held):
                self._release_lease(session_id)
            renewer = self._renewer
        if renewer is not None:
            renewer.join(timeout=max(0.0, deadline - time.monotonic()))
        self.store.close()

    def __enter__(self) -> Forge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> str:
        """The event log file."""
        return self.store.path

    def __repr__(self) -> str:
        return f"Forge({self.store.path!r})"
