"""The council behind an OpenAI-compatible endpoint: ``/v1/models`` and ``/v1/chat/completions``.

Any program that speaks the Chat Completions API (the official SDKs, chat front ends) can ask the
council by naming the model ``forge`` (the council ``forge`` if configured, else the server's default
participants) or ``forge/NAME`` (``[forge.councils.NAME]``). A request is one whole deliberation:

- the goal is the last user message; earlier messages become a "Conversation so far" preamble of
  the goal, and system messages become the session's constraints;
- the answer is the final synthesis, ``usage`` sums every participant's tokens, and the session id
  is in the ``id`` (``chatcmpl-forge-<session_id>``) and the ``x-forge-session`` header, so
  ``forge show`` / ``forge replay`` read what a client ran;
- with ``stream: true``, the debate streams as ``delta.reasoning_content`` (round headers, who
  finished, critique scores, votes) and the synthesis as ``delta.content``.

The council's participants are the operator's (used as written, as ``forge mcp`` uses a council);
the caller chooses only the text, held to the caps every untrusted caller has (``engine.trust``).
OpenAI sampling fields (temperature, max_tokens...) are accepted and ignored: the council's
settings decide. Errors use OpenAI's shape, ``{"error": {message, type,
param, code}}``, so SDKs raise their usual exceptions. If a streaming client hangs up, the session
is interrupted (``forge resume`` continues it), as Ctrl-C does in ``forge run``.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from forge_actors.core.events import (
    ContributionCompleted,
    CritiqueRecorded,
    RoundStarted,
    SessionEnded,
    VoteRecorded,
)
from forge_actors.engine import (
    TEXT_CAPS,
    ConfigError,
    EventStoreError,
    Forge,
    ForgeError,
    LogWriteError,
    SessionBusyError,
    SessionNotFoundError,
    SessionStartError,
    SessionState,
    log_outage,
)
from forge_actors.surfaces.council import DEFAULT_COUNCIL, plan_deliberation, progress_line
from forge_actors.surfaces.server.bodies import BodyTooLarge, TooDeep, decode, invalid_field, read_limited

__all__ = ["MODEL_PREFIX", "OpenAIError", "chat_goal", "openai_routes"]

logger = logging.getLogger(__name__)

ROOT = "/v1"
#: The model of the default council; ``forge/NAME`` names ``[forge.councils.NAME]``.
MODEL_PREFIX = DEFAULT_COUNCIL
#: Most messages taken from one request (a conversation, not a corpus).
MAX_MESSAGES = 200
#: A goal and a system message (a constraint) at most: the engine's caps for any untrusted caller.
MAX_GOAL_CHARS = TEXT_CAPS["goal"].chars
MAX_CONSTRAINT_CHARS = TEXT_CAPS["constraints"].chars
#: The synthesis is streamed in pieces of about this many characters (cut after whitespace).
PIECE_CHARS = 64
#: What the reasoning stream quotes of a contribution or a vote's reasons: its first line, this long at most.
EXCERPT_CHARS = 120
#: An SSE comment this often while the council works, so proxies keep the connection open.
KEEP_ALIVE_SECONDS = 15.0
#: How often a non-streamed request looks whether its client is still there (while the council works).
DISCONNECT_CHECK_SECONDS = 0.5
#: The reason recorded when a client hangs up before the end.
CLIENT_LEFT = "the OpenAI-compatible client went away before the deliberation ended"
#: Started once per process: ``created`` of every model (councils have no creation time of their own).
_STARTED = int(time.time())


class OpenAIError(Exception):
    """An error answered in OpenAI's shape with ``status``."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.retry_after = retry_after

    def response(self) -> Response:
        headers = {"retry-after": str(self.retry_after)} if self.retry_after is not None else None
        return _json({"error": {"message": self.message, "type": self.type, "param": self.param,
                                "code": self.code}}, self.status, headers)


# -- the request --------------------------------------------------------------------------------------


