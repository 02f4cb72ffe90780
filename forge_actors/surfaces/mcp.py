"""``forge mcp``: the council as a Model Context Protocol server, over stdio.

A coding assistant (Claude Code, any MCP client) starts ``forge mcp --db forge.db`` and calls
its tools: ``deliberate`` runs a whole deliberation and answers with the outcome, the final
synthesis, the last votes and the session id, reporting progress at every round; the others
read the log (``list_sessions``, ``get_session``, ``export_session``, ``search_sessions``), and
each session is a resource (``forge://sessions/{id}``, its Markdown export).

Who may name what: the caller is a model's tool call, so it is treated like an HTTP client:
every session goes through ``create_session(trusted=False)``, whose one policy (``engine.trust``)
holds each field it gives — goal, constraints, participants, settings, tools — to what an
untrusted caller may name; a council it names, and the defaults, are the operator's, used as
written. Everything is recorded in the log like any session, so ``forge show`` and ``forge replay``
work on what an assistant ran.

Errors reach the client as MCP tool errors carrying the engine's message, never a traceback
(an unexpected failure is logged to stderr and the client sees only that the tool failed). The log
out of service (its database unreachable, its file damaged) is said without where the log is: the
full error goes to stderr (``log_outage``).
stdout is the protocol: this module writes nothing else there, and logs go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

import anyio
import anyio.from_thread
import anyio.to_thread
import msgspec
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from mcp_types import Resource as McpResource
from pydantic import Field

from forge_actors import __version__
from forge_actors.core.export import FORMATS, comparison_markdown, export_document, render, settings_document
from forge_actors.engine import (
    EventStoreError,
    Forge,
    ForgeError,
    SessionNotFoundError,
    SessionState,
    choose_log,
    load_config,
    log_outage,
)
from forge_actors.surfaces.council import plan_deliberation, progress_line

__all__ = ["DEFAULT_DB", "SESSION_URI", "build_server", "main", "serve_stdio"]

logger = logging.getLogger(__name__)

DEFAULT_DB = "forge.db"
SESSIONS_URI = "forge://sessions"
SESSION_URI = "forge://sessions/{session_id}"
#: Sessions listed at most (``list_sessions``, ``resources/list``), newest first: a log holds thousands.
MAX_LISTED = 200
DEFAULT_LISTED = 50
#: The reason recorded when the client gives up on a ``deliberate`` call (it cancelled the request,
#: or hung up while it ran): the session is interrupted, as Ctrl-C does in ``forge run``.
INTERRUPTED_BY_CLIENT = "the MCP client cancelled the request or went away"

#: What the engine raises for a caller to read: its own errors and the log's (a full disk, a damaged file).
ENGINE_ERRORS = (ForgeError, EventStoreError)

INSTRUCTIONS = (
    "A council of AI participants deliberates on a goal in rounds (draft, critique, synthesis, convergence "
    "votes) and answers with its final synthesis. Call `deliberate` with a goal; read past sessions with "
    "`list_sessions`, `get_session`, `export_session`, `search_sessions`, or the forge://sessions resources; "
    "`fork_session` asks 'what if' from any completed round of one (other participants, settings, constraints), "
    "and `compare_sessions` puts two side by side."
)


# -- what a call asks for ---------------------------------------------------------------------------------


# -- what a call answers ----------------------------------------------------------------------------------


def _votes_of(state: SessionState, round_number: int) -> list[dict[str, Any]]:
    return [{"voter": v.voter, "vote": v.vote, "reasons": list(v.reasons), "concerns": list(v.concerns),
             "by_human": v.by_human, "confidence": v.confidence}
            for v in state.votes_in(round_number).values()]


def last_votes(state: SessionState) -> dict[str, Any] | None:
    """The votes of the session's last convergence round, with its agreement; None before any."""
    convergence = state.last_round_of("convergence")
    if convergence is None:
        return None
    return {"round": convergence.round, "iteration": convergence.iteration, "agreement": convergence.score,
            "votes": _votes_of(state, convergence.round)}


