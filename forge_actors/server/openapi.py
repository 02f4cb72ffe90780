"""The OpenAPI 3.1 document of the API, built from the same table the tests check the routes against."""

from __future__ import annotations

from typing import Any

import msgspec

from forge_actors.server import bodies

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
    ("get", "/providers", "Each provider (key present or not, reachable) and each pool's member health",
     None, 200, "providers and pools"),
    ("get", "/openapi.json", "This document", None, 200, "OpenAPI 3.1"),
)

_ERRORS = {
    "401": "a token is required (when the server has one)",
    "404": "no such session",
    "409": "the step does not fit the session's status",
    "413": "the request body is too large",
    "422": "the request is invalid (field errors in `detail`)",
}


def openapi_document(root: str) -> dict[str, Any]:
    body_types = [body for _, _, _, body, _, _ in ENDPOINTS if body is not None]
    _, components = msgspec.json.schema_components(body_types, ref_template="#/components/schemas/{name}")
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, body, status, description in ENDPOINTS:
        operation: dict[str, Any] = {
            "summary": summary,
            "responses": {str(status): {"description": description},
                          **{code: {"description": text} for code, text in _ERRORS.items()}},
        }
        names = [name for name in ("session_id", "participant") if "{" + name + "}" in path]
        if names:
            operation["parameters"] = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                                       for name in names]
        if body is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{body.__name__}"}}}}
        paths.setdefault(root + path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "forge_actors", "version": "1",
                 "description": "Deliberations of LLMs and humans, streamed live from an event log."},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
