"""`cli` and `daemon` providers against fake assistants (scripts the tests write), real processes."""

from __future__ import annotations

import json
import threading
import time

import pytest
from fake_tools import ASSISTANT, INTERACTIVE, alive, env_with, write_tool
from hypothesis import given, settings
from hypothesis import strategies as st

from forge_actors.providers import (
    CancelledError,
    EmptyResponseError,
    LlmRequest,
    Message,
    ProcessFailedError,
    RequestTimeoutError,
    collect,
    get_provider,
)
from forge_actors.providers.cleaning import TerminalCleaner, clean
from forge_actors.providers.cli import CliProvider
from forge_actors.providers.daemon import DaemonProvider

REQUEST = LlmRequest(messages=(Message("system", "Be brief."), Message("user", "Name one risk; $(rm -rf /) `x` ; | && >")))
NOISE = [r"^FakeAI v1", r"type /help"]


@pytest.fixture
def tools(tmp_path):
    write_tool(tmp_path, "fakeai", ASSISTANT)
    write_tool(tmp_path, "fakechat", INTERACTIVE)
    return tmp_path


def cli(tools, mode="normal", **options):
    options.setdefault("command", ["fakeai", "--quiet", "{prompt}"])
    return CliProvider("fakeai", noise=NOISE, env=env_with(tools, FAKE_MODE=mode, FAKE_PIDFILE=str(tools / "pids")),
                       **options)


# -- cleaning -------------------------------------------------------------------------------------------

SCREEN = ("\x1b]0;title\x07\x1b[1mFakeAI v1\x1b[0m - type /help\n\u280b Thinking\r\u2819 Thinking\r\x1b[2K"
          "\x1b[32mAnswer:\x1b[0m the \x1b[1mprompt\x1b[22m\nSecond\b\b\b\b\b\bThird line\r\n\x1b(Bdone")


def test_escapes_spinners_redraws_and_noise_are_removed():
    assert clean(SCREEN, NOISE) == "Answer: the prompt\nThird line\ndone"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(SCREEN) - 1), max_size=12))
def test_the_same_text_whatever_the_pieces(cuts):
    cleaner = TerminalCleaner(NOISE)
    edges = [0, *sorted(set(cuts)), len(SCREEN)]
    text = "".join(cleaner.feed(SCREEN[a:b]) for a, b in zip(edges, edges[1:], strict=False)) + cleaner.finish()
    assert text == clean(SCREEN, NOISE)


# -- cli ----------------------------------------------------------------------------------------------------


def test_a_cli_answer_streams_clean_and_the_prompt_is_one_argument(tools):
    chunks = list(cli(tools).stream(REQUEST))
    text = "".join(c.delta for c in chunks)
    assert text.startswith("Answer: the prompt had") and text.endswith("Second line.\n")
    assert len([c for c in chunks if c.delta]) >= 3  # it streamed, line pieces as they came
    assert "\x1b" not in text and "Thinking" not in text and "FakeAI" not in text
    assert chunks[-1].is_complete and chunks[-1].usage.output_tokens > 0
    argv = json.loads(collect(cli(tools, "args").stream(REQUEST), "m").content)
    assert argv == ["--quiet", "Be brief.\n\nName one risk; $(rm -rf /) `x` ; | && >"]  # verbatim: no shell


def test_the_prompt_goes_on_stdin_without_a_placeholder(tools):
    text = collect(cli(tools, command=["fakeai", "-"]).stream(REQUEST), "m").content
    assert f"had {len('Be brief.') + 2 + len(REQUEST.messages[1].content)} characters" in text


def test_resume_mode_sends_the_new_message_with_the_resume_flag(tools):
    provider = cli(tools, "args", history="resume", resume_args=["--continue"])
    first = json.loads(collect(provider.stream(REQUEST), "m").content)
    follow_up = LlmRequest(messages=(*REQUEST.messages, Message("assistant", "ok"), Message("user", "And another?")))
    second = json.loads(collect(provider.stream(follow_up), "m").content)
    assert first == ["--quiet", "Be brief.\n\nName one risk; $(rm -rf /) `x` ; | && >"]
    assert second == ["--quiet", "--continue", "And another?"]


def test_a_missing_binary_names_the_command_and_the_path(tools):
    provider = CliProvider("nope", command=["no-such-assistant", "{prompt}"], env={"PATH": str(tools)})
    with pytest.raises(ProcessFailedError, match=f"'no-such-assistant' not found .searched PATH: {tools}"):
        provider.stream(REQUEST)


def test_a_failing_tool_reports_its_exit_code_and_stderr_tail(tools):
    with pytest.raises(ProcessFailedError, match="exited with code 3: warming up\nboom: model overloaded"):
        collect(cli(tools, "fail").stream(REQUEST), "m")
    with pytest.raises(ProcessFailedError, match="code -9|code 137"):
        collect(cli(tools, "die").stream(REQUEST), "m")


def test_noise_only_output_is_an_empty_response(tools):
    with pytest.raises(EmptyResponseError, match="nothing but terminal noise"):
        collect(cli(tools, "empty").stream(REQUEST), "m")


