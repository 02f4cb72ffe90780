"""One error taxonomy for every provider.

Each error says whether retrying can help (``retryable``), carries the HTTP status
when there was one, and has a message that says what to do next. Messages never
contain an API key: providers pass what they show through ``redact`` first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any


class LlmError(Exception):
    """Base of every provider failure."""

    kind: str = "error"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.provider = provider
        self.status_code = status_code
        self.retry_after = retry_after
        prefix = f"{provider}: " if provider else ""
        super().__init__(prefix + message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r}, status_code={self.status_code})"

    @property
    def signature(self) -> tuple[str, str]:
        """What makes two failures "the same one": see ``failure_signature``."""
        return failure_signature(self.kind, self.message)

    @property
    def stream_fallback(self) -> bool:
        """True when a stream that failed like this before its first delta may succeed as one
        non-streaming call (the participant then makes that one call instead of retrying the stream)."""
        return False


class AuthenticationError(LlmError):
    kind = "authentication"


class PermissionDeniedError(LlmError):
    kind = "permission_denied"


class RateLimitError(LlmError):
    kind = "rate_limit"
    retryable = True


class OverloadedError(LlmError):
    kind = "overloaded"
    retryable = True


class QuotaExceededError(RateLimitError):
    """A 429 that waiting cannot fix: the account is out of credit (OpenAI's ``insufficient_quota``)."""

    kind = "quota_exceeded"
    retryable = False


#: How servers say that they refuse ``stream: true`` (vLLM, proxies, some OpenAI models, ...).
_STREAMING_REFUSED = re.compile(
    r"\bstream(ing)?\b[^.;]*\b(not|un)[ -]?(supported|available|allowed)"
    r"|\b(does not|doesn't|do not|don't|cannot|can't) (support )?stream"
    r"|\bunsupported\b[^.;]*\bstream",
    re.IGNORECASE,
)


class BadRequestError(LlmError):
    kind = "bad_request"

    @property
    def stream_fallback(self) -> bool:
        # Only a refusal of streaming itself: any other bad request fails the same without it.
        return self.status_code in (400, 422) and _STREAMING_REFUSED.search(self.message) is not None


class NotFoundError(LlmError):
    kind = "not_found"


class ServerError(LlmError):
    kind = "server_error"
    retryable = True


class RequestTimeoutError(LlmError):
    kind = "timeout"
    retryable = True


class ConnectError(LlmError):
    kind = "connection"
    retryable = True


class ProtocolError(LlmError):
    """The stream was malformed or cut off. Usually a transport glitch, so worth a retry."""

    kind = "malformed_stream"
    retryable = True

    @property
    def stream_fallback(self) -> bool:
        return True  # a malformed or cut stream says nothing against a plain response


class NotStreamedError(ProtocolError):
    """The server answered a streaming request with a whole body (``application/json``): it does not
    stream. Not a failure of the request: ``response`` holds the answer the body gave (None when it
    could not be read as one), so that nothing is asked twice, and whoever calls the provider can ask
    it without streaming from then on. Never retried: the server answers the same way again."""

    kind = "not_streamed"
    retryable = False

    def __init__(self, message: str, *, response: Any = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.response = response


class EmptyResponseError(LlmError):
    kind = "empty_response"
    retryable = True


class EmptyStreamError(EmptyResponseError):
    """A stream that completed (a 200, its end marker) without any text or tool call: one plain
    request may still answer (some servers stream nothing for some requests)."""

    @property
    def stream_fallback(self) -> bool:
        return True


class ProcessFailedError(LlmError):
    """A command-line assistant could not be run, or exited badly."""

    kind = "process_failure"


class CancelledError(LlmError):
    """The caller stopped the request (``abort()``, a cancel, a deadline). Never retried."""

    kind = "cancelled"


class RefusalError(BadRequestError):
    """The model declined to answer in the asked shape (OpenAI's ``refusal``).

    Not retryable: the same request gets the same refusal; rephrase it, or ask for text.
    """

    kind = "refusal"
    retryable = False


class MalformedReplyError(LlmError):
    """A structured reply that is not JSON of the asked shape. ``content`` keeps what the model wrote.

    Not retryable: the request was delivered and answered, and sending it again costs a
    whole reply for what is usually the same outcome (a reply cut at ``max_tokens``, or a
    model that does not follow schemas). The caller decides: read ``content`` as text,
    raise ``max_tokens``, or ask for text replies.
    """

    kind = "malformed_reply"
    retryable = False

    def __init__(self, message: str, *, content: str = "", finish_reason: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.content = content
        self.finish_reason = finish_reason


class MalformedEmbeddingsError(LlmError):
    """An embeddings answer that is not one vector of numbers per text asked for (not JSON of the
    API's shape, another count of vectors, vectors of different lengths). Not retryable: the server
    answered, and would answer the same way."""

    kind = "malformed_embeddings"
    retryable = False


class ReplayMismatchError(LlmError):
    """A re-run asked for something its recording does not hold (another prompt, another tool
    call): the re-run is no longer the recorded session, and saying so beats making up an answer."""

    kind = "replay_mismatch"


class ProviderConfigError(ValueError):
    """A provider spec or option is wrong. Raised before any request is made."""


class UnknownProviderError(ProviderConfigError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(
            f"unknown provider {name!r}; known providers: {', '.join(self.known)}. "
            "Write a spec as PROVIDER:MODEL, e.g. anthropic:claude-sonnet-4-20250514 or mock:alice."
        )


class MissingApiKeyError(AuthenticationError):
    """No key was given and the environment variable is not set."""

    def __init__(self, provider: str, env_var: str) -> None:
        self.env_var = env_var
        super().__init__(
            f"no API key: set {env_var} in the environment of the process that runs the deliberation.",
            provider=provider,
        )


ERRORS_BY_KIND: dict[str, type[LlmError]] = {
    cls.kind: cls
    for cls in (
        AuthenticationError, PermissionDeniedError, RateLimitError, OverloadedError, BadRequestError,
        NotFoundError, ServerError, QuotaExceededError, RequestTimeoutError, ConnectError, ProtocolError,
        NotStreamedError, EmptyResponseError, ProcessFailedError, CancelledError, RefusalError, MalformedReplyError, ReplayMismatchError,
    )
}


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret (of 4+ characters) replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def failure_signature(kind: str, message: str) -> tuple[str, str]:
    """The identity of a failure: its kind and its message (spacing aside).

    Two attempts that fail with the same signature met the same deterministic fault
    (e.g. the same malformed line from the same server): retrying once more will not help.
    """
    return kind, " ".join(message.split())


def same_failure(a: LlmError, b: LlmError) -> bool:
    """True when ``a`` and ``b`` are the same failure (same kind, same message).

    For failures known only as recorded text (e.g. ``ContributionErrored``), compare
    ``failure_signature(kind, message)`` instead.
    """
    return failure_signature(a.kind, a.message) == failure_signature(b.kind, b.message)
