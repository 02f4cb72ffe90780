"""Forge.evaluate end to end on mocks: every answer a session in the log, re-run offline, resumed after a stop."""

from __future__ import annotations

import threading

import pytest
from support import wait_until

from forge_actors.core.errors import ConfigError, SessionNotFoundError
from forge_actors.core.evaluation import ANSWER_INSTRUCTION, EvalTask, final_answer
from forge_actors.engine import Forge, baseline, council, read_task_file
from forge_actors.engine.evaluation import ANSWERED_BY_DRAFT
from forge_actors.providers.mock import MockProvider

TASKS = [
    EvalTask("marbles", "Maya has 14 marbles. She wins 9 more. How many marbles does Maya have now?", "23", "numeric"),
    EvalTask("rope", "A rope 10 metres long is cut into 4 equal pieces. How long is each piece, in metres?", "2.5",
             "numeric", tolerance=0.01),
    EvalTask("oslo", "What is the capital of Norway?", "Oslo", "exact"),
    EvalTask("bard", "Who wrote the play Romeo and Juliet?", "Shakespeare", "judge"),
]
COUNCIL = ["mock:alice?accuracy=0.7", "mock:bob?accuracy=0.7", "mock:carol?accuracy=0.7"]


def systems():
    return [council(COUNCIL), baseline("mock:solo?accuracy=0.7")]


