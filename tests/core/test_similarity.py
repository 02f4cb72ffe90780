"""Convergence judged by substance: the lexical measure, and the rules and decider on recorded similarities."""

from __future__ import annotations

import msgspec
import pytest

from forge_actors.core import reply_format, rounds
from forge_actors.core.decider import (
    Ask,
    Decision,
    Measure,
    Mode,
    Recover,
    Replied,
    SimilaritiesMeasured,
    StartDeliberating,
    decide,
    delta_event,
)
from forge_actors.core.events import (
    ParticipantInfo,
    PromptSent,
    RoundStarted,
    SessionCreated,
    SessionEnded,
    SessionSettings,
    SimilarityMeasured,
    TokenUsage,
    decode_event,
)
from forge_actors.core.similarity import cosine, lexical_similarity, terms
from forge_actors.core.state import SessionState, rebuild

PLAN = ("The API stores tasks in SQLite with WAL mode and a bounded reader pool. Writes go through one "
        "queue; retries use exponential backoff with jitter, capped at five attempts. Deleted tasks are "
        "kept for thirty days, then purged by a nightly job.")
EDITED = ("The API stores tasks in SQLite with WAL mode and a bounded pool of readers. Writes go through "
          "one queue; retries use exponential backoff with jitter, capped at five attempts. Deleted tasks "
          "are kept for thirty days, then purged nightly.")
REWRITE = ("Use PostgreSQL behind a connection pooler. Every endpoint is idempotent, so clients may simply "
           "repeat a request; soft deletion is replaced by an audit table.")


# -- the lexical measure ------------------------------------------------------------------------------


def test_the_lexical_measure_ranks_an_edit_above_a_rewrite_and_is_symmetric():
    assert lexical_similarity(PLAN, PLAN) == 1.0
    edited, rewritten = lexical_similarity(PLAN, EDITED), lexical_similarity(PLAN, REWRITE)
    assert 0.6 < edited < 1.0
    assert rewritten < 0.1 < edited
    assert lexical_similarity(EDITED, PLAN) == edited


def test_function_words_case_and_punctuation_carry_no_substance():
    assert lexical_similarity("The cache, of the API!", "the CACHE of an api") == 1.0
    assert lexical_similarity("it is what it is", "and so it was") == 0.0  # function words only: nothing to compare
    assert lexical_similarity("", PLAN) == 0.0
    assert terms("Retry the write") == {"retry": 1, "write": 1, "retry write": 1}


def test_word_order_counts_through_the_bigrams():
    reordered = lexical_similarity("cache invalidation precedes every write", "every write precedes cache invalidation")
    assert 0.3 < reordered < 1.0


def test_cosine_of_embeddings_is_clipped_to_0_1_and_refuses_vectors_of_other_lengths():
    assert cosine([1.0, 0.0], [2.0, 0.0]) == 1.0
    assert cosine([1.0, 0.0], [0.0, 3.0]) == 0.0
    assert cosine([1.0, 0.0], [-1.0, 0.0]) == 0.0  # opposite directions: unrelated, not negative
    assert cosine([0.0, 0.0], [1.0, 1.0]) == 0.0
    assert cosine([1.0, 1.0], [1.0, 0.0]) == pytest.approx(0.7071, abs=1e-4)
    with pytest.raises(ValueError, match="different lengths"):
        cosine([1.0], [1.0, 2.0])


# -- a session driven through the decider, replies scripted ---------------------------------------------


def created(rule: str, *, threshold: float = 0.9, **settings: object) -> SessionState:
    people = tuple(ParticipantInfo(n, provider="mock", model=n) for n in ("alice", "bob"))
    return rebuild([SessionCreated("s1", "t", "Design a TODO app API", SessionSettings(
        convergence=rule, similarity_threshold=threshold, **settings), people)])  # type: ignore[arg-type]


class Driven:
    """The decider driven as the actor drives it: each Ask answered (drafts, critiques, the scripted
    syntheses, votes); a Measure left pending in ``measures`` for the test to answer."""

    def __init__(self, state: SessionState, syntheses: list[str], vote: str = "AGREE") -> None:
        self.state, self.mode = state, Mode()
        self.syntheses, self.vote = list(syntheses), vote
        self.events: list = []
        self.measures: list[Measure] = []

    def give(self, given) -> Decision:
        decision = decide(self.state, self.mode, given)
        self.state, self.mode = rebuild(decision.events, self.state), decision.mode
        self.events += decision.events
        self.measures += [e for e in decision.effects if isinstance(e, Measure)]
        for ask in [e for e in decision.effects if isinstance(e, Ask)]:
            text = self._answer(ask)
            delta = delta_event(self.state, ask.contribution_id, text)  # streamed whole, as the actor appends it
            self.state = rebuild([delta], self.state)
            self.events.append(delta)
            self.give(Replied(ask.contribution_id, text, "stop", TokenUsage(1, 1), 1.0))
        return decision

    def _answer(self, ask: Ask) -> str:
        kind = self.state.current_round.kind  # type: ignore[union-attr]
        if kind == "draft":
            return f"{ask.participant}'s draft: store tasks in SQLite."
        if kind == "critique":
            labels = self.state.round_prompts[ask.participant].proposal_labels
            return "\n".join(reply_format.render_critique(label, reply_format.ParsedCritique(score=70))
                             for label in labels)
        if kind == "synthesis":
            return self.syntheses.pop(0)
        return f"VOTE: {self.vote}\nReasons:\n- fine"

    def answer(self, *values: float, method: str = "embedding", model: str = "emb-1") -> Decision:
        measure = self.measures.pop(0)
        return self.give(SimilaritiesMeasured(tuple(
            SimilarityMeasured(c.round, c.compared_with_round, value, method, model, c.pair)  # type: ignore[arg-type]
            for c, value in zip(measure.comparisons, values, strict=True))))

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events if isinstance(e, RoundStarted)]