class ContentPart(msgspec.Struct, kw_only=True):
    """One part of a message's content: only text parts, ``{"type": "text", "text": "..."}``, are
    taken (checked by ``_check_parts``); the council reads no images, audio or files."""

    type: str
    text: str | None = None


class ChatMessage(msgspec.Struct, kw_only=True):
    role: str
    #: Text, or a list of text parts; None on some assistant messages.
    content: str | list[ContentPart] | None = None


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool = False


class ChatRequest(msgspec.Struct, kw_only=True):
    """The fields read from a Chat Completions request; the others (temperature...) are ignored."""

    model: str
    messages: list[ChatMessage]
    stream: bool = False
    stream_options: StreamOptions | None = None


def _text_of(message: ChatMessage) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    return "".join(part.text or "" for part in message.content)


def _check_parts(messages: list[ChatMessage]) -> None:
    """A 400 naming the first content part that is not a text part, ``{"type": "text", "text": "..."}``."""
    for i, message in enumerate(messages):
        for j, part in enumerate(message.content if isinstance(message.content, list) else ()):
            if part.type != "text" or part.text is None:
                shown = part.type[:40] if part.type != "text" else "text part without its text"
                raise OpenAIError(400, f"messages[{i}].content[{j}] is a {shown!r} part: the council reads only "
                                       'text parts, {"type": "text", "text": "..."}',
                                  param=f"messages[{i}].content[{j}]")


def chat_goal(messages: list[ChatMessage]) -> tuple[str, list[str]]:
    """(goal, constraints) of a conversation: the last user message, with the messages before it as a
    "Conversation so far" preamble (the oldest dropped first past MAX_GOAL_CHARS); system (and
    developer) messages as constraints. A 400 when there is no user message to answer."""
    constraints = [text for m in messages if m.role in ("system", "developer") and (text := _text_of(m).strip())]
    talk = [m for m in messages if m.role in ("user", "assistant")]
    if not talk or talk[-1].role != "user" or not _text_of(talk[-1]).strip():
        raise OpenAIError(400, "the last user/assistant message must be a user message with text: it is the goal "
                               "the council works on", param="messages")
    question = _text_of(talk[-1]).strip()
    if len(question) > MAX_GOAL_CHARS:
        raise OpenAIError(400, f"the last user message is over {MAX_GOAL_CHARS} characters; the council takes "
                               "prompts, not documents", param="messages")
    if any(len(c) > MAX_CONSTRAINT_CHARS for c in constraints):
        raise OpenAIError(400, f"a system message is over {MAX_CONSTRAINT_CHARS} characters (each is one of the "
                               "session's constraints)", param="messages")
    earlier = [f"{m.role}: {text}" for m in talk[:-1] if (text := _text_of(m).strip())]
    budget = MAX_GOAL_CHARS - len(question) - 200
    kept: list[str] = []
    for line in reversed(earlier):  # the latest messages matter most: keep them first
        if len(line) > budget:
            break
        kept.insert(0, line)
        budget -= len(line) + 2
    if not kept:
        return question, constraints
    left_out = "(earlier messages left out)\n\n" if len(kept) < len(earlier) else ""
    return ("Conversation so far:\n\n" + left_out + "\n\n".join(kept) + "\n\nThe question now:\n\n" + question,
            constraints)


async def _read_request(request: Request, limit: int) -> ChatRequest:
    try:
        data = await read_limited(request, limit)
    except BodyTooLarge as too_large:
        raise OpenAIError(413, str(too_large)) from None
    try:
        body = decode(data, ChatRequest)
    except msgspec.ValidationError as exc:
        message, param = invalid_field(exc)
        raise OpenAIError(400, f"the request body is invalid: {message}", param=param) from None
    except TooDeep as exc:
        raise OpenAIError(400, f"the request body is invalid: {exc}") from None
    except msgspec.DecodeError as exc:
        raise OpenAIError(400, f"the request body is not valid JSON: {exc}") from None
    if not body.messages or len(body.messages) > MAX_MESSAGES:
        raise OpenAIError(400, f"give 1 to {MAX_MESSAGES} messages", param="messages")
    _check_parts(body.messages)
    return body


