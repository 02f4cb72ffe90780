"""Edit tools (write_file, apply_patch) and run_command: gated paths, atomic writes, killed process groups."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from tool_support import make_toolbox, ok

from forge_actors.tools import Toolbox, ToolLimits, shell
from forge_actors.tools.shell import plain_env

# -- write_file -------------------------------------------------------------------------------


def test_write_file_creates_and_replaces_inside_the_workspace(root: Path, box: Toolbox) -> None:
    assert ok(box, "write_file", path="notes/plan.md", content="one\n") == "created notes/plan.md (4 bytes)"
    assert ok(box, "write_file", path="notes/plan.md", content="two\n") == "replaced notes/plan.md (4 bytes)"
    assert (root / "notes" / "plan.md").read_text() == "two\n"
    assert [p.name for p in (root / "notes").iterdir()] == ["plan.md"]  # no temporary file left behind


def test_write_file_refuses_escapes_secrets_and_folders(root: Path, box: Toolbox, tmp_path: Path) -> None:
    os.symlink(tmp_path, root / "out")
    for path, why in [("../x", "'..'"), ("/tmp/x", "leaves the workspace"), (".env", "excluded"),
                      ("out/x", "symbolic link"), ("src", "is a folder"), ("README.md/x", "is a file")]:
        result = box.call("write_file", {"path": path, "content": "x"})
        assert result.error is not None and why in result.error, (path, result.error)
    assert not (tmp_path / "x").exists() and (root / ".env").read_text() == "API_KEY=sk-secret\n"
    small = make_toolbox(root, limits=ToolLimits(max_file_bytes=3))
    assert "at most 3 can be written" in small.call("write_file", {"path": "a", "content": "four"}).error


# -- apply_patch ------------------------------------------------------------------------------

PATCH = """\
--- a/src/pkg/core.py
+++ b/src/pkg/core.py
@@ -2,3 +2,3 @@

-LIMIT = 3
+LIMIT = 5

