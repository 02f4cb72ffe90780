"""Evaluations, the pure part: task files, answers, scorers, bootstrap intervals, the report and its chart.

An evaluation asks every *system* (a council, or a baseline: one model answering directly) every
*task* of a task file, and scores each answer. The engine runs the sessions
(``forge_actors.engine.evaluation``); everything here is data and functions of data: no I/O, no
clock, and the only randomness (the bootstrap) comes from a ``random.Random`` the caller seeds.

A task file is JSON Lines, one task an object per line::

    {"id": "add-1", "prompt": "Ann has 3 apples ...", "expected": "5", "scorer": "numeric", "tolerance": 0}

Blank lines and lines starting with ``#`` are skipped. Scorers:

- ``exact``: the answer equals ``expected``, whitespace and case normalised;
- ``numeric``: the answer's number is within ``tolerance`` (default 0) of ``expected``;
- ``regex``: ``pattern`` (a Python regular expression, case-insensitive) is found in the answer;
- ``contains``: ``expected`` (normalised) appears in the answer (normalised);
- ``judge``: a provider is shown the question, the reference answer and the candidate answer, and
  says ``{"correct": true|false, "reason": "..."}``.

*The answer* of a reply is its last ``Answer:`` line (every system is asked to end with one), else
the whole reply. ``numeric`` reads the first number of that line, else the last number of the reply.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypeAlias, get_args
from xml.sax.saxutils import escape

import msgspec

from forge_actors.core.errors import ConfigError

ScorerName = Literal["exact", "numeric", "regex", "contains", "judge"]
SCORERS: tuple[str, ...] = get_args(ScorerName)
SystemKind = Literal["council", "baseline"]
SessionRole = Literal["answer", "judge"]

#: What every system is told, as a constraint of its session, so that the answer can be found.
ANSWER_INSTRUCTION = ("End your reply with a line of its own: 'Answer: ' followed by the final answer alone "
                      "(a number, a word or a short phrase).")
#: Marker lines of a judge's goal (the mock judge reads them too).
JUDGE_MARKER = "Judge whether a candidate answer to a question is correct."
REFERENCE_PREFIX = "Reference answer:"
CANDIDATE_PREFIX = "Candidate answer:"
#: The most of a candidate's answer a judge is shown (a reply without an Answer: line is all answer).
JUDGE_ANSWER_CHARS = 4000
#: Resamples of the bootstrap: 2,000 put a 95% interval's ends within about a point of their limit.
BOOTSTRAP_RESAMPLES = 2000
_TASK_KEYS = frozenset({"id", "prompt", "expected", "scorer", "tolerance", "pattern"})
#: An ``Answer:`` line (Markdown emphasis around it allowed). Greedy to the line's end, the trailing
#: emphasis stripped afterwards: one pass over a line a model wrote, however long.
_ANSWER_LINE = re.compile(r"^[ \t>*_#-]*(?:final[ \t]+)?answer[ \t*_]*[:=][ \t*_]*(.*)$",
                          re.IGNORECASE | re.MULTILINE)
#: A number as people write them: a sign, thousands separators, decimals (a trailing "." is punctuation).
_NUMBER = re.compile(r"(?<![\w.])[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d])")
_SPACES = re.compile(r"\s+")
_EDGE_PUNCTUATION = " \t\n.,;:!?\"'`*_()[]"


class TaskFileError(ConfigError):
    """A line of a task file is not a task; the message names the line and what to fix."""

    def __init__(self, source: str, line: int, problem: str) -> None:
        self.source = source
        self.line = line
        self.problem = problem
        super().__init__(f"{source}, line {line}: {problem}")


class EvalTask(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    prompt: str
    expected: str
    scorer: ScorerName
    tolerance: float | None = None
    pattern: str | None = None


class EvalSystem(msgspec.Struct, frozen=True, omit_defaults=True):
    """Who answers: a council deliberating (``rounds`` None: to its end), or a baseline (one
    participant, ``rounds=("draft",)``: its draft is its answer). ``settings`` are the sessions'
    settings, so that two councils differing only in a setting (a stop rule) are two systems."""

    name: str
    kind: SystemKind
    participants: tuple[str, ...]
    settings: dict[str, Any] = {}


# -- task files -------------------------------------------------------------------------------------


def parse_tasks(text: str, source: str = "the task file") -> list[EvalTask]:
    """The tasks of a JSON Lines text. Raises TaskFileError on the first line that is not a task."""
    tasks: list[EvalTask] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        task = _task(stripped, source, number)
        if task.id in seen:
            raise TaskFileError(source, number, f"the id {task.id!r} is already used on line {seen[task.id]}: "
                                                "give every task its own id")
        seen[task.id] = number
        tasks.append(task)
    if not tasks:
        raise TaskFileError(source, 0, "no tasks: write one JSON object per line "
                                       '({"id": ..., "prompt": ..., "expected": ..., "scorer": ...})')
    return tasks


def _task(line: str, source: str, number: int) -> EvalTask:
    def refuse(problem: str) -> TaskFileError:
        return TaskFileError(source, number, problem)

    try:
        raw = json.loads(line)
    except ValueError as bad:
        raise refuse(f"not JSON ({bad.args[0] if bad.args else bad}): write one JSON object per line") from None
    if not isinstance(raw, dict):
        raise refuse(f"a {type(raw).__name__}, not a JSON object: write {{\"id\": ..., \"prompt\": ..., ...}}")
    unknown = sorted(set(raw) - _TASK_KEYS)
    if unknown:
        raise refuse(f"unknown key(s) {', '.join(unknown)}; a task has {', '.join(sorted(_TASK_KEYS))}")
    for key in ("id", "prompt", "expected", "scorer"):
        if key not in raw:
            raise refuse(f"no {key!r}: every task needs id, prompt, expected and scorer")
    task_id, prompt, expected, scorer = raw["id"], raw["prompt"], raw["expected"], raw["scorer"]
    if not isinstance(task_id, str) or not task_id.strip():
        raise refuse("'id' must be a non-empty string")
    if not isinstance(prompt, str) or not prompt.strip():
        raise refuse("'prompt' must be a non-empty string: the question the systems answer")
    if isinstance(expected, bool) or not isinstance(expected, (str, int, float)) or not str(expected).strip():
        raise refuse("'expected' must be a non-empty string or a number")
    if scorer not in SCORERS:
        raise refuse(f"unknown scorer {scorer!r}; use one of {', '.join(SCORERS)}")
    tolerance, pattern = raw.get("tolerance"), raw.get("pattern")
    if tolerance is not None and scorer != "numeric":
        raise refuse("'tolerance' is for the numeric scorer only")
    if pattern is not None and scorer != "regex":
        raise refuse("'pattern' is for the regex scorer only")
    if scorer == "numeric":
        if parse_number(str(expected)) is None:
            raise refuse(f"the numeric scorer needs a number as 'expected', not {expected!r}")
        if tolerance is not None and (isinstance(tolerance, bool) or not isinstance(tolerance, (int, float))
                                      or not math.isfinite(tolerance) or tolerance < 0):
            raise refuse(f"'tolerance' must be a number >= 0, not {tolerance!r}")
    if scorer == "regex":
        if not isinstance(pattern, str) or not pattern:
            raise refuse("the regex scorer needs 'pattern', a regular expression the answer must match")
        try:
            re.compile(pattern)
        except re.error as bad:
            raise refuse(f"'pattern' is not a regular expression: {bad}") from None
    return EvalTask(task_id.strip(), prompt.strip(), str(expected).strip(), scorer,
                    float(tolerance) if tolerance is not None else None, pattern)


# -- answers and scorers ----------------------------------------------------------------------------


class Score(msgspec.Struct, frozen=True):
    correct: bool
    answer: str  # what was scored (the Answer: line, else the reply)
    detail: str  # why, in a few words


def final_answer(reply: str) -> str:
    """The reply's last ``Answer:`` line (its text), else the whole reply, stripped."""
    matches = [m.group(1).rstrip(" \t*_") for m in _ANSWER_LINE.finditer(reply)]
    matches = [m.strip() for m in matches if m.strip()]
    return matches[-1] if matches else reply.strip()


