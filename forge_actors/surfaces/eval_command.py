"""``forge eval``: score a council against single models on a task file (``Forge.evaluate``).

Registered by ``forge_actors.surfaces.cli`` (``add_parser``, ``COMMANDS["eval"]``); a usage mistake is
a ConfigError, which the CLI reports in one line (exit 2) like its own.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from rich.markdown import Markdown

from forge_actors.core.evaluation import EvalReport, EvaluationTaskScored, render_markdown, render_svg, report_json
from forge_actors.engine import ConfigError, baseline, council, read_task_file

if TYPE_CHECKING:
    from forge_actors.surfaces.cli import Context

EXIT_OK, EXIT_INTERRUPTED = 0, 130  # as forge_actors.surfaces.cli's


EVAL_HELP = """Does the council beat one model? Every task of TASKS (JSON Lines: id, prompt, expected, scorer;
`basic` is the shipped set) is answered by the council (-p, deliberating to its end: its final
synthesis is the answer) and by each --baseline (one model answering directly: its draft), every
answer a session in the log. Prints accuracy per system with a bootstrap 95% interval, tokens,
cost and time, and a row per task; -o DIR also writes report.md, report.json and accuracy-cost.svg.

The evaluation is recorded under a run id (eval-...): --resume RUN_ID scores what a stopped run
left; --rerun RUN_ID runs it again from its recordings, calling no provider."""


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    evaluate = commands.add_parser("eval", parents=[common], help="score a council against single models on a task "
                                   "file", description=EVAL_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    evaluate.add_argument("tasks", nargs="?", metavar="TASKS", help="a JSONL task file, or `basic` (the shipped set)")
    evaluate.add_argument("-p", "--participant", dest="participants", action="append", default=[], metavar="SPEC",
                          help="a member of the council, e.g. mock:alice?accuracy=0.7 (repeatable)")
    evaluate.add_argument("--baseline", dest="baselines", action="append", default=[], metavar="SPEC",
                          help="a single model answering directly, compared with the council (repeatable)")
    evaluate.add_argument("--judge", metavar="SPEC", help="the provider judging the tasks scored by `judge`")
    evaluate.add_argument("--setting", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                          help="a setting of the council's sessions, e.g. max_iterations=2 (repeatable)")
    evaluate.add_argument("--variant", dest="variants", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                          help="the council again as the system NAME, with these settings on top of --setting "
                               "(e.g. one-pass:max_iterations=1): a stop rule compared like any setting (repeatable)")
    evaluate.add_argument("--concurrency", type=int, default=4, metavar="N", help="sessions at once (default 4)")
    evaluate.add_argument("--seed", type=int, default=0, metavar="N", help="the bootstrap's seed (default 0)")
    evaluate.add_argument("-o", "--output", metavar="DIR", help="write report.md, report.json and accuracy-cost.svg")
    again = evaluate.add_mutually_exclusive_group()
    again.add_argument("--rerun", metavar="RUN_ID", help="run a recorded evaluation again from its recordings "
                                                         "(no provider call)")
    again.add_argument("--resume", metavar="RUN_ID", help="score what a stopped evaluation left")


def _eval_settings(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs: a value is JSON when it reads as JSON (2, 0.9, true), else text."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise ConfigError(f"setting {pair!r}: write KEY=VALUE, e.g. max_iterations=2")
        try:
            settings[key.strip().replace("-", "_")] = msgspec.json.decode(value)
        except msgspec.DecodeError:
            settings[key.strip().replace("-", "_")] = value
    return settings


def cmd_eval(ctx: Context) -> int:
    args = ctx.args
    again = args.rerun or args.resume
    if again is None:
        if args.tasks is None:
            raise ConfigError("give a task file (or `basic`), or --rerun / --resume RUN_ID")
        if not args.participants and not args.baselines:
            raise ConfigError("nothing to evaluate: give the council (-p SPEC ...) and/or --baseline SPEC")
    elif args.tasks or args.participants or args.baselines or args.settings or args.variants or args.judge:
        raise ConfigError("--rerun and --resume take the tasks and systems from the log: give only RUN_ID")
    if args.variants and not args.participants:
        raise ConfigError("--variant varies the council: give its participants (-p SPEC ...)")
    settings = _eval_settings(args.settings)
    systems = [council(args.participants, **settings)] if args.participants else []
    for variant in args.variants:
        name, colon, pairs = variant.partition(":")
        if not colon or not name.strip() or not pairs.strip():
            raise ConfigError(f"--variant {variant!r}: write NAME:KEY=VALUE[,KEY=VALUE], e.g. one-pass:max_iterations=1")
        systems.append(council(args.participants, name.strip(), **{**settings, **_eval_settings(pairs.split(","))}))
    systems += [baseline(spec) for spec in args.baselines]
    tasks = read_task_file(args.tasks) if again is None else []
    started: list[str] = []
    lock = threading.Lock()
    done, total = [0], [len(tasks) * len(systems)]

    def scored(event: EvaluationTaskScored) -> None:
        with lock:
            done[0] += 1
            mark = "right" if event.correct else "wrong"
            count = f"{done[0]}/{total[0]}"
            answer = "".join(ch if ch.isprintable() else " " for ch in event.answer[:60])  # a model wrote it
            ctx.note(f"[{count}] {event.task_id} · {event.system}: {mark} ({answer})")

    with ctx.open(create=again is None) as forge:
        def on_started(run_id: str) -> None:
            started.append(run_id)
            if args.resume:  # what is left to score
                report = forge.evaluation_report(run_id)
                total[0] = len(report.task_ids) * len(report.systems) - len(report.outcomes)
            elif args.rerun:  # what the recorded evaluation scored
                total[0] = len(forge.evaluation_report(args.rerun).outcomes)

        try:
            report = forge.evaluate(tasks, systems, judge=args.judge, seed=args.seed, concurrency=args.concurrency,
                                    rerun=args.rerun, resume=args.resume, on_started=on_started,
                                    on_scored=scored)
        except KeyboardInterrupt:
            if started and not args.rerun:
                ctx.err.print(f"interrupted; what was scored is in the log. Continue with: forge eval --resume "
                              f"{started[0]}{ctx.db_suffix()}")
            return EXIT_INTERRUPTED
    _eval_output(ctx, report)
    return EXIT_OK


def _eval_output(ctx: Context, report: EvalReport) -> None:
    markdown = render_markdown(report)
    if ctx.args.output:
        folder = Path(ctx.args.output)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.md").write_text(markdown, encoding="utf-8")
        (folder / "report.json").write_bytes(msgspec.json.format(msgspec.json.encode(report_json(report))))
        (folder / "accuracy-cost.svg").write_text(render_svg(report), encoding="utf-8")
        ctx.note(f"wrote report.md, report.json and accuracy-cost.svg to {folder}")
    if ctx.json:
        sys.stdout.write(msgspec.json.encode(report_json(report)).decode() + "\n")
    else:
        ctx.out.print(Markdown(markdown))
    again = f"forge eval --rerun {report.run_id}{ctx.db_suffix()}"
    ctx.note(f"evaluation {report.run_id}; re-run it offline from its recordings with: {again}")
