"""What a server showed it cannot do, read from a failure and the request that met it.

Three limits, each learned once and then worked around by whoever calls the provider:

- ``streaming``: the server answers a streaming request with a whole body (``NotStreamedError``,
  which carries that answer), or refuses ``stream: true`` with a 400 — ask without streaming;
- ``structured_replies``: it refuses a request for a structured reply (``response_format``, or the
  forced tool call that gives one on Anthropic's API) with a 400 — ask for text replies;
- ``native_tools``: it refuses ``tools`` with a 400 — offer tools as text (``TOOL_CALL:`` lines).

Pure: the same error and request always give the same answer, so a re-run that meets the recorded
error again learns the same thing.
"""

from __future__ import annotations

import re
from typing import Literal

from forge_actors.providers.base import LlmRequest
from forge_actors.providers.errors import BadRequestError, LlmError, NotStreamedError, RefusalError

Limit = Literal["streaming", "structured_replies", "native_tools"]
LIMITS: tuple[Limit, ...] = ("streaming", "structured_replies", "native_tools")

#: How a 400 names the structured-output parameters it does not take.
_STRUCTURED = re.compile(r"response_format|json_schema|json_object|structured[ _-]?output|output[ _-]?schema"
                         r"|tool_choice|\btools?\b", re.IGNORECASE)
#: How a 400 names the tool-calling parameters it does not take.
_TOOLS = re.compile(r"\btools?\b|tool_choice|tool_calls?|\bfunctions?\b|function[ _-]?call", re.IGNORECASE)


def limit_shown(error: LlmError, request: LlmRequest) -> Limit | None:
    """The limit ``error`` shows the server has, given the ``request`` that met it; None when it shows none
    (a failure like any other)."""
    if isinstance(error, NotStreamedError):
        return "streaming"
    if not isinstance(error, BadRequestError) or isinstance(error, RefusalError):
        return None
    if error.stream_fallback:  # a 400 that refuses stream: true
        return "streaming"
    if error.status_code not in (400, 422):
        return None
    if request.response_schema is not None and _STRUCTURED.search(error.message):
        return "structured_replies"
    if request.tools and _TOOLS.search(error.message):
        return "native_tools"
    return None