def normalise(text: str) -> str:
    """Case folded, runs of whitespace as one space, punctuation at either end dropped."""
    return _SPACES.sub(" ", text.casefold()).strip(_EDGE_PUNCTUATION)


def parse_number(text: str) -> float | None:
    """The number ``text`` is (thousands separators allowed), None if it is not one."""
    match = _NUMBER.fullmatch(text.strip().rstrip("."))
    return _to_float(match.group(0)) if match else None


def _to_float(token: str) -> float:
    return float(token.replace(",", "").replace("−", "-"))


def answer_number(reply: str) -> float | None:
    """The number a reply gives: the first of its last ``Answer:`` line, else the last in the reply."""
    answer = final_answer(reply)
    if answer != reply.strip():
        in_line = _NUMBER.findall(answer)
        if in_line:
            return _to_float(in_line[0])
    numbers = _NUMBER.findall(reply)
    return _to_float(numbers[-1]) if numbers else None


def score_reply(task: EvalTask, reply: str | None) -> Score:
    """The reply scored by the task's scorer (never ``judge``: see ``judge_goal`` and ``read_verdict``)."""
    if reply is None or not reply.strip():
        return Score(False, "", "no answer")
    answer = final_answer(reply)
    if task.scorer == "exact":
        same = normalise(answer) == normalise(task.expected)
        return Score(same, answer, "equal" if same else f"expected {task.expected!r}")
    if task.scorer == "contains":
        found = normalise(task.expected) in normalise(answer)
        return Score(found, answer, "contains it" if found else f"{task.expected!r} not in the answer")
    if task.scorer == "regex":
        assert task.pattern is not None  # parse_tasks requires it
        found = re.search(task.pattern, answer, re.IGNORECASE) is not None
        return Score(found, answer, "matches" if found else f"no match for /{task.pattern}/")
    if task.scorer == "numeric":
        number = answer_number(reply)
        expected = parse_number(task.expected)
        assert expected is not None  # parse_tasks checked it
        if number is None:
            return Score(False, answer, "no number in the answer")
        close = abs(number - expected) <= (task.tolerance or 0.0)
        return Score(close, answer, f"{number:.15g}" + (" = " if close else " != ") + f"{expected:.15g}")
    raise ValueError(f"the {task.scorer} scorer needs a provider: use judge_goal and read_verdict")


