"""The built wheel carries both packages and the prompt templates."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

import forge_actors

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_ships_templates_and_installs_into_a_fresh_venv(tmp_path):
    pytest.importorskip("hatchling", reason="the dev extras install hatchling to build offline")
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    wheel = next(dist.glob("forge_actors-*.whl"))
    assert wheel.name.startswith(f"forge_actors-{forge_actors.__version__}-")  # one version: __init__.py
    names = zipfile.ZipFile(wheel).namelist()
    assert "forge_actors/core/prompts/system.txt" in names
    assert "forge_actors/surfaces/server/static/index.html" in names  # the web page ships with the package
    assert "forge_actors/evals/basic.jsonl" in names  # the task set of `forge eval basic`
    assert "eventstore/sqlite.py" in names and "eventstore/postgres.py" in names
    assert not any(name.startswith("tests/") for name in names)

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True, capture_output=True, timeout=300,
    )
    # Run from tmp_path so the source tree is not on sys.path: this must be the installed copy.
    out = subprocess.run(
        [str(python), "-c",
         "import forge_actors.core.templates as t, forge_actors; "
         "print(forge_actors.__file__); print(t.render('system', name='Ada', persona='(none)'))"],
        check=True, capture_output=True, text=True, cwd=tmp_path, timeout=60,
    ).stdout
    installed_at, rendered = out.split("\n", 1)
    assert str(env_dir) in installed_at
    assert "You are Ada" in rendered


def test_one_version_for_the_package_its_metadata_and_forge_v(capsys):
    from importlib.metadata import version

    from forge_actors.surfaces.cli import main

    assert version("forge-actors") == forge_actors.__version__  # hatch reads it from __init__.py
    with pytest.raises(SystemExit) as exit_:
        main(["-V"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"forge {forge_actors.__version__}"
