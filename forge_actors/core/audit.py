"""Checking a recorded session against the log's invariants.

Used by the tests, by ``tools/replay.py --verify``, and by anyone auditing a log:

- the stream's versions run 1, 2, 3... without a gap;
- nothing follows SessionEnded;
- each contribution id is sent once (one PromptSent), and settled at most once: completed,
  failed or abandoned (a failure awaiting its retry may be made final once, at the deadline);
- every delta belongs to an attempt whose prompt was recorded before it, carries that
  attempt's number, and none comes after that attempt was settled;
- every completed contribution's content is exactly the concatenation of its own deltas (of its
  last turn, when it called tools: what the model wrote after the last tool result);
- every tool call of a contribution has a call id of its own and exactly one result, after it and
  before the contribution is settled; a completed contribution has no call left unanswered;
- every critique and vote of an AI participant is what its completed reply gives, read again
  with the session's own reader (``rounds.read_critique_reply`` / ``read_vote_reply``), and is
  recorded right after that reply; a human's vote comes from a human participant, in the
  round a human's vote counts in (``rounds.human_vote_round``);
- each round starts where the rules put it: numbered after the last, once it is over, with
  the iteration and the participants the log gives (``rounds.iteration_for``,
  ``round_participants``);
- folding the events reproduces every recorded round outcome (its status, who succeeded,
  who failed, the convergence score);
- a similarity measured by the lexical measure is what ``similarity.lexical_similarity`` gives
  for the texts it names, measured again (an embedding's figure cannot be: it is taken as recorded);
- the session ends as the rules say (``rounds.next_step``): with the outcome and final score
  they call for, or, where they call for none, only cancelled or failed by an engine bug
  (``rounds.INTERNAL_ERROR``); and a session whose log calls for an ending has one, unless an
  engine drives it (``driven``: its end may be on its way).

Two engines driving one session at once leave such traces, and so does a log edited by
hand (a score, a vote, an outcome, a deleted ending). What the audit cannot see: a change
that keeps every fact consistent with the others (the settings in SessionCreated, say, or a
reply's content edited together with its deltas and what it gives), and the wording of
reasons, which it does not compare.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import get_args

import msgspec

from eventstore import RecordedEvent
from forge_actors.core import rounds, similarity
from forge_actors.core.events import (
    ContentDelta,
    ContributionAbandoned,
    ContributionCompleted,
    ContributionFailed,
    CritiqueRecorded,
    PromptSent,
    RoundCompleted,
    RoundStarted,
    SessionCreated,
    SessionEnded,
    SessionForked,
    SimilarityMeasured,
    ToolCalled,
    ToolResult,
    VoteChoice,
    VoteRecorded,
)
from forge_actors.core.state import SessionState, apply


class Violation(msgspec.Struct, frozen=True):
    position: int
    version: int
    problem: str

    def __str__(self) -> str:
        return f"position {self.position} (version {self.version}): {self.problem}"


_SETTLED_AS = {ContributionCompleted: "completed", ContributionFailed: "failed", ContributionAbandoned: "abandoned"}


class _Contribution(msgspec.Struct):
    """What the audit has seen of one contribution id so far."""

    prompted_at: int
    attempt: int
    deltas: list[str] = []
    settled: str | None = None  # "completed", "failed", "abandoned"
    settled_at: int = 0
    retry_pending: bool = False  # failed with will_retry: the deadline may still make it final
    calls: dict[str, bool] = {}  # call id -> whether its result came
    tools_since_delta: bool = False  # a tool event came after the last delta: the next delta starts a turn
    prompt: PromptSent | None = None  # the first PromptSent of this id (the reply is read with it)


class _Owed(msgspec.Struct):
    """The critiques or vote a completed reply gives, which the log must record right after it
    (the session actor appends them with the reply, in one append)."""

    records: list[CritiqueRecorded | VoteRecorded] = []
    contribution_id: str = ""
    position: int = 0


def verify(records: Iterable[RecordedEvent], *, driven: bool = False) -> list[Violation]:
    """Every violation in a session's recorded events (decoded), in log order; empty when sound.

    ``driven``: an engine holds the session's lease now (``Forge.verify`` knows), so an ending
    the log calls for may still be on its way (the session actor commits a round's completion,
    then its ending): not a violation yet. Without a driver, such a log lacks its SessionEnded
    (deleted, or its engine stopped in between: resuming the session records it).
    """
    violations: list[Violation] = []
    state = SessionState()
    contributions: dict[str, _Contribution] = {}
    owed = _Owed()
    ended_at: int | None = None
    expected_version = 1
    last: RecordedEvent | None = None
    for record in records:
        event = record.event
        flag = _flagger(violations, record)

        if record.version != expected_version:
            flag(f"version {record.version} where {expected_version} was expected")
        expected_version = record.version + 1
        if ended_at is not None:
            flag(f"{type(event).__name__} after SessionEnded (at position {ended_at})")
        if owed.records and not _is_owed_kind(event):
            flag(_missing(owed))
            owed = _Owed()
        if isinstance(event, SessionEnded) and ended_at is None:
            ended_at = record.position
            _report(flag, _ending_problem(state, event))
        elif isinstance(event, PromptSent):
            _check_prompt(contributions, event, record.position, flag)
        elif isinstance(event, ContentDelta):
            _check_delta(contributions.get(event.contribution_id), event, flag)
        elif isinstance(event, (ToolCalled, ToolResult)):
            _check_tool_event(contributions.get(event.contribution_id), event, flag)
        elif isinstance(event, (ContributionCompleted, ContributionFailed, ContributionAbandoned)):
            seen = contributions.get(event.contribution_id)
            _check_settlement(seen, event, record.position, flag)
            if isinstance(event, ContributionCompleted) and seen is not None and seen.settled_at == record.position:
                owed = _read_reply(state, seen, event, record.position)
        # these facts follow from earlier ones: where one differs, the audit goes on with what the
        # log gives, so that one edit is one violation (not also every decision taken from it)
        elif isinstance(event, (CritiqueRecorded, VoteRecorded)):
            event = _check_reply_record(state, owed, event, flag)
        elif isinstance(event, RoundStarted):
            event = _check_round_start(state, event, flag)
        elif isinstance(event, RoundCompleted):
            event = _check_round_outcome(state, event, flag)
        elif isinstance(event, SimilarityMeasured):
            _report(flag, _similarity_problem(state, event))
        state = apply(state, event)
        last = record
    if last is not None:
        flag = _flagger(violations, last)
        if owed.records:
            flag(_missing(owed))
        if ended_at is None and not driven:
            _report(flag, _missing_end_problem(state))
    return violations


def _report(flag: Callable[[str], None], problem: str | None) -> None:
    if problem:
        flag(problem)


def _check_prompt(contributions: dict[str, _Contribution], event: PromptSent, position: int,
                  flag: Callable[[str], None]) -> None:
    seen = contributions.get(event.contribution_id)
    if seen is not None:
        # Keep the first one's record: its deltas and settlement are what later events are checked against.
        flag(f"PromptSent reuses the contribution id {event.contribution_id} (first sent at position "
             f"{seen.prompted_at})")
        return
    contributions[event.contribution_id] = _Contribution(position, event.attempt, prompt=event)


def _check_delta(seen: _Contribution | None, event: ContentDelta, flag: Callable[[str], None]) -> None:
    cid = event.contribution_id
    if seen is None:
        flag(f"delta of {cid} before its prompt")
        return
    if seen.settled is not None:
        flag(f"delta of {cid} after it {seen.settled} (at position {seen.settled_at})")
    elif seen.attempt != event.attempt:
        flag(f"delta of {cid} says attempt {event.attempt}, its prompt {seen.attempt}")
    if seen.tools_since_delta:  # a new turn: the content is what the last turn wrote
        seen.deltas, seen.tools_since_delta = [], False
    seen.deltas.append(event.text)


def _check_tool_event(seen: _Contribution | None, event: ToolCalled | ToolResult, flag: Callable[[str], None]) -> None:
    cid, what = event.contribution_id, type(event).__name__
    if seen is None:
        flag(f"{what} of {cid} before its prompt")
        return
    if seen.settled is not None:
        flag(f"{what} {event.call_id} of {cid} after it {seen.settled} (at position {seen.settled_at})")
    seen.tools_since_delta = True
    if isinstance(event, ToolCalled):
        if event.call_id in seen.calls:
            flag(f"{cid} calls a tool with the call id {event.call_id} a second time")
        seen.calls[event.call_id] = False
    elif event.call_id not in seen.calls:
        flag(f"ToolResult {event.call_id} of {cid} answers no call")
    elif seen.calls[event.call_id]:
        flag(f"ToolResult {event.call_id} of {cid} answers a call already answered")
    else:
        seen.calls[event.call_id] = True


def _check_settlement(seen: _Contribution | None, event: ContributionCompleted | ContributionFailed |
                      ContributionAbandoned, position: int, flag: Callable[[str], None]) -> None:
    cid = event.contribution_id
    settled = _SETTLED_AS[type(event)]
    if seen is None:
        flag(f"{cid} {settled} without its prompt")
        return
    if seen.settled is not None:
        finalises_a_retry = seen.retry_pending and isinstance(event, ContributionFailed) and not event.will_retry
        if not finalises_a_retry:
            flag(f"{cid} {settled} a second time (it {seen.settled} at position {seen.settled_at})")
            return
    elif isinstance(event, ContributionCompleted):
        unanswered = sorted(call for call, answered in seen.calls.items() if not answered)
        if unanswered:
            flag(f"{cid} completed with tool call(s) {', '.join(unanswered)} unanswered")
        joined = "" if seen.tools_since_delta else "".join(seen.deltas)
        if joined != event.content:
            flag(f"{cid}: the content ({len(event.content)} chars) is not its deltas joined ({len(joined)} chars)")
    seen.settled, seen.settled_at = settled, position
    seen.retry_pending = isinstance(event, ContributionFailed) and event.will_retry


def _flagger(violations: list[Violation], record: RecordedEvent) -> Callable[[str], None]:
    """Records a problem at ``record``'s place in the log."""
    return lambda problem: violations.append(Violation(record.position, record.version, problem))