def outcome_of(state: SessionState) -> dict[str, Any]:
    """What ``deliberate`` answers: outcome, final synthesis, last votes, session id, tokens."""
    synthesis = state.synthesis
    usage = state.total_usage
    return {
        "session_id": state.session_id,
        "outcome": state.status,
        "reason": state.end_reason,
        "final_score": state.final_score,
        "synthesis": None if synthesis is None else {"author": synthesis.author, "round": synthesis.round,
                                                     "iteration": synthesis.iteration, "content": synthesis.content},
        "votes": last_votes(state),
        "rounds": len(state.rounds),
        "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
        "resource": SESSION_URI.format(session_id=state.session_id),
    }


def outcome_markdown(outcome: dict[str, Any]) -> str:
    """The outcome as the model reading the tool result sees it: the synthesis first, then the votes."""
    head = f"**Outcome:** {outcome['outcome']}"
    if outcome["reason"]:
        head += f" — {outcome['reason']}"
    lines = [head, "", f"Session `{outcome['session_id']}` · {outcome['rounds']} round(s) · "
             f"full record: {outcome['resource']}", ""]
    synthesis = outcome["synthesis"]
    if synthesis is None:
        lines += ["_No synthesis was written._", ""]
    else:
        lines += [f"## Final synthesis (by {synthesis['author']}, iteration {synthesis['iteration']})", "",
                  synthesis["content"].strip(), ""]
    votes = outcome["votes"]
    if votes is not None:
        agreement = "n/a" if votes["agreement"] is None else f"{votes['agreement']:.0%}"
        lines += [f"## Votes (round {votes['round']}, agreement {agreement})", ""]
        for vote in votes["votes"]:
            why = "; ".join(vote["reasons"] + [f"concern: {c}" for c in vote["concerns"]])
            lines.append(f"- {vote['voter']}: {vote['vote']}" + (f" — {why}" if why else ""))
        lines.append("")
    return "\n".join(lines)


def session_summary(forge: Forge, session_id: str) -> dict[str, Any]:
    """``get_session``: status, participants, rounds (with scores), votes by round, usage."""
    state = forge.state(session_id)
    rounds = []
    for r in state.rounds:
        entry: dict[str, Any] = {"round": r.round, "kind": r.kind, "iteration": r.iteration, "status": r.status,
                                 "participants": list(r.participants), "succeeded": list(r.succeeded),
                                 "failed": list(r.failed), "reason": r.reason}
        if r.kind == "critique":
            entry["mean_scores"] = state.mean_scores(r.round)
        if r.kind == "convergence":
            entry["agreement"] = r.score
            entry["votes"] = _votes_of(state, r.round)
        rounds.append(entry)
    usage = forge.usage(session_id)
    return {
        "session_id": state.session_id, "title": state.title, "goal": state.goal,
        "constraints": list(state.constraints), "status": state.status, "ended": state.ended,
        "reason": state.end_reason, "final_score": state.final_score, "iteration": state.iteration,
        "settings": settings_document(state.settings),
        "participants": [{"name": p.name, "kind": p.kind, "provider": p.provider, "model": p.model}
                         for p in state.participants.values()],
        "rounds": rounds,
        "synthesis": None if state.synthesis is None else {"author": state.synthesis.author,
                                                           "iteration": state.synthesis.iteration,
                                                           "content": state.synthesis.content},
        "usage": msgspec.to_builtins(usage),
        "forked_from": msgspec.to_builtins(state.forked_from),
        "resource": SESSION_URI.format(session_id=state.session_id),
    }