--- /dev/null
+++ b/docs/new.md
@@ -0,0 +1,2 @@
+# New
+page
"""


def test_apply_patch_changes_and_creates_files(root: Path, box: Toolbox) -> None:
    out = ok(box, "apply_patch", patch=PATCH)
    assert out == "patched src/pkg/core.py (1 hunk(s))\ncreated docs/new.md (1 hunk(s))"
    assert "LIMIT = 5\n" in (root / "src/pkg/core.py").read_text()
    assert (root / "docs/new.md").read_text() == "# New\npage\n"


def test_a_hunk_that_moved_a_little_still_applies(root: Path, box: Toolbox) -> None:
    original = (root / "src/pkg/core.py").read_text()
    (root / "src/pkg/core.py").write_text("# header\n# more\n" + original)
    ok(box, "apply_patch", patch=PATCH.split("--- /dev/null")[0])
    assert "LIMIT = 5\n" in (root / "src/pkg/core.py").read_text()


def test_a_patch_that_does_not_apply_changes_nothing(root: Path, box: Toolbox) -> None:
    change, creation = PATCH.split("--- /dev/null")
    bad = "--- /dev/null" + creation + change.replace("-LIMIT = 3", "-LIMIT = 99")  # the first file would apply
    before = (root / "src/pkg/core.py").read_text()
    result = box.call("apply_patch", {"patch": bad})
    assert result.error is not None and "does not apply" in result.error
    assert (root / "src/pkg/core.py").read_text() == before and not (root / "docs").exists()


@pytest.mark.parametrize("target, why", [("../evil.py", "'..'"), (".env", "excluded"), ("/etc/passwd", "leaves")])
def test_apply_patch_checks_every_target(root: Path, box: Toolbox, target: str, why: str) -> None:
    patch = f"--- /dev/null\n+++ {target}\n@@ -0,0 +1 @@\n+x\n"
    result = box.call("apply_patch", {"patch": patch})
    assert result.error is not None and why in result.error


def test_apply_patch_refuses_what_is_not_a_patch(box: Toolbox) -> None:
    assert "no file in the patch" in box.call("apply_patch", {"patch": "hello"}).error
    truncated = "--- a/README.md\n+++ b/README.md\n@@ -1,2 +1,2 @@\n-# Demo\n"
    assert "ends in the middle of a hunk" in box.call("apply_patch", {"patch": truncated}).error


# -- run_command ------------------------------------------------------------------------------


def python_box(root: Path, **limits) -> Toolbox:
    name = Path(sys.executable).name
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return make_toolbox(root, ["run_command"], shell_programs=frozenset({name}), limits=ToolLimits(**limits))


@pytest.fixture(autouse=True)
def _restore_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))  # python_box prepends; monkeypatch puts it back


def test_run_command_runs_an_allowed_program_in_the_workspace(root: Path) -> None:
    box = python_box(root)
    out = ok(box, "run_command", program=Path(sys.executable).name,
             args=["-c", "import os, sys; print(os.getcwd()); sys.exit(3)"])
    assert out == f"{Path(os.path.realpath(root))}\n[exit code 3]"


def test_run_command_refuses_other_programs_and_outside_paths(root: Path) -> None:
    box = python_box(root)
    name = Path(sys.executable).name
    assert "not allowed; allowed programs: " + name in box.call("run_command", {"program": "rm", "args": []}).error
    assert "not allowed" in box.call("run_command", {"program": sys.executable}).error
    for arg, why in [("../x", "'..'"), ("/etc/passwd", "outside"), ("--file=/etc/passwd", "outside"),
                     ("~/.ssh", "outside"), ("a/../../b", "'..'"),
                     ("-I/usr/include", "outside"), ("--dir=../up", "'..'")]:
        result = box.call("run_command", {"program": name, "args": [arg]})
        assert result.error is not None and why in result.error, arg
    inside = box.call("run_command", {"program": name, "args": ["-c", "pass", str(root / "README.md")]})
    assert inside.error is None


def test_run_command_refuses_arguments_naming_what_the_file_tools_refuse(root: Path) -> None:
    (root / "forge.db").write_text("the event log")
    box = make_toolbox(root, ["run_command"], shell_programs=frozenset({"cat", "git"}), protected=[root / "forge.db"])
    for program, args, message in [
        ("cat", [".env"], "path '.env' is excluded from the workspace (it may hold secrets)"),
        ("cat", ["./keys/server.pem"], "path './keys/server.pem' is excluded"),
        ("cat", [str(root / ".env")], "is excluded"),
        ("cat", [".ssh"], "path '.ssh' is excluded"),
        ("cat", ["--file=.env"], "path '.env' is excluded from the workspace (it may hold secrets) "
                                 "(argument '--file=.env')"),
        ("cat", ["-f.env"], "(argument '-f.env')"),
        ("cat", ["-hf.env"], "(argument '-hf.env')"),  # short options clustered: the last takes the value
        ("cat", ["-rnfforge.db"], "is protected"),
        ("cat", ["-hf/etc/passwd"], "outside the workspace"),
        ("git", ["show", "HEAD:.env"], "(argument 'HEAD:.env')"),
        ("cat", ["forge.db"], "path 'forge.db' is protected and cannot be read"),
        ("cat", ["./forge.db"], "is protected"),
    ]:
        result = box.call("run_command", {"program": program, "args": args})
        assert result.error is not None and message in result.error, (args, result.error)
        assert "sk-secret" not in result.output and "the event log" not in result.output
    assert ok(box, "run_command", program="cat", args=["README.md"]).startswith("# Demo")


def test_run_command_starts_in_the_root_that_was_checked(root: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "elsewhere").mkdir()
    real_run_process = shell.run_process

    def swapped_first(*args: object, **kwargs: object) -> shell.ProcessOutput:
        root.rename(tmp_path / "moved")  # after the checks, before the program starts: the root is a link now
        root.symlink_to(tmp_path / "elsewhere")
        return real_run_process(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(shell, "run_process", swapped_first)
    box = python_box(root)
    out = ok(box, "run_command", program=Path(sys.executable).name, args=["-c", "import os; print(os.getcwd())"])
    assert out == f"{os.path.realpath(tmp_path / 'moved')}\n[exit code 0]"


def test_the_environment_is_stripped_of_secrets(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "FORGE_DB", "GITHUB_TOKEN", "DB_PASSWORD", "MY_SECRET"):
        monkeypatch.setenv(name, "hidden")
    monkeypatch.setenv("LANG", "C.UTF-8")
    env = plain_env()
    assert not {"ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "FORGE_DB", "GITHUB_TOKEN", "DB_PASSWORD", "MY_SECRET"} & set(env)
    assert env["LANG"] == "C.UTF-8" and "PATH" in env
    box = python_box(root)
    out = ok(box, "run_command", program=Path(sys.executable).name, args=["-c", "import os; print(sorted(os.environ))"])
    assert "hidden" not in out and "GITHUB_TOKEN" not in out and "'LANG'" in out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_a_timeout_kills_the_whole_process_group(root: Path, tmp_path: Path) -> None:
    pids = root / "pids.txt"
    script = ("import subprocess, sys, time\n"
              "child = subprocess.Popen(['sleep', '60'])\n"
              "open('pids.txt', 'w').write(f'{__import__(\"os\").getpid()} {child.pid}')\n"
              "print('started', flush=True)\n"
              "time.sleep(60)\n")
    box = python_box(root, timeout_seconds=1.0)
    result = box.call("run_command", {"program": Path(sys.executable).name, "args": ["-c", script]})
    assert result.error is not None and "ran out of time" in result.error and "were killed" in result.error
    assert "started" in result.output
    leader, grandchild = map(int, pids.read_text().split())
    for _ in range(200):  # the kill is sent before call() returns; the kernel may take a moment to reap
        if not _alive(leader) and not _alive(grandchild):
            break
        time.sleep(0.01)
    assert not _alive(leader) and not _alive(grandchild)


def test_endless_output_is_capped_while_reading(root: Path) -> None:
    box = python_box(root, max_output_chars=1000)
    result = box.call("run_command", {"program": Path(sys.executable).name,
                                      "args": ["-c", "import sys\nwhile True: sys.stdout.write('y' * 1000)"]})
    assert result.truncated and result.error is None and "the command was stopped" in result.output