def test_under_similarity_no_vote_is_asked_for_and_an_ending_waits_for_the_measure():
    driven = Driven(created("similarity"), [PLAN, EDITED, EDITED])
    driven.give(StartDeliberating())
    # the drafts are compared for the reader first, then the rounds go on
    (drafts,) = driven.measures
    assert [(c.round, c.compared_with_round, c.pair) for c in drafts.comparisons] == [(1, 1, ("alice", "bob"))]
    driven.answer(0.4)
    assert driven.kinds() == ["draft", "critique", "synthesis", "synthesis"]  # no convergence round
    (pending,) = driven.measures
    assert pending.comparisons == (rounds.Comparison(4, 3, EDITED, PLAN),)
    assert not driven.state.ended  # nothing decided before the figure is recorded
    done = driven.answer(0.93)
    assert done.durable and isinstance(done.events[0], SimilarityMeasured)
    ended = driven.events[-1]
    assert isinstance(ended, SessionEnded) and ended.outcome == "converged" and ended.final_score is None
    assert ended.reason == ("the synthesis is 93.0% similar to the previous one (threshold 90%, embeddings of "
                            "emb-1) at iteration 2")


def test_under_similarity_a_synthesis_below_the_threshold_leads_to_the_next_until_the_iterations_run_out():
    driven = Driven(created("similarity", max_rounds=3), [PLAN, REWRITE, EDITED])
    driven.give(StartDeliberating())
    driven.answer(0.4)
    driven.answer(0.2)  # synthesis 2 against 1
    assert driven.kinds()[-1] == "synthesis" and not driven.state.ended
    driven.answer(0.5, method="lexical", model="")  # synthesis 3 against 2: the last iteration
    ended = driven.events[-1]
    assert isinstance(ended, SessionEnded) and ended.outcome == "max_rounds"
    assert "50.0% similar" in ended.reason and "threshold 90%" in ended.reason and "lexical measure" in ended.reason
    assert driven.kinds().count("convergence") == 0


def test_under_both_the_votes_need_the_similarity_too():
    driven = Driven(created("both", threshold=0.8), [PLAN, EDITED])
    driven.give(StartDeliberating())
    driven.answer(0.4)  # the drafts
    # iteration 1: every vote agrees, but there is no earlier synthesis: the session goes on, unmeasured
    assert driven.kinds() == ["draft", "critique", "synthesis", "convergence", "synthesis", "convergence"]
    (pending,) = driven.measures  # asked only once the votes of iteration 2 converged
    assert pending.comparisons[0].round == 5 and pending.comparisons[0].compared_with_round == 3
    driven.answer(0.85)
    ended = driven.events[-1]
    assert isinstance(ended, SessionEnded) and ended.outcome == "converged" and ended.final_score == 1.0
    assert "2 of 2 voted: 100% agree (threshold 80%) and the synthesis is 85.0% similar" in ended.reason


def test_under_both_a_synthesis_still_changing_keeps_the_session_going():
    driven = Driven(created("both", max_rounds=2), [PLAN, REWRITE])
    driven.give(StartDeliberating())
    driven.answer(0.4)
    driven.answer(0.3)
    ended = driven.events[-1]
    assert isinstance(ended, SessionEnded) and ended.outcome == "max_rounds"
    assert "the synthesis is 30.0% similar to the previous one (threshold 90%" in ended.reason


def test_the_votes_rule_measures_nothing_and_an_old_log_reads_as_votes():
    driven = Driven(created("votes"), [PLAN])
    driven.give(StartDeliberating())
    assert driven.measures == [] and driven.events[-1].outcome == "converged"
    assert not any(isinstance(e, SimilarityMeasured) for e in driven.events)
    old = b'{"session_id":"s","title":"t","goal":"g","settings":{"max_rounds":3},"participants":[]}'
    assert decode_event("SessionCreated", old).settings.convergence == "votes"  # type: ignore[attr-defined]


