"""The one gate every path goes through: escapes, symlinks, exclusions, protected files."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forge_actors.tools import PathRefused, Workspace


def test_relative_and_inside_absolute_paths_resolve(root: Path) -> None:
    ws = Workspace(root)
    assert ws.resolve("src/pkg/core.py") == ws.root / "src/pkg/core.py"
    assert ws.resolve("./src//pkg/core.py") == ws.root / "src/pkg/core.py"
    assert ws.resolve(str(root / "README.md")) == ws.root / "README.md"
    assert ws.resolve(".") == ws.root
    assert ws.resolve("new/file.txt") == ws.root / "new/file.txt"  # need not exist (write_file)


@pytest.mark.parametrize("path, why", [
    ("/etc/passwd", "leaves the workspace"),
    ("../outside.txt", "'..'"),
    ("src/../../outside.txt", "'..'"),
    ("src/..", "'..'"),
    ("~/.bashrc", "leaves the workspace"),
    ("src/\x00core.py", "NUL"),
    (".env", "excluded"),
    (".env.production", "excluded"),
    ("keys/server.pem", "excluded"),
    (".ssh/config", "excluded"),
    (".git/config", "excluded"),
    ("deploy/id_rsa.pub", "excluded"),
    ("CREDENTIALS.json", "excluded"),
])
def test_refused_paths_say_why(root: Path, path: str, why: str) -> None:
    with pytest.raises(PathRefused, match=why):
        Workspace(root).resolve(path)


def test_absolute_path_inside_with_dotdot_is_refused(root: Path) -> None:
    with pytest.raises(PathRefused, match=r"'\.\.'"):
        Workspace(root).resolve(str(root / "src" / ".." / ".." / "x"))


def test_symlinks_are_refused_whether_they_point_out_or_in(root: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("outside")
    os.symlink(tmp_path / "secret.txt", root / "out_link")
    os.symlink(root / "README.md", root / "in_link")
    os.symlink(root / "src", root / "dir_link")
    ws = Workspace(root)
    for path in ("out_link", "in_link", "dir_link/app.js"):
        with pytest.raises(PathRefused, match="symbolic link"):
            ws.resolve(path)


def test_protected_files_are_never_readable(root: Path) -> None:
    log = root / "forge.db"
    log.write_text("log")
    ws = Workspace(root, protected=[log, str(log) + "-wal"])
    with pytest.raises(PathRefused, match="protected"):
        ws.resolve("forge.db")
    with pytest.raises(PathRefused, match="protected"):
        ws.resolve(str(log))
    (root / "forge.db-wal").write_text("wal")
    assert ws.root / "forge.db-wal" not in [p for p, _, _ in ws.walk(ws.root)]


def test_a_hard_link_to_a_protected_file_is_refused_under_any_name(root: Path, tmp_path: Path) -> None:
    log = tmp_path / "forge.db"  # the log outside the workspace, a hard link to it inside
    log.write_text("the log")
    os.link(log, root / "notes.txt")
    (root / "src" / "deep").mkdir(parents=True, exist_ok=True)
    os.link(log, root / "src" / "deep" / "copy.md")
    ws = Workspace(root, protected=[log])
    for name in ("notes.txt", "src/deep/copy.md"):
        with pytest.raises(PathRefused, match="protected"):
            ws.read_bytes(name, 100)
        with pytest.raises(PathRefused, match="protected"):
            ws.stat(name)
    assert ws.read_bytes("README.md", 100)[0]  # other files read as before


def test_walk_skips_excluded_protected_and_symlinked_entries(root: Path, tmp_path: Path) -> None:
    os.symlink(tmp_path, root / "link_out")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")
    ws = Workspace(root, protected=[root / "README.md"])
    seen = {ws.relative(p) for p, _, _ in ws.walk(ws.root)}
    assert seen == {"src", "src/app.js", "src/pkg", "src/pkg/core.py", "keys"}


def test_custom_exclusions_replace_the_defaults(root: Path) -> None:
    ws = Workspace(root, exclude=("*.md",))
    assert ws.resolve(".env").name == ".env"
    with pytest.raises(PathRefused, match="excluded"):
        ws.resolve("README.md")


def test_the_root_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a folder"):
        Workspace(tmp_path / "missing")


@given(st.lists(st.sampled_from(["..", ".", "", "src", "pkg", "/", "~", "\x00", "a..b", ".env", "x/", "//", "core.py"]),
                max_size=8).map("/".join) | st.text(max_size=30))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_whatever_a_model_writes_resolves_inside_the_root_or_is_refused(root: Path, path: str) -> None:
    ws = Workspace(root)
    try:
        resolved = ws.resolve(path)
    except PathRefused:
        return
    assert resolved == ws.root or ws.root in resolved.parents
    assert ".." not in resolved.relative_to(ws.root).parts and not ws.is_excluded(resolved)


def test_noise_folders_are_not_walked_but_stay_readable(root: Path) -> None:
    (root / ".venv" / "lib").mkdir(parents=True)
    (root / ".venv" / "lib" / "site.py").write_text("start\n")
    (root / "src" / "__pycache__").mkdir()
    ws = Workspace(root)
    seen = {ws.relative(p) for p, _, _ in ws.walk(ws.root)}
    assert not any(".venv" in p or "__pycache__" in p for p in seen)
    assert ws.resolve(".venv/lib/site.py").is_file()
    assert {ws.relative(p) for p, _, _ in ws.walk(ws.resolve(".venv"))} == {".venv/lib", ".venv/lib/site.py"}
    assert {ws.relative(p) for p, _, _ in Workspace(root, skip_dirs=()).walk(ws.root)} >= {".venv", "src/__pycache__"}


def test_a_worktree_git_file_is_excluded_too(root: Path) -> None:
    (root / ".git").write_text("gitdir: /elsewhere/.git/worktrees/x\n")
    with pytest.raises(PathRefused, match="excluded"):
        Workspace(root).resolve(".git")


# -- opening through descriptors --------------------------------------------------------------


def test_reads_stats_and_listings_go_through_the_same_rules(root: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("outside")
    os.symlink(tmp_path, root / "dir_link")
    os.symlink(root / "README.md", root / "file_link")
    ws = Workspace(root, protected=[root / "README.md"])
    data, size = ws.read_bytes("src/pkg/core.py", 6)
    assert data == b"import" and size == (root / "src/pkg/core.py").stat().st_size
    entry = ws.stat("src")
    assert entry.is_dir and entry.rel == "src" and entry.path == ws.root / "src"
    assert ws.stat(".").rel == "." and ws.stat(str(root / "src" / "app.js")).rel == "src/app.js"
    for path, why in [("dir_link/secret.txt", "symbolic link"), ("file_link", "symbolic link"),
                      (".env", "excluded"), (".ssh", "excluded"), (".ssh/config", "excluded"),
                      ("README.md", "protected"), ("../x", "'..'"), ("/etc/passwd", "leaves the workspace")]:
        for call in (ws.stat, ws.open_file, lambda p: ws.read_bytes(p, 10), ws.delete,
                     lambda p: ws.write_bytes(p, b"x"), lambda p: ws.open_dir(p).__enter__()):
            with pytest.raises(PathRefused, match=why):
                call(path)
    assert (tmp_path / "secret.txt").read_text() == "outside" and (root / ".env").read_text() == "API_KEY=sk-secret\n"
    with pytest.raises(FileNotFoundError):
        ws.open_file("src/missing.py")
    with pytest.raises(FileNotFoundError):
        ws.stat("missing/deeper/file")
    with pytest.raises(NotADirectoryError) as blocked:
        ws.stat("README.md/below")
    assert blocked.value.filename == "README.md"
    with pytest.raises(IsADirectoryError):
        ws.open_file("src")
    with pytest.raises(PathRefused, match="excluded"):  # the start of a walk follows the rules too
        list(ws.walk(".ssh"))


def test_write_bytes_creates_folders_replaces_atomically_and_keeps_the_mode(root: Path) -> None:
    ws = Workspace(root)
    assert ws.write_bytes("new/deeper/plan.md", b"one") is False
    assert (root / "new/deeper/plan.md").read_bytes() == b"one"
    os.chmod(root / "new/deeper/plan.md", 0o640)
    assert ws.write_bytes("new/deeper/plan.md", b"two") is True
    assert (root / "new/deeper/plan.md").read_bytes() == b"two"
    assert (root / "new/deeper/plan.md").stat().st_mode & 0o777 == 0o640
    assert os.listdir(root / "new/deeper") == ["plan.md"]  # no temporary file left behind
    with pytest.raises(NotADirectoryError):
        ws.write_bytes("README.md/x", b"x")
    with pytest.raises(IsADirectoryError):
        ws.write_bytes("src", b"x")
    with pytest.raises(PathRefused, match="excluded"):  # checked before any folder is made
        ws.write_bytes("made/.env", b"x")
    assert not (root / "made").exists()
    ws.delete("new/deeper/plan.md")
    assert not (root / "new/deeper/plan.md").exists()
    with pytest.raises(IsADirectoryError):
        ws.delete("src")


def test_a_walk_lists_each_folder_before_the_next_and_never_follows_links(root: Path, tmp_path: Path) -> None:
    (root / "src" / "zzz.txt").write_text("z")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.txt").write_text("x")
    os.symlink(tmp_path / "elsewhere", root / "src" / "link")
    ws = Workspace(root)
    assert [(ws.relative(p), is_dir, depth) for p, is_dir, depth in ws.walk("src")] == [
        ("src/app.js", False, 1), ("src/pkg", True, 1), ("src/pkg/core.py", False, 2), ("src/zzz.txt", False, 1)]
    assert [ws.relative(p) for p in ws.files("src/app.js")] == ["src/app.js"]
    assert list(ws.walk("missing")) == [] and list(ws.files("missing")) == []


def test_pinned_keeps_a_child_in_the_folder_that_was_checked(root: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    ws = Workspace(root)
    with ws.pinned("src") as cwd:
        (root / "src").rename(root / "moved")  # the folder goes; a link to elsewhere takes its name
        os.symlink(tmp_path / "elsewhere", root / "src")
        shown = subprocess.run([sys.executable, "-c", "import os; print(os.getcwd())"], cwd=cwd,
                               capture_output=True, text=True, check=True).stdout.strip()
    assert shown == str(ws.root / "moved")


# -- the credential denylist ------------------------------------------------------------------

HOME_SECRETS = [
    ".bashrc", ".bash_profile", ".profile", ".zshrc", ".zprofile", ".zshenv", ".bash_history", ".zsh_history",
    ".psql_history", ".config/fish/config.fish", ".local/share/fish/fish_history",
    ".git-credentials", ".gitconfig", ".config/git/config", ".netrc", ".npmrc", ".pypirc", ".pgpass", ".my.cnf",
    ".docker/config.json", ".kube/config", ".config/gh/hosts.yml", ".config/hub",
    ".config/gcloud/application_default_credentials.json", ".config/gcloud/configurations/config_default",
    ".azure/msal_token_cache.json", ".aws/config", ".gnupg/private-keys-v1.d/k.key", ".password-store/bank.gpg",
    ".ssh/id_ed25519", ".ssh/known_hosts", ".local/share/keyrings/login.keyring", ".envrc", ".vault-token",
    "infra/prod.tfvars", "infra/terraform.tfstate", "infra/terraform.tfstate.backup", ".terraformrc",
    "vault.kdbx", "release.jks", "putty.ppk", "project/.env.local", "project/deploy/server.key",
]


def test_a_home_folder_workspace_hides_the_usual_credential_files(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for name in [*HOME_SECRETS, "project/README.md", ".config/other/settings.json", ".docker/daemon.json"]:
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text("TOKEN=ghp_secret\n")
    ws = Workspace(home)
    for name in HOME_SECRETS:
        with pytest.raises(PathRefused, match="excluded"):
            ws.read_bytes(name, 100)
    seen = {ws.relative(p) for p in ws.files(".")}
    assert seen == {"project/README.md", ".config/other/settings.json", ".docker/daemon.json"}
    assert ws.is_excluded(home / ".docker" / "config.json") and not ws.is_excluded(home / ".docker" / "daemon.json")
    assert ws.is_excluded(home / ".config" / "gh") and ws.is_excluded(home / "a" / ".config" / "gh" / "x.yml")


def test_a_pattern_with_a_slash_matches_consecutive_components_at_any_depth(root: Path) -> None:
    ws = Workspace(root, exclude=("config/prod.yml", "build/out/", "*.secret"))
    for path in ("config/prod.yml", "app/CONFIG/Prod.yml", "build/out/x.txt", "a/b/build/out", "x.SECRET"):
        with pytest.raises(PathRefused, match="excluded"):
            ws.check(path)
    for path in ("config/dev.yml", "prod.yml", "config", "build/out.txt", "out/build"):
        ws.check(path)


def test_check_refuses_by_name_alone(root: Path) -> None:
    ws = Workspace(root, protected=[root / "forge.db"])
    for path, why in [(".env", "excluded"), ("./sub/.ssh", "excluded"), ("forge.db", "protected"),
                      (str(root / "forge.db"), "protected"), ("../x", "'..'"), ("/etc/x", "leaves")]:
        with pytest.raises(PathRefused, match=why):
            ws.check(path)
    ws.check("src/new-file.py")  # need not exist


def test_a_walk_lends_its_open_folder_only_while_its_caller_handles_an_entry(root: Path, tmp_path: Path) -> None:
    ws = Workspace(root)
    walk = ws.walk("src")
    path, _, _ = next(walk)
    (root / "src").rename(root / "moved")  # the walk's folder is open: what it yielded is read from there
    (root / "src").mkdir()
    assert ws.read_bytes(path, 8)[0] == b"function"
    other = threading.Thread(target=walk.close)  # closed from another thread: still taken back
    other.start()
    other.join()
    assert ws._lent == {}
    with pytest.raises(FileNotFoundError):  # from the root again: the new, empty "src"
        ws.read_bytes(path, 8)
