"""Answers from a recorded session, for deterministic re-runs and tests.

It is handed one participant's recorded answers (``forge_actors.engine.recordings`` reads
them out of the events; this module knows nothing of events and never opens the log).
A request is matched to a recording by its exact messages: a deterministic re-run
sends the same prompts, so each gets the answer it got before, delta for delta. The
same prompt sent several times (a retry after a failure) gets its recordings in
order, failures included: a recorded failure is raised again as the same kind of error.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Iterator

import msgspec

from forge_actors.providers.base import (
    TOOL_CALLS_FINISH,
    LlmRequest,
    LlmResponse,
    Message,
    StreamChunk,
    ToolCall,
    Usage,
    collect,
)
from forge_actors.providers.errors import (
    ERRORS_BY_KIND,
    BadRequestError,
    LlmError,
    NotFoundError,
    NotStreamedError,
    ProtocolError,
    ReplayMismatchError,
)
from forge_actors.providers.structured import StructuredOutput


class RecordedTurn(msgspec.Struct):
    """One reply of the model within an attempt that called tools: its text and its calls."""

    deltas: list[str] = []
    tool_calls: list[ToolCall] = []


class RecordedAnswer(msgspec.Struct):
    """One recorded attempt: the prompt it answered (``prompt_key``, over its first ``prompt_length``
    messages) and what came back. An attempt that called tools has its replies in ``turns``."""

    contribution_id: str
    prompt_key: str
    deltas: list[str] = []
    content: str | None = None
    finish_reason: str | None = None
    usage: Usage = Usage()
    error_kind: str | None = None
    error_message: str = ""
    prompt_length: int = 0
    turns: list[RecordedTurn] = []
    #: The recorded attempt's stream failed before its first delta and was answered without streaming
    #: (the failure's kind and message; whether the failure held the answer, a whole body): the re-run
    #: meets the same failure, and so falls back, and learns, the same.
    stream_failure: str = ""
    stream_failure_kind: str = ""
    answered_from_body: bool = False


def prompt_key(messages: Iterable[Message]) -> str:
    """A digest of the exact conversation sent (anything with ``role`` and ``content``)."""
    digest = hashlib.sha256()
    for message in messages:
        digest.update(f"{message.role}\0{message.content}\0".encode())
    return digest.hexdigest()


class ReplayProvider(StructuredOutput):
    """Replays recorded answers, structured ones too (their JSON deltas, as recorded).

    Requests are matched by their messages alone, not by ``response_schema``: in a
    deterministic re-run a prompt belongs to one round, and so to one schema, and the
    recorded events carry no schema to match against. ``supports_json`` says what the
    recorded participant's provider did (default True), so that an engine choosing
    JSON or text by it asks the re-run for what the recording holds.
    """

    name = "replay"

    def __init__(self, participant: str, answers: Iterable[RecordedAnswer], model: str = "", *,
                 supports_json: bool = True) -> None:
        self.participant = participant
        self.model = model or participant
        self.supports_json = supports_json
        self.supports_tools = True  # recorded tool calls come back as they were made
        self._queues: dict[str, deque[RecordedAnswer]] = {}
        # An attempt that called tools, part played: (its answer, the next turn to play).
        self._continuing: tuple[RecordedAnswer, int] | None = None
        # The answer of an attempt whose stream failed as recorded: the plain call after it gets it.
        self._plain: Iterator[StreamChunk] | None = None
        for answer in answers:  # in the order the prompts were sent
            self._queues.setdefault(answer.prompt_key, deque()).append(answer)

    def __repr__(self) -> str:
        return f"ReplayProvider(participant={self.participant!r})"

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass  # answers come from memory, at once: nothing to interrupt

    def remaining(self) -> int:
        """Recorded answers not yet given."""
        return sum(len(q) for q in self._queues.values())

    def complete(self, request: LlmRequest) -> LlmResponse:
        plain, self._plain = self._plain, None
        return collect(plain if plain is not None else self.stream(request), self.model)

    def stream(self, request: LlmRequest) -> Iterator[StreamChunk]:
        if self._continuing is not None:
            answer, turn = self._continuing
            if prompt_key(request.messages[:answer.prompt_length]) == answer.prompt_key:
                return self._play_turn(answer, turn)
            self._continuing = None  # a new prompt: that attempt ended (e.g. it was cancelled) mid-way
        queue = self._queues.get(prompt_key(request.messages))
        if not queue:
            raise NotFoundError(
                f"no recorded answer of {self.participant} for this prompt; a re-run only reproduces a session "
                "whose prompts are the same (same goal, participants, seed and settings)",
                provider=self.name,
            )
        answer = queue.popleft()
        chunks = self._play_turn(answer, 0) if answer.turns else self._play(answer)
        if answer.stream_failure:
            if answer.answered_from_body:
                raise NotStreamedError(answer.stream_failure, response=collect(chunks, self.model))
            self._plain = chunks  # what the one non-streaming call that follows answers
            raise _StreamFailure(answer.stream_failure_kind, answer.stream_failure)
        return chunks

    def _play_turn(self, answer: RecordedAnswer, index: int) -> Iterator[StreamChunk]:
        """The ``index``-th reply of an attempt that called tools; the last ends as the attempt did."""
        if index >= len(answer.turns):
            self._continuing = None
            raise ReplayMismatchError(f"the recording of {answer.contribution_id} has {len(answer.turns)} replies; "
                                      f"the re-run asked for reply {index + 1}", provider=self.name)
        last = index == len(answer.turns) - 1
        self._continuing = None if last else (answer, index + 1)
        turn = answer.turns[index]
        if last:
            return self._play(answer, turn)
        return self._play_calls(turn)

    @staticmethod
    def _play_calls(turn: RecordedTurn) -> Iterator[StreamChunk]:
        for delta in turn.deltas:
            yield StreamChunk(delta)
        for call in turn.tool_calls:
            yield StreamChunk(tool_call=call)
        yield StreamChunk("", True, TOOL_CALLS_FINISH, Usage())

    def _play(self, answer: RecordedAnswer, turn: RecordedTurn | None = None) -> Iterator[StreamChunk]:
        if turn is not None:
            deltas = turn.deltas
        else:
            deltas = answer.deltas or ([answer.content] if answer.content else [])
        for delta in deltas:
            yield StreamChunk(delta)
        for call in turn.tool_calls if turn is not None else ():
            yield StreamChunk(tool_call=call)  # a last turn's calls (past the budget): never run
        if answer.error_kind is not None:
            raise _recorded_error(answer)
        if answer.content is None:
            raise NotFoundError(f"the recording of {answer.contribution_id} never finished", provider=self.name)
        yield StreamChunk("", True, answer.finish_reason, answer.usage)


class _StreamFailure(ProtocolError):
    """A recorded stream's failure again, of its recorded kind and message, before its first delta."""

    retryable = False

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _recorded_error(answer: RecordedAnswer) -> LlmError:
    """The recorded failure again: same kind, same message (which already names its provider)."""
    kind = answer.error_kind or ""
    cls = ERRORS_BY_KIND.get(kind, LlmError)
    # A recorded bad request was a 400 (the status is not recorded): what it shows a server cannot do
    # (``providers.limits``) is read from its message again, as the recorded session read it.
    error = cls(answer.error_message, status_code=400 if issubclass(cls, BadRequestError) else None)
    error.kind = answer.error_kind or error.kind  # kinds the taxonomy does not name (e.g. a deadline) too
    return error