def test_a_measure_given_twice_is_recorded_once():
    driven = Driven(created("similarity"), [PLAN, EDITED])
    driven.give(StartDeliberating())
    measure = driven.measures[0]
    facts = SimilaritiesMeasured(tuple(SimilarityMeasured(c.round, c.compared_with_round, 0.5, "lexical", "", c.pair)
                                       for c in measure.comparisons))
    driven.give(facts)
    assert driven.give(facts).events == ()
    assert sum(isinstance(e, SimilarityMeasured) for e in driven.events) == 1


def test_resume_measures_only_what_the_log_lacks_and_decides_from_the_recorded_figure():
    driven = Driven(created("similarity"), [PLAN, EDITED])
    driven.give(StartDeliberating())
    driven.answer(0.4)
    # the process stops before the figure of synthesis 2 came back: resume asks for it again
    resumed = decide(driven.state, Mode(), Recover())
    assert [e.comparisons for e in resumed.effects if isinstance(e, Measure)] == [driven.measures[0].comparisons]
    driven.answer(0.95)
    recorded = driven.state
    # every later decision reads the recorded figure: no measure is asked for again
    assert rounds.next_step(recorded) is None and recorded.status == "converged"
    before_end = rebuild(driven.events[:-1], created("similarity"))
    assert not any(isinstance(e, Measure) for e in decide(before_end, Mode(), Recover()).effects)
    assert rounds.next_step(before_end) == rounds.EndSession("converged", driven.events[-1].reason)


def test_a_recorded_measure_round_trips_through_its_json():
    measured = SimilarityMeasured(4, 3, 0.9312, "embedding", "text-embedding-3-small", (), "")
    assert decode_event("SimilarityMeasured", msgspec.json.encode(measured)) == measured


def test_the_audit_passes_a_session_ended_by_similarity_and_measures_a_lexical_figure_again():
    from eventstore import RecordedEvent
    from forge_actors.core.audit import verify
    from forge_actors.core.events import event_type

    state = created("similarity")
    driven = Driven(state, [PLAN, EDITED])
    driven.give(StartDeliberating())
    driven.give(SimilaritiesMeasured(tuple(  # the drafts, measured lexically as the actor does
        SimilarityMeasured(c.round, c.compared_with_round, lexical_similarity(c.first, c.second), "lexical", "", c.pair)
        for c in driven.measures.pop(0).comparisons)))
    driven.answer(0.95)
    created_event = SessionCreated("s1", "t", state.goal, state.settings, tuple(state.participants.values()))

    def records(events: list) -> list[RecordedEvent]:
        return [RecordedEvent(n, "s1", n, event_type(e), "", 0, e) for n, e in enumerate([created_event, *events], 1)]

    assert verify(records(driven.events)) == []
    edited = [msgspec.structs.replace(e, value=0.99) if isinstance(e, SimilarityMeasured) and e.pair else e
              for e in driven.events]
    assert [v.problem for v in verify(records(edited))] == [
        f"the similarity of round 1 to round 1 is recorded as 0.99, the lexical measure gives "
        f"{lexical_similarity(driven.state.drafts['alice'], driven.state.drafts['bob'])}"]
    below = [msgspec.structs.replace(e, value=0.5) if isinstance(e, SimilarityMeasured) and not e.pair else e
             for e in driven.events]
    assert any("calls for" in v.problem for v in verify(records(below)))  # converged where the figure says go on


def test_the_next_synthesis_is_told_the_previous_was_voted_down_only_when_it_was():
    def second_synthesis_prompt(rule: str, vote: str) -> str:
        driven = Driven(created(rule, max_rounds=2), [PLAN, REWRITE], vote=vote)
        driven.give(StartDeliberating())
        while driven.measures:
            driven.answer(*[0.1] * len(driven.measures[0].comparisons))
        synthesis_rounds = [e.round for e in driven.events if isinstance(e, RoundStarted) and e.kind == "synthesis"]
        (sent,) = [e for e in driven.events if isinstance(e, PromptSent) and e.round == synthesis_rounds[1]]
        return sent.messages[-1].content

    assert "The previous synthesis, which did not win enough votes:" in second_synthesis_prompt("votes", "DISAGREE")
    assert "The previous synthesis, which did not win enough votes:" in second_synthesis_prompt("both", "DISAGREE")
    assert "The previous synthesis, which this one improves on:" in second_synthesis_prompt("both", "AGREE")
    assert "The previous synthesis, which this one improves on:" in second_synthesis_prompt("similarity", "AGREE")


def test_a_session_stopping_by_similarity_takes_no_human_vote():
    from forge_actors.core.decider import CastVote
    from forge_actors.core.errors import InvalidCommandError

    driven = Driven(created("similarity"), [PLAN, REWRITE])
    driven.give(StartDeliberating())
    driven.answer(0.4)  # the drafts; then a synthesis waits on its measure
    with pytest.raises(InvalidCommandError, match="takes no votes"):
        decide(driven.state, Mode(), CastVote("hana", "AGREE"))
    assert rounds.human_vote_round(driven.state) is None
