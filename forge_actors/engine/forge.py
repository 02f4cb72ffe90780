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
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from typing import Any

import msgspec
import pykka

from eventstore import (
    NO_STREAM,
    BatchingWriter,
    EventLog,
    Lease,
    Letter,
    LogLeases,
    LogMailbox,
    RecordedEvent,
    Subscription,
    open_log,
)
from forge_actors.actors.messages import (
    CancelSession,
    Deliberate,
    Interrupt,
    RunRound,
    SwitchProvider,
)
from forge_actors.core.audit import ForkCheck, Violation, check_fork, verify
from forge_actors.core.compare import Comparison, compare_sessions
from forge_actors.core.errors import (
    ConfigError,
    ForgeError,
    InvalidCommandError,
    SessionBusyError,
    SessionNotFoundError,
    UnknownPriceError,
)
from forge_actors.core.evaluation import EvalReport, EvalSystem, EvalTask, EvaluationTaskScored
from forge_actors.core.events import (
    ROUND_KINDS,
    Event,
    ParticipantInfo,
    Price,
    ProviderSwitched,
    RoundKind,
    SessionCreated,
    SessionForked,
    TraceContext,
    VoteChoice,
)
from forge_actors.core.pricing import price_of
from forge_actors.core.records import EVENT_CODEC, to_record, to_records
from forge_actors.core.rounds import with_log_limits
from forge_actors.core.state import RoundState, SessionState
from forge_actors.core.usage import UsageReport, usage_report
from forge_actors.engine import evaluation, forking, live, mail, replay
from forge_actors.engine.config import (
    DEFAULT_COUNCIL,
    ForgeConfig,
    ParticipantSpec,
    participant_spec,
    session_settings,
)
from forge_actors.engine.errors import provider_setup_errors
from forge_actors.engine.history import LogHistory, final_synthesis_from
from forge_actors.engine.participants import Participants
from forge_actors.engine.states import StateCache
from forge_actors.engine.summaries import SessionSummary, Summaries
from forge_actors.engine.supervisor import Supervisor
from forge_actors.engine.toolboxes import Toolboxes, resolve_workspace
from forge_actors.engine.trust import (
    check_untrusted_fork,
    check_untrusted_human,
    check_untrusted_session,
    check_untrusted_spec,
    check_untrusted_text,
    untrusted_fork_inheritance,
)
from forge_actors.providers.pool import MemberHealth
from forge_actors.providers.probe import ProviderProbe
from forge_actors.providers.retry import RetryPolicy
from forge_actors.tools import HistoryHit

logger = logging.getLogger(__name__)

#: Seconds a session's lease lasts unless its engine renews it (every third of that): after a
#: crash, how long an engine on another host waits before it may resume the session.
DEFAULT_LEASE_TTL = 6.0
#: Seconds ``Forge.close()`` waits, in all, for every actor to stop.
DEFAULT_CLOSE_TIMEOUT = 1.0


def new_session_id() -> str:
    return uuid.uuid4().hex[:12]


