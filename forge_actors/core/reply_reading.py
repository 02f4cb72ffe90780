"""The lenient readers: the scores, critiques and votes of replies as models really write them.

They read reasoning blocks, markdown headings, tables, numbered lists, bold, JSON in a code
block, a vote revised or withdrawn, and are strict about what matters: a score or vote they
cannot attribute with certainty is None, never a guess, so the round re-asks. The formats
asked for, and the types read into (``ParsedCritique``, ``ParsedVote``), are
``core.reply_format``'s; the rounds (``core.rounds``) call these readers, the providers never
do. See "the rules" below.
"""

from __future__ import annotations

import bisect
import collections
import heapq
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import msgspec

from forge_actors.core.reply_format import ParsedCritique, ParsedVote, strip_reasoning

logger = logging.getLogger(__name__)


# -- the rules ---------------------------------------------------------------------------------
#
# Rules shared by every reader below:
# * reasoning (``<think>``, ``<thinking>``, ``<reasoning>``, ...) is removed first
#   (``reply_format.strip_reasoning``): what a model muses on its way is not its answer;
# * a score sits next to a score word (``Score``, ``Rating``, ``Grade``, ``Overall``, a table
#   column so named, a JSON ``score`` field) or is a fraction right after a label (``A: 84/100``),
#   and belongs to one proposal (its section, table row, line or JSON entry); everything the
#   reply says about one proposal must agree, else None; an explicit ``Overall``/``Final``/
#   ``Total`` score outranks sub-scores (``Clarity score: 8/10``);
# * ``8.5/10`` is 85 and a decimal in text is rounded (``77.6`` is 78: the model wrote that
#   number); a range (``80-85``), a scale other than /10 or /100, a unit (``4 stars``) or a
#   value outside 1-100 makes the score None. In JSON a number must be integral (85.0 is 85;
#   85.5 is None: the schema asks for an integer, and a server that ignores it gets no rounding);
# * a vote is the last explicit vote of the reply's own, whatever words lead into it (see
#   "votes" below for what is explicit, what is someone else's, and withdrawals);
# * a reply is attacker input: every reader is linear in its length.


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
#
# A reply's vote is the last explicit vote in it that is its own:
# * reasoning blocks are gone already, and struck-out text (``~~AGREE~~``) is withdrawn;
# * an explicit vote is a vote marker, a separator and the word (``VOTE: AGREE``, ``Final vote —
#   DISAGREE``, ``my vote is now disagree``, ``Revised vote: AGREE``, ``VOTE: AGREE → DISAGREE``),
#   a ``## Vote`` heading and the word below it, a ``| Vote | AGREE |`` row, "I'm changing my vote
#   to DISAGREE" outside a conditional sentence, or a JSON object's ``vote`` field;
# * it is not the reply's own when a quote holds it (a ``>`` line, a quotation or inline code
#   inside a sentence, a code block introduced as an example, ``For example: VOTE: AGREE``), when
#   it is attributed (a participant's name or a proposal label the prompt showed before a colon or
#   dash: ``alice: VOTE: DISAGREE``; a numbered role: ``Reviewer 2:``; a possessive: ``Bob's VOTE``;
#   reported speech: ``The security reviewer wrote: VOTE: ...``), or when it is the instructions
#   echoed back (``VOTE: AGREE or VOTE: DISAGREE``);
# * any other words before it lead into it (``Update:``, ``Actually, on second thought:``,
#   ``Edit 2 —``, ``P.S.``): the vote is the reply's own. Inside a sentence, without such a lead-in,
#   only ``VOTE`` in capitals or "my / final / revised ... vote" marks one ("the vote: ..." is prose);
# * a withdrawal said by the reply (``I retract my AGREE``, ``ignore my earlier vote``, ``scratch
#   that``; not "I won't retract") cancels what came before it: a vote after it counts; with none
#   after it the reply is unread (None), as it is when its last own vote marker has an unreadable
#   value (``Vote: undecided``);
# * a vote in a code block that is no example counts only when the reply has no other.
#
# Reading is linear in the reply (attacker input): no pattern has two adjacent repeats of the same
# characters, and what is looked for around a marker is looked for at most _LOOKAROUND characters away.


