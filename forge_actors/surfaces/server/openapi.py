"""The OpenAPI 3.1 document of the API, built from the same table the tests check the routes against."""

from __future__ import annotations

from typing import Any

import msgspec

from forge_actors.surfaces.server import bodies

#: (method, path under the API root, summary, request body, success status, success description)
ENDPOINTS: tuple[tuple[str, str, str, type | None, int, str], ...] = (
    ("post", "/sessions", "Create a session", bodies.CreateSession, 201, "the session (schema forge_actors.session/1)"),
    ("get", "/sessions", "List the sessions", None, 200, "one summary per session"),
    ("get", "/sessions/{session_id}", "A session's state", None, 200, "the session (schema forge_actors.session/1)"),
    ("post", "/sessions/{session_id}/deliberate", "Run (or resume) the session to its end in the background",
     None, 202, "started; follow the events"),
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
    ("get", "/sessions/{session_id}/stream", "WebSocket: events after ?from=POSITION, then live "
     "(?speed= re-streams at the recorded pace); one JSON object per message", None, 101, "switching protocols"),
    ("get", "/sessions/{session_id}/deliberate", "WebSocket: start (or resume, or join) the deliberation and "
     "stream its events from ?from=POSITION (default: all) as /stream does; closes 1000 after SessionEnded, 4409 "
     "when another engine drives the session", None, 101, "switching protocols"),
    ("get", "/providers", "Each provider (key present or not, reachable) and each pool's member health",
     None, 200, "providers and pools"),
    ("get", "/openapi.json", "This document", None, 200, "OpenAPI 3.1"),
)

#: The largest log position (SQLite integers are 64-bit).
MAX_POSITION = (1 << 63) - 1

_FROM = {"name": "from", "in": "query", "required": False,
         "description": "resume after this log position (the `id:` / `position` of the last event seen)",
         "schema": {"type": "integer", "minimum": 0, "maximum": MAX_POSITION}}
_SPEED = {"name": "speed", "in": "query", "required": False,
          "description": "re-stream the recorded session at its recorded pace times this (0: no pauses)",
          "schema": {"type": "number", "minimum": 0}}
_TOKEN = {"name": "token", "in": "query", "required": False,
          "description": "the server's token, for clients that cannot set `Authorization` (browsers)",
          "schema": {"type": "string"}}
#: Query and header parameters by (method, path) (path parameters are read from the path itself).
PARAMETERS: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("get", "/sessions/{session_id}/export"): [{"name": "format", "in": "query", "required": False,
                                       "schema": {"enum": ["md", "json", "yaml"], "default": "md"}}],
    ("get", "/sessions/{session_id}/events"): [_FROM, _SPEED, _TOKEN, {
        "name": "Last-Event-ID", "in": "header", "required": False,
        "description": "as `from` (EventSource sends it when it reconnects); it wins over `from`",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_POSITION}}],
    ("get", "/sessions/{session_id}/stream"): [_FROM, _SPEED, _TOKEN],
    ("get", "/sessions/{session_id}/deliberate"): [_FROM, _TOKEN],
}

_ERRORS = {
    "401": "a token is required (when the server has one)",
    "403": "the request comes from a page of another origin",
    "404": "no such session (or route)",
    "409": "the step does not fit the session's status",
    "413": "the request body is too large",
    "415": "a state-changing request that is not `content-type: application/json` (a form-encoded body is "
           "taken only when it is a JSON object from a client that is not a page of another site: `curl -d`)",
    "421": "a Host that is not a loopback name, on a server bound to loopback",
    "422": "the request is invalid (field errors in `detail`)",
    "500": "a log row that cannot be decoded (`detail.position` names it), or an internal error (an incident id)",
}
_ERROR_SCHEMA = {"type": "object", "required": ["error"],
                 "properties": {"error": {"type": "string"}, "detail": {}}}
_NO_BODY = {"required": False, "description": "ignored; send `{}` (with `content-type: application/json`)",
            "content": {"application/json": {"schema": {"type": "object"}}}}


def _success(path: str, status: int, description: str) -> dict[str, Any]:
    if status == 101:
        return {"description": description}
    media = "text/event-stream" if path.endswith("/events") else (
        "text/markdown" if path.endswith("/export") else "application/json")
    return {"description": description, "content": {media: {"schema": {}}}}


def openapi_document(root: str) -> dict[str, Any]:
    body_types = [body for _, _, _, body, _, _ in ENDPOINTS if body is not None]
    _, components = msgspec.json.schema_components(body_types, ref_template="#/components/schemas/{name}")
    components["Error"] = _ERROR_SCHEMA
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, body, status, description in ENDPOINTS:
        operation: dict[str, Any] = {
            "summary": summary,
            "responses": {str(status): _success(path, status, description),
                          **{code: {"description": text, "content": error} for code, text in _ERRORS.items()}},
        }
        names = [name for name in ("session_id", "participant") if "{" + name + "}" in path]
        parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in names]
        parameters += PARAMETERS.get((method, path), [])
        if parameters:
            operation["parameters"] = parameters
        if body is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{body.__name__}"}}}}
        elif method == "post":
            operation["requestBody"] = _NO_BODY
        paths.setdefault(root + path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "forge_actors", "version": "1",
                 "description": "Deliberations of LLMs and humans, streamed live from an event log."},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
