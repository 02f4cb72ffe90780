"""The session's decider: its folded state and one input in, the events to record and the effects out.

Every decision of a session — whom to ask, with which prompt, for which attempt, whether a failure
is retried, when a round completes, what comes next — is taken here, from the ``SessionState``
(the fold of the log) and the input alone. ``SessionActor`` is a thin loop around it: it decides,
appends the events (waiting for their durability when ``Decision.durable`` says so), folds them,
then carries out the effects (asks a participant, sets or cancels a timer, cancels a contribution,
resolves whoever waits, stops). So a session resumed from its log decides exactly as the live one
would have: attempts and retries used, re-asks, who waits out a backoff and whether the humans'
wait ran out are all facts of the log (see ``state.py``), not of a process's memory.

Two things are not in the log, and are given instead:

- ``Mode``: whether the session deliberates on its own, and the plan of a re-run. A command sets it
  (``Deliberate``); after a crash the engine gives it again.
- ``ToolContext``: the tool section of each participant's prompt, rendered by the providers layer
  from the tools this version knows (``actors.session.tool_context``).

The per-delta path does not go through ``decide``: ``delta_event`` turns a streamed piece into its
``ContentDelta`` with one dict lookup (the actor appends it and folds it, nothing else).

Model: Akka Typed's ``EventSourcedBehavior`` (a command handler returning effects, the fold as the
event handler) and Temporal's replayer (a replay feeds the recorded inputs and must get the recorded
events back: ``tests/core/test_decider.py``).
"""

from __future__ import annotations

from typing import Any, TypeAlias

import msgspec

from forge_actors.core import budget, rounds
from forge_actors.core.errors import InvalidCommandError
from forge_actors.core.events import (
    ContentDelta,
    ContributionAbandoned,
    ContributionCompleted,
    ContributionFailed,
    Event,
    HumanDraftAdded,
    HumansWaitEnded,
    ParticipantAdded,
    ParticipantInfo,
    Price,
    PromptMessage,
    PromptPurpose,
    PromptSent,
    ProviderLimitFound,
    ProviderSwitched,
    RoundCompleted,
    RoundKind,
    RoundStarted,
    SessionEnded,
    SessionInterrupted,
    SessionResumed,
    SimilarityMeasured,
    TokenUsage,
    ToolCalled,
    ToolResult,
    VoteChoice,
    VoteRecorded,
)
from forge_actors.core.state import ContributionState, SessionState, apply, continues_reask

#: The rounds whose contributions may call tools: the votes of a convergence round are read as given.
TOOL_ROUNDS = frozenset({"draft", "critique", "synthesis"})
#: The rounds that wait for the session's humans (human_wait_seconds): their drafts, their votes.
HUMAN_ROUNDS = frozenset({"draft", "convergence"})
#: Told to a participant offered tools natively (the text protocol's section says it itself).
NATIVE_TOOLS_NOTE = ("You can call tools to read the workspace this deliberation is about. Check claims "
                     "against it, and cite what you found (file and line) in your answer.")
#: The error kind of a malformed stream (``providers.errors.ProtocolError.kind``).
MALFORMED_STREAM = "malformed_stream"


# -- what is given besides the log ------------------------------------------------------------------


class Mode(msgspec.Struct, frozen=True):
    """How the session is driven: on its own (``auto``, from ``StartDeliberating`` until the session
    ends or a re-run's plan runs out), or round by round on command. Not recorded, and no decision about
    what the session records reads it: it only says whether a next round starts without a command (the
    rounds a re-run follows are in the log, ``RerunPlanned``)."""

    auto: bool = False


class ToolContext(msgspec.Struct, frozen=True):
    """Per participant: the names of the tools it is offered (those this version knows) and the
    section that offers them to a model calling tools as text."""

    names: dict[str, tuple[str, ...]] = {}
    text_sections: dict[str, str] = {}


# -- inputs -----------------------------------------------------------------------------------------


class Input(msgspec.Struct, frozen=True):
    """Base of everything the decider is given."""


class Replied(Input, frozen=True):
    """An attempt's reply came whole (``limit``: what its provider showed it cannot do on the way)."""

    contribution_id: str
    content: str
    finish_reason: str | None
    usage: TokenUsage
    latency_ms: float
    served_by: str = ""
    fallback: str = ""
    limit: str | None = None
    evidence: str = ""
    evidence_kind: str = ""
    answered_from_body: bool = False


class ReplyFailed(Input, frozen=True):
    contribution_id: str
    error_kind: str
    message: str
    retryable: bool
    retry_after: float | None = None
    limit: str | None = None


class ToolCallStarted(Input, frozen=True):
    contribution_id: str
    turn: int
    call_id: str
    tool: str
    arguments: dict[str, Any]
    error: str | None = None


