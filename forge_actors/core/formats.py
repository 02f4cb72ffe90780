"""The text formats that cross between prompts and replies, defined once.

Prompts carry marker lines (``Round: critique``, ``Goal: ...``, ``### Proposal A``);
replies carry ``Score: N`` blocks and ``VOTE: AGREE`` lines. The round parsers and
the offline mock both use this module, so they cannot drift apart. It imports
nothing of ours: a leaf.

Parsing reads replies as models really write them (reasoning blocks, markdown headings,
tables, numbered lists, bold, JSON in a code block, a vote changed at the end) and is strict
about what matters: a score or vote it cannot attribute with certainty is None, never a guess,
so the round re-asks. See "parsing replies" below for the rules.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

logger = logging.getLogger(__name__)

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


# -- parsing replies ---------------------------------------------------------------------------
#
# Rules shared by every reader below:
# * reasoning (``<think>``, ``<thinking>``, ``<reasoning>``) is removed first: what a model
#   muses on its way is not its answer;
# * a score sits next to a score word (``Score``, ``Rating``, ``Grade``, ``Overall``, a table
#   column so named, a JSON ``score`` field) or is a fraction right after a label (``A: 84/100``),
#   and belongs to one proposal (its section, table row, line or JSON entry); everything the
#   reply says about one proposal must agree, else None; an explicit ``Overall``/``Final``/
#   ``Total`` score outranks sub-scores (``Clarity score: 8/10``);
# * ``8.5/10`` is 85 and a decimal in text is rounded (``77.6`` is 78: the model wrote that
#   number); a range (``80-85``), a scale other than /10 or /100, a unit (``4 stars``) or a
#   value outside 1-100 makes the score None. In JSON a number must be integral (85.0 is 85;
#   85.5 is None: the schema asks for an integer, and a server that ignores it gets no rounding);
# * a vote is explicit (``VOTE: AGREE``, ``Final vote — DISAGREE``, a ``## Vote`` heading and
#   the word below it, a JSON ``vote`` field); the last explicit vote wins; "I agree" in prose,
#   quoted lines (``>``), someone else's vote and echoed instructions (``AGREE or DISAGREE``)
#   are not votes; an explicit vote marker with an unreadable value (``Vote: undecided``),
#   last, means None.

_REASONING_TAG_RE = re.compile(r"<(/?)[ \t]*(?:think|thinking|reasoning)\b[^>\n]*>", re.IGNORECASE)


def strip_reasoning(text: str) -> str:
    """``text`` without its reasoning blocks (any case, anywhere, several, nested). An
    unclosed opening tag makes the rest reasoning; a lone closing tag (servers that drop the
    opening one) makes everything before it reasoning."""
    kept: list[str] = []
    depth = 0
    position = 0  # where the text not yet classified starts
    for tag in _REASONING_TAG_RE.finditer(text):
        if not tag.group(1):  # opening
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


# -- scores: one value, or why there is none --

class _Unreadable:
    """An explicit score or vote whose value cannot be taken (a range, a bad scale, "undecided")."""

    def __repr__(self) -> str:
        return "UNREADABLE"


_UNREADABLE = _Unreadable()
_DECOR = r"[*_`]*"
# a number, an optional scale, and what would make it a range; group names are used below
_VALUE = (
    r"(?P<num>\d{1,3}(?:\.\d+)?)(?!\.?\d)" + _DECOR +
    r"(?:[ \t]*(?P<pct>%)|[ \t]*(?:/|out[ \t]+of\b|of\b)[ \t]*" + _DECOR + r"(?P<scale>\d{1,4})(?!\d))?"
    r"(?P<range>[ \t]*(?:-|–|—|to\b)[ \t]*" + _DECOR + r"\d)?"
    r"(?P<unit>[ \t]*(?:stars?|points?|pts|x|times)\b)?"  # "4 stars" is another scale; "2x faster" no score
)
_SCORE_WORD = r"(?P<word>(?:(?:overall|final|total)[ \t]+)?(?:score|rating|grade)|overall)"
_SCORE_RE = re.compile(
    r"\b" + _SCORE_WORD + r"\b" + _DECOR + r"(?:[ \t]*(?P<hint>\([^)\n]{0,20}\)))?" + _DECOR +
    r"[ \t]*(?P<sep>:|=|-|–|—|\bof\b|\bis\b)[ \t]*" + _DECOR + r"[ \t]*(?:\[[ \t]*)?" + _VALUE,
    re.IGNORECASE,
)
# "Score 85" opening a line (mid-line, "would score 10 points higher" is no score)
_LEAD_SCORE_RE = re.compile(r"^[ \t#]*[*_]*" + _SCORE_WORD + r"[ \t]+" + _DECOR + _VALUE, re.IGNORECASE)
_PAREN_SCORE_RE = re.compile(r"\([ \t]*" + _SCORE_WORD + r"[ \t]+" + _VALUE, re.IGNORECASE)
# "Score:" ending its line: the value is alone at the start of the next non-blank line
# (not after a bare "Overall", which heads prose as often as a number)
_SCORE_LINE_END_RE = re.compile(
    r"\b(?P<word>(?:(?:overall|final|total)[ \t]+)?(?:score|rating|grade))\b" + _DECOR +
    r"(?:[ \t]*(?P<hint>\([^)\n]{0,20}\)))?" + _DECOR + r"[ \t]*:?" + _DECOR + r"[ \t]*$",
    re.IGNORECASE,
)
_VALUE_LINE_RE = re.compile(r"^[ \t]*" + _DECOR + _VALUE + _DECOR + r"[ \t]*(?:\.?[ \t]*$|[-–—(])")
_VALUE_CELL_RE = re.compile(r"^" + _VALUE + r"[ \t]*(?:\(.*\))?$")
_OVERALL_WORDS = ("overall", "final", "total")


def _score_value(match: re.Match[str], default_scale: int = 100) -> int | _Unreadable:
    """The 1-100 value of a ``_VALUE`` match; _UNREADABLE when it is not one for certain."""
    if match.group("range") or match.groupdict().get("unit"):
        return _UNREADABLE
    value = float(match.group("num"))
    percent = match.groupdict().get("pct")
    scale = int(match.group("scale")) if match.group("scale") else (100 if percent else default_scale)
    if scale not in (10, 100):
        return _UNREADABLE
    value *= 100 // scale
    return round(value) if 1 <= value <= 100 else _UNREADABLE


_SCALE_HINT_RE = re.compile(r"(?:/|\bof|\bto|-|–)[ \t]*(\d{1,4})\b")


def _declared_scale(hint: str | None) -> int:
    """The scale a score word or column declares ("Score (1-10)", "Score (/5)"); 100 if none.
    A scale other than 10 or 100 makes the bare numbers under it unreadable, never /100."""
    match = _SCALE_HINT_RE.search(hint or "")
    return int(match.group(1)) if match else 100


def _resolve(values: list[int | _Unreadable]) -> int | None:
    """One value when every reading agrees; None when there is none, or any doubt."""
    distinct = set(values)
    if len(distinct) != 1:
        return None
    (only,) = distinct
    return only if isinstance(only, int) else None


def _score_candidates(text: str) -> tuple[list[int | _Unreadable], list[int | _Unreadable]]:
    """(overall scores, other scores) written next to a score word in ``text`` (table rows excluded)."""
    overall: list[int | _Unreadable] = []
    other: list[int | _Unreadable] = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if _TABLE_LINE_RE.match(line):
            continue
        found = [(m.group("word"), _score_value(m, _declared_scale(m.group("hint"))))
                 for m in _SCORE_RE.finditer(line) if _is_score(m, line)]
        found += [(m.group("word"), _score_value(m)) for m in _PAREN_SCORE_RE.finditer(line)]
        if not found and (lead := _LEAD_SCORE_RE.match(line)):
            found = [(lead.group("word"), _score_value(lead))]
        if not found:
            found = _score_on_next_line(line, lines, index + 1)
        for word, value in found:
            (overall if word.lower().startswith(_OVERALL_WORDS) else other).append(value)
    return overall, other


def _is_score(match: re.Match[str], line: str) -> bool:
    """Whether a ``_SCORE_RE`` match is a score, not prose: a bare "Overall" takes only ``:`` or
    ``=`` ("Overall - 3 endpoints are missing"), and "score of 85" / "rating is 85" must not run
    on into words ("a rating of 4 out of 5 stars", "the score is 3 times higher")."""
    separator = match.group("sep").lower()
    if match.group("word").lower() == "overall" and separator not in (":", "="):
        return False
    if separator in ("of", "is") and not match.group("scale"):
        return not re.match(r"[ \t]*[A-Za-z]", line[match.end():])
    return True


def _score_on_next_line(line: str, lines: list[str], start: int) -> list[tuple[str, int | _Unreadable]]:
    """A "Score:" that ends ``line`` and the value alone on the next non-blank line."""
    marker = _SCORE_LINE_END_RE.search(line)
    if marker is None:
        return []
    following = next((candidate for candidate in lines[start:start + 4] if candidate.strip()), "")
    value = _VALUE_LINE_RE.match(following)
    return [(marker.group("word"), _score_value(value, _declared_scale(marker.group("hint"))))] if value else []


def _section_score(text: str) -> int | None:
    overall, other = _score_candidates(text)
    return _resolve(overall or other)


def parse_score(text: str) -> int | None:
    """The 1-100 score ``text`` gives (``8/10`` is 80); None when it gives none, or several
    that disagree, or one that cannot be read for certain (``80-85``, ``0``, ``7/5``)."""
    return _section_score(strip_reasoning(text))


# -- proposal sections --

_LABEL = r"(?-i:[A-Z])(?![\w'’])"
#: After the word "Proposal" a label may have two letters (a session of more than 26 drafts
#: labels them A..Z, AA, AB...); a bare letter ("A. Title", "A: 84/100") is read as one letter only.
_NAMED_LABEL = r"(?-i:[A-Z]{1,2})(?![\w'’])"
_LABEL_MENTION_RE = re.compile(r"\b[Pp]roposal[ \t]+((?-i:[A-Z]{1,2}))\b")
# the text of a heading that is about one proposal: "Proposal A: ...", "Review of Proposal A", "A. Title"
_HEADING_TEXT_RE = re.compile(
    r"^[ \t*_`]*+(?:\d{1,2}[.)][ \t]*)?"  # "1. Proposal A" (*+: "# ****..." must not be split every way)
    r"(?:(?:review|critique|evaluation|assessment|analysis|feedback|scores?|notes)[ \t]+"
    r"(?:of|for|on)[ \t]+(?:the[ \t]+)?)?[*_`]*+"  # "Review of Proposal A"
    # "Proposal A", or "A. Title"
    r"(?:[Pp]roposal[ \t]+(" + _NAMED_LABEL + r")|((?-i:[A-Z]))(?:[.:)]|[ \t]+[-–—])[ \t*_`])",
    re.IGNORECASE,
)
# "A: 84/100", "**Proposal B** — 7/10": a label and a fraction, as explicit as a table row
_LABELLED_FRACTION_RE = re.compile(
    r"^[ \t]*(?:(?:\d{1,2}[.)]|[-*+])[ \t]+)?[*_`]*(?:[Pp]roposal[ \t]+(?P<named>(?-i:[A-Z]{1,2}))|(?P<bare>(?-i:[A-Z])))"
    r"[*_`]*[ \t]*(?::|-|–|—)[ \t]*"
    + _DECOR + r"(?P<num>\d{1,3}(?:\.\d+)?)" + _DECOR
    + r"[ \t]*/[ \t]*(?P<scale>10|100)(?!\d)(?P<range>[ \t]*-[ \t]*\d)?"
)
_LETTER_ONLY_RE = re.compile(r"[ \t*_`]*[A-Z][ \t*_`:]*")
_MARKDOWN_HEADING_RE = re.compile(r"^[ \t]{0,3}(#{1,6})[ \t]+(.*)$")
_BOLD_LEAD_RE = re.compile(r"^[ \t]*(?:(?:\d{1,2}[.)]|[-*+])[ \t]+)?(\*\*|__)(.+?)\1")
_PLAIN_HEADING_RE = re.compile(
    r"^[ \t]*(?:\d{1,2}[.)][ \t]+)?[Pp]roposal[ \t]+(" + _NAMED_LABEL + r")[ \t]*(?:$|[:(\-–—]|\.[ \t]*$)"
)
_TABLE_LINE_RE = re.compile(r"^[ \t]*\|")
_HEADING_REST_RE = re.compile(r"[ \t]*(?:$|[:(\-–—.,])")
_WEAKEST_HEADING = 7  # bold or plain proposal lines rank below every markdown heading


def _heading_label(heading_text: str) -> str | None:
    """The one proposal a heading is about; None when it names none or several."""
    if _LETTER_ONLY_RE.fullmatch(heading_text):
        return heading_text.strip(" \t*_`:")  # "**A**", "### B"
    match = _HEADING_TEXT_RE.match(heading_text + " ")
    if match is None:
        return None
    label = match.group(1) or match.group(2)
    mentioned = {m.group(1) for m in _LABEL_MENTION_RE.finditer(heading_text)}
    return label if mentioned <= {label} else None


def _ends_heading(bold: str, rest: str) -> bool:
    """Whether a bold lead is a heading ("**Proposal A**", "**A** — 81/100", "**Proposal A Score:** 72")
    rather than the start of a sentence ("**Proposal A** is better than B")."""
    return bold.rstrip().endswith(":") or _HEADING_REST_RE.match(rest) is not None


def _heading(line: str) -> tuple[int, str | None] | None:
    """(level, proposal label or None) when ``line`` is a heading that can open or close a
    proposal's section; None for any other line."""
    markdown = _MARKDOWN_HEADING_RE.match(line)
    if markdown:
        return len(markdown.group(1)), _heading_label(markdown.group(2))
    bold = _BOLD_LEAD_RE.match(line)
    if bold and _ends_heading(bold.group(2), line[bold.end():]) and (label := _heading_label(bold.group(2))):
        return _WEAKEST_HEADING, label
    plain = _PLAIN_HEADING_RE.match(line)
    if plain:
        return _WEAKEST_HEADING, plain.group(1)
    return None