def _council_of(forge: Forge, model: str) -> str | None:
    """The council a model names (None: the default one); 404 model_not_found for any other model."""
    if model == MODEL_PREFIX:
        return None
    name = model.removeprefix(MODEL_PREFIX + "/") if model.startswith(MODEL_PREFIX + "/") else None
    if name is None or name not in forge.config.councils:
        known = ", ".join(m["id"] for m in _models(forge))
        raise OpenAIError(404, f"the model {model[:80]!r} does not exist; the models are: {known}",
                          param="model", code="model_not_found")
    return name


def _models(forge: Forge) -> list[dict[str, Any]]:
    names = [MODEL_PREFIX] + [f"{MODEL_PREFIX}/{name}" for name in sorted(forge.config.councils)]
    return [{"id": name, "object": "model", "created": _STARTED, "owned_by": "forge"} for name in names]


# -- the answer ---------------------------------------------------------------------------------------


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json", headers=headers)


def _usage(forge: Forge, session_id: str) -> dict[str, int]:
    total = forge.usage(session_id).total
    return {"prompt_tokens": total.input_tokens, "completion_tokens": total.output_tokens,
            "total_tokens": total.input_tokens + total.output_tokens}


def answer_of(state: SessionState) -> str:
    """The assistant's message: the final synthesis, or what ended the session without one."""
    if state.synthesis is not None and state.synthesis.content.strip():
        return state.synthesis.content
    return f"The council wrote no synthesis: the session {state.status}" + (
        f" ({state.end_reason})." if state.end_reason else ".")


def pieces(text: str, size: int = PIECE_CHARS) -> list[str]:
    """``text`` in pieces of about ``size`` characters, cut after whitespace; they join to ``text``."""
    out: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        while end < len(text) and not text[end - 1].isspace() and end - start < 2 * size:
            end += 1
        out.append(text[start:end])
        start = end
    return out


def reasoning_line(event: Any) -> str | None:
    """One line of the debate for ``reasoning_content``; None for events not worth one (deltas...)."""
    if isinstance(event, RoundStarted):
        return f"\n### {progress_line(event)}\n"
    if isinstance(event, ContributionCompleted):
        tokens = event.usage.input_tokens + event.usage.output_tokens
        # A structured reply (critique, vote: JSON) is told by the lines of its critiques and votes instead.
        said = "" if event.content.lstrip().startswith(("{", "[", "```")) else _excerpt(event.content)
        return f"- {event.participant} finished (round {event.round}, {tokens} tokens)" + (
            f": {said}\n" if said else "\n")
    if isinstance(event, CritiqueRecorded):
        score = "no readable score" if event.score is None else f"{event.score}/100"
        return f"- {event.critic} scores {event.proposal_author}'s proposal: {score}\n"
    if isinstance(event, VoteRecorded):
        why = _excerpt("; ".join(event.reasons + tuple(f"concern: {c}" for c in event.concerns)))
        return f"- {event.voter} votes {event.vote}" + (f": {why}\n" if why else "\n")
    line = progress_line(event)
    return None if line is None else f"- {line}\n"


