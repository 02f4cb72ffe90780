"""File and search tools: what they show, what they skip, their caps, their timeouts."""

from __future__ import annotations

from pathlib import Path

import pytest
from tool_support import make_toolbox, ok, require_ripgrep, without_ripgrep

from forge_actors.tools import HistoryHit, Toolbox, ToolLimits

# -- file tools -------------------------------------------------------------------------------


def test_read_file_numbers_lines_and_reads_ranges(box: Toolbox) -> None:
    out = ok(box, "read_file", path="src/pkg/core.py", start_line=6, end_line=7)
    assert out.splitlines() == ["src/pkg/core.py (lines 6-7 of 12)", "     6\tclass Engine:", "     7\t    def start(self):"]
    assert "past its end" in box.call("read_file", {"path": "README.md", "start_line": 50}).error
    assert "before start_line" in box.call("read_file", {"path": "README.md", "start_line": 2, "end_line": 1}).error


def test_read_file_refuses_binaries_folders_and_missing_files(root: Path, box: Toolbox) -> None:
    (root / "blob.bin").write_bytes(b"\x89PNG\x00\x01\x02")
    assert "binary file" in box.call("read_file", {"path": "blob.bin"}).error
    assert "is a folder; use list_files" in box.call("read_file", {"path": "src"}).error
    assert "there is no file 'nope.txt'" in box.call("read_file", {"path": "nope.txt"}).error
    assert "excluded" in box.call("read_file", {"path": ".env"}).error


def test_read_file_stops_at_the_byte_cap(root: Path) -> None:
    (root / "big.txt").write_text("x" * 50 + "\n" + "y" * 5000 + "\n")
    box = make_toolbox(root, limits=ToolLimits(max_file_bytes=100))
    result = box.call("read_file", {"path": "big.txt"})
    assert result.truncated and "only the first 100 of 5052 bytes were read" in result.output
    assert "y" * 60 not in result.output


def test_read_many_reports_each_file_and_keeps_going(box: Toolbox) -> None:
    out = ok(box, "read_many", paths=["README.md", ".env", "src/app.js"])
    assert "README.md (lines 1-2 of 2)" in out and ".env: error: path '.env' is excluded" in out and "function start" in out
    assert "at most 10 items" in box.call("read_many", {"paths": ["README.md"] * 11}).error


def test_list_files_globs_sorts_and_skips_excluded(box: Toolbox) -> None:
    assert ok(box, "list_files").splitlines() == ["README.md", "src/app.js", "src/pkg/core.py"]
    assert ok(box, "list_files", pattern="**/*.py") == "src/pkg/core.py"
    assert ok(box, "list_files", pattern="*", path="src") == "src/app.js"
    assert "no file matches" in ok(box, "list_files", pattern="*.rs")


def test_listing_caps_flag_truncation(root: Path) -> None:
    for i in range(30):
        (root / "many").mkdir(exist_ok=True)
        (root / "many" / f"f{i:02}.txt").write_text("start\n")
    box = make_toolbox(root, limits=ToolLimits(max_entries=10))
    listing = box.call("list_files", {"path": "many"})
    assert listing.truncated and len(listing.output.splitlines()) == 11 and "stopped at 10 entries" in listing.output
    tree = box.call("tree", {"path": "many"})
    assert tree.truncated and "tree stopped at 10 entries" in tree.output
    grep = box.call("grep", {"pattern": "start", "path": "many"})
    assert grep.truncated and "stopped at 10 matching lines" in grep.output
    assert box.call("search_files", {"name_pattern": "f*.txt"}).truncated


def test_tree_respects_depth(root: Path, box: Toolbox) -> None:
    assert ok(box, "tree", depth=1).splitlines() == ["./", "  README.md", "  keys/", "  src/"]
    assert ok(box, "tree", path="src", depth=2).splitlines() == ["src/", "  app.js", "  pkg/", "    core.py"]
    assert "at most 10" in box.call("tree", {"depth": 11}).error


def test_tree_shows_each_file_under_its_own_folder(root: Path, box: Toolbox) -> None:
    (root / "docs").mkdir()
    (root / "docs" / "guide.md").write_text("x\n")
    assert ok(box, "tree").splitlines() == ["./", "  README.md", "  docs/", "    guide.md", "  keys/", "  src/",
                                           "    app.js", "    pkg/", "      core.py"]


def test_file_info(box: Toolbox) -> None:
    info = ok(box, "file_info", path="src/pkg/core.py")
    assert "type: text file" in info and "lines: 12" in info and "size: " in info
    assert "type: folder" in ok(box, "file_info", path="src")


# -- search tools -----------------------------------------------------------------------------



