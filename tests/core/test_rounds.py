"""Round prompts, anonymised critiques, re-asks and decisions — all pure functions of the state."""

from __future__ import annotations

from forge_actors.core import reply_format, rounds
from forge_actors.core.events import (
    ContentDelta,
    ContributionCompleted,
    CritiqueRecorded,
    HumanDraftAdded,
    ParticipantAdded,
    ParticipantInfo,
    Persona,
    PromptMessage,
    PromptSent,
    RoundCompleted,
    RoundStarted,
    SessionCreated,
    SessionSettings,
    TokenUsage,
    VoteRecorded,
    encode_event,
)
from forge_actors.core.state import SessionState, rebuild
from forge_actors.providers import LlmRequest, Message, MockProvider

NAMES = ("alice", "bob", "carol", "dave")


def session(goal: str = "Design a TODO app API", seed: int = 0, synthesizer: str | None = None,
            persona: Persona | None = None, constraints: tuple[str, ...] = ()) -> list:
    infos = tuple(ParticipantInfo(n, provider=f"mock:{n}", model=n, persona=persona if n == "alice" else None) for n in NAMES)
    return [SessionCreated(session_id="s", title="t", goal=goal, constraints=constraints,
                           settings=SessionSettings(seed=seed, synthesizer=synthesizer), participants=infos)]


def with_drafts(events: list) -> list:
    events = events + [RoundStarted(round=1, kind="draft", iteration=1, participants=NAMES)]
    for n in NAMES:
        events.append(ContributionCompleted(contribution_id=f"r1.{n}.1", participant=n, round=1, attempt=1,
                                            content=f"Draft by {n}: use {n}-store.", finish_reason="stop",
                                            usage=TokenUsage(), latency_ms=1))
    return events


def test_draft_prompt_carries_goal_markers_persona_and_constraints():
    persona = Persona(name="The Skeptic", traits=("careful",), tone="dry", specialties=("security",))
    state = rebuild(session(persona=persona, constraints=("no vendor lock-in",)) +
                    [RoundStarted(round=1, kind="draft", iteration=1, participants=NAMES)])
    prompt = rounds.draft_prompt(state, "alice")
    system, user = prompt.messages
    assert system.role == "system" and "You are alice" in system.content and "The Skeptic" in system.content
    assert "careful" in system.content and "security" in system.content
    assert "Persona" not in rounds.draft_prompt(state, "bob").messages[0].content
    assert reply_format.find_round_kind(user.content) == "draft" and reply_format.find_goal(user.content) == "Design a TODO app API"
    assert "- no vendor lock-in" in user.content and "Risks and mitigations" in user.content


def test_user_text_cannot_inject_into_templates():
    goal = "Build {{persona}} and {{proposals}} with ${x} {braces}"
    state = rebuild(with_drafts(session(goal=goal)))
    prompt = rounds.critique_prompt(state, "alice", 2)
    assert f"Goal: {goal}" in prompt.messages[1].content


def test_critique_hides_names_excludes_own_draft_and_shuffles_per_critic():
    state = rebuild(with_drafts(session(seed=7)))
    orders = {}
    for critic in NAMES:
        prompt = rounds.critique_prompt(state, critic, 2)
        text = prompt.messages[1].content
        assert critic not in prompt.proposal_labels.values()
        assert sorted(prompt.proposal_labels.values()) == sorted(n for n in NAMES if n != critic)
        assert list(prompt.proposal_labels) == ["A", "B", "C"]
        for other in NAMES:
            if other != critic:
                assert f"Draft by {other}" in text  # the draft is there...
        assert reply_format.find_proposal_labels(text) == ["A", "B", "C"]
        orders[critic] = list(prompt.proposal_labels.values())
        assert rounds.critique_prompt(state, critic, 2) == prompt  # seeded: same prompt again
    seen_orders = {tuple(rounds.proposal_order(rebuild(with_drafts(session(seed=s))), "alice", 2)) for s in range(12)}
    assert len(seen_orders) >= 3  # shuffled, not alphabetical
    assert rounds.proposal_order(state, "alice", 2) == rounds.proposal_order(rebuild(with_drafts(session(seed=7))), "alice", 2)
    assert len({tuple(order) for order in orders.values()}) > 1  # each critic has its own order
    # ...and names never appear as labels: the author's name is only inside its own draft text
    prompt = rounds.critique_prompt(state, "alice", 2)
    assert "Proposal A" in prompt.messages[1].content and "alice" not in prompt.messages[1].content.split("Goal:")[1]


