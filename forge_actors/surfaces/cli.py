"""The ``forge`` command: run, list, show, export, compare, replay, resume and re-run deliberations,
and take part in one as a human (``draft``, ``vote``, ``run --human``); copy a log to another
backend (``migrate-log``); score a council against single models on a task file (``eval``).

It talks to the engine API only (``Forge``). On a terminal it shows a live view; when
stdout is not a terminal, or with ``--json``, it writes one JSON event per line and
keeps diagnostics on stderr.

The log is ``--db``, else ``$FORGE_DB``, else forge.toml's ``[forge] database``, else
``./forge.db``, for every command: a file (SQLite) or a ``postgresql://`` URL. A URL's password
is used to connect and printed nowhere (``printable_target``). The
configuration (``--config``, ``$FORGE_CONFIG``, ``./forge.toml``) is read only by the
commands that need it: ``sessions``, ``show``, ``export``, ``diff``, ``replay`` and ``search`` only read the
log, and run with the default configuration (saying so) when the file is broken, unless the log
itself would come from that file: then it is an error, never a switch to ./forge.db.

Exit codes: 0 converged (or the command did its job), 1 the session ended without
converging (max_rounds, no_quorum, budget_spent, budget_exhausted, cancelled), 2 a usage or configuration error, 3 the session
failed, 130 interrupted (Ctrl-C; the session can be resumed).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import difflib
import logging
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from forge_actors import __version__
from forge_actors.core.budget import report as budget_report
from forge_actors.core.compare import Comparison, RoundComparison, RoundSide, text_diff
from forge_actors.core.export import (
    FORMATS,
    comparison_markdown,
    comparison_rows,
    export_document,
    render,
    settings_changed,
    to_json,
)
from forge_actors.core.pricing import format_cost
from forge_actors.core.state import SessionState, apply
from forge_actors.engine import (
    DEFAULT_COPY_BATCH,
    DEFAULT_LOG,
    ConfigError,
    CorruptEventError,
    EventStoreError,
    Forge,
    ForgeConfig,
    ForgeError,
    HumanInputQueuedError,
    LogChoice,
    LogWriteError,
    NoEventLogError,
    NotAnEventLogError,
    RecordedEvent,
    SessionBusyError,
    SessionNotFoundError,
    choose_log,
    has_password,
    is_database_url,
    load_config,
    migrate_log,
    printable_target,
    probe_providers,
    same_log,
)
from forge_actors.surfaces import eval_command
from forge_actors.surfaces.terminal import (
    HumanWaits,
    JsonLinesView,
    LiveView,
    command_lines,
    duration,
    human_command,
)

EXIT_OK, EXIT_NOT_CONVERGED, EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_DB = DEFAULT_LOG
#: Seconds ``forge run --human`` waits, by default, for the humans' drafts.
DEFAULT_HUMAN_TIMEOUT = 600.0
#: How often it looks at the log for them (a draft comes from another process: ``forge draft``).
HUMAN_POLL_SECONDS = 0.25
#: Hits ``forge search`` shows by default, and at most (the engine's own bound).
SEARCH_LIMIT, MAX_SEARCH_LIMIT = 10, 20
#: The logger of ``forge serve``'s request lines (at info level: shown unless --log-level says otherwise).
REQUEST_LOG = "forge_actors.surfaces.server.access"
#: Commands that only read the log: a broken forge.toml does not stop them (when the log is named otherwise).
READ_ONLY_COMMANDS = frozenset({"sessions", "show", "export", "replay", "diff", "search"})
#: Lines of a text diff the terminal shows under the first difference (--markdown has them all).
DIFF_LINES_SHOWN = 40
RESUME_HELP = """continue an interrupted session.

With --json (or when stdout is not a terminal) the stream first repeats how the interrupted
run ended, as the log holds it: when the session was stopped cleanly (Ctrl-C, SIGTERM, a
server stopping), the ContributionAbandoned events and the SessionInterrupted event recorded
then, and anything recorded after them; a run that stopped from Ctrl-C printed them already,
one whose output pipe closed or that was killed did not. Each line carries its log
`position`: a script that saw a position already can skip it. Then come the events of this
run, live, to SessionEnded. (A run killed outright recorded no interruption: this run records
what it abandons, and streams that.)"""


class UsageError(Exception):
    """A problem with what was asked: one line to stderr, exit 2."""


# -- arguments ---------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse with "did you mean" for a mistyped command or option (its own ``suggest_on_error``
    comes with Python 3.14 only): then one line, without the usage, and exit 2."""

    def error(self, message: str) -> Any:  # argparse's signature; exits 2
        typo = _typo(self, message)
        if typo is None:
            super().error(message)
        self.exit(EXIT_USAGE, f"{self.prog}: {typo}\n")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next((dict(a.choices) for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})


def _typo(parser: argparse.ArgumentParser, message: str) -> str | None:
    """The one line for an argparse error about a command or options close to known ones, else None."""
    command = re.match(r"argument COMMAND: invalid choice: '([^']*)'", message)
    if command:
        close = difflib.get_close_matches(command.group(1), list(_subcommands(parser)), n=1)
        return (f"unknown command '{command.group(1)}': did you mean `{parser.prog} {close[0]}`? "
                f"(`{parser.prog} --help` lists the commands)") if close else None
    options = re.match(r"unrecognized arguments: (.*)", message)
    if options:
        known = [option for action in parser._actions for option in action.option_strings]
        guesses = [(word, difflib.get_close_matches(word.split("=", 1)[0], known, n=1))
                   for word in options.group(1).split() if word.startswith("-")]
        said = [f"{word} (did you mean {close[0]}?)" for word, close in guesses if close]
        return (f"unknown option {', '.join(said)}; `{parser.prog} --help` lists the options") if said else None
    return None