class CountedCalls:
    """Counts the mock's calls (every provider call an evaluation makes goes through one of these two)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, refuse: bool = False) -> None:
        self.calls = 0
        self.lock = threading.Lock()
        for name in ("complete", "stream"):
            original = getattr(MockProvider, name)
            monkeypatch.setattr(MockProvider, name, self._counted(original, refuse))

    def _counted(self, original, refuse):
        def call(provider, request):
            with self.lock:
                self.calls += 1
            if refuse:
                raise AssertionError("a re-run called a provider")
            return original(provider, request)
        return call


def test_every_answer_is_a_session_in_the_log_and_the_report_adds_them_up(forge: Forge, monkeypatch):
    counted = CountedCalls(monkeypatch)
    report = forge.evaluate(TASKS, systems(), judge="mock:judge", seed=5, concurrency=3)
    assert report.run_id.startswith("eval-") and report.rerun_of is None
    assert [s.name for s in report.systems] == ["council", "mock:solo?accuracy=0.7"]
    assert len(report.outcomes) == 8
    for outcome in report.outcomes:
        state = forge.state(outcome.session_id)
        assert state.constraints == (ANSWER_INSTRUCTION,)
        task = next(t for t in TASKS if t.id == outcome.task_id)
        assert state.goal == task.prompt  # the question alone: the expected answer is never sent
        if outcome.system == "council":
            assert state.ended and len(state.participants) == 3
            assert final_answer(state.synthesis.content) == outcome.answer
        else:  # the baseline answered once, directly: one draft, nothing else
            assert list(state.drafts) == ["solo"] and len(state.contributions) == 1
            assert state.status == "cancelled" and state.end_reason == ANSWERED_BY_DRAFT  # its actors stopped
            assert final_answer(state.drafts["solo"]) == outcome.answer
        assert outcome.input_tokens > 0 and outcome.cost == 0.0  # the mocks are free
        if task.scorer == "judge":
            judge = forge.state(outcome.judge_session_id)
            assert "Reference answer: Shakespeare" in judge.goal and outcome.detail.startswith("judge: ")
        else:
            assert outcome.judge_session_id is None
    for result in report.systems:
        mine = [o for o in report.outcomes if o.system == result.name]
        assert result.correct == sum(o.correct for o in mine) and result.accuracy == result.correct / 4
        assert result.ci_low <= result.accuracy <= result.ci_high
        assert result.input_tokens == sum(o.input_tokens for o in mine)
    assert report.provider_calls == counted.calls > 0  # counted from the sessions, checked against the mock
    assert forge.evaluation_report(report.run_id) == report
    assert forge.evaluations() == [report.run_id] and report.run_id not in forge.sessions()
    with pytest.raises(SessionNotFoundError, match="is an evaluation, not a session"):
        forge.resolve(report.run_id[:7])
    with pytest.raises(SessionNotFoundError, match="is an evaluation, not a session"):
        forge.state(report.run_id)


def test_a_rerun_reproduces_the_evaluation_from_the_recordings_without_a_provider_call(forge: Forge, monkeypatch):
    original = forge.evaluate(TASKS, systems(), judge="mock:judge", seed=5)
    CountedCalls(monkeypatch, refuse=True)
    again = forge.evaluate(rerun=original.run_id, concurrency=2)
    assert again.rerun_of == original.run_id and again.run_id != original.run_id
    assert again.provider_calls == 0
    def marks(report):
        return [(o.task_id, o.system, o.correct, o.answer, o.input_tokens) for o in report.outcomes]
    assert marks(again) == marks(original)
    assert [(s.ci_low, s.ci_high) for s in again.systems] == [(s.ci_low, s.ci_high) for s in original.systems]
    for outcome in again.outcomes:  # new sessions, answered by the replay provider
        participants = forge.state(outcome.session_id).participants.values()
        assert all(p.provider.startswith("replay:") for p in participants)
        assert outcome.session_id not in {o.session_id for o in original.outcomes}


def test_a_stopped_evaluation_resumes_with_only_what_was_left(tmp_path, monkeypatch):
    path = str(tmp_path / "eval.db")
    scored: list[str] = []

    def stop_after_three(event):
        scored.append(event.session_id)
        if len(scored) == 3:
            raise KeyboardInterrupt("stopped")  # what Ctrl-C does to a run

    tasks = read_task_file("basic")[:4]
    with Forge(path) as forge, pytest.raises(KeyboardInterrupt):
        forge.evaluate(tasks, systems(), concurrency=1, on_scored=stop_after_three)
    counted = CountedCalls(monkeypatch)
    with Forge(path) as forge:
        [run_id] = forge.evaluations()
        partial = forge.evaluation_report(run_id)
        assert 3 <= len(partial.outcomes) < 8 and partial.provider_calls is None  # one more may have been under way
        report = forge.evaluate(resume=run_id)
    assert len(report.outcomes) == 8
    kept = {(o.task_id, o.system): o.session_id for o in partial.outcomes}
    assert {(o.task_id, o.system): o.session_id for o in report.outcomes if (o.task_id, o.system) in kept} == kept
    # Only the pairs left were run: their sessions' calls, not the first pass's.
    assert 0 < counted.calls < report.provider_calls


def test_resume_goes_on_with_a_council_session_a_stop_left_unfinished(tmp_path):
    path = str(tmp_path / "eval.db")
    slow = [spec + "&word_delay=0.005" for spec in COUNCIL]
    forge = Forge(path)
    failures: list[BaseException] = []

    def evaluate():
        try:
            forge.evaluate(TASKS[:1], [council(slow)])
        except BaseException as stopped:  # the engine closed under it: what a crash does to the run
            failures.append(stopped)

    runner = threading.Thread(target=evaluate)
    runner.start()
    wait_until(lambda: any(forge.state(s).status == "running" for s in forge.sessions()))
    forge.close()
    runner.join(10)
    assert not runner.is_alive() and failures
    with Forge(path) as forge:
        [run_id] = forge.evaluations()
        [unfinished] = forge.sessions()
        assert not forge.state(unfinished).ended and forge.evaluation_report(run_id).outcomes == ()
        report = forge.evaluate(resume=run_id)
        assert [o.session_id for o in report.outcomes] == [unfinished]  # the same session, gone on to its end
        assert forge.state(unfinished).ended
        assert len(forge.sessions()) == 1


def test_councils_differing_in_a_setting_are_two_systems(forge: Forge):
    report = forge.evaluate(TASKS[:2], [council(COUNCIL, "one-pass", max_iterations=1),
                                        council(COUNCIL, "default")])
    one_pass = [o for o in report.outcomes if o.system == "one-pass"]
    assert all(forge.state(o.session_id).settings.max_rounds == 1 for o in one_pass)
    assert all(forge.state(o.session_id).settings.max_rounds == 10
               for o in report.outcomes if o.system == "default")


def test_what_cannot_run_is_refused_before_anything_is_recorded(forge: Forge):
    with pytest.raises(ConfigError, match="task bard is scored by a judge: name one"):
        forge.evaluate(TASKS, systems())
    with pytest.raises(ConfigError, match="concurrency is a number of sessions at once"):
        forge.evaluate(TASKS, systems(), concurrency=0)
    with pytest.raises(ConfigError, match="no evaluation 'eval-nope' in this log"):
        forge.evaluate(resume="eval-nope")
    with pytest.raises(ConfigError, match="an evaluation needs systems"):
        forge.evaluate(TASKS[:1], [])
    with pytest.raises(ConfigError, match="unknown provider 'bogus'"):
        forge.evaluate(TASKS[:1], [council(["mock:a", "bogus:x"])])
    with pytest.raises(ConfigError, match="accuracy is a probability"):
        forge.evaluate(TASKS, [baseline("mock:a")], judge="mock:judge?accuracy=2")
    assert forge.sessions() == [] and forge.evaluations() == []


def test_the_stop_rules_compare_on_the_same_tasks(forge: Forge):
    """Convergence by votes against convergence by similarity: two systems of one council, each
    session deciding by its own rule (the similarity one runs no convergence round)."""
    report = forge.evaluate(TASKS[:2], [council(COUNCIL, "votes"),
                                        council(COUNCIL, "similarity", convergence="similarity",
                                                similarity_threshold=0.5)])
    by_rule = {o.system: forge.state(o.session_id) for o in report.outcomes}
    assert by_rule["votes"].settings.convergence == "votes"
    similar = by_rule["similarity"]
    assert similar.settings.convergence == "similarity"
    assert not [r for r in similar.rounds if r.kind == "convergence"]
    assert {s.name for s in report.systems} == {"votes", "similarity"}
