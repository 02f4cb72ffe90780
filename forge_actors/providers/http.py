"""What the HTTP providers share: the client, error mapping, retries, stream guards, abort.

A subclass says how to build a request body and how to read a response; this class
owns everything that can go wrong on the way: statuses, timeouts (``timeout`` is also
the longest silence tolerated inside a stream), refused connections, cut streams.

Abort, at any moment. ``stream()`` and ``complete()`` each run as one *call* (all its
attempts); ``abort()`` ends the call in progress whatever it is doing:

- connecting, or sent and waiting for the response headers: the blocking ``send`` runs
  in a worker thread, and the calling thread waits for it or for the abort, whichever
  comes first. An abandoned worker is not left hanging: its socket is shut down (see
  below), and a connect still in progress is closed as soon as it completes.
- reading the body: the socket is shut down, which wakes a ``recv`` blocked in the
  calling thread (closing it from another thread would not, on Linux).

The sockets are known because the client's connection pool gets a network backend
that records, in the call that runs the worker, every stream it connects or writes a
request to (``clients.track_sockets``): the worker thread says which call it sends for,
so providers that share a client each shut down only their own. After an abort,
whatever error the reader sees is a ``CancelledError``, which is never retried; the
provider then serves the next call as usual.

The client: an engine's providers share one per server (``clients.HttpClients``, passed
as ``clients``); a provider built without one makes its own. Either way it is taken at
the first request, so building a provider (to check a spec) costs no client. Keys and
timeouts go with each request, never in the client.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import msgspec

from forge_actors.providers.base import LlmRequest, LlmResponse, StreamChunk
from forge_actors.providers.clients import HttpClients, new_client, sending_for, shutdown
from forge_actors.providers.errors import (
    AuthenticationError,
    BadRequestError,
    CancelledError,
    ConnectError,
    EmptyResponseError,
    EmptyStreamError,
    LlmError,
    MissingApiKeyError,
    NotFoundError,
    NotStreamedError,
    OverloadedError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    redact,
)
from forge_actors.providers.retry import OnRetry, RetryPolicy, call_with_retries, parse_retry_after, wait_to_retry

logger = logging.getLogger(__name__)

_json_encode = msgspec.json.Encoder().encode
T = TypeVar("T")


class _ErrorBody(msgspec.Struct):
    message: str = ""
    type: str | None = None
    code: str | int | None = None


class _ErrorEnvelope(msgspec.Struct):
    error: _ErrorBody | str | None = None
    message: str | None = None
    detail: str | None = None


class ErrorDetail(msgspec.Struct, frozen=True):
    """What an error response body says: its message, and the API's error ``type`` and ``code`` if any."""

    message: str
    type: str | None = None
    code: str | None = None

    @property
    def labels(self) -> frozenset[str]:
        """``type`` and ``code`` together (APIs put the same word in either)."""
        return frozenset(label for label in (self.type, self.code) if label)


def error_detail(body: bytes) -> ErrorDetail:
    """What an error response body of any of the APIs we speak says."""
    try:
        envelope = msgspec.json.decode(body, type=_ErrorEnvelope)
    except msgspec.DecodeError:
        text = body.decode("utf-8", "replace").strip()
        return ErrorDetail(text[:500] or "(empty body)")
    if isinstance(envelope.error, _ErrorBody):
        code = envelope.error.code
        return ErrorDetail(envelope.error.message or "(no message)", envelope.error.type or None,
                           str(code) if code is not None and code != "" else None)
    if isinstance(envelope.error, str):
        return ErrorDetail(envelope.error)
    return ErrorDetail(envelope.message or envelope.detail or body.decode("utf-8", "replace")[:500])


def safe_url(url: str) -> str:
    """``url`` without any user:password part."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


# -- abort: calls and hand-offs -------------------------------------------------------------------


class _Handoff:
    """The outcome of a worker's ``send``, for a caller that may stop waiting for it (an abort)."""

    __slots__ = ("_lock", "_ready", "_response", "_error", "_done", "_abandoned")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._response: httpx.Response | None = None
        self._error: BaseException | None = None
        self._done = False
        self._abandoned = False

    def put(self, response: httpx.Response | None = None, error: BaseException | None = None) -> bool:
        """Hand the outcome over; False when nobody waits for it any more (the worker then cleans up)."""
        with self._lock:
            if self._abandoned:
                return False
            self._response, self._error, self._done = response, error, True
        self._ready.set()
        return True

    def wake(self) -> None:
        self._ready.set()

    def take(self, call: _Call) -> httpx.Response:
        """The response, or the worker's error; raises CancelledError as soon as ``call`` is aborted."""
        self._ready.wait()
        with self._lock:
            if self._done and not call.aborted:
                if self._error is not None:
                    raise self._error
                assert self._response is not None
                return self._response
            self._abandoned = True
            leftover = self._response
        if leftover is not None:  # it came in just as the abort did: nobody will read it
            leftover.close()
        raise CancelledError("the request was aborted")


