"""The ``forge`` command: run, list, show, export, replay, resume and re-run deliberations.

It talks to the engine API only (``Forge``). On a terminal it shows a live view; when
stdout is not a terminal, or with ``--json``, it writes one JSON event per line and
keeps diagnostics on stderr.

Exit codes: 0 converged (or the command did its job), 1 the session ended without
converging (max_rounds, no_quorum, cancelled), 2 a usage or configuration error, 3 the session
failed, 130 interrupted (Ctrl-C; the session can be resumed).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from forge_actors import __version__
from forge_actors.core.export import FORMATS, export_document, render
from forge_actors.core.pricing import format_cost
from forge_actors.core.state import SessionState
from forge_actors.engine import (
    ConfigError,
    CorruptEventError,
    EventStoreError,
    Forge,
    ForgeConfig,
    ForgeError,
    LogWriteError,
    NotAnEventLogError,
    RecordedEvent,
    load_config,
    probe_providers,
)
from forge_actors.surfaces.terminal import JsonLinesView, LiveView

EXIT_OK, EXIT_NOT_CONVERGED, EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_DB = "forge.db"


class UsageError(Exception):
    """A problem with what was asked: one line to stderr, exit 2."""


# -- arguments ---------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", help=f"the event log (default: $FORGE_DB, else ./{DEFAULT_DB})")
    common.add_argument("--config", help="forge.toml to use (default: $FORGE_CONFIG, else ./forge.toml)")
    common.add_argument("--json", action="store_true", help="machine-readable output (JSON) even on a terminal")
    common.add_argument("--log-level", default=None, choices=LOG_LEVELS, type=str.upper,
                        help="log to stderr from this level on (default: $FORGE_LOG_LEVEL, else WARNING)")

    parser = argparse.ArgumentParser(prog="forge", description="A deliberation engine: several LLMs and humans "
                                     "draft, critique, synthesize and vote, streaming live into a replayable log.")
    parser.add_argument("-V", "--version", action="version", version=f"forge {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", parents=[common], help="run a whole deliberation on GOAL")
    run.add_argument("goal", metavar="GOAL")
    run.add_argument("-p", "--participant", dest="participants", action="append", metavar="SPEC",
                     help="a participant, e.g. mock:alice, anthropic:claude-sonnet-4-20250514 (repeatable)")
    run.add_argument("--title")
    run.add_argument("--max-rounds", type=int, metavar="N")
    run.add_argument("--threshold", type=float, metavar="X", help="convergence threshold, 0-1")
    run.add_argument("--round-timeout", type=float, metavar="S", help="seconds a participant gets per round")
    run.add_argument("--seed", type=int, metavar="N")
    run.add_argument("--tools", metavar="LIST",
                     help="tools every AI participant may call, by name or category (e.g. file,search,git); "
                          "a spec's own ?tools= wins")
    run.add_argument("--workspace", metavar="DIR",
                     help="the folder the tools read (default with --tools: the current folder)")

    commands.add_parser("sessions", parents=[common], help="list the sessions in the log")
    for name, text in (("show", "a session's state"), ("resume", "continue an interrupted session"),
                       ("rerun", "re-run a recorded session through the replay provider")):
        sub = commands.add_parser(name, parents=[common], help=text)
        sub.add_argument("session", metavar="ID", help="a session id or a unique prefix of one")
    export = commands.add_parser("export", parents=[common], help="export a session as Markdown, JSON or YAML")
    export.add_argument("session", metavar="ID")
    export.add_argument("--format", choices=FORMATS, default="md")
    export.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    replay = commands.add_parser("replay", parents=[common], help="re-stream a past session at its recorded pace")
    replay.add_argument("session", metavar="ID")
    replay.add_argument("--speed", type=float, default=1.0, metavar="X", help="pace multiplier (0: no pauses)")
    replay.add_argument("--max-pause", type=float, default=None, metavar="S", help="cap each pause at S seconds")
    commands.add_parser("providers", parents=[common], help="each provider: key present, base URL, reachable")
    switch = commands.add_parser("switch", parents=[common], help="move a participant to another provider "
                                 "(between rounds)")
    switch.add_argument("session", metavar="ID")
    switch.add_argument("participant", metavar="PARTICIPANT")
    switch.add_argument("spec", metavar="SPEC", help="the new provider, e.g. ollama:llama3.2 or pool:fast")
    serve = commands.add_parser("serve", parents=[common], help="serve the HTTP API, live streams and the web page")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--token", help="require this bearer token (default: $FORGE_API_TOKEN)")
    return parser


# -- plumbing ------------------------------------------------------------------------------------------


class Context:
    def __init__(self, args: argparse.Namespace, environ: dict[str, str]) -> None:
        self.args = args
        self.environ = environ
        self.json = bool(args.json) or not sys.stdout.isatty()
        self.out = Console(highlight=False)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self.config: ForgeConfig = load_config(args.config, environ)
        self.db = args.db or environ.get("FORGE_DB") or DEFAULT_DB

    def open(self, create: bool = False) -> Forge:
        if not create and not Path(self.db).exists():
            raise UsageError(f"no event log at {self.db}: run `forge run GOAL` first, or give --db / FORGE_DB")
        return Forge(self.db, self.config, create=create)

    def note(self, message: str) -> None:
        self.err.print(Text(message, style="dim"))


def _outcome_code(state: SessionState) -> int:
    if state.status == "converged":
        return EXIT_OK
    if state.status == "failed":
        return EXIT_FAILED
    if state.status in ("max_rounds", "no_quorum", "cancelled"):
        return EXIT_NOT_CONVERGED
    return EXIT_INTERRUPTED


def _follow(ctx: Context, forge: Forge, session_id: str, events: Iterable[RecordedEvent],
            initial: SessionState | None = None) -> int:
    """Show events as they come; on Ctrl-C record the interruption and say how to resume."""
    try:
        if ctx.json:
            JsonLinesView(sys.stdout).run(events)
            state = forge.state(session_id)
        else:
            view = LiveView(ctx.out, initial, ctx.config.pricing)
            view.run(events)
            view.print_outcome()
            state = view.state
    except LogWriteError as exc:  # the log could not take the session's appends: say how to go on
        db = f" --db {ctx.db}" if ctx.db != DEFAULT_DB else ""
        raise exc.with_next_step(f"resume (forge resume {session_id}{db})") from exc.__cause__
    except (KeyboardInterrupt, BrokenPipeError) as stop:
        closed = isinstance(stop, BrokenPipeError)
        forge.interrupt(session_id, "the output pipe was closed" if closed else "interrupted by the user (Ctrl-C)")
        if closed:  # nobody reads stdout any more: keep Python from complaining about it at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        db = f" --db {ctx.db}" if ctx.db != DEFAULT_DB else ""
        ctx.err.print(f"interrupted; the log is consistent. Continue with: forge resume {session_id}{db}")
        return EXIT_INTERRUPTED
    return _outcome_code(state)


# -- commands -----------------------------------------------------------------------------------------------


def cmd_run(ctx: Context) -> int:
    args = ctx.args
    with ctx.open(create=True) as forge:
        participants: list[Any] | None = args.participants
        why = None
        if not participants:
            participants, why = forge.default_participants(ctx.environ)
        workspace = args.workspace
        if workspace is None and (args.tools or _specs_name_tools(participants)):
            workspace = forge.config.settings.workspace or "."
        session_id = forge.create_session(
            args.goal, participants, title=args.title, max_rounds=args.max_rounds,
            convergence_threshold=args.threshold, round_timeout_seconds=args.round_timeout, seed=args.seed,
            tools=args.tools or "", workspace=workspace,
        )
        if why:
            ctx.note(why)
        ctx.note(f"session {session_id} · log {forge.path}")
        return _follow(ctx, forge, session_id, forge.deliberate(session_id))


def _specs_name_tools(participants: list[Any]) -> bool:
    return any(isinstance(p, str) and "tools=" in p.partition("?")[2] for p in participants)


def cmd_resume(ctx: Context) -> int:
    with ctx.open() as forge:
        session_id = forge.resolve(ctx.args.session)
        state = forge.state(session_id)
        if state.ended:
            ctx.note(f"session {session_id} has already ended ({state.status}); nothing to resume")
            return _outcome_code(state)
        events = forge.resume(session_id)
        return _follow(ctx, forge, session_id, events, forge.state(session_id))


def cmd_replay(ctx: Context) -> int:
    if ctx.args.speed < 0:
        raise UsageError("--speed must be 0 (no pauses) or more")
    with ctx.open() as forge:
        session_id = forge.resolve(ctx.args.session)
        events = forge.replay(session_id, ctx.args.speed, max_pause=ctx.args.max_pause)
        _follow(ctx, forge, session_id, events)
        return EXIT_OK


def cmd_rerun(ctx: Context) -> int:
    with ctx.open() as forge:
        original = forge.resolve(ctx.args.session)
        session_id = forge.rerun(original)
        ctx.note(f"re-ran {original} as {session_id}")
        _follow(ctx, forge, session_id, forge.replay(session_id, speed=0))
        state = forge.state(session_id)
        return _outcome_code(state) if state.ended else EXIT_OK


def cmd_sessions(ctx: Context) -> int:
    with ctx.open() as forge:
        rows = forge.summaries()
    if ctx.json:
        for row in rows:
            print(msgspec.json.encode(row).decode())
        return EXIT_OK
    table = Table(title=f"sessions in {ctx.db}", title_justify="left")
    for column in ("id", "title", "status", "rounds", "created", "tokens"):
        table.add_column(column, justify="right" if column in ("rounds", "tokens") else "left")
    for row in rows:
        created = _timestamp(row.created_at)
        table.add_row(row.session_id, row.title, row.status, str(row.rounds), created, f"{row.total_tokens:,}")
    ctx.out.print(table if rows else Text("no sessions yet", style="dim"))
    return EXIT_OK


def _timestamp(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M")


def cmd_show(ctx: Context) -> int:
    with ctx.open() as forge:
        session_id = forge.resolve(ctx.args.session)
        state = forge.state(session_id)
        report = forge.usage(session_id)
        document = export_document(state, ctx.config.pricing)
    if ctx.json:
        print(render(document, "json"), end="")
        return EXIT_OK
    out = ctx.out
    out.print(Text(state.title, style="bold"))
    out.print(f"goal: {state.goal}")
    out.print(f"session {state.session_id} · status [bold]{state.status}[/bold]"
              + (f" — {state.end_reason}" if state.end_reason else ""))
    rounds = Table(title="rounds", title_justify="left")
    for column in ("#", "kind", "iteration", "status", "succeeded", "failed", "score"):
        rounds.add_column(column)
    for r in state.rounds:
        rounds.add_row(str(r.round), r.kind, str(r.iteration), r.status, ", ".join(r.succeeded),
                       ", ".join(r.failed), "" if r.score is None else f"{r.score:.0%}")
    out.print(rounds)
    if state.synthesis is not None:
        out.print(Text(f"latest synthesis (by {state.synthesis.author}):", style="bold"))
        out.print(Markdown(state.synthesis.content))
    out.print(f"tokens: {report.total.input_tokens:,} in, {report.total.output_tokens:,} out · "
              f"estimated cost {format_cost(report.total_cost)}")
    return EXIT_OK


def cmd_export(ctx: Context) -> int:
    with ctx.open() as forge:
        session_id = forge.resolve(ctx.args.session)
        text = render(export_document(forge.state(session_id), ctx.config.pricing), ctx.args.format)
    if ctx.args.output:
        Path(ctx.args.output).write_text(text, encoding="utf-8")
        ctx.note(f"wrote {ctx.args.output}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_providers(ctx: Context) -> int:
    probes = probe_providers(ctx.config)  # needs no log
    if ctx.json:
        for probe in probes:
            print(msgspec.json.encode(probe).decode())
        return EXIT_OK
    table = Table(title="providers", title_justify="left")
    for column in ("provider", "key", "base URL", "reachable", "models / detail"):
        table.add_column(column)
    for probe in probes:
        if probe.key_env is None:
            key = "no key used"
        elif probe.key_present:
            key = f"{probe.key_env} set"
        else:
            key = f"{probe.key_env} missing" + ("" if probe.key_needed else " (not needed here)")
        reachable = {True: "yes", False: "no", None: "—"}[probe.reachable]
        detail = ", ".join(probe.models) if probe.models else probe.detail
        table.add_row(probe.provider, key, probe.base_url or "—", reachable, detail)
    ctx.out.print(table)
    return EXIT_OK


def cmd_switch(ctx: Context) -> int:
    with ctx.open() as forge:
        session_id = forge.resolve(ctx.args.session)
        state = forge.switch_provider(session_id, ctx.args.participant, ctx.args.spec)
        info = state.participants[ctx.args.participant]
    ctx.note(f"{ctx.args.participant} in {session_id} now uses {info.provider}; the next round uses it")
    return EXIT_OK


def cmd_serve(ctx: Context) -> int:
    from forge_actors.surfaces.server.runner import check_bind, check_token, serve

    # A token given but blank is refused (it would guard nothing), not taken as "no token".
    if ctx.args.token is not None:
        token = check_token(ctx.args.token, "--token")
    else:
        token = check_token(ctx.environ.get("FORGE_API_TOKEN"), "FORGE_API_TOKEN")
    check_bind(ctx.args.host, token)
    with ctx.open(create=True) as forge:
        shown = f"http://{ctx.args.host}:{ctx.args.port}/"
        ctx.note(f"serving {forge.path} on {shown}" + (" (token required; open the page as /#token=TOKEN)"
                                                       if token else ""))
        serve(forge, ctx.args.host, ctx.args.port, token)
    return EXIT_OK


COMMANDS: dict[str, Callable[[Context], int]] = {
    "run": cmd_run, "resume": cmd_resume, "replay": cmd_replay, "rerun": cmd_rerun, "sessions": cmd_sessions,
    "show": cmd_show, "export": cmd_export, "providers": cmd_providers, "serve": cmd_serve, "switch": cmd_switch,
}


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops a run as cleanly as Ctrl-C


def configure_logging(level: str | None, environ: dict[str, str]) -> None:
    """The command's logging: to stderr, one line per record (the library itself configures none)."""
    chosen = (level or environ.get("FORGE_LOG_LEVEL") or "WARNING").upper()
    if chosen not in LOG_LEVELS:
        raise UsageError(f"FORGE_LOG_LEVEL={chosen}: use one of {', '.join(LOG_LEVELS)}")
    logging.basicConfig(level=chosen, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    _quiet_reported_errors()


def _reported_here(record: logging.LogRecord) -> bool:
    """False for a log record about an error of the log file: main() reports it, in one line."""
    return not (record.exc_info and isinstance(record.exc_info[1], EventStoreError))


def _quiet_reported_errors() -> None:
    # A full disk or a damaged file stops a session actor; pykka logs that with a traceback,
    # and the writer says it too. On the command line one line says it all (main's).
    for name in ("pykka", "eventstore.writer"):
        log = logging.getLogger(name)
        if _reported_here not in log.filters:
            log.addFilter(_reported_here)


def main(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = dict(os.environ if environ is None else environ)
    try:
        configure_logging(args.log_level, env)
    except UsageError as exc:
        print(f"forge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        return COMMANDS[args.command](Context(args, env))
    except (UsageError, ConfigError, NotAnEventLogError, CorruptEventError) as exc:
        err.print(f"forge: {exc}", markup=False)
        return EXIT_USAGE
    except EventStoreError as exc:  # a full disk, a damaged file: what happened and what to do, one line
        err.print(f"forge: {exc}", markup=False)
        return EXIT_USAGE
    except ForgeError as exc:  # unknown session, a step that does not fit
        err.print(f"forge: {exc}", markup=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.print("forge: interrupted", markup=False)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())

