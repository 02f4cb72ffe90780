"""SessionState and the pure fold ``apply(state, event) -> state``.

The state is never stored: it is what folding a session's events gives, live, after a
crash, or in an audit. ``apply`` never mutates its input (every container it changes
is copied), so any earlier state stays valid and comparable.

Streamed deltas only bump counters of the contribution in flight: the finished text
arrives whole in ContributionCompleted, and whoever shows text as it streams (the
live views) joins the deltas itself. That keeps a fold of 100,000 deltas linear.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import reduce
from typing import Any, Literal, TypeVar

import msgspec
from msgspec.structs import replace

from forge_actors.core.events import (
    ContentDelta,
    ContributionAbandoned,
    ContributionCompleted,
    ContributionFailed,
    CritiqueRecorded,
    Event,
    HumanDraftAdded,
    HumansWaitEnded,
    Outcome,
    ParticipantAdded,
    ParticipantInfo,
    ParticipantRemoved,
    Price,
    PromptPurpose,
    PromptSent,
    ProviderLimitFound,
    ProviderSwitched,
    RerunPlanned,
    RoundCompleted,
    RoundKind,
    RoundStarted,
    SessionCreated,
    SessionEnded,
    SessionForked,
    SessionInterrupted,
    SessionResumed,
    SessionSettings,
    SimilarityMeasured,
    TokenUsage,
    ToolCalled,
    ToolResult,
    VoteRecorded,
    encode_event,
)

SessionStatus = Literal[
    "new", "created", "running", "interrupted", "converged", "max_rounds", "no_quorum", "cancelled", "failed",
    "budget_spent", "budget_exhausted",
]
ContributionStatus = Literal["streaming", "completed", "failed", "abandoned"]
RoundProgress = Literal["running", "completed", "degraded", "failed", "cancelled"]
ENDED_STATUSES: frozenset[str] = frozenset(
    {"converged", "max_rounds", "no_quorum", "cancelled", "failed", "budget_spent", "budget_exhausted"})


class ToolUse(msgspec.Struct, frozen=True):
    """One tool call of a contribution and, once it came, its result (``output`` None until then)."""

    call_id: str
    tool: str
    arguments: dict[str, Any]
    turn: int
    output: str | None = None
    truncated: bool = False
    error: str | None = None
    duration_ms: float = 0.0


class ContributionState(msgspec.Struct, frozen=True):
    """One attempt of one participant in one round."""

    contribution_id: str
    participant: str
    round: int
    attempt: int
    status: ContributionStatus
    purpose: PromptPurpose = "initial"
    deltas: int = 0
    chars: int = 0
    content: str = ""
    finish_reason: str | None = None
    usage: TokenUsage = TokenUsage()
    latency_ms: float = 0.0
    error_kind: str = ""
    error: str = ""
    #: A failed attempt that is followed by another attempt (the failure is not final).
    will_retry: bool = False
    served_by: str = ""
    proposal_labels: dict[str, str] = {}
    #: The tools it called, in order, with their results: the evidence behind its content.
    tool_uses: tuple[ToolUse, ...] = ()
    #: The structured reply its prompt asked for (``PromptSent.response_schema``).
    response_schema: str | None = None
    #: A re-ask, or a retry of one: its reply completes the re-asked one's (``rounds.reasked_reading``).
    reasked: bool = False
    #: A ``ProviderLimitFound`` named it: its failure was a switch to asking around the limit, not a
    #: retry that counts against ``max_retries``.
    limit_found: bool = False
    #: Characters of its prompt's messages, and its participant's recorded price when it was asked (in a
    #: session with a cost budget): what ``core.budget`` estimates an attempt with no usage from.
    prompt_chars: int = 0
    price: Price | None = None


class RoundState(msgspec.Struct, frozen=True):
    round: int
    kind: RoundKind
    iteration: int
    participants: tuple[str, ...]
    status: RoundProgress = "running"
    succeeded: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    score: float | None = None
    reason: str = ""
    #: The round waited its ``human_wait_seconds`` out (``HumansWaitEnded``): it waits for no human now.
    humans_waited: bool = False


class Synthesis(msgspec.Struct, frozen=True):
    round: int
    iteration: int
    author: str
    content: str


class Lineage(msgspec.Struct, frozen=True):
    """Where a fork came from (its ``SessionForked``): the parent, the round it was cut after, and
    the parent's stream version and log position at the cut."""

    parent_id: str
    round: int
    parent_version: int
    parent_position: int