def judge_goal(task: EvalTask, answer: str) -> str:
    """What a judge is asked: the question, the reference answer and the candidate's (on one line, at most
    ``JUDGE_ANSWER_CHARS`` of it)."""
    return "\n".join((
        JUDGE_MARKER,
        f"Question: {task.prompt}",
        f"{REFERENCE_PREFIX} {task.expected}",
        f"{CANDIDATE_PREFIX} {_SPACES.sub(' ', answer[:JUDGE_ANSWER_CHARS]).strip()}",
        'Reply with one JSON object and nothing else: {"correct": true or false, "reason": "one sentence"}. '
        "The candidate is correct when it states the reference answer (other wording, units or extra "
        "explanation allowed) and does not contradict it.",
    ))


class Verdict(msgspec.Struct, frozen=True):
    correct: bool
    reason: str = ""


_VERDICT = msgspec.json.Decoder(Verdict)
_JSON_OBJECT = re.compile(r"\{[^{}]*\}")


def read_verdict(reply: str) -> Verdict | None:
    """A judge's ``{"correct": bool, "reason": str}``, the last such object in the reply; None if none."""
    for candidate in reversed(_JSON_OBJECT.findall(reply)):
        try:
            return _VERDICT.decode(candidate)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue  # prose in braces, or another object: look at the one before
    return None


def score_verdict(answer: str, verdict: Verdict | None) -> Score:
    if verdict is None:
        return Score(False, answer, "the judge's reply held no verdict")
    return Score(verdict.correct, answer, f"judge: {verdict.reason}" if verdict.reason else "judge")


# -- statistics -------------------------------------------------------------------------------------


