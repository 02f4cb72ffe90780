"""The OpenAPI 3.1 document of the API, built from the same table the tests check the routes against.

OpenAPI describes HTTP operations only, so the two WebSockets are not among its ``paths`` (a plain
GET there is no operation: 426, or on ``.../deliberate`` the path's 405): they are listed under
``x-websockets``, with their parameters and close codes. Each operation lists the statuses it can
answer and the content type of each (``tests/server/test_server_conformance.py`` sends them).
"""

from __future__ import annotations

import re
from typing import Any, get_args

import msgspec

from forge_actors.core.events import ConvergenceRule
from forge_actors.engine import (
    DEPRECATED_ITERATIONS_KEY,
    ITERATIONS_KEY,
    LABEL_PATTERN,
    LABELS,
    TEXT_CAPS,
    ForgeConfig,
    untrusted_setting_ranges,
)
from forge_actors.surfaces.server import bodies

#: (method, path under the API root, summary, request body, success status, success description)
ENDPOINTS: tuple[tuple[str, str, str, type | None, int, str], ...] = (
    ("post", "/sessions", "Create a session", bodies.CreateSession, 201, "the session (schema forge_actors.session/1)"),
    ("get", "/sessions", "List the sessions", None, 200, "one summary per session"),
    ("get", "/sessions/{session_id}", "A session's state", None, 200, "the session (schema forge_actors.session/1)"),
    ("post", "/sessions/{session_id}/deliberate", "Run (or resume) the session to its end in the background",
     None, 202, "started; follow the events"),
    ("post", "/sessions/{session_id}/fork", "Fork the session after one of its completed rounds (a new session: "
     "a copy of its log to that round, with the changes given)", bodies.ForkSession, 201,
     "the new session (schema forge_actors.session/1)"),
    ("get", "/compare", "Two sessions side by side (schema forge_actors.comparison/1)", None, 200,
     "the comparison"),
    ("post", "/sessions/{session_id}/rounds", "Start one round of a given kind", bodies.StartRound, 202,
     "started"),
    ("post", "/sessions/{session_id}/drafts", "Add a human draft", bodies.HumanDraft, 201, "recorded"),
    ("post", "/sessions/{session_id}/synthesize", "Start a synthesis round", None, 202, "started"),
    ("post", "/sessions/{session_id}/converge", "Start a convergence (vote) round", None, 202, "started"),
    ("post", "/sessions/{session_id}/votes", "Add a human vote", bodies.HumanVote, 201, "recorded"),
    ("post", "/sessions/{session_id}/cancel", "Cancel the session", bodies.Cancel, 200, "the session"),
    ("post", "/sessions/{session_id}/participants/{participant}/provider", "Switch a participant's provider "
     "(between rounds)", bodies.SwitchProvider, 200, "the session"),
    ("get", "/sessions/{session_id}/export", "Export as Markdown, JSON or YAML", None, 200, "the export"),
    ("get", "/sessions/{session_id}/events", "Live events as Server-Sent Events (id = log position; "
     "Last-Event-ID or ?from= resumes after it; ?speed= re-streams at the recorded pace)", None, 200,
     "text/event-stream of events"),
    ("get", "/providers", "Each provider (key present or not, reachable) and each pool's member health",
     None, 200, "providers and pools"),
    ("get", "/openapi.json", "This document", None, 200, "OpenAPI 3.1"),
)

#: The WebSockets (path under the API root, summary): opened with a GET that asks to upgrade.
WEBSOCKETS: tuple[tuple[str, str], ...] = (
    ("/sessions/{session_id}/stream", "Events after ?from=POSITION, then live (?speed= re-streams at the "
     "recorded pace); one JSON object per message"),
    ("/sessions/{session_id}/deliberate", "Start (or resume, or join) the deliberation and stream its events "
     "from ?from=POSITION (default: all) as /stream does"),
)
#: How a WebSocket closes (4000 + the HTTP status of the same refusal).
CLOSE_CODES = {
    "1000": "the session ended (after SessionEnded)",
    "1011": "a log row that cannot be decoded, or an internal error (the reason names the position or an incident)",
    "4401": "a token is required: add ?token=TOKEN",
    "4404": "no such session",
    "4409": "another engine drives the session (.../deliberate only)",
    "4422": "a bad parameter, or (on .../deliberate) participants that cannot be built here",
    "4503": "the log refused the write, e.g. a full disk (.../deliberate only)",
}

#: The largest log position (SQLite integers are 64-bit).
MAX_POSITION = (1 << 63) - 1

