"""Embeddings: a vector per text, from the providers whose API offers them.

Optional: a provider offers ``embed(texts)`` only when it knows an embedding model
(``embedding_model``): ``openai`` on api.openai.com uses ``text-embedding-3-small`` unless the spec
says ``?embed_model=...``; a compatible server (``/v1/embeddings``) and ``ollama`` (``/api/embed``)
embed only with the ``embed_model`` the spec names, since their chat model may not embed (and an
Ollama embedding model must be pulled first). Each call is paid like a reply: the session asks for
one only when its stop rule needs a similarity (``core.rounds``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import msgspec

from forge_actors.providers.base import Usage
from forge_actors.providers.errors import MalformedEmbeddingsError

#: The OpenAI embedding model used on api.openai.com when the spec names none.
OPENAI_EMBEDDING_MODEL = "text-embedding-3-small"


class Embeddings(msgspec.Struct, frozen=True):
    """One vector per text, in the order the texts were given; ``model`` as the server names it."""

    vectors: tuple[tuple[float, ...], ...]
    model: str
    usage: Usage = Usage()


@runtime_checkable
class Embedder(Protocol):
    """A provider that embeds (``embedder_of`` finds one)."""

    #: The model ``embed`` uses; None: this provider does not embed.
    embedding_model: str | None

    def embed(self, texts: Sequence[str]) -> Embeddings:
        """One vector per text. Raises an ``LlmError`` (typed as any call's) when the call fails, and
        ``MalformedEmbeddingsError`` when the answer is not one vector per text."""
        ...


def embedder_of(provider: Any) -> Embedder | None:
    """``provider`` if it offers embeddings now (an embedding model known), else None."""
    if getattr(provider, "embedding_model", None) and callable(getattr(provider, "embed", None)):
        return provider  # type: ignore[no-any-return]
    return None


def checked(vectors: Sequence[Sequence[float]], asked: int, provider: str) -> tuple[tuple[float, ...], ...]:
    """``vectors`` if they are one per text asked for, all of one non-zero length."""
    if len(vectors) != asked:
        raise MalformedEmbeddingsError(f"asked to embed {asked} text(s), the server answered {len(vectors)} "
                                       "vector(s)", provider=provider)
    lengths = {len(vector) for vector in vectors}
    if len(lengths) > 1 or 0 in lengths:
        raise MalformedEmbeddingsError(f"the server answered vectors of lengths {sorted(lengths)}: one non-zero "
                                       "length was expected", provider=provider)
    return tuple(tuple(float(x) for x in vector) for vector in vectors)


def decode(body: bytes, shape: type, provider: str) -> Any:
    """The body as ``shape``, or MalformedEmbeddingsError saying why not."""
    try:
        return msgspec.json.decode(body, type=shape)
    except msgspec.DecodeError as exc:
        raise MalformedEmbeddingsError(f"the embeddings answer is not of the expected shape ({exc}): "
                                       f"{body[:200]!r}", provider=provider) from None