class ToolCallFinished(Input, frozen=True):
    contribution_id: str
    call_id: str
    tool: str
    output: str
    truncated: bool = False
    error: str | None = None
    duration_ms: float = 0.0


class DeadlinePassed(Input, frozen=True):
    round: int


class HumansWaitOver(Input, frozen=True):
    """The round has waited ``human_wait_seconds`` for its humans' drafts or votes."""

    round: int


class RetryDue(Input, frozen=True):
    round: int
    participant: str


class Recover(Input, frozen=True):
    """The session was running in a process that stopped: abandon what was in flight, go on."""


class StartDeliberating(Input, frozen=True):
    """Run rounds on its own until the session ends (a re-run: until its recorded plan runs out)."""


class StartRound(Input, frozen=True):
    kind: RoundKind


class AddHumanDraft(Input, frozen=True):
    author: str
    content: str


class CastVote(Input, frozen=True):
    voter: str
    vote: VoteChoice
    reasons: tuple[str, ...] = ()
    concerns: tuple[str, ...] = ()


class CancelSession(Input, frozen=True):
    reason: str = "cancelled by the user"


class Interrupt(Input, frozen=True):
    """Stop now without ending the session (Ctrl-C): ``resume`` continues it later."""

    reason: str = "interrupted by the user"


class SwitchProvider(Input, frozen=True):
    """Between rounds: ``participant`` continues on the provider ``spec`` serves (``model``)."""

    participant: str
    spec: str
    model: str
    replies: str = "text"
    tool_mode: str | None = None
    #: The new model's price, recorded in a session with a cost budget (``ProviderSwitched.price``).
    price: Price | None = None


class CheckSpending(Input, frozen=True):
    """A stream in flight has grown by another ``budget.CHECK_EVERY_CHARS`` characters
    (``spending_check_due``): cut the round if the session's spending has passed its budget."""


class SimilaritiesMeasured(Input, frozen=True):
    """The similarities a ``Measure`` effect asked for, as measured (or as a re-run's recording gives them)."""

    measured: tuple[SimilarityMeasured, ...]


class InternalFailure(Input, frozen=True):
    """The session actor failed (a bug): the session ends failed, saying why."""

    description: str


# -- effects ----------------------------------------------------------------------------------------


class Effect(msgspec.Struct, frozen=True, tag=True):
    """Base of what the actor carries out once a decision's events are appended."""


class Ask(Effect, frozen=True):
    """Ask ``participant`` for one attempt, exactly as its ``PromptSent`` records it."""

    contribution_id: str
    participant: str
    messages: tuple[PromptMessage, ...]
    temperature: float
    max_tokens: int
    #: ``native`` (``tools`` offered through the API), ``text`` (the section is in the messages) or ``off``.
    tool_mode: str
    tools: tuple[str, ...]
    #: The structured reply asked for: its name and its JSON Schema (None: free text).
    response_schema: str | None
    schema: dict[str, Any] | None
    max_chars: int | None
    stream: bool


class StartTimer(Effect, frozen=True):
    """Give the decider ``due`` after ``seconds``."""

    due: DeadlinePassed | HumansWaitOver
    seconds: float


class StartRetryTimer(Effect, frozen=True):
    """Give the decider ``due`` after the retry policy's backoff for the ``retry``-th retry
    (``retry_after``: what the server asked for, if it did)."""

    due: RetryDue
    retry: int
    retry_after: float | None = None


class CancelTimer(Effect, frozen=True):
    due: RetryDue


class CancelContribution(Effect, frozen=True):
    """Stop the attempt in flight (its participant's stream is aborted)."""

    contribution_id: str


class RoundOver(Effect, frozen=True):
    """The round is over: cancel its timers and give whoever waits for it its RoundState."""

    round: int


class Measure(Effect, frozen=True):
    """Measure how similar the texts of each comparison are, and give the decider ``SimilaritiesMeasured``
    (an embedding from a participant's provider where one offers it, else the lexical measure)."""

    comparisons: tuple[rounds.Comparison, ...]


class PlanDone(Effect, frozen=True):
    """The deliberation's plan ran out, or the session ended: resolve whoever waits for it."""


class Stop(Effect, frozen=True):
    """The session stops here (ended, or interrupted): release it."""


AnyEffect: TypeAlias = (Ask | StartTimer | StartRetryTimer | CancelTimer | CancelContribution | RoundOver | Measure
                        | PlanDone | Stop)


class Decision(msgspec.Struct, frozen=True):
    """The events to record, in order (``durable``: wait until they are committed before the effects
    and the next decision; docs/DESIGN.md, Durability), then the effects, and the mode from now on."""

    events: tuple[Event, ...] = ()
    effects: tuple[AnyEffect, ...] = ()
    durable: bool = False
    mode: Mode = Mode()


# -- the hot path -----------------------------------------------------------------------------------


