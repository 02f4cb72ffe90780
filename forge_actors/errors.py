"""Errors of the engine: each says what went wrong and what to do about it.

Provider errors live in ``forge_actors.providers.errors``; log errors in ``eventstore``. Both are
re-exported here: this module and ``forge_actors.engine`` are the engine's edge, and the surfaces
(CLI, server, tools) import nothing of providers or the log directly (tests/packaging/test_layers.py).
"""

from __future__ import annotations

# The log's own errors reach engine callers too; surfaces import them from here.
from eventstore.errors import (
    ConcurrencyError,
    CorruptEventError,
    CorruptLogError,
    DiskFullError,
    EventStoreError,
    LogReadError,
    LogWriteError,
    NotAnEventLogError,
)

# The provider errors a caller catches at the engine's edge (a bad spec, a model that failed).
from forge_actors.providers.errors import LlmError, MissingApiKeyError, ProviderConfigError

__all__ = [
    "ConcurrencyError", "ConfigError", "CorruptEventError", "CorruptLogError", "DiskFullError", "EventStoreError",
    "ForgeError", "InvalidCommandError", "LlmError", "LogReadError", "LogWriteError", "MissingApiKeyError",
    "NotAnEventLogError", "ParticipantKeyMissingError", "ProviderConfigError", "SessionBusyError",
    "SessionNotFoundError", "SessionStoppedError", "UntrustedSpecError",
]


class ForgeError(Exception):
    """Base of the engine's errors."""


class SessionNotFoundError(ForgeError, KeyError):
    def __init__(self, session_id: str, message: str | None = None) -> None:
        self.session_id = session_id
        self.message = message or (
            f"no session {session_id!r} in this log; list them with `forge sessions` (or Forge.sessions())"
        )
        super().__init__(session_id)

    def __str__(self) -> str:
        return self.message


class InvalidCommandError(ForgeError):
    """A command that does not fit the session's status (e.g. a vote before any synthesis)."""


class SessionStoppedError(ForgeError):
    """The session's actor stopped (engine closed, or an internal failure) before the session ended.

    Its log is intact: ``Forge.resume(session_id)`` continues it.
    """


class ConfigError(ForgeError, ValueError):
    """A setting or participant definition is wrong; the message names it."""


class UntrustedSpecError(ConfigError):
    """A participant spec from an untrusted caller (HTTP, WebSocket) names something the operator
    did not configure, or sets an option only the operator may set. The server answers 422.

    ``option`` is the refused option's name (None when the spec as a whole is refused); the
    message never repeats an option's value.
    """

    def __init__(self, message: str, *, spec: str = "", option: str | None = None) -> None:
        self.spec = spec
        self.option = option
        super().__init__(message)


class ParticipantKeyMissingError(MissingApiKeyError):
    """A participant's provider cannot be rebuilt here because its key is not available: the
    environment variable is unset and no key was given for it in this process (a key given
    inline in a spec is kept in memory only, so it does not outlive the engine that got it)."""

    def __init__(self, participant: str, spec: str, provider: str, env_var: str) -> None:
        self.participant = participant
        self.env_var = env_var
        LlmError.__init__(
            self,
            f"participant {participant} ({spec}) has no API key in this process: set {env_var} to resume it. "
            "A key given in a spec (api_key=...) is never recorded, so it lasts only as long as the engine "
            "that was given it.",
            provider=provider,
        )


class SessionBusyError(ForgeError):
    """Another engine (another process, or another Forge in this one) drives the session now.

    Nothing was changed. ``owner`` is ``host:pid:token`` of that engine; its lease runs out
    ``expires_in`` seconds from now unless it is renewed (it is, while that engine runs).
    """

    def __init__(self, session_id: str, owner: str, expires_in: float) -> None:
        self.session_id = session_id
        self.owner = owner
        self.expires_in = expires_in
        super().__init__(
            f"session {session_id} is being driven by another engine ({owner}): wait for it to finish, or stop "
            f"that process; if it has died, resume works once its lease expires in {max(expires_in, 0.0):.0f} s"
        )
