"""LLM providers behind one interface: ``complete(request)`` and ``stream(request)``.

Providers know nothing of sessions or actors. Build one from a spec string with
``get_provider("anthropic:claude-sonnet-4-20250514")``.
"""

from forge_actors.providers.anthropic import AnthropicProvider
from forge_actors.providers.base import (
    JsonSchema,
    LlmRequest,
    LlmResponse,
    Message,
    Provider,
    StreamChunk,
    StructuredResponse,
    ToolCall,
    ToolDefinition,
    Usage,
    collect,
)
from forge_actors.providers.errors import (
    AuthenticationError,
    BadRequestError,
    CancelledError,
    ConnectError,
    EmptyResponseError,
    LlmError,
    MalformedReplyError,
    MissingApiKeyError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProcessFailedError,
    ProtocolError,
    ProviderConfigError,
    QuotaExceededError,
    RateLimitError,
    RefusalError,
    RequestTimeoutError,
    ServerError,
    UnknownProviderError,
)
from forge_actors.providers.mock import MockProvider
from forge_actors.providers.ollama import OllamaProvider
from forge_actors.providers.openai import OpenAIProvider
from forge_actors.providers.registry import ProviderSpec, get_provider, known_providers, parse_spec, register_provider
from forge_actors.providers.retry import RetryPolicy
from forge_actors.providers.structured import complete_json

__all__ = [
    "AnthropicProvider", "AuthenticationError", "BadRequestError", "CancelledError", "ConnectError",
    "EmptyResponseError", "JsonSchema", "LlmError", "LlmRequest", "LlmResponse", "MalformedReplyError", "Message",
    "MissingApiKeyError", "QuotaExceededError", "RefusalError", "StructuredResponse", "complete_json",
    "MockProvider", "NotFoundError", "OllamaProvider", "OpenAIProvider", "OverloadedError",
    "PermissionDeniedError", "ProcessFailedError", "ProtocolError", "Provider", "ProviderConfigError",
    "ProviderSpec", "RateLimitError", "RequestTimeoutError", "RetryPolicy", "ServerError", "StreamChunk",
    "ToolCall", "ToolDefinition", "UnknownProviderError", "Usage", "collect", "get_provider", "known_providers", "parse_spec",
    "register_provider",
]
