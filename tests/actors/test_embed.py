"""A participant asked to embed: the vectors, why not, and a call aborted when the session stops."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence

import pykka
import pytest

from forge_actors.actors.messages import CancelToken, Embed, Embedded, EmbeddingFailed
from forge_actors.actors.participant import ParticipantActor
from forge_actors.providers import CancelledError, MockProvider
from forge_actors.providers.embeddings import Embeddings


class Inbox(pykka.ThreadingActor):
    def __init__(self, received: queue.Queue) -> None:
        super().__init__()
        self.received = received

    def on_receive(self, message: object) -> None:
        self.received.put(message)


class Embedding(MockProvider):
    """The mock, with embeddings that wait for ``release`` (or an abort)."""

    embedding_model = "emb-1"

    def __init__(self) -> None:
        super().__init__("alice", word_delay=0)
        self.release, self.aborted, self.started = threading.Event(), threading.Event(), threading.Event()

    def embed(self, texts: Sequence[str]) -> Embeddings:
        self.started.set()
        while not self.release.wait(0.01):
            if self.aborted.is_set():
                raise CancelledError("the request was aborted", provider="mock")
        return Embeddings(tuple((float(len(t)), 1.0) for t in texts), "emb-1")

    def abort(self) -> None:
        self.aborted.set()


@pytest.fixture
def inbox() -> Iterator[tuple[pykka.ActorRef, queue.Queue]]:
    received: queue.Queue = queue.Queue()
    ref = Inbox.start(received)
    yield ref, received
    ref.stop()


def test_the_vectors_come_back_one_per_text(inbox):
    ref, received = inbox
    provider = Embedding()
    provider.release.set()
    participant = ParticipantActor.start("alice", provider)
    try:
        participant.tell(Embed("m1", ("ab", "abcd"), ref, CancelToken()))
        assert received.get(timeout=10) == Embedded("m1", ((2.0, 1.0), (4.0, 1.0)), "emb-1")
    finally:
        participant.stop()


def test_a_provider_without_embeddings_says_so(inbox):
    ref, received = inbox
    participant = ParticipantActor.start("bob", MockProvider("bob"))
    try:
        participant.tell(Embed("m1", ("a",), ref, CancelToken()))
        failed = received.get(timeout=10)
        assert isinstance(failed, EmbeddingFailed) and failed.error_kind == "no_embeddings"
    finally:
        participant.stop()


def test_cancelling_aborts_a_call_in_flight(inbox):
    ref, received = inbox
    provider = Embedding()  # never released: only the abort ends its call
    participant = ParticipantActor.start("alice", provider)
    token = CancelToken()
    try:
        participant.tell(Embed("m1", ("a",), ref, token))
        assert provider.started.wait(30)
        token.cancel()
        failed = received.get(timeout=30)  # the call would wait forever without the abort
        assert isinstance(failed, EmbeddingFailed) and failed.error_kind == "cancelled"
        assert provider.aborted.is_set()
    finally:
        participant.stop()


def test_a_call_cancelled_before_it_starts_is_not_made(inbox):
    ref, received = inbox
    provider = Embedding()
    participant = ParticipantActor.start("alice", provider)
    token = CancelToken()
    token.cancel()
    try:
        participant.tell(Embed("m1", ("a",), ref, token))
        failed = received.get(timeout=30)
        assert isinstance(failed, EmbeddingFailed) and failed.error_kind == "cancelled"
        assert not provider.started.is_set()
    finally:
        participant.stop()