# -- what replies give ---------------------------------------------------------------------------


def _read_reply(state: SessionState, seen: _Contribution, completed: ContributionCompleted, position: int) -> _Owed:
    """What a completed critique or vote reply gives, read as the session's decider read it: whether
    it answers a re-ask, and what the re-asked reply gave, are the fold's (``ContributionState.reasked``,
    ``rounds.reasked_reading``)."""
    round_ = state.round_state(completed.round)
    prompt = seen.prompt
    if round_ is None or prompt is None or round_.kind not in ("critique", "convergence"):
        return _Owed()
    as_json = prompt.response_schema is not None
    attempt = state.streaming.get(completed.contribution_id)
    reasked = attempt is not None and attempt.reasked
    if round_.kind == "critique":
        first = rounds.reasked_reading(state, completed.round, completed.participant) if reasked else None
        reading = rounds.read_critique_reply(completed, prompt.proposal_labels, as_json, first, reasked)
    else:
        reading = rounds.read_vote_reply(completed, as_json, reasked, rounds.vote_context(state, prompt))
    return _Owed(list(reading.records), completed.contribution_id, position)


def _is_owed_kind(event: object) -> bool:
    return isinstance(event, CritiqueRecorded) or (isinstance(event, VoteRecorded) and not event.by_human)


