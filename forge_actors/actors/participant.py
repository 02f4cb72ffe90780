"""ParticipantActor: one provider, one contribution at a time, in its own thread.

It streams the request of a ``Contribute`` message and tells the sender every delta,
then ``ContributionSucceeded`` or ``ContributionErrored``. It knows nothing of rounds
or sessions: the session actor decides what a contribution means.

Every failure of the provider is caught and told as ``ContributionErrored``: an
exception escaping a told message would kill the actor without a word (pykka).

A stream that fails before its first delta with an error a plain request may avoid (a
malformed or cut stream, a server that refuses ``stream: true``) is answered by one
non-streaming call instead; the whole answer is then its one delta, and
``ContributionSucceeded.fallback`` says why, so the log records it.
Cancellation goes through the message's CancelToken, which calls the provider's
``abort()`` from the cancelling thread, so even a read blocked on a stalled server
ends at once.

Tools: when the contribution offers them (``Contribute.tool_mode``), each reply of the model
is a *turn*. A turn that asks for tools (natively, or as ``TOOL_CALL:`` lines) has them run by
the participant's tool runner, tells the session ``ToolCallStarted``/``ToolCallFinished`` for
each (the session records them), feeds the results back and asks again; the first turn that
asks for none is the answer. Deltas of every turn stream as they come; the answer's content is
its last turn's text. The runner's budget (calls, seconds) bounds the loop: once it is spent,
one last turn is asked for without tools, and whatever it says is the answer, so a model that
keeps calling cannot run up calls. A re-run's runner answers from the recording and never runs
a tool.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import msgspec
import pykka

from forge_actors.actors.messages import (
    REPLY_LIMIT_FINISH,
    CancelToken,
    Contribute,
    ContributionErrored,
    ContributionSucceeded,
    DeltaReceived,
    Embed,
    Embedded,
    EmbeddingFailed,
    ToolCallFinished,
    ToolCallStarted,
    UseProvider,
)
from forge_actors.providers import toolcalls
from forge_actors.providers.base import TOOL_CALLS_FINISH, LlmRequest, LlmResponse, Message, Provider, ToolCall, Usage
from forge_actors.providers.embeddings import embedder_of
from forge_actors.providers.errors import EmptyResponseError, LlmError, NotStreamedError
from forge_actors.providers.limits import limit_shown
from forge_actors.tools import ToolResult

logger = logging.getLogger(__name__)

#: What the last turn is told when the tool budget is spent (text mode; natively the tools just go).
LAST_TURN_NOTE = ("You cannot call tools any more in this contribution: give your final answer now, "
                  "from what you have found.")


class ToolRunner(Protocol):
    """Runs a participant's tool calls: a live ``tools.Toolbox``, or a re-run's recorded results."""

    def budget(self) -> Any: ...

    def call(self, name: str, arguments: Mapping[str, Any], budget: Any = None) -> ToolResult: ...

    def use_provider(self, provider: Provider) -> None:
        """The participant switched providers (a runner that asks the participant's model uses the new one)."""
        ...

    def take_usage(self) -> Usage:
        """Tokens the tools spent on the participant's model since the last call (summaries)."""
        ...


class _Turn(msgspec.Struct):
    """One reply of the model within a contribution."""

    text: str
    calls: list[ToolCall]
    finish_reason: str | None
    usage: Usage
    #: Stopped at the contribution's character limit: the answer as it stands, its calls not run.
    cut: bool = False


class ParticipantActor(pykka.ThreadingActor):
    # The engine stops every participant it starts; a daemon thread is only the safety
    # net for a provider that ignores abort(), so it cannot keep the process alive.
    use_daemon_thread = True

    def __init__(self, name: str, provider: Provider, clock_ns: Callable[[], int] = time.monotonic_ns,
                 tools: ToolRunner | None = None) -> None:
        super().__init__()
        self.name = name
        self.provider = provider
        self.tools = tools
        self._clock_ns = clock_ns

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Contribute):
            self._contribute(message)
        elif isinstance(message, Embed):
            self._embed(message)
        elif isinstance(message, UseProvider):  # queued behind any contribution still running
            self._close_provider()
            self.provider = message.provider
            if self.tools is not None:
                self.tools.use_provider(message.provider)
        return None

    def on_stop(self) -> None:
        self._close_provider()

    def on_failure(self, *exc_info: object) -> None:
        self._close_provider()

    def _close_provider(self) -> None:
        try:
            self.provider.close()
        except Exception:  # closing is best effort; the actor stops either way
            logger.warning("%s: closing its provider failed", self.name, exc_info=True)

    def _contribute(self, message: Contribute) -> None:
        try:
            outcome = self._stream(message)
        except Exception as exc:  # not an LlmError: a bug in a provider; still a failed attempt, not a dead actor
            logger.exception("%s: the provider raised an unexpected error", self.name)
            outcome = ContributionErrored(message.contribution_id, "internal", f"{type(exc).__name__}: {exc}", False)
        try:
            message.reply_to.tell(outcome)
        except pykka.ActorDeadError:  # the session is gone; nobody is waiting for this
            pass

    def _embed(self, message: Embed) -> None:
        """Embed the texts with this participant's provider; tell the session the vectors or why not."""
        embedder = embedder_of(self.provider)
        outcome: Embedded | EmbeddingFailed
        if embedder is None:
            outcome = EmbeddingFailed(message.request_id, "no_embeddings",
                                      f"{self.name}'s provider offers no embeddings")
        elif message.cancel.cancelled:
            outcome = EmbeddingFailed(message.request_id, "cancelled", "the session stopped before the call")
        else:
            forget = message.cancel.on_cancel(self.provider.abort)
            try:
                embeddings = embedder.embed(message.texts)
                outcome = Embedded(message.request_id, embeddings.vectors, embeddings.model)
            except LlmError as error:
                logger.warning("%s: embedding failed (%s): %s", self.name, error.kind, error)
                outcome = EmbeddingFailed(message.request_id, error.kind, str(error))
            except Exception as exc:  # a bug in a provider: the session measures another way
                logger.exception("%s: the provider raised an unexpected error while embedding", self.name)
                outcome = EmbeddingFailed(message.request_id, "internal", f"{type(exc).__name__}: {exc}")
            finally:
                forget()
        try:
            message.reply_to.tell(outcome)
        except pykka.ActorDeadError:  # the session is gone; nobody is waiting for this
            pass

    def _stream(self, message: Contribute) -> ContributionSucceeded | ContributionErrored:
        cid, token = message.contribution_id, message.cancel
        if token.cancelled:
            return _cancelled(cid)
        started = self._clock_ns()
        mode = message.tool_mode if self.tools is not None else "off"
        request = message.request if mode != "off" else msgspec.structs.replace(message.request, tools=())
        budget = self.tools.budget() if self.tools is not None and mode != "off" else None
        asking = _Asking(streams=message.stream)
        usage = Usage()
        seen_ids: set[str] = set()
        last_turn = False
        turn_number = 0
        streamed = 0  # characters of every turn so far, against message.max_chars
        while True:
            turn_number += 1
            room = None if message.max_chars is None else message.max_chars - streamed
            turn = self._turn(message, request, asking, first=turn_number == 1, room=room)
            if not isinstance(turn, _Turn):
                return turn
            streamed += len(turn.text)
            usage = _plus(usage, turn.usage)
            if turn.cut:
                logger.warning("%s: %s stopped at %d characters (max_reply_chars)", self.name, cid, streamed)
                return self._succeeded(cid, turn.text, REPLY_LIMIT_FINISH, usage, started, asking)
            calls = turn.calls if mode == "native" else toolcalls.parse_tool_calls(turn.text) if mode == "text" else []
            if not calls or last_turn or budget is None:
                if not turn.text.strip():  # no answer, whichever way it came: never an empty success
                    error = EmptyResponseError("the model answered with no text" + (
                        " (only tool calls, past the tool budget)" if calls else ""), provider=self.name)
                    return ContributionErrored(cid, error.kind, str(error), error.retryable)
                finish = turn.finish_reason if turn.finish_reason != TOOL_CALLS_FINISH or not last_turn else "stop"
                return self._succeeded(cid, turn.text, finish, usage, started, asking)
            calls = [_unique(call, seen_ids, turn_number) for call in calls]
            results: list[tuple[ToolCall, ToolResult]] = []
            for call in calls:
                if token.cancelled:
                    return _cancelled(cid)
                try:
                    results.append((call, self._run_tool(message, turn_number, call, budget)))
                except LlmError as error:  # a re-run asked for a call the recording does not hold
                    return ContributionErrored(cid, error.kind, str(error), error.retryable)
                usage = _plus(usage, self._tools_usage())
            last_turn = budget.refusal() is not None
            request = _next_request(request, mode, turn.text, results, last_turn)

    def _tools_usage(self) -> Usage:
        """Tokens the tools spent on this participant's model (summaries): counted in its contribution."""
        return self.tools.take_usage() if self.tools is not None else Usage()

    def _run_tool(self, message: Contribute, turn: int, call: ToolCall, budget: Any) -> ToolResult:
        """Run one call (or answer its malformed arguments), telling the session before and after."""
        assert self.tools is not None
        cid = message.contribution_id
        message.reply_to.tell(ToolCallStarted(cid, turn, call))
        if call.error is not None:
            result = ToolResult("", error=f"the call was not run: {call.error}")
        else:
            result = self.tools.call(call.name, call.arguments, budget)
        message.reply_to.tell(ToolCallFinished(cid, call.id, call.name, result))
        return result

    def _turn(self, message: Contribute, request: LlmRequest, asking: _Asking, first: bool,
              room: int | None) -> _Turn | ContributionErrored:
        """One reply: its text (each delta told as it comes), calls, finish and usage; streamed, or
        asked in one call when the provider does not stream.

        ``room``: the characters it may still stream (None: no limit). The delta that passes it is
        cut to fit and the stream is closed there: a server that streams without end stops here."""
        cid, token, reply_to = message.contribution_id, message.cancel, message.reply_to
        parts: list[str] = []
        length = 0
        calls: list[ToolCall] = []
        finish_reason: str | None = None
        usage = Usage()
        abort = getattr(self.provider, "abort", None)
        unregister = token.on_cancel(abort) if callable(abort) else (lambda: None)
        chunks = None
        streaming = asking.streams
        try:
            if not streaming:
                return self._whole_turn(message, self.provider.complete(request), room)
            chunks = self.provider.stream(request)
            for chunk in chunks:
                if token.cancelled:
                    return _cancelled(cid)
                if chunk.delta:
                    delta = chunk.delta if room is None else chunk.delta[:room - length]
                    if delta:
                        parts.append(delta)
                        length += len(delta)
                        reply_to.tell(DeltaReceived(cid, delta))
                    if len(delta) < len(chunk.delta):
                        return _Turn("".join(parts), [], REPLY_LIMIT_FINISH, usage, cut=True)
                if chunk.tool_call is not None:
                    calls.append(chunk.tool_call)
                if chunk.is_complete:
                    finish_reason = chunk.finish_reason
                    usage = chunk.usage or usage
        except LlmError as error:
            if token.cancelled:  # the abort is what broke the stream
                return _cancelled(cid)
            whole = isinstance(error, NotStreamedError) and error.response is not None
            if streaming and not parts and not calls and error.stream_fallback and (first or whole):
                return self._without_streaming(message, request, error, asking, room)
            limit = limit_shown(error, request)
            return ContributionErrored(cid, error.kind, str(error), error.retryable, error.retry_after,
                                       limit=limit if limit != "streaming" else None)
        finally:
            unregister()
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if token.cancelled:
            return _cancelled(cid)
        return _Turn("".join(parts), calls, finish_reason, usage)

    def _without_streaming(self, message: Contribute, request: LlmRequest, stream_error: LlmError, asking: _Asking,
                           room: int | None) -> _Turn | ContributionErrored:
        """The stream failed before its first delta in a way a plain request may avoid: the answer of one
        non-streaming call instead — or, when the server answered the stream with a whole body, that
        body's answer, so that nothing is asked twice. A server shown not to stream is asked without
        streaming for the rest of the contribution (and, once the session records it, from then on)."""
        cid, token = message.contribution_id, message.cancel
        whole = stream_error.response if isinstance(stream_error, NotStreamedError) else None
        if whole is not None:
            asking.fallback = f"{stream_error.message}; its answer was read from that body (asked once)"
            logger.info("%s: %s", self.name, asking.fallback)
            self._stops_streaming(asking, stream_error)
            asking.answered_from_body = True
            return self._whole_turn(message, whole, room)
        # Said from the error's kind and message (not its provider's name), as a re-run says it again.
        asking.fallback = (f"the stream failed before its first delta ({stream_error.kind}: {stream_error.message}); "
                           "one non-streaming call answered")
        logger.info("%s: %s", self.name, asking.fallback)
        try:
            response = self.provider.complete(request)
        except LlmError as error:
            if token.cancelled:
                return _cancelled(cid)
            return ContributionErrored(cid, error.kind, f"{error} (a non-streaming call, after the stream failed: "
                                       f"{stream_error})", error.retryable, error.retry_after)
        if token.cancelled:
            return _cancelled(cid)
        self._stops_streaming(asking, stream_error)
        return self._whole_turn(message, response, room)

    def _stops_streaming(self, asking: _Asking, stream_error: LlmError) -> None:
        """The stream failed before its first delta and a plain request answered: this server's streaming
        does not work (it answers with a whole body, refuses it, breaks or empties its streams). It is
        asked without streaming for the rest of the contribution, and, once the session records it,
        from then on: one paid call per reply, not two. (A stream that failed by chance costs the
        participant its live text for the session, never an answer.)"""
        asking.streams = False
        asking.limit, asking.evidence, asking.evidence_kind = "streaming", stream_error.message, stream_error.kind

    def _whole_turn(self, message: Contribute, response: LlmResponse, room: int | None) -> _Turn:
        """A reply that came whole (not streamed) as a turn: its text told as one delta (cut to ``room``),
        its tool calls exactly as a stream would give them."""
        content, finish, cut = response.content, response.finish_reason, False
        if room is not None and len(content) > room:
            content, finish, cut = content[:room], REPLY_LIMIT_FINISH, True
        if content:
            message.reply_to.tell(DeltaReceived(message.contribution_id, content))
        return _Turn(content, [] if cut else list(response.tool_calls), finish, response.usage, cut=cut)

    def _succeeded(self, cid: str, content: str, finish_reason: str | None, usage: Usage, started: int,
                   asking: _Asking) -> ContributionSucceeded:
        """The answer, timed from ``started`` and naming the pool member that served it, if any."""
        latency_ms = (self._clock_ns() - started) / 1e6
        return ContributionSucceeded(cid, content, finish_reason, usage, latency_ms,
                                     getattr(self.provider, "served_by", "") or "", asking.fallback,
                                     asking.limit, asking.evidence, asking.evidence_kind, asking.answered_from_body)


