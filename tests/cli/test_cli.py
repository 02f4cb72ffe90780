"""The `forge` console script, run for real in subprocesses."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from loopback import LoopbackServer, Reply

FORGE = str(Path(sys.executable).with_name("forge"))
TOOLS_REPLAY = str(Path(__file__).resolve().parents[2] / "tools" / "replay.py")
THREE = ["-p", "mock:alice", "-p", "mock:bob", "-p", "mock:carol"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "FORGE_DB", "FORGE_CONFIG")}
    env.update(extra)
    return env


def forge(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([FORGE, *args], cwd=cwd, env=env or clean_env(), capture_output=True, text=True,
                          timeout=timeout)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_a_whole_mock_deliberation_then_every_command_on_it(tmp_path):
    done = forge("run", "Design a TODO app API", *THREE, "--seed", "7", "--max-iterations", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr  # seed 7 converges
    events = json_lines(done.stdout)  # not a terminal: one JSON event per line
    assert events[0]["type"] == "SessionCreated" and events[-1]["type"] == "SessionEnded"
    assert events[-1]["outcome"] == "converged"
    assert [e["position"] for e in events] == sorted({e["position"] for e in events})
    assert all({"position", "version", "type", "recorded_at"} <= set(e) for e in events)
    session_id = events[0]["session_id"]
    assert (tmp_path / "forge.db").exists() and f"session {session_id}" in done.stderr

    listed = forge("sessions", cwd=tmp_path)
    assert listed.returncode == 0 and json_lines(listed.stdout)[0]["session_id"] == session_id

    shown = forge("show", session_id[:6], cwd=tmp_path)  # a unique prefix is enough
    assert shown.returncode == 0 and json.loads(shown.stdout)["status"] == "converged"

    for fmt in ("md", "json", "yaml"):
        out = tmp_path / f"export.{fmt}"
        exported = forge("export", session_id, "--format", fmt, "-o", str(out), cwd=tmp_path)
        assert exported.returncode == 0, exported.stderr
    assert "## Round 2 — critique" in (tmp_path / "export.md").read_text()
    assert json.loads((tmp_path / "export.json").read_text())["session_id"] == session_id
    assert "schema: forge_actors.session/1" in (tmp_path / "export.yaml").read_text()

    replayed = forge("replay", session_id, "--speed", "0", cwd=tmp_path)
    assert replayed.returncode == 0 and json_lines(replayed.stdout) == events

    rerun = forge("rerun", session_id, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    again = json_lines(rerun.stdout)
    assert again[0]["session_id"] != session_id and again[-1]["outcome"] == "converged"

    verified = subprocess.run([sys.executable, TOOLS_REPLAY, "--db", str(tmp_path / "forge.db"), session_id,
                               "--verify"], capture_output=True, text=True, env=clean_env())
    assert verified.returncode == 0 and "no violations" in verified.stdout
    state = subprocess.run([sys.executable, TOOLS_REPLAY, "--db", str(tmp_path / "forge.db"), session_id[:5],
                            "--state"], capture_output=True, text=True, env=clean_env())
    assert json.loads(state.stdout)["status"] == "converged"


def test_no_participants_and_no_key_means_three_mocks_said_in_one_line(tmp_path):
    done = forge("run", "Plan a garden", "--max-iterations", "1", "--db", "g.db", cwd=tmp_path)
    assert done.returncode in (0, 1), done.stderr
    assert "ANTHROPIC_API_KEY is not set" in done.stderr and "three offline mock participants" in done.stderr
    created = json_lines(done.stdout)[0]
    assert [p["name"] for p in created["participants"]] == ["alice", "bob", "carol"]


@pytest.mark.parametrize("args, config, message", [
    (["run", "goal", "-p", "nosuch:model"], None, "unknown provider 'nosuch'"),
    (["run", "goal", "-p", "anthropic:claude-sonnet-4-20250514"], None, "ANTHROPIC_API_KEY"),
    (["run", "goal", "--threshold", "3"], None, "convergence_threshold must be between 0 and 1"),
    (["run", "goal", "--convergence", "similarity", "--similarity-threshold", "2"], None,
     "similarity_threshold must be between 0 and 1"),
    (["run", "goal"], "[forge]\nmax_round = 3\n", "forge.max_round"),
    (["show", "nope"], None, "no session 'nope'"),
    (["show", "x", "--db", "not-a-log.db"], None, "is not an event log"),
    (["sessions", "--db", "missing.db"], None, "no event log at missing.db"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, config, message):
    (tmp_path / "not-a-log.db").write_text("hello, I am a text file")
    forge("run", "seed a log", "-p", "mock:a", "--max-iterations", "1", cwd=tmp_path)
    if config is not None:
        (tmp_path / "forge.toml").write_text(config)
    done = forge(*args, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_run_stops_by_similarity_when_asked(tmp_path):
    done = forge("run", "Design a TODO app API", *THREE, "--seed", "5", "--convergence", "similarity",
                 "--similarity-threshold", "0.5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    events = json_lines(done.stdout)
    assert events[0]["settings"]["convergence"] == "similarity" and events[0]["settings"]["similarity_threshold"] == 0.5
    assert events[-1]["outcome"] == "converged" and "(threshold 50%, lexical measure)" in events[-1]["reason"]
    assert "convergence" not in {e.get("kind") for e in events if e["type"] == "RoundStarted"}


def test_sigint_leaves_a_log_that_resume_finishes(tmp_path):
    run = subprocess.Popen(
        [FORGE, "run", "Design a TODO app API", "--max-iterations", "2",
         *[arg for name in ("alice", "bob", "carol") for arg in ("-p", f"mock:{name}?word_delay=0.01")]],
        cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    seen = 0
    for line in run.stdout:  # wait until text is streaming
        seen += json.loads(line)["type"] == "ContentDelta"
        if seen >= 30:
            break
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    resume_hint = next(line for line in err.splitlines() if "forge resume" in line)
    session_id = resume_hint.rsplit("forge resume ", 1)[1].split()[0]
    interrupted = json.loads(forge("show", session_id, cwd=tmp_path).stdout)
    assert interrupted["status"] == "interrupted"

    resumed = forge("resume", session_id, cwd=tmp_path)
    assert resumed.returncode in (0, 1), resumed.stderr
    assert json_lines(resumed.stdout)[-1]["type"] == "SessionEnded"
    verified = subprocess.run([sys.executable, TOOLS_REPLAY, "--db", str(tmp_path / "forge.db"), session_id,
                               "--verify"], capture_output=True, text=True, env=clean_env())
    assert verified.returncode == 0, verified.stderr
    again = forge("resume", session_id, cwd=tmp_path)
    assert "already ended" in again.stderr


def test_providers_shows_keys_present_never_their_values(tmp_path):
    tags = b'{"models":[{"name":"llama3.2:latest"},{"name":"qwen2.5:7b"}]}'
    with LoopbackServer(Reply(200, [tags], content_type="application/json")) as ollama, \
            LoopbackServer(Reply(404, [b"{}"], content_type="application/json")) as anthropic:
        (tmp_path / "forge.toml").write_text(
            "[forge.providers.ollama]\n"
            f"base_url = \"{ollama.url}\"\n"
            "[forge.providers.anthropic]\n"
            f"base_url = \"{anthropic.url}\"\n"
            "[forge.providers.openai]\n"
            "base_url = \"http://127.0.0.1:9/v1\"\n"
        )
        done = forge("providers", cwd=tmp_path, env=clean_env(ANTHROPIC_API_KEY="sk-ant-very-secret-42"))
    assert done.returncode == 0, done.stderr
    assert "sk-ant-very-secret-42" not in done.stdout + done.stderr
    rows = {row["provider"]: row for row in json_lines(done.stdout)}
    assert rows["ollama"]["reachable"] and rows["ollama"]["models"] == ["llama3.2:latest", "qwen2.5:7b"]
    assert rows["anthropic"]["key_present"] and rows["anthropic"]["key_env"] == "ANTHROPIC_API_KEY"
    assert rows["openai"]["reachable"] is False and rows["openai"]["key_present"] is False
    assert rows["mock"]["reachable"] is None


def test_keys_never_reach_exports(tmp_path):
    env = clean_env(ANTHROPIC_API_KEY="sk-ant-very-secret-43")
    done = forge("run", "goal", "-p", "mock:alice", "--max-iterations", "1", cwd=tmp_path, env=env)
    session_id = json_lines(done.stdout)[0]["session_id"]
    for fmt in ("md", "json", "yaml"):
        exported = forge("export", session_id, "--format", fmt, cwd=tmp_path, env=env)
        assert "sk-ant" not in exported.stdout
    assert b"sk-ant" not in (tmp_path / "forge.db").read_bytes()


def test_on_a_terminal_run_shows_the_live_view(tmp_path):
    import pty
    import re

    main, child = pty.openpty()
    process = subprocess.Popen([FORGE, "run", "Design a TODO app API", *THREE, "--seed", "7", "--max-iterations", "3"],
                               cwd=tmp_path, env=clean_env(COLUMNS="120", LINES="40", TERM="xterm"),
                               stdin=child, stdout=child, stderr=subprocess.PIPE)
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    process.wait(timeout=60)
    os.close(main)
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode("utf-8", "replace"))
    assert process.returncode == 0
    for part in ("round 1 · draft", "critique scores", "votes: ", "final synthesis by", "usage (costs are estimates)",
                 "converged"):
        assert part in screen, part
    assert '"type":' not in screen  # no JSON on a terminal


def test_serve_refuses_an_open_bind_without_a_token(tmp_path):
    done = forge("serve", "--host", "0.0.0.0", cwd=tmp_path)
    assert done.returncode == 2 and "without a token" in done.stderr


def test_serve_then_stop_interrupts_running_sessions_which_resume_finishes(tmp_path):
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([FORGE, "serve", "--port", str(port)], cwd=tmp_path, env=clean_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    api = f"http://127.0.0.1:{port}/api/v1/forge"
    for _ in range(200):
        try:
            if httpx.get(api + "/sessions").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    created = httpx.post(api + "/sessions", json={"goal": "Design a TODO app API", "deliberate": True,
                                                  "participants": ["mock:alice?word_delay=0.02", "mock:bob?word_delay=0.02"]})
    assert created.status_code == 201
    session_id = created.json()["session_id"]
    time.sleep(1.0)
    server.send_signal(signal.SIGINT)
    server.wait(timeout=30)
    shown = json.loads(forge("show", session_id, cwd=tmp_path).stdout)
    assert shown["status"] == "interrupted" and shown["reason"] == "the server stopped"
    resumed = forge("resume", session_id, cwd=tmp_path)
    assert resumed.returncode in (0, 1) and json_lines(resumed.stdout)[-1]["type"] == "SessionEnded"
