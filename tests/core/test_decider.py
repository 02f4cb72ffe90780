"""The session's decider as input -> events and effects: no threads, no store, no actor."""

from __future__ import annotations

import pytest

from forge_actors.core import decider, reply_format
from forge_actors.core.decider import (
    Ask,
    CancelContribution,
    CancelTimer,
    DeadlinePassed,
    Decision,
    HumansWaitOver,
    Mode,
    Recover,
    Replied,
    ReplyFailed,
    RetryDue,
    RoundOver,
    StartRetryTimer,
    StartRound,
    StartTimer,
    decide,
)
from forge_actors.core.errors import InvalidCommandError
from forge_actors.core.events import (
    ContentDelta,
    ContributionAbandoned,
    ContributionCompleted,
    ContributionFailed,
    CritiqueRecorded,
    HumanDraftAdded,
    HumansWaitEnded,
    ParticipantInfo,
    PromptSent,
    ProviderLimitFound,
    RerunPlanned,
    RoundCompleted,
    RoundStarted,
    SessionCreated,
    SessionResumed,
    SessionSettings,
    TokenUsage,
)
from forge_actors.core.state import SessionState, rebuild

GARBLED = "I have thoughts on this but will not use any particular format."


def created(*names: str, humans: tuple[str, ...] = (), replies: str = "text", **settings: object) -> SessionState:
    people = tuple(ParticipantInfo(n, provider="mock", model=n, replies=replies) for n in names)  # type: ignore[arg-type]
    people += tuple(ParticipantInfo(h, kind="human") for h in humans)
    return rebuild([SessionCreated("s1", "t", "Design a TODO app API", SessionSettings(**settings), people)])  # type: ignore[arg-type]


class Session:
    """A session driven by hand: each input decided, its events folded, as the actor would."""

    def __init__(self, state: SessionState) -> None:
        self.state, self.mode = state, Mode()
        self.log: list = []

    def give(self, given: decider.Input) -> Decision:
        decision = decide(self.state, self.mode, given)
        self.state = rebuild(decision.events, self.state)
        self.mode = decision.mode
        self.log += decision.events
        return decision

    def asked(self, participant: str) -> PromptSent:
        return self.state.round_prompts[participant]

    def reply(self, participant: str, content: str) -> Decision:
        return self.give(Replied(self.asked(participant).contribution_id, content, "stop", TokenUsage(1, 1), 1.0))

    def fail(self, participant: str, retryable: bool = True, **fields: object) -> Decision:
        return self.give(ReplyFailed(self.asked(participant).contribution_id, "server_error", "503", retryable,
                                     **fields))  # type: ignore[arg-type]


def critique_of(labels: dict[str, str]) -> str:
    return "\n".join(reply_format.render_critique(label, reply_format.ParsedCritique(score=70, strengths=["clear"]))
                     for label in labels)


def test_a_round_starts_with_its_prompts_its_deadline_and_an_ask_each():
    session = Session(created("alice", "bob", round_timeout_seconds=30))
    decision = session.give(StartRound("draft"))
    assert [type(e) for e in decision.events] == [RoundStarted, PromptSent, PromptSent]
    assert decision.effects[0] == StartTimer(DeadlinePassed(1), 30)
    asks = [e for e in decision.effects if isinstance(e, Ask)]
    assert [(a.contribution_id, a.participant) for a in asks] == [("r1.alice.1", "alice"), ("r1.bob.1", "bob")]
    assert asks[0].messages == session.asked("alice").messages and asks[0].stream and asks[0].tool_mode == "off"
    assert not decision.durable  # prompts are not waited for


def test_a_command_the_rules_refuse_raises_and_decides_nothing():
    state = created("alice")
    with pytest.raises(InvalidCommandError, match="no drafts yet"):
        decide(state, Mode(), StartRound("critique"))
    with pytest.raises(InvalidCommandError, match="empty"):
        decide(state, Mode(), decider.AddHumanDraft("hana", "  "))


