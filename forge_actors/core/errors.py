"""The domain's errors: each says what went wrong and what to do about it.

The actors raise these; the engine adds the ones of its edge (``forge_actors.engine.errors``:
a participant whose provider cannot be built, the log's errors) and surfaces import them all
from ``forge_actors.engine``.
"""

from __future__ import annotations


class ForgeError(Exception):
    """Base of the engine's errors."""


class SessionNotFoundError(ForgeError, KeyError):
    def __init__(self, session_id: str, message: str | None = None) -> None:
        self.session_id = session_id
        # No hint of how to list them: each surface adds its own (a CLI command, an MCP tool, an HTTP route).
        self.message = message or f"no session {session_id!r} in this log"
        super().__init__(session_id)

    def __str__(self) -> str:
        return self.message


class InvalidCommandError(ForgeError):
    """A command that does not fit the session's status (e.g. a vote before any synthesis)."""


class SessionStoppedError(ForgeError):
    """The session's actor stopped (engine closed, or an internal failure) before the session ended.

    Its log is intact: ``Forge.resume(session_id)`` continues it.
    """


class SessionStartError(ForgeError):
    """A session was recorded (``session_id``) but its deliberation could not start; ``__cause__``
    (also ``cause``) says why. ``Forge.deliberate`` or ``resume`` starts it once that is mended."""

    def __init__(self, session_id: str, cause: BaseException) -> None:
        self.session_id = session_id
        self.cause = cause
        super().__init__(f"session {session_id} was created, but its deliberation could not start: {cause}; "
                         f"start it again with `forge resume {session_id}` (POST .../sessions/{session_id}/deliberate)")


class ConfigError(ForgeError, ValueError):
    """A setting or participant definition is wrong; the message names it."""


class UnknownPriceError(ConfigError):
    """A cost budget (``max_cost_usd``) was asked for a session with an AI participant whose price the
    engine does not know: its spending could not be judged. ``models``: the models without a price."""

    def __init__(self, models: list[str], source: str = "forge.toml") -> None:
        self.models = models
        names = ", ".join(models)
        super().__init__(
            f"max_cost_usd needs every AI participant's price, and the price of {names} is unknown: add it to "
            f"{source} ([forge.pricing.\"MODEL\"] input_per_mtok = ..., output_per_mtok = ..., US dollars per "
            "million tokens), or bound the session by tokens instead (max_session_tokens)")


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


class HumanInputQueuedError(SessionBusyError):
    """A human's draft or vote for a session another engine drives was posted to it, but that engine
    did not answer in time. The input is queued: it counts when that engine, or the next one to
    drive the session, takes it."""

    def __init__(self, session_id: str, owner: str, expires_in: float, kind: str, waited: float) -> None:
        self.session_id = session_id
        self.owner = owner
        self.expires_in = expires_in
        ForgeError.__init__(
            self,
            f"session {session_id} is being driven by another engine ({owner}), which did not answer within {waited:g} s; "
            f"the {kind} is queued and counts when that engine (or the next one to drive the session) takes it",
        )