def delta_event(state: SessionState, contribution_id: str, text: str) -> ContentDelta | None:
    """The ContentDelta of a streamed piece; None for an attempt no longer in flight (timed out, cancelled)."""
    attempt = state.streaming.get(contribution_id)
    if attempt is None:
        return None
    return ContentDelta(contribution_id, attempt.participant, attempt.round, attempt.attempt, text)


def spending_check_due(state: SessionState, delta: ContentDelta) -> bool:
    """Whether the delta just folded took its attempt past another ``budget.CHECK_EVERY_CHARS`` characters
    in a session with a budget: then the actor gives the decider ``CheckSpending`` (one comparison a delta
    otherwise), so a long stream is cut while it streams, not only when it ends."""
    if not budget.has_budget(state.settings):
        return False
    attempt = state.streaming.get(delta.contribution_id)
    if attempt is None:
        return False
    every = budget.CHECK_EVERY_CHARS
    return (attempt.chars - len(delta.text)) // every != attempt.chars // every


# -- deciding ---------------------------------------------------------------------------------------


#: A session whose participants have no tools.
NO_TOOLS = ToolContext()


def decide(state: SessionState, mode: Mode, given: Input, tools: ToolContext = NO_TOOLS) -> Decision:
    """What the session does on ``given``. Raises InvalidCommandError for a command the rules refuse
    (nothing is decided then)."""
    builder = _Builder(state, mode, tools)
    handler = _HANDLERS.get(type(given))
    if handler is None:
        raise TypeError(f"the decider got an unknown input: {type(given).__name__}")
    if state.status == "interrupted" and isinstance(given, _FROM_THE_WORLD):
        # Replies and timers already on their way when the session was interrupted: it stops, and
        # decides nothing more until it is resumed (which asks again whatever was in flight).
        return builder.decision()
    handler(builder, given)
    return builder.decision()


class _Builder:
    """One decision under way: the events so far (folded into ``state`` as they come), the effects."""

    def __init__(self, state: SessionState, mode: Mode, tools: ToolContext) -> None:
        self.state = state
        self.mode = mode
        self.tools = tools
        self.events: list[Event] = []
        self.effects: list[AnyEffect] = []
        self.durable = False

    def record(self, *events: Event, durable: bool = False) -> None:
        for event in events:
            self.state = apply(self.state, event)
        self.events += events
        self.durable = self.durable or durable

    def effect(self, effect: AnyEffect) -> None:
        self.effects.append(effect)

    def decision(self) -> Decision:
        return Decision(tuple(self.events), tuple(self.effects), self.durable, self.mode)

    def running_round(self, number: int | None = None) -> int | None:
        """The number of the round running now (``number``: only if it is that one)."""
        current = self.state.current_round
        if current is None or current.status != "running" or (number is not None and current.round != number):
            return None
        return current.round

    def in_flight(self, contribution_id: str) -> ContributionState | None:
        """The attempt, if it is in flight in the running round."""
        attempt = self.state.streaming.get(contribution_id)
        if attempt is None or self.running_round(attempt.round) is None:
            return None
        return attempt


# -- replies --------------------------------------------------------------------------------------


def _on_tool_started(b: _Builder, given: ToolCallStarted) -> None:
    attempt = b.in_flight(given.contribution_id)
    if attempt is not None:
        b.record(ToolCalled(given.contribution_id, attempt.participant, attempt.round, attempt.attempt, given.turn,
                            given.call_id, given.tool, dict(given.arguments), given.error))


def _on_tool_finished(b: _Builder, given: ToolCallFinished) -> None:
    attempt = b.in_flight(given.contribution_id)
    if attempt is not None:
        b.record(ToolResult(given.contribution_id, attempt.participant, attempt.round, attempt.attempt, given.call_id,
                            given.tool, given.output, given.truncated, given.error, given.duration_ms))
        _check_budget(b)  # a tool's output is read by the model's next turn: input it pays for


def _on_replied(b: _Builder, given: Replied) -> None:
    attempt = b.in_flight(given.contribution_id)
    if attempt is None:  # from an attempt already timed out or cancelled
        return
    sent = b.state.round_prompts.get(attempt.participant)
    learned = _limit_found(b.state, attempt, given.limit, given.evidence, given.evidence_kind,
                           given.answered_from_body)
    completed = ContributionCompleted(
        given.contribution_id, attempt.participant, attempt.round, attempt.attempt, given.content,
        given.finish_reason, given.usage, given.latency_ms, given.served_by, given.fallback,
    )
    reading = _read_reply(b.state, attempt, sent, completed) if sent and sent.contribution_id == attempt.contribution_id \
        else None
    if reading is not None and reading.reask is not None:
        # the prompt the reply answers, as it was asked (before the limit learned now changes how it is asked)
        prompt = _chain_prompt(b.state, attempt.round, attempt.participant)
        # the reply is waited for before its re-ask (docs/DESIGN.md, Durability)
        b.record(*learned, completed, durable=True)
        _ask(b, attempt.participant, rounds.reask_prompt(prompt, completed.content, reading.reask), "reask")
        _check_budget(b)
        return
    # A completion is not waited for on its own: the round's completion, which follows from it, waits for both.
    b.record(*learned, completed, *(reading.records if reading is not None else ()))
    _check_budget(b)
    _check_round_complete(b)