def bootstrap_interval(outcomes: Sequence[bool], rng: random.Random, resamples: int = BOOTSTRAP_RESAMPLES,
                       level: float = 0.95) -> tuple[float, float]:
    """The percentile bootstrap interval of the accuracy of ``outcomes`` (resampled with replacement)."""
    n = len(outcomes)
    if n == 0:
        return (0.0, 0.0)
    hits = [1 if outcome else 0 for outcome in outcomes]
    means = sorted(sum(rng.choices(hits, k=n)) / n for _ in range(resamples))
    tail = (1 - level) / 2
    low = means[int(math.floor(tail * (resamples - 1)))]
    high = means[int(math.ceil((1 - tail) * (resamples - 1)))]
    return (low, high)


# -- the log's record of an evaluation (its own stream) ----------------------------------------------


class EvalEvent(msgspec.Struct, frozen=True, tag=True, tag_field="type"):
    """Base of an evaluation stream's events."""


class EvaluationStarted(EvalEvent, frozen=True):
    run_id: str
    tasks: tuple[EvalTask, ...]
    systems: tuple[EvalSystem, ...]
    judge: str | None = None  # the judge's spec (redacted), for tasks scored by ``judge``
    seed: int = 0
    rerun_of: str | None = None  # a re-run from the recordings of that evaluation


class EvaluationSessionStarted(EvalEvent, frozen=True):
    task_id: str
    system: str
    session_id: str
    role: SessionRole = "answer"


class EvaluationTaskScored(EvalEvent, frozen=True):
    task_id: str
    system: str
    session_id: str
    correct: bool
    answer: str
    detail: str
    seconds: float  # wall time of the task's sessions for this system (the judge's included)
    judge_session_id: str | None = None


class EvaluationFinished(EvalEvent, frozen=True):
    seconds: float
    provider_calls: int  # contributions answered by a provider (not a recording): 0 in a re-run


AnyEvalEvent: TypeAlias = EvaluationStarted | EvaluationSessionStarted | EvaluationTaskScored | EvaluationFinished
EVAL_EVENT_TYPES: dict[str, type[EvalEvent]] = {cls.__name__: cls for cls in get_args(AnyEvalEvent)}
_eval_decoders = {name: msgspec.json.Decoder(cls) for name, cls in EVAL_EVENT_TYPES.items()}
_encoder = msgspec.json.Encoder()


def encode_eval_event(event: EvalEvent) -> bytes:
    return _encoder.encode(event)


def decode_eval_event(type_name: str, data: str | bytes) -> EvalEvent:
    decoder = _eval_decoders.get(type_name)
    if decoder is None:
        raise ConfigError(f"a {type_name} event is not part of an evaluation: is this an evaluation's run id?")
    return decoder.decode(data)


class EvalProgress(msgspec.Struct):
    """An evaluation as its stream folds: which sessions each (task, system) has, which are scored."""

    started: EvaluationStarted
    sessions: dict[tuple[str, str, str], str] = {}  # (task, system, role) -> the latest session
    scored: dict[tuple[str, str], EvaluationTaskScored] = {}
    finished: EvaluationFinished | None = None


def fold_evaluation(events: Iterable[EvalEvent]) -> EvalProgress:
    progress: EvalProgress | None = None
    for event in events:
        if isinstance(event, EvaluationStarted):
            progress = EvalProgress(event, {}, {})
        elif progress is None:
            raise ConfigError("an evaluation stream must start with EvaluationStarted")
        elif isinstance(event, EvaluationSessionStarted):
            progress.sessions[(event.task_id, event.system, event.role)] = event.session_id
        elif isinstance(event, EvaluationTaskScored):
            progress.scored[(event.task_id, event.system)] = event
        elif isinstance(event, EvaluationFinished):
            progress.finished = event
    if progress is None:
        raise ConfigError("an empty evaluation stream")
    return progress


# -- the report -------------------------------------------------------------------------------------


class TaskOutcome(msgspec.Struct, frozen=True):
    task_id: str
    system: str
    correct: bool
    answer: str
    detail: str
    session_id: str
    judge_session_id: str | None
    input_tokens: int
    output_tokens: int
    cost: float | None  # None: a price is unknown
    seconds: float