def _json_text(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _result(structured: dict[str, Any], text: str | None = None) -> CallToolResult:
    """A tool result with both faces: text for the model, structured content for programs."""
    return CallToolResult(content=[TextContent(type="text", text=text if text is not None else _json_text(structured))],
                          structured_content=structured)


# -- the server --------------------------------------------------------------------------------------------


class _ForgeMCPServer(MCPServer):
    """MCPServer whose resource list also names the latest sessions (``forge://sessions/{id}``),
    so that clients offering resources to pick from (``@`` in Claude Code) show them."""

    def __init__(self, forge: Forge, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._forge = forge

    async def list_resources(self) -> list[McpResource]:
        listed = await super().list_resources()
        try:
            summaries = await anyio.to_thread.run_sync(self._forge.summaries)
        except ENGINE_ERRORS as exc:
            raise ResourceError(_for_client(exc)) from exc
        for summary in reversed(summaries[-MAX_LISTED:]):
            listed.append(McpResource(uri=SESSION_URI.format(session_id=summary.session_id),
                                      name=summary.session_id, title=summary.title or summary.session_id,
                                      description=f"{summary.status}, {summary.rounds} round(s)",
                                      mime_type="text/markdown"))
        return listed


def _for_client(exc: Exception) -> str:
    """An engine error as the client reads it: its message, or, for the log out of service, what may
    be said of that (the full error, naming the log and what its database said, goes to stderr)."""
    outage = log_outage(exc)
    if isinstance(exc, SessionNotFoundError) and exc.message == SessionNotFoundError(exc.session_id).message:
        return f"{exc}; the list_sessions tool lists them"
    if outage is None:
        return str(exc)
    logger.warning("a call failed: %s", exc)
    return outage.message


async def _engine_call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking engine call in a worker thread; the engine's errors become tool errors with its message."""
    try:
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
    except ENGINE_ERRORS as exc:
        raise ToolError(_for_client(exc)) from exc


def _resolve(forge: Forge, session_id: str) -> str:
    if not isinstance(session_id, str) or not session_id.strip():
        raise SessionNotFoundError(str(session_id), "give a session id (list_sessions shows them)")
    return forge.resolve(session_id.strip())


def build_server(forge: Forge) -> MCPServer:
    """The MCP server over ``forge`` (not started: ``serve_stdio`` runs it on stdin/stdout)."""
    server = _ForgeMCPServer(forge, name="forge", title="forge_actors council", version=__version__,
                             instructions=INSTRUCTIONS, log_level="WARNING")
    read_only = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                                open_world_hint=False)

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                                             open_world_hint=True))
    async def deliberate(
        goal: Annotated[str, Field(description="what the council should work on: a question, a design task...")],
        ctx: Context,
        participants: Annotated[list[str | dict[str, Any]] | None, Field(
            description="participant specs such as 'mock:alice', 'ollama:llama3.2', 'pool:fast' (only what the "
                        "server's forge.toml allows), or tables {spec, name, persona}; default: the council 'forge' "
                        "if configured, else the server's default participants")] = None,
        council: Annotated[str | None, Field(description="a council configured in forge.toml "
                                                         "([forge.councils.NAME]); instead of participants")] = None,
        constraints: Annotated[list[str] | None, Field(description="requirements the answer must meet")] = None,
        max_iterations: Annotated[int | None, Field(description="most Synthesis -> Convergence passes (1-100)")] = None,
        convergence_threshold: Annotated[float | None, Field(
            description="share of AGREE votes that ends the session as converged (0-1)")] = None,
        tools: Annotated[str | None, Field(
            description="tools AI participants may call over the server's workspace, e.g. 'file,search,git' "
                        "(read-only ones the server allows)")] = None,
    ) -> CallToolResult:
        """Run a whole deliberation on GOAL: participants draft, critique each other (scored), one synthesizes,
        all vote; repeated until they converge or run out of iterations. Returns the outcome, the final synthesis,
        the last votes and the session id (read it later with get_session / export_session). Reports progress
        at every round."""
        plan = await _engine_call(plan_deliberation, forge, participants=participants, council=council,
                                  max_iterations=max_iterations, convergence_threshold=convergence_threshold,
                                  tools=tools)
        session_id = await _engine_call(plan.create, forge, goal, constraints or ())
        logger.info("MCP deliberation %s started (%s)", session_id, plan.source)
        await _follow(forge, session_id, ctx.report_progress)
        outcome = outcome_of(await _engine_call(forge.state, session_id))
        return _result(outcome, outcome_markdown(outcome))

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                                             open_world_hint=True))
    async def fork_session(
        session_id: Annotated[str, Field(description="the session to fork: an id, or a unique prefix of one")],
        at_round: Annotated[int, Field(description="the completed round to fork after (its rounds up to there "
                                                   "are copied, not run again)")],
        ctx: Context,
        participants: Annotated[list[str | dict[str, Any]] | None, Field(
            description="participants that join at the next round (specs the server's forge.toml allows); one "
                        "named like a participant of the session moves it to that provider")] = None,
        drop: Annotated[list[str] | None, Field(description="names of participants that stop")] = None,
        constraints: Annotated[list[str] | None, Field(description="constraints added to the session's")] = None,
        max_iterations: Annotated[int | None, Field(description="most Synthesis -> Convergence passes (1-100)")] = None,
        convergence_threshold: Annotated[float | None, Field(
            description="share of AGREE votes that ends the session as converged (0-1)")] = None,
        deliberate: Annotated[bool, Field(description="run the fork to its end (else only create it)")] = True,
    ) -> CallToolResult:
        """What if: a new session that is SESSION_ID up to AT_ROUND, then goes on with other participants,
        settings or constraints. Rounds up to AT_ROUND cost nothing (they are copied); the original is left as it
        is. Answers like deliberate (or, with deliberate false, with the new session's id); compare_sessions then
        shows where the two part."""
        def fork() -> str:
            return forge.fork(_resolve(forge, session_id), at_round, participants or (), drop=drop or (),
                              constraints=constraints or (), trusted=False, max_iterations=max_iterations,
                              convergence_threshold=convergence_threshold)
        fork_id = await _engine_call(fork)
        logger.info("MCP fork %s of %s after round %s", fork_id, session_id, at_round)
        if not deliberate:
            return _result(session_summary(forge, fork_id))
        await _follow(forge, fork_id, ctx.report_progress, from_position=await _engine_call(forge.last_position))
        outcome = outcome_of(await _engine_call(forge.state, fork_id))
        return _result(outcome, outcome_markdown(outcome))

    @server.tool(annotations=read_only)
    async def compare_sessions(
        a: Annotated[str, Field(description="a session id, or a unique prefix of one")],
        b: Annotated[str, Field(description="the session to compare it with")],
    ) -> CallToolResult:
        """Two sessions side by side, rounds aligned by number: texts, critique scores, syntheses with a line diff,
        votes, outcome, tokens and cost, and the first round where they differ (a fork and its parent: the
        first round after the fork that differs). Markdown for the model, the whole comparison as structured
        content (schema forge_actors.comparison/1)."""
        def compare() -> Any:
            return forge.compare(_resolve(forge, a), _resolve(forge, b))
        comparison = await _engine_call(compare)
        return _result(msgspec.to_builtins(comparison), comparison_markdown(comparison))

    @server.tool(annotations=read_only)
    async def list_sessions(
        limit: Annotated[int, Field(description=f"how many, newest first (1-{MAX_LISTED})")] = DEFAULT_LISTED,
    ) -> CallToolResult:
        """The sessions in the log, newest first: id, title, status, rounds, tokens."""
        if not 1 <= limit <= MAX_LISTED:
            raise ToolError(f"limit is between 1 and {MAX_LISTED}")
        summaries = await _engine_call(forge.summaries)
        rows = [{**msgspec.to_builtins(s), "resource": SESSION_URI.format(session_id=s.session_id)}
                for s in reversed(summaries[-limit:])]
        return _result({"sessions": rows, "total": len(summaries)})

    @server.tool(annotations=read_only)
    async def get_session(
        session_id: Annotated[str, Field(description="a session id, or a unique prefix of one")],
    ) -> CallToolResult:
        """A session's state: status, outcome, participants, rounds with scores and votes, final synthesis,
        token usage and estimated cost."""
        def summary() -> dict[str, Any]:
            return session_summary(forge, _resolve(forge, session_id))
        return _result(await _engine_call(summary))

    @server.tool(annotations=read_only)
    async def export_session(
        session_id: Annotated[str, Field(description="a session id, or a unique prefix of one")],
        format: Annotated[str, Field(description="md, json or yaml")] = "md",
    ) -> str:
        """A session's full record: Markdown, or JSON / YAML in the schema forge_actors.session/1."""
        if format not in FORMATS:
            raise ToolError(f"format must be one of {', '.join(FORMATS)}, not {str(format)[:20]!r}")

        def export() -> str:
            state = forge.state(_resolve(forge, session_id))
            return render(export_document(state, forge.config.pricing), format)
        return await _engine_call(export)  # type: ignore[no-any-return]

    @server.tool(annotations=read_only)
    async def search_sessions(
        query: Annotated[str, Field(description="plain words to look for in past contributions")],
        limit: Annotated[int, Field(description="how many hits (1-20)")] = 5,
    ) -> CallToolResult:
        """Past decisions by text: the best-matching contributions across every session of the log,
        with their session id, title, round kind, participant and an excerpt."""
        if not 1 <= limit <= 20:
            raise ToolError("limit is between 1 and 20")
        hits = await _engine_call(forge.search_history, query, limit)
        return _result({"hits": [{**msgspec.to_builtins(h), "resource": SESSION_URI.format(session_id=h.session_id)}
                                 for h in hits]})

    @server.resource(SESSIONS_URI, name="sessions", title="Sessions in the log", mime_type="application/json",
                     description=f"the latest {MAX_LISTED} sessions, newest first, with their resource URIs")
    async def sessions_listing() -> str:
        summaries = await anyio.to_thread.run_sync(forge.summaries)
        return _json_text([{**msgspec.to_builtins(s), "resource": SESSION_URI.format(session_id=s.session_id)}
                           for s in reversed(summaries[-MAX_LISTED:])])

    @server.resource(SESSION_URI, name="session", title="A session's record (Markdown)", mime_type="text/markdown",
                     description="the session's Markdown export: goal, participants, every round, votes, usage")
    async def session_markdown(session_id: str) -> str:
        def export() -> str:
            state = forge.state(_resolve(forge, session_id))
            return render(export_document(state, forge.config.pricing), "md")
        try:
            return await anyio.to_thread.run_sync(export)
        except SessionNotFoundError as exc:
            raise ResourceNotFoundError(str(exc)) from exc
        except ENGINE_ERRORS as exc:  # e.g. an unreachable database: say so, and that it may pass
            raise ResourceError(_for_client(exc)) from exc

    return server