def _parser() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)  # what every command takes
    options.add_argument("--config", help="forge.toml to use (default: $FORGE_CONFIG, else ./forge.toml)")
    options.add_argument("--json", action="store_true", help="machine-readable output (JSON) even on a terminal")
    options.add_argument("--log-level", default=None, choices=LOG_LEVELS, type=str.upper,
                        help="log to stderr from this level on (default: $FORGE_LOG_LEVEL, else WARNING)")
    common = argparse.ArgumentParser(add_help=False, parents=[options])  # ...and every command on one log
    common.add_argument("--db", metavar="PATH|URL",
                        help="the event log: a file, or postgresql://USER[:PASSWORD]@HOST[:PORT]/DB (default: "
                             f"$FORGE_DB, else forge.toml's [forge] database, else ./{DEFAULT_DB})")

    parser: argparse.ArgumentParser = _Parser(
        prog="forge", description="A deliberation engine: several LLMs and humans draft, critique, synthesize and "
                                  "vote, streaming live into a replayable log.")
    parser.add_argument("-V", "--version", action="version", version=f"forge {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    view = argparse.ArgumentParser(add_help=False)
    view.add_argument("--compact", action="store_true",
                      help="on a terminal, one paragraph per finished contribution instead of its whole text")
    run = commands.add_parser("run", parents=[common, view], help="run a whole deliberation on GOAL")
    run.add_argument("goal", metavar="GOAL")
    run.add_argument("-p", "--participant", dest="participants", action="append", metavar="SPEC",
                     help="a participant, e.g. mock:alice, anthropic:claude-sonnet-4-20250514 (repeatable)")
    run.add_argument("--title")
    run.add_argument("--max-iterations", type=int, metavar="N",
                     help="Synthesis -> Convergence iterations at most (a round is one step; an iteration one pass)")
    run.add_argument("--max-rounds", type=int, metavar="N", dest="max_rounds_deprecated", help=argparse.SUPPRESS)
    run.add_argument("--threshold", type=float, metavar="X", help="convergence threshold, 0-1")
    run.add_argument("--convergence", choices=("votes", "similarity", "both"),
                     help="what ends the session converged: the votes (default), the similarity of successive "
                          "syntheses (no votes asked for), or both")
    run.add_argument("--similarity-threshold", type=float, metavar="X",
                     help="how similar (0-1) a synthesis must be to the previous one (default 0.9)")
    run.add_argument("--round-timeout", type=float, metavar="S", help="seconds a participant gets per round")
    run.add_argument("--seed", type=int, metavar="N")
    run.add_argument("--max-cost-usd", type=float, metavar="USD",
                     help="the session's budget in US dollars, estimated at the participants' prices (recorded now): "
                          "no round starts that would pass it; every AI participant needs a known price")
    run.add_argument("--max-session-tokens", type=int, metavar="N",
                     help="the session's budget in tokens, input and output of every call together (not "
                          "max_tokens, which bounds one reply)")
    run.add_argument("--tools", metavar="LIST",
                     help="tools every AI participant may call, by name or category (e.g. file,search,git); "
                          "a spec's own ?tools= wins")
    run.add_argument("--workspace", metavar="DIR",
                     help="the folder the tools read (default with --tools: the current folder)")
    run.add_argument("--constraint", dest="constraints", action="append", default=[], metavar="TEXT",
                     help="a constraint every participant must respect (repeatable)")
    run.add_argument("--human", dest="humans", action="append", default=[], metavar="NAME",
                     help="seat a human: the run waits for their draft (`forge draft ID --author NAME`, from "
                          "another terminal) before the first round, and for their vote (`forge vote`) in each "
                          "convergence round (repeatable)")
    run.add_argument("--human-timeout", type=float, default=DEFAULT_HUMAN_TIMEOUT, metavar="S",
                     help=f"seconds to wait for the humans' drafts, and in each convergence round for their votes "
                          f"(default {DEFAULT_HUMAN_TIMEOUT:g}); then the run goes on without the missing ones")

    fork = commands.add_parser(
        "fork", parents=[common, view], help="fork a session after one of its rounds, then deliberate",
        description="Fork session ID after its round N: a new session holding a copy of ID's log to the end of "
                    "that round (no provider is asked for those rounds; ID is left as it is), with the changes "
                    "given, which deliberates from round N+1 on, like run. A participant named like one of the "
                    "session moves it to that provider; a new one joins at round N+1.")
    fork.add_argument("session", metavar="ID", help="a session id or a unique prefix of one")
    fork.add_argument("--at-round", type=int, required=True, metavar="N", help="the round to fork after (completed)")
    fork.add_argument("-p", "--participant", dest="participants", action="append", default=[], metavar="SPEC",
                      help="a participant that joins (or moves to this provider), e.g. anthropic:claude-sonnet-4-20250514 "
                           "(repeatable)")
    fork.add_argument("--drop", action="append", default=[], metavar="NAME",
                      help="a participant that takes no part from round N+1 on (repeatable)")
    fork.add_argument("--human", dest="humans", action="append", default=[], metavar="NAME",
                      help="seat a human in the fork (repeatable)")
    fork.add_argument("--constraint", dest="constraints", action="append", default=[], metavar="TEXT",
                      help="a constraint added to the session's (repeatable)")
    fork.add_argument("--threshold", type=float, metavar="X", help="convergence threshold, 0-1")
    fork.add_argument("--max-iterations", type=int, metavar="N", help="Synthesis -> Convergence iterations at most")
    fork.add_argument("--round-timeout", type=float, metavar="S", help="seconds a participant gets per round")
    fork.add_argument("--seed", type=int, metavar="N")
    fork.add_argument("--no-run", action="store_true", help="only create the fork; `forge resume NEW_ID` runs it")

    commands.add_parser("sessions", parents=[common], help="list the sessions in the log")
    for name, text, parents in (
        ("show", "a session's state", [common]),
        ("resume", "continue an interrupted session", [common, view]),
        ("rerun", "re-run a recorded session through the replay provider", [common, view]),
    ):
        sub = commands.add_parser(name, parents=parents, help=text,
                                  description=RESUME_HELP if name == "resume" else None,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("session", metavar="ID", help="a session id or a unique prefix of one")
    export = commands.add_parser("export", parents=[common], help="export a session as Markdown, JSON or YAML")
    export.add_argument("session", metavar="ID")
    export.add_argument("--format", choices=FORMATS, default="md")
    export.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    diff = commands.add_parser(
        "diff", parents=[common], help="compare two sessions round by round",
        description="Compare two sessions: their rounds side by side, aligned by number (texts, critique scores, "
                    "syntheses with a line diff, votes, outcome), tokens and cost, and the first round where they "
                    "differ. On a terminal: a summary with the first difference in detail; --markdown: every "
                    "round; --json (or stdout not a terminal): the whole comparison.")
    diff.add_argument("first", metavar="A", help="a session id or a unique prefix of one")
    diff.add_argument("second", metavar="B", help="the session to compare it with")
    diff.add_argument("--markdown", action="store_true", help="the comparison as Markdown")
    diff.add_argument("-o", "--output", metavar="FILE",
                      help="write here instead of stdout (Markdown, or JSON with --json)")
    replay = commands.add_parser("replay", parents=[common, view],
                                 help="re-stream a past session at its recorded pace")
    replay.add_argument("session", metavar="ID")
    replay.add_argument("--speed", type=float, default=1.0, metavar="X", help="pace multiplier (0: no pauses)")
    replay.add_argument("--max-pause", type=float, default=None, metavar="S", help="cap each pause at S seconds")
    commands.add_parser("providers", parents=[common], help="each provider: key present, base URL, reachable")
    switch = commands.add_parser("switch", parents=[common], help="move a participant to another provider "
                                 "(between rounds)")
    switch.add_argument("session", metavar="ID")
    switch.add_argument("participant", metavar="PARTICIPANT")
    switch.add_argument("spec", metavar="SPEC", help="the new provider, e.g. ollama:llama3.2 or pool:fast")
    draft = commands.add_parser(
        "draft", parents=[common], help="add a human's draft to a session (before its critique starts)",
        description="Add a human's draft: it is critiqued and synthesized like the AI participants' drafts. "
                    "Drafts are open until the critique starts. The session must not be running in another "
                    "process (`forge run --human NAME` waits for drafts without running it; `forge serve` "
                    "takes drafts over HTTP).")
    draft.add_argument("session", metavar="ID", help="a session id or a unique prefix of one")
    draft.add_argument("--author", required=True, metavar="NAME", help="the human's name in the session")
    draft.add_argument("text", nargs="?", default="-", metavar="TEXT",
                       help="the draft (Markdown); - or nothing: read it from stdin")
    vote = commands.add_parser(
        "vote", parents=[common], help="a human's vote on a session's current synthesis",
        description="Vote on the latest synthesis of a session that is not running in another process (one "
                    "stopped or stepped after its synthesis): the vote counts in the next convergence round, "
                    "with the AI participants' votes, when the session goes on (`forge resume ID`).")
    vote.add_argument("session", metavar="ID", help="a session id or a unique prefix of one")
    vote.add_argument("--voter", required=True, metavar="NAME", help="the human's name in the session")
    vote.add_argument("choice", choices=("agree", "disagree", "abstain"), type=str.lower, metavar="agree|disagree",
                      help="agree or disagree (or abstain)")
    vote.add_argument("--reason", dest="reasons", action="append", default=[], metavar="TEXT",
                      help="why (repeatable)")
    vote.add_argument("--concern", dest="concerns", action="append", default=[], metavar="TEXT",
                      help="a concern the next synthesis should address (repeatable)")
    commands.add_parser("mcp", parents=[common],
                        help="serve the council over the Model Context Protocol on stdin/stdout (for coding assistants)")
    migrate = commands.add_parser(
        "migrate-log", parents=[options], help="copy an event log into another (e.g. SQLite -> PostgreSQL)",
        description="Copy every event of SRC into DST with its position, version and time, so that sessions, "
                    "exports and replays of DST match SRC's exactly. DST is created when missing; a DST holding "
                    "events that are not the start of SRC is refused. An interrupted copy goes on where it "
                    "stopped: run the same command again. Summaries and the search index rebuild themselves "
                    "from the events on first use.")
    migrate.add_argument("source", metavar="SRC", help="the log to copy: a file or a postgresql:// URL")
    migrate.add_argument("target", metavar="DST", help="the log to copy into: a file or a postgresql:// URL")
    migrate.add_argument("--batch-size", type=int, default=DEFAULT_COPY_BATCH, metavar="N",
                         help=f"events per transaction (default {DEFAULT_COPY_BATCH})")
    serve = commands.add_parser("serve", parents=[common], help="serve the HTTP API, live streams and the web page")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--token", help="require this bearer token (default: $FORGE_API_TOKEN)")
    serve.add_argument("--resume-orphans", action="store_true",
                       help="one of several coordinators on one log: adopt the sessions a dead coordinator left "
                            "deliberating (at start and every --orphan-scan seconds), and hand this one's over "
                            "to the others when it stops instead of interrupting them")
    serve.add_argument("--orphan-scan", type=float, default=None, metavar="SECONDS",
                       help="seconds between scans for orphans (default: the lease ttl); needs --resume-orphans")
    search = commands.add_parser("search", parents=[common], help="find past contributions by their words",
                                 description="The contributions (drafts, critiques, syntheses, votes) of every "
                                             "session in the log that best match QUERY's words, best first.")
    search.add_argument("query", metavar="QUERY", nargs="+", help="plain words, e.g. rate limit")
    search.add_argument("-n", "--limit", type=int, default=SEARCH_LIMIT, metavar="N",
                        help=f"how many hits, 1-{MAX_SEARCH_LIMIT} (default {SEARCH_LIMIT})")
    eval_command.add_parser(commands, common)
    return parser


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The arguments, with ``forge draft``'s TEXT found after the options too (``forge draft ID
    --author ada -``): argparse takes an optional positional only before them."""
    parser = _parser()
    args, extras = parser.parse_known_args(argv)
    if args.command == "draft" and args.text == "-" and len(extras) == 1 and not extras[0].startswith("--"):
        args.text, extras = extras[0], []
    if extras:
        _subcommands(parser)[args.command].error(f"unrecognized arguments: {' '.join(extras)}")  # the command's
    return args


# -- plumbing ------------------------------------------------------------------------------------------


class Context:
    def __init__(self, args: argparse.Namespace, environ: dict[str, str]) -> None:
        self.args = args
        self.environ = environ
        self.json = bool(args.json) or not sys.stdout.isatty()
        self.out = Console(highlight=False)
        # On a terminal, lines wrap between words; elsewhere (a log, a pipe) each note is one line.
        self.err = Console(stderr=True, highlight=False, soft_wrap=not sys.stderr.isatty())
        self._config: ForgeConfig | None = None
        self._log: LogChoice | None = None
        self._export_hint_given = False

    @property
    def log(self) -> LogChoice:
        """The log: ``--db``, else $FORGE_DB, else forge.toml's ``database`` (the file is read only
        then), else ./forge.db."""
        if self._log is None:
            self._log = choose_log(getattr(self.args, "db", None), self.environ, self._configured_log)
        return self._log

    def _configured_log(self) -> str | None:
        """forge.toml's ``database``. A file that cannot be used is an error here, even for a command
        that does not need the rest of it: going on with ./forge.db would show another log."""
        if self.args.command not in READ_ONLY_COMMANDS:
            return self.config.database  # the command needs the file anyway: its error says so
        if self._config is None:
            try:
                self._config = load_config(self.args.config, self.environ)
            except ConfigError as exc:
                raise ConfigError(f"{exc}. The log comes from this file when neither --db nor FORGE_DB names one: "
                                  "fix the file, or name the log with --db or FORGE_DB") from None
        return self._config.database

    @property
    def db(self) -> str:
        """The log's target, to open it. It may hold a password: print ``db_shown`` instead."""
        return self.log.target

    @property
    def db_shown(self) -> str:
        """The log as it may be printed: a URL without its password."""
        return self.log.shown

    @property
    def db_flag(self) -> str | None:
        """The ``--db`` a next command must be given to find this log: None for the default log, and
        for a URL with a password, which is never echoed (``export_hint`` says how to name it instead)."""
        if self.log.source == "default" or self.log.has_password:
            return None
        return self.db

    def export_hint(self) -> None:
        """Once: how the next commands find a log given with a password on the command line (FORGE_DB,
        the password from libpq's PGPASSWORD or ~/.pgpass), the password not shown."""
        if self.log.source == "--db" and self.log.has_password and not self._export_hint_given:
            self._export_hint_given = True
            self.note(f"the next commands find this log with: export FORGE_DB='{self.db_shown}' (the URL shown "
                      "without its password: put it back in, or give it in PGPASSWORD or ~/.pgpass)")

    @property
    def config(self) -> ForgeConfig:
        """forge.toml, read the first time a command needs it. A broken one stops the commands that
        need it (a ConfigError naming the file and what is wrong); the read-only ones go on without it."""
        if self._config is None:
            try:
                self._config = load_config(self.args.config, self.environ)
            except ConfigError as exc:
                if self.args.command not in READ_ONLY_COMMANDS:
                    raise ConfigError(f"{exc} (`forge {self.args.command}` needs the configuration: fix the "
                                      "file, or name another with --config / FORGE_CONFIG)") from None
                self.note(f"forge: ignoring the configuration, which {self.args.command} does not need: {exc}; "
                          "costs use the default prices")
                self._config = ForgeConfig()
        return self._config

    def open(self, create: bool = False) -> Forge:
        if create:
            check_folder_exists(self.db, self.log.source)
            return Forge(self.db, self.config, create=True)
        return open_existing_log(self.db, lambda: Forge(self.db, self.config, create=False))

    def note(self, message: str) -> None:
        self.err.print(Text(message, style="dim"))

    def note_command(self, message: str, command: str) -> None:
        """``message: command``. On a terminal the command goes on lines of its own, broken only
        between words with a shell continuation, so that it runs as printed once copied."""
        if not self.err.is_terminal:
            self.note(f"{message}: {command}")
            return
        self.note(f"{message}:")
        for line in command_lines(command, self.err.size.width):
            self.err.print(Text(line), soft_wrap=True)

    def db_suffix(self) -> str:
        """`` --db LOG`` for a next-step hint, when the next command needs it (see ``db_flag``)."""
        self.export_hint()
        return f" --db {self.db_flag}" if self.db_flag else ""