def test_the_timeout_kills_the_whole_process_group(tools):
    provider = cli(tools, "hang", timeout=1.0)
    with pytest.raises(RequestTimeoutError, match="within 1 s"):
        collect(provider.stream(REQUEST), "m")
    tool_pid, child_pid = map(int, (tools / "pids").read_text().split())
    deadline = time.monotonic() + 5
    while (alive(tool_pid) or alive(child_pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(tool_pid) and not alive(child_pid)


def test_abort_from_another_thread_stops_the_tool_at_once(tools):
    provider = cli(tools, "hang", timeout=60)
    threading.Timer(0.5, provider.abort).start()
    start = time.monotonic()
    with pytest.raises(CancelledError):
        collect(provider.stream(REQUEST), "m")
    assert time.monotonic() - start < 10


def test_cli_specs_and_presets_through_the_registry(tools):
    assert get_provider("cli:q").command[:3] == ["q", "chat", "--no-interactive"]
    assert get_provider("cli:claude").resume_args == ["--continue"]
    built = get_provider("cli:fakeai?command=fakeai --quiet {prompt}&noise=^FakeAI v1,type /help")
    assert built.command == ["fakeai", "--quiet", "{prompt}"] and built.noise == ["^FakeAI v1", "type /help"]


# -- daemon ---------------------------------------------------------------------------------------------------


def daemon(tools, **options):
    options.setdefault("prompt_marker", r">\s*")
    options.setdefault("quit_command", "/quit")
    return DaemonProvider("fakechat", command=["fakechat"], noise=[r"^FakeChat", "Tip:"],
                          env=env_with(tools, FAKE_PIDFILE=str(tools / "pids")), **options)


def ask(provider, text: str) -> str:
    return collect(provider.stream(LlmRequest(messages=(Message("user", text),))), "m").content


def test_a_daemon_answers_many_calls_from_one_process(tools):
    provider = daemon(tools)
    first = ask(provider, "hello\nthere")  # one line: the newline would have sent it early
    pid = provider.pid
    second = ask(provider, "again")
    assert first == f"You said: hello there\nDone, pid {pid}.\n"
    assert second == f"You said: again\nDone, pid {pid}.\n" and provider.starts == 1
    provider.close()
    assert not alive(pid)


def test_a_dead_daemon_is_restarted_once_and_the_call_retried(tools):
    provider = daemon(tools)
    ask(provider, "hello")
    old = provider.pid
    provider._process.kill()  # it dies between calls
    provider._process.wait()
    assert ask(provider, "still there?").startswith("You said: still there?")
    assert provider.starts == 2 and provider.pid != old
    with pytest.raises(ProcessFailedError, match="after answering"):
        ask(provider, "die now")  # dies mid-answer: reported, not silently repeated
    provider.close()


def test_a_daemon_ends_an_answer_on_a_quiet_spell_or_an_end_marker(tools):
    quiet = daemon(tools, prompt_marker=None, quiet_seconds=0.3)
    assert ask(quiet, "hi").startswith("You said: hi\nDone")
    quiet.close()
    marked = daemon(tools, prompt_marker=None, end_marker=r"^Done, pid")
    assert ask(marked, "hi") == "You said: hi\n"
    marked.close()


def test_a_daemon_timeout_stops_it_and_the_next_call_starts_afresh(tools):
    provider = daemon(tools, timeout=1.0)
    ask(provider, "hello")
    with pytest.raises(RequestTimeoutError):
        ask(provider, "hang")
    assert ask(provider, "back?").startswith("You said: back?") and provider.starts == 2
    provider.close()


def test_closing_a_daemon_leaves_no_process_behind(tools):
    provider = daemon(tools)
    ask(provider, "spawn a helper")
    tool_pid, child_pid = map(int, (tools / "pids").read_text().split())
    assert alive(tool_pid) and alive(child_pid)
    provider.close()
    deadline = time.monotonic() + 5
    while (alive(tool_pid) or alive(child_pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(tool_pid) and not alive(child_pid)


def test_command_line_participants_in_a_session_and_no_orphans_after_close(tools, tmp_path, monkeypatch):
    from forge_actors.core.events import ContributionCompleted
    from forge_actors.engine import Forge
    from forge_actors.engine.config import parse_config

    monkeypatch.setenv("PATH", f"{tools}:{__import__('os').environ['PATH']}")
    config = parse_config({"forge": {
        "cli": {"fakeai": {"command": ["fakeai", "{prompt}"], "noise": NOISE}},
        "daemon": {"fakechat": {"command": ["fakechat"], "prompt_marker": r">\s*", "quit_command": "/quit",
                                "noise": ["^FakeChat", "Tip:"]}},
    }})
    forge = Forge(str(tmp_path / "f.db"), config)
    session_id = forge.create_session("Design a TODO app API", ["cli:fakeai", "daemon:fakechat"])
    forge.run_round(session_id, "draft")
    texts = {e.participant: e.content for e in forge.events(session_id) if isinstance(e, ContributionCompleted)}
    assert texts["fakeai"].startswith("Answer: the prompt had") and texts["fakechat"].startswith("You said: You are")
    chat_pid = int(texts["fakechat"].rsplit("pid ", 1)[1].split(".")[0])
    assert alive(chat_pid)
    forge.close()
    deadline = time.monotonic() + 5
    while alive(chat_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(chat_pid)