class VoteContext(msgspec.Struct, frozen=True):
    """Who else a vote reply may name: ``names`` are the session's participants (the ``voter``'s own
    name among them or not), ``labels`` the proposal labels its prompt showed. A vote attributed to
    one of them (``alice: VOTE: DISAGREE``, ``Proposal B: VOTE: AGREE``) is not the reply's own."""

    voter: str = ""
    names: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()


def mentioned_labels(text: str) -> list[str]:
    """The proposal labels ``text`` mentions (``Proposal A``, ``proposal B``), in order, once each."""
    return list(dict.fromkeys(match.group(1) for match in _LABEL_MENTION_RE.finditer(text)))


# a word's edges, "_" being emphasis there ("__VOTE__: agree"), not a letter; the lookahead on the
# first letters of every vote word spares the regex engine trying the words at every position
_START = r"(?=[mfaroucndv])(?<![^\W_])"
_END = r"(?![^\W_])"
_LOOKAROUND = 120  # how far from a vote marker its attribution, lead-in or sentence is looked for
_VOTE_ADJECTIVE = r"(?:final|actual|real|official|own|updated|revised|new|corrected|amended|changed|current)"
_VOTE_WORD = (r"(?:(?:my[ \t]+)?(?:" + _VOTE_ADJECTIVE + r"[ \t]+){0,2}(?:vote|decision)|verdict"
              r"|(?:my|final)[ \t]+answer)")
# "VOTE:", "**Vote**:", "Final answer (revised):", "Vote =", "Final vote —", "my vote is", "vote is:"
# (possessive repeats, *+: what follows a run of decoration is never decoration, and a failed match
# must not try every shorter run again)
_VOTE_SEPARATOR = r"[ \t*_`]*+(?:\([^()\n]{0,40}\)[ \t*_`]*+)?(?::|=|-|–|—|\bis\b(?:[ \t]*+:)?)"
_VOTE_FILLER = r"[ \t*_`\[(\"'“‘→⇒➔]*+(?:(?:still|now|again|firmly)[ \t*_`]++)?"
_VOTE_MARKER_RE = re.compile(_START + _VOTE_WORD + _END + _VOTE_SEPARATOR, re.IGNORECASE)
_VOTE_RE = re.compile(_START + _VOTE_WORD + _END + _VOTE_SEPARATOR + _VOTE_FILLER + r"(AGREE|DISAGREE)" + _END,
                      re.IGNORECASE)