def _describe(record: CritiqueRecorded | VoteRecorded) -> str:
    if isinstance(record, CritiqueRecorded):
        return (f"{record.critic}'s critique of proposal {record.label} ({record.proposal_author}) in round "
                f"{record.round}, score {record.score}")
    return f"{record.voter}'s vote {record.vote} in round {record.round}"


def _missing(owed: _Owed) -> str:
    return (f"{owed.contribution_id}'s reply (position {owed.position}) gives {_describe(owed.records[0])}"
            + (f" and {len(owed.records) - 1} more" if len(owed.records) > 1 else "")
            + ", which the log does not record after it")


def _check_reply_record(state: SessionState, owed: _Owed, event: CritiqueRecorded | VoteRecorded,
                        flag: Callable[[str], None]) -> CritiqueRecorded | VoteRecorded:
    """A critique or vote against what its reply gives; returns the one to go on with."""
    if isinstance(event, VoteRecorded) and event.by_human:
        _report(flag, _human_vote_problem(state, event))
        return event
    if not owed.records:
        flag(f"{_describe(event)}: no completed reply just before it gives it")
        return event
    # the one on the same proposal (the vote of the same voter), else the next one the reply gives
    same = [i for i, r in enumerate(owed.records) if _subject(r) == _subject(event)]
    read = owed.records.pop(same[0] if same else 0)
    if event != read:
        flag(f"{_describe(event)} is not what {owed.contribution_id}'s reply (position {owed.position}) gives: "
             + _differences(event, read))
    return read


