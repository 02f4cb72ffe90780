"""How similar two texts are, 0-1: the cosine of their vectors.

Two measures, both recorded as ``SimilarityMeasured`` facts (the session decides on the recorded
figure, never on a measure taken again):

- **embedding**: the cosine of the vectors a participant's provider returns (``cosine``). It sees
  paraphrase: the same meaning in other words.
- **lexical** (``lexical_similarity``), offline and free, when no participant's provider embeds: the
  cosine of word unigram + bigram vectors, with sublinear term frequency (1 + log tf) and English
  function words left out. Why this one: it needs no model download and no corpus (a pair's figure
  depends on the two texts alone, so it means the same in every session, unlike TF-IDF over a
  corpus of two); it is deterministic and linear in the texts' length (a model's text is attacker
  input); and it answers the question the stop rule asks of successive syntheses — has the text
  stopped changing? A light edit keeps most words and word pairs (0.8-1), a rewrite does not
  (bigrams also see words reordered). It cannot see paraphrase: for that, configure embeddings.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

#: A word: letters, digits and underscores of any script (so code identifiers stay whole).
_WORD = re.compile(r"\w+")
#: Words that carry no substance: two unrelated English paragraphs share many of them.
STOP_WORDS = frozenset("""
a an and are as at be been but by can could do does for from had has have he her his i if in into is it its
may might more most must no not of on or our shall she should so such than that the their them then there these
they this those to too very was we were what when where which while who will with would you your
""".split())
#: The most characters of a text the lexical measure reads (a reply is bounded by max_reply_chars;
#: this bounds the work whatever a caller passes).
MAX_CHARS = 1_000_000


def terms(text: str) -> Counter[str]:
    """The text's words (lower case, function words left out) and adjacent word pairs, counted."""
    words = [w for w in _WORD.findall(text[:MAX_CHARS].lower()) if w not in STOP_WORDS]
    counted: Counter[str] = Counter(words)
    counted.update(f"{first} {second}" for first, second in zip(words, words[1:], strict=False))
    return counted


def _weights(counted: Counter[str]) -> dict[str, float]:
    return {term: 1.0 + math.log(count) for term, count in counted.items()}


def lexical_similarity(first: str, second: str) -> float:
    """The lexical measure (see the module docstring): 1.0 for texts with the same terms, 0.0 for
    texts sharing none (or an empty one)."""
    a, b = _weights(terms(first)), _weights(terms(second))
    if len(b) < len(a):
        a, b = b, a
    dot = sum(weight * b[term] for term, weight in a.items() if term in b)
    return _bounded(dot / (_norm(a.values()) * _norm(b.values()))) if a and b else 0.0


def cosine(first: Sequence[float], second: Sequence[float]) -> float:
    """The cosine of two vectors of one length (embeddings), clipped to 0-1: opposite directions count
    as unrelated. 0.0 for a zero vector. ValueError for vectors of different lengths."""
    if len(first) != len(second):
        raise ValueError(f"vectors of different lengths ({len(first)} and {len(second)}) cannot be compared")
    norms = _norm(first) * _norm(second)
    if norms == 0:
        return 0.0
    return _bounded(sum(x * y for x, y in zip(first, second, strict=True)) / norms)


def _norm(values: Iterable[float]) -> float:
    return math.sqrt(sum(v * v for v in values))


def _bounded(value: float) -> float:
    """0-1, rounded to 4 places: the figure recorded (float noise would make 1.0 read 0.9999999)."""
    return round(min(1.0, max(0.0, value)), 4)


def describe(value: float) -> str:
    """E.g. "94.2% similar" (one decimal: 89.96% must not read as a threshold of 90% reached)."""
    return f"{value:.1%} similar"
