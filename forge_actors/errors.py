"""Errors of the engine: each says what went wrong and what to do about it.

Provider errors live in ``forge_actors.providers.errors``; log errors in ``eventstore``.
"""

from __future__ import annotations

# The log's own errors reach engine callers too; surfaces import them from here.
from eventstore.errors import ConcurrencyError, CorruptEventError, NotAnEventLogError

__all__ = [
    "ConcurrencyError", "ConfigError", "CorruptEventError", "ForgeError", "InvalidCommandError",
    "NotAnEventLogError", "SessionBusyError", "SessionNotFoundError", "SessionStoppedError",
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