_OWN_MARKER_RE = re.compile(r"(?-i:VOTE)|(?:my|" + _VOTE_ADJECTIVE + r")\b", re.IGNORECASE)
_VOTE_ARROW_RE = re.compile(r"[ \t*_`]*(?:->|=>|→|⇒|➔|⟶)[ \t*_`]*(AGREE|DISAGREE)\b", re.IGNORECASE)
_VOTE_KEPT_RE = re.compile(r"[ \t*_`]*(?:unchanged|the same|as (?:above|before))\b", re.IGNORECASE)
# a line that is a vote heading, from its first word: "## Vote", "**Final vote:**"
_VOTE_HEADING_RE = re.compile(_VOTE_WORD + r"[ \t*_`]*(?::[ \t*_`]*)?$", re.IGNORECASE)
_LIST_ITEM_RE = re.compile(r"[ \t]*+(?:[-+•]|\d{1,2}[.)])")
_BARE_VOTE_RE = re.compile(r"[ \t*_`\[(>#\-]*(AGREE|DISAGREE)\b", re.IGNORECASE)
_VOTE_ROW_RE = re.compile(
    r"[ \t]*\|[ \t*_]*" + _VOTE_WORD + r"[ \t*_:]*\|[ \t*_`]*(AGREE|DISAGREE)[ \t*_`.]*\|", re.IGNORECASE
)
_VOTE_CHANGE_RE = re.compile(
    r"(?=[csruf])\b(?:chang|switch|revis|updat|flipp?)(?:e|es|ed|ing)?[ \t]+my[ \t]+vote[ \t]+to[ \t:*_`\"“]*(AGREE|DISAGREE)\b",
    re.IGNORECASE,
)
_CONDITIONAL_RE = re.compile(r"\b(?:if|unless|once|when|would|could|might|should)\b|['’]d\b", re.IGNORECASE)
# the instructions echoed back: "VOTE: AGREE or VOTE: DISAGREE", "AGREE/DISAGREE", "AGREE (if X) / DISAGREE"
_OPTIONS_RE = re.compile(
    r"(?=[mfaroucndv])(?:\b" + _VOTE_WORD + r"\b" + _VOTE_SEPARATOR + r"[ \t*_`'\"]*)?"
    r"\b(?:AGREE|DISAGREE)\b[ \t*_`'\")\]]*+(?:\([^()\n]{0,80}\)[ \t*_`'\"]*+)?"
    r"(?:or|/|\|)[ \t*_`'\"(\[]*+(?:\b" + _VOTE_WORD + r"\b" + _VOTE_SEPARATOR + r"[ \t*_`'\"]*+)?"
    r"(?:AGREE|DISAGREE)\b",
    re.IGNORECASE,
)
# "I retract my AGREE", "ignore my earlier vote", "disregard the vote above", "scratch that"
_WITHDRAWAL_RE = re.compile(
    r"(?=[rwtcids])\b(?:retract(?:ing)?|withdraw(?:ing)?|tak(?:e|ing)[ \t]+back|rescind(?:ing)?|revok(?:e|ing)|cancel(?:l?ing)?"
    r"|ignor(?:e|ing)|disregard(?:ing)?|discard(?:ing)?|scratch|strike)[ \t]+"
    r"(?:(?:my|the|that|this)(?:[ \t*_`\"“]+[\w'’-]+){0,3}?[ \t*_`\"“]+(?:vote|agree|disagree|answer|verdict)\b"
    r"|(?:that|the[ \t]+above|everything[ \t]+above|all[ \t]+of[ \t]+the[ \t]+above)(?=[ \t]*(?:[.,;:!—–\-)]|$)))",
    re.IGNORECASE,
)
# who may say a withdrawal: the reply itself, in the first person or as an order
_WITHDRAWER_RE = re.compile(
    r"(?:(?:and|but|so|ok|okay|oh|oops|sorry|actually|wait|hmm+|also|now|then|edit|update|correction|note)\W+)*"
    r"(?:(?:i|i'm|i am|i'll|i will|i hereby|i must|i need to|i want to|i'd like to|i would like to|let me)\W+)?"
    r"(?:please\W+)?",
    re.IGNORECASE,
)
_CLAUSE_ENDS = ".;:!?,—–(-"
_SENTENCE_ENDS = ".;!?"
_REPORTED_RE = re.compile(r"\b(?:said|says|wrote|writes|voted|votes|answered|replied|stated|argued)\b", re.IGNORECASE)
_FIRST_PERSON = frozenset({"i", "i've", "i’ve", "i'd", "i’d", "we", "we've", "we’ve", "my", "our"})
_ROLE = r"(?:participant|reviewer|member|voter|critic|agent|expert|colleague|model|judge)s?"
_ROLE_RE = re.compile(
    r"(?:\b" + _ROLE + r"[ \t]*#?[ \t]*(?:\d{1,3}|(?-i:[A-Z]))"
    r"|\b(?:another|other|previous|one|first|second|third|each|every)[ \t]+(?:[\w-]+[ \t]+)?" + _ROLE + r")$",
    re.IGNORECASE,
)
_NOT_OWNERS = frozenset({"here", "that", "it", "what", "there", "let", "who", "he", "she"})  # "here's VOTE: AGREE"
# an example introduced right before a vote: "For example: VOTE: AGREE", "e.g. {...}"
_EXAMPLE_LEAD_RE = re.compile(
    r"\b(?:examples?|e\.g\.|for instance|such as|like this|like so|something like|template|sample)[ \t*_`:,—–(\-]*$",
    re.IGNORECASE,
)
# the line before a code block that shows an example: "An example of the JSON shape:", "Here is the format:"
_EXAMPLE_INTRO_RE = re.compile(
    r"\b(?:examples?|e\.g\.|for instance|such as|like this|like so|something like|template|sample"
    r"|format[ \t]+(?:is|was|would be|should be|looks)"
    r"|(?:here is|here's|this is|that's|this would be)[ \t]+(?:the|a|an)[ \t]+(?:format|shape|schema))\b",
    re.IGNORECASE,
)
_QUOTES = "\"“”„«»`'‘’"
# a quotation mark; not an apostrophe inside a word ("can't"), which neither opens nor closes one
_QUOTE_RE = re.compile(r"[\"“”„«»`‘]|(?<![^\W_])['’]|['’](?![^\W_])")
_CLOSING_QUOTE = {"“": "”", "„": "“", "«": "»", "‘": "’"}
_DECORATION = " \t*_`"
_FENCE_LINE_RE = re.compile(r"^[ \t]*(?:```|~~~)", re.MULTILINE)
_STRUCK_RE = re.compile(r"~~[^~\n]+~~")  # struck-out text is withdrawn: "VOTE: ~~AGREE~~ DISAGREE"
_CONFIDENCE_RE = re.compile(r"^[ \t*_#\-]*confidence\b[^:\n]{0,20}:[ \t*_]*(\d{1,3}(?:\.\d+)?)[ \t]*(%|/[ \t]*10\b)?",
                            re.IGNORECASE | re.MULTILINE)

