"""How many real-world replies the parsers read, and how many they read wrong.

    python benchmarks/replies.py [--corpus tests/corpus/replies.json]

Over the reply corpus (critiques and votes written in the habits of several model
families: reasoning blocks, tables, numbered lists, refusals, vote changes, JSON with
and without fences; each with the reading a careful human makes), it runs today's
parsers (``forge_actors.core.reply_reading``) and, measured in the same run, a baseline: what the
project did before, implemented here — the first ``Score: N`` in each ``Proposal X``
section, the first ``VOTE: X`` match, no reasoning stripping; for JSON replies, a strict
decode of the whole text. Votes are read as the engine reads them (``rounds.read_vote``:
a structured reply's JSON document first, then the text), with what the entry's prompt
showed (``voter``, ``names``: the session's participants; ``labels``: proposal labels).

Per reply format (text, json) and kind (critiques, votes): replies read correctly (every
score of the reply, or its vote, equals the expected one, None included), unread (some
expected value read as None, nothing wrong), wrong (a value read that differs from the
expected one, or a value where None was expected). Ours must have 0 wrong reads: the exit
status is 1 otherwise. The last line of output is one JSON object with these numbers.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec  # noqa: E402

from forge_actors.core import reply_format, reply_reading, rounds  # noqa: E402

DEFAULT_CORPUS = Path(__file__).resolve().parents[1] / "tests" / "corpus" / "replies.json"


# -- the baseline: first match, no reasoning stripping, strict JSON ----------------------------

_NAIVE_PROPOSAL_RE = re.compile(r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?[ \t]*Proposal[ \t]+([A-Z])\b", re.I | re.M)
_NAIVE_SCORE_RE = re.compile(
    r"\bscore\b[*_ \t]*[:=\-][*_ \t]*(\d{1,3}(?:\.\d+)?)(?:[ \t]*(?:/|out[ \t]+of)[ \t]*(\d{1,3}))?", re.I
)
_NAIVE_VOTE_RE = re.compile(r"\bVOTE\b[*_ \t]*[:\-][*_ \t]*(AGREE|DISAGREE)\b", re.I)


def _naive_score(section: str) -> int | None:
    match = _NAIVE_SCORE_RE.search(section)
    if match is None:
        return None
    value, scale = float(match.group(1)), int(match.group(2) or 100)
    value = value * 10 if scale == 10 else value
    return round(value) if 1 <= value <= 100 and scale in (10, 100) else None


def naive_critiques(text: str, labels: list[str]) -> dict[str, int | None]:
    headings = [m for m in _NAIVE_PROPOSAL_RE.finditer(text) if m.group(1).upper() in labels]
    if not headings and len(labels) == 1:
        return {labels[0]: _naive_score(text)}
    scores: dict[str, int | None] = {}
    for index, heading in enumerate(headings):
        end = headings[index + 1].start() if index + 1 < len(headings) else len(text)
        scores.setdefault(heading.group(1).upper(), _naive_score(text[heading.start():end]))
    return {label: scores.get(label) for label in labels}


def naive_vote(text: str, context: reply_reading.VoteContext) -> str | None:
    match = _NAIVE_VOTE_RE.search(text)
    return match.group(1).upper() if match else None


def strict_critiques_json(text: str, labels: list[str]) -> dict[str, int | None] | None:
    try:
        reply = msgspec.json.decode(text.strip(), type=reply_format.CritiqueReply)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    scores: dict[str, int | None] = {}
    for review in reply.reviews:
        scores.setdefault(review.proposal.strip().upper(), review.score if 1 <= review.score <= 100 else None)
    return {label: scores.get(label) for label in labels}


def strict_vote_json(text: str, context: reply_reading.VoteContext) -> str | None:
    try:
        return msgspec.json.decode(text.strip(), type=reply_format.VoteReply).vote
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


# -- today's parsers, in the same shape -----------------------------------------------------------

def our_critiques(text: str, labels: list[str]) -> dict[str, int | None]:
    return {label: c.score for label, c in reply_reading.parse_critiques(text, labels).items()}


def our_critiques_json(text: str, labels: list[str]) -> dict[str, int | None] | None:
    parsed = reply_reading.parse_critique_json(text, labels)
    return None if parsed is None else {label: c.score for label, c in parsed.items()}


def vote_context(entry: dict[str, Any]) -> reply_reading.VoteContext:
    """Whose names and which proposal labels the prompt of a corpus vote showed."""
    return reply_reading.VoteContext(entry.get("voter", ""), tuple(entry.get("names", ())), tuple(entry.get("labels", ())))


def our_vote(text: str, context: reply_reading.VoteContext) -> str | None:
    vote = rounds.read_vote(text, False, context)
    return vote.vote if vote else None


def our_vote_json(text: str, context: reply_reading.VoteContext) -> str | None:
    vote = rounds.read_vote(text, True, context)
    return vote.vote if vote else None


Readers = dict[tuple[str, str], Callable[..., Any]]
OURS: Readers = {("critique", "text"): our_critiques, ("critique", "json"): our_critiques_json,
                 ("vote", "text"): our_vote, ("vote", "json"): our_vote_json}
BASELINE: Readers = {("critique", "text"): naive_critiques, ("critique", "json"): strict_critiques_json,
                     ("vote", "text"): naive_vote, ("vote", "json"): strict_vote_json}


# -- judging ------------------------------------------------------------------------------------

def judge(expected: Any, read: Any) -> str:
    """correct, unread or wrong, for one reply (a critique's scores by label, or a vote)."""
    if read == expected:
        return "correct"
    if isinstance(read, dict):
        wanted = expected if isinstance(expected, dict) else {}
        wrong = any(value is not None and wanted.get(label) != value for label, value in read.items())
    else:
        wrong = read is not None
    return "wrong" if wrong else "unread"


def measure(corpus: list[dict[str, Any]], readers: Readers) -> dict[str, Any]:
    result: dict[str, Any] = {}
    wrong_ids: list[str] = []
    for fmt in ("text", "json"):
        result[fmt] = {}
        for kind, name in (("critique", "critiques"), ("vote", "votes")):
            entries = [e for e in corpus if e["kind"] == kind and e["format"] == fmt]
            verdicts = []
            for entry in entries:
                args = (entry["text"], entry["labels"]) if kind == "critique" else (entry["text"], vote_context(entry))
                verdict = judge(entry["expected"], readers[(kind, fmt)](*args))
                verdicts.append(verdict)
                if verdict == "wrong":
                    wrong_ids.append(entry["id"])
            correct = verdicts.count("correct")
            result[fmt][name] = {"replies": len(entries), "correct": correct,
                                 "share": round(correct / len(entries), 3) if entries else None,
                                 "unread": verdicts.count("unread"), "wrong": verdicts.count("wrong")}
    result["wrong_ids"] = wrong_ids
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args()
    corpus = json.loads(args.corpus.read_text(encoding="utf-8"))
    started = time.perf_counter()
    ours = measure(corpus, OURS)
    seconds = time.perf_counter() - started
    baseline = measure(corpus, BASELINE)

    print(f"corpus: {len(corpus)} replies, {len({e['family'] for e in corpus})} model families")
    print(f"{'':<18}{'replies':>8}{'ours: read':>13}{'unread':>8}{'wrong':>7}{'baseline: read':>17}{'unread':>8}{'wrong':>7}")
    for fmt in ("text", "json"):
        for name in ("critiques", "votes"):
            o, b = ours[fmt][name], baseline[fmt][name]
            if o["replies"]:
                print(f"{fmt + ' ' + name:<18}{o['replies']:>8}{o['share']:>13.0%}{o['unread']:>8}{o['wrong']:>7}"
                      f"{b['share']:>17.0%}{b['unread']:>8}{b['wrong']:>7}")
    if ours["wrong_ids"]:
        print(f"WRONG READS (ours): {', '.join(ours['wrong_ids'])}")
    print(f"baseline wrong reads: {', '.join(baseline['wrong_ids']) or 'none'}")
    print(f"our parsers over the whole corpus: {seconds * 1000:.1f} ms")
    print(json.dumps({"corpus": len(corpus), "ours": {k: ours[k] for k in ("text", "json")},
                      "baseline": {k: baseline[k] for k in ("text", "json")},
                      "ours_wrong": len(ours["wrong_ids"]), "baseline_wrong": len(baseline["wrong_ids"]),
                      "ours_ms": round(seconds * 1000, 1)}))
    return 1 if ours["wrong_ids"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