#: A log position; empty is as if not given (0: from the start).
_POSITION = {"anyOf": [{"type": "integer", "minimum": 0, "maximum": MAX_POSITION}, {"const": ""}]}
_FROM = {"name": "from", "in": "query", "required": False,
         "description": "resume after this log position (the `id:` / `position` of the last event seen)",
         "schema": _POSITION}
_SPEED = {"name": "speed", "in": "query", "required": False,
          "description": "re-stream the recorded session at its recorded pace times this (0: no pauses)",
          "schema": {"type": "number", "minimum": 0}}
_TOKEN = {"name": "token", "in": "query", "required": False,
          "description": "the server's token, for clients that cannot set `Authorization` (browsers)",
          "schema": {"type": "string"}}
#: Query and header parameters by (method, path) (path parameters are read from the path itself).
PARAMETERS: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("get", "/compare"): [{"name": name, "in": "query", "required": True, "description": f"session {name.upper()}",
                           "schema": {"type": "string", "minLength": 1}} for name in ("a", "b")],
    ("get", "/sessions/{session_id}/export"): [{"name": "format", "in": "query", "required": False,
                                       "schema": {"enum": ["md", "json", "yaml"], "default": "md"}}],
    ("get", "/sessions/{session_id}/events"): [_FROM, _SPEED, _TOKEN, {
        "name": "Last-Event-ID", "in": "header", "required": False,
        "description": "as `from` (EventSource sends it when it reconnects); it wins over `from`",
        "schema": _POSITION}],
}
#: The WebSockets' query parameters, by path.
WEBSOCKET_PARAMETERS: dict[str, list[dict[str, Any]]] = {
    "/sessions/{session_id}/stream": [_FROM, _SPEED, _TOKEN],
    "/sessions/{session_id}/deliberate": [_FROM, _TOKEN],
}

_ERRORS = {
    "401": "a token is required (when the server has one)",
    "403": "the request comes from a page of another origin",
    "404": "no such session",
    "409": "the step does not fit the session's status, or another engine drives the session",
    "413": "the request body is too large",
    "415": "a state-changing request that is not `content-type: application/json` (a form-encoded body is "
           "taken only when it is a JSON object from a client that is not a page of another site: `curl -d`)",
    "421": "a Host that is not a loopback name, on a server bound to loopback",
    "422": "the request is invalid (field errors in `detail`; JSON nested more than 32 levels included)",
    "500": "a log row that cannot be decoded (`detail.position` names it), or an internal error (an incident id)",
    "503": "the log cannot take the write now (e.g. a full disk); nothing committed was lost",
}
#: What every operation can answer: the guards' refusals and the server's own failures.
_ALWAYS = ("401", "403", "421", "500", "503")
#: The export's media type of each format (app.CONTENT_TYPES sends them).
EXPORT_TYPES = {"md": "text/markdown", "json": "application/json", "yaml": "application/yaml"}
_ERROR_SCHEMA = {"type": "object", "required": ["error"],
                 "properties": {"error": {"type": "string"}, "detail": {}}}


def _success(path: str, description: str) -> dict[str, Any]:
    if path.endswith("/export"):
        media = list(EXPORT_TYPES.values())
    else:
        media = ["text/event-stream" if path.endswith("/events") else "application/json"]
    return {"description": description, "content": {m: {"schema": {}} for m in media}}


def error_statuses(method: str, path: str) -> list[str]:
    """The error statuses an operation can answer, in order."""
    codes = set(_ALWAYS)
    if "{" in path or path == "/compare":  # compare names two sessions
        codes.add("404")
    if (method, path) in PARAMETERS:  # a query or header parameter can be bad
        codes.add("422")
    if method == "post":
        codes |= {"413", "415", "422"}
        if path != "/sessions":  # every step on a session can meet its status, or another engine
            codes.add("409")
    return sorted(codes)


def _path_parameters(path: str) -> list[dict[str, Any]]:
    names = [name for name in ("session_id", "participant") if "{" + name + "}" in path]
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in names]


# -- what this server takes from an API caller (docs/security.md), as far as a schema can say it ----------

#: A model or tool name (engine.trust.MODEL_NAME).
_MODEL = "[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}"
#: The provider kinds an API caller may name with any model, when the operator has not disabled them.
_MODEL_KINDS = ("mock", "anthropic", "openai", "ollama")
_SPEC_HELP = ("a participant spec, PROVIDER:MODEL, of a kind this server enables for API callers (a kind "
              "whose API key is not set where the server runs is a 422 naming the variable). Options after `?` "
              "(mock's seed, word_delay, fail_on, garble; replies, tool_mode, tools) are taken, not described here")


