"""Git tools on a real temporary repository, and a malicious repository config that must not run."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from tool_support import make_toolbox, ok

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed (CI has it)")


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.org", "GIT_COMMITTER_NAME": "Ada",
           "GIT_COMMITTER_EMAIL": "ada@example.org", "GIT_AUTHOR_DATE": "2026-01-02T03:04:05Z",
           "GIT_COMMITTER_DATE": "2026-01-02T03:04:05Z"}
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True, env=env).stdout


@pytest.fixture
def repo(root: Path) -> Path:
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-f", "README.md", "src", ".env")
    git(root, "commit", "-q", "-m", "first: the demo")
    (root / "README.md").write_text("# Demo\nstart here\nsecond line\n")
    (root / ".env").write_text("API_KEY=sk-rotated\n")
    git(root, "commit", "-q", "-am", "second: a line more")
    return root



def test_git_log_and_show(repo: Path) -> None:
    box = make_toolbox(repo, ["git"])
    log = ok(box, "git_log")
    assert "2026-01-02 Ada" in log and "second: a line more" in log and "first: the demo" in log
    assert "second" not in ok(box, "git_log", path="src")
    assert ok(box, "git_log", max_count=1).count("Ada") == 1
    show = ok(box, "git_show", rev="HEAD")
    assert "+second line" in show and "sk-" not in show and ".env" not in show  # excluded files stay hidden in diffs
    assert ok(box, "git_show", rev="HEAD~1", path="README.md") == "# Demo\nstart here\n"
    assert "excluded" in box.call("git_show", {"rev": "HEAD~1", "path": ".env"}).error


def test_git_diff_and_blame(repo: Path) -> None:
    box = make_toolbox(repo, ["git"])
    assert ok(box, "git_diff") == "no differences"
    (repo / "README.md").write_text("# Demo\nchanged\n")
    (repo / ".env").write_text("API_KEY=sk-live\n")
    diff = ok(box, "git_diff")
    assert "+changed" in diff and "sk-live" not in diff
    assert "+second line" in ok(box, "git_diff", rev_a="HEAD~1", rev_b="HEAD")
    blame = ok(box, "git_blame", path="src/pkg/core.py", start_line=3, end_line=3)
    assert "Ada" in blame and "LIMIT = 3" in blame and len(blame.splitlines()) == 1


@pytest.mark.parametrize("rev", ["--output=/tmp/x", "-p", "HEAD:README.md", "main..HEAD", "a b", "HEAD;rm"])
def test_revisions_that_are_not_revisions_are_refused(repo: Path, rev: str) -> None:
    box = make_toolbox(repo, ["git"])
    result = box.call("git_show", {"rev": rev})
    assert result.error is not None and "is not a revision" in result.error


def test_git_paths_go_through_the_workspace(repo: Path) -> None:
    box = make_toolbox(repo, ["git"])
    assert "'..'" in box.call("git_log", {"path": "../"}).error
    assert "leaves the workspace" in box.call("git_blame", {"path": "/etc/passwd"}).error
    assert "bad revision" in box.call("git_show", {"rev": "nosuchbranch"}).error


NOT_TOP = ("the workspace is not the top of a git repository (git tools see only a repository whose top folder "
           "is the workspace), so git tools are unavailable")


def test_not_a_repository_is_an_error_result(root: Path) -> None:
    result = make_toolbox(root, ["git"]).call("git_log", {})
    assert result.error == NOT_TOP


def test_a_malicious_repository_config_runs_nothing(repo: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = tmp_path / "evil.sh"
    script.write_text(f"#!/bin/sh\necho ran >> {marker}\ncat\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    for key in ("core.pager", "pager.log", "pager.show", "pager.diff", "diff.external", "core.fsmonitor",
                "gpg.program", "diff.evil.textconv", "diff.evil.command", "filter.evil.clean", "filter.evil.smudge",
                "filter.evil.process"):
        git(repo, "config", key, str(script))
    git(repo, "config", "log.showSignature", "true")
    (repo / ".gitattributes").write_text("* diff=evil filter=evil\n")
    (repo / "README.md").write_text("# Demo\nchanged again\n")
    box = make_toolbox(repo, ["git"])
    for tool, arguments in [("git_log", {}), ("git_diff", {}), ("git_diff", {"rev_a": "HEAD~1"}),
                            ("git_show", {"rev": "HEAD"}), ("git_show", {"rev": "HEAD", "path": "README.md"}),
                            ("git_blame", {"path": "README.md"})]:
        result = box.call(tool, arguments)
        assert result.error is None, (tool, result.error)
    assert not marker.exists(), "a command from the repository's config was run"


def test_the_callers_git_variables_do_not_reach_git(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "diff.external")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", str(tmp_path / "nothing-here"))
    (repo / "README.md").write_text("# Demo\nchanged\n")
    box = make_toolbox(repo, ["git"])
    assert "first: the demo" in ok(box, "git_log") and "+changed" in ok(box, "git_diff")


def test_protected_files_stay_hidden_in_git_output(repo: Path) -> None:
    (repo / "forge.db").write_text("the event log\n")
    git(repo, "add", "forge.db")
    git(repo, "commit", "-q", "-m", "log committed by mistake")
    box = make_toolbox(repo, ["git"], protected=[repo / "forge.db"])
    assert "the event log" not in ok(box, "git_show", rev="HEAD")
    assert "protected" in box.call("git_show", {"rev": "HEAD", "path": "forge.db"}).error


# -- git never leaves the workspace -----------------------------------------------------------


def _every_call(box_paths: list[str]) -> list[tuple[str, dict[str, object]]]:
    """A call of each git tool, with each path given (pathspec magic among them)."""
    calls: list[tuple[str, dict[str, object]]] = [("git_log", {}), ("git_diff", {}), ("git_diff", {"rev_a": "HEAD~1"}),
                                                  ("git_show", {"rev": "HEAD"}), ("git_show", {"rev": "HEAD~1"})]
    for path in box_paths:
        calls += [("git_log", {"path": path}), ("git_diff", {"path": path}), ("git_diff", {"rev_a": "HEAD~1", "path": path}),
                  ("git_show", {"rev": "HEAD", "path": path}), ("git_blame", {"path": path})]
    return calls


_MAGIC = [":(top).env", ":/.env", ":(top,glob)**/.env", ":(glob)**", ":(top)", ":!README.md", ":(exclude)x", "*.env",
          ":(literal,top).env", ":(icase,top).ENV"]


def test_a_workspace_below_the_top_of_a_repository_sees_no_repository(tmp_path: Path) -> None:
    top = tmp_path / "top"
    workspace = top / "ws"
    workspace.mkdir(parents=True)
    (top / ".env").write_text("TOP_SECRET=1\n")
    (workspace / "README.md").write_text("inside\n")
    git(top, "init", "-q", "-b", "main")
    git(top, "add", "-f", ".env", "ws/README.md")
    git(top, "commit", "-q", "-m", "first")
    (top / ".env").write_text("TOP_SECRET=2\n")
    git(top, "commit", "-q", "-am", "second")
    (top / ".env").write_text("TOP_SECRET=3\n")  # and a change in the working tree
    box = make_toolbox(workspace, ["git"])
    for tool, arguments in _every_call(_MAGIC + ["README.md"]):
        result = box.call(tool, arguments)
        assert "TOP_SECRET" not in result.output + (result.error or ""), (tool, arguments)
        assert result.error is not None, (tool, arguments)
    assert box.call("git_diff", {"path": ":(top).env"}).error == NOT_TOP


def test_a_workspace_with_its_own_repository_inside_another_uses_its_own(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    inner = outer / "inner"
    inner.mkdir(parents=True)
    git(outer, "init", "-q", "-b", "main")
    (outer / "outer.txt").write_text("outer\n")
    git(outer, "add", "outer.txt")
    git(outer, "commit", "-q", "-m", "an outer commit")
    git(inner, "init", "-q", "-b", "main")
    (inner / "inner.txt").write_text("inner\n")
    git(inner, "add", "inner.txt")
    git(inner, "commit", "-q", "-m", "an inner commit")
    log = ok(make_toolbox(inner, ["git"]), "git_log")
    assert "an inner commit" in log and "outer" not in log


def test_paths_are_literal_names_for_git(repo: Path) -> None:
    box = make_toolbox(repo, ["git"])
    (repo / "README.md").write_text("# Demo\nchanged\n")
    assert ok(box, "git_log", path=":(glob)**") == "no commits"  # a name no file has: no pathspec magic
    assert ok(box, "git_diff", path=":!src") == "no differences"
    assert ok(box, "git_diff", path="*.md") == "no differences"
    (repo / "*.md").write_text("a file named *.md\n")  # such a name is a file like any other
    git(repo, "add", "*.md")
    git(repo, "commit", "-q", "-m", "a star")
    assert ok(box, "git_log", path="*.md").count("Ada") == 1


def test_a_committed_env_file_never_appears_in_git_output(repo: Path) -> None:
    # .env is committed twice by the fixture; keys/server.pem and .ssh/config (an excluded folder) join it.
    (repo / "odd dir é").mkdir()
    (repo / "odd dir é" / ".env").write_text("API_KEY=sk-odd\n")
    (repo / "sp ace").mkdir()
    (repo / "sp ace" / ".env").write_text("API_KEY=sk-space\n")
    git(repo, "add", "-f", "keys", ".ssh", "odd dir é", "sp ace")
    (repo / "README.md").write_text("# Demo\nthird\n")
    git(repo, "commit", "-q", "-am", "third: keys and more")
    (repo / ".env").write_text("API_KEY=sk-working-tree\n")
    (repo / "keys" / "server.pem").write_text("-----BEGIN PRIVATE KEY-----\nworking tree\n")
    (repo / "README.md").write_text("# Demo\nfourth\n")
    box = make_toolbox(repo, ["git"])
    calls = _every_call([".", "src", "keys", ".ssh", ".env", "keys/server.pem", ".ssh/config"] + _MAGIC)
    calls += [("git_show", {"rev": "HEAD~2"}), ("git_diff", {"rev_a": "HEAD~2", "rev_b": "HEAD"})]
    for tool, arguments in calls:
        result = box.call(tool, arguments)
        for secret in ("sk-", "PRIVATE KEY", "Host start"):
            assert secret not in result.output + (result.error or ""), (tool, arguments, secret)
        for name in (".env", "server.pem", ".ssh/"):  # not even a name (an error may echo the path it was given)
            assert name not in result.output, (tool, arguments, name, result.output)
    show = ok(box, "git_show", rev="HEAD")
    assert "+third" in show and " README.md " in show and "| 3 +--" in show and "[4 file(s) hidden: the workspace excludes them" in show
    diff = ok(box, "git_diff")
    assert "+fourth" in diff and "[2 file(s) hidden" in diff
    listing = ok(box, "git_show", rev="HEAD", path=".")
    assert listing.splitlines()[:3] == ["tree HEAD:./.", "", "README.md"] and "keys/" in listing
    assert "[2 file(s) hidden" in listing  # .env and .ssh/
    assert "excluded" in box.call("git_blame", {"path": ".env"}).error


def test_a_hidden_file_cannot_be_read_by_its_object_hash(repo: Path) -> None:
    blob = git(repo, "rev-parse", "HEAD:.env").strip()
    other = git(repo, "rev-parse", "HEAD:README.md").strip()
    tree = git(repo, "rev-parse", "HEAD^{tree}").strip()
    box = make_toolbox(repo, ["git"])
    for tool, arguments in [("git_show", {"rev": blob}), ("git_show", {"rev": blob[:7]}),
                            ("git_diff", {"rev_a": other, "rev_b": blob}), ("git_show", {"rev": tree, "path": "src"})]:
        result = box.call(tool, arguments)
        assert result.error is not None and "sk-" not in result.output + result.error, (tool, arguments)
        assert "expected commit type" in result.error


def test_a_work_tree_configured_above_the_workspace_is_not_used(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"  # tmp_path is the workspace's parent
    outside.write_text("outside v1\n")
    git(repo, "config", "core.worktree", str(tmp_path))
    git(repo, "add", str(outside))
    git(repo, "commit", "-q", "-m", "tracks a file above the workspace")
    outside.write_text("OUTSIDE-SECRET\n")
    box = make_toolbox(repo, ["git"])
    for tool, arguments in [("git_diff", {}), ("git_diff", {"rev_a": "HEAD"}), ("git_diff", {"path": ":(top)"}),
                            ("git_diff", {"rev_a": "HEAD", "path": ":(top)outside.txt"})]:
        result = box.call(tool, arguments)
        assert "OUTSIDE-SECRET" not in result.output + (result.error or ""), tool
    assert "+# Demo" not in ok(box, "git_diff")  # the workspace's own files are still where they are
