"""The mock answering questions (``mock:x?accuracy=p``) and judging: it works answers out, never reads them."""

from __future__ import annotations

import json
import random

import pytest

from forge_actors.core import evaluation
from forge_actors.engine import read_task_file
from forge_actors.providers import LlmRequest, Message, ProviderConfigError, get_provider
from forge_actors.providers import mock_answers as answers


def _request(round_kind: str, goal: str, extra: str = "") -> LlmRequest:
    return LlmRequest(messages=(Message("system", "You are a member."),
                                Message("user", f"Round: {round_kind}\nIteration: 1\nGoal: {goal}\n{extra}")))


def _answer(spec: str, goal: str, round_kind: str = "draft", extra: str = "") -> str:
    reply = get_provider(spec).complete(_request(round_kind, goal, extra)).content
    return evaluation.final_answer(reply)


@pytest.mark.parametrize(("question", "total"), [
    ("Maya has 14 marbles. She wins 9 more. How many marbles does she have?", 23),
    ("A shop has 1,200 cups. It sells 450 of them. Then it buys 75 more. How many cups does it have?", 825),
    ("There are 12 crates. Each crate holds 30 melons. How many melons are there?", 360),
    ("A chef has 45 eggs. She splits them equally into 9 bowls. How many eggs are in each bowl?", 5),
    ("A ribbon 7 metres long is cut into 2 equal pieces. How long is each piece?", 3.5),
])
def test_the_solver_computes_stories_it_was_never_shown(question, total):
    # None of these is in the shipped task set: the mock reads the operations, it does not look answers up.
    assert answers.solve_arithmetic(question) == pytest.approx(total)


def test_the_solver_gives_up_on_what_it_cannot_read():
    assert answers.solve_arithmetic("What is the capital of France?") is None
    assert answers.solve_arithmetic("Ann is 12. Her dog is 3. Who is older?") is None  # no operation named
    assert answers.worked_answer("Who painted the Mona Lisa?") is None
    assert _answer("mock:a?accuracy=1", "Who painted the Mona Lisa?") == answers.DONT_KNOW


def test_a_perfect_mock_answers_every_shipped_task_and_the_scorers_agree_with_the_task_file():
    # A cross-check of two things written apart: the task file's expected answers and the mock's solver and facts.
    for task in read_task_file("basic"):
        reply = get_provider("mock:a?accuracy=1").complete(_request("draft", task.prompt)).content
        assert "Answer:" in reply
        assert evaluation.score_reply(task, reply).correct, (task.id, reply)


def test_accuracy_is_the_share_of_right_answers_seeded_per_question():
    tasks = read_task_file("basic")
    def right(spec: str) -> int:
        return sum(evaluation.score_reply(t, get_provider(spec).complete(_request("draft", t.prompt)).content).correct
                   for t in tasks)
    assert right("mock:a?accuracy=0") == 0
    assert right("mock:a?accuracy=0.7") == right("mock:a?accuracy=0.7")  # the same questions, the same answers
    shares = [right(f"mock:{name}?accuracy=0.7") / len(tasks) for name in ("a", "b", "c", "d", "e")]
    assert 0.55 <= sum(shares) / len(shares) <= 0.85  # 220 draws around 0.7
    assert len(set(shares)) > 1  # each persona draws for itself


def test_as_synthesizer_it_takes_the_answer_most_proposals_give():
    proposals = "\n".join(f"### Proposal {label}\nI worked it out.\nAnswer: {value}\n"
                          for label, value in (("A", "17"), ("B", "23"), ("C", "23")))
    question = "Maya has 14 marbles. She wins 9 more. How many marbles does she have?"
    assert _answer("mock:s?accuracy=0", question, "synthesis", proposals) == "23"
    prompt = "### Proposal A\nAnswer: Lima\n\n### Proposal B\nAnswer: Oslo\n"
    # A tie: the synthesizer's own answer when it is one of the tied (here it knows Oslo).
    assert _answer("mock:s?accuracy=1", "What is the capital of Norway?", "synthesis", prompt) == "Oslo"


def test_votes_and_critiques_keep_their_formats_and_plain_mocks_are_unchanged():
    draft = get_provider("mock:a").complete(_request("draft", "What is the capital of France?")).content
    assert "Risks and mitigations" in draft  # no accuracy: the usual planner
    vote = get_provider("mock:a?accuracy=0.7").complete(_request("convergence", "What is 1 + 1?")).content
    assert "VOTE:" in vote
    with pytest.raises(ProviderConfigError, match="accuracy is a probability from 0 to 1"):
        get_provider("mock:a?accuracy=1.5")


def test_the_mock_judge_reads_the_prompt_core_writes():
    assert (answers.JUDGE_MARKER, answers.REFERENCE_PREFIX, answers.CANDIDATE_PREFIX) == (
        evaluation.JUDGE_MARKER, evaluation.REFERENCE_PREFIX, evaluation.CANDIDATE_PREFIX)
    task = evaluation.EvalTask("t", "Who wrote Hamlet?", "Shakespeare", "judge")
    for candidate, correct in (("William Shakespeare", True), ("Christopher Marlowe", False),
                               ("Shakespeares", False)):
        reply = get_provider("mock:judge").complete(_request("draft", evaluation.judge_goal(task, candidate))).content
        verdict = evaluation.read_verdict(reply)
        assert verdict is not None and verdict.correct is correct
        assert json.loads(reply)["reason"]


def test_wrong_answers_are_plausible_and_differ_from_the_right_one():
    rng = random.Random(3)
    for _ in range(20):
        reply = answers.answer_question("What is the capital of Peru?", rng, 0.0)
        assert evaluation.final_answer(reply) in answers.CAPITALS.values()
        assert evaluation.final_answer(reply) != "Lima"