def _read_reply(state: SessionState, attempt: ContributionState, sent: PromptSent,
                completed: ContributionCompleted) -> rounds.ReplyReading | None:
    """What a critique or vote reply gives (``audit.verify`` reads it again the same way); None for others."""
    kind = state.round_state(attempt.round).kind  # type: ignore[union-attr]  # in_flight: it runs
    as_json = sent.response_schema is not None
    if kind == "critique":
        first = rounds.reasked_reading(state, attempt.round, attempt.participant) if attempt.reasked else None
        return rounds.read_critique_reply(completed, sent.proposal_labels, as_json, first, attempt.reasked)
    if kind == "convergence":
        return rounds.read_vote_reply(completed, as_json, attempt.reasked, rounds.vote_context(state, sent))
    return None


def _limit_found(state: SessionState, attempt: ContributionState, limit: str | None, evidence: str,
                 error_kind: str, answered_from_body: bool = False) -> tuple[Event, ...]:
    """The ProviderLimitFound to record, once per provider: the participant is asked around it from then on."""
    if limit is None or not rounds.still_expected(state.participants[attempt.participant], limit):
        return ()
    return (ProviderLimitFound(attempt.contribution_id, attempt.participant, attempt.round, limit,  # type: ignore[arg-type]
                               evidence, error_kind, answered_from_body),)


def _on_reply_failed(b: _Builder, given: ReplyFailed) -> None:
    attempt = b.in_flight(given.contribution_id)
    if attempt is None:
        return
    number, participant = attempt.round, attempt.participant
    learned = _limit_found(b.state, attempt, given.limit, given.message, given.error_kind)
    if learned:
        # The server refused a feature of the request (response_format, tools): asked again at once
        # without it, which can change the outcome (unlike the same request again, which cannot).
        b.record(*learned, ContributionFailed(given.contribution_id, participant, number, attempt.attempt,
                                              given.error_kind, given.message, given.retryable, True), durable=True)
        _ask(b, participant, _around_limits(b.state, number, participant), "retry")
        _check_budget(b)
        return
    used = retries_used(b.state, number, participant)
    will_retry = (given.retryable and used < b.state.settings.max_retries
                  and not _repeats_malformed_stream(b.state, number, participant, given))
    b.record(ContributionFailed(given.contribution_id, participant, number, attempt.attempt, given.error_kind,
                                given.message, given.retryable, will_retry), durable=True)
    if will_retry:
        b.effect(StartRetryTimer(RetryDue(number, participant), used + 1, given.retry_after))
    _check_budget(b)
    _check_round_complete(b)


def _around_limits(state: SessionState, number: int, participant: str) -> rounds.RoundPrompt:
    """The participant's attempt asked again around the limit just found. A re-ask: the same reminder,
    asked for text (the text reader reads JSON too). A first prompt: built again from the state, which
    knows the limit now — it keeps its reply schema unless structured replies were the limit."""
    prompt = _chain_prompt(state, number, participant)
    if continues_reask(state, number, participant) and prompt.response_schema:
        return msgspec.structs.replace(prompt, response_schema=None)
    return prompt


def _repeats_malformed_stream(state: SessionState, number: int, participant: str, given: ReplyFailed) -> bool:
    """The same malformed stream the participant's previous attempt in this round got: a server that
    breaks its protocol the same way twice will a third time, so it is retried once only (every retry
    is a paid call). Same failure: same kind, same message spacing aside (``providers.errors``)."""
    if given.error_kind != MALFORMED_STREAM:
        return False
    failed = [c for c in state.attempts_in(number, participant) if c.status == "failed"]
    return bool(failed) and (failed[-1].error_kind, " ".join(failed[-1].error.split())) == (
        given.error_kind, " ".join(given.message.split()))


def retries_used(state: SessionState, number: int, participant: str) -> int:
    """The retries the participant has used in the round: its failures that were retried, but not the
    switches to asking around a provider's limit (those are asked again at once, and free)."""
    return sum(1 for c in state.attempts_in(number, participant)
               if c.status == "failed" and c.will_retry and not c.limit_found)


def waiting_for_retry(state: SessionState, number: int, participant: str) -> ContributionState | None:
    """The participant's failed attempt whose retry is due later (a backoff): failed with will_retry,
    not a limit switch (retried at once), and no attempt asked since."""
    attempts = state.attempts_in(number, participant)
    if not attempts:
        return None
    last = max(attempts, key=lambda c: c.attempt)
    return last if last.status == "failed" and last.will_retry and not last.limit_found else None


