"""The formats prompts and replies share, defined once: what is asked, and in which shape.

Prompts carry marker lines (``Round: critique``, ``Goal: ...``, ``### Proposal A``); replies
are asked for ``Score: N`` blocks and ``VOTE: AGREE`` lines, or one JSON document of a schema
given here. The prompts (``core.rounds``), the offline mock and the providers all use this
module, so they cannot drift apart; the lenient readers of real replies are
``core.reply_reading``. It imports nothing of ours: a leaf the providers may import.

``strip_reasoning`` lives here, not among the readers: what a model muses in a reasoning block
is not its answer, for the providers (a tool call inside it is not a call) as for the readers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

ROUND_MARKER = "Round:"
ITERATION_MARKER = "Iteration:"
GOAL_MARKER = "Goal:"
PROPOSAL_HEADING = "### Proposal {label}"

_ROUND_RE = re.compile(r"^\s*Round:\s*(draft|critique|synthesis|convergence)\b", re.IGNORECASE | re.MULTILINE)
_ITERATION_RE = re.compile(r"^\s*Iteration:\s*(\d+)", re.IGNORECASE | re.MULTILINE)
_GOAL_RE = re.compile(r"^\s*Goal:[ \t]*(.+)$", re.IGNORECASE | re.MULTILINE)
_PROPOSAL_RE = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?[ \t]*Proposal[ \t]+([A-Z]{1,2})\b[^\n]*$", re.IGNORECASE | re.MULTILINE
)


class ParsedCritique(msgspec.Struct, frozen=True):
    score: int | None
    strengths: tuple[str, ...] = ()
    weaknesses: tuple[str, ...] = ()
    suggestions: tuple[str, ...] = ()


class ParsedVote(msgspec.Struct, frozen=True):
    vote: str  # AGREE or DISAGREE
    reasons: tuple[str, ...] = ()
    concerns: tuple[str, ...] = ()
    #: 0-1, when the reply gave one (structured replies do); None otherwise.
    confidence: float | None = None


# -- structured (JSON) replies ------------------------------------------------------------------
#
# The shapes asked for through a provider's structured-output mechanism. Every field is
# required in the schema (OpenAI's strict mode wants that); the readers
# (``reply_reading.parse_critique_json``, ``parse_vote_json``) are lenient about what the
# schema cannot enforce everywhere (a missing list is empty).


class ProposalReview(msgspec.Struct, frozen=True):
    proposal: str
    score: int
    strengths: list[str] = []
    weaknesses: list[str] = []
    suggestions: list[str] = []


class CritiqueReply(msgspec.Struct, frozen=True):
    reviews: list[ProposalReview]


class VoteReply(msgspec.Struct, frozen=True):
    vote: Literal["AGREE", "DISAGREE"]
    reasons: list[str] = []
    concerns: list[str] = []
    confidence: float | None = None


CRITIQUE_SCHEMA_NAME = "critique"
VOTE_SCHEMA_NAME = "vote"
_STRINGS: dict[str, Any] = {"type": "array", "items": {"type": "string"}}


def critique_schema(labels: list[str]) -> dict[str, Any]:
    """JSON Schema of a critique reply reviewing the proposals ``labels``."""
    review = {
        "type": "object",
        "properties": {
            "proposal": {"type": "string", "enum": list(labels), "description": "the proposal's letter"},
            "score": {"type": "integer", "minimum": 1, "maximum": 100, "description": "1 (useless) to 100 (excellent)"},
            "strengths": _STRINGS, "weaknesses": _STRINGS, "suggestions": _STRINGS,
        },
        "required": ["proposal", "score", "strengths", "weaknesses", "suggestions"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"reviews": {"type": "array", "items": review, "description": "one review per proposal"}},
        "required": ["reviews"],
        "additionalProperties": False,
    }


VOTE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "vote": {"type": "string", "enum": ["AGREE", "DISAGREE"]},
        "reasons": _STRINGS,
        "concerns": _STRINGS,
        "confidence": {"type": "number", "minimum": 0, "maximum": 1, "description": "how sure you are, 0 to 1"},
    },
    "required": ["vote", "reasons", "concerns", "confidence"],
    "additionalProperties": False,
}

_json_encoder = msgspec.json.Encoder()


def render_critique_json(critiques: Mapping[str, ParsedCritique]) -> str:
    """A structured critique reply (what the mock streams when asked for JSON), indented as
    models usually write it, so a live view shows it line by line."""
    reviews = [ProposalReview(label, c.score or 1, list(c.strengths), list(c.weaknesses), list(c.suggestions))
               for label, c in critiques.items()]
    return msgspec.json.format(_json_encoder.encode(CritiqueReply(reviews)), indent=2).decode()


def render_vote_json(vote: ParsedVote) -> str:
    reply = VoteReply(vote.vote, list(vote.reasons), list(vote.concerns), vote.confidence)  # type: ignore[arg-type]
    return msgspec.json.format(_json_encoder.encode(reply), indent=2).decode()


# -- reading prompts (what the mock needs to know) ---------------------------------------


def find_round_kind(prompt: str) -> str | None:
    match = _ROUND_RE.search(prompt)
    return match.group(1).lower() if match else None


def find_iteration(prompt: str) -> int:
    match = _ITERATION_RE.search(prompt)
    return int(match.group(1)) if match else 1


def find_goal(prompt: str) -> str:
    match = _GOAL_RE.search(prompt)
    return match.group(1).strip() if match else ""


def find_proposal_labels(prompt: str) -> list[str]:
    seen: list[str] = []
    for match in _PROPOSAL_RE.finditer(prompt):
        label = match.group(1).upper()
        if label not in seen:
            seen.append(label)
    return seen


# -- writing replies (the mock, and format reminders) ----------------------------------------


def _bullets(items: tuple[str, ...] | list[str]) -> str:
    return "\n".join(f"- {item}" for item in items) or "- (none)"


def render_critique(label: str, critique: ParsedCritique) -> str:
    return (
        f"## Proposal {label}\n"
        f"Score: {critique.score}/100\n"
        f"Strengths:\n{_bullets(critique.strengths)}\n"
        f"Weaknesses:\n{_bullets(critique.weaknesses)}\n"
        f"Suggestions:\n{_bullets(critique.suggestions)}\n"
    )


def render_vote(vote: ParsedVote) -> str:
    return f"VOTE: {vote.vote}\nReasons:\n{_bullets(vote.reasons)}\nConcerns:\n{_bullets(vote.concerns)}\n"


CRITIQUE_FORMAT = (
    "For each proposal, answer in exactly this format:\n"
    "## Proposal <letter>\nScore: <1-100>\nStrengths:\n- ...\nWeaknesses:\n- ...\nSuggestions:\n- ..."
)
VOTE_FORMAT = "Answer in exactly this format:\nVOTE: AGREE or VOTE: DISAGREE\nReasons:\n- ...\nConcerns:\n- ..."


# -- reasoning blocks: not the answer ------------------------------------------------------

_REASONING_TAG_RE = re.compile(
    r"<(?P<close>/?)[ \t]*(?:think|thinking|thought|reasoning|reflection|scratchpad)\b[^>\n]{0,80}>"
    r"|<\|(?P<edge>begin|end)_of_thought\|>",  # <|begin_of_thought|> ... <|end_of_thought|>
    re.IGNORECASE,
)


def strip_reasoning(text: str) -> str:
    """``text`` without its reasoning blocks (``<think>``, ``<thinking>``, ``<thought>``,
    ``<reasoning>``, ``<reflection>``, ``<scratchpad>``, ``<|begin_of_thought|>``; any case,
    anywhere, several, nested). An unclosed opening tag makes the rest reasoning; a lone closing
    tag (servers that drop the opening one) makes everything before it reasoning."""
    kept: list[str] = []
    depth = 0
    position = 0  # where the text not yet classified starts
    for tag in _REASONING_TAG_RE.finditer(text):
        if tag.group("edge") == "begin" or (tag.group("edge") is None and not tag.group("close")):  # opening
            if depth == 0:
                kept.append(text[position:tag.start()])
            depth += 1
        elif depth:
            depth -= 1
            if depth == 0:
                position = tag.end()
        else:  # a closing tag with no opening one: all before it was reasoning
            kept.clear()
            position = tag.end()
    if depth == 0:
        kept.append(text[position:])
    return "".join(kept)
