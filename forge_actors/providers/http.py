"""What the HTTP providers share: the client, error mapping, retries, stream guards.

A subclass says how to build a request body and how to read a response; this class
owns everything that can go wrong on the way: statuses, timeouts (``timeout`` is also
the longest silence tolerated inside a stream), refused connections, cut streams.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import msgspec

from forge_actors.providers.base import LlmRequest, LlmResponse, StreamChunk
from forge_actors.providers.errors import (
    AuthenticationError,
    BadRequestError,
    ConnectError,
    EmptyResponseError,
    LlmError,
    MissingApiKeyError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    redact,
)
from forge_actors.providers.retry import OnRetry, RetryPolicy, call_with_retries, parse_retry_after, stream_with_retries

_json_encode = msgspec.json.Encoder().encode


class _ErrorBody(msgspec.Struct):
    message: str = ""
    type: str | None = None
    code: str | int | None = None


class _ErrorEnvelope(msgspec.Struct):
    error: _ErrorBody | str | None = None
    message: str | None = None
    detail: str | None = None


def error_detail(body: bytes) -> tuple[str, str | None]:
    """(message, error type) from an error response body of any of the APIs we speak."""
    try:
        envelope = msgspec.json.decode(body, type=_ErrorEnvelope)
    except msgspec.DecodeError:
        text = body.decode("utf-8", "replace").strip()
        return (text[:500] or "(empty body)"), None
    if isinstance(envelope.error, _ErrorBody):
        return envelope.error.message or "(no message)", envelope.error.type or (
            str(envelope.error.code) if envelope.error.code is not None else None
        )
    if isinstance(envelope.error, str):
        return envelope.error, None
    return envelope.message or envelope.detail or body.decode("utf-8", "replace")[:500], None


def safe_url(url: str) -> str:
    """``url`` without any user:password part."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