def _on_retry_due(b: _Builder, given: RetryDue) -> None:
    if b.running_round(given.round) is None or waiting_for_retry(b.state, given.round, given.participant) is None:
        return
    _ask(b, given.participant, _chain_prompt(b.state, given.round, given.participant), "retry")


def _on_deadline(b: _Builder, given: DeadlinePassed) -> None:
    number = b.running_round(given.round)
    if number is None:
        return
    timeout = b.state.settings.round_timeout_seconds
    _stop_round(b, number, "deadline", f"no answer within the round timeout of {timeout:g} s (round_timeout_seconds)")
    _check_round_complete(b)  # its RoundCompleted is durable, and so all of the above


def _stop_round(b: _Builder, number: int, kind: str, why: str) -> None:
    """Every attempt of the round in flight cancelled, and those waiting out a retry backoff made final:
    each recorded as failed (``kind``, not retried), so the round completes with what it has."""
    _cancel_in_flight(b, kind, why)
    for participant in b.state.round_state(number).participants:  # type: ignore[union-attr]
        failed = waiting_for_retry(b.state, number, participant)
        if failed is not None:
            b.effect(CancelTimer(RetryDue(number, participant)))
            b.record(ContributionFailed(failed.contribution_id, participant, number, failed.attempt,
                                        kind, why, False, False))


def _check_budget(b: _Builder) -> None:
    """Cut the running round once the session's spending has passed its budget: its attempts stop as at
    the deadline (``budget.CUT_KIND``), the round completes, and ``rounds.next_step`` ends the session
    ``budget_exhausted``. A re-run does not cut: its recording replays the cuts the original made."""
    number = b.running_round()
    if number is None or _is_rerun(b) or not budget.passed(b.state):
        return
    _stop_round(b, number, budget.CUT_KIND, budget.cut_reason(b.state.settings))
    _check_round_complete(b)


def _on_check_spending(b: _Builder, given: CheckSpending) -> None:
    _check_budget(b)


def _is_rerun(b: _Builder) -> bool:
    """The session re-runs a recorded one (it follows the original's plan of rounds)."""
    return b.state.rerun is not None


def _cancel_in_flight(b: _Builder, kind: str, why: str) -> None:
    """Cancel every attempt in flight and record each as failed (not retried). One asked in this very
    decision is not asked at all."""
    asked_now = {e.contribution_id for e in b.effects if isinstance(e, Ask)}
    b.effects = [e for e in b.effects if not (isinstance(e, Ask) and e.contribution_id in b.state.streaming)]
    for attempt in list(b.state.streaming.values()):
        if attempt.contribution_id not in asked_now:
            b.effect(CancelContribution(attempt.contribution_id))
        b.record(ContributionFailed(attempt.contribution_id, attempt.participant, attempt.round, attempt.attempt,
                                    kind, why, False, False))


def _on_humans_wait_over(b: _Builder, given: HumansWaitOver) -> None:
    number = b.running_round(given.round)
    if number is None or b.state.round_state(number).humans_waited:  # type: ignore[union-attr]
        return
    if not _humans_pending(b, number):  # every human answered in time: the wait running out says nothing
        return
    b.record(HumansWaitEnded(number))
    _check_round_complete(b)


# -- asking ---------------------------------------------------------------------------------------


def _chain_prompt(state: SessionState, number: int, participant: str) -> rounds.RoundPrompt:
    """The prompt the participant's next attempt in the round repeats: its re-ask, as recorded (a re-ask
    offers no tools, so its messages are the prompt's), or else its first prompt, built again from the
    state (the same within a round: what it reads does not change while the round runs)."""
    round_state = state.round_state(number)
    assert round_state is not None
    if continues_reask(state, number, participant):
        last = state.round_prompts[participant]
        return rounds.RoundPrompt(participant, round_state.kind, last.messages, last.proposal_labels,
                                  last.response_schema)
    return rounds.prompt_for(state, round_state.kind, participant, number)


def _ask(b: _Builder, participant: str, prompt: rounds.RoundPrompt, purpose: PromptPurpose) -> None:
    """Record the attempt's PromptSent and ask for it: the next attempt number, its tools, its limits."""
    state = b.state
    number = state.current_round.round  # type: ignore[union-attr]
    kind = state.current_round.kind  # type: ignore[union-attr]
    attempt = max((c.attempt for c in state.attempts_in(number, participant)), default=0) + 1
    reasked = purpose == "reask" or (purpose == "retry" and continues_reask(state, number, participant))
    info = state.participants[participant]
    settings = state.settings
    names = b.tools.names.get(participant, ())
    mode = info.tool_mode if info.tools and names and kind in TOOL_ROUNDS and not reasked else "off"
    messages = prompt.messages
    if mode != "off":  # the tool section follows the system prompt, and is recorded with it
        section = NATIVE_TOOLS_NOTE if mode == "native" else b.tools.text_sections.get(participant, "")
        messages = (*messages[:1], PromptMessage("system", section), *messages[1:])
    offered = names if mode == "native" else ()
    cid = f"r{number}.{participant}.{attempt}"
    b.record(PromptSent(cid, number, participant, attempt, info.model, messages, settings.temperature,
                        settings.max_tokens, purpose, prompt.proposal_labels, prompt.response_schema, offered))
    schema = rounds.reply_schema(prompt)
    b.effect(Ask(cid, participant, messages, settings.temperature, settings.max_tokens, mode, offered,
                 prompt.response_schema if schema else None, schema, settings.max_reply_chars, info.streams))


