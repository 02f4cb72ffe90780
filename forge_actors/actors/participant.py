"""ParticipantActor: one provider, one contribution at a time, in its own thread.

It streams the request of a ``Contribute`` message and tells the sender every delta,
then ``ContributionSucceeded`` or ``ContributionErrored``. It knows nothing of rounds
or sessions: the session actor decides what a contribution means.

Every failure of the provider is caught and told as ``ContributionErrored``: an
exception escaping a told message would kill the actor without a word (pykka).

A stream that fails before its first delta with an error a plain request may avoid (a
malformed or cut stream, a server that refuses ``stream: true``) is answered by one
non-streaming call instead; the whole answer is then its one delta, and
``ContributionSucceeded.fallback`` says why, so the log records it.
Cancellation goes through the message's CancelToken, which calls the provider's
``abort()`` from the cancelling thread, so even a read blocked on a stalled server
ends at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pykka

from forge_actors.actors.messages import (
    CancelToken,
    Contribute,
    ContributionErrored,
    ContributionSucceeded,
    DeltaReceived,
    UseProvider,
)
from forge_actors.providers.base import Provider, Usage
from forge_actors.providers.errors import LlmError

logger = logging.getLogger(__name__)

class ParticipantActor(pykka.ThreadingActor):
    # The engine stops every participant it starts; a daemon thread is only the safety
    # net for a provider that ignores abort(), so it cannot keep the process alive.
    use_daemon_thread = True

    def __init__(self, name: str, provider: Provider, clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        super().__init__()
        self.name = name
        self.provider = provider
        self._clock_ns = clock_ns

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Contribute):
            self._contribute(message)
        elif isinstance(message, UseProvider):  # queued behind any contribution still running
            self._close_provider()
            self.provider = message.provider
        return None

    def on_stop(self) -> None:
        self._close_provider()

    def on_failure(self, *exc_info: object) -> None:
        self._close_provider()

    def _close_provider(self) -> None:
        try:
            self.provider.close()
        except Exception:  # closing is best effort; the actor stops either way
            logger.warning("%s: closing its provider failed", self.name, exc_info=True)

    def _contribute(self, message: Contribute) -> None:
        try:
            outcome = self._stream(message)
        except Exception as exc:  # not an LlmError: a bug in a provider; still a failed attempt, not a dead actor
            logger.exception("%s: the provider raised an unexpected error", self.name)
            outcome = ContributionErrored(message.contribution_id, "internal", f"{type(exc).__name__}: {exc}", False)
        try:
            message.reply_to.tell(outcome)
        except pykka.ActorDeadError:  # the session is gone; nobody is waiting for this
            pass

    def _stream(self, message: Contribute) -> ContributionSucceeded | ContributionErrored:
        cid, token, reply_to = message.contribution_id, message.cancel, message.reply_to
        if token.cancelled:
            return _cancelled(cid)
        started = self._clock_ns()
        parts: list[str] = []
        finish_reason: str | None = None
        usage = Usage()
        abort = getattr(self.provider, "abort", None)
        unregister = token.on_cancel(abort) if callable(abort) else (lambda: None)
        chunks = None
        try:
            chunks = self.provider.stream(message.request)
            for chunk in chunks:
                if token.cancelled:
                    return _cancelled(cid)
                if chunk.delta:
                    parts.append(chunk.delta)
                    reply_to.tell(DeltaReceived(cid, chunk.delta))
                if chunk.is_complete:
                    finish_reason = chunk.finish_reason
                    usage = chunk.usage or usage
        except LlmError as error:
            if token.cancelled:  # the abort is what broke the stream
                return _cancelled(cid)
            if not parts and error.stream_fallback:
                return self._without_streaming(message, error, started)
            return ContributionErrored(cid, error.kind, str(error), error.retryable, error.retry_after)
        finally:
            unregister()
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if token.cancelled:
            return _cancelled(cid)
        return self._succeeded(cid, "".join(parts), finish_reason, usage, started)


    def _without_streaming(self, message: Contribute, stream_error: LlmError,
                           started: int) -> ContributionSucceeded | ContributionErrored:
        """One non-streaming call after the stream failed before its first delta."""
        cid, token = message.contribution_id, message.cancel
        why = f"the stream failed before its first delta ({stream_error.kind}: {stream_error}); one non-streaming call answered"
        logger.info("%s: %s", self.name, why)
        try:
            response = self.provider.complete(message.request)
        except LlmError as error:
            if token.cancelled:
                return _cancelled(cid)
            return ContributionErrored(cid, error.kind, f"{error} (a non-streaming call, after the stream failed: "
                                       f"{stream_error})", error.retryable, error.retry_after)
        if token.cancelled:
            return _cancelled(cid)
        message.reply_to.tell(DeltaReceived(cid, response.content))
        return self._succeeded(cid, response.content, response.finish_reason, response.usage, started, fallback=why)

    def _succeeded(self, cid: str, content: str, finish_reason: str | None, usage: Usage, started: int,
                   fallback: str = "") -> ContributionSucceeded:
        """The answer, timed from ``started`` and naming the pool member that served it, if any."""
        latency_ms = (self._clock_ns() - started) / 1e6
        return ContributionSucceeded(cid, content, finish_reason, usage, latency_ms,
                                     getattr(self.provider, "served_by", "") or "", fallback)


def _cancelled(contribution_id: str) -> ContributionErrored:
    return ContributionErrored(contribution_id, "cancelled", "the contribution was cancelled", False)


__all__ = ["CancelToken", "ParticipantActor"]