def _default_title(goal: str) -> str:
    first_line = goal.strip().splitlines()[0] if goal.strip() else ""
    return first_line if len(first_line) <= 80 else first_line[:77] + "..."


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
        mail_timeout: float | None = None,
    ) -> None:
        """``clock_ns`` stamps events and times contributions (inject one for repeatable logs);
        ``id_factory`` names new sessions; ``retry_policy`` paces retries of failed attempts;
        ``create=False`` refuses a path that is not an existing log (NotAnEventLogError).

        Driving a session (``deliberate``, ``resume``, a step, a draft, a vote, ``cancel``) takes
        its lease for ``lease_ttl`` seconds, renewed while this engine runs it; a session another
        engine drives raises SessionBusyError. ``lease_clock`` is wall-clock ns (kept apart from
        ``clock_ns``: leases are compared across processes). ``close()`` waits at most
        ``close_timeout`` seconds in all for the actors to stop. A human's draft or vote for a session
        another engine drives is posted to that engine, and waits ``mail_timeout`` seconds (default
        ``engine.mail.ANSWER_TIMEOUT``) for its answer."""
        if isinstance(lease_ttl, bool) or not isinstance(lease_ttl, (int, float)) or not 0 < lease_ttl < float("inf"):
            raise ConfigError(f"lease_ttl is a number of seconds > 0, not {lease_ttl!r}")
        self.config = config or ForgeConfig()
        # The log is the engine's own: callers read it through the queries below, never directly.
        # A file path is a SQLite log, a postgresql:// URL a PostgreSQL one (eventstore.open_log).
        self._store: EventLog = open_log(db_path, synchronous=synchronous, clock=clock_ns or time.time_ns,
                                         create=create)
        self._writer = BatchingWriter(self._store, max_delay=writer_max_delay)
        self._id_factory = id_factory
        self._states = StateCache(self._store)
        self._summaries = Summaries(self._store)
        self._participants = Participants(self.config, pool_clock)
        self._mailbox = LogMailbox(self._store, clock=lease_clock)
        self._history = LogHistory(self._store, final_synthesis_from(self.state))
        self._toolboxes = Toolboxes(self.config.tools, self._store.path, self._history.for_session)
        self._supervisor = Supervisor(
            writer=self._writer, leases=LogLeases(self._store, clock=lease_clock), load=self._states.load,
            provider_for=lambda info, session_id: self._participants.for_recorded(info, session_id, self.events),
            tools_for=lambda info, session_id, state, provider: self._toolboxes.runner(
                info, session_id, state.settings, provider, self.events),
            retry_policy=retry_policy or RetryPolicy(), latency_clock=clock_ns or time.monotonic_ns,
            lease_ttl=float(lease_ttl), close_timeout=close_timeout,
            mailbox=self._mailbox, deliver=self._deliver_letter,
            recorded_similarities=lambda state: replay.recorded_similarities(state, self.events),
        )
        self._mail_timeout = mail_timeout
        self._lease_ttl = float(lease_ttl)
        # Held while a new human joins (count, then join), so concurrent joins cannot pass the cap together.
        self._joins_lock = threading.Lock()
        # Set by engine.tracing: the trace a new session's spans join (the caller's current span).
        self._trace_context_source: Callable[[], TraceContext | None] | None = None
        # Set by engine.tracing: told of each session this engine drives, as it attaches it.
        self._on_drive: Callable[[str], None] | None = None

    @property
    def owner(self) -> str:
        """This engine's name in the session leases it holds (``host:pid:token``)."""
        return self._supervisor.owner

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
        tools: str = "",
        council: str | None = None,
        start: bool = False,
        **overrides: Any,
    ) -> str:
        """Record a new session and return its id. Nothing runs until ``deliberate`` or ``run_round``,
        unless ``start``: then it starts deliberating too, and either both happen or nothing is
        recorded (see below).

        Every provider is built once here, so an unknown provider, a bad option or a
        missing API key fails now, before anything is written. ``settings`` (a mapping)
        and ``overrides`` (keywords, which win) are session settings (``max_iterations=3``,
        ``seed=7``...); any other name is a ConfigError.

        Who deliberates: ``participants``; or ``council``, a ``[forge.councils.NAME]`` of the
        operator's, whose participants, settings and tools are the base the arguments add to;
        or, with neither, the operator's defaults (a trusted caller: the config's participants;
        an untrusted one: the council ``forge`` if configured, else ``default_participants()``).

        ``trusted=False`` is for callers from outside (HTTP, WebSocket, MCP, ``/v1``): every field
        the caller gave is checked by ``engine.trust`` before anything is built — its texts
        against their caps, its settings (never the workspace; limits no higher than the
        operator's), its tools, and each participant it names (only what the operator configured).
        Participants and settings the operator chose (a council, the defaults) are used as written.
        The CLI and the Python API are trusted and keep full specs. A key given in a trusted spec
        (``?api_key=...``) is used for the life of this engine and never recorded. At most
        ``config.max_participants`` participants.

        ``tools`` (``"file,search,git"``: tool and category names) is what AI participants whose
        spec names no tools of its own may call, over the ``workspace`` setting's folder
        (recorded as an absolute path).

        With ``start``, the session's lease is taken before anything is recorded, so that a log
        that refuses writes (a full disk) fails the call with nothing recorded, and once the
        session is recorded, its deliberation is started; if that start fails, the error raised
        carries the id as ``session_id`` (``deliberate`` or ``resume`` starts it later).
        """
        self._supervisor.check_open()
        if not isinstance(goal, str) or not goal.strip():
            raise ConfigError("the goal is empty: say what the participants should work on")
        asked = {**self._settings_mapping(settings), **overrides}
        constraints = tuple(constraints)  # iterables read once: checked, then recorded
        if participants is not None:
            participants = list(participants)
        if participants is not None and council is not None:
            raise ConfigError("give participants or a council, not both (a council names its own participants)")
        if not trusted and participants is None and council is None and DEFAULT_COUNCIL in self.config.councils:
            council = DEFAULT_COUNCIL
        # The operator's settings for this session: forge.toml's, and a council's on top. What an
        # untrusted caller asks for is held to these (it may lower a limit, not raise it).
        operator = self.config.settings
        chosen = self.config.council(council) if council is not None else None
        if chosen is not None:
            operator = session_settings(operator, chosen.settings)
        if not trusted:
            with provider_setup_errors():  # a spec the registry cannot even parse
                check_untrusted_session(self.config, goal=goal, title=title, constraints=constraints,
                                        participants=participants, settings=asked, tools=tools, operator=operator)
        if chosen is not None:
            tools = tools or chosen.tools  # the council's own tools are the operator's: used as written
        given: list[str | ParticipantSpec | Mapping[str, Any]]
        if participants is not None:
            given = participants
        elif chosen is not None:
            given = list(chosen.participants)
        else:
            given = list(self.config.participants) if trusted else list(self.default_participants()[0])
        self._check_participant_count(len(given))
        specs = [participant_spec(p) for p in given]
        if not specs:
            raise ConfigError("a session needs participants: give specs such as mock:alice or anthropic:MODEL")
        chosen_settings = with_log_limits(session_settings(operator, asked))
        chosen_settings = msgspec.structs.replace(chosen_settings, workspace=resolve_workspace(chosen_settings.workspace))
        infos, full_specs = self._participants.describe(specs, tools)
        ai_names = [p.name for p in infos if p.kind == "ai"]
        if chosen_settings.synthesizer is not None and chosen_settings.synthesizer not in ai_names:
            raise ConfigError(f"synthesizer {chosen_settings.synthesizer!r} is not an AI participant "
                              f"({', '.join(ai_names)})")
        prices = self._budget_prices(chosen_settings.max_cost_usd, infos)
        session_id = self._id_factory()
        created = SessionCreated(session_id, title or _default_title(goal), goal, chosen_settings, tuple(infos),
                                 tuple(str(c) for c in constraints), prices=prices, trace=self._trace_context())

        def record() -> None:
            self._store.append(session_id, [to_record(created)], expected_version=NO_STREAM)
            for name, parsed in full_specs.items():
                self._participants.inline_specs.remember(session_id, name, parsed)

        return self._new_session(session_id, record, start)

    def _trace_context(self) -> TraceContext | None:
        source = self._trace_context_source
        return source() if source is not None else None
    def _budget_prices(self, max_cost_usd: float | None, infos: list[ParticipantInfo]) -> dict[str, Price]:
        """With a cost budget: each AI participant's price at this engine's table, recorded so that the
        session is judged by it whatever the table says later. UnknownPriceError when one is unknown."""
        if max_cost_usd is None:
            return {}
        prices = {p.name: price_of(p.provider, p.model, self.config.pricing) for p in infos if p.kind == "ai"}
        unknown = sorted({info.model or info.provider for info in infos if info.kind == "ai" and prices[info.name] is None})
        if unknown:
            raise UnknownPriceError(unknown, self.config.source or "forge.toml")
        return {name: price for name, price in prices.items() if price is not None}

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

    def fork(
        self,
        session_id: str,
        at_round: int,
        participants: Iterable[str | ParticipantSpec | Mapping[str, Any]] = (),
        *,
        drop: Iterable[str] = (),
        settings: Mapping[str, Any] | None = None,
        constraints: Iterable[str] = (),
        humans: Iterable[str] = (),
        trusted: bool = True,
        start: bool = False,
        **overrides: Any,
    ) -> str:
        """Fork session ``session_id`` after its round ``at_round`` and return the new session's id.

        The new session holds a copy of the parent's events to the end of that round (its own id in
        the copy's SessionCreated), then ``SessionForked`` and the changes, all in one append: rounds
        1..``at_round`` cost no provider call, and the parent is only read (a running one goes on
        untouched). From round ``at_round`` + 1 it deliberates like any session (``deliberate``, or the
        steps), with these changes:

        - ``participants``: specs (as for ``create_session``) of participants that join at the next
          round; one named like a participant of the session moves it to that provider (the same one:
          no change). A joining participant needs no history of its own: every prompt carries what
          the session has (goal, constraints, the drafts it reviews, the latest synthesis and the
          concerns raised), the same for all;
        - ``drop``: names of participants that stop (asked, or waited for, no more; what they gave stays);
        - ``humans``: names of humans that join;
        - ``settings`` / ``overrides``: session settings changed (checked as create's);
        - ``constraints``: added to the parent's.

        ``trusted=False`` (HTTP, MCP): only what the operator allows, as for ``create_session``
        (``engine.trust.check_untrusted_fork``). With ``start`` it starts deliberating at once.
        Errors, with nothing written: SessionNotFoundError; ConfigError for a round past the end, a
        participant to drop that takes no part, a setting out of range, a bad spec; InvalidCommandError
        for a round still running or one that failed."""
        self._supervisor.check_open()
        asked = {**self._settings_mapping(settings), **overrides}
        given, dropped, joined = list(participants), [str(n) for n in drop], [str(n) for n in humans]
        added_constraints = tuple(constraints)
        if not trusted:
            with provider_setup_errors():
                check_untrusted_fork(self.config, participants=given, drop=dropped, humans=joined,
                                     constraints=added_constraints, settings=asked)
        self._require(session_id)
        cut = forking.cut_at(session_id, list(self._store.read_stream(session_id)), at_round)
        fork_settings = session_settings(cut.state.settings, asked)
        if fork_settings.workspace != cut.state.settings.workspace:
            fork_settings = msgspec.structs.replace(fork_settings, workspace=resolve_workspace(fork_settings.workspace))
        specs = [participant_spec(p) for p in given]
        specs += [participant_spec({"name": name, "kind": "human"}) for name in joined]
        self._check_participant_count(len(specs))  # before any is built: the fork has at least as many
        infos, full_specs = self._participants.describe(specs)
        changes = forking.participant_changes(cut.state, infos, dropped)
        spec_of = {info.name: spec.spec for spec, info in zip(specs, infos, strict=True)}
        moved = tuple(self._moved(cut.state, s.participant, spec_of[s.participant]) for s in changes.switched)
        changes = msgspec.structs.replace(changes, switched=moved)
        after = forking.taking_part(cut.state, changes)
        all_constraints = (*cut.state.constraints, *(str(c) for c in added_constraints))
        if not trusted:  # what the parent's creator chose, held to what this caller could ask for itself
            moved_names = {s.participant for s in changes.switched}
            keyed = [name for name in self._participants.inline_specs.keyed(session_id)
                     if name in {p.name for p in after} and name not in moved_names]
            server_workspace = self.config.settings.workspace
            fork_settings = untrusted_fork_inheritance(
                self.config, fork_settings, after, all_constraints, keyed,
                resolve_workspace(server_workspace) if server_workspace is not None else None)
        self._check_participant_count(len(after))
        ai_names = [p.name for p in after if p.kind == "ai"]
        if not ai_names:
            raise ConfigError("the fork would have no AI participant: keep one, or add one with a spec")
        if fork_settings.synthesizer is not None and fork_settings.synthesizer not in ai_names:
            raise ConfigError(f"synthesizer {fork_settings.synthesizer!r} is not an AI participant of the fork "
                              f"({', '.join(ai_names)})")
        prices = self._budget_prices(fork_settings.max_cost_usd, forking.asked_from_here(cut.state, changes))
        new_id = self._id_factory()
        events = forking.fork_events(cut, new_id, fork_settings, all_constraints, changes, prices)

        def record() -> None:
            self._store.append(new_id, events, expected_version=NO_STREAM)
            if trusted:  # a key its creator gave inline is never an API caller's (refused above)
                self._participants.inline_specs.inherit(session_id, new_id)
            for name, parsed in full_specs.items():
                self._participants.inline_specs.remember(new_id, name, parsed)

        return self._new_session(new_id, record, start)

    def _new_session(self, session_id: str, record: Callable[[], None], start: bool) -> str:
        """Record a new session (``record`` appends its opening events) and, with ``start``, drive it: the
        lease is taken before anything is recorded, so a session that cannot be driven here is not left
        behind half-started."""
        if not start:
            record()
            return session_id
        session = self._supervisor.attach_new(session_id, record)
        self._driving(session_id)
        session.tell(Deliberate())
        return session_id

    def _moved(self, state: SessionState, name: str, spec: str) -> ProviderSwitched:
        """A fork's move of participant ``name`` to the provider ``spec`` names, as ``switch_provider``
        records one (its tools stay; how it calls them follows the new provider)."""
        current = state.participants[name]
        switch = self._participants.switch(spec, current)
        switch.provider.close()  # built to check it: the fork's actors build their own
        return ProviderSwitched(name, str(switch.parsed.redacted()), switch.parsed.model, current.provider,
                                current.model, switch.replies, switch.tool_mode)

    def pool_health(self) -> dict[str, list[MemberHealth]]:
        """Each configured pool's members (as the pool labels them: never a key) and their health
        as this engine has seen it."""
        return self._participants.pool_health()

    # -- running ---------------------------------------------------------------------------------

    def deliberate(self, session_id: str, from_position: int = 0) -> Iterator[RecordedEvent]:
        """Run the session to its end (resuming it if a process stopped mid-way) and return
        its committed events, from ``from_position`` on, live, until SessionEnded.

        The deliberation starts at once; iterating is only watching it.
        """
        self.start(session_id)
        return self._follow(session_id, from_position)

    def start(self, session_id: str) -> bool:
        """Start (or resume) the session's deliberation in the background without following it
        (no subscription is left behind, as an unread ``deliberate`` iterator would leave one).
        False when the session has already ended; a running one just goes on."""
        session = self._attach(session_id)
        if session is None:
            return False
        session.tell(Deliberate())
        return True

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

    def add_human_draft(self, session_id: str, author: str, content: str, *, trusted: bool = True) -> int:
        """Add a human's draft (joining the draft round, or the first one to come); returns its round.
        A new human joins only while the session has fewer than ``config.max_participants``.
        ``trusted=False`` (a caller from outside) holds the name and the draft to their caps
        (``engine.trust.TEXT_CAPS``).

        A session another engine drives gets the draft through its mailbox (``engine.mail``): that
        engine applies it with the same checks and this call returns what it answered (or raises
        HumanInputQueuedError when it did not answer in time: the draft then waits for it)."""
        if not trusted:
            check_untrusted_human(author, draft=content)
        return self._human_input(session_id, mail.HumanRequest("draft", author, content=content))

    def cast_vote(self, session_id: str, voter: str, vote: VoteChoice, reasons: Iterable[str] = (),
                  concerns: Iterable[str] = (), *, trusted: bool = True) -> int:
        """A human's vote on the current synthesis; returns the convergence round it counts in.
        A new human joins only while the session has fewer than ``config.max_participants``.
        ``trusted=False`` holds the name, reasons and concerns to their caps."""
        reasons, concerns = tuple(reasons), tuple(concerns)
        if not trusted:
            check_untrusted_human(voter, reasons=reasons, concerns=concerns)
        request = mail.HumanRequest("vote", voter, vote=str(vote), reasons=reasons, concerns=concerns)
        return self._human_input(session_id, request)

    def _human_input(self, session_id: str, request: mail.HumanRequest) -> int:
        """Apply a human's input here, or post it to the engine that drives the session."""
        try:
            return self._human_command(session_id, request.name, request.command())
        except SessionBusyError as busy:  # another engine drives it: post the input to it
            timeout = self._mail_timeout if self._mail_timeout is not None else mail.ANSWER_TIMEOUT
            return mail.post_and_wait(self._mailbox, session_id, request, busy, timeout)

    def _deliver_letter(self, session_id: str, letter: Letter) -> str:
        """Apply a human's input another engine posted to a session driven here; the answer it waits for."""
        try:
            request = msgspec.json.decode(letter.payload, type=mail.HumanRequest)
            answer = mail.HumanAnswer(True, self._human_command(session_id, request.name, request.command()))
        except (ForgeError, msgspec.DecodeError, msgspec.ValidationError) as refused:
            answer = mail.HumanAnswer(False, error=str(refused))
        return msgspec.json.encode(answer).decode()

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

    def cancel(self, session_id: str, reason: str = "cancelled by the user", *, trusted: bool = True) -> SessionState:
        """End the session as cancelled; contributions in flight stop at once. No-op once ended.
        ``trusted=False`` holds the reason to its cap."""
        if not trusted:
            check_untrusted_text("reason", reason)
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
            with provider_setup_errors():
                check_untrusted_spec(self.config, spec)
        state = self.state(session_id)
        current = state.participants.get(participant)
        if current is None or current.kind != "ai":
            raise InvalidCommandError(f"{participant} is not an AI participant of session {session_id}")
        switch = self._participants.switch(spec, current)
        try:
            switched = msgspec.structs.replace(current, provider=str(switch.parsed.redacted()), model=switch.parsed.model)
            price = self._budget_prices(state.settings.max_cost_usd, [switched]).get(participant)
            self._command(session_id, SwitchProvider(participant, str(switch.parsed.redacted()), switch.parsed.model,
                                                     switch.provider, switch.replies, switch.tool_mode, price))
        except BaseException:
            switch.provider.close()
            raise
        # Keep the new spec's key in memory, or forget the previous provider's.
        self._participants.inline_specs.remember(session_id, participant, switch.parsed)
        return self.state(session_id)

    def interrupt(self, session_id: str, reason: str = "interrupted by the user") -> SessionState:
        """Stop running the session here without ending it (what Ctrl-C does): what was in flight
        is recorded as abandoned, then ``SessionInterrupted``; ``resume`` continues it."""
        session = self._supervisor.running_session(session_id)
        if session is not None:
            try:
                session.ask(Interrupt(reason))
            except pykka.ActorDeadError:  # it stopped on its own meanwhile: nothing left to interrupt
                pass
            # The actor stops itself after recording the interruption; wait (briefly) until it has,
            # so that its lease is released and a resume elsewhere can start right away.
            self._supervisor.wait_stopped(session_id, session)
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
        session = self._supervisor.attach(session_id)
        if session is not None:
            self._driving(session_id)
        return session

    def _driving(self, session_id: str) -> None:
        listener = self._on_drive
        if listener is not None:
            listener(session_id)

    def running_sessions(self) -> list[str]:
        """The sessions this engine drives now (their actors run here)."""
        return self._supervisor.running_sessions()

    def lease_holder(self, session_id: str) -> Lease | None:
        """Who drives the session now (any engine on this log), None when nobody does. Writes nothing."""
        return self._supervisor.lease_holder(session_id)

    @property
    def lease_ttl(self) -> float:
        """Seconds a session lease of this engine lasts unless renewed."""
        return self._lease_ttl

    # -- orphans: sessions a stopped engine left running ------------------------------------------

    def orphaned_sessions(self) -> list[str]:
        """Sessions nobody drives though they were deliberating: status "running" (a round had
        started; neither ended nor interrupted on purpose), their current round still in flight,
        their lease free, expired or left by a dead process of this host, and not driven here.

        Not orphans: sessions never started ("created"), interrupted ones (Ctrl-C, ``interrupt``,
        a server's stop: resumed on request only), and sessions stopped *between* rounds, which
        wait for a command (a step-driven session waiting for its human's next step, a human's
        draft or vote): a session driven step by step must not start deliberating on its own.
        The summaries projection picks the candidates (one table read); only those are folded.
        """
        here = set(self.running_sessions())
        orphans: list[str] = []
        for summary in self.summaries():
            session_id = summary.session_id
            if summary.status != "running" or session_id in here or self._supervisor.lease_is_live(session_id):
                continue
            current = self.state(session_id).current_round
            if current is not None and current.status == "running":
                orphans.append(session_id)
        return orphans

    def adopt_orphans(self) -> list[str]:
        """Resume every orphan here (``orphaned_sessions``), each as ``start`` does: its lease first,
        then what was in flight is recorded as abandoned and run again, and it deliberates to its
        end. Returns the sessions adopted. One another engine took first (SessionBusyError), or that
        ended meanwhile, is skipped; one that cannot run here (e.g. a provider this engine has no key
        for) is logged and skipped, and stays an orphan for an engine that can."""
        adopted: list[str] = []
        for session_id in self.orphaned_sessions():
            previous = self._supervisor.recorded_lease(session_id)
            try:
                if not self.start(session_id):
                    continue
            except SessionBusyError as busy:
                logger.info("session %s: not adopted, %s took it first", session_id, busy.owner)
                continue
            except ForgeError as refused:
                logger.warning("session %s: could not adopt it here: %s", session_id, refused)
                continue
            logger.info("adopted session %s (previous owner: %s)", session_id,
                        previous.owner if previous is not None else "none, its lease was released")
            adopted.append(session_id)
        return adopted

    def _follow(self, session_id: str, from_position: int) -> Iterator[RecordedEvent]:
        """The session's events after ``from_position`` until SessionEnded (see ``live.follow``)."""
        watch = self._watch(session_id, from_position)
        return iter(()) if watch is None else live.follow(watch, session_id)

    def _watch(self, session_id: str, from_position: int) -> live.Watch | None:
        """What ``_follow`` reads, also for a follower that must not block (``AsyncForge``); None when the
        session ended at or before ``from_position``."""
        if live.ended_before(self._store, session_id, from_position):
            return None
        self._require(session_id)
        # A session this engine drives is written by this engine alone (its lease): no need to hear
        # of other processes' commits at once (should it lose the lease, the next quiet read finds them).
        driven_here = session_id in self._supervisor.running_sessions()
        subscription = self._store.subscribe(from_position, stream_id=session_id, codec=EVENT_CODEC,
                                             expect_others=not driven_here)
        return live.Watch(
            subscription,
            is_running=lambda: session_id in self._supervisor.running_sessions(),
            has_ended=lambda: self.state(session_id).ended,
            write_failure=lambda: self._supervisor.write_failure(session_id),
        )

    # -- reading -----------------------------------------------------------------------------------

    def state(self, session_id: str) -> SessionState:
        """The session as its committed events fold it."""
        return self._load(session_id)[0]

    def _load(self, session_id: str) -> tuple[SessionState, int]:
        if evaluation.is_evaluation(session_id):  # an evaluation's stream holds no session's events
            raise SessionNotFoundError(session_id, evaluation.not_a_session(session_id))
        return self._states.load(session_id)

    def sessions(self) -> list[str]:
        """Every session id in the log, oldest first."""
        return [stream_id for stream_id, _ in self._store.streams() if not evaluation.is_evaluation(stream_id)]

    def summaries(self) -> list[SessionSummary]:
        """One row per session (title, status, rounds, tokens), from a projection kept up to date here."""
        return self._summaries.read()

    def resolve(self, prefix: str) -> str:
        """The session id ``prefix`` names: itself, or the only id that starts with it (like git)."""
        if evaluation.is_evaluation(prefix):
            raise SessionNotFoundError(prefix, evaluation.not_a_session(prefix))
        if self._store.stream_version(prefix) > 0:
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
        if evaluation.is_evaluation(session_id):
            raise SessionNotFoundError(session_id, evaluation.not_a_session(session_id))
        if self._store.stream_version(session_id) == 0:
            raise SessionNotFoundError(session_id)

    def verify(self, session_id: str) -> list[Violation]:
        """The log's invariants, checked on this session (empty list: sound). An ending the log calls
        for but lacks is a violation only while no engine holds the session's lease (it may be on its way)."""
        self._require(session_id)
        # The lease first: an engine releases it only once the session's end is committed.
        driven = self._supervisor.lease_is_live(session_id)
        records = list(self._store.read_stream(session_id, codec=EVENT_CODEC))
        found = verify(records, driven=driven)
        lineage = self._check_fork(records)
        return found + list(lineage.violations) if lineage is not None else found

    def check_fork(self, session_id: str) -> ForkCheck | None:
        """A fork's copied prefix against its parent (``core.audit.check_fork``): whether it was checked
        (the parent is in this log) and what differs. None for a session that is no fork."""
        return self._check_fork(self.records(session_id))

    def _check_fork(self, records: list[RecordedEvent]) -> ForkCheck | None:
        forked = next((r.event for r in reversed(records) if isinstance(r.event, SessionForked)), None)
        if forked is None:
            return None
        parent = list(itertools.islice(self._store.read_stream(forked.parent_id, codec=EVENT_CODEC),
                                       forked.parent_version))
        return check_fork(records, parent or None)

    def usage(self, session_id: str) -> UsageReport:
        """Tokens and estimated cost per participant, per round and in all."""
        return usage_report(self.state(session_id), self.config.pricing)

    def compare(self, a: str, b: str) -> Comparison:
        """Sessions ``a`` and ``b`` side by side, rounds aligned by number, and the first round where they
        differ (``core.compare``), costs at this engine's prices. SessionNotFoundError for an unknown id."""
        return compare_sessions(self.state(a), self.state(b), self.config.pricing)

    def providers(self, names: Iterable[str] | None = None, timeout: float = 3.0) -> list[ProviderProbe]:
        """Each provider's key (present or not, never its value), base URL, reachability, Ollama's models."""
        return self._participants.probes(names, timeout)

    def default_participants(self, environ: Mapping[str, str] = os.environ) -> tuple[list[ParticipantSpec], str]:
        """Who deliberates when nobody is named: the config's participants; else three members on
        the default model when its key is present; else three offline mocks. With a line saying which."""
        return self._participants.defaults(environ)

    def events(self, session_id: str) -> list[Event]:
        """Every event of the session, decoded, in order."""
        events = [r.event for r in self._store.read_stream(session_id, codec=EVENT_CODEC)]
        if not events:
            raise SessionNotFoundError(session_id)
        return events

    def search_history(self, query: str, limit: int = 5) -> list[HistoryHit]:
        """Past contributions matching ``query`` (plain words; ranked), across every session of the log."""
        return self._history.search(query, limit)

    def records(self, session_id: str) -> list[RecordedEvent]:
        """Every committed event of the session as the log holds it (position, version, time), decoded."""
        self._require(session_id)
        return list(self._store.read_stream(session_id, codec=EVENT_CODEC))

    def subscribe(self, session_id: str, from_position: int = 0, *, decoded: bool = True) -> Subscription:
        """The session's committed events after ``from_position``: stored ones, then live ones.

        ``decoded=False`` leaves ``.event`` empty: for relays that only pass the JSON on
        (``.data``, ``.type``) and need not pay for decoding every event.
        """
        self._require(session_id)
        return self._store.subscribe(from_position, stream_id=session_id, codec=EVENT_CODEC if decoded else None)

    def subscribe_log(self, from_position: int | None = None) -> Subscription:
        """Every session's committed events after ``from_position`` (None: from now on), undecoded
        (``.type`` and ``.data``; ``core.events.decode_event`` decodes one): for projections that
        follow the whole log, such as ``engine.tracing``."""
        after = self._store.last_position() if from_position is None else from_position
        return self._store.subscribe(after)

    def last_position(self) -> int:
        """The position of the last event committed to the log (any session)."""
        return self._store.last_position()

    def version_at(self, session_id: str, position: int) -> int:
        """How many events of the session the log held as of ``position``."""
        return self._store.version_at(session_id, position)

    def events_page(self, session_id: str, after_version: int, limit: int = 500, *,
                    decoded: bool = False) -> list[RecordedEvent]:
        """Up to ``limit`` committed events of the session after its version ``after_version``."""
        records = self._store.read_stream(session_id, after_version, codec=EVENT_CODEC if decoded else None,
                                         page_size=limit)
        return list(itertools.islice(records, limit))

    def replay(self, session_id: str, speed: float = 1.0, *,
               sleep: Callable[[float], None] = time.sleep, max_pause: float | None = None) -> Iterator[RecordedEvent]:
        """The recorded events again, paced as they were recorded, ``speed`` times faster
        (``speed=0``: no pauses). ``max_pause`` caps any one pause (idle time between steps)."""
        if speed < 0:
            raise ConfigError("speed must be 0 (as fast as possible) or more")
        self._require(session_id)
        return replay.paced(self._store.read_stream(session_id, codec=EVENT_CODEC), speed, sleep, max_pause)

    def rerun(self, session_id: str, *, wait: bool = True, timeout: float | None = None) -> str:
        """Run a recorded session again with every AI participant answered from its recording.

        The new session sends the same prompts and gets the same answers, so it records the
        same events (ids, timestamps and latencies aside). It runs the original's rounds, in
        order, and ends as the original ended (an original left open leaves the re-run open
        after the same rounds). Human drafts given before the first round are carried over.
        Returns the new session's id once it is done; with ``wait=False`` at once (watch it
        with ``subscribe``).
        """
        new_id = self._id_factory()
        plan = replay.rerun_plan(self.events(session_id), session_id, new_id)
        self._store.append(new_id, to_records(plan.events), expected_version=NO_STREAM)
        session = self._attach(new_id)
        assert session is not None  # a new session has not ended
        done: Future = Future()
        session.tell(Deliberate(done=done))
        if wait:
            done.result(timeout)
        return new_id

    # -- evaluations (engine/evaluation.py) ---------------------------------------------------------

    def evaluate(self, tasks: Iterable[EvalTask] = (), systems: Iterable[EvalSystem] = (), *,
                 judge: str | None = None, seed: int = 0, concurrency: int = evaluation.DEFAULT_CONCURRENCY,
                 resume: str | None = None, rerun: str | None = None, timeout: float | None = None,
                 on_started: Callable[[str], None] | None = None,
                 on_scored: Callable[[EvaluationTaskScored], None] | None = None) -> EvalReport:
        """Ask every system every task, each answer a session in the log, and report how each system
        scored (accuracy with a bootstrap interval seeded by ``seed``, tokens, cost, time).

        Systems: ``evaluation.council(specs, **settings)`` and ``evaluation.baseline(spec)``; tasks:
        ``evaluation.read_task_file(path)``. ``judge`` is the provider of the tasks scored by a judge.
        ``concurrency`` sessions run at once. The evaluation is recorded as its own stream (the
        report's ``run_id``): ``resume=RUN_ID`` scores only what a stopped run left unscored;
        ``rerun=RUN_ID`` runs it again from its recordings, calling no provider.
        ``on_started`` is given the run id once it is recorded (to say how to resume should the run
        stop); ``on_scored`` hears of each answer as it is scored (from the worker threads).
        """
        systems = list(systems)
        for given in [*(s.participants for s in systems), *([(judge,)] if judge is not None else [])]:
            # Every provider built once first (as create_session does): a bad spec or a missing
            # key fails now, before the evaluation is recorded.
            self._participants.describe([participant_spec(p) for p in given])
        specs = {evaluation.redact_spec(p): p for s in systems for p in s.participants}
        runner = evaluation.Evaluation(self, self._store, specs, concurrency=concurrency,
                                       on_scored=on_scored, timeout=timeout)
        if rerun is not None:
            return runner.rerun(rerun, evaluation.EVAL_PREFIX + self._id_factory(), on_started)
        if resume is None:
            run_id = evaluation.EVAL_PREFIX + self._id_factory()
            runner.start(run_id, list(tasks), [self._recorded_system(s) for s in systems], judge, seed)
        else:
            run_id = resume
        if on_started is not None:
            on_started(run_id)
        return runner.run(run_id)

    @staticmethod
    def _recorded_system(system: EvalSystem) -> EvalSystem:
        """The system as the log records it: its specs without keys."""
        return msgspec.structs.replace(system, participants=tuple(evaluation.redact_spec(p)
                                                                  for p in system.participants))

    def evaluations(self) -> list[str]:
        """Every evaluation's run id in the log, oldest first."""
        return [stream_id for stream_id, _ in self._store.streams() if evaluation.is_evaluation(stream_id)]

    def evaluation_report(self, run_id: str) -> EvalReport:
        """The report of a recorded evaluation, as far as it got."""
        return evaluation.Evaluation(self, self._store).report(run_id)

    # -- lifecycle -------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every actor (contributions in flight stop at once), commit what is queued, release
        the leases, close the providers' HTTP clients and the log. Returns within about
        ``close_timeout`` seconds: an actor that has not stopped by then (a provider ignoring
        abort) is logged and left behind.

        Sessions still running stay unfinished in the log; ``resume`` continues them later.
        """
        self._supervisor.close()
        self._participants.clients.close()  # the actors are stopped: nothing sends any more
        self._store.close()

    def __enter__(self) -> Forge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> str:
        """The event log file."""
        return self._store.path

    def __repr__(self) -> str:
        return f"Forge({self._store.path!r})"