class _Asking(msgspec.Struct):
    """How one contribution asks its provider, and what it learned doing so (for the session to record)."""

    streams: bool = True
    fallback: str = ""
    limit: str | None = None
    evidence: str = ""
    evidence_kind: str = ""
    answered_from_body: bool = False


def _plus(a: Usage, b: Usage) -> Usage:
    return Usage(a.input_tokens + b.input_tokens, a.output_tokens + b.output_tokens)


def _unique(call: ToolCall, seen: set[str], turn: int) -> ToolCall:
    """``call`` with an id no earlier call of the contribution has (some APIs, and the text protocol,
    number calls afresh each turn); the same id goes back to the model with its result."""
    call_id = call.id or "call"
    if call_id in seen:
        call_id = f"{call_id}_t{turn}"
        while call_id in seen:
            call_id += "_"
    seen.add(call_id)
    return call if call_id == call.id else msgspec.structs.replace(call, id=call_id)


def _next_request(request: LlmRequest, mode: str, text: str, results: list[tuple[ToolCall, ToolResult]],
                  last_turn: bool) -> LlmRequest:
    """The conversation so far plus this turn and its results. Natively the tools stay defined (an
    API may refuse a conversation holding tool calls without them); on the last turn the request says
    that none may be called (``tool_choice: none``), the results of calls past the budget say it is
    spent, and a call in the last turn is not run anyway."""
    if mode == "native":
        added = [Message("assistant", text, tool_calls=tuple(call for call, _ in results))]
        added += [Message("tool", _result_text(result), tool_call_id=call.id, name=call.name,
                          is_error=result.error is not None) for call, result in results]
        if last_turn:  # the tools stay defined, but no call: the model answers in text
            return msgspec.structs.replace(request, messages=(*request.messages, *added), tool_choice="none")
    else:
        shown = [(call, Message("tool", _result_text(result), is_error=result.error is not None))
                 for call, result in results]
        note = f"\n\n{LAST_TURN_NOTE}" if last_turn else ""
        added = [Message("assistant", text), Message("user", toolcalls.render_tool_results(shown) + note)]
    return msgspec.structs.replace(request, messages=(*request.messages, *added))


def _result_text(result: ToolResult) -> str:
    """What the model is shown of a result: its output, or its error (and any output it came with)."""
    if result.error is None:
        return result.output
    return f"{result.error}\n{result.output}".rstrip()


def _cancelled(contribution_id: str) -> ContributionErrored:
    return ContributionErrored(contribution_id, "cancelled", "the contribution was cancelled", False)


__all__ = ["CancelToken", "ParticipantActor"]