_Vote = str | _Unreadable  # AGREE, DISAGREE, or one that cannot be read (or was withdrawn)
_Spans = list[tuple[int, int]]


_WORDS_RE = re.compile(r"[^\W\d_]|[>" + _QUOTES + "]")  # a letter, a quotation, a quote line's mark


def _decoration_only(text: str) -> bool:
    """Whether ``text`` opening a line is only decoration: bullets, numbers, ``#``, emphasis, emoji."""
    return _WORDS_RE.search(text) is None


def _lead(line: str) -> int:
    """Where the words of ``line`` start, after its decoration (see ``_decoration_only``)."""
    words = _WORDS_RE.search(line)
    return words.start() if words else len(line)


def _inside(spans: _Spans, at: int) -> tuple[int, int] | None:
    """The span of ``spans`` (sorted, not overlapping) that holds ``at``, its ends excluded."""
    index = bisect.bisect_left(spans, (at,)) - 1
    return spans[index] if index >= 0 and spans[index][0] < at < spans[index][1] else None


def _quote_spans(line: str) -> _Spans:
    """(opening, closing) positions of the quotations and inline code on ``line``: straight and
    curly double quotes, backticks, and single quotes that are no apostrophes (``can't``)."""
    if not any(char in line for char in "“„«`'‘’"):  # straight double quotes only: pairs in order
        marks = [mark.start() for mark in re.finditer('"', line)]
        return list(zip(marks[0::2], marks[1::2], strict=False))  # an odd last mark opens no quotation
    spans: _Spans = []
    opening: int | None = None
    closing = ""
    for match in _QUOTE_RE.finditer(line):
        char, at = match.group(), match.start()
        if opening is not None:
            if char == closing and not (char in "'’" and line[at + 1:at + 2].isalnum()):
                spans.append((opening, at))
                opening = None
        elif char in "'‘":
            if not line[at - 1:at].isalnum() and line[at + 1:at + 2].strip():
                opening, closing = at, _CLOSING_QUOTE.get(char, char)
        elif char not in "”»’":  # a closing quote with no opening one
            opening, closing = at, _CLOSING_QUOTE.get(char, char)
    return spans


def _sentence(line: str, start: int, end: int) -> tuple[int, int]:
    """The sentence of ``line`` around ``start:end``, looked for at most _LOOKAROUND characters away."""
    low, high = max(0, start - _LOOKAROUND), min(len(line), end + _LOOKAROUND)
    before = max(line.rfind(char, low, start) for char in _SENTENCE_ENDS) + 1
    after = min((i for char in _SENTENCE_ENDS if (i := line.find(char, end, high)) >= 0), default=high)
    return max(before, low), after


def _names_someone(head: str, context: VoteContext) -> bool:
    """Whether ``head`` (what stands before a colon or dash ahead of a vote) ends with someone
    other than the voter: a participant's name, a proposal label the prompt showed, a numbered role."""
    lowered = head.lower()
    voter = context.voter.lower()
    for name in context.names:
        other = name.lower()
        if other and other != voter and lowered.endswith(other):
            before = lowered[-len(other) - 1:-len(other)] if len(lowered) > len(other) else ""
            if not (before.isalnum() or before in ("_", "-")):
                return True
    if any(lowered.endswith(f"proposal {label.lower()}") for label in context.labels):
        return True
    return _ROLE_RE.search(head) is not None


