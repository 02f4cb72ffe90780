"""The text formats that cross between prompts and replies, defined once.

Prompts carry marker lines (``Round: critique``, ``Goal: ...``, ``### Proposal A``);
replies carry ``Score: N`` blocks and ``VOTE: AGREE`` lines. The round parsers and
the offline mock both use this module, so they cannot drift apart. It imports
nothing of ours: a leaf.

Parsing is lenient about what models do (case, markdown bold, ``82/100``, ``-``/``*``/``1.``
bullets) and strict about what matters: a score it cannot read is None, never a guess.
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
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?[ \t]*Proposal[ \t]+([A-Z])\b[^\n]*$", re.IGNORECASE | re.MULTILINE
)
_SCORE_RE = re.compile(
    r"\bscore\b[*_ \t]*[:=\-][*_ \t]*(\d{1,3}(?:\.\d+)?)(?:[ \t]*(?:/|out[ \t]+of)[ \t]*(\d{1,3}))?",
    re.IGNORECASE,
)
_VOTE_RE = re.compile(r"\bVOTE\b[*_ \t]*[:\-][*_ \t]*(AGREE|DISAGREE)\b", re.IGNORECASE)
_SECTION_RE = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?[ \t]*(strengths|weaknesses|suggestions|improvements|reasons|concerns)"
    r"[ \t]*(?:\*\*|__)?[ \t]*:?[ \t]*(?:\*\*|__)?[ \t]*(.*)$",
    re.IGNORECASE,
)
_BULLET_RE = re.compile(r"^[ \t]*(?:[-*+\u2022]|\d{1,2}[.)])[ \t]+(.*\S)")
_SECTION_ALIASES = {"improvements": "suggestions"}


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
# required in the schema (OpenAI's strict mode wants that); the decoders below are
# lenient about what the schema cannot enforce everywhere (a missing list is empty).


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
    """A structured critique reply (what the mock streams when asked for JSON)."""
    reviews = [ProposalReview(label, c.score or 1, list(c.strengths), list(c.weaknesses), list(c.suggestions))
               for label, c in critiques.items()]
    return _json_encoder.encode(CritiqueReply(reviews)).decode()


def render_vote_json(vote: ParsedVote) -> str:
    reply = VoteReply(vote.vote, list(vote.reasons), list(vote.concerns), vote.confidence)  # type: ignore[arg-type]
    return _json_encoder.encode(reply).decode()


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


# -- parsing replies ---------------------------------------------------------------------------


def parse_score(text: str) -> int | None:
    """The first readable 1-100 score in ``text``; ``8/10`` scales to 80; anything else is None."""
    for match in _SCORE_RE.finditer(text):
        value = float(match.group(1))
        scale = int(match.group(2)) if match.group(2) else 100
        if scale not in (10, 100):
            continue
        if scale == 10:
            value *= 10
        if 1 <= value <= 100:
            return round(value)
    return None


def _sections(text: str) -> dict[str, list[str]]:
    """Bullet lists under Strengths / Weaknesses / Suggestions / Reasons / Concerns headings."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        heading = _SECTION_RE.match(line)
        if heading:
            name = heading.group(1).lower()
            current = sections.setdefault(_SECTION_ALIASES.get(name, name), [])
            inline = heading.group(2).strip().strip("*_ ").strip()
            if inline and not inline.startswith(("-", "*")):
                current.append(inline)
            continue
        bullet = _BULLET_RE.match(line)
        if bullet and current is not None:
            item = bullet.group(1).strip().strip("*_").strip()
            if item and item.lower() not in ("(none)", "none"):
                current.append(item)
        elif line.strip() and current is not None and not bullet and _PROPOSAL_RE.match(line):
            current = None
    return sections


def _critique_of(section: str) -> ParsedCritique:
    lists = _sections(section)
    return ParsedCritique(
        parse_score(section),
        tuple(lists.get("strengths", ())),
        tuple(lists.get("weaknesses", ())),
        tuple(lists.get("suggestions", ())),
    )


def parse_critiques(text: str, labels: list[str]) -> dict[str, ParsedCritique]:
    """One ParsedCritique per expected label (score None where none could be read)."""
    matches = [m for m in _PROPOSAL_RE.finditer(text) if m.group(1).upper() in labels]
    result: dict[str, ParsedCritique] = {}
    if not matches and len(labels) == 1:
        return {labels[0]: _critique_of(text)}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        label = match.group(1).upper()
        if label not in result or result[label].score is None:
            result[label] = _critique_of(text[match.start():end])
    for label in labels:
        result.setdefault(label, ParsedCritique(None))
    return result


def parse_critique_json(text: str, labels: list[str]) -> dict[str, ParsedCritique] | None:
    """A structured critique reply, one ParsedCritique per expected label; None when ``text``
    is not a critique document at all. A score out of 1-100 (or a label not asked for) reads as None."""
    try:
        reply = msgspec.json.decode(text.strip(), type=CritiqueReply)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    result: dict[str, ParsedCritique] = {}
    for review in reply.reviews:
        label = review.proposal.strip().upper()
        if label in labels and (label not in result or result[label].score is None):
            score = review.score if 1 <= review.score <= 100 else None
            result[label] = ParsedCritique(score, tuple(review.strengths), tuple(review.weaknesses),
                                           tuple(review.suggestions))
    for label in labels:
        result.setdefault(label, ParsedCritique(None))
    return result


def parse_vote_json(text: str) -> ParsedVote | None:
    """A structured vote reply; None when ``text`` is not one."""
    try:
        reply = msgspec.json.decode(text.strip(), type=VoteReply)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    confidence = reply.confidence if reply.confidence is None or 0 <= reply.confidence <= 1 else None
    return ParsedVote(reply.vote, tuple(reply.reasons), tuple(reply.concerns), confidence)


def parse_vote(text: str) -> ParsedVote | None:
    """The vote in ``text``, or None when no ``VOTE: AGREE|DISAGREE`` line can be read."""
    match = _VOTE_RE.search(text)
    if match is None:
        return None
    lists = _sections(text)
    return ParsedVote(match.group(1).upper(), tuple(lists.get("reasons", ())), tuple(lists.get("concerns", ())))
