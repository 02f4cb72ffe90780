"""abort() at any moment, over real sockets: connecting, waiting for headers, withheld body, backoff.

Each case ends with CancelledError (never retried), and the same provider then serves a
normal request. No timed assertions: every wait that could hang runs under a generous
bound, so a hang fails the test instead of blocking the suite.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import pytest
from loopback import LoopbackServer, Reply
from streams_fixtures import anthropic_stream, ollama_stream, openai_stream

from forge_actors.providers import (
    AnthropicProvider,
    CancelledError,
    LlmRequest,
    Message,
    OllamaProvider,
    OpenAIProvider,
    collect,
)
from forge_actors.providers.clients import TrackingBackend, track_sockets

REQUEST = LlmRequest(messages=(Message("user", "Go"),))
TEXTS = ["Hel", "lo ", "wörld"]
BOUND = 20.0  # seconds: far beyond any prompt abort, far below a 120 s provider timeout
WIRE = {"anthropic": anthropic_stream, "openai": openai_stream, "ollama": ollama_stream}


def make(kind: str, url: str, **kw):
    kw.setdefault("timeout", 120)  # the default: an abort that did not work would wait this long
    if kind == "anthropic":
        return AnthropicProvider("claude-x", api_key="k-123456", base_url=url, **kw)
    if kind == "openai":
        return OpenAIProvider("gpt-x", base_url=url + "/v1", **kw)
    return OllamaProvider("llama3.2", base_url=url, **kw)


def http_response(body: bytes, status: str = "200 OK", content_type: str = "text/event-stream") -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    return head.encode() + body


HANG = object()  # read the request, then answer nothing until the server closes


class ScriptedSocketServer:
    """A raw TCP server on 127.0.0.1: connection n gets script[n] (a full response, or HANG).

    ``requested`` is set each time a whole request has arrived, so a test can abort at
    a known phase instead of after a guessed delay.
    """

    def __init__(self, *script: object, backlog: int = 16, accepting: bool = True) -> None:
        self.script = list(script)
        self.requested = threading.Semaphore(0)
        self._release = threading.Event()
        self._accepting = threading.Event()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(backlog)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._threads: list[threading.Thread] = []
        if accepting:
            self._accepting.set()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def start_accepting(self) -> None:
        self._accepting.set()

    def _serve(self) -> None:
        self._accepting.wait()
        while not self._release.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(BOUND)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    piece = conn.recv(65536)
                    if not piece:
                        return  # an abandoned connect that completed and was closed at once: not a request
                    data += piece
                head, _, body = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length:
                    piece = conn.recv(65536)
                    if not piece:
                        return
                    body += piece
            except OSError:
                return
            action = self.script.pop(0) if self.script else HANG
            self.requested.release()
            if action is HANG:
                self._release.wait(BOUND)
                return
            try:
                conn.sendall(action)  # type: ignore[arg-type]
            except OSError:
                return

    def close(self) -> None:
        self._release.set()
        self._accepting.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(BOUND)

    def __enter__(self) -> ScriptedSocketServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def outcome_within(run: Callable[[], object], seconds: float = BOUND) -> object:
    """``run()``'s result or exception, from a thread; fails if it has not ended within ``seconds``."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = run()
        except BaseException as exc:  # the outcome under test
            box["value"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the call did not end: abort() did not reach it"
    return box["value"]


def abort_when_requested(server: ScriptedSocketServer, provider) -> None:
    """Abort as soon as the server has the whole request (it then withholds its answer)."""
    def fire() -> None:
        if server.requested.acquire(timeout=BOUND):
            provider.abort()

    threading.Thread(target=fire, daemon=True).start()


def send_threads_end(seconds: float = BOUND) -> bool:
    """True once no provider send-worker thread is left (they end when their socket is shut down)."""
    done = threading.Event()
    for _ in range(int(seconds / 0.05)):
        if not any(t.name.startswith("forge-") and t.name.endswith("-send") for t in threading.enumerate()):
            return True
        done.wait(0.05)
    return False


@pytest.mark.parametrize("kind", ["anthropic", "openai", "ollama"])
def test_abort_while_waiting_for_headers_then_a_normal_request(kind):
    with ScriptedSocketServer(HANG, http_response(WIRE[kind](TEXTS))) as server:
        provider = make(kind, server.url)
        abort_when_requested(server, provider)
        outcome = outcome_within(lambda: list(provider.stream(REQUEST)))
        assert isinstance(outcome, CancelledError), outcome
        assert outcome.kind == "cancelled" and not outcome.retryable
        assert send_threads_end(), "the abandoned worker still waits for headers"
        response = outcome_within(lambda: collect(provider.stream(REQUEST), "m"))
        assert getattr(response, "content", response) == "".join(TEXTS)
        provider.close()


def test_abort_while_the_body_is_withheld_then_a_normal_request():
    wire = openai_stream(TEXTS)
    with LoopbackServer(Reply(parts=[b": waiting\n\n", 60.0]), Reply(parts=[wire])) as server:
        provider = make("openai", server.url)
        chunks = provider.stream(REQUEST)
        timer = threading.Timer(0.2, provider.abort)
        timer.start()
        outcome = outcome_within(lambda: list(chunks))
        assert isinstance(outcome, CancelledError), outcome
        assert len(server.requests) == 1  # not retried, though nothing had been yielded yet
        response = outcome_within(lambda: collect(provider.stream(REQUEST), "m"))
        assert getattr(response, "content", response) == "".join(TEXTS)
        provider.close()


def test_abort_of_a_non_streaming_call_waiting_for_headers():
    answer = b'{"choices": [{"message": {"content": "done"}, "finish_reason": "stop"}], "model": "gpt-x"}'
    with ScriptedSocketServer(HANG, http_response(answer, content_type="application/json")) as server:
        provider = make("openai", server.url)
        abort_when_requested(server, provider)
        outcome = outcome_within(lambda: provider.complete(REQUEST))
        assert isinstance(outcome, CancelledError), outcome
        response = outcome_within(lambda: provider.complete(REQUEST))
        assert getattr(response, "content", response) == "done"
        provider.close()


def test_abort_during_a_slow_connect_then_a_normal_request():
    # A listener with a full accept queue drops further SYNs: connect() blocks (SYN retransmits).
    with ScriptedSocketServer(http_response(openai_stream(TEXTS)), backlog=0, accepting=False) as server:
        port = int(server.url.rsplit(":", 1)[1])
        fillers: list[socket.socket] = []
        while True:
            filler = socket.socket()
            filler.settimeout(0.3)
            try:
                filler.connect(("127.0.0.1", port))
            except OSError:  # this one was not admitted: the queue is full
                filler.close()
                break
            fillers.append(filler)
            assert len(fillers) < 64, "the accept queue never filled"
        provider = make("openai", server.url)
        timer = threading.Timer(0.3, provider.abort)
        timer.start()
        outcome = outcome_within(lambda: list(provider.stream(REQUEST)))
        assert isinstance(outcome, CancelledError), outcome
        for filler in fillers:
            filler.close()
        server.start_accepting()  # the fillers, and the abandoned connect if it got in, carry no request
        response = outcome_within(lambda: collect(provider.stream(REQUEST), "m"))
        assert getattr(response, "content", response) == "".join(TEXTS)
        provider.close()


def test_abort_cuts_the_backoff_before_a_retry():
    busy = http_response(b'{"error": {"message": "busy"}}', "503 Service Unavailable", "application/json")
    busy = busy.replace(b"connection: close", b"retry-after: 60\r\nconnection: close")
    with ScriptedSocketServer(busy, http_response(openai_stream(TEXTS))) as server:
        provider = make("openai", server.url)  # the real clock: a 60 s Retry-After
        abort_when_requested(server, provider)
        outcome = outcome_within(lambda: list(provider.stream(REQUEST)))
        assert isinstance(outcome, CancelledError), outcome
        response = outcome_within(lambda: collect(provider.stream(REQUEST), "m"))
        assert getattr(response, "content", response) == "".join(TEXTS)
        provider.close()


def test_abort_when_idle_is_a_no_op_and_does_not_stick():
    with ScriptedSocketServer(http_response(openai_stream(TEXTS))) as server:
        provider = make("openai", server.url)
        provider.abort()
        provider.abort()
        response = outcome_within(lambda: collect(provider.stream(REQUEST), "m"))
        assert getattr(response, "content", response) == "".join(TEXTS)
        provider.abort()  # after the call: nothing in progress
        provider.close()


def test_an_abort_after_stream_is_called_sticks_even_before_the_first_read():
    with ScriptedSocketServer(http_response(openai_stream(TEXTS))) as server:
        provider = make("openai", server.url)
        chunks = provider.stream(REQUEST)
        provider.abort()
        outcome = outcome_within(lambda: list(chunks))
        assert isinstance(outcome, CancelledError), outcome
        provider.close()


def test_the_default_client_records_its_sockets():
    # httpx has no public network-backend option: if an upgrade moves the pool, this says so.
    provider = make("openai", "http://127.0.0.1:9")
    try:
        assert track_sockets(provider._client) == 0  # already fitted, once
        assert isinstance(provider._client._transport._pool._network_backend, TrackingBackend)
    finally:
        provider.close()


def test_a_cancelled_contribution_ends_at_once_and_the_actor_serves_the_next():
    # The path a round deadline takes: CancelToken.cancel() -> provider.abort() in the cancelling thread.
    import queue

    import pykka

    from forge_actors.actors.messages import CancelToken, Contribute, ContributionErrored, ContributionSucceeded
    from forge_actors.actors.participant import ParticipantActor

    class Inbox(pykka.ThreadingActor):
        def __init__(self, box: queue.Queue) -> None:
            super().__init__()
            self.box = box

        def on_receive(self, message: object) -> None:
            if isinstance(message, ContributionErrored | ContributionSucceeded):
                self.box.put(message)

    box: queue.Queue = queue.Queue()
    with ScriptedSocketServer(HANG, http_response(openai_stream(TEXTS))) as server:
        inbox = Inbox.start(box)
        participant = ParticipantActor.start("alice", make("openai", server.url))
        try:
            token = CancelToken()
            participant.tell(Contribute("c1", REQUEST, token, inbox))
            assert server.requested.acquire(timeout=BOUND)  # sent; the server withholds the headers
            token.cancel()
            outcome = box.get(timeout=BOUND)
            assert isinstance(outcome, ContributionErrored) and outcome.error_kind == "cancelled"
            participant.tell(Contribute("c2", REQUEST, CancelToken(), inbox))
            outcome = box.get(timeout=BOUND)
            assert isinstance(outcome, ContributionSucceeded) and outcome.content == "".join(TEXTS)
        finally:
            participant.stop(block=True, timeout=BOUND)
            inbox.stop(block=True, timeout=BOUND)