def test_no_other_drafts_means_no_critique():
    state = rebuild(session() + [RoundStarted(round=1, kind="draft", iteration=1, participants=NAMES),
                                 ContributionCompleted(contribution_id="x", participant="alice", round=1, attempt=1,
                                                       content="only me", finish_reason="stop", usage=TokenUsage(),
                                                       latency_ms=1)])
    assert rounds.critique_prompt(state, "alice", 2) is None
    assert rounds.critique_prompt(state, "bob", 2) is not None


def test_mock_critique_of_a_real_prompt_parses_completely():
    state = rebuild(with_drafts(session()))
    prompt = rounds.critique_prompt(state, "bob", 2)
    reply = MockProvider("bob").complete(LlmRequest(messages=tuple(Message(m.role, m.content) for m in prompt.messages))).content
    parsed, unreadable = rounds.read_critiques(reply, prompt.proposal_labels)
    assert unreadable == [] and set(parsed) == {"A", "B", "C"}


def test_unreadable_reply_gets_a_reask_with_the_conversation():
    state = rebuild(with_drafts(session()))
    prompt = rounds.critique_prompt(state, "bob", 2)
    parsed, unreadable = rounds.read_critiques("They are all fine I guess.", prompt.proposal_labels)
    assert unreadable == ["A", "B", "C"] and all(p.score is None for p in parsed.values())
    again = rounds.reask_prompt(prompt, "They are all fine I guess.", "no Score: line for A, B, C")
    assert [m.role for m in again.messages] == ["system", "user", "assistant", "user"]
    assert "Score: <1-100>" in again.messages[-1].content and again.proposal_labels == prompt.proposal_labels
    vote_again = rounds.reask_prompt(rounds.convergence_prompt(state, "bob"), "hmm", "no VOTE line")
    assert "VOTE: AGREE or VOTE: DISAGREE" in vote_again.messages[-1].content


def test_synthesizer_choice():
    events = with_drafts(session()) + [RoundStarted(round=2, kind="critique", iteration=1, participants=NAMES)]
    scores = {"alice": [60, 70], "bob": [90, 80], "carol": [85, 85], "dave": [None, None]}
    for author, values in scores.items():
        for critic, score in zip([n for n in NAMES if n != author], values, strict=False):
            events.append(CritiqueRecorded(round=2, critic=critic, label="A", proposal_author=author, score=score))
    state = rebuild(events)
    assert rounds.choose_synthesizer(state) in ("bob", "carol")  # 85 each: participant order decides
    assert rounds.choose_synthesizer(state) == "bob"
    assert rounds.choose_synthesizer(rebuild([session(synthesizer="dave")[0], *events[1:]])) == "dave"
    assert rounds.choose_synthesizer(rebuild(session())) == "alice"
    human_only = rebuild(session() + [ParticipantAdded(participant=ParticipantInfo("hank", kind="human"))])
    assert rounds.choose_synthesizer(human_only) == "alice"


def test_synthesis_prompt_carries_drafts_reviews_and_open_concerns():
    events = with_drafts(session()) + [
        HumanDraftAdded(round=1, author="hank", content="Human idea: offline first."),
        RoundStarted(round=2, kind="critique", iteration=1, participants=NAMES),
        CritiqueRecorded(round=2, critic="bob", label="A", proposal_author="alice", score=70,
                         strengths=("tidy",), weaknesses=("no auth",)),
        RoundStarted(round=3, kind="synthesis", iteration=1, participants=("alice",)),
        ContributionCompleted(contribution_id="r3.alice.1", participant="alice", round=3, attempt=1,
                              content="First plan.", finish_reason="stop", usage=TokenUsage(), latency_ms=1),
        RoundStarted(round=4, kind="convergence", iteration=1, participants=NAMES),
        VoteRecorded(round=4, voter="bob", vote="DISAGREE", concerns=("needs rate limits",)),
        VoteRecorded(round=4, voter="carol", vote="DISAGREE", concerns=("needs rate limits", "cost?")),
        RoundStarted(round=5, kind="synthesis", iteration=2, participants=("alice",)),
    ]
    state = rebuild(events)
    text = rounds.synthesis_prompt(state, "alice").messages[1].content
    assert "Human idea: offline first." in text and "Draft by dave" in text
    assert "mean score 70/100" in text and "weakness: no auth" in text
    assert text.count("needs rate limits") == 1 and "cost?" in text and "First plan." in text
    assert reply_format.find_iteration(text) == 2
    vote_text = rounds.convergence_prompt(state, "bob").messages[1].content
    assert "First plan." in vote_text and reply_format.find_round_kind(vote_text) == "convergence"