async def _follow(forge: Forge, session_id: str,
                  report: Callable[[float, float | None, str | None], Awaitable[None]], from_position: int = 0) -> None:
    """Run the session to its end in a worker thread, reporting progress for its rounds, votes and end.

    If the client cancels the request or hangs up, the session is interrupted (what Ctrl-C does in
    ``forge run``): nothing more is spent for nobody, nothing is lost, and ``forge resume`` continues it.
    The SDK cancels the handler alike in both cases, so they cannot be told apart here."""
    count = 0
    stopped = threading.Event()

    async def send(message: str) -> None:
        nonlocal count
        count += 1  # progress must increase with each notification; the total is not known in advance
        await report(count, None, message)

    def watch() -> None:
        for recorded in forge.deliberate(session_id, from_position):
            message = progress_line(recorded.event)
            if message is None or stopped.is_set():
                continue
            try:
                anyio.from_thread.run(send, message)
            except Exception:  # a progress note that cannot be sent must not stop the deliberation
                logger.debug("session %s: could not send progress", session_id, exc_info=True)

    try:
        await _run_watch(watch)
    except anyio.get_cancelled_exc_class():
        stopped.set()
        with anyio.CancelScope(shield=True):
            logger.info("session %s: the MCP client cancelled the request or went away; interrupting the session "
                        "(forge resume %s continues it)", session_id, session_id)
            await anyio.to_thread.run_sync(forge.interrupt, session_id, INTERRUPTED_BY_CLIENT)
        raise
    finally:
        stopped.set()


