"""Reading a participant's recorded answers out of a session's events, for the replay provider."""

from __future__ import annotations

from collections.abc import Iterable

from forge_actors.events import (
    ContentDelta,
    ContributionAbandoned,
    ContributionCompleted,
    ContributionFailed,
    Event,
    PromptSent,
)
from forge_actors.providers.base import Usage
from forge_actors.providers.replay import RecordedAnswer, ReplayProvider, prompt_key


def recorded_answers(events: Iterable[Event], participant: str) -> list[RecordedAnswer]:
    """The participant's attempts in the order their prompts were sent.

    An attempt abandoned by a crash is left out: it was run again, and that run is the answer.
    """
    answers: dict[str, RecordedAnswer] = {}
    abandoned: set[str] = set()
    for event in events:
        if isinstance(event, PromptSent):
            if event.participant == participant:
                answers[event.contribution_id] = RecordedAnswer(event.contribution_id, prompt_key(event.messages))
        elif isinstance(event, ContentDelta):
            if event.contribution_id in answers:
                answers[event.contribution_id].deltas.append(event.text)
        elif isinstance(event, ContributionCompleted):
            if event.contribution_id in answers:
                answer = answers[event.contribution_id]
                answer.content, answer.finish_reason = event.content, event.finish_reason
                answer.usage = Usage(event.usage.input_tokens, event.usage.output_tokens)
        elif isinstance(event, ContributionFailed):
            if event.contribution_id in answers:
                answers[event.contribution_id].error_kind = event.error_kind
                answers[event.contribution_id].error_message = event.message
        elif isinstance(event, ContributionAbandoned):
            abandoned.add(event.contribution_id)
    return [answer for cid, answer in answers.items() if cid not in abandoned]


def replay_provider(events: Iterable[Event], participant: str, model: str = "") -> ReplayProvider:
    return ReplayProvider(participant, recorded_answers(events, participant), model)
