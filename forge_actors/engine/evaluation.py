"""Evaluations: every system answers every task, each answer a session in the log (``Forge.evaluate``).

An evaluation is a stream of its own in the log, ``eval-<id>`` (``core.evaluation``'s events): which
tasks and systems (``EvaluationStarted``), which session answered each task for each system
(``EvaluationSessionStarted``, a judge's too), how each was scored (``EvaluationTaskScored``), and
when a pass over the pending pairs finished (``EvaluationFinished``, with the provider calls its
sessions made). Everything else — prompts, answers, tokens — is in those sessions.

How a system answers: a council deliberates to its end and its answer is its final synthesis; a
baseline is a one-participant session that runs its draft round only (the model answering once,
directly, as every other call is recorded) and its answer is that draft. A judge is the same: a
one-participant session whose draft is the verdict. Every session is told ``ANSWER_INSTRUCTION``.

Resuming (``resume=RUN_ID``) runs only the pairs not yet scored: a council session a crash left
unfinished is resumed where it stopped (``Forge.deliberate``), a baseline's or judge's that has no
draft yet is asked again in a new session. A re-run (``rerun=RUN_ID``) re-runs every scored pair's
sessions from their recordings (``Forge.rerun``: no provider is called) and scores the answers again;
its report gives the recorded sessions' tokens and cost (what the evaluation cost when it ran), its
own wall time, and the provider calls it made, counted from its sessions (0).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventstore import NO_STREAM, EventLog, NewEvent
from forge_actors.core.errors import ConfigError
from forge_actors.core.evaluation import (
    ANSWER_INSTRUCTION,
    EvalEvent,
    EvalProgress,
    EvalReport,
    EvalSystem,
    EvalTask,
    EvaluationFinished,
    EvaluationSessionStarted,
    EvaluationStarted,
    EvaluationTaskScored,
    SystemKind,
    TaskOutcome,
    build_report,
    decode_eval_event,
    encode_eval_event,
    final_answer,
    fold_evaluation,
    judge_goal,
    parse_tasks,
    read_verdict,
    score_reply,
    score_verdict,
    system_names_unique,
)
from forge_actors.core.state import SessionState
from forge_actors.engine.replay import REPLAY_PREFIX
from forge_actors.providers.registry import redact_spec

if TYPE_CHECKING:
    from forge_actors.engine.forge import Forge

logger = logging.getLogger(__name__)

#: The prefix of an evaluation's stream id.
EVAL_PREFIX = "eval-"
#: The task sets shipped in the package (``forge_actors/evals/NAME.jsonl``).
SHIPPED_SETS = ("basic",)
DEFAULT_CONCURRENCY = 4
#: How a baseline's (or a judge's) session ends once its draft, the answer, is in.
ANSWERED_BY_DRAFT = "answered: a single model's draft is its answer"


def is_evaluation(stream_id: str) -> bool:
    """Whether a stream of the log is an evaluation's (not a session's)."""
    return stream_id.startswith(EVAL_PREFIX)


def not_a_session(run_id: str) -> str:
    return (f"{run_id} is an evaluation, not a session: its report names its sessions (forge eval --rerun "
            f"{run_id} --json, or Forge.evaluation_report)")


def read_task_file(path: str) -> list[EvalTask]:
    """The tasks of a JSONL file; ``basic`` (no such file) is the shipped set. TaskFileError names a bad line."""
    file = Path(path)
    if not file.exists() and path in SHIPPED_SETS:
        text = resources.files("forge_actors.evals").joinpath(f"{path}.jsonl").read_text(encoding="utf-8")
        return parse_tasks(text, f"the shipped task set {path!r}")
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as missing:
        raise ConfigError(f"cannot read the task file {path}: {missing.strerror or missing}; give a JSONL file "
                          f"(or one of the shipped sets: {', '.join(SHIPPED_SETS)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the task file {path} is not UTF-8 text") from None
    return parse_tasks(text, path)


def council(participants: Sequence[str], name: str = "council", **settings: Any) -> EvalSystem:
    """A council system: ``participants`` deliberate to the end; ``settings`` are their sessions'."""
    if not participants:
        raise ConfigError("a council needs participants: give specs such as mock:alice?accuracy=0.7")
    return EvalSystem(name, "council", tuple(participants), dict(settings))