def _proposal_sections(text: str) -> list[tuple[str, str]]:
    """(label, section text) for each proposal heading, in order. A section runs to the next
    proposal heading or to the next heading of its own level or above ("## Summary")."""
    sections: list[tuple[str, str]] = []
    current: tuple[str, int, list[str]] | None = None
    for line in text.splitlines():
        heading = _heading(line)
        if heading is not None:
            level, label = heading
            if label is not None or (current is not None and level <= current[1]):
                if current is not None:
                    sections.append((current[0], "\n".join(current[2])))
                current = (label, level, []) if label is not None else None
        if current is not None:
            current[2].append(line)
    if current is not None:
        sections.append((current[0], "\n".join(current[2])))
    return sections


# -- lists: strengths, weaknesses, suggestions, reasons, concerns --

# (possessive repeats, *+: a line of spaces must not make the runs of blanks share it out every way)
_SECTION_RE = re.compile(
    r"^[ \t]*+(?P<bullet>[-*+][ \t]++)?(?:#{1,6}[ \t]*+)?(?:[*_]++[ \t]*+)?"
    r"(?P<name>strengths|weaknesses|suggestions|improvements|reasons|concerns)\b(?P<qualifier>[^:\n]{0,40}?)"
    r"[*_]*+[ \t]*+(?::[*_]*+[ \t]*+(?P<inline>.*))?$",
    re.IGNORECASE,
)
_BULLET_RE = re.compile(r"^[ \t]*+(?:[-*+\u2022]|\d{1,2}[.)])[ \t]++(.*\S)")
_SECTION_ALIASES = {"improvements": "suggestions"}
_NOTHING = ("(none)", "none", "n/a", "none.", "[none]")


