"""Projections resume from their checkpoint and apply each event exactly once; the session
summaries give the status the fold gives."""

from __future__ import annotations

import json
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore import EventLog, NewEvent, ProjectionRunner, RecordedEvent, Transaction, open_log
from forge_actors.core.events import (
    ContributionCompleted,
    Event,
    ParticipantInfo,
    RoundStarted,
    SessionCreated,
    SessionEnded,
    SessionInterrupted,
    SessionResumed,
    SessionSettings,
    TokenUsage,
    encode_event,
    event_type,
)
from forge_actors.core.state import rebuild
from forge_actors.engine.summaries import SummaryProjection, read_summaries


class StreamCounts:
    """Counts events per stream into a table of its own."""

    name = "stream_counts"

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at

    def setup(self, conn: Transaction) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS stream_counts (stream_id TEXT PRIMARY KEY, n INTEGER)")

    def apply(self, conn: Transaction, event: RecordedEvent) -> None:
        if event.position == self.fail_at:
            raise RuntimeError("projection bug")
        # stream_counts.n, not n: PostgreSQL finds a bare column ambiguous in an upsert's SET.
        conn.execute(
            "INSERT INTO stream_counts VALUES (?, 1) ON CONFLICT(stream_id) DO UPDATE SET n = stream_counts.n + 1",
            (event.stream_id,),
        )


def counts(store: EventLog) -> dict[str, int]:
    return dict(store.query("SELECT stream_id, n FROM stream_counts"))


def test_projection_catches_up_and_resumes(log_target):
    store = open_log(log_target)
    for i in range(30):
        store.append(f"s{i % 3}", [NewEvent("T", json.dumps(i))])
    runner = ProjectionRunner(store, StreamCounts(), batch_size=7)
    assert runner.catch_up() == 30
    assert runner.position == 30
    assert counts(store) == {"s0": 10, "s1": 10, "s2": 10}
    store.append("s0", [NewEvent("T", "1")] * 5)
    store.close()

    store = open_log(log_target)  # a new process would do the same
    runner = ProjectionRunner(store, StreamCounts(), batch_size=7)
    assert runner.catch_up() == 5  # only what is new
    assert counts(store)["s0"] == 15
    assert runner.catch_up() == 0
    store.close()


def test_a_failing_batch_leaves_tables_and_checkpoint_untouched(log_target):
    store = open_log(log_target)
    store.append("s", [NewEvent("T", "0")] * 10)
    runner = ProjectionRunner(store, StreamCounts(fail_at=8), batch_size=5)
    with pytest.raises(RuntimeError):
        runner.catch_up()
    assert runner.position == 5  # the first batch landed, the second rolled back whole
    assert counts(store) == {"s": 5}
    fixed = ProjectionRunner(store, StreamCounts(), batch_size=5)
    assert fixed.catch_up() == 5
    assert counts(store) == {"s": 10}
    fixed.reset()
    assert fixed.position == 0
    store.close()


# -- the session summaries: status from the same fold as SessionState --------------------------------



def _created(session_id: str) -> SessionCreated:
    return SessionCreated(session_id, f"title of {session_id}", "a goal", SessionSettings(),
                          (ParticipantInfo("a", provider="mock"),))


def _round(number: int) -> RoundStarted:
    return RoundStarted(number, "draft", 1, ("a",))


def _completed(number: int) -> ContributionCompleted:
    return ContributionCompleted(f"c{number}", "a", number, 1, "text", "stop", TokenUsage(3, 4), 1.0)


#: Every status transition: resumed before and after rounds, interrupted twice, each ending, and
#: sessions left created, running and interrupted.
TRANSITIONS: dict[str, list[Event]] = {
    "resumed-before-rounds": [
        _created("s1"), SessionResumed(), SessionInterrupted("ctrl-c"), SessionResumed(), _round(1), _completed(1),
        SessionInterrupted("ctrl-c"), SessionResumed(), _round(2), SessionEnded("converged", "all agree", 0.9),
    ],
    "max-rounds": [_created("s2"), _round(1), _completed(1), _round(2), SessionEnded("max_rounds", "ten rounds")],
    "no-quorum": [_created("s3"), _round(1), SessionEnded("no_quorum", "two votes of five")],
    "cancelled-before-rounds": [_created("s4"), SessionEnded("cancelled", "by the user")],
    "failed": [_created("s5"), _round(1), SessionInterrupted("stop"), SessionResumed(), SessionEnded("failed", "x")],
    "left-created": [_created("s6"), SessionInterrupted("ctrl-c"), SessionResumed()],
    "left-running": [_created("s7"), _round(1), SessionResumed()],
    "left-interrupted": [_created("s8"), _round(1), _completed(1), SessionInterrupted("server stopped")],
}


def test_summary_status_is_the_folds_status_after_every_event(log_target):
    store = open_log(log_target)
    runner = ProjectionRunner(store, SummaryProjection())
    # Interleaved across sessions, as a busy log is.
    longest = max(len(events) for events in TRANSITIONS.values())
    seen: dict[str, list[Event]] = {}
    for index in range(longest):
        for events in TRANSITIONS.values():
            if index >= len(events):
                continue
            session_id = events[0].session_id  # type: ignore[attr-defined]
            event = events[index]
            store.append(session_id, [NewEvent(event_type(event), encode_event(event).decode())])
            seen.setdefault(session_id, []).append(event)
            runner.catch_up()
            summaries = {s.session_id: s for s in read_summaries(store)}
            expected = rebuild(seen[session_id])
            assert summaries[session_id].status == expected.status, (session_id, index, event)
            assert summaries[session_id].rounds == len(expected.rounds)
            assert summaries[session_id].input_tokens == expected.total_usage.input_tokens
    final = {s.session_id: s.status for s in read_summaries(store)}
    assert final == {"s1": "converged", "s2": "max_rounds", "s3": "no_quorum", "s4": "cancelled", "s5": "failed",
                     "s6": "created", "s7": "running", "s8": "interrupted"}
    store.close()


_status_event = st.one_of(
    st.builds(_round, st.integers(1, 3)),
    st.just(SessionInterrupted("ctrl-c")),
    st.just(SessionResumed()),
    st.sampled_from(["converged", "max_rounds", "no_quorum", "cancelled", "failed"]).map(
        lambda outcome: SessionEnded(outcome, "why")),  # type: ignore[arg-type]
    st.builds(_completed, st.integers(1, 3)),
)


def _recorded(position: int, event: Event) -> RecordedEvent:
    return RecordedEvent(position, "s", position, event_type(event), encode_event(event).decode(), position)


@settings(max_examples=60, deadline=None)
@given(st.lists(_status_event, max_size=12))
def test_summary_status_follows_the_fold_for_any_sequence(events):
    # SQLite in memory only: a pure check of the projection's SQL against the fold, fed directly.
    # Round numbers here repeat and go backwards: the summary keeps the highest, the fold counts them;
    # only the status is compared, which both derive with state.next_status.
    conn = sqlite3.connect(":memory:")
    projection = SummaryProjection()
    projection.setup(conn)
    folded: list[Event] = []
    for position, event in enumerate([_created("s"), *events], start=1):
        projection.apply(conn, _recorded(position, event))
        folded.append(event)
        (status,) = conn.execute("SELECT status FROM session_summaries").fetchone()
        assert status == rebuild(folded).status
    conn.close()