def spec_schema(config: ForgeConfig) -> dict[str, Any]:
    """The participant specs an API caller may name on this server: its enabled model kinds with any
    model name, and its own pools, cli and daemon tools by name."""
    kinds = [kind for kind in _MODEL_KINDS if config.provider_enabled(kind)]
    alternatives = [f"(?:{'|'.join(kinds)}):{_MODEL}"] if kinds else []
    for kind, names in (("pool", config.pools), ("cli", config.cli), ("daemon", config.daemon)):
        if names:
            alternatives.append(f"{kind}:(?:{'|'.join(re.escape(name) for name in sorted(names))})")
    if not alternatives:
        return {"description": "none: this server enables no participant kind for API callers", "not": {}}
    return {"type": "string", "pattern": f"^(?:{'|'.join(alternatives)})$", "description": _SPEC_HELP}


def _tools_schema(config: ForgeConfig) -> dict[str, Any]:
    """Comma-separated tool categories or names of ``[forge.tools] api_tools`` (which the config holds
    to read-only tools): what an API caller may enable."""
    words = [re.escape(word) for word in config.tools.api_tools]
    word = f"(?:{'|'.join(words)})" if words else "(?!)"
    return {"type": "string", "default": "", "pattern": f"^(?:{word}(?:,{word})*)?$",
            "description": "tools of [forge.tools] api_tools that only read"}


def _describe_bodies(components: dict[str, Any], config: ForgeConfig) -> None:
    """Narrow the schemas msgspec wrote from the bodies to what this server takes: the participant
    specs and tools it allows, the settings' bounds, a human's name, one of name and title."""
    spec = spec_schema(config)
    tools = _tools_schema(config)
    participant = components.pop("ParticipantSpec")
    properties = participant["properties"]
    components["AIParticipant"] = {
        **participant, "title": "AIParticipant",
        "properties": {**properties, "spec": spec, "tools": tools, "kind": {"const": "ai", "default": "ai"}},
        "required": ["spec"],
        # replies=json cannot be combined with tools (critiques and votes then come as text)
        "if": {"required": ["tools"], "properties": {"tools": {"pattern": "[A-Za-z]"},
                                                      "tool_mode": {"not": {"const": "off"}}}},
        "then": {"properties": {"replies": {"enum": ["auto", "text"]}}},
    }
    components["HumanParticipant"] = {
        **participant, "title": "HumanParticipant", "description": "a human: a name, nothing runs for it",
        "properties": {**properties, "kind": {"const": "human"}, "name": {"type": "string", "minLength": 1}},
        "required": ["kind", "name"],
    }
    create = components["CreateSession"]
    create["properties"]["participants"] = {
        **create["properties"]["participants"], "maxItems": config.max_participants,
        "items": {"anyOf": [spec, {"$ref": "#/components/schemas/AIParticipant"},
                            {"$ref": "#/components/schemas/HumanParticipant"}]}}
    create["properties"]["config"] = {
        "type": "object", "default": {}, "additionalProperties": False,
        "description": "session settings (the workspace is the operator's: not settable here; a setting that "
                       "bounds what a session spends may be lowered, not raised past this server's own value)",
        "properties": _settings_schema(config)}
    _cap_texts(components)
    fork = components["ForkSession"]
    fork["properties"]["participants"] = {**create["properties"]["participants"]}
    fork["properties"]["config"] = create["properties"]["config"]
    create["not"] = {"required": ["name", "title"],  # `name` is the seed's word for `title`: give one
                     "properties": {"name": {"type": "string"}, "title": {"type": "string"}}}
    components["SwitchProvider"]["properties"]["spec"] = spec