def _subject(record: CritiqueRecorded | VoteRecorded) -> tuple[str, ...]:
    return (record.critic, record.label) if isinstance(record, CritiqueRecorded) else (record.voter,)


def _differences(recorded: CritiqueRecorded | VoteRecorded, read: CritiqueRecorded | VoteRecorded) -> str:
    """The fields in which a recorded critique or vote differs from the one its reply gives."""
    fields = (f for f in recorded.__struct_fields__ if getattr(recorded, f) != getattr(read, f))
    return "; ".join(f"{f} {_short(getattr(recorded, f))} recorded, {_short(getattr(read, f))} read" for f in fields)


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _human_vote_problem(state: SessionState, event: VoteRecorded) -> str | None:
    info = state.participants.get(event.voter)
    if info is None or info.kind != "human":
        return f"a human's vote by {event.voter}, who is {'an AI' if info else 'no'} participant of the session"
    if event.vote not in get_args(VoteChoice) or event.confidence is not None:
        return f"{event.voter}'s vote is not one a human gives: {event.vote!r}, confidence {event.confidence}"
    counts_in = rounds.human_vote_round(state)
    if event.round != counts_in:
        where = f"round {counts_in}" if counts_in is not None else "no round: no synthesis is up for a vote"
        return f"{event.voter}'s vote is recorded in round {event.round}, but a human's vote counts in {where}"
    return None


# -- the flow of the session ----------------------------------------------------------------------


def _check_round_start(state: SessionState, event: RoundStarted, flag: Callable[[str], None]) -> RoundStarted:
    """A round starts as the session actor starts one (``_start_round``), whichever step asked for it;
    returns the start to go on with."""
    current = state.current_round
    if current is not None and current.status == "running":
        flag(f"round {event.round} started while round {current.round} ({current.kind}) was still running")
    number = (current.round if current is not None else 0) + 1
    if event.round != number:
        flag(f"round {event.round} started where round {number} comes next")
    iteration = rounds.iteration_for(state, event.kind)
    if event.iteration != iteration:
        flag(f"round {event.round} ({event.kind}) says iteration {event.iteration}, the log gives {iteration}")
    asked = tuple(rounds.round_participants(state, event.kind))
    if event.participants != asked:
        flag(f"round {event.round} ({event.kind}) asks {list(event.participants)}, the log gives {list(asked)}")
    return msgspec.structs.replace(event, iteration=iteration, participants=asked)


