"""A model's pattern: RE2 decides what it may be, what it matches, and how ripgrep is told the same."""

from __future__ import annotations

import pytest

from forge_actors.tools import ToolError
from forge_actors.tools.patterns import MAX_PATTERN_CHARS, Pattern, ripgrep_pattern


def test_a_pattern_searches_and_counts_one_line() -> None:
    assert Pattern("(a|aa)+$").search("a" * 12) and not Pattern("(a|aa)+$").search("a" * 40 + "!")
    assert Pattern("start", ignore_case=True).search("START here")
    assert not Pattern("start").search("START here")
    assert Pattern("a").count("banana") == 3 and Pattern("x").count("banana") == 0
    assert Pattern(r"\d+").count("café 12 and ٣") == 1  # \d is ASCII, as in RE2


@pytest.mark.parametrize(("pattern", "advice"), [
    (r"(?<=def )start", "look-arounds"), (r"a(?!b)", "look-arounds"), (r"(\w)\1", "backreferences"),
    (r"(?P<x>a)(?P=x)", "backreferences"), (r"end\Z", "write \\z (or $)"), (r"(?>a+)b", "never backtracks"),
    (r"a++", "never backtracks"), (r"a{1001}", "goes up to {1000}"), (r"((a{100}){100})", "goes up to {1000}"),
    (r"\pL{1000}\pN{1000}", "MiB the search engine allows"), (r"(", "missing )"),
])
def test_what_re2_refuses_says_what_to_write_instead(pattern: str, advice: str) -> None:
    with pytest.raises(ToolError) as refused:
        Pattern(pattern)
    assert str(refused.value).startswith(f"invalid regular expression {pattern!r}: ") and advice in str(refused.value)


def test_a_pattern_past_the_cap_is_refused() -> None:
    Pattern("a" * MAX_PATTERN_CHARS)
    with pytest.raises(ToolError, match=f"at most {MAX_PATTERN_CHARS} are accepted"):
        Pattern("a" * (MAX_PATTERN_CHARS + 1))


def test_re2_writes_nothing_on_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    for pattern in ("(?<=a)b", "(", "a{1001}", "\\pL{1000}\\pN{1000}"):
        with pytest.raises(ToolError):
            Pattern(pattern)
    Pattern("(a|b)*a(a|b){300}c").search("ab" * 1000)  # fills RE2's DFA cache, which it would log
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize(("pattern", "for_ripgrep"), [
    ("def start", "def start"),
    (r"\d+\s\w", "[0-9]+[\\t\\n\\f\\r ][0-9A-Za-z_]"),
    (r"\D\S\W", "[^0-9][^\\t\\n\\f\\r ][^0-9A-Za-z_]"),
    (r"\bx\B", r"(?-u:\b)x(?-u:\B)"),
    (r"[\d_]\z", "[[0-9]_]$"),
    (r"\\d", r"\\d"),  # an escaped backslash, then a "d"
    (r"[]a][^]b]", r"[]a][^]b]"),
    (r"[[:alpha:]-]", r"[[:alpha:]-]"),
    (r"\p{Greek}\x{263a}", r"\p{Greek}\x{263a}"),
])
def test_ripgrep_is_told_what_re2_means(pattern: str, for_ripgrep: str) -> None:
    assert ripgrep_pattern(pattern) == for_ripgrep


@pytest.mark.parametrize("pattern", [r"[a&&b]", r"[a--b]", r"[a~~b]", r"[a[b]]", r"\Q.*\E", "a\x00b", "[[:alpha]"])
def test_what_ripgrep_would_read_otherwise_is_left_to_re2(pattern: str) -> None:
    assert ripgrep_pattern(pattern) is None
