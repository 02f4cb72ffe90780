"""Retrying retryable failures: capped exponential backoff with jitter, Retry-After aware.

A stream is retried only while it has yielded nothing: once text has gone to the
caller, a silent retry would duplicate it, so the error goes up and the caller decides.
A cancelled attempt is never retried, and a protocol violation that comes back
identical (``same_failure``) is a deterministic fault of the server: retried once, not more.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

import msgspec

from forge_actors.providers.base import StreamChunk
from forge_actors.providers.errors import CancelledError, LlmError, ProtocolError, same_failure

T = TypeVar("T")

#: Called before each retry with the error, the attempt that failed (1-based) and the delay.
OnRetry = Callable[[LlmError, int, float], None]


class RetryPolicy(msgspec.Struct, frozen=True):
    max_retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 8.0
    #: The longest Retry-After we honour; a server asking for more gets this much.
    max_retry_after: float = 60.0
    jitter: float = 0.25

    def delay(self, attempt: int, error: LlmError, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``attempt`` (1-based) failed with ``error``."""
        if error.retry_after is not None:
            return max(0.0, min(error.retry_after, self.max_retry_after))
        backoff = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return min(self.max_delay, backoff * spread)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``retry-after`` (seconds or an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:  # not a number: the next header may say
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:  # not seconds: perhaps an HTTP date
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):  # unreadable: no hint, the policy's own backoff applies
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def may_retry(error: LlmError, attempt: int, policy: RetryPolicy, previous: LlmError | None = None) -> bool:
    """Whether ``attempt`` (1-based), which failed with ``error`` after ``previous``, is worth another try."""
    if isinstance(error, CancelledError) or not error.retryable or attempt > policy.max_retries:
        return False
    # The same malformed line twice is the server's doing, not the network's: a third try repeats it.
    return not (isinstance(error, ProtocolError) and previous is not None and same_failure(error, previous))


def wait_to_retry(
    error: LlmError,
    attempt: int,
    policy: RetryPolicy,
    on_retry: OnRetry | None,
    sleep: Callable[[float], None],
    previous: LlmError | None,
) -> None:
    """Return after the backoff if ``attempt`` may be retried; raise ``error`` if not.

    ``previous`` is the error the attempt before failed with (None for the first)."""
    if not may_retry(error, attempt, policy, previous):
        raise error
    delay = policy.delay(attempt, error)
    if on_retry:
        on_retry(error, attempt, delay)
    sleep(delay)


def call_with_retries(
    call: Callable[[], T],
    policy: RetryPolicy,
    *,
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    attempt = 0
    previous: LlmError | None = None
    while True:
        attempt += 1
        try:
            return call()
        except LlmError as error:
            wait_to_retry(error, attempt, policy, on_retry, sleep, previous)
            previous = error


def stream_with_retries(
    open_stream: Callable[[], Iterator[StreamChunk]],
    policy: RetryPolicy,
    *,
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[StreamChunk]:
    """Chunks of ``open_stream()``; a failure before the first chunk opens it again."""
    attempt = 0
    previous: LlmError | None = None
    while True:
        attempt += 1
        chunks = open_stream()
        started = False
        try:
            for chunk in chunks:
                started = True
                yield chunk
            return
        except LlmError as error:
            if started:  # text already went out: a silent retry would repeat it
                raise
            _close(chunks)  # let go of the connection now, not after the backoff
            wait_to_retry(error, attempt, policy, on_retry, sleep, previous)
            previous = error
        finally:
            _close(chunks)


def _close(chunks: Iterator[StreamChunk]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()