# -- rounds -----------------------------------------------------------------------------------------


def _start_round(b: _Builder, kind: RoundKind) -> None:
    state = b.state
    number = (state.current_round.round if state.current_round else 0) + 1
    participants = tuple(rounds.round_participants(state, kind))
    b.record(RoundStarted(number, kind, rounds.iteration_for(state, kind), participants))
    _start_round_timers(b, number, kind)
    for participant in participants:
        _ask(b, participant, rounds.prompt_for(b.state, kind, participant, number), "initial")
    _check_round_complete(b)  # a round with nobody to ask completes (and fails) at once


def _start_round_timers(b: _Builder, number: int, kind: RoundKind) -> None:
    b.effect(StartTimer(DeadlinePassed(number), b.state.settings.round_timeout_seconds))
    if _waits_for_humans(b, kind) and not b.state.round_state(number).humans_waited:  # type: ignore[union-attr]
        b.effect(StartTimer(HumansWaitOver(number), b.state.settings.human_wait_seconds))


def _waits_for_humans(b: _Builder, kind: RoundKind) -> bool:
    """A round of that kind waits for the session's humans (a re-run does not: it follows its original)."""
    return (b.state.settings.human_wait_seconds > 0 and kind in HUMAN_ROUNDS and b.state.rerun is None
            and bool(_humans(b.state)))


def _humans(state: SessionState) -> list[str]:
    """The session's humans that still take part (a fork may have removed some)."""
    return [name for name, info in state.participants.items() if info.kind == "human" and name not in state.removed]


def _humans_pending(b: _Builder, number: int) -> list[str]:
    """The session's humans the round still waits for (none once human_wait_seconds ran out)."""
    round_state = b.state.round_state(number)
    assert round_state is not None
    if round_state.humans_waited or not _waits_for_humans(b, round_state.kind):
        return []
    if round_state.kind == "draft":
        return [name for name in _humans(b.state) if name not in b.state.drafts]
    votes = b.state.votes_in(number)
    return [name for name in _humans(b.state) if name not in votes]


def _check_round_complete(b: _Builder) -> None:
    number = b.running_round()
    if number is None:
        return
    result = rounds.round_result(b.state, number)
    if result is None or _humans_pending(b, number):
        return
    kind = b.state.current_round.kind  # type: ignore[union-attr]
    b.record(RoundCompleted(number, kind, result.status, result.succeeded,  # type: ignore[arg-type]
                            result.failed, result.score, result.reason), durable=True)
    b.effect(RoundOver(number))
    _advance(b)


def _advance(b: _Builder) -> None:
    """After a round: end the session if the rules say so; else, when deliberating, start the next."""
    step = rounds.next_step(b.state)
    if isinstance(step, rounds.EndSession):
        _end(b, step)
    elif isinstance(step, rounds.MeasureSimilarity):  # whether deliberating or not: an ending may hang on it
        b.effect(Measure(step.comparisons))
    elif isinstance(step, rounds.NextRound) and b.mode.auto:
        plan = b.state.rerun
        if plan is None:
            _start_round(b, step.kind)
        elif len(b.state.rounds) < len(plan.rounds):  # a re-run: the original's next round
            _start_round(b, plan.rounds[len(b.state.rounds)])
        elif plan.cancel_reason is not None:
            _cancel(b, plan.cancel_reason)
        else:  # the plan ran out where the original stopped: wait for commands, as it did
            b.mode = Mode()
            b.effect(PlanDone())


def _end(b: _Builder, end: rounds.EndSession) -> None:
    b.record(SessionEnded(end.outcome, end.reason, end.final_score), durable=True)
    b.effect(PlanDone())
    b.effect(Stop())


# -- commands -------------------------------------------------------------------------------------


def _on_recover(b: _Builder, given: Recover) -> None:
    abandoned = [ContributionAbandoned(c.contribution_id, c.participant, c.round, c.attempt,
                                       "in flight when the process stopped; run again on resume")
                 for c in b.state.streaming.values()]
    b.record(*abandoned, SessionResumed(tuple(a.contribution_id for a in abandoned)), durable=True)
    number = b.running_round()
    if number is not None:
        _continue_round(b, number)
        _check_budget(b)  # what the abandoned attempts streamed counts too
    else:  # stopped between rounds: an ending the rules call for may not be recorded yet
        _advance(b)