class _Call:
    """One ``stream()`` or ``complete()``, all its attempts: the unit that ``abort()`` ends."""

    __slots__ = ("_lock", "_aborted", "_ended", "_streams", "_handoff")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._aborted = threading.Event()
        self._ended = False
        self._streams: list[Any] = []  # network streams of the attempt under way
        self._handoff: _Handoff | None = None

    @property
    def aborted(self) -> bool:
        return self._aborted.is_set()

    def sleep(self, seconds: float) -> None:
        """A backoff that an abort cuts short."""
        self._aborted.wait(seconds)

    def track(self, stream: Any) -> bool:
        """Remember a network stream to shut down on abort; False (not kept) if already aborted."""
        with self._lock:
            if self._aborted.is_set():
                return False
            if not self._ended and not any(known is stream for known in self._streams):
                self._streams.append(stream)
            return True

    def forget_streams(self) -> None:
        """The attempt is over: its connection may go back to the pool, where an abort must not reach it."""
        with self._lock:
            self._streams = []

    def waiting(self, handoff: _Handoff | None) -> None:
        with self._lock:
            self._handoff = handoff
            aborted = self._aborted.is_set()
        if handoff is not None and aborted:
            handoff.wake()

    def abort(self) -> None:
        with self._lock:
            if self._ended or self._aborted.is_set():
                return
            self._aborted.set()
            streams, self._streams = self._streams, []
            handoff = self._handoff
        if handoff is not None:
            handoff.wake()
        for stream in streams:
            shutdown(stream, self)

    def end(self) -> None:
        with self._lock:
            self._ended = True
            self._streams = []
            self._handoff = None