def _excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The first line of ``text`` with words in it (Markdown heading marks dropped), cut at ``limit``."""
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
    return ""


class _Chunks:
    """``chat.completion.chunk`` frames of one response."""

    def __init__(self, completion_id: str, model: str) -> None:
        self.id, self.model, self.created = completion_id, model, int(time.time())

    def frame(self, delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> str:
        chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], **extra}
        return f"data: {msgspec.json.encode(chunk).decode()}\n\n"

    def usage_frame(self, usage: dict[str, int]) -> str:
        chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                 "choices": [], "usage": usage}
        return f"data: {msgspec.json.encode(chunk).decode()}\n\n"


def _error_frame(error: OpenAIError) -> str:
    body = {"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}}
    return f"data: {msgspec.json.encode(body).decode()}\n\n"


_DONE = object()


def _watch(forge: Forge, session_id: str, put: Callable[[Any], bool]) -> None:
    """In a thread of its own: run the session to its end, handing its reasoning lines to ``put``,
    then ``_DONE`` (or the exception that stopped it). Stops watching (the session runs on, until
    the stream interrupts it) as soon as ``put`` says nobody listens any more."""
    try:
        for recorded in forge.deliberate(session_id):
            line = reasoning_line(recorded.event)
            if line is not None and not put(line):
                return
            if isinstance(recorded.event, SessionEnded):
                break
        put(_DONE)
    except Exception as exc:  # handed to the stream, which says it to the client and logs it
        put(exc)


def _sender(send: MemoryObjectSendStream[Any]) -> Callable[[Any], bool]:
    """A ``put`` for a thread outside the event loop: False once the stream's reader is gone."""
    token = anyio.lowlevel.current_token()

    def put(item: Any) -> bool:
        try:
            anyio.from_thread.run_sync(send.send_nowait, item, token=token)
            return True
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, RuntimeError):  # the reader (or loop) is gone
            return False

    return put


def _engine_failure(exc: BaseException) -> OpenAIError:
    """The engine's errors in OpenAI's shape; anything else is a 500 with an incident id (logged)."""
    if isinstance(exc, OpenAIError):
        return exc
    if isinstance(exc, SessionBusyError):
        return OpenAIError(409, str(exc), "conflict", code="session_busy")
    if isinstance(exc, SessionNotFoundError):
        return OpenAIError(404, str(exc), code="session_not_found")
    if isinstance(exc, ConfigError):
        return OpenAIError(422, str(exc), code="config_error")
    outage = log_outage(exc)  # the log out of service: said without where it is (the operator's log has that)
    if outage is not None:
        logger.warning("the OpenAI-compatible endpoint failed: %s", exc)
        if outage.retry_after is None:
            return OpenAIError(500, outage.message, "server_error", code="log_damaged")
        return OpenAIError(503, outage.message, "server_error", code="log_unavailable", retry_after=outage.retry_after)
    if isinstance(exc, LogWriteError):
        return OpenAIError(503, str(exc), "server_error", code="log_write_failed")
    if isinstance(exc, SessionStartError):  # recorded, not started: the cause's status, and the id
        cause = _engine_failure(exc.cause)
        return OpenAIError(cause.status, f"session {exc.session_id} was created, but could not start: "
                                         f"{cause.message}", cause.type, code=cause.code, retry_after=cause.retry_after)
    incident = secrets.token_hex(6)
    if isinstance(exc, (ForgeError, EventStoreError)):
        logger.error("incident %s: the OpenAI-compatible endpoint failed: %s", incident, exc)
    else:
        logger.error("incident %s: the OpenAI-compatible endpoint failed", incident, exc_info=exc)
    return OpenAIError(500, f"internal error, incident {incident}: the server's log holds what went wrong; "
                            "report it with this id", "server_error", code="internal_error")