def _section_heading(line: str) -> tuple[str, str] | None:
    """(list name, inline item) for a line such as ``**Strengths:** concise`` or ``### Concerns``."""
    match = _SECTION_RE.match(line)
    if match is None:
        return None
    has_colon = match.group("inline") is not None
    if not has_colon and (match.group("bullet") or match.group("qualifier").strip(" *_")):
        return None  # "- Strengths are overstated" is an item, not a heading
    name = match.group("name").lower()
    inline = (match.group("inline") or "").strip().strip("*_ ").strip()
    return _SECTION_ALIASES.get(name, name), inline


def _sections(text: str) -> dict[str, list[str]]:
    """Bullet lists under Strengths / Weaknesses / Suggestions / Reasons / Concerns headings."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        heading = _section_heading(line)
        if heading:
            name, inline = heading
            current = sections.setdefault(name, [])
            if inline and not inline.startswith(("-", "*")) and inline.lower() not in _NOTHING:
                current.append(inline)
            continue
        bullet = _BULLET_RE.match(line)
        if bullet and current is not None:
            item = bullet.group(1).strip().strip("*_").strip()
            if item and item.lower() not in _NOTHING:
                current.append(item)
        elif _MARKDOWN_HEADING_RE.match(line) or _heading(line):
            current = None
    return sections


# -- tables of scores --

_TABLE_RULE_RE = re.compile(r"^[ \t|:]*-[ \t|:\-]*$")
_SCORE_HEADER_RE = re.compile(r"\b(?:score|rating|grade|overall|total)\b", re.IGNORECASE)
_OVERALL_HEADER_RE = re.compile(r"overall|total|final", re.IGNORECASE)
_LABEL_HEADER_RE = re.compile(r"proposal|draft|option", re.IGNORECASE)
_LABEL_CELL_RE = re.compile(r"^(?:proposal[ \t]+)?(" + _LABEL + r")(?:[ \t]*[(:\-–—].*)?$", re.IGNORECASE)


def _cells(line: str) -> list[str]:
    return [cell.strip().strip("*_`").strip() for cell in line.strip().strip("|").split("|")]


def _tables(text: str) -> list[list[list[str]]]:
    """The markdown tables in ``text``: rows of cells, header first, the rule row dropped."""
    tables: list[list[list[str]]] = []
    block: list[str] = []
    for line in [*text.splitlines(), ""]:
        if "|" in line:
            block.append(line)
            continue
        if len(block) >= 3 and _TABLE_RULE_RE.match(block[1]):  # rows need not have outer pipes: "A | 90"
            tables.append([_cells(row) for row in [block[0], *block[2:]]])
        block = []
    return tables


def _cell_label(cell: str) -> str | None:
    match = _LABEL_CELL_RE.match(cell)
    return match.group(1) if match else None


def _score_column(header: list[str]) -> int | None:
    """The one column that holds the overall score; None when there is none or it is unclear."""
    columns = [i for i, name in enumerate(header) if _SCORE_HEADER_RE.search(name)]
    overall = [i for i in columns if _OVERALL_HEADER_RE.search(header[i])]
    chosen = overall or columns
    return chosen[0] if len(chosen) == 1 else None


def _cell_score(cell: str, header: str) -> int | _Unreadable | None:
    match = _VALUE_CELL_RE.match(cell)
    if match is None:
        return _UNREADABLE if re.search(r"\d", cell) else None  # "n/a" is no score; "about 80" is unreadable
    return _score_value(match, _declared_scale(header))


def _scores_by_row(header: list[str], rows: list[list[str]], column: int) -> list[tuple[str, int | _Unreadable]]:
    """| Proposal | Score | with a row per proposal."""
    named = [i for i, name in enumerate(header) if _LABEL_HEADER_RE.search(name)]
    label_column = named[0] if named else 0
    found = []
    for row in rows:
        label = _cell_label(row[label_column]) if label_column < len(row) else None
        if label and column < len(row) and (value := _cell_score(row[column], header[column])) is not None:
            found.append((label, value))
    return found


def _scores_by_column(header: list[str], rows: list[list[str]]) -> list[tuple[str, int | _Unreadable]]:
    """| Criterion | A | B | with one (overall) score row."""
    labels = {i: label for i, cell in enumerate(header) if (label := _cell_label(cell))}
    score_rows = [row for row in rows if row and _SCORE_HEADER_RE.search(row[0])]
    chosen = [row for row in score_rows if _OVERALL_HEADER_RE.search(row[0])] or score_rows
    if not labels or len(chosen) != 1:
        return []
    (row,) = chosen
    return [(label, value) for i, label in labels.items()
            if i < len(row) and (value := _cell_score(row[i], row[0])) is not None]


def _table_scores(text: str) -> dict[str, list[int | _Unreadable]]:
    """Scores per proposal from tables with a row per proposal or a column per proposal."""
    scores: dict[str, list[int | _Unreadable]] = {}
    for header, *rows in _tables(text):
        column = _score_column(header)
        found = _scores_by_row(header, rows, column) if column is not None else _scores_by_column(header, rows)
        for label, value in found:
            scores.setdefault(label, []).append(value)
    return scores


# -- JSON inside a reply --

# an object opening a line or following a colon ("My answer: {...}", not "something like {...}"),
# an array opening a line
_JSON_START_RE = re.compile(r"(?:^[ \t]*|:[ \t]*)\{(?=\s*[\"}])|^[ \t]*\[", re.MULTILINE)
_JSON_ATTEMPTS = 16  # a failed decode costs O(len(text)) (the error counts lines): bound the tries
_FENCE_RE = re.compile(r"^[ \t]*```[ \t]*(?:json|JSON)?[ \t]*\n(.*?)\n[ \t]*```[ \t]*$", re.DOTALL)
_json_decoder = json.JSONDecoder()


def _json_documents(text: str) -> list[tuple[int, int, Any]]:
    """(start, end, value) of each JSON object or array in ``text`` where a reply would put one."""
    documents: list[tuple[int, int, Any]] = []
    position = 0
    attempts = 0
    for start in _JSON_START_RE.finditer(text):
        offset = start.end() - 1
        if offset < position:
            continue
        attempts += 1
        if attempts > _JSON_ATTEMPTS:
            logger.debug("reply has more JSON-looking lines than %d: the rest are not decoded", _JSON_ATTEMPTS)
            break
        try:
            value, end = _json_decoder.raw_decode(text, offset)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than any reply needs
            continue
        if isinstance(value, (dict, list)):
            documents.append((offset, end, value))
            position = end
    return documents


def _json_label(key: Any) -> str | None:
    if not isinstance(key, str):
        return None
    match = _LABEL_CELL_RE.match(key.strip())
    return match.group(1).upper() if match else None


def _json_score(value: Any) -> int | _Unreadable | None:
    """An integral 1-100 number (or a string written like a text score); None when absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        return _UNREADABLE
    if isinstance(value, (int, float)):
        return int(value) if float(value).is_integer() and 1 <= value <= 100 else _UNREADABLE
    if isinstance(value, str) and (match := _VALUE_CELL_RE.match(value.strip())):
        return _score_value(match)
    return _UNREADABLE


