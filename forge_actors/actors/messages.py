"""The messages actors tell each other, and the cancel token a contribution carries.

pykka shares a message between threads rather than copying it, so every message is
a frozen Struct. The session actor only ever *tells*: a participant answers with
``DeltaReceived``... then ``ContributionSucceeded`` or ``ContributionErrored``, and
timers answer with ``DeadlinePassed``, ``HumansWaitOver`` or ``RetryDue``. Commands from the engine
(``RunRound``, ``AddHumanDraft``...) are the only messages that are asked, and they
come from outside the actor system.

Fields are typed with what they hold (``CancelToken``, ``pykka.ActorRef``, a ``Future``, a
``Provider``) rather than ``Any``: msgspec takes any class as a field type, and it only
checks types when decoding, which messages never are (they cross threads, not wires). So
they stay frozen Structs, like every other value that crosses a boundary here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future

import msgspec
import pykka

from forge_actors.core.decider import (
    AddHumanDraft,
    CancelSession,
    CastVote,
    DeadlinePassed,
    HumansWaitOver,
    Interrupt,
    Recover,
    RetryDue,
    SimilaritiesMeasured,
)
from forge_actors.core.events import Price, RoundKind
from forge_actors.core.state import RoundState, SessionState
from forge_actors.providers.base import LlmRequest, Provider, ToolCall, Usage
from forge_actors.tools import ToolResult

logger = logging.getLogger(__name__)

__all__ = [
    "AddHumanDraft", "CancelSession", "CancelToken", "CastVote", "Contribute", "ContributionErrored",
    "ContributionSucceeded", "DeadlinePassed", "Deliberate", "DeltaReceived", "Embed", "Embedded",
    "EmbeddingFailed", "HumansWaitOver", "Interrupt",
    "ParticipantMessage", "Recover", "RetryDue", "RunRound", "SessionMessage", "SimilaritiesMeasured", "SwitchProvider",
    "ToolCallFinished", "ToolCallStarted", "UseProvider",
]


class CancelToken:
    """Set once, from any thread; runs its callbacks (e.g. a provider's ``abort``) at once.

    A participant registers the abort of its provider while it streams, so that the
    session cancelling a contribution wakes a read blocked on the network.
    """

    __slots__ = ("_event", "_callbacks", "_lock")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            _call_quietly(callback)

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` on cancel (now, if already cancelled). Returns a function that unregisters it."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return lambda: self._forget(callback)
        _call_quietly(callback)
        return lambda: None

    def _forget(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)


def _call_quietly(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:  # an abort that fails leaves the stream to its own timeout
        logger.warning("a cancel callback failed; the stream ends at its own timeout", exc_info=True)


# -- session -> participant -----------------------------------------------------------------------


class Contribute(msgspec.Struct, frozen=True):
    """Run one attempt: stream ``request`` and tell ``reply_to`` what happens."""

    contribution_id: str
    request: LlmRequest
    cancel: CancelToken
    #: The session actor: it is told DeltaReceived, then ContributionSucceeded or ContributionErrored.
    reply_to: pykka.ActorRef
    #: How the model calls tools in this contribution: ``native`` (``request.tools``), ``text``
    #: (``TOOL_CALL:`` lines; the tool section is in the messages) or ``off``.
    tool_mode: str = "off"
    #: The most characters the attempt may stream, all its turns together (None: no limit). Past it
    #: the stream is stopped and the reply settles as cut, with ``finish_reason`` REPLY_LIMIT_FINISH.
    max_chars: int | None = None
    #: False: the provider does not stream (a ProviderLimitFound): ask it without streaming.
    stream: bool = True


#: The finish reason of a reply stopped at ``Contribute.max_chars`` (the session's max_reply_chars).
REPLY_LIMIT_FINISH = "max_reply_chars"


class UseProvider(msgspec.Struct, frozen=True):
    """From now on, contribute with ``provider`` (the previous one is closed)."""

    provider: Provider


class Embed(msgspec.Struct, frozen=True):
    """Embed ``texts`` with the participant's provider (between rounds) and tell ``reply_to``
    ``Embedded`` or ``EmbeddingFailed`` with ``request_id``; ``cancel`` aborts the call (the session stops)."""

    request_id: str
    texts: tuple[str, ...]
    reply_to: pykka.ActorRef
    cancel: CancelToken


# -- participant -> session -----------------------------------------------------------------------


class DeltaReceived(msgspec.Struct, frozen=True):
    contribution_id: str
    text: str


class ToolCallStarted(msgspec.Struct, frozen=True):
    """The model asked for ``call`` in its ``turn``-th reply of the contribution (told before it runs)."""

    contribution_id: str
    turn: int
    call: ToolCall


class ToolCallFinished(msgspec.Struct, frozen=True):
    contribution_id: str
    call_id: str
    tool: str
    result: ToolResult


class ContributionSucceeded(msgspec.Struct, frozen=True):
    contribution_id: str
    content: str
    finish_reason: str | None
    usage: Usage
    latency_ms: float
    served_by: str = ""
    #: Why a non-streaming call answered instead (the stream failed before its first delta).
    fallback: str = ""
    #: What the provider showed it cannot do on the way (``providers.limits``), and how: the session
    #: records it before the answer and asks around it from then on.
    limit: str | None = None
    evidence: str = ""
    #: The kind of the failure that showed it, and whether that failure held the answer (no second call).
    evidence_kind: str = ""
    answered_from_body: bool = False


class ContributionErrored(msgspec.Struct, frozen=True):
    contribution_id: str
    error_kind: str
    message: str
    retryable: bool
    retry_after: float | None = None
    #: The failure shows the provider cannot do this (``providers.limits``: a 400 for response_format
    #: or tools): the session records it and asks again around it, at once.
    limit: str | None = None


class Embedded(msgspec.Struct, frozen=True):
    request_id: str
    vectors: tuple[tuple[float, ...], ...]
    model: str


class EmbeddingFailed(msgspec.Struct, frozen=True):
    """The provider could not embed (it offers no embeddings, or the call failed: ``error_kind``)."""

    request_id: str
    error_kind: str
    message: str


# -- timers -> session, and the commands that carry no handle: the decider's own inputs -----------

# (re-exported: the engine and the timers tell them to the session actor, which gives them to
# ``core.decider.decide`` as they are)

# -- engine -> session (commands) -----------------------------------------------------------------


class Deliberate(msgspec.Struct, frozen=True):
    """Run rounds on its own until the session ends (a re-run: until the plan it recorded,
    ``RerunPlanned``, runs out; then it waits for commands, as its original did). ``done`` gets
    the SessionState once the plan has run out or the session has ended.
    """

    done: Future[SessionState] | None = None


class RunRound(msgspec.Struct, frozen=True):
    """Run one round; ``done`` gets the RoundState when it completes (None if it cannot be found)."""

    kind: RoundKind
    done: Future[RoundState | None] | None = None


class SwitchProvider(msgspec.Struct, frozen=True):
    """Between rounds: ``participant`` continues on ``provider`` (spec and model as recorded)."""

    participant: str
    spec: str
    model: str
    provider: Provider
    replies: str = "text"
    tool_mode: str | None = None
    #: The new model's price, recorded in a session with a cost budget.
    price: Price | None = None


#: What a participant actor is told.
ParticipantMessage = Contribute | UseProvider | Embed
#: What the session actor receives: from participants, from timers, and the engine's commands.
SessionMessage = (
    DeltaReceived | ToolCallStarted | ToolCallFinished | ContributionSucceeded | ContributionErrored
    | Embedded | EmbeddingFailed | SimilaritiesMeasured | DeadlinePassed | HumansWaitOver | RetryDue
    | Recover | Deliberate | RunRound | AddHumanDraft | CastVote | CancelSession | SwitchProvider | Interrupt
)