def _continue_round(b: _Builder, number: int) -> None:
    """Resume a round the log shows running, as the live session would have gone on: a participant
    waiting out a backoff gets its retry after one; one whose re-ask was cut off is re-asked the same
    way; one whose reply is in but whose re-ask is not yet is re-asked; whoever else has not settled
    is asked again from its first prompt (``rerun``). Retries used stay used."""
    round_state = b.state.round_state(number)
    assert round_state is not None
    _start_round_timers(b, number, round_state.kind)
    settled = rounds.participant_outcomes(b.state, number)
    for participant in round_state.participants:
        if participant in settled:
            continue
        attempts = b.state.attempts_in(number, participant)
        last = max(attempts, key=lambda c: c.attempt) if attempts else None
        if last is None or last.status == "abandoned":
            chain = _chain_prompt(b.state, number, participant)
            _ask(b, participant, chain, "reask" if last is not None and last.reasked else "rerun")
        elif last.status == "failed" and last.will_retry:
            if last.limit_found:  # its retry around the limit was to be asked at once
                _ask(b, participant, _around_limits(b.state, number, participant), "retry")
            else:
                b.effect(StartRetryTimer(RetryDue(number, participant), retries_used(b.state, number, participant)))
        elif last.status == "completed":
            _settle_reply(b, last)
    _check_round_complete(b)


def _settle_reply(b: _Builder, completed_attempt: ContributionState) -> None:
    """A completed critique or vote reply the log does not follow up (the process stopped between the
    reply and its re-ask): re-ask it now, as the live session would have."""
    sent = b.state.round_prompts.get(completed_attempt.participant)
    if sent is None or sent.contribution_id != completed_attempt.contribution_id:
        return
    completed = ContributionCompleted(completed_attempt.contribution_id, completed_attempt.participant,
                                      completed_attempt.round, completed_attempt.attempt, completed_attempt.content,
                                      completed_attempt.finish_reason, completed_attempt.usage,
                                      completed_attempt.latency_ms)
    reading = _read_reply(b.state, completed_attempt, sent, completed)
    if reading is not None and reading.reask is not None:
        prompt = _chain_prompt(b.state, completed_attempt.round, completed_attempt.participant)
        _ask(b, completed_attempt.participant, rounds.reask_prompt(prompt, completed.content, reading.reask), "reask")


def _on_start_deliberating(b: _Builder, given: StartDeliberating) -> None:
    if b.mode.auto:
        return  # already deliberating: a second caller only follows along
    b.mode = Mode(True)
    if b.running_round() is None:
        _advance(b)


def _on_start_round(b: _Builder, given: StartRound) -> None:
    problem = rounds.why_not(b.state, given.kind)
    if problem is not None:
        raise InvalidCommandError(problem)
    _start_round(b, given.kind)


def _refuse_human_input(state: SessionState, name: str) -> None:
    """A human's draft or vote is taken only while the session runs and its log budget lasts (each is
    up to a goal's size, and any number may come: the budget is what bounds them), and only from a
    human that takes part (a fork may have removed one)."""
    if name in state.removed:
        raise InvalidCommandError(f"{name} was removed from this session (a fork dropped it); it takes no part now")
    if state.ended:
        raise InvalidCommandError(f"the session has ended ({state.status})")
    spent = rounds.budget_spent(state)
    if spent is not None:
        raise InvalidCommandError(spent)


def _human_joins(state: SessionState, name: str) -> tuple[Event, ...]:
    info = state.participants.get(name)
    if info is None:
        return (ParticipantAdded(ParticipantInfo(name, kind="human")),)
    if info.kind != "human":
        raise InvalidCommandError(f"{name} is an AI participant; humans need a name of their own")
    return ()


def _on_add_human_draft(b: _Builder, given: AddHumanDraft) -> None:
    state = b.state
    _refuse_human_input(state, given.author)
    closed = rounds.drafts_closed(state)
    if closed:
        raise InvalidCommandError(closed)
    if not given.content.strip():
        raise InvalidCommandError("the draft is empty")
    joins = _human_joins(state, given.author)
    current = state.current_round
    round_number = current.round if current is not None and current.kind == "draft" else 0
    b.record(*joins, HumanDraftAdded(round_number, given.author, given.content), durable=True)
    _check_round_complete(b)  # the round may have been waiting for this human