_REVIEW_LISTS = ("reviews", "critiques", "proposals", "evaluations", "scores", "ratings", "results")
_LABEL_KEYS = ("proposal", "label", "id", "name", "option")
_SCORE_KEYS = ("score", "rating", "overall", "overall_score", "final_score", "grade")


def _lowered(mapping: dict[Any, Any]) -> dict[str, Any]:
    return {key.lower(): value for key, value in mapping.items() if isinstance(key, str)}


def _json_reviews(value: Any, depth: int = 0) -> list[tuple[str, Any]]:
    """(label, review or bare score) pairs found in a decoded JSON value, in the shapes models
    use: ``{"reviews": [{"proposal": "A", ...}]}``, a bare list, ``{"A": {"score": 80}}``, ``{"A": 80}``."""
    if depth > 3:
        return []
    if isinstance(value, list):
        return [pair for item in value if isinstance(item, dict) for pair in _json_reviews(item, depth + 1)]
    if not isinstance(value, dict):
        return []
    fields = _lowered(value)
    label_key = next((key for key in _LABEL_KEYS if key in fields), None)
    if label_key is not None and any(key in fields for key in _SCORE_KEYS):
        label = _json_label(fields[label_key])
        return [(label, fields)] if label else []
    for key in _REVIEW_LISTS:
        if isinstance(fields.get(key), (list, dict)):
            return _json_reviews(fields[key], depth + 1)
    return [(label, item) for key, item in value.items() if (label := _json_label(key))]


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,) if value.strip() else ()
    if isinstance(value, list):
        return tuple(item.strip() for item in value if isinstance(item, str) and item.strip())
    return ()