#: What to do when a command finds no log where it looks.
NO_LOG_HINT = "run `forge run GOAL` first, or give --db / FORGE_DB / forge.toml's [forge] database"


def open_existing_log(target: str, opener: Callable[[], Any]) -> Any:
    """``opener()`` for a log that must exist already: a file that is not there, or a database with no
    log in it, is a usage error saying so (nothing is created)."""
    if not is_database_url(target):
        if not Path(target).exists():
            raise UsageError(f"no event log at {target}: {NO_LOG_HINT}")
        return opener()
    try:
        return opener()
    except NoEventLogError:
        # A database without the log's tables is "no log here", like a missing file; one holding
        # tables of something else stays a NotAnEventLogError (it says what is there).
        raise UsageError(f"no event log at {printable_target(target)}: {NO_LOG_HINT}") from None


def check_folder_exists(target: str, source: str) -> None:
    """A log file to create in a folder that does not exist: a usage error naming the folder."""
    if is_database_url(target):
        return
    folder = Path(target).parent
    if not folder.is_dir():
        named = {"--db": "--db", "FORGE_DB": "FORGE_DB", "forge.toml": "forge.toml's [forge] database"}.get(source, "")
        raise UsageError(f"the folder {folder} does not exist, so the log {target}{f' (from {named})' if named else ''} "
                         f"cannot be created in it: create the folder first (mkdir -p {folder}), or name a log in a "
                         "folder that exists")