class SessionState(msgspec.Struct, frozen=True):
    session_id: str = ""
    title: str = ""
    goal: str = ""
    constraints: tuple[str, ...] = ()
    settings: SessionSettings = SessionSettings()
    status: SessionStatus = "new"
    participants: dict[str, ParticipantInfo] = {}
    rounds: tuple[RoundState, ...] = ()
    #: Finished attempts (completed, failed or abandoned), by contribution id, in order.
    contributions: dict[str, ContributionState] = {}
    #: Attempts in flight, by contribution id.
    streaming: dict[str, ContributionState] = {}
    critiques: tuple[CritiqueRecorded, ...] = ()
    votes: tuple[VoteRecorded, ...] = ()
    #: The latest draft of each author, AI or human.
    drafts: dict[str, str] = {}
    syntheses: tuple[Synthesis, ...] = ()
    usage: dict[str, TokenUsage] = {}
    resumes: int = 0
    end_reason: str = ""
    final_score: float | None = None
    #: Participants that take no part any more (``ParticipantRemoved``); still in ``participants``,
    #: so that what they contributed keeps its author.
    removed: tuple[str, ...] = ()
    #: The session this one was forked from (its last ``SessionForked``); None for a session of its own.
    forked_from: Lineage | None = None
    #: Bytes the session's events take in the log (their JSON, as stored): what ``max_session_bytes``
    #: bounds, whatever its providers stream (a delta's row costs far more than its text).
    log_bytes: int = 0
    #: The running round's last prompt to each participant, as recorded: what a retry, a re-ask or a
    #: reply's reading needs of it (``core.decider``). Emptied when the round completes (a prompt
    #: is the bulk of a folded state, and the engine caches one per session it reads).
    round_prompts: dict[str, PromptSent] = {}
    #: The similarities measured (``SimilarityMeasured``), in order: what the similarity stop rule reads.
    similarities: tuple[SimilarityMeasured, ...] = ()
    #: A re-run's plan (``RerunPlanned``): the original's rounds it follows; None for any other session.
    rerun: RerunPlanned | None = None
    #: Each AI participant's price as recorded (``SessionCreated.prices``, ``ProviderSwitched.price``):
    #: what a cost budget is judged by. Empty in a session without one.
    prices: dict[str, Price] = {}

    # -- derived views (no state of their own) ------------------------------------

    @property
    def ended(self) -> bool:
        return self.status in ENDED_STATUSES

    @property
    def current_round(self) -> RoundState | None:
        return self.rounds[-1] if self.rounds else None

    @property
    def iteration(self) -> int:
        return self.rounds[-1].iteration if self.rounds else 0

    @property
    def synthesis(self) -> Synthesis | None:
        return self.syntheses[-1] if self.syntheses else None

    @property
    def ai_participants(self) -> list[str]:
        """The AI participants that still take part (not removed), in participant order."""
        return [p.name for p in self.participants.values() if p.kind == "ai" and p.name not in self.removed]

    @property
    def total_usage(self) -> TokenUsage:
        return reduce(TokenUsage.__add__, self.usage.values(), TokenUsage())

    def round_state(self, number: int) -> RoundState | None:
        for round_ in reversed(self.rounds):
            if round_.round == number:
                return round_
        return None

    def last_round_of(self, kind: RoundKind) -> RoundState | None:
        for round_ in reversed(self.rounds):
            if round_.kind == kind:
                return round_
        return None

    def critiques_in(self, round_number: int) -> list[CritiqueRecorded]:
        return [c for c in self.critiques if c.round == round_number]

    def votes_in(self, round_number: int) -> dict[str, VoteRecorded]:
        """Each voter's last vote in that round."""
        return {v.voter: v for v in self.votes if v.round == round_number}

    def completed_in(self, round_number: int) -> dict[str, ContributionState]:
        """Each participant's last completed contribution in that round."""
        return {
            c.participant: c
            for c in self.contributions.values()
            if c.round == round_number and c.status == "completed"
        }

    def attempts_in(self, round_number: int, participant: str) -> list[ContributionState]:
        """The participant's attempts in that round, finished ones first, in order."""
        return [
            c for c in (*self.contributions.values(), *self.streaming.values())
            if c.round == round_number and c.participant == participant
        ]

    def similarity(self, round_number: int, compared_with_round: int,
                   pair: tuple[str, ...] = ()) -> SimilarityMeasured | None:
        """The similarity recorded for that comparison (the first, should one be recorded twice)."""
        for measured in self.similarities:
            if (measured.round, measured.compared_with_round, measured.pair) == (round_number, compared_with_round,
                                                                              pair):
                return measured
        return None

    def mean_scores(self, round_number: int) -> dict[str, float]:
        """Mean critique score per proposal author in that round (unscored reviews left out)."""
        totals: dict[str, list[int]] = {}
        for critique in self.critiques_in(round_number):
            if critique.score is not None:
                totals.setdefault(critique.proposal_author, []).append(critique.score)
        return {author: sum(s) / len(s) for author, s in totals.items()}