def _json_critiques(text: str) -> dict[str, list[tuple[int | _Unreadable | None, ParsedCritique]]]:
    """Per label, (score reading, lists) from the JSON documents in ``text``."""
    found: dict[str, list[tuple[int | _Unreadable | None, ParsedCritique]]] = {}
    for _, _, document in _json_documents(text):
        for label, review in _json_reviews(document):
            if isinstance(review, dict):
                fields = _lowered(review)
                raw = next((fields[key] for key in _SCORE_KEYS if key in fields), None)
                lists = ParsedCritique(None, _strings(fields.get("strengths")), _strings(fields.get("weaknesses")),
                                       _strings(fields.get("suggestions", fields.get("improvements"))))
                found.setdefault(label, []).append((_json_score(raw), lists))
            else:
                found.setdefault(label, []).append((_json_score(review), ParsedCritique(None)))
    return found


# -- critiques --

def _merge_lists(critiques: list[ParsedCritique]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    strengths = tuple(item for c in critiques for item in c.strengths)
    weaknesses = tuple(item for c in critiques for item in c.weaknesses)
    suggestions = tuple(item for c in critiques for item in c.suggestions)
    return strengths, weaknesses, suggestions


_Readings = dict[str, list[int | _Unreadable]]


def _read_sections(sections: list[tuple[str, str]], readings: _Readings,
                   lists: dict[str, list[ParsedCritique]]) -> None:
    """Each section's score readings (overall ones outrank the rest) and its lists, by label."""
    for label, section in sections:
        overall, other = _score_candidates(section)
        readings.setdefault(label, []).extend(overall or other)
        parsed = _sections(section)
        lists.setdefault(label, []).append(ParsedCritique(
            None, tuple(parsed.get("strengths", ())), tuple(parsed.get("weaknesses", ())),
            tuple(parsed.get("suggestions", ()))))


def _read_labelled_lines(text: str, readings: _Readings) -> None:
    for line in text.splitlines():
        if fraction := _LABELLED_FRACTION_RE.match(line):
            readings.setdefault(fraction["named"] or fraction["bare"], []).append(_score_value(fraction))


def parse_critiques(text: str, labels: list[str]) -> dict[str, ParsedCritique]:
    """One ParsedCritique per expected label; its score is None unless the reply attributes
    one score to that proposal with certainty: every reading of it, from its sections, its
    labelled lines, table rows and JSON entries, agrees (see the rules above)."""
    text = _STRUCK_RE.sub("", strip_reasoning(text))
    sections = _proposal_sections(text)
    from_json = _json_critiques(text)
    if not sections and len(labels) == 1 and not from_json:
        sections = [(labels[0], text)]  # one proposal asked for, reviewed without a heading
    readings: _Readings = {}
    lists: dict[str, list[ParsedCritique]] = {}
    _read_sections(sections, readings, lists)
    _read_labelled_lines(text, readings)
    for label, values in _table_scores(text).items():
        readings.setdefault(label, []).extend(values)
    for label, entries in from_json.items():
        readings.setdefault(label, []).extend(value for value, _ in entries if value is not None)
        lists.setdefault(label, []).extend(critique for _, critique in entries)
    return {label: ParsedCritique(_resolve(readings.get(label, [])), *_merge_lists(lists.get(label, [])))
            for label in labels}


# -- votes --

_VOTE_WORD = (r"(?:(?:my[ \t]+)?(?:(?:final|actual|real|official)[ \t]+)?(?:vote|decision)|verdict"
              r"|(?:my|final)[ \t]+answer)")
_VOTE_SEPARATOR = r"[ \t]*" + _DECOR + r"[ \t]*(?::|=|-|–|—|\bis\b[ \t]*:?)"
_VOTE_RE = re.compile(
    r"\b" + _VOTE_WORD + r"\b" + _VOTE_SEPARATOR + r"[ \t*_`\[(\"']*(AGREE|DISAGREE)\b", re.IGNORECASE
)
# a line that starts with a vote marker, or is one (a heading: markdown or bold, not a list item)
_VOTE_LINE_START = r"^[ \t]*(?:#{1,6}[ \t]*)?[*_]*[ \t]*"
_VOTE_LEAD_RE = re.compile(_VOTE_LINE_START + _VOTE_WORD + r"\b" + _VOTE_SEPARATOR, re.IGNORECASE)
_VOTE_HEADING_RE = re.compile(_VOTE_LINE_START + _VOTE_WORD + r"[ \t*_`]*:?[ \t*_`]*$", re.IGNORECASE)
_BARE_VOTE_RE = re.compile(r"^[ \t*_`\[(>#\-]*(AGREE|DISAGREE)\b", re.IGNORECASE)
# an echo of the instructions ("VOTE: AGREE or VOTE: DISAGREE", "AGREE/DISAGREE")
_OPTIONS_RE = re.compile(
    r"\b(?:AGREE|DISAGREE)\b[ \t*_`'\")\]]*(?:\([^)\n]*\)[ \t*_`'\"]*)?"  # "AGREE (if X)"
    r"(?:or|/|\|)[ \t*_`'\"(\[]*(?:vote\b" + _VOTE_SEPARATOR +
    r"[ \t*_`'\"]*)?(?:AGREE|DISAGREE)\b",
    re.IGNORECASE,
)
_VOTE_PREFIX_RE = re.compile(r"[ \t#*_\-\d.()\[\]]*")
# what precedes a vote reported on someone's behalf: "Alice: ", "Bob's "
_ATTRIBUTION_RE = re.compile(r"(?:([A-Za-z][\w]*)[ \t*_`]*[:–—][ \t*_`]*|['’]s[ \t*_`]*)$")
_LEAD_INS = frozenset({"answer", "reply", "response", "conclusion", "summary", "dr", "result", "output", "so",
                       "therefore", "thus", "hence", "overall", "short"})
_FENCE_LINE_RE = re.compile(r"^[ \t]*(?:```|~~~)")
_STRUCK_RE = re.compile(r"~~[^~\n]+~~")  # struck-out text is withdrawn: "VOTE: ~~AGREE~~ DISAGREE"
_VOTE_ROW_RE = re.compile(
    r"^[ \t]*\|[ \t*_]*" + _VOTE_WORD + r"[ \t*_:]*\|[ \t*_`]*(AGREE|DISAGREE)[ \t*_`.]*\|", re.IGNORECASE
)
_CONFIDENCE_RE = re.compile(r"^[ \t*_#\-]*confidence\b[^:\n]{0,20}:[ \t*_]*(\d{1,3}(?:\.\d+)?)[ \t]*(%|/[ \t]*10\b)?",
                            re.IGNORECASE | re.MULTILINE)


def _is_own_vote(match: re.Match[str], line: str) -> bool:
    """A vote marker opening the line is the reply's own. Mid-line it must be the format's
    ``VOTE`` in capitals or "my / final vote", and not be attributed to someone else
    ("- Alice: VOTE: DISAGREE", "Bob's VOTE: AGREE", "whose vote: DISAGREE")."""
    prefix = line[:match.start()]
    if _VOTE_PREFIX_RE.fullmatch(prefix):
        return True
    attributed = _ATTRIBUTION_RE.search(prefix)
    if attributed and (attributed.group(1) or "").lower() not in _LEAD_INS:
        return False
    marker = match.group(0)
    return marker.startswith("VOTE") or marker.lower().startswith(("my", "final"))


def _line_votes(line: str, following: list[str]) -> list[str | _Unreadable]:
    """The explicit votes on ``line`` (the next non-blank lines serve a bare ``## Vote`` heading)."""
    if line.lstrip().startswith(">") or _OPTIONS_RE.search(line):
        return []  # a quotation, or the instructions echoed back
    votes: list[str | _Unreadable] = [match.group(1).upper() for match in _VOTE_RE.finditer(line)
                                      if _is_own_vote(match, line)]
    if votes:
        return votes
    if _VOTE_HEADING_RE.match(line):
        below = next((candidate for candidate in following if candidate.strip()), "")
        word = _BARE_VOTE_RE.match(below)
        return [word.group(1).upper() if word and not _OPTIONS_RE.search(below) else _UNREADABLE]
    if _VOTE_LEAD_RE.match(line):
        return [_UNREADABLE]  # "Vote: undecided"
    if row := _VOTE_ROW_RE.match(line):
        return [row.group(1).upper()]  # "| Vote | AGREE |"
    return []


def _json_vote(document: Any) -> tuple[str | _Unreadable, dict[str, Any]] | None:
    if not isinstance(document, dict):
        return None
    fields = _lowered(document)
    if "vote" not in fields:
        return None
    vote = fields["vote"].strip().upper() if isinstance(fields["vote"], str) else None
    return (vote if vote in ("AGREE", "DISAGREE") else _UNREADABLE), fields


def _confidence(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0 <= value <= 1 else None


def _text_confidence(text: str) -> float | None:
    match = _CONFIDENCE_RE.search(text)
    if match is None:
        return None
    value = float(match.group(1))
    scale = match.group(2) or ""
    return _confidence(value / 100 if scale == "%" else value / 10 if scale else value)


def parse_vote(text: str) -> ParsedVote | None:
    """The last explicit vote in ``text``; None when there is none, or the last one cannot be read."""
    text = _STRUCK_RE.sub("", strip_reasoning(text))
    documents = _json_documents(text)
    votes: list[tuple[int, str | _Unreadable, dict[str, Any] | None]] = []
    for start, _, document in documents:
        if (found := _json_vote(document)) is not None:
            votes.append((start, found[0], found[1]))
    fenced: list[tuple[int, str | _Unreadable, None]] = []  # votes in a code block: examples, unless alone
    lines = text.splitlines(keepends=True)
    offset = 0
    in_fence = False
    for index, line in enumerate(lines):
        if _FENCE_LINE_RE.match(line):
            in_fence = not in_fence
        elif not any(start <= offset < end for start, end, _ in documents):
            found_here = [(offset, vote, None) for vote in _line_votes(line, lines[index + 1:index + 4])]
            (fenced if in_fence else votes).extend(found_here)
        offset += len(line)
    votes = votes or fenced  # type: ignore[assignment]
    if not votes:
        return None
    _, vote, fields = max(votes, key=lambda found: found[0])
    if not isinstance(vote, str):
        return None
    if fields is not None:
        return ParsedVote(vote, _strings(fields.get("reasons")), _strings(fields.get("concerns")),
                          _confidence(fields.get("confidence")))
    lists = _sections(text)
    return ParsedVote(vote, tuple(lists.get("reasons", ())), tuple(lists.get("concerns", ())), _text_confidence(text))


# -- structured (JSON) replies --

class _LooseReview(msgspec.Struct):
    proposal: str
    score: Any = None
    strengths: list[str] = []
    weaknesses: list[str] = []
    suggestions: list[str] = []


class _LooseCritiqueReply(msgspec.Struct):
    reviews: list[_LooseReview]


class _LooseVoteReply(msgspec.Struct):
    vote: str
    reasons: list[str] = []
    concerns: list[str] = []
    confidence: float | None = None


def _structured(text: str, shape: type[Any]) -> Any:
    """``text`` decoded as ``shape``, tolerating what servers wrap around a JSON reply
    (whitespace, a reasoning block, a ```json fence, a line of prose); None when it is not one."""
    attempts = [text.strip()]
    stripped = strip_reasoning(text).strip()
    fence = _FENCE_RE.search(stripped)
    attempts += [stripped, fence.group(1) if fence else "", stripped[stripped.find("{"):stripped.rfind("}") + 1]]
    for attempt in attempts:
        if not attempt:
            continue
        try:
            return msgspec.json.decode(attempt, type=shape)
        except (msgspec.DecodeError, msgspec.ValidationError):  # not this reading of the reply: try the next
            continue
    return None


def parse_critique_json(text: str, labels: list[str]) -> dict[str, ParsedCritique] | None:
    """A structured critique reply, one ParsedCritique per expected label; None when ``text``
    is not a critique document at all. A score that is not an integral 1-100 number (85.0 is
    85; 85.5 is None), a label not asked for, or two different scores for one label read as None."""
    reply = _structured(text, _LooseCritiqueReply)
    if reply is None:
        return None
    readings: dict[str, list[int | _Unreadable]] = {}
    lists: dict[str, list[ParsedCritique]] = {}
    for review in reply.reviews:
        label = _json_label(review.proposal)
        if label is None or label not in labels:
            continue
        score = _json_score(review.score) if not isinstance(review.score, str) else _UNREADABLE
        readings.setdefault(label, []).append(_UNREADABLE if score is None else score)
        lists.setdefault(label, []).append(ParsedCritique(None, _strings(review.strengths),
                                                          _strings(review.weaknesses), _strings(review.suggestions)))
    return {label: ParsedCritique(_resolve(readings.get(label, [])), *_merge_lists(lists.get(label, [])))
            for label in labels}


def parse_vote_json(text: str) -> ParsedVote | None:
    """A structured vote reply; None when ``text`` is not one (or its vote is neither AGREE
    nor DISAGREE, in any case). A confidence outside 0-1 reads as None."""
    reply = _structured(text, _LooseVoteReply)
    if reply is None:
        return None
    vote = reply.vote.strip().upper()
    if vote not in ("AGREE", "DISAGREE"):
        return None
    return ParsedVote(vote, _strings(reply.reasons), _strings(reply.concerns), _confidence(reply.confidence))
