"""Structured replies: ``complete_json`` for every provider, and the errors of a JSON reply.

A provider whose ``supports_json`` is true honours ``LlmRequest.response_schema`` with its
API's own mechanism (OpenAI ``response_format``, an Anthropic forced tool call, Ollama
``format``, the mock's JSON answers). ``complete_json`` is written once, here: it asks
for the schema, calls ``complete`` and decodes the reply with msgspec. A provider without
native support gets the schema as written instructions at the end of the last user
message instead, and its reply is checked the same way: a model is never trusted to
have followed either.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from forge_actors.providers.base import JsonSchema, LlmRequest, Message, StructuredResponse, json_kind
from forge_actors.providers.errors import MalformedReplyError

logger = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
#: finish reasons that mean the reply was cut at max_tokens (OpenAI/Ollama, Anthropic)
_CUT_SHORT = frozenset({"length", "max_tokens"})


def schema_instructions(schema: JsonSchema) -> str:
    """The schema as written instructions, for models without a structured-output mechanism."""
    purpose = f" ({schema.description})" if schema.description else ""
    return (
        f"Reply with one JSON document and nothing else (no prose, no markdown fence): a {schema.name!r} "
        f"object{purpose} that matches this JSON Schema:\n{_encode(schema.schema).decode()}"
    )


def with_schema(request: LlmRequest, schema: JsonSchema, *, native: bool) -> LlmRequest:
    """``request`` asking for ``schema``; with the instructions appended to the last user message unless ``native``.

    The schema stays in ``response_schema`` either way, so that a pool passes it on to
    the members that do support it.
    """
    messages = request.messages
    if not native:
        last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
        note = schema_instructions(schema)
        if last_user is None:
            messages = (*messages, Message("user", note))
        else:
            asked = messages[last_user]
            messages = (*messages[:last_user], Message("user", f"{asked.content}\n\n{note}"),
                        *messages[last_user + 1:])
    return msgspec.structs.replace(request, messages=messages, response_schema=schema)


def json_text(content: str) -> str:
    """The JSON inside ``content``: surrounding blanks and one markdown code fence taken off, nothing guessed."""
    text = content.strip()
    if text.startswith("```"):
        newline = text.find("\n")
        text = text[newline + 1:] if newline != -1 else ""
        if text.rstrip().endswith("```"):
            text = text.rstrip()[:-3]
    return text.strip()


def decode_reply(content: str, schema: JsonSchema, type: type | None = None, *, provider: str = "",
                 finish_reason: str | None = None) -> Any:
    """``content`` decoded as the ``schema`` reply (into ``type`` when given); MalformedReplyError if it is not."""
    text = json_text(content)
    problem = ""
    data: Any = None
    if not text:
        problem = "the reply is empty"
    else:
        try:
            data = msgspec.json.decode(text, type=type) if type is not None else msgspec.json.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            problem = f"{exc}"
        else:
            if type is None and not isinstance(data, dict):  # every schema has an object root (JsonSchema checks)
                problem = f"expected a JSON object, got {json_kind(data)}"
    if not problem:
        return data
    hint = ("it was cut off at max_tokens: raise max_tokens" if finish_reason in _CUT_SHORT
            else "ask again, or ask this model for text replies")
    excerpt = content[:200] + ("..." if len(content) > 200 else "")
    raise MalformedReplyError(
        f"the {schema.name!r} reply is not JSON of the asked shape ({problem}); {hint}. It began: {excerpt!r}",
        content=content, finish_reason=finish_reason, provider=provider,
    )


def complete_json(provider: Any, request: LlmRequest, schema: JsonSchema, type: type | None = None) -> StructuredResponse:
    """``provider.complete`` asking for ``schema``, the reply decoded (see ``StructuredOutput.complete_json``)."""
    native = bool(getattr(provider, "supports_json", False))
    response = provider.complete(with_schema(request, schema, native=native))
    try:
        data = decode_reply(response.content, schema, type, provider=getattr(provider, "name", ""),
                            finish_reason=response.finish_reason)
    except MalformedReplyError as error:
        logger.warning("structured reply rejected (%s, native=%s): %s", schema.name, native, error.message[:300])
        raise
    return StructuredResponse(response.content, data, response.finish_reason, response.usage, response.model)


class StructuredOutput:
    """Gives a provider ``complete_json``, the same for all (mixed into every provider class)."""

    def complete_json(self, request: LlmRequest, schema: JsonSchema, type: type | None = None) -> StructuredResponse:
        """A reply that is one JSON document of ``schema``, decoded into ``type`` (plain JSON when None).

        Natively when ``self.supports_json``; by written instructions otherwise. Raises
        MalformedReplyError (with the reply in ``content``) when the reply does not decode,
        RefusalError when the model declined, and whatever ``complete`` raises.
        """
        return complete_json(self, request, schema, type)

