#!/usr/bin/env python3
"""Re-stream, verify, or dump a recorded session.

    tools/replay.py [--db PATH|URL] SESSION [--speed X | --verify | --state]

(with the virtual environment active; else `.venv/bin/python tools/replay.py ...`).

The log is chosen as by the ``forge`` command: ``--db`` (a file or a ``postgresql://`` URL),
else ``$FORGE_DB``, else forge.toml's ``[forge] database``, else ``./forge.db``.

- default: re-stream the session to the terminal at its recorded pace times X (the
  same live view as `forge replay`; JSON lines when stdout is not a terminal);
- ``--verify``: check the log's invariants (contiguous versions, nothing after
  SessionEnded, each contribution sent once and settled once, no delta after its
  contribution was settled, each completed contribution equal to its deltas, every
  round outcome following from the log: see ``forge_actors.core.audit``), and a fork's
  copy against its parent (or says that the log does not hold the parent); exits 1 naming
  the first violation, 0 when the log is sound;
- ``--state``: print the rebuilt state as JSON.

It goes through the engine API, the same code paths as the `forge` command.
"""

from __future__ import annotations

import argparse
import os
import sys

try:
    import msgspec
except ImportError:  # run by a Python without the project installed (e.g. the system's, by the shebang)
    print(f"replay.py: forge_actors is not installed for {sys.executable}: run it as .venv/bin/python "
          "tools/replay.py, or `source .venv/bin/activate` first", file=sys.stderr)
    sys.exit(2)

from forge_actors.engine import (
    ConfigError,
    EventStoreError,
    Forge,
    ForgeError,
    choose_log,
    load_config,
)
from forge_actors.surfaces import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/replay.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", metavar="PATH|URL", help="the event log (default: $FORGE_DB, else forge.toml's "
                        f"[forge] database, else ./{cli.DEFAULT_DB})")
    parser.add_argument("session", metavar="SESSION", help="a session id or a unique prefix of one")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--speed", type=float, default=1.0, help="pace multiplier (0: no pauses)")
    mode.add_argument("--verify", action="store_true", help="check the log's invariants")
    mode.add_argument("--state", action="store_true", help="print the rebuilt state as JSON")
    args = parser.parse_args(argv)
    if not (args.verify or args.state):
        return cli.main(["replay", args.session, *(["--db", args.db] if args.db else []), "--speed", str(args.speed)])
    try:
        log = choose_log(args.db, os.environ, _configured_log)
        with cli.open_existing_log(log.target, lambda: Forge(log.target, create=False)) as forge:
            session_id = forge.resolve(args.session)
            if args.state:
                sys.stdout.write(msgspec.json.encode(forge.state(session_id)).decode() + "\n")
                return 0
            violations = forge.verify(session_id)
            events = len(forge.events(session_id))
            lineage = forge.check_fork(session_id)
    except (ForgeError, ConfigError, EventStoreError, cli.UsageError) as exc:
        # every message names the log by printable_target: a URL's password never reaches stderr
        print(f"replay.py: {exc}", file=sys.stderr)
        return 2
    if lineage is not None:  # a fork: whether its copy was checked against its parent, and how it went
        print(f"{session_id}: a fork; {lineage.note}", file=sys.stderr if lineage.violations else sys.stdout)
    if violations:
        print(f"{session_id}: {len(violations)} violation(s); the first: {violations[0]}", file=sys.stderr)
        return 1
    print(f"{session_id}: {events} events, no violations")
    return 0


def _configured_log() -> str | None:
    """forge.toml's ``database``; a file that cannot be used is an error, as for `forge` (another log
    than the one meant would be read)."""
    try:
        return load_config(None, os.environ).database
    except ConfigError as exc:
        raise ConfigError(f"{exc}. The log comes from this file when neither --db nor FORGE_DB names one: fix "
                          "the file, or name the log with --db or FORGE_DB") from None


if __name__ == "__main__":
    sys.exit(main())
