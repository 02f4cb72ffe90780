"""Providers that share an engine's HTTP client: one pool per server, abort per call, nothing leaks.

Several providers (participants) send through one ``httpx.Client`` per server. Each keeps
its own key (headers go with each request), an abort shuts down only the aborted call's
socket, a provider's close() leaves the shared client open, and the engine's close closes
it. Every wait that could hang runs under a generous bound, so a hang fails the test.
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import pytest
from loopback import LoopbackServer, Reply
from streams_fixtures import anthropic_stream, openai_stream
from test_provider_abort import HANG, ScriptedSocketServer, abort_when_requested, http_response, outcome_within

from forge_actors.engine import Forge
from forge_actors.engine.config import ParticipantSpec
from forge_actors.providers import (
    AnthropicProvider,
    CancelledError,
    LlmRequest,
    Message,
    OpenAIProvider,
    ProviderConfigError,
    collect,
    get_provider,
)
from forge_actors.providers.clients import HttpClients, _TrackedStream, sending_for, server_of
from forge_actors.providers.http import _Call

REQUEST = LlmRequest(messages=(Message("user", "Go"),))
BOUND = 20.0  # seconds: far beyond any prompt abort or stream, far below a 120 s provider timeout
FIRST, REST = ["Hel"], ["lo ", "wörld"]


class HeldStreams:
    """A server whose streams send their first event, then the rest only once ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        wire = openai_stream(FIRST + REST)
        cut = wire.index(b"\n\n", wire.index(b'"Hel"')) + 2  # after the event with the first delta
        head, rest = wire[:cut], wire[cut:]
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                try:
                    self._chunk(head)
                    outer.release.wait(BOUND)
                    self._chunk(rest)
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:  # the aborted call's socket was shut down: its stream ends here
                    self.close_connection = True

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HeldStreams:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


class Reader:
    """Reads one provider's stream in a thread of its own; ``first`` is set at its first delta."""

    def __init__(self, provider: OpenAIProvider) -> None:
        self.deltas: list[str] = []
        self.outcome: object = None
        self.first = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(provider,), daemon=True)
        self._thread.start()

    def _read(self, provider: OpenAIProvider) -> None:
        try:
            for chunk in provider.stream(REQUEST):
                if chunk.delta:
                    self.deltas.append(chunk.delta)
                    self.first.set()
            self.outcome = "done"
        except BaseException as exc:  # the outcome under test
            self.outcome = exc

    def ended_within(self, seconds: float = BOUND) -> bool:
        self._thread.join(seconds)
        return not self._thread.is_alive()


def test_two_providers_share_a_client_and_an_abort_ends_only_its_own_stream():
    clients = HttpClients()
    with HeldStreams() as server:
        aborted = OpenAIProvider("gpt-x", base_url=server.url + "/v1", timeout=120, clients=clients)
        streaming = OpenAIProvider("gpt-y", base_url=server.url + "/v1", timeout=120, clients=clients)
        try:
            readers = [Reader(aborted), Reader(streaming)]
            assert all(reader.first.wait(BOUND) for reader in readers), "a stream never began"
            assert aborted._client is streaming._client and len(clients) == 1

            aborted.abort()  # mid-stream, while both streams wait for the rest on their connections
            assert readers[0].ended_within(), "abort() did not reach the stream"
            assert isinstance(readers[0].outcome, CancelledError), readers[0].outcome
            assert readers[0].deltas == FIRST

            server.release.set()
            assert readers[1].ended_within(), "the other stream stalled"
            assert readers[1].outcome == "done" and readers[1].deltas == FIRST + REST

            # The aborted provider serves its next call as usual, through the same client.
            assert collect(aborted.stream(REQUEST), "gpt-x").content == "".join(FIRST + REST)
        finally:
            aborted.close()
            streaming.close()
            clients.close()


