"""The replay provider, fed from recorded events, gives back exactly what was recorded, prompt by prompt."""

from __future__ import annotations

import pytest

from forge_actors.core.events import (
    ContentDelta,
    ContributionAbandoned,
    ContributionCompleted,
    ContributionFailed,
    PromptMessage,
    PromptSent,
    TokenUsage,
)
from forge_actors.engine.replay import replay_provider
from forge_actors.providers import LlmRequest, Message, NotFoundError, RateLimitError, collect

DRAFT = (PromptMessage("system", "sys"), PromptMessage("user", "Round: draft\nGoal: g"))
VOTE = (PromptMessage("system", "sys"), PromptMessage("user", "Round: convergence\nGoal: g"))


def prompt(cid: str, messages, participant: str = "alice", attempt: int = 1) -> PromptSent:
    return PromptSent(contribution_id=cid, round=1, participant=participant, attempt=attempt, model="m",
                      messages=messages, temperature=0.7, max_tokens=100)


def deltas(cid: str, *texts: str, participant: str = "alice") -> list[ContentDelta]:
    return [ContentDelta(contribution_id=cid, participant=participant, round=1, attempt=1, text=t) for t in texts]


def done(cid: str, content: str, participant: str = "alice") -> ContributionCompleted:
    return ContributionCompleted(contribution_id=cid, participant=participant, round=1, attempt=1, content=content,
                                 finish_reason="end_turn", usage=TokenUsage(7, 3), latency_ms=1.0)


def request(messages) -> LlmRequest:
    return LlmRequest(messages=tuple(Message(m.role, m.content) for m in messages))


def test_replays_deltas_usage_and_finish_reason_per_prompt():
    events = [
        prompt("d1", DRAFT), prompt("b1", DRAFT, participant="bob"), *deltas("d1", "Hel", "lo"),
        *deltas("b1", "bob text", participant="bob"), done("d1", "Hello"), done("b1", "bob text", participant="bob"),
        prompt("v1", VOTE), *deltas("v1", "VOTE: AGREE"), done("v1", "VOTE: AGREE"),
    ]
    replay = replay_provider(events, "alice")
    vote_chunks = list(replay.stream(request(VOTE)))  # order of asking does not matter: the prompt does
    assert [c.delta for c in vote_chunks] == ["VOTE: AGREE", ""]
    chunks = list(replay.stream(request(DRAFT)))
    assert [c.delta for c in chunks[:-1]] == ["Hel", "lo"]
    assert (chunks[-1].is_complete, chunks[-1].finish_reason, chunks[-1].usage.output_tokens) == (True, "end_turn", 3)
    assert replay.remaining() == 0
    with pytest.raises(NotFoundError, match="no recorded answer"):
        list(replay.stream(request(DRAFT)))


def test_same_prompt_twice_replays_the_failure_then_the_retry():
    events = [
        prompt("d1", DRAFT), *deltas("d1", "par"),
        ContributionFailed(contribution_id="d1", participant="alice", round=1, attempt=1, error_kind="rate_limit",
                           message="slow down", retryable=True, will_retry=True),
        prompt("d2", DRAFT, attempt=2), *deltas("d2", "full answer"), done("d2", "full answer"),
    ]
    replay = replay_provider(events, "alice")
    first = replay.stream(request(DRAFT))
    assert next(first).delta == "par"
    with pytest.raises(RateLimitError, match="slow down"):
        next(first)
    assert collect(replay.stream(request(DRAFT)), "m").content == "full answer"


def test_abandoned_attempts_are_skipped_and_unfinished_ones_fail():
    events = [prompt("d1", DRAFT), *deltas("d1", "cut"), ContributionAbandoned(
        contribution_id="d1", participant="alice", round=1, attempt=1, reason="process died"),
        prompt("d2", DRAFT), *deltas("d2", "again"), done("d2", "again"), prompt("v1", VOTE), *deltas("v1", "VO")]
    replay = replay_provider(events, "alice")
    assert collect(replay.stream(request(DRAFT)), "m").content == "again"
    with pytest.raises(NotFoundError, match="never finished"):
        list(replay.stream(request(VOTE)))