class SystemResult(msgspec.Struct, frozen=True):
    name: str
    kind: SystemKind
    participants: tuple[str, ...]
    tasks: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    input_tokens: int
    output_tokens: int
    cost: float | None
    seconds: float  # the sum of its tasks' wall times

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class EvalReport(msgspec.Struct, frozen=True):
    run_id: str
    systems: tuple[SystemResult, ...]
    outcomes: tuple[TaskOutcome, ...]
    task_ids: tuple[str, ...]
    seconds: float  # the evaluation's wall time
    seed: int
    rerun_of: str | None = None
    provider_calls: int | None = None  # None: not counted (an evaluation still running)
    confidence: float = 0.95


def build_report(run_id: str, systems: Sequence[EvalSystem], task_ids: Sequence[str],
                 outcomes: Sequence[TaskOutcome], *, seconds: float, seed: int, rng: random.Random,
                 rerun_of: str | None = None, provider_calls: int | None = None) -> EvalReport:
    """Per system: accuracy with a bootstrap interval (drawn from ``rng``, in system order), tokens, cost, time."""
    results = []
    for system in systems:
        mine = [o for o in outcomes if o.system == system.name]
        marks = [o.correct for o in mine]
        low, high = bootstrap_interval(marks, rng)
        costs = [o.cost for o in mine]
        results.append(SystemResult(
            system.name, system.kind, system.participants, len(mine), sum(marks),
            sum(marks) / len(mine) if mine else 0.0, low, high,
            sum(o.input_tokens for o in mine), sum(o.output_tokens for o in mine),
            None if any(c is None for c in costs) else sum(c for c in costs if c is not None),
            sum(o.seconds for o in mine),
        ))
    return EvalReport(run_id, tuple(results), tuple(outcomes), tuple(task_ids), seconds, seed, rerun_of,
                      provider_calls)


def report_json(report: EvalReport) -> dict[str, Any]:
    """The report as plain JSON data (``msgspec.to_builtins``), each system's total tokens added."""
    data: dict[str, Any] = msgspec.to_builtins(report)
    for system, result in zip(data["systems"], report.systems, strict=True):
        system["total_tokens"] = result.total_tokens
    return data


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def _cost(value: float | None) -> str:
    return "unknown" if value is None else f"${value:.4f}"