def _possessive(tail: str, context: VoteContext) -> bool:
    """Whether ``tail`` ends with the possessive of someone other than the voter ("Bob's", "whose")."""
    if tail.lower().endswith("whose"):
        return True
    if not tail.endswith(("'s", "’s")):
        return False
    owner = tail[:-2].rstrip(_DECORATION)
    words = owner.split()
    if not words or words[-1].lower() in _NOT_OWNERS:
        return False
    return not (context.voter and owner.lower().endswith(context.voter.lower()))


def _reported(tail: str, context: VoteContext) -> bool:
    """Whether ``tail`` ends by reporting what someone other than the voter said ("Participant 2
    wrote:"; not "As I said above:", "I have voted:")."""
    said = next(reversed(list(_REPORTED_RE.finditer(tail))), None)  # the last one (``tail`` is short)
    if said is None:
        return False
    rest = tail[said.end():]
    if len(rest.strip(_DECORATION + ":,—–-")) > 24 or any(char in rest for char in _SENTENCE_ENDS):
        return False
    clause = tail[:said.start()]
    clause = clause[max(clause.rfind(char) for char in _CLAUSE_ENDS) + 1:].lower()
    words = set(re.findall(r"[\w'’-]+", clause))
    return not (words & _FIRST_PERSON or context.voter.lower() in words)


def _attributed(prefix: str, context: VoteContext) -> bool:
    """Whether what stands before a vote on its line (``prefix``, its last _LOOKAROUND characters)
    gives it to someone else, or makes it an example (see the rules above)."""
    tail = prefix.rstrip(_DECORATION)
    if _EXAMPLE_LEAD_RE.search(tail) or _possessive(tail, context) or _reported(tail, context):
        return True
    if not tail.endswith((":", "—", "–", "-")):
        return False
    head = tail[:-1].rstrip(_DECORATION)
    if head.endswith(")") and (opening := head.rfind("(", max(0, len(head) - 60))) >= 0:
        head = head[:opening].rstrip(_DECORATION)  # "Priya (product owner): VOTE: ..."
    return _names_someone(head, context)


def _leads_in(prefix: str) -> bool:
    """Whether ``prefix`` (words before a vote marker) ends as a lead-in does: with a colon, a dash,
    a comma or a sentence ("Update:", "Actually, on second thought:", "Wait —", "P.S.")."""
    tail = prefix.rstrip(_DECORATION)
    return tail[-1:] in (":", "—", "–", "-", ",", ".", "!", "?", ";", "…") and tail != ""


class _TooManyMarkers(Exception):
    """More vote markers than a reply is read for (see _MARKERS_READ)."""


#: How many vote markers and withdrawals of one reply are looked at, from its end: the last own vote
#: comes first, so a real reply needs a handful; a hostile one full of markers that are someone
#: else's reads as unread (None) instead of costing a check each.
_MARKERS_READ = 1000


