"""What the mock knows when it answers questions (``mock:x?accuracy=0.7``), and how it judges.

The mock is never told the expected answer: an evaluation's prompt is the question alone. So it
works the answer out, the way a model would, from what it can read:

- arithmetic word problems written as a story of quantities (``solve_arithmetic``): the first
  number starts a running total and every later number changes it by the operation its sentence
  names ("more", "sells", "each", "shared equally" ...). It really computes: a problem it cannot
  read, or a wrong expected answer in a task file, shows up as a wrong score;
- short facts from a small table of its own (``FACTS``: capitals, chemical symbols, a few counts),
  written apart from the task files, like a model's knowledge: a question it has no fact for gets
  "I don't know".

With ``accuracy`` p it gives what it worked out with probability p (drawn from its seeded rng,
so the same question gets the same answer) and a plausible wrong answer otherwise. As a
synthesizer it takes the answer most proposals give (a tie: the one it works out itself, when tied).

A judge's prompt (``JUDGE_MARKER``, written by ``core.evaluation.judge_goal``) is answered with a
verdict: correct when the candidate states the reference answer.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter

#: The lines of a judge's goal (``forge_actors.core.evaluation`` writes them; a test checks both agree).
JUDGE_MARKER = "Judge whether a candidate answer to a question is correct."
REFERENCE_PREFIX = "Reference answer:"
CANDIDATE_PREFIX = "Candidate answer:"

_NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.])\d+(?:\.\d+)?")
_SENTENCE_END = re.compile(r"[.?!](?=\s|$)")
_ANSWER_LINE = re.compile(r"^\s*Answer:[ \t]*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_PROPOSAL = re.compile(r"^###[ \t]+Proposal[ \t]+[A-Z]{1,2}\b.*$", re.MULTILINE)
#: The words that name what a number does to the running total, checked in this order of kinds.
_CUES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("/", re.compile(r"\b(?:equally|equal|split|shares?|shared|divided|packed into|cut into)\b", re.IGNORECASE)),
    ("*", re.compile(r"\b(?:each|every|per|times|rows of)\b", re.IGNORECASE)),
    ("-", re.compile(r"\b(?:sells?|sold|gives? away|eats?|ate|loses|lost|spends?|uses?|leave|leaves|cuts?|"
                     r"drinks?|breaks?|fewer|minus|takes? away)\b", re.IGNORECASE)),
    ("+", re.compile(r"\b(?:more|buys?|bought|wins?|gets?|get on|receives?|finds?|adds?|added|joins?|"
                     r"arrive|another|plus|gains?)\b", re.IGNORECASE)),
)

#: The mock's knowledge of facts: (question pattern, answers by the pattern's group, folded).
CAPITALS = {"france": "Paris", "japan": "Tokyo", "canada": "Ottawa", "australia": "Canberra", "kenya": "Nairobi",
            "egypt": "Cairo", "peru": "Lima", "norway": "Oslo", "italy": "Rome", "spain": "Madrid"}
SYMBOLS = {"gold": "Au", "sodium": "Na", "iron": "Fe", "oxygen": "O", "silver": "Ag", "potassium": "K",
           "carbon": "C", "helium": "He"}
COUNTS = {("legs", "spider"): "8", ("sides", "hexagon"): "6", ("continents",): "7", ("planets",): "8",
          ("leap year",): "366", ("boiling point", "water"): "100", ("legs", "insect"): "6",
          ("sides", "triangle"): "3"}
WORKS = {"romeo and juliet": "William Shakespeare", "largest ocean": "the Pacific Ocean"}
_CAPITAL = re.compile(r"capital of ([A-Za-z ]+?)\s*\?", re.IGNORECASE)
_SYMBOL = re.compile(r"chemical symbol for ([A-Za-z]+)", re.IGNORECASE)
DONT_KNOW = "I don't know"


def solve_arithmetic(question: str) -> float | None:
    """The running total of the story's numbers; None without two numbers each with a readable operation."""
    numbers = list(_NUMBER.finditer(question))
    if len(numbers) < 2:
        return None
    sentence_starts = [0] + [m.end() for m in _SENTENCE_END.finditer(question)]
    total = _number(numbers[0].group(0))
    for previous, current in zip(numbers, numbers[1:], strict=False):
        start = max(previous.end(), max(s for s in sentence_starts if s <= current.start()))
        end = next((m.end() for m in _SENTENCE_END.finditer(question, current.end())), len(question))
        operation = _operation(question[start:end])
        if operation is None:
            return None
        value = _number(current.group(0))
        if operation == "+":
            total += value
        elif operation == "-":
            total -= value
        elif operation == "*":
            total *= value
        elif value:
            total /= value
        else:
            return None
    return total