class HttpProvider:
    """Base of the providers that speak HTTP."""

    name: ClassVar[str] = "http"
    default_base_url: ClassVar[str] = ""
    api_key_env: ClassVar[str | None] = None
    #: The API's error type strings (in mid-stream error events, which have no status) -> our errors.
    error_types: ClassVar[dict[str, type[LlmError]]] = {}

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 2,
        transport: httpx.BaseTransport | None = None,
        on_retry: OnRetry | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clients: HttpClients | None = None,
    ) -> None:
        self.model = model
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.timeout = float(timeout)
        self.retry_policy = RetryPolicy(max_retries=int(max_retries))
        self.on_retry = on_retry
        self._sleep = sleep
        self._api_key = api_key or (os.environ.get(self.api_key_env) if self.api_key_env else None) or None
        if self._api_key is None and self.requires_api_key():
            raise MissingApiKeyError(self.name, self.api_key_env or "an API key")
        self._call: _Call | None = None
        self._call_lock = threading.Lock()
        self._request_timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))
        self._auth_headers = self.headers(self._api_key)
        self._json_headers = {**self._auth_headers, "content-type": "application/json"}
        # A given transport (tests) gets a client of its own; else the engine's shared one, if any.
        self._clients = clients if transport is None else None
        self._transport = transport
        self._http: httpx.Client | None = None
        self._client_lock = threading.Lock()

    # -- what subclasses say ------------------------------------------------------------

    def requires_api_key(self) -> bool:
        return self.api_key_env is not None

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {}

    def _complete_once(self, request: LlmRequest) -> LlmResponse:
        raise NotImplementedError

    def _stream_once(self, request: LlmRequest) -> Iterator[StreamChunk]:
        raise NotImplementedError

    def error_for_type(self, error_type: str | None, message: str, status: int | None) -> LlmError | None:
        """The error an API error type string names (``error_types``), for errors that come without a
        status (inside a stream or a 200 body); None when the type names none."""
        cls = self.error_types.get(error_type or "")
        if cls is None:
            return None
        return cls(f"{error_type}: {message}", provider=self.name, status_code=status)

    # -- the Provider protocol ------------------------------------------------------------

    def complete(self, request: LlmRequest) -> LlmResponse:
        call = self._begin_call()
        try:
            response = call_with_retries(
                lambda: self._cancellable(call, lambda: self._complete_once(request)),
                self.retry_policy, on_retry=self.on_retry, sleep=self._backoff(call),
            )
        finally:
            self._end_call(call)
        if not response.content and not response.tool_calls:  # an answer that only calls tools is an answer
            raise EmptyResponseError("the model returned no text; try again or check max_tokens", provider=self.name)
        return response

    def post_with_retries(self, path: str, body: dict[str, Any]) -> bytes:
        """POST ``body`` and return the answer's bytes, retried as a completion is (and aborted as one
        is): for the calls that are not completions, e.g. embeddings."""
        call = self._begin_call()
        try:
            return call_with_retries(
                lambda: self._cancellable(call, lambda: self._post_translated(path, body)),
                self.retry_policy, on_retry=self.on_retry, sleep=self._backoff(call),
            )
        finally:
            self._end_call(call)

    def _post_translated(self, path: str, body: dict[str, Any]) -> bytes:
        with self.translate_errors():
            return self.post_json(path, body)

    def stream(self, request: LlmRequest) -> Iterator[StreamChunk]:
        call = self._begin_call()  # now, not at the first next(): an abort from here on must stick
        return self._streaming(call, request)

    def _streaming(self, call: _Call, request: LlmRequest) -> Iterator[StreamChunk]:
        """The whole of a ``stream()`` call, in one generator: its attempts (one that fails before
        its first chunk is opened again, as ``retry`` says), abort (whatever an attempt fails with
        once the call is aborted is a CancelledError, never retried) and the call's end. Each
        generator between the decoder and the caller is a frame resumed per chunk: chunks pass
        through this one and ``_require_text`` only."""
        attempt = 0
        previous: LlmError | None = None
        try:
            while True:
                attempt += 1
                if call.aborted:
                    raise self._cancelled()
                chunks = _require_text(self._stream_once(request), self.name)
                started = False
                try:
                    first = next(chunks, None)
                    if first is None:
                        return
                    started = True
                    yield first
                    yield from chunks  # the hot path: no Python code of ours per chunk here
                    return
                except (LlmError, httpx.HTTPError, OSError, msgspec.DecodeError) as error:
                    # e.g. the shut socket read as a cut stream, or as an early end ("no [DONE]")
                    if call.aborted:
                        raise self._cancelled() from None
                    if started or not isinstance(error, LlmError):  # text went out: never silently repeated
                        raise
                    chunks.close()  # type: ignore[attr-defined]  # let go of the connection now, not after the backoff
                    wait_to_retry(error, attempt, self.retry_policy, self.on_retry, self._backoff(call), previous)
                    previous = error
                finally:
                    chunks.close()  # type: ignore[attr-defined]
        finally:
            self._end_call(call)

    def abort(self) -> None:
        """End the call in progress at once, whatever its phase (connecting, waiting for headers,
        reading the body, backing off before a retry). Any thread; idempotent; a no-op when idle."""
        with self._call_lock:
            call = self._call
        if call is not None:
            call.abort()

    def close(self) -> None:
        """Abort what is in progress; close the client if it is this provider's own (a shared one is its engine's)."""
        self.abort()  # a worker still sending lets go of its socket now
        with self._client_lock:
            client = self._http if self._clients is None else None
        if client is not None:
            client.close()

    @property
    def _client(self) -> httpx.Client:
        """The client this provider sends through, taken at the first request."""
        client = self._http
        if client is None:
            with self._client_lock:
                if self._http is None:
                    self._http = (self._clients.client_for(self.base_url) if self._clients is not None
                                  else new_client(self._transport))
                client = self._http
        return client

    def model_for(self, request: LlmRequest) -> str:
        return request.model or self.model

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, base_url={safe_url(self.base_url)!r})"

    # -- calls and cancellation -----------------------------------------------------------

    def _begin_call(self) -> _Call:
        call = _Call()
        with self._call_lock:
            self._call = call
        return call

    def _end_call(self, call: _Call) -> None:
        call.end()
        with self._call_lock:
            if self._call is call:
                self._call = None

    @contextmanager
    def _call_scope(self) -> Iterator[_Call]:
        """The call in progress, or one for this request alone (e.g. ``list_models``)."""
        with self._call_lock:
            call = self._call
        if call is not None:
            yield call
            return
        call = self._begin_call()
        try:
            yield call
        finally:
            self._end_call(call)

    def _backoff(self, call: _Call) -> Callable[[float], None]:
        # The real clock waits on the abort too; an injected sleep (tests) is used as given.
        return call.sleep if self._sleep is time.sleep else self._sleep

    def _cancelled(self) -> CancelledError:
        return CancelledError("the request was aborted", provider=self.name)

    def _cancellable(self, call: _Call, attempt: Callable[[], T]) -> T:
        """One attempt; whatever it fails with after an abort is a CancelledError (never retried)."""
        if call.aborted:
            raise self._cancelled()
        try:
            return attempt()
        except (LlmError, httpx.HTTPError, OSError, msgspec.DecodeError):
            if call.aborted:
                raise self._cancelled() from None
            raise

    def _send(self, call: _Call, request: httpx.Request, *, stream: bool) -> httpx.Response:
        """``client.send`` in a worker thread, so that an abort returns at once even while it connects
        or waits for headers. With ``stream`` the body is left to read (by the calling thread)."""
        if call.aborted:
            raise self._cancelled()
        handoff = _Handoff()
        call.waiting(handoff)
        worker = threading.Thread(target=self._send_in_worker, args=(call, handoff, request, stream),
                                  name=f"forge-{self.name}-send", daemon=True)
        worker.start()
        try:
            return handoff.take(call)
        except CancelledError:
            raise self._cancelled() from None
        finally:
            call.waiting(None)

    def _send_in_worker(self, call: _Call, handoff: _Handoff, request: httpx.Request, stream: bool) -> None:
        sending_for.set(call)  # a fresh thread: this context is its own
        try:
            response = self._client.send(request, stream=stream)
        except BaseException as exc:  # the caller's to raise; or, abandoned, of no use to anyone
            if not handoff.put(error=exc):
                logger.debug("%s: an aborted request ended with %s", self.name, type(exc).__name__)
            return
        if not handoff.put(response):
            response.close()

    # -- plumbing for subclasses ----------------------------------------------------------

    def post_json(self, path: str, body: dict[str, Any]) -> bytes:
        return self._request_bytes(self._client.build_request(
            "POST", self.base_url + path, content=_json_encode(body), headers=self._json_headers,
            timeout=self._request_timeout))

    def get_json(self, path: str) -> bytes:
        return self._request_bytes(self._client.build_request(
            "GET", self.base_url + path, headers=self._auth_headers, timeout=self._request_timeout))

    def _request_bytes(self, request: httpx.Request) -> bytes:
        with self._call_scope() as call, self.translate_errors():
            try:
                return self._content(self._send(call, request, stream=False))
            finally:
                call.forget_streams()

    def _content(self, response: httpx.Response) -> bytes:
        if response.status_code >= 400:
            raise self.status_error(response)
        return response.content

    @contextmanager
    def open_stream(self, path: str, body: dict[str, Any],
                    whole: Callable[[bytes], LlmResponse] | None = None) -> Iterator[Iterator[bytes]]:
        """POST and yield the response's byte chunks.

        Errors come out typed, also those raised while the caller reads inside the
        ``with`` block: they pass back through this generator's ``yield``. A server that answers
        with a whole JSON body instead of a stream raises NotStreamedError carrying that answer,
        read by ``whole`` (the provider's reader of a non-streaming response), so that it is not
        asked for twice.
        """
        request = self._client.build_request(
            "POST", self.base_url + path, content=_json_encode(body), headers=self._json_headers,
            timeout=self._request_timeout)
        with self._call_scope() as call, self.translate_errors():
            response = self._send(call, request, stream=True)
            try:
                # A transport we could not fit with the tracking backend still shows its stream here.
                network_stream = response.extensions.get("network_stream")
                if network_stream is not None and not call.track(network_stream):
                    raise self._cancelled()
                if response.status_code >= 400:
                    response.read()
                    raise self.status_error(response)
                if whole is not None and _media_type(response) == "application/json":
                    raise self._not_streamed(response.read(), whole)
                yield response.iter_bytes()
            finally:
                call.forget_streams()
                response.close()

    def _not_streamed(self, body: bytes, whole: Callable[[bytes], LlmResponse]) -> NotStreamedError:
        """The whole body a server sent to a streaming request, as an error that carries its answer."""
        said = "the server answered application/json to a streaming request: it does not stream"
        try:
            answer: LlmResponse | None = whole(body)
        except msgspec.DecodeError as exc:  # not a response of this API: it must be asked again, plainly
            logger.info("%s: %s, and the body is no response (%s)", self.name, said, exc)
            answer = None
        return NotStreamedError(said, provider=self.name, response=answer)

    @contextmanager
    def translate_errors(self) -> Iterator[None]:
        try:
            yield
        except CancelledError:
            raise
        except (LlmError, httpx.HTTPError, OSError, msgspec.DecodeError) as exc:
            with self._call_lock:
                call = self._call
            if call is not None and call.aborted:  # the abort is what broke it, whatever it looks like
                raise self._cancelled() from None
            if isinstance(exc, LlmError | OSError):
                raise
            raise self._http_error(exc) from None

    def _http_error(self, exc: Exception) -> LlmError | Exception:
        if isinstance(exc, httpx.TimeoutException):
            what = "connect" if isinstance(exc, httpx.ConnectTimeout) else "receive data"
            return RequestTimeoutError(
                f"could not {what} within {self.timeout:g} s; the server may be overloaded or stalled "
                "(raise `timeout` for slow local models)",
                provider=self.name,
            )
        if isinstance(exc, httpx.ConnectError):
            return ConnectError(
                f"cannot connect to {safe_url(self.base_url)} ({self.clean(str(exc))}); is the server running "
                "and the base_url right?",
                provider=self.name,
            )
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
            return ProtocolError(
                f"the connection broke mid-response ({self.clean(str(exc)) or type(exc).__name__})",
                provider=self.name,
            )
        if isinstance(exc, msgspec.DecodeError):
            return ProtocolError(f"malformed data in the response: {exc}", provider=self.name)
        return exc  # another httpx error (e.g. a bad URL): a bug to see as it is

    def clean(self, text: str) -> str:
        return redact(text, [self._api_key])

    def status_error(self, response: httpx.Response) -> LlmError:
        """The error of a response with status >= 400: by status first (as the official SDKs do)."""
        detail = error_detail(response.content)
        detail = ErrorDetail(self.clean(detail.message), detail.type, detail.code)
        return self.error_for_status(response.status_code, detail, parse_retry_after(response.headers))

    def error_for_status(self, status: int, detail: ErrorDetail, retry_after: float | None) -> LlmError:
        """What ``status`` means. Subclasses refine it by the body's ``type``/``code``, within the status."""
        message = detail.message
        kwargs: dict[str, Any] = {"provider": self.name, "status_code": status}
        if status == 401:
            return AuthenticationError(f"the API key was rejected ({message}); check {self.api_key_env or 'the key'}", **kwargs)
        if status == 403:
            return PermissionDeniedError(f"this key may not do that ({message})", **kwargs)
        if status == 404:
            return NotFoundError(f"not found ({message}); check the model name and base_url", **kwargs)
        if status == 408:
            return RequestTimeoutError(f"the server timed out ({message})", retry_after=retry_after, **kwargs)
        if status == 429:
            return RateLimitError(f"rate limited ({message}); slow down or raise your limits",
                                  retry_after=retry_after, **kwargs)
        if status in (503, 529):
            return OverloadedError(f"the service is overloaded ({message}); try again shortly",
                                   retry_after=retry_after, **kwargs)
        if status >= 500:
            return ServerError(f"server error {status} ({message})", retry_after=retry_after, **kwargs)
        return BadRequestError(f"the request was refused ({status}: {message})", **kwargs)


def _media_type(response: httpx.Response) -> str:
    return response.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _require_text(chunks: Iterator[StreamChunk], provider: str) -> Iterator[StreamChunk]:
    """Pass chunks through; a stream that completes with no text (and no tool call) is an EmptyStreamError
    (one plain request may still answer)."""
    try:
        for chunk in chunks:
            if chunk.delta or chunk.tool_call is not None:
                yield chunk
                yield from chunks  # text came: nothing more to check, and no Python code of ours per chunk
                return
            if chunk.is_complete:
                raise EmptyStreamError(
                    f"the stream finished ({chunk.finish_reason}) without any text", provider=provider
                )
            yield chunk
    finally:
        chunks.close()  # type: ignore[attr-defined]