def _spend(budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooManyMarkers


class _Line:
    """One line being read: its text (the instructions echoed back blanked out), where its words
    start, its quotations (found when first needed), and what the reply may still look at."""

    def __init__(self, text: str, lead: int, context: VoteContext, budget: list[int]) -> None:
        self.text, self.lead, self.context, self.budget = text, lead, context, budget
        self._quotes: _Spans | None = None

    def spend(self) -> None:
        _spend(self.budget)

    @property
    def quotes(self) -> _Spans:
        if self._quotes is None:
            self._quotes = _quote_spans(self.text) if any(mark in self.text for mark in _QUOTES) else []
        return self._quotes

    def prefix(self, at: int) -> str:
        return self.text[max(0, at - _LOOKAROUND):at]

    def quoted(self, at: int) -> bool:
        """Whether a quotation holds ``at``, and is not the line's whole answer (``Final answer:
        "VOTE: AGREE"`` is; ``I would switch to "VOTE: AGREE" once ...`` is not)."""
        span = _inside(self.quotes, at)
        if span is None:
            return False
        opening, closing = span
        text = self.text
        whole = (at - opening <= 8 and _decoration_only(text[opening + 1:at]) and len(text) - closing <= 48
                 and not text[closing + 1:].strip(_DECORATION + ".!;\n")
                 and (opening <= self.lead or (_leads_in(self.prefix(opening))
                                               and not _attributed(self.prefix(opening), self.context))))
        return not whole

    def is_own(self, marker: re.Match[str]) -> bool:
        """Whether the vote ``marker`` starts is the reply's own (see the rules above)."""
        at = marker.start()
        if self.quoted(at):
            return False
        if at <= self.lead:
            return True
        prefix = self.prefix(at)
        if _attributed(prefix, self.context):
            return False
        return _leads_in(prefix) or _OWN_MARKER_RE.match(marker.group(0)) is not None

    def withdraws(self, match: re.Match[str]) -> bool:
        """Whether the reply says the withdrawal ``match`` found: in the first person or as an order,
        not denied ("I won't retract"), not conditional, not quoted."""
        start = match.start()
        if _inside(self.quotes, start):
            return False
        before = self.prefix(start)
        clause = before[max(before.rfind(char) for char in _CLAUSE_ENDS) + 1:].lstrip(_DECORATION + "+•#>")
        _, sentence_end = _sentence(self.text, start, match.end())
        return (_WITHDRAWER_RE.fullmatch(clause) is not None
                and _CONDITIONAL_RE.search(self.text, match.end(), sentence_end) is None)

    def changes(self, match: re.Match[str]) -> bool:
        """Whether "changing my vote to DISAGREE" is said outside a conditional sentence and quotes."""
        start, end = _sentence(self.text, match.start(), match.end())
        return not _inside(self.quotes, match.start()) and _CONDITIONAL_RE.search(self.text, start, end) is None


def _unworded_vote(line: _Line, following: list[str]) -> tuple[int, _Vote] | None:
    """A vote whose word is not after its marker: a ``## Vote`` heading and the word on the next
    non-blank line, a ``| Vote | AGREE |`` row; or an own marker with no readable word after it
    (``Vote: undecided``), which leaves the reply unread if nothing follows."""
    text = line.text
    if _VOTE_HEADING_RE.match(text, line.lead) and not _LIST_ITEM_RE.match(text):  # "- vote" is an item
        below = next((candidate for candidate in following if candidate.strip()), "")
        word = _BARE_VOTE_RE.match(below)
        return line.lead, word.group(1).upper() if word and not _OPTIONS_RE.search(below) else _UNREADABLE
    if row := _VOTE_ROW_RE.match(text):
        return row.start(1), row.group(1).upper()
    for marker in _VOTE_MARKER_RE.finditer(text):
        line.spend()
        at = marker.start()
        if _VOTE_KEPT_RE.match(text, marker.end()) or line.quoted(at):
            continue  # "my vote is unchanged"
        prefix = line.prefix(at)
        after_lead_in = "vote" in marker.group(0).lower() and _leads_in(prefix) and not _attributed(prefix, line.context)
        if at <= line.lead or after_lead_in:
            return at, _UNREADABLE  # "Vote: undecided", "Update: my vote is pending" (not "Summary: my decision is")
    return None


# a word that every line holding a vote or a withdrawal has (lowercase), and every withdrawal
_WITHDRAWAL_VERBS = ("retract", "withdraw", "back", "rescind", "revok", "cancel", "ignor", "disregard", "discard",
                     "scratch", "strike")
_VOTE_HINTS = ("vote", "decision", "verdict", "answer", *_WITHDRAWAL_VERBS)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _hinted_lines(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each line of ``text`` that has a word of _VOTE_HINTS, from the last one up:
    the words are looked for with ``rfind``, each over the text once."""
    lowered = text.lower()
    if len(lowered) != len(text):  # a letter whose lowercase is longer ("İ"): keep the offsets
        lowered = text.translate(_ASCII_LOWER)
    found = {hint: lowered.rfind(hint) for hint in _VOTE_HINTS}
    while (at := max(found.values())) >= 0:
        start = text.rfind("\n", 0, at) + 1
        end = text.find("\n", at)
        yield start, len(text) if end < 0 else end + 1
        for hint, position in found.items():
            if position >= start:
                found[hint] = lowered.rfind(hint, 0, start)


def _next_lines(text: str, end: int, count: int = 3) -> list[str]:
    """The ``count`` lines of ``text`` after offset ``end`` (a line's end)."""
    lines = []
    for _ in range(count):
        following = text.find("\n", end)
        lines.append(text[end:len(text) if following < 0 else following + 1])
        if following < 0:
            break
        end = following + 1
    return lines


def _last_on_line(text: str, following: list[str], context: VoteContext, budget: list[int]) -> tuple[int, _Vote] | None:
    """(position, vote) of the last own explicit vote or withdrawal (an unreadable vote) on a
    line, looked for from its end; the next non-blank lines serve a bare ``## Vote`` heading."""
    lead = _lead(text)
    if text[lead:lead + 1] == ">":
        return None  # a quotation
    lowered = text.lower()  # what each pattern needs, looked for first: a pass of a regex costs more
    if lowered.count("agree") >= 2 and ("or" in lowered or "/" in text or "|" in text):
        text = _OPTIONS_RE.sub(lambda echo: " " * len(echo.group()), text)  # the instructions echoed back
    line = _Line(text, lead, context, budget)
    # the last ones only: no more are looked at (and a hostile line's matches are not all kept)
    withdrawals = _last_matches(_WITHDRAWAL_RE, text) if any(verb in lowered for verb in _WITHDRAWAL_VERBS) else []
    starts = [(match.start(), match.end()) for match in withdrawals]
    votes = _last_matches(_VOTE_RE, text) if "agree" in lowered else []
    changes = _last_matches(_VOTE_CHANGE_RE, text) if "agree" in lowered and "my" in lowered else []
    candidates = heapq.merge(reversed(votes), reversed(changes), reversed(withdrawals), key=_position, reverse=True)
    for match in candidates:
        line.spend()
        position = _position(match)
        if match.re is _WITHDRAWAL_RE:
            if line.withdraws(match):
                return position, _UNREADABLE
        elif match.re is _VOTE_CHANGE_RE:
            if line.changes(match):
                return position, match.group(1).upper()
        else:
            index = bisect.bisect_right(starts, (position, len(text))) - 1  # a withdrawal holding it?
            if index >= 0 and starts[index][1] > position and line.withdraws(withdrawals[index]):
                continue  # "I retract my VOTE: AGREE"
            if line.is_own(match):
                arrow = _VOTE_ARROW_RE.match(text, match.end())
                return position, (arrow or match).group(1).upper()
    return _unworded_vote(line, following)


def _last_matches(pattern: re.Pattern[str], text: str) -> list[re.Match[str]]:
    return list(collections.deque(pattern.finditer(text), maxlen=_MARKERS_READ))


def _position(match: re.Match[str]) -> int:
    """Where a vote found stands: a withdrawal's end (a vote after it on its line counts), a vote's start."""
    return match.end() if match.re is _WITHDRAWAL_RE else match.start()


class _CodeBlocks:
    """The code blocks of a reply: its ``` and ~~~ lines, paired in order (an unclosed block runs to
    the end). A block is an example when the line before it, or its info string, introduces an
    example or a format ("For example:", "Here is the format:")."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.fences = [fence.start() for fence in _FENCE_LINE_RE.finditer(text)]
        self._examples: dict[int, bool] = {}

    def where(self, line_start: int) -> str:
        """"fence" for a fence line, "example" or "code" for a line in such a block, else "text"."""
        count = bisect.bisect_right(self.fences, line_start)
        if count and self.fences[count - 1] == line_start:
            return "fence"
        if count % 2 == 0:
            return "text"
        return "example" if self._example(self.fences[count - 1]) else "code"

    def _example(self, opening: int) -> bool:
        if opening not in self._examples:
            before = self.text[max(0, opening - 200):opening].rstrip()
            previous = before[before.rfind("\n") + 1:]
            info = self.text[opening:opening + 60].split("\n", 1)[0].strip().lstrip("`~")
            self._examples[opening] = _EXAMPLE_INTRO_RE.search(previous + " " + info) is not None
        return self._examples[opening]


def _json_vote(document: Any) -> tuple[_Vote, dict[str, Any]] | None:
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


class _Found(msgspec.Struct, frozen=True):
    """A vote found at ``offset`` of the reply; ``fields``: its JSON object's, when it is one."""

    offset: int
    vote: _Vote
    fields: dict[str, Any] | None = None


def _blank(text: str, spans: _Spans) -> str:
    """``text`` with each span blanked out but its line breaks (same length: offsets hold)."""
    pieces = []
    position = 0
    for start, end in spans:
        pieces += [text[position:start], re.sub(r"[^\n]", " ", text[start:end])]
        position = end
    return "".join([*pieces, text[position:]])


def _json_votes(text: str, documents: list[tuple[int, int, Any]], blocks: _CodeBlocks,
                context: VoteContext) -> list[_Found]:
    """The JSON votes that are the reply's own: in no example, attributed to no one else."""
    found = []
    for start, _, document in documents:
        vote = _json_vote(document)
        line_start = text.rfind("\n", 0, start) + 1
        if vote is None or blocks.where(line_start) == "example":
            continue
        if _decoration_only(text[line_start:start]) or not _attributed(
                text[max(line_start, start - _LOOKAROUND):start], context):
            found.append(_Found(start, *vote))
    return found


def _last_text_vote(text: str, blocks: _CodeBlocks, context: VoteContext, *, in_code: bool,
                    after: int = -1) -> _Found | None:
    """The last own text vote (or withdrawal) after offset ``after``: outside code blocks, or with
    ``in_code`` in those that show no example. Looked for from the end of ``text``, on the lines
    that have a word a vote needs, at most _MARKERS_READ of them and of the markers on them."""
    budget = [_MARKERS_READ]
    for start, end in _hinted_lines(text):
        if end <= after:
            return None
        _spend(budget)
        where = blocks.where(start)
        if where in ("fence", "example") or (where == "code") != in_code:
            continue
        found = _last_on_line(text[start:end], _next_lines(text, end), context, budget)
        if found is not None:
            return _Found(start + found[0], found[1]) if start + found[0] > after else None
    return None


def parse_vote(text: str, context: VoteContext | None = None) -> ParsedVote | None:
    """The last explicit vote in ``text`` that is its own (see the rules above); None when there is
    none, or the last one cannot be read or was withdrawn. ``context``: who else the reply may name."""
    context = context or VoteContext()
    text = _STRUCK_RE.sub("", strip_reasoning(text))
    documents = _json_documents(text)
    blanked = _blank(text, [(start, end) for start, end, _ in documents])
    blocks = _CodeBlocks(blanked)
    from_json = max(_json_votes(text, documents, blocks, context), key=lambda found: found.offset, default=None)
    try:
        last = (_last_text_vote(blanked, blocks, context, in_code=False, after=from_json.offset if from_json else -1)
                or from_json or _last_text_vote(blanked, blocks, context, in_code=True))
    except _TooManyMarkers:
        logger.debug("a reply with more than %d vote markers from its last own vote: read as none", _MARKERS_READ)
        return None
    if last is None or not isinstance(last.vote, str):
        return None
    if last.fields is not None:
        return ParsedVote(last.vote, _strings(last.fields.get("reasons")), _strings(last.fields.get("concerns")),
                          _confidence(last.fields.get("confidence")))
    lists = _sections(text)
    return ParsedVote(last.vote, tuple(lists.get("reasons", ())), tuple(lists.get("concerns", ())),
                      _text_confidence(text))


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


def _structured(text: str, shape: type[Any], prose_around: bool = True) -> Any:
    """``text`` decoded as ``shape``, tolerating what servers wrap around a JSON reply
    (whitespace, a reasoning block, a ```json fence, with ``prose_around`` a line of prose);
    None when it is not one."""
    attempts = [text.strip()]
    stripped = strip_reasoning(text).strip()
    fence = _FENCE_RE.search(stripped)
    attempts += [stripped, fence.group(1) if fence else ""]
    if prose_around:
        attempts.append(stripped[stripped.find("{"):stripped.rfind("}") + 1])
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
    nor DISAGREE, in any case). A confidence outside 0-1 reads as None. A vote document with
    prose around it is None here: ``parse_vote`` reads it, by the rules prose obeys (the prose
    may withdraw the vote, or show the document as an example)."""
    reply = _structured(text, _LooseVoteReply, prose_around=False)
    if reply is None:
        return None
    vote = reply.vote.strip().upper()
    if vote not in ("AGREE", "DISAGREE"):
        return None
    return ParsedVote(vote, _strings(reply.reasons), _strings(reply.concerns), _confidence(reply.confidence))
