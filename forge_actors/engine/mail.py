"""Human input for a session another engine drives: a letter to the session's mailbox.

Only the engine holding a session's lease may drive it, so a human's draft or vote given to
another engine (another terminal's ``forge draft``, a second server) cannot be applied there.
It is posted instead, as a ``HumanRequest``, to the mailbox ``session:ID`` in the log's file;
the driving engine looks at the mailboxes of the sessions it drives every ``POLL_SECONDS``,
applies each request as if it had been given to it (the same checks, the same events), and
answers it; the poster waits for that answer and returns or raises as the driver did.
"""

from __future__ import annotations

import time
from typing import Literal

import msgspec

from eventstore import Mailbox
from forge_actors.actors.messages import AddHumanDraft, CastVote
from forge_actors.core.errors import HumanInputQueuedError, InvalidCommandError, SessionBusyError

#: How often a driving engine looks for letters to the sessions it drives.
POLL_SECONDS = 0.2
#: How long a poster waits for the driving engine's answer.
ANSWER_TIMEOUT = 10.0


class HumanRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    kind: Literal["draft", "vote"]
    name: str  # the author of a draft, the voter of a vote
    content: str = ""
    vote: str = ""
    reasons: tuple[str, ...] = ()
    concerns: tuple[str, ...] = ()

    def command(self) -> AddHumanDraft | CastVote:
        """The session actor's command this input is, wherever it is applied."""
        if self.kind == "draft":
            return AddHumanDraft(self.name, self.content)
        return CastVote(self.name, self.vote.upper(), self.reasons, self.concerns)  # type: ignore[arg-type]


class HumanAnswer(msgspec.Struct, frozen=True):
    ok: bool
    round: int = 0
    error: str = ""


def box_of(session_id: str) -> str:
    return f"session:{session_id}"


def post_and_wait(mailbox: Mailbox, session_id: str, request: HumanRequest, busy: SessionBusyError,
                  timeout: float | None = None, poll: float = 0.05) -> int:
    """Post ``request`` for the session's driver and wait for its answer: the round it counts in,
    or InvalidCommandError with the driver's reason. ``busy`` is raised (saying the request is queued)
    when no answer comes in time: a driver that stopped leaves it for the next one."""
    timeout = ANSWER_TIMEOUT if timeout is None else timeout
    letter_id = mailbox.post(box_of(session_id), msgspec.json.encode(request).decode())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        letter = mailbox.letter(letter_id)
        if letter is not None and letter.answer is not None:
            answer = msgspec.json.decode(letter.answer, type=HumanAnswer)
            if not answer.ok:
                raise InvalidCommandError(answer.error)
            return answer.round
        time.sleep(poll)
    raise HumanInputQueuedError(session_id, busy.owner, busy.expires_in, request.kind, timeout)
