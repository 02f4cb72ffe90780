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


def test_not_a_repository_is_an_error_result(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(root.parent))  # no repository above the temp folder counts
    result = make_toolbox(root, ["git"]).call("git_log", {})
    assert result.error == "the workspace is not a git repository, so git tools are unavailable"


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