def render_markdown(report: EvalReport) -> str:
    """The report for people: the systems, then one row per task (a mark per system)."""
    lines = [f"# Evaluation {report.run_id}", ""]
    if report.rerun_of is not None:
        calls = "uncounted" if report.provider_calls is None else str(report.provider_calls)
        lines += [f"Re-run of {report.rerun_of} from its recordings: {calls} provider calls.", ""]
    lines += [f"{len(report.task_ids)} tasks, {len(report.systems)} systems, {report.seconds:.1f} s. "
              f"Accuracy with a {round(100 * report.confidence)}% bootstrap interval (seed {report.seed}).", "",
              "| system | kind | accuracy | 95% CI | correct | tokens | cost | time |",
              "|---|---|---|---|---|---|---|---|"]
    for s in report.systems:
        lines.append(f"| {_cell(s.name)} | {s.kind} | {_percent(s.accuracy)} | {_percent(s.ci_low)}-"
                     f"{_percent(s.ci_high)} | {s.correct}/{s.tasks} | {s.total_tokens:,} | {_cost(s.cost)} | "
                     f"{s.seconds:.1f} s |")
    names = [s.name for s in report.systems]
    lines += ["", "| task | " + " | ".join(_cell(n) for n in names) + " |", "|---|" + "---|" * len(names)]
    by_pair = {(o.task_id, o.system): o for o in report.outcomes}
    for task_id in report.task_ids:
        cells = []
        for name in names:
            outcome = by_pair.get((task_id, name))
            cells.append("-" if outcome is None else
                         ("yes" if outcome.correct else "no") + f" ({_cell(_short(outcome.answer))})")
        lines.append(f"| {_cell(task_id)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _short(text: str, width: int = 40) -> str:
    flat = _SPACES.sub(" ", text).strip()
    return flat if len(flat) <= width else flat[:width - 3] + "..."


def _cell(text: str) -> str:
    """Text for a table cell: no pipe, no line break, no control character (an answer is a model's)."""
    printable = "".join(ch if ch.isprintable() else " " for ch in text)
    return printable.replace("|", "\\|")


# -- the chart --------------------------------------------------------------------------------------

_WIDTH, _HEIGHT = 640, 400
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 190, 40, 60
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def render_svg(report: EvalReport) -> str:
    """Accuracy (with its interval) against cost, one point per system, as SVG text.

    The cost axis is dollars when every system's cost is known and one is not zero, else total tokens
    (the axis says which, and why)."""
    by_dollars = all(s.cost is not None for s in report.systems) and any(s.cost for s in report.systems)
    xs = [float(s.cost or 0.0) if by_dollars else float(s.total_tokens) for s in report.systems]
    x_max = max(xs, default=0.0) or 1.0
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def x_at(value: float) -> float:
        return _LEFT + plot_w * value / (x_max * 1.1)

    def y_at(accuracy: float) -> float:
        return _TOP + plot_h * (1 - accuracy)

    title = f"Accuracy against {'cost' if by_dollars else 'tokens'}: evaluation {report.run_id}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}" '
        f'viewBox="0 0 {_WIDTH} {_HEIGHT}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{_WIDTH}" height="{_HEIGHT}" fill="white"/>',
        f'<text x="{_LEFT}" y="22" font-size="14">{escape(title)}</text>',
        f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_LEFT + plot_w}" y2="{_TOP + plot_h}" stroke="black"/>',
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_TOP + plot_h}" stroke="black"/>',
    ]
    for tick in range(0, 11, 2):
        y = y_at(tick / 10)
        parts.append(f'<line x1="{_LEFT - 4}" y1="{y:.1f}" x2="{_LEFT + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{_LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{tick * 10}%</text>')
    for step in range(5):
        value = x_max * 1.1 * step / 4
        x = x_at(value)
        label = f"${value:.4g}" if by_dollars else f"{value:,.0f}"
        parts.append(f'<text x="{x:.1f}" y="{_TOP + plot_h + 18}" text-anchor="middle">{escape(label)}</text>')
    unknown = any(s.cost is None for s in report.systems)
    axis = ("cost (USD, estimated)" if by_dollars else
            "tokens (a price is unknown)" if unknown else "tokens (every system cost $0)")
    parts.append(f'<text x="{_LEFT + plot_w / 2:.1f}" y="{_HEIGHT - 18}" text-anchor="middle">{axis}</text>')
    parts.append(f'<text transform="translate(18 {_TOP + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">'
                 f"accuracy ({round(100 * report.confidence)}% CI)</text>")
    for index, (system, x_value) in enumerate(zip(report.systems, xs, strict=True)):
        colour = _COLOURS[index % len(_COLOURS)]
        x, y = x_at(x_value), y_at(system.accuracy)
        low, high = y_at(system.ci_low), y_at(system.ci_high)
        label = f"{system.name}: {_percent(system.accuracy)}"
        parts += [
            f'<g class="system"><title>{escape(label)}</title>',
            f'<line x1="{x:.1f}" y1="{high:.1f}" x2="{x:.1f}" y2="{low:.1f}" stroke="{colour}" stroke-width="2"/>',
            f'<line x1="{x - 5:.1f}" y1="{high:.1f}" x2="{x + 5:.1f}" y2="{high:.1f}" stroke="{colour}"/>',
            f'<line x1="{x - 5:.1f}" y1="{low:.1f}" x2="{x + 5:.1f}" y2="{low:.1f}" stroke="{colour}"/>',
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}"/>',
            "</g>",
        ]
        legend_y = _TOP + 10 + 20 * index
        parts += [f'<circle cx="{_WIDTH - _RIGHT + 20}" cy="{legend_y}" r="5" fill="{colour}"/>',
                  f'<text x="{_WIDTH - _RIGHT + 30}" y="{legend_y + 4}">{escape(_short(label, 26))}</text>']
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def system_names_unique(systems: Sequence[EvalSystem]) -> None:
    """ConfigError when two systems share a name (their outcomes would mix)."""
    seen: set[str] = set()
    for system in systems:
        if system.name in seen:
            raise ConfigError(f"two systems are named {system.name!r}: give each its own name")
        seen.add(system.name)


def settings_text(settings: Mapping[str, Any]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(settings.items()))