@contextlib.contextmanager
def _no_log_left_behind(target: str) -> Iterator[Callable[[Forge], None]]:
    """For a command that may fail before it records anything: when the log file did not exist
    before and the command failed with the log still empty, the file it created is removed, so that
    a later command says "no event log" rather than finding an empty one. Yields ``check(forge)``,
    to call (the log still open) on the way out of a failure."""
    new_file = not is_database_url(target) and not os.path.lexists(target)
    empty = [False]

    def check(forge: Forge) -> None:
        empty[0] = new_file and forge.last_position() == 0

    try:
        yield check
    except BaseException:
        if empty[0]:
            for path in (target, f"{target}-wal", f"{target}-shm", f"{target}-journal"):
                with contextlib.suppress(FileNotFoundError):  # the -wal and -shm files may not be there
                    os.remove(path)
        raise


def _outcome_code(state: SessionState) -> int:
    if state.status == "converged":
        return EXIT_OK
    if state.status == "failed":
        return EXIT_FAILED
    if state.status in ("max_rounds", "no_quorum", "budget_spent", "budget_exhausted", "cancelled"):
        return EXIT_NOT_CONVERGED
    return EXIT_INTERRUPTED


def _follow(ctx: Context, forge: Forge, session_id: str, events: Iterable[RecordedEvent],
            initial: SessionState | None = None, *, replaying: bool = False) -> int:
    """Show events as they come; on Ctrl-C record the interruption and say how to resume.

    ``replaying``: the events are a recording (``replay``): Ctrl-C only stops watching it."""
    json_view = JsonLinesView(sys.stdout) if ctx.json else None
    try:
        if json_view is not None:
            json_view.run(events if replaying else _noting_waits(ctx, events, initial))
            state = forge.state(session_id)
        else:
            view = LiveView(ctx.out, initial, ctx.config.pricing, compact=getattr(ctx.args, "compact", False),
                            db=ctx.db_flag, program=program_name(), replaying=replaying)
            view.run(events)
            view.print_outcome(ctx.db_flag)
            ctx.export_hint()  # the next commands' --db, when it may not be echoed
            state = view.state
    except LogWriteError as exc:  # the log could not take the session's appends: say how to go on
        raise exc.with_next_step(f"resume (forge resume {session_id}{ctx.db_suffix()})") from exc.__cause__
    except (KeyboardInterrupt, BrokenPipeError) as stop:
        closed = isinstance(stop, BrokenPipeError)
        if closed:  # nobody reads stdout any more: keep Python from complaining about it at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        if replaying:  # a recording: nothing runs, nothing to record or resume
            ctx.err.print("replay stopped; the log is unchanged")
            return EXIT_INTERRUPTED
        forge.interrupt(session_id, "the output pipe was closed" if closed else "interrupted by the user (Ctrl-C)")
        if json_view is not None and not closed:
            # What the interruption recorded (abandoned contributions, SessionInterrupted) ends the
            # stream, so that a script sees how the run ended.
            json_view.run(r for r in forge.records(session_id) if r.position > json_view.last_position)
        ctx.err.print(f"interrupted; the log is consistent. Continue with: forge resume {session_id}{ctx.db_suffix()}")
        return EXIT_INTERRUPTED
    return _outcome_code(state)