def _check_round_outcome(state: SessionState, event: RoundCompleted, flag: Callable[[str], None]) -> RoundCompleted:
    """The outcome the log gives (``rounds.round_result``, which the session actor records) against the
    recorded one; returns the outcome to go on with."""
    started = state.round_state(event.round)
    if started is None:
        flag(f"round {event.round}: recorded as over, but it never started")
        return event
    if started.status != "running":
        flag(f"round {event.round}: recorded as over a second time (it was {started.status})")
    if event.kind != started.kind:
        flag(f"round {event.round}: recorded as a {event.kind} round, but it started as a {started.kind} round")
    if event.status == "cancelled":  # a cancel ends the round wherever it was (its SessionEnded follows)
        return event
    result = rounds.round_result(state, event.round)
    if result is None:
        unsettled = sorted(set(started.participants) - set(rounds.participant_outcomes(state, event.round)))
        flag(f"round {event.round}: recorded as over, but the log leaves {unsettled} unsettled")
        return event
    if result.status != event.status:
        flag(f"round {event.round}: the log gives the status {result.status}, the round recorded {event.status}")
    if set(result.succeeded) != set(event.succeeded) or set(result.failed) != set(event.failed):
        flag(f"round {event.round}: the log gives succeeded={sorted(result.succeeded)} failed={sorted(result.failed)}, "
             f"the round recorded succeeded={sorted(event.succeeded)} failed={sorted(event.failed)}")
    if result.score != event.score:
        flag(f"round {event.round}: the votes give a score of {result.score}, the round recorded {event.score}")
    return msgspec.structs.replace(event, kind=started.kind, status=result.status, succeeded=result.succeeded,
                                   failed=result.failed, score=result.score)


def _similarity_problem(state: SessionState, event: SimilarityMeasured) -> str | None:
    """The texts a similarity names exist; a lexical figure is the one the measure gives them again."""
    if event.pair:
        texts = [state.drafts.get(author) for author in event.pair]
    else:
        by_round = {s.round: s.content for s in state.syntheses}
        texts = [by_round.get(event.round), by_round.get(event.compared_with_round)]
    first, second = (texts + [None, None])[:2]
    if first is None or second is None:
        return f"a similarity of round {event.round} to round {event.compared_with_round} names texts the log lacks"
    if event.method == "lexical":
        again = similarity.lexical_similarity(first, second)
        if again != event.value:
            return (f"the similarity of round {event.round} to round {event.compared_with_round} is recorded as "
                    f"{event.value}, the lexical measure gives {again}")
    return None


def _ending_problem(state: SessionState, event: SessionEnded) -> str | None:
    """The recorded ending against the one the rules call for (``rounds.next_step``, as the session actor asks)."""
    due = rounds.next_step(state)
    if isinstance(due, rounds.EndSession):
        if event.outcome != due.outcome:
            return f"the session ended {event.outcome}, but the log calls for {due.outcome}: {due.reason}"
        if event.final_score != due.final_score:
            return f"the session ended with a final score of {event.final_score}, but the log gives {due.final_score}"
        return None
    current = state.current_round
    if event.outcome == "cancelled" and current is not None and current.status == "running":
        # the session actor records the running round as cancelled first
        return f"the session was cancelled while round {current.round} ran, with no RoundCompleted saying so"
    internal_failure = event.outcome == "failed" and event.reason.startswith(f"{rounds.INTERNAL_ERROR}:")
    if event.outcome == "cancelled" or internal_failure:  # a command or a bug, not a decision of the rules
        if event.final_score is not None:
            return f"the session ended {event.outcome} with a final score of {event.final_score}: no rule gives one"
        return None
    return f"the session ended {event.outcome}, but the log calls for no ending there: {_next(state, due)}"


def _next(state: SessionState, step: rounds.NextRound | rounds.MeasureSimilarity | None) -> str:
    if isinstance(step, rounds.NextRound):
        return f"a {step.kind} round comes next"
    if isinstance(step, rounds.MeasureSimilarity):
        return "similarities were still to be measured"
    current = state.current_round
    return f"round {current.round} ({current.kind}) was still running" if current is not None else "nothing had run"


def _missing_end_problem(state: SessionState) -> str | None:
    """A log that calls for an ending and has none, with nobody driving the session."""
    if state.ended:
        return None
    due = rounds.next_step(state)
    if not isinstance(due, rounds.EndSession):
        return None
    return (f"the log calls for the session to end {due.outcome} ({due.reason}), but no SessionEnded follows "
            "and no engine drives the session (if its engine stopped in between, resuming it records the end)")