def openai_routes(forge: Forge, *, max_body: int) -> list[Route]:
    """The ``/v1`` routes over ``forge`` (mounted by ``create_app``; the token gate guards them)."""

    async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))

    async def models(request: Request) -> Response:
        return _json({"object": "list", "data": _models(forge)})

    async def chat_completions(request: Request) -> Response:
        try:
            body = await _read_request(request, max_body)
            council = _council_of(forge, body.model)
            goal, constraints = chat_goal(body.messages)
            plan = await in_thread(plan_deliberation, forge, council=council)
            session_id = await in_thread(plan.create, forge, goal, constraints)
        except Exception as exc:
            return _engine_failure(exc).response()
        logger.info("chat completion %s started (model %s, %s)", session_id, body.model, plan.source)
        completion_id = f"chatcmpl-forge-{session_id}"
        headers = {"x-forge-session": session_id}
        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(stream(session_id, _Chunks(completion_id, body.model), include_usage),
                                     media_type="text/event-stream",
                                     headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"})
        try:
            if not await run_to_end(session_id, request):
                await interrupt(session_id)  # the client hung up: spend nothing more for nobody
                return Response(status_code=499)  # nobody reads it (nginx's "client closed request")
            state = await in_thread(forge.state, session_id)
            usage = await in_thread(_usage, forge, session_id)
        except Exception as exc:
            return _engine_failure(exc).response()
        return _json({"id": completion_id, "object": "chat.completion", "created": int(time.time()),
                      "model": body.model, "usage": usage,
                      "choices": [{"index": 0, "finish_reason": "stop",
                                   "message": {"role": "assistant", "content": answer_of(state)}}]},
                     headers=headers)

    def watch(session_id: str) -> MemoryObjectReceiveStream[Any]:
        """Run the session, its reasoning lines then _DONE (or an exception) arriving on the stream returned.

        The watcher is a thread of its own, not the worker pool's: it waits as long as the council
        works, and must not hold one of the pool's threads (which every route's engine calls share)."""
        send, receive = anyio.create_memory_object_stream[Any](math.inf)
        threading.Thread(target=_watch, args=(forge, session_id, _sender(send)), name=f"openai-{session_id}",
                         daemon=True).start()
        return receive

    async def run_to_end(session_id: str, request: Request) -> bool:
        """Until the session ends (True), or the client hangs up (False), whichever comes first."""
        with watch(session_id) as receive:
            while True:
                item = None
                with anyio.move_on_after(DISCONNECT_CHECK_SECONDS):
                    item = await receive.receive()
                if item is None:
                    if await request.is_disconnected():
                        return False
                elif item is _DONE:
                    return True
                elif isinstance(item, BaseException):
                    raise item

    async def interrupt(session_id: str) -> None:
        with anyio.CancelScope(shield=True):
            logger.info("session %s: %s; interrupting it (forge resume %s continues it)",
                        session_id, CLIENT_LEFT, session_id)
            try:
                await in_thread(forge.interrupt, session_id, CLIENT_LEFT)
            except ForgeError as exc:  # it ended meanwhile, or another engine holds it
                logger.info("session %s: not interrupted: %s", session_id, exc)

    async def stream(session_id: str, chunks: _Chunks, include_usage: bool) -> AsyncIterator[str]:
        yield chunks.frame({"role": "assistant", "content": ""})
        receive = watch(session_id)
        ended = False
        try:
            while True:
                item = None
                with anyio.move_on_after(KEEP_ALIVE_SECONDS):
                    item = await receive.receive()
                if item is None:
                    yield ": keep-alive\n\n"
                elif item is _DONE:
                    break
                elif isinstance(item, BaseException):
                    ended = True
                    yield _error_frame(_engine_failure(item)) + "data: [DONE]\n\n"
                    return
                else:
                    yield chunks.frame({"reasoning_content": item})
            ended = True
            state = await in_thread(forge.state, session_id)
            for piece in pieces(answer_of(state)):
                yield chunks.frame({"content": piece})
            yield chunks.frame({}, "stop")
            if include_usage:
                yield chunks.usage_frame(await in_thread(_usage, forge, session_id))
            yield "data: [DONE]\n\n"
        except Exception as exc:  # the log could not be read at the end: the status is sent, so say it here
            yield _error_frame(_engine_failure(exc)) + "data: [DONE]\n\n"
        finally:
            receive.close()
            if not ended:  # the client hung up mid-deliberation: spend nothing more for nobody
                await interrupt(session_id)

    return [
        Route(f"{ROOT}/models", models, methods=["GET"]),
        Route(f"{ROOT}/chat/completions", chat_completions, methods=["POST"]),
    ]