# -- the fold -------------------------------------------------------------------

V = TypeVar("V")

#: The events that change a session's status; every other event leaves it as it was.
STATUS_EVENTS: frozenset[str] = frozenset(
    cls.__name__ for cls in (SessionCreated, RoundStarted, SessionInterrupted, SessionResumed, SessionForked,
                             SessionEnded)
)


def next_status(status: SessionStatus, has_rounds: bool, event: Event) -> SessionStatus:
    """The session's status once ``event`` is folded: the one rule of it.

    ``apply`` uses it, and so does the summary projection (``usage.SummaryProjection``),
    which keeps only the status and the round count, so that the two can never disagree.
    ``has_rounds``: a round had started before ``event`` (a resumed session with none is
    back to "created", not "running").
    """
    if isinstance(event, SessionCreated):
        return "created"
    if isinstance(event, RoundStarted):
        return "running"
    if isinstance(event, SessionInterrupted):
        return "interrupted"
    if isinstance(event, SessionResumed):
        return "running" if has_rounds else "created"
    if isinstance(event, SessionForked):  # a new session, between rounds: nothing runs until it is driven
        return "created"
    if isinstance(event, SessionEnded):
        outcome: Outcome = event.outcome
        return outcome
    return status


def _with(mapping: dict[str, V], key: str, value: V) -> dict[str, V]:
    copy = dict(mapping)
    copy[key] = value
    return copy


def _without(mapping: dict[str, V], key: str) -> dict[str, V]:
    if key not in mapping:
        return mapping
    copy = dict(mapping)
    del copy[key]
    return copy


def _round_kind(state: SessionState, number: int) -> RoundKind | None:
    round_ = state.round_state(number)
    return round_.kind if round_ else None


def _session_created(state: SessionState, e: SessionCreated) -> SessionState:
    return replace(
        state,
        session_id=e.session_id,
        title=e.title,
        goal=e.goal,
        constraints=e.constraints,
        settings=e.settings,
        participants={p.name: p for p in e.participants},
        prices=dict(e.prices),
        status=next_status(state.status, bool(state.rounds), e),
    )