# -- a fork's copied prefix --------------------------------------------------------------------------


#: What a fork copies after the end of its round besides it: the facts its parent recorded between
#: rounds about who takes part, and the similarities measured of the round's texts (a fork has the
#: same texts: measuring them again would be a paid call for a copied round). ``engine.forking``
#: copies them; the audit allows them there.
BETWEEN_ROUNDS = frozenset({"SessionForked", "ParticipantAdded", "ParticipantRemoved", "ProviderSwitched",
                            "SimilarityMeasured"})


class ForkCheck(msgspec.Struct, frozen=True):
    """A fork's copy of its parent, checked (``check_fork``): ``checked`` is False when the parent is not
    in the log (``note`` says so); ``violations`` are the copied events that differ from the parent's."""

    parent_id: str
    round: int
    copied: int
    checked: bool
    violations: tuple[Violation, ...] = ()
    note: str = ""


def check_fork(records: list[RecordedEvent], parent: list[RecordedEvent] | None) -> ForkCheck | None:
    """A fork's copied prefix (``records``, decoded: the fork's events) against its parent's events
    (``parent``; None when the log does not hold it). The copy is the parent's first ``parent_version``
    events, the same in every field but the session id of SessionCreated, and ends at the parent's
    RoundCompleted of the round forked at (or the facts between rounds that follow it). None for a
    session that is no fork."""
    at = next((i for i in range(len(records) - 1, -1, -1) if isinstance(records[i].event, SessionForked)), None)
    if at is None:
        return None
    forked: SessionForked = records[at].event
    copied = forked.parent_version
    if parent is None:
        return ForkCheck(forked.parent_id, forked.round, copied, False,
                         note=f"the parent session {forked.parent_id} is not in this log: the {copied} copied events "
                              "were checked as this session's own, not against it")
    problems: list[Violation] = []
    flag = _flagger(problems, records[at])
    if at != copied:
        flag(f"SessionForked says {copied} events were copied from {forked.parent_id}; {at} precede it")
    if len(parent) < copied:
        flag(f"the parent {forked.parent_id} has {len(parent)} events, fewer than the {copied} copied from it")
    else:
        ends = [i for i, r in enumerate(parent[:copied]) if isinstance(r.event, RoundCompleted)]
        ends_round = bool(ends) and parent[ends[-1]].event.round == forked.round and all(
            type(r.event).__name__ in BETWEEN_ROUNDS for r in parent[ends[-1] + 1:copied])
        if not ends_round or parent[copied - 1].position != forked.parent_position:
            flag(f"the parent's event {copied} (position {parent[copied - 1].position}) is not the end of its round "
                 f"{forked.round} at position {forked.parent_position}, where SessionForked says the copy ends")
    differing = [(mine, theirs) for mine, theirs in zip(records[:min(at, copied)], parent[:copied], strict=False)
                 if _as_copied(theirs.event, mine.event) != mine.event]
    if differing:
        mine, theirs = differing[0]
        _flagger(problems, mine)(
            f"the copied {type(mine.event).__name__} differs from the parent's event {theirs.version} "
            f"({type(theirs.event).__name__})" + (f", and {len(differing) - 1} more copied events differ"
                                                   if len(differing) > 1 else ""))
    note = (f"the {copied} events copied from {forked.parent_id} (to the end of its round {forked.round}) "
            + ("match it" if not problems else "do not match it"))
    return ForkCheck(forked.parent_id, forked.round, copied, True, tuple(problems), note)


def _as_copied(parent_event: object, fork_event: object) -> object:
    """The parent's event as a fork copies it: its SessionCreated names the fork (and not the parent's
    trace: a fork is a session of its own)."""
    if isinstance(parent_event, SessionCreated) and isinstance(fork_event, SessionCreated):
        return msgspec.structs.replace(parent_event, session_id=fork_event.session_id, trace=fork_event.trace)
    return parent_event
