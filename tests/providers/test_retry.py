"""Backoff, Retry-After parsing, and the stream retry rule."""

from __future__ import annotations

import email.utils
import random

import pytest

from forge_actors.providers import (
    BadRequestError,
    CancelledError,
    ProtocolError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    StreamChunk,
)
from forge_actors.providers.errors import failure_signature, same_failure
from forge_actors.providers.retry import call_with_retries, may_retry, parse_retry_after, stream_with_retries


def test_parse_retry_after_forms():
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after-ms": "nope", "retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=1_000_000) == pytest.approx(30)
    assert parse_retry_after({"retry-after": "gibberish"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "-5"}) == 0.0


def test_backoff_grows_caps_and_jitters():
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0, jitter=0.25)
    rng = random.Random(1)
    error = ServerError("x")
    delays = [policy.delay(attempt, error, rng) for attempt in range(1, 8)]
    assert 0.375 <= delays[0] <= 0.625 and 0.75 <= delays[1] <= 1.25
    assert all(d <= 4.0 for d in delays) and delays[-1] >= 3.0
    assert policy.delay(1, RateLimitError("x", retry_after=7)) == 7
    assert policy.delay(1, RateLimitError("x", retry_after=9999)) == policy.max_retry_after


def test_call_retries_only_retryable_errors():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ServerError("again")
        return "ok"

    seen = []
    assert call_with_retries(flaky, RetryPolicy(max_retries=2), on_retry=lambda e, a, d: seen.append(a), sleep=lambda s: None) == "ok"
    assert seen == [1, 2]
    with pytest.raises(BadRequestError):
        call_with_retries(lambda: (_ for _ in ()).throw(BadRequestError("no")), RetryPolicy(), sleep=lambda s: None)


def test_stream_retries_before_first_chunk_only():
    opened = []

    def fails_early():
        opened.append(1)
        if len(opened) == 1:
            raise ServerError("early")
        yield StreamChunk("a")
        yield StreamChunk("", True, "stop")

    assert [c.delta for c in stream_with_retries(fails_early, RetryPolicy(), sleep=lambda s: None)] == ["a", ""]
    assert len(opened) == 2

    opened.clear()

    def fails_late():
        opened.append(1)
        yield StreamChunk("a")
        raise ServerError("late")

    chunks = stream_with_retries(fails_late, RetryPolicy(), sleep=lambda s: None)
    assert next(chunks).delta == "a"
    with pytest.raises(ServerError):
        next(chunks)
    assert len(opened) == 1


def test_the_same_protocol_violation_is_retried_once_only():
    policy = RetryPolicy(max_retries=5)
    attempts = []

    def same_bad_line():
        attempts.append(1)
        raise ProtocolError("malformed data in the response: JSON is malformed: invalid character (byte 12)")
        yield StreamChunk("never")

    with pytest.raises(ProtocolError):
        list(stream_with_retries(same_bad_line, policy, sleep=lambda s: None))
    assert len(attempts) == 2  # the first try, and one retry that showed the fault is the server's

    attempts.clear()

    def each_cut_differs():
        attempts.append(1)
        raise ProtocolError(f"the connection broke mid-response (after {len(attempts)} bytes)")

    with pytest.raises(ProtocolError):
        call_with_retries(each_cut_differs, policy, sleep=lambda s: None)
    assert len(attempts) == 6  # different failures: the whole retry budget


def test_repeated_transient_errors_keep_their_retries():
    attempts = []

    def busy():
        attempts.append(1)
        raise ServerError("server error 502 (bad gateway)")

    with pytest.raises(ServerError):
        call_with_retries(busy, RetryPolicy(max_retries=3), sleep=lambda s: None)
    assert len(attempts) == 4


def test_a_cancelled_attempt_is_never_retried():
    class Odd(CancelledError):
        retryable = True  # even if some provider said otherwise

    attempts = []

    def cancelled():
        attempts.append(1)
        raise Odd("stopped")

    with pytest.raises(CancelledError):
        call_with_retries(cancelled, RetryPolicy(max_retries=3), sleep=lambda s: None)
    assert len(attempts) == 1
    assert not may_retry(CancelledError("x"), 1, RetryPolicy())


def test_same_failure_and_signature():
    a = ProtocolError("bad  line\n", provider="openai")
    b = ProtocolError("bad line", provider="ollama")
    assert same_failure(a, b) and a.signature == ("malformed_stream", "bad line")
    assert not same_failure(a, ProtocolError("other line"))
    assert not same_failure(a, ServerError("bad line"))
    assert failure_signature("malformed_stream", "bad line") == a.signature