def _noting_waits(ctx: Context, events: Iterable[RecordedEvent], initial: SessionState | None
                  ) -> Iterator[RecordedEvent]:
    """``events``, saying on stderr when a round waits for a seated human (who, how long, the command
    that answers) and, when the round ends, who did not answer (the live view shows the same)."""
    state = initial or SessionState()
    waits = HumanWaits()
    for recorded in events:
        state = apply(state, recorded.event)
        for name in waits.closed(state, recorded.event):
            ctx.note(waits.missed_line(name, recorded.event.round, state))
        for name in waits.opened(state, recorded.event):
            command = human_command(waits.what, state.session_id, name, ctx.db_flag, program_name())
            ctx.note_command(waits.waiting_line(name, state), command)
        yield recorded


def program_name() -> str:
    """How to call forge in a hint: ``forge`` when that is what the PATH finds (or when it was not run
    as a script, e.g. ``python -m``), else the path it was called by (e.g. ``.venv/bin/forge``)."""
    called = sys.argv[0] if sys.argv else ""
    if Path(called).name != "forge" or os.sep not in called:
        return "forge"
    found = shutil.which("forge")
    if found is not None and os.path.realpath(found) == os.path.realpath(called):
        return "forge"
    return called


# -- commands -----------------------------------------------------------------------------------------------


def cmd_run(ctx: Context) -> int:
    args = ctx.args
    humans = _human_names(args.humans, args.human_timeout)
    goal = _goal(ctx)
    with _no_log_left_behind(ctx.db) as check_empty, ctx.open(create=True) as forge:
        try:
            session_id = _create(ctx, forge, goal, humans)
        except BaseException:  # an unknown provider, a missing key: nothing recorded, no log file left
            check_empty(forge)
            raise
        ctx.note(f"session {session_id} · log {forge.path}")
        if humans:
            try:
                _wait_for_drafts(ctx, forge, session_id, humans, args.human_timeout)
            except KeyboardInterrupt:
                ctx.err.print(f"interrupted while waiting for drafts; nothing ran yet. Start it with: "
                              f"forge resume {session_id}{ctx.db_suffix()}")
                return EXIT_INTERRUPTED
            return _follow(ctx, forge, session_id, _deliberate_when_free(forge, session_id))
        return _follow(ctx, forge, session_id, forge.deliberate(session_id))


def _goal(ctx: Context) -> str:
    """GOAL, or stdin for ``-`` (as ``forge draft -`` reads the draft): ``echo GOAL | forge run -``."""
    goal: str = ctx.args.goal
    if goal == "-":
        if sys.stdin.isatty():
            ctx.note("type the goal, then Ctrl-D on a line of its own")
        goal = sys.stdin.read().strip()
        if not goal:
            raise UsageError("the goal read from stdin is empty: pipe it in (echo GOAL | forge run -), or give it "
                             "as GOAL")
    return goal


def _create(ctx: Context, forge: Forge, goal: str, humans: list[str]) -> str:
    """Record the session ``forge run`` asked for: its id. Nothing is recorded when it fails."""
    args = ctx.args
    participants: list[Any] | None = args.participants
    why = None
    if not participants:
        participants, why = forge.default_participants(ctx.environ)
    workspace = args.workspace
    if workspace is None and (args.tools or _specs_name_tools(participants)):
        workspace = forge.config.settings.workspace or "."
    session_id = forge.create_session(
        goal, [*participants, *({"kind": "human", "name": name} for name in humans)], title=args.title,
        constraints=args.constraints, max_iterations=_iterations(ctx), convergence_threshold=args.threshold,
        round_timeout_seconds=args.round_timeout, seed=args.seed, tools=args.tools or "", workspace=workspace,
        human_wait_seconds=args.human_timeout if humans else None, convergence=args.convergence,
        similarity_threshold=args.similarity_threshold, max_cost_usd=args.max_cost_usd,
        max_session_tokens=args.max_session_tokens,
    )
    if why:
        ctx.note(why)
    return session_id


def _human_names(names: list[str], timeout: float) -> list[str]:
    if timeout < 0:
        raise UsageError("--human-timeout is a number of seconds, 0 or more")
    cleaned = [name.strip() for name in names]
    if any(not name for name in cleaned):
        raise UsageError("--human needs a name, e.g. --human ada")
    duplicates = sorted({name for name in cleaned if cleaned.count(name) > 1})
    if duplicates:
        raise UsageError(f"--human {duplicates[0]} is given twice: each human needs a name of their own")
    return cleaned


def _wait_for_drafts(ctx: Context, forge: Forge, session_id: str, humans: list[str], timeout: float, *,
                     clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
                     ) -> list[str]:
    """Wait until every human has drafted, or ``timeout`` seconds; return who has not.

    Nothing runs meanwhile and this engine holds no lease on the session, so that ``forge draft``
    from another process can add the drafts (it drives the session for the time of one draft)."""
    db = ctx.db_suffix()
    for name in humans if timeout > 0 else ():
        ctx.note_command(f"waiting up to {timeout:g} s for {name}'s draft; add it from another terminal (TEXT, or "
                         "- to read stdin) with", f"{program_name()} draft {session_id} --author {name}{db} \"TEXT\"")
    deadline = clock() + timeout
    # On a terminal, a line below counts the time left (gone when the wait ends); elsewhere, nothing.
    counting = ctx.err.status("", spinner="dots") if ctx.err.is_terminal else contextlib.nullcontext()
    with counting as status:
        while True:
            drafts = forge.state(session_id).drafts
            missing = [name for name in humans if name not in drafts]
            left = deadline - clock()
            if not missing or left <= 0:
                break
            if status is not None:
                status.update(f"waiting for {' and '.join(missing)}'s draft ({duration(left)} left)")
            sleep(min(HUMAN_POLL_SECONDS, left))
    for name in missing:
        ctx.note(f"no draft from {name} within {timeout:g} s: the deliberation goes on without it")
    if len(missing) < len(humans):
        ctx.note(f"drafts in from {', '.join(n for n in humans if n not in missing)}; the deliberation starts")
    return missing


def _deliberate_when_free(forge: Forge, session_id: str, *, clock: Callable[[], float] = time.monotonic,
                          sleep: Callable[[float], None] = time.sleep) -> Iterator[RecordedEvent]:
    """``deliberate``, waiting out a ``forge draft`` that drives the session this very moment (it lets
    go within a second; a crashed one's lease expires): at most one lease period."""
    give_up = None
    while True:
        try:
            return forge.deliberate(session_id)
        except SessionBusyError as busy:
            give_up = give_up if give_up is not None else clock() + busy.expires_in + 1.0
            if clock() >= give_up:
                raise
            sleep(HUMAN_POLL_SECONDS)