def test_a_delta_is_one_lookup_and_one_event_and_nothing_for_an_attempt_gone():
    session = Session(created("alice"))
    session.give(StartRound("draft"))
    assert decider.delta_event(session.state, "r1.alice.1", "hi") == ContentDelta("r1.alice.1", "alice", 1, 1, "hi")
    assert decider.delta_event(session.state, "r1.alice.9", "hi") is None


def test_retries_are_counted_from_the_log_and_carry_over_a_resume():
    session = Session(created("alice", "bob", max_retries=2))
    session.give(StartRound("draft"))
    failed = session.fail("alice", retry_after=3.0)
    assert failed.durable and failed.events[-1] == ContributionFailed("r1.alice.1", "alice", 1, 1, "server_error",
                                                                      "503", True, True)
    assert failed.effects == (StartRetryTimer(RetryDue(1, "alice"), 1, 3.0),)
    retried = session.give(RetryDue(1, "alice"))
    assert [(e.purpose, e.attempt) for e in retried.events] == [("retry", 2)]
    session.fail("alice")
    # the process stops while alice waits out her second backoff; the resume keeps her budget
    resumed = session.give(Recover())
    assert resumed.events[1] == SessionResumed(("r1.bob.1",))
    assert [(e.participant, e.purpose) for e in resumed.events if isinstance(e, PromptSent)] == [("bob", "rerun")]
    assert StartRetryTimer(RetryDue(1, "alice"), 2) in resumed.effects
    assert decider.retries_used(session.state, 1, "alice") == 2
    session.give(RetryDue(1, "alice"))
    last = session.fail("alice")
    assert [e.will_retry for e in last.events if isinstance(e, ContributionFailed)] == [False]


def test_a_stale_retry_timer_asks_nobody():
    session = Session(created("alice"))
    session.give(StartRound("draft"))
    assert session.give(RetryDue(1, "alice")).events == ()  # alice is streaming, not waiting


def test_a_switch_around_a_limit_is_asked_at_once_and_costs_no_retry():
    session = Session(created("alice", "bob", replies="json", max_retries=0))
    session.give(StartRound("draft"))
    session.reply("alice", "draft A")
    session.reply("bob", "draft B")
    session.give(StartRound("critique"))
    assert session.asked("alice").response_schema == reply_format.CRITIQUE_SCHEMA_NAME
    switched = session.fail("alice", limit="structured_replies")
    kinds = [type(e) for e in switched.events]
    assert kinds == [ProviderLimitFound, ContributionFailed, PromptSent]
    retry = switched.events[-1]
    assert retry.purpose == "retry" and retry.response_schema is None
    assert decider.retries_used(session.state, 2, "alice") == 0
    assert [a.schema for a in switched.effects if isinstance(a, Ask)] == [None]


def test_an_unreadable_critique_is_reasked_and_a_resume_reasks_it_the_same_way():
    session = Session(created("alice", "bob"))
    session.give(StartRound("draft"))
    session.reply("alice", "draft A")
    session.reply("bob", "draft B")
    session.give(StartRound("critique"))
    reasked = session.reply("alice", GARBLED)
    assert reasked.durable and [type(e) for e in reasked.events] == [ContributionCompleted, PromptSent]
    reask = reasked.events[-1]
    assert reask.purpose == "reask" and reask.messages[-2].content == GARBLED and reask.tools == ()
    # the process stops during the re-ask: the resume sends the same re-ask, not the first prompt again
    resumed = session.give(Recover())
    abandoned = {e.contribution_id for e in resumed.events if isinstance(e, ContributionAbandoned)}
    assert abandoned == {reask.contribution_id, "r2.bob.1"}
    again = {e.participant: e for e in resumed.events if isinstance(e, PromptSent)}
    assert again["alice"].purpose == "reask" and again["alice"].messages == reask.messages
    assert again["alice"].attempt == 3 and again["bob"].purpose == "rerun"
    # its reply, unreadable again, is recorded unscored: no third prompt
    done = session.reply("alice", GARBLED)
    assert [type(e) for e in done.events] == [ContributionCompleted, CritiqueRecorded]
    assert done.events[1].score is None


