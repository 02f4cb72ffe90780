"""The shared reply format (``core.reply_format``): the prompt markers the mock reads, and reasoning blocks.

Reading replies as models write them is ``test_reply_reading.py``'s; the JSON shapes and schemas
are exercised through the providers in ``tests/providers/test_structured_output.py``.
"""

from __future__ import annotations

import pytest

from forge_actors.core import reply_format


def test_prompt_markers():
    prompt = "Round: Critique\nIteration: 3\nGoal: Build {{a}} thing\n### Proposal A\n...\n### Proposal B\n"
    assert reply_format.find_round_kind(prompt) == "critique"
    assert reply_format.find_iteration(prompt) == 3
    assert reply_format.find_goal(prompt) == "Build {{a}} thing"
    assert reply_format.find_proposal_labels(prompt) == ["A", "B"]


# -- reasoning blocks ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, kept", [
    ("<think>hmm</think>answer", "answer"),
    ("a<THINKING>x</Thinking>b<reasoning>y</reasoning>c", "abc"),
    ("a<think>x<thinking>y</thinking>z</think>b", "ab"),  # nested
    ("answer<think>cut off before closing", "answer"),  # unclosed: the rest is reasoning
    ("musing without an opening tag</think>answer", "answer"),  # the server dropped the opening tag
    ("<think>a</think>keep</think>final", "final"),
    ("no tags at all", "no tags at all"),
    ("a<thought>x</thought>b<scratchpad>y</scratchpad>c<reflection>z</reflection>d", "abcd"),
    ("<|begin_of_thought|>VOTE: AGREE<|end_of_thought|>\nVOTE: DISAGREE", "\nVOTE: DISAGREE"),
    ("musing<|end_of_thought|>answer", "answer"),
    ('<think type="x">a</think>b', "b"),
])
def test_strip_reasoning(text, kept):
    assert reply_format.strip_reasoning(text) == kept