def _iterations(ctx: Context) -> int | None:
    """``--max-iterations``; ``--max-rounds``, its old name, still works and says so."""
    old = ctx.args.max_rounds_deprecated
    if old is not None:
        ctx.note("--max-rounds is deprecated: write --max-iterations (the same number: Synthesis -> Convergence "
                 "iterations at most)")
        if ctx.args.max_iterations is not None and ctx.args.max_iterations != old:
            raise UsageError("--max-iterations and --max-rounds (its old name) disagree: keep --max-iterations")
    return ctx.args.max_iterations if ctx.args.max_iterations is not None else old


def _specs_name_tools(participants: list[Any]) -> bool:
    """Whether any participant (a spec string, or a ParticipantSpec from forge.toml) names tools."""
    def names_tools(participant: Any) -> bool:
        spec = participant if isinstance(participant, str) else getattr(participant, "spec", "")
        return "tools=" in spec.partition("?")[2] or bool(getattr(participant, "tools", ""))
    return any(names_tools(p) for p in participants)


def cmd_resume(ctx: Context) -> int:
    with ctx.open() as forge:
        session_id = forge.resolve(ctx.args.session)
        state = forge.state(session_id)
        if state.ended:
            ctx.note(f"session {session_id} has already ended ({state.status}); nothing to resume")
            return _outcome_code(state)
        tail = _interruption_tail(forge.records(session_id)) if ctx.json and state.status == "interrupted" else []
        events = forge.resume(session_id)  # first: a session another process runs is one line, and nothing else
        done = sum(1 for r in state.rounds if r.status != "running")
        why = f" ({state.end_reason})" if state.status == "interrupted" and state.end_reason else ""
        ctx.note(f"resuming session {session_id}: {state.status}{why}, {done} round(s) done")
        if tail:
            JsonLinesView(sys.stdout).run(tail)
        return _follow(ctx, forge, session_id, events, forge.state(session_id))


def _interruption_tail(records: list[RecordedEvent]) -> list[RecordedEvent]:
    """How the interrupted run ended, as the log holds it: the ContributionAbandoned events recorded
    with the last SessionInterrupted, that event, and whatever was recorded after it (see RESUME_HELP)."""
    types = [type(r.event).__name__ for r in records]
    if "SessionInterrupted" not in types:
        return []
    start = len(types) - 1 - types[::-1].index("SessionInterrupted")
    while start > 0 and types[start - 1] == "ContributionAbandoned":
        start -= 1
    return records[start:]


def cmd_replay(ctx: Context) -> int:
    if ctx.args.speed < 0:
        raise UsageError("--speed must be 0 (no pauses) or more")
    with ctx.open() as forge:
        session_id = forge.resolve(ctx.args.session)
        events = forge.replay(session_id, ctx.args.speed, max_pause=ctx.args.max_pause)
        code = _follow(ctx, forge, session_id, events, replaying=True)
        return EXIT_INTERRUPTED if code == EXIT_INTERRUPTED else EXIT_OK


def cmd_rerun(ctx: Context) -> int:
    with ctx.open() as forge:
        original = forge.resolve(ctx.args.session)
        session_id = forge.rerun(original)
        ctx.note(f"re-ran {original} as {session_id}")
        if _follow(ctx, forge, session_id, forge.replay(session_id, speed=0), replaying=True) == EXIT_INTERRUPTED:
            return EXIT_INTERRUPTED
        state = forge.state(session_id)
        return _outcome_code(state) if state.ended else EXIT_OK


def cmd_fork(ctx: Context) -> int:
    args = ctx.args
    with ctx.open() as forge:
        parent = forge.resolve(args.session)
        session_id = forge.fork(
            parent, args.at_round, args.participants, drop=args.drop, humans=args.humans,
            constraints=args.constraints, convergence_threshold=args.threshold, max_iterations=args.max_iterations,
            round_timeout_seconds=args.round_timeout, seed=args.seed,
        )
        ctx.note(f"forked {parent} after round {args.at_round} as {session_id} · log {forge.path}")
        if args.no_run:
            if ctx.json:
                print(msgspec.json.encode({"session_id": session_id, "parent_id": parent,
                                           "at_round": args.at_round}).decode())
            else:
                ctx.note_command("run it with", f"{program_name()} resume {session_id}{ctx.db_suffix()}")
            return EXIT_OK
        # Shown from the fork on: its copied rounds are the parent's (``forge show`` or ``export`` shows them).
        copied_to = forge.last_position()
        return _follow(ctx, forge, session_id, forge.deliberate(session_id, from_position=copied_to),
                       forge.state(session_id))


def cmd_sessions(ctx: Context) -> int:
    with ctx.open() as forge:
        rows = forge.summaries()
    if ctx.json:
        for row in rows:
            print(msgspec.json.encode(row).decode())
        return EXIT_OK
    table = Table(title=f"sessions in {ctx.db_shown}", title_justify="left")
    forks = any(row.parent_id for row in rows)
    for column in ("id", "title", "status", "rounds", "created", "tokens", *(("forked from",) if forks else ())):
        table.add_column(column, justify="right" if column in ("rounds", "tokens") else "left")
    for row in rows:
        created = _timestamp(row.created_at)
        lineage = (f"{row.parent_id} @ round {row.forked_at_round}" if row.parent_id else "",) if forks else ()
        table.add_row(row.session_id, Text(row.title), row.status, str(row.rounds), created, f"{row.total_tokens:,}",
                      *lineage)
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
    out.print(Text(f"goal: {state.goal}"))  # the goal, names and reasons are text, never rich markup
    out.print(Text.assemble(f"session {state.session_id} · status ", (state.status, "bold"),
                            f" — {state.end_reason}" if state.end_reason else ""))
    if state.forked_from is not None:
        out.print(Text(f"forked from {state.forked_from.parent_id} after its round {state.forked_from.round}"
                       + (f"; taking no part now: {', '.join(state.removed)}" if state.removed else "")))
    rounds = Table(title="rounds", title_justify="left")
    for column in ("#", "kind", "iteration", "status", "succeeded", "failed", "score"):
        rounds.add_column(column)
    for r in state.rounds:
        rounds.add_row(str(r.round), r.kind, str(r.iteration), r.status, Text(", ".join(r.succeeded)),
                       Text(", ".join(r.failed)), "" if r.score is None else f"{r.score:.0%}")
    out.print(rounds)
    if state.synthesis is not None:
        out.print(Text(f"latest synthesis (by {state.synthesis.author}):", style="bold"))
        out.print(Markdown(state.synthesis.content))
    out.print(f"tokens: {report.total.input_tokens:,} in, {report.total.output_tokens:,} out · "
              f"estimated cost {format_cost(report.total_cost)}")
    spending = budget_report(state)
    if spending is not None:
        out.print(Text(f"budget: {spending.summary}"))
    return EXIT_OK