def test_a_reask_keeps_what_the_first_reply_scored():
    session = Session(created("alice", "bob", "carol"))
    session.give(StartRound("draft"))
    for name in ("alice", "bob", "carol"):
        session.reply(name, f"draft by {name}")
    session.give(StartRound("critique"))
    labels = session.asked("alice").proposal_labels
    first, second = list(labels)
    half = reply_format.render_critique(first, reply_format.ParsedCritique(score=81))
    session.reply("alice", half)  # the second proposal has no score: re-asked
    done = session.reply("alice", reply_format.render_critique(second, reply_format.ParsedCritique(score=42)))
    scores = {c.label: c.score for c in done.events if isinstance(c, CritiqueRecorded)}
    assert scores == {first: 81, second: 42}


def test_a_reply_in_whose_reask_was_not_sent_is_reasked_on_resume():
    session = Session(created("alice", "bob"))
    session.give(StartRound("draft"))
    session.reply("alice", "draft A")
    session.reply("bob", "draft B")
    session.give(StartRound("critique"))
    live = session.reply("alice", GARBLED).events[-1]
    # the log as it stood after the reply was committed, before its re-ask was appended
    cut = Session(rebuild(session.log[:-1], created("alice", "bob")))
    resumed = cut.give(Recover())
    asked = [e for e in resumed.events if isinstance(e, PromptSent)]
    assert [(p.participant, p.purpose, p.messages) for p in asked if p.participant == "alice"] == [
        ("alice", "reask", live.messages)]


def test_the_deadline_fails_whoever_streams_and_whoever_waits_for_a_retry():
    session = Session(created("alice", "bob", "carol", max_retries=2))
    session.give(StartRound("draft"))
    session.fail("alice")
    session.reply("carol", "draft C")
    decision = session.give(DeadlinePassed(1))
    assert CancelContribution("r1.bob.1") in decision.effects and CancelTimer(RetryDue(1, "alice")) in decision.effects
    failed = {e.participant: e for e in decision.events if isinstance(e, ContributionFailed)}
    assert failed["bob"].error_kind == failed["alice"].error_kind == "deadline"
    assert not failed["alice"].will_retry and failed["alice"].contribution_id == "r1.alice.1"
    completed = [e for e in decision.events if isinstance(e, RoundCompleted)]
    assert completed[0].status == "degraded" and completed[0].succeeded == ("carol",)
    assert RoundOver(1) in decision.effects


def test_the_humans_wait_is_a_fact_of_the_log_and_a_resume_does_not_wait_again():
    session = Session(created("alice", humans=("hana",), human_wait_seconds=5))
    started = session.give(decider.StartDeliberating())
    assert StartTimer(HumansWaitOver(1), 5) in started.effects
    assert session.reply("alice", "draft A").events[1:] == ()  # the round waits for hana
    over = session.give(HumansWaitOver(1))
    assert over.events[:2] == (HumansWaitEnded(1), RoundCompleted(1, "draft", "completed", ("alice",)))
    # had the process stopped right after the wait ran out, the resume would not wait again
    cut = Session(rebuild(session.log[:-len(over.events) + 1], created("alice", humans=("hana",),
                                                                     human_wait_seconds=5)))
    resumed = cut.give(Recover())
    assert not [e for e in resumed.effects if isinstance(e, StartTimer) and isinstance(e.due, HumansWaitOver)]
    assert RoundCompleted(1, "draft", "completed", ("alice",)) in resumed.events


def test_a_human_draft_completes_a_round_that_waits_for_it():
    session = Session(created("alice", humans=("hana",), human_wait_seconds=5))
    session.give(StartRound("draft"))
    session.reply("alice", "draft A")
    decision = session.give(decider.AddHumanDraft("hana", "Use SQLite."))
    assert decision.durable and isinstance(decision.events[0], HumanDraftAdded)
    assert isinstance(decision.events[1], RoundCompleted) and RoundOver(1) in decision.effects


