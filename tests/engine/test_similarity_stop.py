"""Sessions that stop by substance: measured lexically (mock participants) or by a participant's
embeddings (an OpenAI-compatible server on loopback), resumed, and re-run from the recorded figures."""

from __future__ import annotations

from pathlib import Path

from compatible_server import CompatibleServer, Manner

from eventstore import EventStore, NewEvent
from forge_actors.core.audit import verify
from forge_actors.core.events import (
    PromptSent,
    RoundCompleted,
    RoundStarted,
    SessionEnded,
    SimilarityMeasured,
    VoteRecorded,
    encode_event,
    event_type,
)
from forge_actors.engine import Forge

GOAL = "Design a TODO app API"
MOCKS = ["mock:alice?word_delay=0", "mock:bob?word_delay=0", "mock:carol?word_delay=0"]


def of(events: list, kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def embedding_calls(server: CompatibleServer) -> int:
    return sum(1 for r in server.requests if r.path.endswith("/embeddings"))


def test_a_mock_session_ends_by_similarity_asking_for_no_vote(tmp_path: Path) -> None:
    with Forge(str(tmp_path / "forge.db")) as forge:
        session_id = forge.create_session(GOAL, MOCKS, convergence="similarity", similarity_threshold=0.5, seed=5,
                                          max_iterations=6)
        events = [r.event for r in forge.deliberate(session_id)]
        assert forge.verify(session_id) == []
    ended = events[-1]
    assert isinstance(ended, SessionEnded) and ended.outcome == "converged"
    last = of(events, SimilarityMeasured)[-1]
    assert last.value >= 0.5 and f"{last.value:.1%} similar to the previous one (threshold 50%, lexical measure)" \
        in ended.reason
    assert {(m.method, m.fallback) for m in of(events, SimilarityMeasured)} == {
        ("lexical", "no participant's provider offers embeddings")}
    assert [m.pair for m in of(events, SimilarityMeasured) if m.pair] == [("alice", "bob"), ("alice", "carol"),
                                                                          ("bob", "carol")]
    assert not of(events, VoteRecorded)  # no vote was paid for
    assert {e.kind for e in of(events, RoundStarted)} == {"draft", "critique", "synthesis"}
    assert len(of(events, RoundStarted)) == 2 + int(ended.reason.rsplit(" ", 1)[1])  # draft, critique, a synthesis each


def test_embeddings_measure_it_and_a_rerun_replays_the_figures_without_an_embedding_call(tmp_path: Path) -> None:
    with CompatibleServer() as server, Forge(str(tmp_path / "forge.db")) as forge:
        participants = [f"openai:alice?base_url={server.url}&embed_model=hash-64", *MOCKS[1:]]
        session_id = forge.create_session(GOAL, participants, convergence="similarity", similarity_threshold=0.75,
                                          seed=5, max_iterations=5)
        events = [r.event for r in forge.deliberate(session_id)]
        measured = of(events, SimilarityMeasured)
        assert {(m.method, m.model, m.fallback) for m in measured} == {("embedding", "hash-64", "")}
        syntheses = [r for r in of(events, RoundStarted) if r.kind == "synthesis"]
        # one call for the drafts, one per synthesis from the second on: never one per pair
        assert embedding_calls(server) == 1 + len(syntheses) - 1
        assert "embeddings of hash-64" in events[-1].reason

        asked = len(server.requests)
        rerun_id = forge.rerun(session_id)
        assert len(server.requests) == asked  # no embedding call, nor any other
        rerun = forge.events(rerun_id)
        assert of(rerun, SimilarityMeasured) == measured
        assert (rerun[-1].outcome, rerun[-1].reason) == (events[-1].outcome, events[-1].reason)
        assert forge.verify(rerun_id) == []


def test_resume_measures_what_the_log_lacks_once_and_decides_as_the_live_run(tmp_path: Path) -> None:
    with CompatibleServer() as server:
        participants = [f"openai:alice?base_url={server.url}&embed_model=hash-64", *MOCKS[1:]]
        with Forge(str(tmp_path / "live.db")) as live:
            session_id = live.create_session(GOAL, participants, convergence="similarity", similarity_threshold=0.75,
                                             seed=5, max_iterations=5)
            events = [r.event for r in live.deliberate(session_id)]
        last_synthesis = max(i for i, e in enumerate(events) if isinstance(e, RoundCompleted))
        assert isinstance(events[last_synthesis + 1], SimilarityMeasured)
        # the process stopped after the synthesis, before its figure came back; then after the figure
        for cut, calls in ((last_synthesis + 1, 1), (last_synthesis + 2, 0)):
            db = str(tmp_path / f"cut{cut}.db")
            with EventStore(db) as store:
                store.append(session_id, [NewEvent.from_bytes(event_type(e), encode_event(e)) for e in events[:cut]])
            before = embedding_calls(server)
            with Forge(db) as forge:
                resumed = [r.event for r in forge.resume(session_id)]
                assert forge.verify(session_id) == []
                records = forge.records(session_id)
            assert embedding_calls(server) - before == calls
            assert not of(resumed, PromptSent)  # nothing to ask anyone: only the measure, then the end
            assert of([r.event for r in records], SimilarityMeasured) == of(events, SimilarityMeasured)
            assert (resumed[-1].outcome, resumed[-1].reason) == (events[-1].outcome, events[-1].reason)
    assert verify(records) == []


def test_embeddings_that_fail_fall_back_to_the_lexical_measure_saying_why(tmp_path: Path) -> None:
    with CompatibleServer(Manner(refuses_embeddings=True)) as server, Forge(str(tmp_path / "forge.db")) as forge:
        participants = [f"openai:alice?base_url={server.url}&embed_model=chat-only&max_retries=0", *MOCKS[1:]]
        session_id = forge.create_session(GOAL, participants, convergence="similarity", similarity_threshold=0.5,
                                          seed=5, max_iterations=6)
        events = [r.event for r in forge.deliberate(session_id)]
        assert forge.verify(session_id) == []  # the lexical figures, measured again, are the recorded ones
    measured = of(events, SimilarityMeasured)
    assert measured and {m.method for m in measured} == {"lexical"}
    assert all(m.fallback.startswith("the embeddings of alice's provider failed (bad_request: ") for m in measured)
    assert "chat-only does not support embeddings" in measured[0].fallback
    assert events[-1].outcome == "converged" and "lexical measure" in events[-1].reason