def _round_started(state: SessionState, e: RoundStarted) -> SessionState:
    round_ = RoundState(e.round, e.kind, e.iteration, e.participants)
    status = next_status(state.status, bool(state.rounds), e)
    return replace(state, rounds=state.rounds + (round_,), status=status, round_prompts={})


def continues_reask(state: SessionState, round_number: int, participant: str) -> bool:
    """Whether the participant's last attempt in that round is a re-ask, or a retry of one."""
    previous = state.round_prompts.get(participant)
    if previous is None or previous.round != round_number:
        return False
    before = state.streaming.get(previous.contribution_id) or state.contributions.get(previous.contribution_id)
    return before is not None and before.reasked


def _reasked(state: SessionState, e: PromptSent) -> bool:
    """Whether the attempt ``e`` asks for continues a re-ask: it is one, or it retries one. (A rerun asks
    from the first prompt again: a resumed re-ask is sent as a re-ask.)"""
    if e.purpose == "reask":
        return True
    return e.purpose == "retry" and continues_reask(state, e.round, e.participant)


def _prompt_sent(state: SessionState, e: PromptSent) -> SessionState:
    contribution = ContributionState(
        e.contribution_id,
        e.participant,
        e.round,
        e.attempt,
        "streaming",
        purpose=e.purpose,
        proposal_labels=e.proposal_labels,
        response_schema=e.response_schema,
        reasked=_reasked(state, e),
        prompt_chars=sum(len(m.content) for m in e.messages),
        price=state.prices.get(e.participant),
    )
    return replace(state, streaming=_with(state.streaming, e.contribution_id, contribution),
                   round_prompts=_with(state.round_prompts, e.participant, e))


def _content_delta(state: SessionState, e: ContentDelta) -> SessionState:
    current = state.streaming.get(e.contribution_id)
    if current is None:  # a delta whose prompt event was lost with an unflushed batch
        current = ContributionState(e.contribution_id, e.participant, e.round, e.attempt, "streaming")
    updated = replace(current, deltas=current.deltas + 1, chars=current.chars + len(e.text))
    return replace(state, streaming=_with(state.streaming, e.contribution_id, updated))


def _tool_called(state: SessionState, e: ToolCalled) -> SessionState:
    current = _started(state, e.contribution_id, e.participant, e.round, e.attempt)
    use = ToolUse(e.call_id, e.tool, e.arguments, e.turn, error=e.error)
    updated = replace(current, tool_uses=(*current.tool_uses, use))
    return replace(state, streaming=_with(state.streaming, e.contribution_id, updated))


def _tool_result(state: SessionState, e: ToolResult) -> SessionState:
    current = state.streaming.get(e.contribution_id)
    if current is None:  # a result for an attempt already settled: audit.verify reports it
        return state
    uses = tuple(
        replace(use, output=e.output, truncated=e.truncated, error=e.error, duration_ms=e.duration_ms)
        if use.call_id == e.call_id and use.output is None else use
        for use in current.tool_uses
    )
    return replace(state, streaming=_with(state.streaming, e.contribution_id, replace(current, tool_uses=uses)))


def _finish(state: SessionState, contribution_id: str, finished: ContributionState, **changes: object) -> SessionState:
    return replace(
        state,
        streaming=_without(state.streaming, contribution_id),
        contributions=_with(state.contributions, contribution_id, finished),
        **changes,
    )


def _started(state: SessionState, contribution_id: str, participant: str, round_: int, attempt: int) -> ContributionState:
    return state.streaming.get(contribution_id) or ContributionState(
        contribution_id, participant, round_, attempt, "streaming"
    )


