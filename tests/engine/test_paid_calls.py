"""Stopping that saves money: a quorum of counted votes, the vote tally in words, no retry of a
server that breaks its protocol the same way twice."""

from __future__ import annotations

from collections import Counter

from forge_actors.core import rounds
from forge_actors.core.events import (
    ContributionFailed,
    ParticipantInfo,
    PromptSent,
    RoundCompleted,
    RoundStarted,
    SessionCreated,
    SessionEnded,
    SessionSettings,
    VoteRecorded,
)
from forge_actors.core.state import rebuild
from forge_actors.providers import ProtocolError, register_provider
from forge_actors.providers.base import LlmRequest, StreamChunk

VOTERS = ("alice", "bob", "carol")


def convergence(votes: dict[str, str], failed: tuple[str, ...] = (), min_votes: int | None = None,
                max_rounds: int = 10):
    infos = tuple(ParticipantInfo(n, provider=f"mock:{n}", model=n) for n in VOTERS)
    events = [SessionCreated("s", "t", "g", SessionSettings(min_votes=min_votes, max_rounds=max_rounds), infos),
              RoundStarted(1, "convergence", 1, VOTERS)]
    events += [VoteRecorded(1, voter, vote) for voter, vote in votes.items()]  # type: ignore[arg-type]
    state = rebuild(events)
    result = rounds.round_result(state, 1)
    score = result.score if result else rounds.convergence_score(state.votes_in(1))
    succeeded = tuple(v for v in VOTERS if v not in failed)
    return rebuild([RoundCompleted(1, "convergence", "degraded" if failed else "completed", succeeded, failed, score)],
                   state)


def test_the_tally_says_who_counted_abstained_and_failed():
    state = convergence({"alice": "AGREE", "bob": "ABSTAIN"}, failed=("carol",))
    tally = rounds.vote_tally(state, 1)
    assert (tally.counted, tally.abstained, tally.failed) == (1, ("bob",), ("carol",))
    assert rounds.describe_tally(tally) == "1 of 3 voted: 100% agree; bob abstained; carol failed"


def test_one_counted_vote_of_three_voters_is_no_quorum_not_a_convergence():
    end = rounds.end_after_convergence(convergence({"alice": "AGREE", "bob": "ABSTAIN", "carol": "ABSTAIN"}), 1)
    assert end is not None and end.outcome == "no_quorum"
    assert "1 of 3 voted: 100% agree; bob, carol abstained" in end.reason and "quorum of 2" in end.reason


def test_a_quorum_decides_and_the_reason_mentions_the_abstention():
    end = rounds.end_after_convergence(convergence({"alice": "AGREE", "bob": "AGREE", "carol": "ABSTAIN"}), 1)
    assert end is not None and end.outcome == "converged"
    assert end.reason.startswith("2 of 3 voted: 100% agree; carol abstained (threshold 80%)")


def test_min_votes_sets_the_quorum():
    state = convergence({"alice": "AGREE", "bob": "ABSTAIN", "carol": "ABSTAIN"}, min_votes=1)
    end = rounds.end_after_convergence(state, 1)
    assert end is not None and end.outcome == "converged"
    strict = convergence({"alice": "AGREE", "bob": "AGREE", "carol": "DISAGREE"}, min_votes=3)
    assert rounds.end_after_convergence(strict, 1) is None  # 67% < 80%, quorum met: another iteration


def test_unreadable_votes_end_the_session_after_one_iteration_and_its_reasks(forge):
    session_id = forge.create_session("Design a TODO app API",
                                      ["mock:alice?garble=convergence", "mock:bob?garble=convergence"], max_rounds=10)
    events = [r.event for r in forge.deliberate(session_id)]
    ended = events[-1]
    assert isinstance(ended, SessionEnded) and ended.outcome == "no_quorum", ended
    assert "0 of 2 voted" in ended.reason and "alice, bob abstained" in ended.reason
    asks = Counter(e.purpose for e in events if isinstance(e, PromptSent) and e.round == max(
        r.round for r in events if isinstance(r, RoundStarted)))
    assert asks == {"initial": 2, "reask": 2}  # one vote request and one re-ask each, then stop
    assert sum(1 for e in events if isinstance(e, RoundStarted) and e.kind == "synthesis") == 1
    assert forge.state(session_id).status == "no_quorum"


class _BrokenStream:
    """Every stream fails before its first delta with the same malformed line."""

    name = "broken"
    model = "broken"
    supports_json = False
    calls = 0

    def stream(self, request: LlmRequest):
        _BrokenStream.calls += 1
        raise ProtocolError("malformed data in the response: expected an object at line 1", provider="broken")
        yield StreamChunk()  # pragma: no cover - makes this a generator

    def complete(self, request: LlmRequest):
        raise ProtocolError("no plain answer either", provider="broken")

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_the_same_protocol_violation_is_retried_once_not_max_retries_times(forge):
    register_provider("broken", lambda model, **options: _BrokenStream())
    session_id = forge.create_session("Design a TODO app API", ["broken:x", "mock:bob"], max_retries=5)
    forge.run_round(session_id, "draft", timeout=30)
    failures = [r.event for r in forge.records(session_id)
                if isinstance(r.event, ContributionFailed) and r.event.participant == "x"]
    assert [f.will_retry for f in failures] == [True, False]  # the first repeat is final, not 5 retries



class _NoStreaming:
    """A server that cuts every stream before its first delta but answers a plain request."""

    name = "nostream"
    model = "nostream"
    supports_json = False

    def stream(self, request: LlmRequest):
        raise ProtocolError("the connection broke mid-response (peer closed connection)", provider="nostream")
        yield StreamChunk()  # pragma: no cover - makes this a generator

    def complete(self, request: LlmRequest):
        from forge_actors.providers.base import LlmResponse, Usage

        return LlmResponse("### Components\n- one plain answer\n", "stop", Usage(10, 5), "nostream")

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_stream_cut_before_its_first_delta_falls_back_to_one_plain_call(forge):
    register_provider("nostream", lambda model, **options: _NoStreaming())
    session_id = forge.create_session("Design a TODO app API", ["nostream:x", "mock:bob"])
    forge.run_round(session_id, "draft", timeout=30)
    events = [r.event for r in forge.records(session_id)]
    mine = [e for e in events if getattr(e, "participant", None) == "x"]
    kinds = [type(e).__name__ for e in mine]
    # No failure, no retry; and what it showed is recorded: its streams do not work, so it is asked
    # without streaming from now on (one paid call a reply, not two).
    assert kinds == ["PromptSent", "ContentDelta", "ProviderLimitFound", "ContributionCompleted"]
    delta, learned, completed = mine[1], mine[2], mine[3]
    assert delta.text == completed.content == "### Components\n- one plain answer\n"
    assert "stream failed before its first delta" in completed.fallback and "malformed_stream" in completed.fallback
    assert (learned.limit, learned.error_kind, learned.answered_from_body) == ("streaming", "malformed_stream", False)
    assert not forge.state(session_id).participants["x"].streams
    assert forge.verify(session_id) == []