def test_grep_finds_lines_and_never_shows_excluded_files(box: Toolbox, grep_engine: str) -> None:
    out = ok(box, "grep", pattern="start")
    assert out.splitlines() == ["README.md:2:start here", "src/app.js:1:function start() {",
                                "src/pkg/core.py:7:    def start(self):"]
    assert ok(box, "grep", pattern="START", ignore_case=True, glob="*.py") == "src/pkg/core.py:7:    def start(self):"
    assert ok(box, "grep", pattern="LIMIT", path="src/app.js") == "src/app.js:4:const LIMIT = 4;"
    assert "invalid regular expression" in box.call("grep", {"pattern": "("}).error
    assert "sk-secret" not in ok(box, "grep", pattern="-")  # a pattern that looks like an option is still a pattern


def test_python_grep_stops_at_its_deadline(root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    for d in range(5):
        folder = root / "big" / f"d{d}"
        folder.mkdir(parents=True)
        for f in range(20):
            (folder / f"f{f}.txt").write_text("nothing to see\n" * 20)
    box = make_toolbox(root, limits=ToolLimits(timeout_seconds=1e-6))
    result = box.call("grep", {"pattern": "needle", "path": "big"})
    assert result.error is not None and "ran out of time" in result.error


def test_find_symbol_python_and_other_languages(box: Toolbox) -> None:
    assert ok(box, "find_symbol", name="start").splitlines() == ["src/app.js:1: definition function start() {",
                                                                 "src/pkg/core.py:7: def Engine.start"]
    assert ok(box, "find_symbol", name="fetch") == "src/pkg/core.py:11: async def fetch"
    assert ok(box, "find_symbol", name="Engine") == "src/pkg/core.py:6: class Engine"
    assert ok(box, "find_symbol", name="LIMIT").splitlines() == ["src/app.js:4: definition const LIMIT = 4;",
                                                                 "src/pkg/core.py:3: assignment LIMIT"]
    assert "not an identifier" in box.call("find_symbol", {"name": "a b"}).error


def test_search_files_and_count_matches(box: Toolbox) -> None:
    assert ok(box, "search_files", name_pattern="CORE") == "src/pkg/core.py"
    assert ok(box, "search_files", name_pattern="*.js") == "src/app.js"
    assert "config" not in ok(box, "search_files", name_pattern="i")  # .ssh/config is excluded
    counts = ok(box, "count_matches", pattern="start")
    assert counts.splitlines() == ["total: 3 matches in 3 files", "1\tREADME.md", "1\tsrc/app.js", "1\tsrc/pkg/core.py"]


class FakeHistory:
    def __init__(self) -> None:
        self.queries: list[tuple[str, int]] = []

    def search(self, query: str, limit: int) -> list[HistoryHit]:
        self.queries.append((query, limit))
        return [HistoryHit("s-1", "Cache design", "synthesis", "claude", "use an LRU")][:limit]

    def final_synthesis(self, session_id: str) -> str | None:
        return "Adopt the LRU cache." if session_id == "s-1" else None


def test_history_tools_use_the_context_history(root: Path) -> None:
    history = FakeHistory()
    box = make_toolbox(root, history=history)
    assert ok(box, "search_history", query="cache") == "session s-1 - Cache design (synthesis, claude):\n  use an LRU"
    assert history.queries == [("cache", 5)]
    assert ok(box, "lookup_session", session_id="s-1") == "Adopt the LRU cache."
    assert "has no final synthesis" in box.call("lookup_session", {"session_id": "s-9"}).error
    bare = make_toolbox(root)
    assert "no session history is available" in bare.call("lookup_session", {"session_id": "s-1"}).error


def test_summarize_file_uses_the_given_summarizer(root: Path) -> None:
    seen: list[str] = []

    def summarize(text: str) -> str:
        seen.append(text)
        return "A demo readme."

    box = make_toolbox(root, summarize=summarize)
    assert ok(box, "summarize_file", path="README.md") == "summary of README.md:\nA demo readme."
    assert seen == ["# Demo\nstart here\n"]
    assert "excluded" in box.call("summarize_file", {"path": ".env"}).error and len(seen) == 1
    assert "unavailable here" in make_toolbox(root).call("summarize_file", {"path": "README.md"}).error


def test_a_failing_summarizer_is_an_error_result(root: Path) -> None:
    def summarize(text: str) -> str:
        raise ConnectionError("provider down")

    result = make_toolbox(root, summarize=summarize).call("summarize_file", {"path": "README.md"})
    assert result.error == "summarizing 'README.md' failed (ConnectionError); read_file the parts you need instead"


def test_a_glob_naming_an_excluded_file_still_shows_nothing_of_it(box: Toolbox, grep_engine: str) -> None:
    assert "no match" in ok(box, "grep", pattern="sk-secret", glob=".env")
    assert "no match" in ok(box, "grep", pattern="PRIVATE", glob="**/*.pem")


def test_look_arounds_and_backreferences_are_refused_by_both_engines(box: Toolbox, grep_engine: str) -> None:
    # RE2 decides which patterns run, whichever engine searches (ripgrep never runs PCRE2): each refusal
    # says what to write instead.
    look_around = box.call("grep", {"pattern": r"(?<=def )start", "glob": "*.py"}).error
    assert look_around is not None and "look-arounds" in look_around and "'def start'" in look_around
    assert ok(box, "grep", pattern=r"def start", glob="*.py") == "src/pkg/core.py:7:    def start(self):"
    backreference = box.call("grep", {"pattern": r"(\w)\1"}).error
    assert backreference is not None and "backreferences" in backreference
    end = box.call("count_matches", {"pattern": r"here\Z"}).error
    assert end is not None and "write \\z (or $)" in end
    assert ok(box, "grep", pattern=r"here\z") == "README.md:2:start here"
    assert "at most 1000 characters" in box.call("grep", {"pattern": "a" * 1001}).error
    assert "counted repetition goes up to {1000}" in box.call("grep", {"pattern": "((a{100}){100})"}).error


def test_patterns_that_backtrack_in_python_are_answered(root: Path, box: Toolbox, grep_engine: str) -> None:
    # Python's re took exponential time on these (holding the GIL); RE2 and ripgrep answer at once.
    (root / "aaa.txt").write_text(("a" * 30 + "!\n") * 50 + "a" * 12 + "\n")
    for pattern in ("(a+)+b", "((a)+)+$", "(a|aa)+$", "(a+){12}$", "(.*a){12}$"):
        expected = "no match" if pattern.endswith("b") else "aaa.txt:51:" + "a" * 12
        assert expected in ok(box, "grep", pattern=pattern, path="aaa.txt"), pattern
    assert ok(box, "count_matches", pattern="(a|aa)+$").splitlines() == ["total: 1 matches in 1 files", "1\taaa.txt"]
    assert "1512\taaa.txt" in ok(box, "count_matches", pattern="a")


#: Unicode text where RE2 (ASCII \d \w \s \b) and ripgrep's own defaults (Unicode ones) would differ,
#: and patterns ripgrep's syntax reads otherwise (class set operators, \Q...\E) or refuses.
_ALIKE_TEXT = ("café 12\nnaïve \u0661\u0662\u0663 digits\n\u212a kelvin\na&b [a&&b] a--b\n.*\n"
               "\x0cform feed\r\nx{,2}\n   \nend\u2028same line\n")
_ALIKE_PATTERNS = [r"\w+é", r"caf\b", r"\bcafé\b", r"\d+", r"[\d\s]{3}", r"[^\w\s]", r"\S+ \S+$", r"\D\W\S",
                   r"(?i)kelvin", r"(?i)\w+elvin", r"[a&&b]", r"[a--b]", r"\Q.*\E", r"[[:alpha:]]+\b", r"^\s*$",
                   r"x{,2}", r"\pL+ \pN", r"feed$", r"^.form", r"line$", r"^\Ssame", r"[\]a]&", r"[^]a]&b"]


def test_both_grep_engines_answer_alike(root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    require_ripgrep("there is one engine only")
    (root / "text.txt").write_bytes(_ALIKE_TEXT.encode("utf-8"))
    box = make_toolbox(root, ["grep"])

    def answers() -> list[tuple[str | None, str]]:
        return [(r.error, r.output) for p in _ALIKE_PATTERNS for case in (False, True)
                for r in [box.call("grep", {"pattern": p, "path": "text.txt", "ignore_case": case})]]

    with_ripgrep = answers()
    without_ripgrep(monkeypatch, tmp_path)
    with_re2 = answers()
    for pattern, rg, python in zip([p for p in _ALIKE_PATTERNS for _ in (0, 1)], with_ripgrep, with_re2, strict=True):
        assert rg == python, pattern
    assert sum("text.txt:" in output for _, output in with_re2) > len(_ALIKE_PATTERNS)  # most patterns match


def test_a_glob_full_of_stars_is_matched_fast(root: Path, box: Toolbox) -> None:
    (root / ("a" * 200)).mkdir()
    (root / ("a" * 200) / ("a" * 200)).write_text("x\n")
    # As one regular expression this glob backtracks for ages on that path; segment by segment it is instant.
    assert "no file matches" in ok(box, "list_files", pattern="**/" + "*a" * 40 + "b")
    assert "no match" in ok(box, "grep", pattern="x", glob="*a" * 40 + "b")


def test_grep_skips_noise_folders_unless_named(root: Path, box: Toolbox, grep_engine: str) -> None:
    (root / "node_modules" / "lib").mkdir(parents=True)
    (root / "node_modules" / "lib" / "x.js").write_text("needle\n")
    assert "no match" in ok(box, "grep", pattern="needle")
    assert ok(box, "grep", pattern="needle", path="node_modules") == "node_modules/lib/x.js:1:needle"