def cmd_search(ctx: Context) -> int:
    """``forge search QUERY``: the best-matching past contributions, with their session's id to go on with."""
    limit, query = ctx.args.limit, " ".join(ctx.args.query)
    if not 1 <= limit <= MAX_SEARCH_LIMIT:
        raise UsageError(f"--limit is a number of hits from 1 to {MAX_SEARCH_LIMIT}, not {limit}")
    if not query.strip():
        raise UsageError("the query is empty: give the words to look for, e.g. forge search rate limit")
    with ctx.open() as forge:
        hits = forge.search_history(query, limit)
    if ctx.json:
        for hit in hits:
            print(msgspec.json.encode(hit).decode())
        return EXIT_OK
    if not hits:
        ctx.out.print(Text(f"nothing in {ctx.db_shown} matches {query!r} (words of two letters or more "
                           "are looked for)", style="dim"))
        return EXIT_OK
    for hit in hits:  # a header line, then the excerpt (wrapped between words): readable at 80 columns
        ctx.out.print(Text.assemble(("▍", "cyan"), (hit.session_id, "bold"), f" · {hit.title} · ",
                                    (f"{hit.round_kind} by {hit.participant}", "dim")))
        ctx.out.print(Text(" ".join(hit.excerpt.split()), overflow="fold"))
        ctx.out.print()
    ctx.note(f"open one with: {program_name()} show ID{ctx.db_suffix()}")
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