def _contribution_completed(state: SessionState, e: ContributionCompleted) -> SessionState:
    started = _started(state, e.contribution_id, e.participant, e.round, e.attempt)
    finished = replace(
        started,
        status="completed",
        content=e.content,
        finish_reason=e.finish_reason,
        usage=e.usage,
        latency_ms=e.latency_ms,
        served_by=e.served_by,
    )
    changes: dict[str, object] = {
        "usage": _with(state.usage, e.participant, state.usage.get(e.participant, TokenUsage()) + e.usage)
    }
    kind = _round_kind(state, e.round)
    if kind == "draft":
        changes["drafts"] = _with(state.drafts, e.participant, e.content)
    elif kind == "synthesis":
        round_ = state.round_state(e.round)
        iteration = round_.iteration if round_ else 0
        changes["syntheses"] = state.syntheses + (Synthesis(e.round, iteration, e.participant, e.content),)
    return _finish(state, e.contribution_id, finished, **changes)


def _contribution_failed(state: SessionState, e: ContributionFailed) -> SessionState:
    # A failure awaiting its retry may be made final at the deadline: it keeps what its attempt was.
    started = state.contributions.get(e.contribution_id) if e.contribution_id not in state.streaming else None
    started = started or _started(state, e.contribution_id, e.participant, e.round, e.attempt)
    finished = replace(started, status="failed", error_kind=e.error_kind, error=e.message, will_retry=e.will_retry)
    return _finish(state, e.contribution_id, finished)


def _contribution_abandoned(state: SessionState, e: ContributionAbandoned) -> SessionState:
    started = _started(state, e.contribution_id, e.participant, e.round, e.attempt)
    finished = replace(started, status="abandoned", error_kind="abandoned", error=e.reason)
    return _finish(state, e.contribution_id, finished)


def _critique_recorded(state: SessionState, e: CritiqueRecorded) -> SessionState:
    return replace(state, critiques=state.critiques + (e,))


def _vote_recorded(state: SessionState, e: VoteRecorded) -> SessionState:
    return replace(state, votes=state.votes + (e,))


def _human_draft_added(state: SessionState, e: HumanDraftAdded) -> SessionState:
    return replace(state, drafts=_with(state.drafts, e.author, e.content))


def _participant_added(state: SessionState, e: ParticipantAdded) -> SessionState:
    name = e.participant.name
    removed = tuple(n for n in state.removed if n != name)
    return replace(state, participants=_with(state.participants, name, e.participant), removed=removed)


def _participant_removed(state: SessionState, e: ParticipantRemoved) -> SessionState:
    if e.name in state.removed:
        return state
    return replace(state, removed=(*state.removed, e.name))


def _session_forked(state: SessionState, e: SessionForked) -> SessionState:
    lineage = Lineage(e.parent_id, e.round, e.parent_version, e.parent_position)
    # A fork decides its own rounds from here: a re-run's plan it copied is no longer its own.
    prices = {**state.prices, **e.prices} if e.prices else state.prices
    return replace(state, settings=e.settings, constraints=e.constraints, forked_from=lineage, rerun=None,
                   prices=prices, status=next_status(state.status, bool(state.rounds), e))


def _round_completed(state: SessionState, e: RoundCompleted) -> SessionState:
    rounds = list(state.rounds)
    for index in range(len(rounds) - 1, -1, -1):
        if rounds[index].round == e.round:
            rounds[index] = replace(
                rounds[index],
                status=e.status,
                succeeded=e.succeeded,
                failed=e.failed,
                score=e.score,
                reason=e.reason,
            )
            break
    return replace(state, rounds=tuple(rounds), round_prompts={})  # read only while a round runs


def _provider_switched(state: SessionState, e: ProviderSwitched) -> SessionState:
    info = state.participants.get(e.participant, ParticipantInfo(e.participant))
    switched = replace(info, provider=e.provider, model=e.model, replies=e.replies or info.replies,
                       tool_mode=e.tool_mode or info.tool_mode, streams=True)  # a new provider: nothing known yet
    prices = _with(state.prices, e.participant, e.price) if e.price is not None else state.prices
    return replace(state, participants=_with(state.participants, e.participant, switched), prices=prices)