def _on_cast_vote(b: _Builder, given: CastVote) -> None:
    state = b.state
    _refuse_human_input(state, given.voter)
    if given.vote not in ("AGREE", "DISAGREE", "ABSTAIN"):
        raise InvalidCommandError(f"a vote is AGREE, DISAGREE or ABSTAIN, not {given.vote!r}")
    round_number = rounds.human_vote_round(state)  # the vote in progress, else the one that comes next
    if round_number is None and state.settings.convergence == "similarity":
        raise InvalidCommandError("this session stops when its syntheses stop changing (convergence = similarity): "
                                  "it takes no votes; add a draft instead, or create a session with votes")
    if round_number is None:
        raise InvalidCommandError("there is no synthesis up for a vote: run a synthesis round first")
    joins = _human_joins(state, given.voter)
    b.record(*joins, VoteRecorded(round_number, given.voter, given.vote, given.reasons, given.concerns,
                                  by_human=True), durable=True)
    _check_round_complete(b)  # the round may have been waiting for this human


def _on_cancel(b: _Builder, given: CancelSession) -> None:
    if not b.state.ended:
        _cancel(b, given.reason)


def _cancel(b: _Builder, reason: str) -> None:
    _cancel_in_flight(b, "cancelled", reason)
    number = b.running_round()
    if number is not None:
        kind = b.state.current_round.kind  # type: ignore[union-attr]
        b.record(RoundCompleted(number, kind, "cancelled", reason=reason))
        b.effect(RoundOver(number))
    _end(b, rounds.EndSession("cancelled", reason))


def _on_interrupt(b: _Builder, given: Interrupt) -> None:
    if b.state.ended:
        return
    abandoned = []
    for attempt in b.state.streaming.values():
        b.effect(CancelContribution(attempt.contribution_id))
        abandoned.append(ContributionAbandoned(attempt.contribution_id, attempt.participant, attempt.round,
                                               attempt.attempt, given.reason))
    b.record(*abandoned, SessionInterrupted(given.reason, tuple(a.contribution_id for a in abandoned)), durable=True)
    b.effect(Stop())


def _on_switch_provider(b: _Builder, given: SwitchProvider) -> None:
    info = b.state.participants.get(given.participant)
    if info is None or info.kind != "ai" or given.participant in b.state.removed:
        raise InvalidCommandError(f"{given.participant} is not an AI participant of this session")
    if b.state.ended:
        raise InvalidCommandError(f"the session has ended ({b.state.status})")
    current = b.state.current_round
    if b.running_round() is not None:
        raise InvalidCommandError(f"round {current.round} ({current.kind}) is running; a provider can "  # type: ignore[union-attr]
                                  "be switched between rounds")
    b.record(ProviderSwitched(given.participant, given.spec, given.model, info.provider, info.model,
                              given.replies, given.tool_mode, given.price),  # type: ignore[arg-type]
             durable=True)


def _on_similarities_measured(b: _Builder, given: SimilaritiesMeasured) -> None:
    """Record the measured similarities not recorded yet (a measure asked for twice is recorded once),
    then go on as the rules say, now that they can read them."""
    if b.state.ended:
        return
    new: dict[tuple[int, int, tuple[str, ...]], SimilarityMeasured] = {}
    for measured in given.measured:
        key = (measured.round, measured.compared_with_round, measured.pair)
        if key not in new and b.state.similarity(*key) is None:
            new[key] = measured
    if not new:
        return
    b.record(*new.values(), durable=True)  # a measure can be a paid call: not asked for again after a crash
    if b.running_round() is None:
        _advance(b)


def _on_internal_failure(b: _Builder, given: InternalFailure) -> None:
    if b.state.ended:
        return
    _cancel_in_flight(b, "internal", f"the session actor failed: {given.description}")
    b.record(SessionEnded("failed", f"{rounds.INTERNAL_ERROR}: {given.description}"), durable=True)
    b.effect(PlanDone())
    b.effect(Stop())


#: What the world tells the session (replies, tool calls, timers, measures), as opposed to commands.
_FROM_THE_WORLD = (Replied, ReplyFailed, ToolCallStarted, ToolCallFinished, DeadlinePassed, HumansWaitOver, RetryDue,
                   CheckSpending, SimilaritiesMeasured)

_HANDLERS: dict[type, Any] = {
    Replied: _on_replied,
    ReplyFailed: _on_reply_failed,
    ToolCallStarted: _on_tool_started,
    ToolCallFinished: _on_tool_finished,
    DeadlinePassed: _on_deadline,
    HumansWaitOver: _on_humans_wait_over,
    RetryDue: _on_retry_due,
    Recover: _on_recover,
    StartDeliberating: _on_start_deliberating,
    StartRound: _on_start_round,
    AddHumanDraft: _on_add_human_draft,
    CastVote: _on_cast_vote,
    CancelSession: _on_cancel,
    Interrupt: _on_interrupt,
    SwitchProvider: _on_switch_provider,
    SimilaritiesMeasured: _on_similarities_measured,
    InternalFailure: _on_internal_failure,
    CheckSpending: _on_check_spending,
}