def test_convergence_score_counts_explicit_votes_only():
    def votes(*choices):
        return {f"v{i}": VoteRecorded(round=1, voter=f"v{i}", vote=c) for i, c in enumerate(choices)}

    assert rounds.convergence_score(votes("AGREE", "AGREE", "DISAGREE", "ABSTAIN")) == 2 / 3
    assert rounds.convergence_score(votes("ABSTAIN")) is None
    assert rounds.convergence_score({}) is None
    assert rounds.has_converged(0.8, 0.8) and not rounds.has_converged(0.79, 0.8) and not rounds.has_converged(None, 0.0)


def test_state_is_only_read():
    state = rebuild(with_drafts(session()))
    before = state
    for n in NAMES:
        rounds.critique_prompt(state, n, 2)
        rounds.synthesis_prompt(state, n)
    assert state == before and isinstance(state, SessionState)


def _budget_session(limit: int, *, converged: bool) -> list:
    """A session through its first convergence round, with max_session_bytes of ``limit``."""
    infos = tuple(ParticipantInfo(n, provider=f"mock:{n}", model=n) for n in NAMES[:2])
    events: list = [SessionCreated(session_id="s", title="t", goal="g", participants=infos,
                                   settings=SessionSettings(max_session_bytes=limit))]
    events.append(RoundStarted(round=1, kind="synthesis", iteration=1, participants=NAMES[:1]))
    events.append(PromptSent("r1.alice.1", 1, "alice", 1, "alice", (PromptMessage("user", "p" * 100),), 0.7, 100))
    events.append(ContentDelta("r1.alice.1", "alice", 1, 1, "s" * 50))
    events.append(ContributionCompleted("r1.alice.1", "alice", 1, 1, "s" * 50, "stop", TokenUsage(), 1))
    events.append(RoundCompleted(1, "synthesis", "completed", ("alice",)))
    events.append(RoundStarted(round=2, kind="convergence", iteration=1, participants=NAMES[:2]))
    vote = "AGREE" if converged else "DISAGREE"
    events += [VoteRecorded(2, n, vote) for n in NAMES[:2]]
    events.append(RoundCompleted(2, "convergence", "completed", NAMES[:2], score=1.0 if converged else 0.0))
    return events


def test_the_fold_counts_the_bytes_a_session_takes_in_the_log():
    events = _budget_session(10**9, converged=False)
    state = rebuild(events)
    assert state.log_bytes == sum(len(encode_event(e)) for e in events)  # each event as the log stores it
    assert rebuild(events[3:], rebuild(events[:3])).log_bytes == state.log_bytes  # folded piece by piece too


def test_a_session_past_its_log_budget_ends_before_the_next_round():
    size = 1000
    while rebuild(_budget_session(size, converged=False)).log_bytes != size:  # the limit is recorded too
        size = rebuild(_budget_session(size, converged=False)).log_bytes
    assert rounds.next_step(rebuild(_budget_session(size + 1, converged=False))) == rounds.NextRound("synthesis")
    spent = rounds.next_step(rebuild(_budget_session(size, converged=False)))
    assert isinstance(spent, rounds.EndSession) and spent.outcome == "budget_spent"
    assert "max_session_bytes" in spent.reason and spent.final_score == 0.0
    assert rounds.why_not(rebuild(_budget_session(size, converged=False)), "synthesis") == spent.reason
    # A session that converged says so, budget or not.
    converged = rounds.next_step(rebuild(_budget_session(1, converged=True)))
    assert isinstance(converged, rounds.EndSession) and converged.outcome == "converged"


def test_a_new_session_records_its_log_limits_and_an_old_one_has_none():
    recorded = rounds.with_log_limits(SessionSettings(max_tokens=100))
    assert (recorded.max_reply_chars, recorded.max_session_bytes) == (1600, rounds.DEFAULT_MAX_SESSION_BYTES)
    given = rounds.with_log_limits(SessionSettings(max_reply_chars=50, max_session_bytes=7))
    assert (given.max_reply_chars, given.max_session_bytes) == (50, 7)
    old = rebuild([SessionCreated(session_id="s", title="t", goal="g", participants=(),
                                  settings=SessionSettings())])  # recorded before the limits existed
    assert old.settings.max_session_bytes is None and rounds.budget_spent(old) is None