def cmd_diff(ctx: Context) -> int:
    args = ctx.args
    if args.markdown and args.json:
        raise UsageError("--markdown and --json are two formats of the comparison: give one")
    with ctx.open() as forge:
        comparison = forge.compare(forge.resolve(args.first), forge.resolve(args.second))
    if args.markdown or (args.output and not args.json):
        text = comparison_markdown(comparison)
    elif ctx.json or args.output:
        text = to_json(comparison)
    else:
        _print_comparison(ctx.out, comparison)
        return EXIT_OK
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        ctx.note(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _print_comparison(out: Console, comparison: Comparison) -> None:
    """The terminal's view of a comparison: the two sessions, every round in one line, then the first
    difference in detail (the first round is what a fork changed, or where two runs parted)."""
    sessions = Table(title="A vs B", title_justify="left")
    for column in ("", "A", "B"):
        sessions.add_column(column)
    for label, a, b in comparison_rows(comparison):  # as Text: a title or name is no markup
        sessions.add_row(Text(label), Text(a), Text(b), style=None if a == b else "bold")
    out.print(sessions)
    if comparison.settings:
        out.print(Text(f"settings that differ: {settings_changed(comparison)}"))
    first = comparison.first_difference
    rounds = Table(title="rounds", title_justify="left")
    for column in ("#", "A", "B", "differs"):
        rounds.add_column(column)
    for r in comparison.rounds:
        is_first = first is not None and r.round == first.round
        differs = ", ".join(r.differences) + ("  ◀ first difference" if is_first else "") if r.differences else "same"
        style = "bold yellow" if is_first else None if r.differences else "dim"
        rounds.add_row(str(r.round), _round_cell(r.a), _round_cell(r.b), differs, style=style)
    out.print(rounds)
    if first is None:
        out.print(Text("no round differs: every round either session has is the same in both", style="green"))
        return
    out.print(Text(f"first difference: {first.summary}", style="bold yellow"))
    _print_round_detail(out, next(r for r in comparison.rounds if r.round == first.round))
    out.print(Text(f"every round: forge diff {comparison.a.session_id} {comparison.b.session_id} --markdown",
                   style="dim"))


def _round_cell(side: RoundSide | None) -> str:
    if side is None:
        return "—"
    cell = f"{side.kind} {side.status}"
    return cell + (f" {side.score:.0%}" if side.score is not None else "")


def _print_round_detail(out: Console, r: RoundComparison) -> None:
    """What differs in the first round that differs: text diffs, changed scores, changed votes."""
    if r.scores is not None and "scores" in r.differences:
        out.print(Text("scores, reviewer × proposal author (A → B where they differ):", style="bold"))
        matrix = Table()
        for column in ("reviewer", *r.scores.proposals):
            matrix.add_column(Text(column))
        for row in r.scores.rows:
            cells = [Text("—" if x is None else str(x)) if x == y else Text(f"{x} → {y}", style="bold yellow")
                     for x, y in zip(row.a, row.b, strict=True)]
            matrix.add_row(Text(row.reviewer), *cells)
        out.print(matrix)
    if "votes" in r.differences:
        out.print(Text("votes:", style="bold"))
        votes = Table()
        for column in ("voter", "A", "B"):
            votes.add_column(column)
        for vote in r.votes:
            votes.add_row(Text(vote.voter), vote.a or "—", vote.b or "—",
                          style=None if vote.a == vote.b else "bold yellow")
        out.print(votes)
    if "content" not in r.differences:
        return
    if r.synthesis is not None and r.synthesis.diff:
        _print_diff(out, f"synthesis ({r.synthesis.added} line(s) added, {r.synthesis.removed} removed)",
                    r.synthesis.diff)
    elif r.a is not None and r.a.kind == "draft":
        for text in r.texts:
            if text.a is not None and text.b is not None and not text.same:
                _print_diff(out, f"{text.participant}'s draft", text_diff(text.a, text.b))
            elif not text.same:
                out.print(Text(f"{text.participant}'s draft is only in {'A' if text.b is None else 'B'}",
                               style="bold"))


def _print_diff(out: Console, title: str, diff: tuple[str, ...]) -> None:
    out.print(Text(title, style="bold"))
    styles = {"+": "green", "-": "red", "@": "cyan"}
    for line in diff[:DIFF_LINES_SHOWN]:
        out.print(Text(line, style=styles.get(line[:1], "")))
    if len(diff) > DIFF_LINES_SHOWN:
        out.print(Text(f"… {len(diff) - DIFF_LINES_SHOWN} more line(s): see --markdown", style="dim"))


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


@contextlib.contextmanager
def _busy_hint(what: str) -> Iterator[None]:
    """A session another process runs takes no command from here: say how a human takes part then."""
    try:
        yield
    except HumanInputQueuedError as queued:  # posted to the process that runs it, which has not answered yet
        raise UsageError(str(queued)) from None
    except SessionBusyError as busy:
        raise UsageError(f"{busy}. A human's {what} reaches a running deliberation through the process that "
                         "runs it: seat the human with `forge run --human NAME`, or use `forge serve` "
                         "(its page and HTTP API)") from None


def cmd_draft(ctx: Context) -> int:
    text = ctx.args.text
    if text == "-":
        if sys.stdin.isatty():
            ctx.note("type the draft (Markdown), then Ctrl-D on a line of its own")
        text = sys.stdin.read()
    if not text.strip():
        raise UsageError("the draft is empty: give it as TEXT, or pipe it in with -")
    with ctx.open() as forge:
        session_id = forge.resolve(ctx.args.session)
        with _busy_hint("draft"):
            round_number = forge.add_human_draft(session_id, ctx.args.author, text)
    if ctx.json:
        print(msgspec.json.encode({"session_id": session_id, "author": ctx.args.author,
                                   "round": round_number}).decode())
    else:
        where = f"round {round_number}" if round_number else "the first draft round"
        ctx.note(f"{ctx.args.author}'s draft is in session {session_id} ({where}, {len(text)} characters)")
    return EXIT_OK


def cmd_vote(ctx: Context) -> int:
    args = ctx.args
    with ctx.open() as forge:
        session_id = forge.resolve(args.session)
        with _busy_hint("vote"):
            round_number = forge.cast_vote(session_id, args.voter, args.choice, args.reasons, args.concerns)
    if ctx.json:
        print(msgspec.json.encode({"session_id": session_id, "voter": args.voter, "vote": args.choice.upper(),
                                   "round": round_number}).decode())
    else:
        ctx.note(f"{args.voter} votes {args.choice.upper()} in session {session_id} (convergence round "
                 f"{round_number})")
    return EXIT_OK


def cmd_serve(ctx: Context) -> int:
    from forge_actors.surfaces.server.runner import check_bind, check_token, listen, serve

    # A token given but blank is refused (it would guard nothing), not taken as "no token".
    if ctx.args.token is not None:
        token = check_token(ctx.args.token, "--token")
    else:
        token = check_token(ctx.environ.get("FORGE_API_TOKEN"), "FORGE_API_TOKEN")
    check_bind(ctx.args.host, token)
    scan = ctx.args.orphan_scan
    if scan is not None and not ctx.args.resume_orphans:
        raise UsageError("--orphan-scan sets how often --resume-orphans scans: give --resume-orphans too")
    if scan is not None and not 0 < scan < float("inf"):
        raise UsageError(f"--orphan-scan is a number of seconds > 0, not {scan:g}")
    # The port first: nothing is said to be served, and no log created, before it is ours.
    with listen(ctx.args.host, ctx.args.port) as sock, ctx.open(create=True) as forge:
        port = sock.getsockname()[1]
        shown = f"http://[{ctx.args.host}]:{port}/" if ":" in ctx.args.host else f"http://{ctx.args.host}:{port}/"
        ctx.note(f"serving {forge.path} on {shown}" + (" (token required; open the page as /#token=TOKEN)"
                                                       if token else ""))
        if ctx.args.resume_orphans:
            scan = scan if scan is not None else forge.lease_ttl
            ctx.note(f"adopting orphaned sessions every {scan:g} s (owner {forge.owner})")
        if ctx.args.log_level is None and not ctx.environ.get("FORGE_LOG_LEVEL"):
            logging.getLogger(REQUEST_LOG).setLevel(logging.INFO)  # a request per line unless told otherwise
        serve(forge, ctx.args.host, port, token, orphan_scan=scan if ctx.args.resume_orphans else None, sock=sock)
    return EXIT_OK


def cmd_migrate_log(ctx: Context) -> int:
    """``forge migrate-log SRC DST``: every event of SRC into DST (resumable), then the report."""
    source, target, batch = ctx.args.source, ctx.args.target, ctx.args.batch_size
    shown_source, shown_target = printable_target(source), printable_target(target)
    if batch < 1:
        raise UsageError("--batch-size is a number of events, 1 or more")
    if same_log(source, target):
        raise UsageError(f"{shown_source} is both SRC and DST: copy into another log")
    check_folder_exists(target, "")

    def progress(last: int, total: int) -> None:
        ctx.note(f"copied up to position {last:,} of {total:,}")

    ctx.note(f"copying {shown_source} into {shown_target}")
    try:
        report = open_existing_log(source, lambda: migrate_log(source, target, batch_size=batch, on_batch=progress))
    except KeyboardInterrupt:
        again = f"forge migrate-log {shown_source} {shown_target}"
        if has_password(source) or has_password(target):
            again += "   (with the password put back, or given in PGPASSWORD or ~/.pgpass)"
        ctx.err.print(f"interrupted; every batch copied is complete. Go on where it stopped with: {again}",
                      markup=False)
        return EXIT_INTERRUPTED
    if ctx.json:
        print(msgspec.json.encode({"source": shown_source, "target": shown_target, "copied": report.copied,
                                   "already_there": report.already_there,
                                   "last_position": report.last_position}).decode())
    else:
        ctx.out.print(f"copied {report.copied:,} event(s) into {shown_target} ({report.already_there:,} there "
                      f"already); its last position is {report.last_position:,}", markup=False)
    return EXIT_OK


def cmd_mcp(ctx: Context) -> int:
    """``forge mcp``: stdout is the protocol's, so nothing else is printed there; logs go to stderr."""
    from forge_actors.surfaces.mcp import serve_stdio

    with ctx.open(create=True) as forge:
        serve_stdio(forge)
    return EXIT_OK


COMMANDS: dict[str, Callable[[Context], int]] = {
    "run": cmd_run, "fork": cmd_fork, "resume": cmd_resume, "replay": cmd_replay, "rerun": cmd_rerun, "sessions": cmd_sessions,
    "show": cmd_show, "export": cmd_export, "providers": cmd_providers, "serve": cmd_serve, "switch": cmd_switch,
    "draft": cmd_draft, "vote": cmd_vote, "mcp": cmd_mcp, "migrate-log": cmd_migrate_log, "diff": cmd_diff,
    "search": cmd_search, "eval": eval_command.cmd_eval,
}


def _db_flag_of(ctx: Context) -> str:
    """`` --db LOG`` when the log was chosen and a next command needs it named (see ``Context.db_flag``)."""
    return f" --db {ctx.db_flag}" if ctx._log is not None and ctx.db_flag else ""


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
    args = _parse(argv)
    env = dict(os.environ if environ is None else environ)
    try:
        configure_logging(args.log_level, env)
    except UsageError as exc:
        print(f"forge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    err = Console(stderr=True, highlight=False, soft_wrap=not sys.stderr.isatty())  # as Context.err
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    context = Context(args, env)
    try:
        return COMMANDS[args.command](context)
    except (UsageError, ConfigError, NotAnEventLogError, CorruptEventError) as exc:
        err.print(f"forge: {exc}", markup=False)
        return EXIT_USAGE
    except EventStoreError as exc:  # a full disk, a damaged file: what happened and what to do, one line
        err.print(f"forge: {exc}", markup=False)
        return EXIT_USAGE
    except SessionNotFoundError as exc:
        err.print(f"forge: {exc}; list them with `forge sessions{_db_flag_of(context)}`", markup=False)
        return EXIT_USAGE
    except ForgeError as exc:  # a step that does not fit
        err.print(f"forge: {exc}", markup=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.print("forge: interrupted", markup=False)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())