def baseline(spec: str, name: str | None = None) -> EvalSystem:
    """A baseline system: one model answering directly (its draft). Named by its spec (without a key)."""
    return EvalSystem(name or redact_spec(spec), "baseline", (spec,), {})


class _Pair:
    """One task for one system."""

    def __init__(self, task: EvalTask, system: EvalSystem) -> None:
        self.task = task
        self.system = system


class Evaluation:
    """Runs, resumes and re-runs one evaluation over ``forge``'s log (its stream ``run_id``)."""

    def __init__(self, forge: Forge, store: EventLog,
                 specs: dict[str, str] | None = None, *, concurrency: int = DEFAULT_CONCURRENCY,
                 on_scored: Callable[[EvaluationTaskScored], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, timeout: float | None = None) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigError(f"concurrency is a number of sessions at once, >= 1, not {concurrency!r}")
        self._forge = forge
        self._store = store
        #: The specs as given (a key in one is used, never recorded), by their recorded (redacted) form.
        self._specs = specs or {}
        self._concurrency = concurrency
        self._on_scored = on_scored
        self._clock = clock
        self._timeout = timeout

    # -- the stream -------------------------------------------------------------------------------

    def _append(self, run_id: str, event: EvalEvent, *, first: bool = False) -> None:
        record = NewEvent.from_bytes(type(event).__name__, encode_eval_event(event))
        self._store.append(run_id, [record], expected_version=NO_STREAM if first else "any")

    def progress(self, run_id: str) -> EvalProgress:
        records = list(self._store.read_stream(run_id))
        if not records:
            raise ConfigError(f"no evaluation {run_id!r} in this log; an evaluation's run id starts with "
                              f"{EVAL_PREFIX!r} (forge eval prints it)")
        return fold_evaluation(decode_eval_event(r.type, r.data) for r in records)

    # -- running ----------------------------------------------------------------------------------

    def start(self, run_id: str, tasks: Sequence[EvalTask], systems: Sequence[EvalSystem], judge: str | None,
              seed: int) -> None:
        if not tasks:
            raise ConfigError("an evaluation needs tasks")
        if not systems:
            raise ConfigError("an evaluation needs systems: a council (-p SPEC ...) and/or baselines (--baseline)")
        system_names_unique(systems)
        judged = [t.id for t in tasks if t.scorer == "judge"]
        if judged and judge is None:
            raise ConfigError(f"task {judged[0]} is scored by a judge: name one (--judge SPEC, judge=...)")
        shown_judge = redact_spec(judge) if judge is not None else None
        if judge is not None and shown_judge is not None:
            self._specs.setdefault(shown_judge, judge)
        self._append(run_id, EvaluationStarted(run_id, tuple(tasks), tuple(systems), shown_judge, seed), first=True)

    def run(self, run_id: str) -> EvalReport:
        """Score every pair of the evaluation not scored yet, ``concurrency`` sessions at once."""
        began = self._clock()
        progress = self.progress(run_id)
        started = progress.started
        if started.rerun_of is not None:
            raise ConfigError(f"{run_id} is a re-run of {started.rerun_of}: re-run that evaluation again instead")
        pairs = [_Pair(task, system) for task in started.tasks for system in started.systems
                 if (task.id, system.name) not in progress.scored]
        self._each(pairs, lambda pair: self._answer(run_id, progress, pair))
        self._finish(run_id, began)
        return self.report(run_id)

    def rerun(self, source_id: str, run_id: str, on_started: Callable[[str], None] | None = None) -> EvalReport:
        """The evaluation ``source_id`` again from its recordings, as ``run_id``: no provider is called."""
        began = self._clock()
        source = self.progress(source_id)
        started = source.started
        self._append(run_id, EvaluationStarted(run_id, started.tasks, started.systems, started.judge, started.seed,
                                               rerun_of=source_id), first=True)
        if on_started is not None:
            on_started(run_id)
        tasks = {task.id: task for task in started.tasks}
        systems = {system.name: system for system in started.systems}
        scored = [s for s in source.scored.values() if s.task_id in tasks and s.system in systems]
        self._each(scored, lambda s: self._rerun_pair(run_id, tasks[s.task_id], systems[s.system], s))
        self._finish(run_id, began)
        return self.report(run_id)

    def _each(self, items: Sequence[Any], work: Callable[[Any], None]) -> None:
        """``work`` on every item, ``concurrency`` at once. The first failure (or a Ctrl-C here) cancels
        what has not started and is raised at once; what runs still finishes or is stopped by the
        engine's close, and what was scored stays in the log: resume goes on from there."""
        if not items:
            return
        pool = ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix="forge-eval")
        try:
            futures: list[Future[None]] = [pool.submit(work, item) for item in items]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f.exception() for f in done if f.exception() is not None), None)
            if failed is not None:
                raise failed
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()

    def _finish(self, run_id: str, began: float) -> None:
        progress = self.progress(run_id)
        calls = sum(self._provider_calls(self._forge.state(sid)) for sid in self._sessions_of(progress))
        self._append(run_id, EvaluationFinished(self._clock() - began, calls))

    @staticmethod
    def _sessions_of(progress: EvalProgress) -> list[str]:
        sessions = []
        for scored in progress.scored.values():
            sessions.append(scored.session_id)
            if scored.judge_session_id is not None:
                sessions.append(scored.judge_session_id)
        return sessions

    @staticmethod
    def _provider_calls(state: SessionState) -> int:
        """The contributions (attempts) of the session answered by a provider, not from a recording."""
        live = {name for name, info in state.participants.items()
                if info.kind == "ai" and not info.provider.startswith(REPLAY_PREFIX)}
        return sum(1 for c in state.contributions.values() if c.participant in live)

    # -- one pair ---------------------------------------------------------------------------------

    def _answer(self, run_id: str, progress: EvalProgress, pair: _Pair) -> None:
        began = self._clock()
        task, system = pair.task, pair.system
        session_id = progress.sessions.get((task.id, system.name, "answer"))
        state = self._reusable(session_id, system) if session_id is not None else None
        if state is None or session_id is None:
            session_id = self._new_session(run_id, task, system, task.prompt, "answer")
        reply = self._reply(session_id, system.kind)
        judge_id = None
        if task.scorer == "judge":
            judge_spec = progress.started.judge
            assert judge_spec is not None  # start() requires one
            judge_id = progress.sessions.get((task.id, system.name, "judge"))
            judge_system = baseline(judge_spec, "judge")
            if judge_id is None or self._reusable(judge_id, judge_system) is None:
                judge_id = self._new_session(run_id, task, judge_system, judge_goal(task, final_answer(reply or "")),
                                             "judge", label=system.name)
            score = score_verdict(final_answer(reply or ""), read_verdict(self._reply(judge_id, "baseline") or ""))
        else:
            score = score_reply(task, reply)
        self._scored(run_id, EvaluationTaskScored(task.id, system.name, session_id, score.correct, score.answer,
                                                  score.detail, self._clock() - began, judge_id))

    def _rerun_pair(self, run_id: str, task: EvalTask, system: EvalSystem, original: EvaluationTaskScored) -> None:
        began = self._clock()
        session_id = self._forge.rerun(original.session_id, timeout=self._timeout)
        self._append(run_id, EvaluationSessionStarted(task.id, system.name, session_id))
        reply = self._reply(session_id, system.kind, run=False)
        judge_id = None
        if original.judge_session_id is not None:
            judge_id = self._forge.rerun(original.judge_session_id, timeout=self._timeout)
            self._append(run_id, EvaluationSessionStarted(task.id, system.name, judge_id, "judge"))
            verdict = read_verdict(self._reply(judge_id, "baseline", run=False) or "")
            score = score_verdict(final_answer(reply or ""), verdict)
        else:
            score = score_reply(task, reply)
        self._scored(run_id, EvaluationTaskScored(task.id, system.name, session_id, score.correct, score.answer,
                                                  score.detail, self._clock() - began, judge_id))

    def _scored(self, run_id: str, scored: EvaluationTaskScored) -> None:
        """Record a task's score for a system in the evaluation's stream, and tell whoever follows it."""
        self._append(run_id, scored)
        if self._on_scored is not None:
            self._on_scored(scored)

    def _new_session(self, run_id: str, task: EvalTask, system: EvalSystem, goal: str, role: str,
                     label: str | None = None) -> str:
        participants = [self._specs.get(spec, spec) for spec in system.participants]
        title = f"{run_id} {task.id} {label or system.name}" + (" (judge)" if role == "judge" else "")
        session_id = self._forge.create_session(goal, participants, title[:200], constraints=[ANSWER_INSTRUCTION]
                                                if role == "answer" else [], settings=system.settings)
        self._append(run_id, EvaluationSessionStarted(task.id, label or system.name, session_id,
                                                      "judge" if role == "judge" else "answer"))
        return session_id

    def _reusable(self, session_id: str, system: EvalSystem) -> SessionState | None:
        """The state of a session a previous pass started, when it can still give the answer: a council's
        (resumed if unfinished), a baseline's once it has its draft. None: start a new one."""
        state = self._forge.state(session_id)
        if system.kind == "council":
            return state
        return state if state.drafts else None

    def _reply(self, session_id: str, kind: SystemKind, *, run: bool = True) -> str | None:
        """The session's answer: a council's final synthesis (deliberated to its end first, when ``run``),
        a baseline's draft (its draft round run first, when ``run`` and it has none)."""
        if kind == "council":
            state = self._deliberate(session_id) if run else self._forge.state(session_id)
            synthesis = state.synthesis
            return synthesis.content if synthesis is not None else None
        state = self._forge.state(session_id)
        if run and not state.drafts:
            self._forge.run_round(session_id, "draft", timeout=self._timeout)
            # Answered: end it, so that its actors stop (a re-run ends the same way, after the same draft).
            state = self._forge.cancel(session_id, ANSWERED_BY_DRAFT)
        return next(iter(state.drafts.values()), None)

    def _deliberate(self, session_id: str) -> SessionState:
        """Run (or resume) the session to its end; its events are read as they commit, not kept."""
        for _ in self._forge.deliberate(session_id):
            pass
        return self._forge.state(session_id)

    # -- the report -------------------------------------------------------------------------------

    def report(self, run_id: str) -> EvalReport:
        """The report of the evaluation as its stream and sessions hold it now."""
        progress = self.progress(run_id)
        started = progress.started
        source_sessions: dict[tuple[str, str], EvaluationTaskScored] = {}
        if started.rerun_of is not None:  # the recorded sessions' tokens and cost: the re-run spent none
            source_sessions = self.progress(started.rerun_of).scored
        outcomes = []
        for task in started.tasks:
            for system in started.systems:
                scored = progress.scored.get((task.id, system.name))
                if scored is None:
                    continue
                costed = source_sessions.get((task.id, system.name), scored)
                outcomes.append(self._outcome(scored, costed))
        finished = [e for e in self._events(run_id) if isinstance(e, EvaluationFinished)]
        return build_report(
            run_id, started.systems, [t.id for t in started.tasks], outcomes,
            seconds=sum(f.seconds for f in finished), seed=started.seed, rng=random.Random(started.seed),
            rerun_of=started.rerun_of, provider_calls=finished[-1].provider_calls if finished else None)

    def _events(self, run_id: str) -> list[EvalEvent]:
        return [decode_eval_event(r.type, r.data) for r in self._store.read_stream(run_id)]

    def _outcome(self, scored: EvaluationTaskScored, costed: EvaluationTaskScored) -> TaskOutcome:
        input_tokens = output_tokens = 0
        cost: float | None = 0.0
        for session_id in (costed.session_id, costed.judge_session_id):
            if session_id is None:
                continue
            usage = self._forge.usage(session_id)
            input_tokens += usage.total.input_tokens
            output_tokens += usage.total.output_tokens
            cost = None if cost is None or usage.total_cost is None else cost + usage.total_cost
        return TaskOutcome(scored.task_id, scored.system, scored.correct, scored.answer, scored.detail,
                           scored.session_id, scored.judge_session_id, input_tokens, output_tokens, cost,
                           scored.seconds)