class HttpProvider:
    """Base of the providers that speak HTTP."""

    name: ClassVar[str] = "http"
    default_base_url: ClassVar[str] = ""
    api_key_env: ClassVar[str | None] = None
    #: The API's error type strings (in bodies and mid-stream error events) -> our errors.
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
        self._live_response: httpx.Response | None = None
        self._live_lock = threading.Lock()
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
            headers=self.headers(self._api_key),
            transport=transport,
        )

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
        """The error an API error type string names (``error_types``); None to map by status."""
        cls = self.error_types.get(error_type or "")
        if cls is None:
            return None
        return cls(f"{error_type}: {message}", provider=self.name, status_code=status)

    # -- the Provider protocol ------------------------------------------------------------

    def complete(self, request: LlmRequest) -> LlmResponse:
        response = call_with_retries(
            lambda: self._complete_once(request), self.retry_policy, on_retry=self.on_retry, sleep=self._sleep
        )
        if not response.content:
            raise EmptyResponseError("the model returned no text; try again or check max_tokens", provider=self.name)
        return response

    def stream(self, request: LlmRequest) -> Iterator[StreamChunk]:
        return stream_with_retries(
            lambda: _require_text(self._stream_once(request), self.name),
            self.retry_policy,
            on_retry=self.on_retry,
            sleep=self._sleep,
        )

    def abort(self) -> None:
        """Shut the live response's socket down: a read blocked in ``recv`` wakes at once.

        Closing the response from another thread would not wake it (on Linux a blocked
        ``recv`` keeps its file descriptor); ``shutdown`` does, and the reader then sees
        the stream as cut (ProtocolError).
        """
        with self._live_lock:
            response = self._live_response
            network_stream = response.extensions.get("network_stream") if response is not None else None
            sock = network_stream.get_extra_info("socket") if network_stream is not None else None
            if isinstance(sock, socket.socket):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:  # already closed: nothing left to wake
                    pass

    def close(self) -> None:
        self._client.close()

    def model_for(self, request: LlmRequest) -> str:
        return request.model or self.model

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, base_url={safe_url(self.base_url)!r})"

    # -- plumbing for subclasses ----------------------------------------------------------

    def post_json(self, path: str, body: dict[str, Any]) -> bytes:
        with self.translate_errors():
            return self._content(self._client.post(self.base_url + path, content=_json_encode(body),
                                                   headers={"content-type": "application/json"}))

    def get_json(self, path: str) -> bytes:
        with self.translate_errors():
            return self._content(self._client.get(self.base_url + path))

    def _content(self, response: httpx.Response) -> bytes:
        if response.status_code >= 400:
            raise self.status_error(response)
        return response.content

    @contextmanager
    def open_stream(self, path: str, body: dict[str, Any]) -> Iterator[Iterator[bytes]]:
        """POST and yield the response's byte chunks.

        Errors come out typed, also those raised while the caller reads inside the
        ``with`` block: they pass back through this generator's ``yield``.
        """
        with self.translate_errors():
            with self._client.stream(
                "POST", self.base_url + path, content=_json_encode(body),
                headers={"content-type": "application/json"},
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self.status_error(response)
                with self._live_lock:
                    self._live_response = response
                try:
                    yield response.iter_bytes()
                finally:
                    with self._live_lock:
                        self._live_response = None

    @contextmanager
    def translate_errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.TimeoutException as exc:
            what = "connect" if isinstance(exc, httpx.ConnectTimeout) else "receive data"
            raise RequestTimeoutError(
                f"could not {what} within {self.timeout:g} s; the server may be overloaded or stalled "
                "(raise `timeout` for slow local models)",
                provider=self.name,
            ) from None
        except httpx.ConnectError as exc:
            raise ConnectError(
                f"cannot connect to {safe_url(self.base_url)} ({self.clean(str(exc))}); is the server running "
                "and the base_url right?",
                provider=self.name,
            ) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise ProtocolError(
                f"the connection broke mid-response ({self.clean(str(exc)) or type(exc).__name__})",
                provider=self.name,
            ) from None
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"malformed data in the response: {exc}", provider=self.name) from None

    def clean(self, text: str) -> str:
        return redact(text, [self._api_key])

    def status_error(self, response: httpx.Response) -> LlmError:
        status = response.status_code
        message, error_type = error_detail(response.content)
        message = self.clean(message)
        specific = self.error_for_type(error_type, message, status)
        if specific is not None:
            specific.status_code = status
            specific.retry_after = parse_retry_after(response.headers)
            return specific
        kwargs: dict[str, Any] = {"provider": self.name, "status_code": status}
        if status == 401:
            return AuthenticationError(f"the API key was rejected ({message}); check {self.api_key_env or 'the key'}", **kwargs)
        if status == 403:
            return PermissionDeniedError(f"this key may not do that ({message})", **kwargs)
        if status == 404:
            return NotFoundError(f"not found ({message}); check the model name and base_url", **kwargs)
        if status == 408:
            return RequestTimeoutError(f"the server timed out ({message})", **kwargs)
        if status == 429:
            return RateLimitError(f"rate limited ({message}); slow down or raise your limits",
                                  retry_after=parse_retry_after(response.headers), **kwargs)
        if status in (503, 529):
            return OverloadedError(f"the service is overloaded ({message}); try again shortly",
                                   retry_after=parse_retry_after(response.headers), **kwargs)
        if status >= 500:
            return ServerError(f"server error {status} ({message})",
                               retry_after=parse_retry_after(response.headers), **kwargs)
        return BadRequestError(f"the request was refused ({status}: {message})", **kwargs)


def _require_text(chunks: Iterator[StreamChunk], provider: str) -> Iterator[StreamChunk]:
    """Pass chunks through; a stream that completes with no text at all is an EmptyResponseError."""
    any_text = False
    try:
        for chunk in chunks:
            if chunk.delta:
                any_text = True
            elif chunk.is_complete and not any_text:
                raise EmptyResponseError(
                    f"the model finished ({chunk.finish_reason}) without any text", provider=provider
                )
            yield chunk
    finally:
        chunks.close()  # type: ignore[attr-defined]