def _operation(text: str) -> str | None:
    """The operation the words name: the first cue in the text; of cues at one place, the kinds' order."""
    found = [(match.start(), index, kind) for index, (kind, cue) in enumerate(_CUES)
             for match in [cue.search(text)] if match is not None]
    return min(found)[2] if found else None


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def format_number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def known_fact(question: str) -> tuple[str, list[str]] | None:
    """(the answer, wrong answers of the same kind) of a fact the mock knows; None if it knows none."""
    folded = question.casefold()
    capital = _CAPITAL.search(question)
    if capital and capital.group(1).casefold() in CAPITALS:
        answer = CAPITALS[capital.group(1).casefold()]
        return answer, [c for c in CAPITALS.values() if c != answer]
    symbol = _SYMBOL.search(question)
    if symbol and symbol.group(1).casefold() in SYMBOLS:
        answer = SYMBOLS[symbol.group(1).casefold()]
        return answer, [s for s in SYMBOLS.values() if s != answer]
    for words, count in COUNTS.items():
        if all(word in folded for word in words):
            number = int(count)
            return count, [str(number + d) for d in (-2, -1, 1, 2, 4) if number + d > 0]
    for phrase, work in WORKS.items():
        if phrase in folded:
            return work, [DONT_KNOW]
    return None


def worked_answer(question: str) -> tuple[str, str, list[str]] | None:
    """(how it got there, the answer, wrong answers) for a question the mock can answer, else None."""
    total = solve_arithmetic(question)
    if total is not None:
        right = format_number(total)
        wrong = [format_number(total + d) for d in (-10, -2, -1, 1, 2, 10) if total + d >= 0]
        return "I worked through the quantities one sentence at a time.", right, wrong
    fact = known_fact(question)
    if fact is not None:
        return "This is a matter of fact I know.", fact[0], fact[1]
    return None


def answer_question(question: str, rng: random.Random, accuracy: float) -> str:
    """A draft: a line of working, then ``Answer: ...`` (right with probability ``accuracy``)."""
    worked = worked_answer(question)
    if worked is None:
        return f"I cannot work this out from what I know.\nAnswer: {DONT_KNOW}\n"
    how, right, wrong = worked
    answer = right if rng.random() < accuracy or not wrong else rng.choice(wrong)
    return f"{how}\nAnswer: {answer}\n"


def proposal_answers(prompt: str) -> list[str]:
    """The ``Answer:`` of each proposal a synthesis prompt shows, in its order."""
    headings = list(_PROPOSAL.finditer(prompt))
    answers = []
    for heading, following in zip(headings, [*headings[1:], None], strict=True):
        section = prompt[heading.end(): following.start() if following is not None else len(prompt)]
        found = _ANSWER_LINE.search(section)
        if found is not None:
            answers.append(found.group(1))
    return answers


def synthesize_answers(question: str, prompt: str, rng: random.Random, accuracy: float) -> str:
    """The answer most proposals give; on a tie, the synthesizer's own (if tied), else the first tied."""
    answers = proposal_answers(prompt)
    if not answers:
        return answer_question(question, rng, accuracy)
    counts = Counter(a.casefold() for a in answers)
    best = max(counts.values())
    tied = [a for a in answers if counts[a.casefold()] == best]
    choice = tied[0]
    if len({a.casefold() for a in tied}) > 1:
        own = _ANSWER_LINE.search(answer_question(question, rng, accuracy))
        if own is not None and own.group(1).casefold() in {a.casefold() for a in tied}:
            choice = own.group(1)
    return (f"The proposals give: {', '.join(answers)}. Most of them agree, so the group's answer is "
            f"{choice}.\nAnswer: {choice}\n")


def is_judge_prompt(goal: str) -> bool:
    return goal.startswith(JUDGE_MARKER)


def judge(prompt: str) -> str:
    """A verdict on the candidate answer of a judge's prompt, as JSON."""
    reference = _line_after(prompt, REFERENCE_PREFIX)
    candidate = _line_after(prompt, CANDIDATE_PREFIX)
    ref_words, candidate_folded = reference.casefold().strip(" ."), candidate.casefold()
    correct = bool(ref_words) and re.search(rf"(?<!\w){re.escape(ref_words)}(?!\w)", candidate_folded) is not None
    reason = (f"the candidate states {reference!r}" if correct
              else f"the candidate says {candidate[:80]!r}, not {reference!r}")
    return json.dumps({"correct": correct, "reason": reason})


def _line_after(prompt: str, prefix: str) -> str:
    for line in prompt.splitlines():
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    return ""