def _provider_limit_found(state: SessionState, e: ProviderLimitFound) -> SessionState:
    """From now on the participant is asked around what its provider cannot do."""
    info = state.participants.get(e.participant, ParticipantInfo(e.participant))
    if e.limit == "streaming":
        around = replace(info, streams=False)
    elif e.limit == "structured_replies":
        around = replace(info, replies="text")
    else:
        around = replace(info, tool_mode="text" if info.tools else info.tool_mode)
    changes: dict[str, object] = {}
    attempt = state.streaming.get(e.contribution_id)
    if attempt is not None:
        changes["streaming"] = _with(state.streaming, e.contribution_id, replace(attempt, limit_found=True))
    return replace(state, participants=_with(state.participants, e.participant, around), **changes)


def _rerun_planned(state: SessionState, e: RerunPlanned) -> SessionState:
    return replace(state, rerun=e)


def _humans_wait_ended(state: SessionState, e: HumansWaitEnded) -> SessionState:
    rounds = tuple(replace(r, humans_waited=True) if r.round == e.round else r for r in state.rounds)
    return replace(state, rounds=rounds)


def _similarity_measured(state: SessionState, e: SimilarityMeasured) -> SessionState:
    return replace(state, similarities=(*state.similarities, e))


def _session_interrupted(state: SessionState, e: SessionInterrupted) -> SessionState:
    return replace(state, status=next_status(state.status, bool(state.rounds), e), end_reason=e.reason)


def _session_resumed(state: SessionState, e: SessionResumed) -> SessionState:
    status = next_status(state.status, bool(state.rounds), e)
    return replace(state, resumes=state.resumes + 1, status=status, end_reason="")


def _session_ended(state: SessionState, e: SessionEnded) -> SessionState:
    status = next_status(state.status, bool(state.rounds), e)
    return replace(state, status=status, end_reason=e.reason, final_score=e.final_score)


# Each handler takes its own event class (Any here: a dict cannot type that pairing);
# apply() looks the handler up by type(event), so the pairing holds.
_HANDLERS: dict[type[Event], Callable[[SessionState, Any], SessionState]] = {
    SessionCreated: _session_created,
    RoundStarted: _round_started,
    PromptSent: _prompt_sent,
    ContentDelta: _content_delta,
    ToolCalled: _tool_called,
    ToolResult: _tool_result,
    ContributionCompleted: _contribution_completed,
    ContributionFailed: _contribution_failed,
    ContributionAbandoned: _contribution_abandoned,
    CritiqueRecorded: _critique_recorded,
    VoteRecorded: _vote_recorded,
    HumanDraftAdded: _human_draft_added,
    ParticipantAdded: _participant_added,
    ParticipantRemoved: _participant_removed,
    RoundCompleted: _round_completed,
    ProviderSwitched: _provider_switched,
    ProviderLimitFound: _provider_limit_found,
    HumansWaitEnded: _humans_wait_ended,
    SimilarityMeasured: _similarity_measured,
    RerunPlanned: _rerun_planned,
    SessionInterrupted: _session_interrupted,
    SessionResumed: _session_resumed,
    SessionForked: _session_forked,
    SessionEnded: _session_ended,
}


def apply(state: SessionState, event: Event) -> SessionState:
    """Fold one event into the state. Pure: ``state`` is left as it was.

    Every event also adds its stored size to ``log_bytes`` (encoding it again: about a fifth of the
    fold's time for a stream of deltas, and what makes the session's log budget a fact of the log)."""
    folded = _HANDLERS[type(event)](state, event)
    return replace(folded, log_bytes=state.log_bytes + len(encode_event(event)))


def rebuild(events: Iterable[Event], state: SessionState | None = None) -> SessionState:
    """Fold events, from an empty state or from ``state``."""
    return reduce(apply, events, state if state is not None else SessionState())