def _settings_schema(config: ForgeConfig) -> dict[str, Any]:
    """Each setting an API caller may give, typed, within the range the engine holds it to on this
    server (``untrusted_setting_ranges``: the operator's value tops a capped one)."""
    properties: dict[str, Any] = {"synthesizer": {"anyOf": [{"type": "string", "minLength": 1}, {"type": "null"}],
                                                  "description": "the name of one of the session's AI participants"},
                                  "convergence": {"anyOf": [{"type": "string", "enum": list(get_args(ConvergenceRule))},
                                                            {"type": "null"}], "default": None,
                                                  "description": "what ends the session converged: votes, the "
                                                                 "similarity of successive syntheses, or both"}}
    for name, allowed in untrusted_setting_ranges(config).items():
        typed: dict[str, Any] = {"type": allowed.kind}
        number = int if allowed.kind == "integer" else float
        typed["exclusiveMinimum" if allowed.low_open else "minimum"] = number(allowed.low)
        typed["exclusiveMaximum" if allowed.high_open else "maximum"] = number(allowed.high)
        shown = ITERATIONS_KEY if name == DEPRECATED_ITERATIONS_KEY else name
        properties[shown] = {"anyOf": [typed, {"type": "null"}], "default": None}
    return properties


#: (schema, property) of each text an API caller writes, and its cap in TEXT_CAPS.
_CAPPED_TEXTS = (
    ("CreateSession", "goal", "goal"), ("CreateSession", "title", "title"), ("CreateSession", "name", "title"),
    ("CreateSession", "constraints", "constraints"), ("AIParticipant", "name", "name"),
    ("HumanParticipant", "name", "name"), ("Persona", "name", "name"), ("Persona", "tone", "persona.tone"),
    ("Persona", "approach", "persona.approach"), ("Persona", "traits", "persona.traits"),
    ("Persona", "specialties", "persona.specialties"), ("HumanDraft", "author", "name"),
    ("HumanDraft", "content", "draft"), ("HumanVote", "voter", "name"), ("HumanVote", "reasons", "reasons"),
    ("HumanVote", "concerns", "concerns"), ("Cancel", "reason", "reason"),
    ("ForkSession", "constraints", "constraints"), ("ForkSession", "drop", "name"), ("ForkSession", "humans", "name"),
)


def _cap_texts(components: dict[str, Any]) -> None:
    """``maxLength`` (and ``maxItems`` for a list) on each text an API caller writes: the engine's caps."""
    for schema, name, field in _CAPPED_TEXTS:
        cap = TEXT_CAPS[field]
        _cap_strings(components[schema]["properties"][name], cap.chars, cap.items if cap.items > 1 else None,
                     LABEL_PATTERN if field in LABELS else None)


def _cap_strings(schema: dict[str, Any], chars: int, items: int | None, pattern: str | None) -> None:
    """Every string a property's schema allows (in an anyOf, or as a list's items) gets ``chars`` at
    most (and the ``pattern`` of a label)."""
    if schema.get("type") == "string":
        schema["maxLength"] = chars
        if pattern is not None:
            schema["pattern"] = pattern
    if schema.get("type") == "array":
        if items is not None:
            schema["maxItems"] = items
        _cap_strings(schema.setdefault("items", {}), chars, None, pattern)
    for option in schema.get("anyOf", ()):
        _cap_strings(option, chars, items, pattern)


def openapi_document(root: str, config: ForgeConfig | None = None) -> dict[str, Any]:
    """The document of the API served under ``root`` by a server with ``config`` (what its API callers
    may name and set; the defaults without one)."""
    body_types = [body for _, _, _, body, _, _ in ENDPOINTS if body is not None] + [bodies.NoBody]
    _, components = msgspec.json.schema_components(body_types, ref_template="#/components/schemas/{name}")
    _describe_bodies(components, config or ForgeConfig())
    components["Error"] = _ERROR_SCHEMA
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, body, status, description in ENDPOINTS:
        operation: dict[str, Any] = {
            "summary": summary,
            "responses": {str(status): _success(path, description),
                          **{code: {"description": _ERRORS[code], "content": error}
                             for code in error_statuses(method, path)}},
        }
        parameters = _path_parameters(path) + PARAMETERS.get((method, path), [])
        if parameters:
            operation["parameters"] = parameters
        if method == "post":  # a POST always sends JSON, `{}` where it takes nothing (see guards.BrowserGuard)
            schema = (body or bodies.NoBody).__name__
            operation["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{schema}"}}}}
        paths.setdefault(root + path, {})[method] = operation
    websockets = {root + path: {"summary": summary, "parameters": _path_parameters(path) + WEBSOCKET_PARAMETERS[path],
                                "close_codes": CLOSE_CODES}
                  for path, summary in WEBSOCKETS}
    return {
        "openapi": "3.1.0",
        "info": {"title": "forge_actors", "version": "1",
                 "description": "Deliberations of LLMs and humans, streamed live from an event log. The "
                                "WebSockets (not HTTP operations) are under `x-websockets`."},
        "paths": paths,
        "x-websockets": websockets,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