def test_a_retry_around_native_tools_keeps_the_structured_reply():
    """Only a structured-replies limit makes the retry a text one; a tools limit keeps the schema."""
    state = rebuild([SessionCreated("s1", "t", "goal", SessionSettings(max_retries=0), (
        ParticipantInfo("alice", provider="mock", model="a", replies="json", tools=("read_file",), tool_mode="native"),
        ParticipantInfo("bob", provider="mock", model="b", replies="json")))])
    session = Session(state)
    tools = decider.ToolContext({"alice": ("read_file",)}, {"alice": "TOOLS"})
    session.give(StartRound("draft"))
    session.reply("alice", "draft A")
    session.reply("bob", "draft B")
    decision = decide(session.state, session.mode, StartRound("critique"), tools)
    session.state = rebuild(decision.events, session.state)
    assert session.asked("alice").tools == ("read_file",)
    switched = decide(session.state, session.mode, ReplyFailed(session.asked("alice").contribution_id, "bad_request",
                                                                "tools are not supported", False, limit="native_tools"),
                      tools)
    retry = [e for e in switched.events if isinstance(e, PromptSent)]
    assert len(retry) == 1 and retry[0].response_schema == reply_format.CRITIQUE_SCHEMA_NAME and retry[0].tools == ()


def test_replies_and_timers_on_their_way_decide_nothing_once_interrupted():
    session = Session(created("alice", "bob", max_retries=2))
    session.give(StartRound("draft"))
    session.reply("bob", "draft B")
    assert any(isinstance(e, StartRetryTimer) for e in session.fail("alice").effects)
    session.give(decider.Interrupt("ctrl-c"))
    for late in (RetryDue(1, "alice"), DeadlinePassed(1), HumansWaitOver(1), decider.CheckSpending(),
                 decider.SimilaritiesMeasured(())):
        assert session.give(late) == Decision(mode=session.mode)
    resumed = session.give(Recover())  # a resume goes on: alice's retry, its budget still used
    assert any(isinstance(e, StartRetryTimer) for e in resumed.effects)


def test_the_humans_wait_running_out_when_no_human_is_awaited_records_nothing():
    session = Session(created("alice", "bob", humans=("hana",), human_wait_seconds=5))
    session.give(StartRound("draft"))
    session.give(decider.AddHumanDraft("hana", "Use SQLite."))
    session.reply("alice", "draft A")
    assert session.give(HumansWaitOver(1)).events == ()  # bob still streams; hana drafted long ago


def test_a_resumed_rerun_follows_its_recorded_plan_as_the_live_one_did():
    """The plan of a re-run is a fact of its log: resumed, it waits for no human and stops where the
    original did, as the live re-run would have."""
    base = created("alice", humans=("hana",), human_wait_seconds=5)
    planned = rebuild([RerunPlanned("original", ("draft",), "as the original")], base)
    live = Session(planned)
    started = live.give(decider.StartDeliberating())
    assert not [e for e in started.effects if isinstance(e, StartTimer) and isinstance(e.due, HumansWaitOver)]
    cut = len(live.log)
    live_end = live.reply("alice", "draft A")
    assert not [e for e in live_end.events if isinstance(e, RoundStarted)]  # the plan ran out: no next round
    assert live.state.status == "cancelled" and live.state.end_reason == "as the original"

    resumed = Session(rebuild(live.log[:cut], planned))  # the process stopped while alice streamed
    recovered = resumed.give(Recover())
    resumed.give(decider.StartDeliberating())
    assert not [e for e in recovered.effects if isinstance(e, StartTimer) and isinstance(e.due, HumansWaitOver)]
    resumed.reply("alice", "draft A")
    assert resumed.state.status == "cancelled" and resumed.state.end_reason == "as the original"
