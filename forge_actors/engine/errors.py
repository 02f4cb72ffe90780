"""The engine's edge: every error a caller of ``Forge`` may catch, in one place.

- the domain's errors (``forge_actors.core.errors``), raised by the engine and its actors;
- the log's errors (``eventstore``): a full disk, a corrupt file, a file that is not a log;
- ``ParticipantSetupError``: a participant whose provider cannot be built (a bad spec, an
  unknown provider, a missing key). The providers' own errors never cross this edge: the
  engine turns each into one of these (``provider_setup_errors``), keeping the original as
  ``__cause__`` for whoever debugs it, so that surfaces know nothing of providers.

``log_outage`` says what a client outside (HTTP, WebSocket, MCP) is told of the log itself being
out of service: its database unreachable (try again after ``RETRY_AFTER_SECONDS``), or its file
damaged (retrying will not help). The full error, for the operator, names the log and what its
database said; a client is told neither.

Surfaces import these from ``forge_actors.engine``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final, NamedTuple

from eventstore.errors import (
    BackendMissingError,
    ConcurrencyError,
    CorruptEventError,
    CorruptLogError,
    DiskFullError,
    EventStoreError,
    LogCopyError,
    LogReadError,
    LogUnavailableError,
    LogUnavailableWriteError,
    LogWriteError,
    NoEventLogError,
    NotAnEventLogError,
)
from forge_actors.core.errors import (
    ConfigError,
    ForgeError,
    HumanInputQueuedError,
    InvalidCommandError,
    SessionBusyError,
    SessionNotFoundError,
    SessionStartError,
    SessionStoppedError,
    UnknownPriceError,
    UntrustedSpecError,
)
from forge_actors.providers.errors import MissingApiKeyError, ProviderConfigError

__all__ = [
    "BackendMissingError", "ConcurrencyError", "ConfigError", "CorruptEventError", "CorruptLogError", "DiskFullError", "EventStoreError",
    "ForgeError", "HumanInputQueuedError", "InvalidCommandError", "LogCopyError", "LogReadError",
    "LogUnavailableError", "LogUnavailableWriteError", "LogWriteError", "NoEventLogError", "NotAnEventLogError",
    "LogOutage", "ParticipantKeyMissingError", "ParticipantSetupError", "RETRY_AFTER_SECONDS", "SessionBusyError",
    "SessionNotFoundError", "SessionStartError", "SessionStoppedError", "UnknownPriceError", "UntrustedSpecError", "log_outage",
    "provider_setup_errors",
]

#: Seconds a client is told to wait before trying again while the log's database cannot be reached: a
#: server restarting is back within a few; one that is down for longer answers the next try at once.
RETRY_AFTER_SECONDS: Final = 5


class LogOutage(NamedTuple):
    """What a client outside is told of the log being out of service (see ``log_outage``)."""

    message: str
    #: Seconds to wait before trying again; None when trying again cannot help (a damaged log).
    retry_after: int | None


def log_outage(exc: BaseException) -> LogOutage | None:
    """The log being out of service, as a client outside may be told it (no URL, no path, nothing the
    database said); None for any other error. A session created but not started because of it says so."""
    if isinstance(exc, SessionStartError):
        outage = log_outage(exc.cause)
        if outage is None:
            return None
        return LogOutage(f"session {exc.session_id} was created, but could not start: {outage.message}",
                         outage.retry_after)
    if isinstance(exc, (LogUnavailableError, LogUnavailableWriteError)):
        return LogOutage(f"the event log is unavailable: its database cannot be reached right now; "
                         f"try again in {RETRY_AFTER_SECONDS} s", RETRY_AFTER_SECONDS)
    if isinstance(exc, CorruptLogError):
        return LogOutage("the event log is damaged: nothing more is written to it until the operator recovers "
                         "it (the server's log says how)", None)
    return None


class ParticipantSetupError(ConfigError):
    """A participant's provider cannot be built: the spec is malformed, names an unknown provider,
    or sets an option the provider refuses. Nothing was recorded; the message says what to fix."""


class ParticipantKeyMissingError(ParticipantSetupError):
    """A participant's provider needs an API key this process does not have: the environment
    variable is unset and no key was given for it here (a key given inline in a spec is kept in
    memory only, so it does not outlive the engine that got it). ``env_var`` names the variable."""

    def __init__(self, message: str, *, env_var: str, participant: str | None = None) -> None:
        self.env_var = env_var
        self.participant = participant
        super().__init__(message)

    @classmethod
    def for_participant(cls, participant: str, spec: str, env_var: str) -> ParticipantKeyMissingError:
        return cls(
            f"participant {participant} ({spec}) has no API key in this process: set {env_var} to resume it. "
            "A key given in a spec (api_key=...) is never recorded, so it lasts only as long as the engine "
            "that was given it.",
            env_var=env_var, participant=participant,
        )


@contextmanager
def provider_setup_errors() -> Iterator[None]:
    """Around code that parses specs or builds providers: their errors, as the engine's."""
    try:
        yield
    except MissingApiKeyError as missing:
        raise ParticipantKeyMissingError(str(missing), env_var=missing.env_var) from missing
    except ProviderConfigError as wrong:
        raise ParticipantSetupError(str(wrong)) from wrong