async def _run_watch(watch: Callable[[], None]) -> None:
    try:
        await anyio.to_thread.run_sync(watch, abandon_on_cancel=True)
    except ENGINE_ERRORS as exc:
        raise ToolError(_for_client(exc)) from exc


def serve_stdio(forge: Forge) -> None:
    """Serve ``forge`` over MCP on stdin/stdout until the client closes stdin (blocking).

    The entry point of ``forge mcp``: the caller opens the engine (``--db``, ``--config``) and closes it after."""
    anyio.run(build_server(forge).run_stdio_async)


# -- the command ---------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forge mcp", description="Serve the council to MCP clients over stdio.")
    parser.add_argument("--db", help=f"the event log, a path or a postgresql:// URL (default: $FORGE_DB, else "
                                     f"forge.toml's database, else ./{DEFAULT_DB})")
    parser.add_argument("--config", help="forge.toml to use (default: $FORGE_CONFIG, else ./forge.toml)")
    return parser


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    """``forge mcp [--db PATH|URL] [--config FILE]``: 0 when the client hung up, 2 on a bad config or log."""
    env = dict(os.environ if environ is None else environ)
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config, env)
        forge = Forge(choose_log(args.db, env, lambda: config.database).target, config)
    except ENGINE_ERRORS as exc:
        print(f"forge mcp: {exc}", file=sys.stderr)
        return 2
    with forge:
        serve_stdio(forge)
    return 0


if __name__ == "__main__":
    sys.exit(main())
