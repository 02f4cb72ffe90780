"""One error taxonomy for every provider.

Each error says whether retrying can help (``retryable``), carries the HTTP status
when there was one, and has a message that says what to do next. Messages never
contain an API key: providers pass what they show through ``redact`` first.
"""

from __future__ import annotations

from collections.abc import Iterable


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


class BadRequestError(LlmError):
    kind = "bad_request"


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


class EmptyResponseError(LlmError):
    kind = "empty_response"
    retryable = True


class ProcessFailedError(LlmError):
    """A command-line assistant could not be run, or exited badly."""

    kind = "process_failure"


class CancelledError(LlmError):
    kind = "cancelled"


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
            f"no API key: set {env_var} in the environment (or pass api_key=...).",
            provider=provider,
        )


ERRORS_BY_KIND: dict[str, type[LlmError]] = {
    cls.kind: cls
    for cls in (
        AuthenticationError, PermissionDeniedError, RateLimitError, OverloadedError, BadRequestError,
        NotFoundError, ServerError, RequestTimeoutError, ConnectError, ProtocolError,
        EmptyResponseError, ProcessFailedError, CancelledError,
    )
}


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret (of 4+ characters) replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