def test_two_threads_streaming_through_one_client_each_get_their_own_reply():
    clients = HttpClients()
    texts = {name: [f"{name} says ", "hello"] for name in ("a", "b", "c", "d")}
    replies = [Reply(parts=[openai_stream(words)]) for words in texts.values()]
    with LoopbackServer(*replies) as server:
        providers = [OpenAIProvider("gpt-x", base_url=server.url + "/v1", clients=clients) for _ in texts]
        results: list[str] = []
        lock = threading.Lock()

        def run(provider: OpenAIProvider) -> None:
            content = collect(provider.stream(REQUEST), "gpt-x").content
            with lock:
                results.append(content)

        threads = [threading.Thread(target=run, args=(p,), daemon=True) for p in providers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(BOUND)
        assert sorted(results) == sorted("".join(words) for words in texts.values())
        assert len(clients) == 1
    clients.close()


def test_keys_go_with_each_request_and_the_shared_client_holds_none():
    clients = HttpClients()
    wire = anthropic_stream(["ok"])
    with LoopbackServer(Reply(parts=[wire]), Reply(parts=[wire])) as server:
        first = AnthropicProvider("claude-x", api_key="key-of-alice", base_url=server.url, clients=clients)
        second = AnthropicProvider("claude-x", api_key="key-of-bob", base_url=server.url, clients=clients)
        collect(first.stream(REQUEST), "claude-x")
        collect(second.stream(REQUEST), "claude-x")
        assert [r.headers.get("x-api-key") for r in server.requests] == ["key-of-alice", "key-of-bob"]
        assert first._client is second._client
        assert "x-api-key" not in first._client.headers
    clients.close()


def test_a_shared_client_sends_no_cookie_a_server_set_for_another_participant():
    clients = HttpClients()
    cookie = Reply(parts=[openai_stream(["hi"])], headers={"set-cookie": "session=alice-only; Path=/"})
    with LoopbackServer(cookie, Reply(parts=[openai_stream(["hi"])])) as server:
        alice = OpenAIProvider("gpt-x", base_url=server.url + "/v1", clients=clients)
        bob = OpenAIProvider("gpt-x", base_url=server.url + "/v1", clients=clients)
        collect(alice.stream(REQUEST), "gpt-x")
        collect(bob.stream(REQUEST), "gpt-x")
        assert "cookie" not in {key.lower() for key in server.requests[1].headers}
    clients.close()


def test_close_of_a_provider_leaves_the_shared_client_and_the_clients_close_it():
    clients = HttpClients()
    with LoopbackServer(Reply(parts=[openai_stream(["one"])]), Reply(parts=[openai_stream(["two"])])) as server:
        leaving = OpenAIProvider("gpt-x", base_url=server.url + "/v1", clients=clients)
        staying = OpenAIProvider("gpt-x", base_url=server.url + "/v1", clients=clients)
        collect(leaving.stream(REQUEST), "gpt-x")
        shared = leaving._client
        leaving.close()
        assert not shared.is_closed
        assert collect(staying.stream(REQUEST), "gpt-x").content == "two"
    clients.close()
    assert shared.is_closed


def test_a_provider_of_its_own_makes_its_client_at_the_first_request_and_closes_it():
    clients = HttpClients()
    shared = OpenAIProvider("gpt-x", base_url="http://127.0.0.1:9/v1", clients=clients)
    own = OpenAIProvider("gpt-x", base_url="http://127.0.0.1:9/v1")
    assert len(clients) == 0 and own._http is None  # building one (to check a spec) makes no client
    client = own._client
    own.close()
    assert client.is_closed
    shared.close()


def test_servers_are_told_apart_by_scheme_host_and_port_only():
    assert server_of("http://127.0.0.1:8000/v1") == server_of("HTTP://127.0.0.1:8000/api/")
    assert server_of("https://user:secret@api.example.com/v1") == "https://api.example.com:443"
    assert server_of("http://localhost:11434") != server_of("http://localhost:11435")


def test_clients_cannot_be_given_in_a_spec():
    with pytest.raises(ProviderConfigError, match="clients"):
        get_provider("openai:gpt-x?base_url=http://127.0.0.1:9/v1&clients=mine")


def test_an_engine_builds_its_participants_without_a_connection_and_shares_one_client(tmp_path):
    with LoopbackServer() as server:
        forge = Forge(str(tmp_path / "forge.db"))
        specs = [ParticipantSpec(spec=f"openai:{name}?base_url={server.url}/v1&replies=text") for name in ("a", "b", "c")]
        began = time.perf_counter()
        session_id = forge.create_session("Plan a small service", specs)
        assert time.perf_counter() - began < 10  # a liveness bound: the figure itself is in benchmarks/
        participants = forge._participants
        assert len(participants.clients) == 0 and server.requests == []  # checked, and nothing sent
        infos = forge.state(session_id).participants.values()
        providers = [participants.for_recorded(info, session_id, forge.events) for info in infos]
        assert len({id(p._client) for p in providers}) == 1 and len(participants.clients) == 1
        shared = providers[0]._client
        forge.close()
        assert shared.is_closed


def test_an_abort_leaves_a_pooled_connection_another_call_has_sent_on_since():
    # A call's exchange ends and its connection goes back to the pool a moment before the call
    # forgets it; if another provider's call takes it meanwhile, aborting the first must not cut it.
    mine, server_side = socket.socketpair()
    stream = _TrackedStream(httpcore._backends.sync.SyncStream(mine))
    first, second = _Call(), _Call()
    for call in (first, second):
        token = sending_for.set(call)
        stream.write(b"POST / HTTP/1.1\r\n\r\n")
        sending_for.reset(token)
    first.abort()
    server_side.sendall(b"the second call's answer")
    assert stream.read(100, timeout=BOUND) == b"the second call's answer"
    second.abort()
    assert stream.read(100, timeout=BOUND) == b""  # its owner's abort shuts it down: end of stream at once
    stream.close()
    server_side.close()


def test_an_abort_while_waiting_for_headers_on_a_shared_client_leaves_the_others_served():
    clients = HttpClients()
    with ScriptedSocketServer(HANG, http_response(openai_stream(["fine"]))) as server:
        waiting = OpenAIProvider("gpt-x", base_url=server.url + "/v1", timeout=120, clients=clients)
        other = OpenAIProvider("gpt-y", base_url=server.url + "/v1", timeout=120, clients=clients)
        abort_when_requested(server, waiting)
        outcome = outcome_within(lambda: list(waiting.stream(REQUEST)))
        assert isinstance(outcome, CancelledError), outcome
        response = outcome_within(lambda: collect(other.stream(REQUEST), "gpt-y"))
        assert getattr(response, "content", response) == "fine"
        assert waiting._client is other._client
    clients.close()
