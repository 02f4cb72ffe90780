"""The web page in headless Chromium (Debian's package), driven by Playwright.

Outside CI without chromium these tests skip, saying how to install it; `.ci/run`
installs it and sets FORGE_REQUIRE_BROWSER=1, so in CI a missing browser fails.
Sessions are mock participants with no word delay (deterministic), most of them run to
the end in Python first and re-streamed at full speed; the ones that test "live" are
driven round by round from Python while the page watches.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from forge_actors.core.events import ContributionCompleted, VoteRecorded
from forge_actors.engine import Forge
from forge_actors.surfaces.server.runner import ServerThread

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    if os.environ.get("FORGE_REQUIRE_BROWSER"):
        raise RuntimeError("FORGE_REQUIRE_BROWSER is set but chromium is not installed (apt-get install chromium)")
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium); .ci/run installs it",
                allow_module_level=True)

from playwright.sync_api import Page, sync_playwright  # noqa: E402

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: Model and tool text that would run script if the page ever parsed it as HTML.
INJECTED = ('<script>window.__pwned = "script"</script> <img src=x onerror="window.__pwned = \'img\'"> '
            '[click me](javascript:window.__pwned=\'link\')')
WAIT = 30000  # ms: a generous ceiling for the page to catch up, never a measured duration


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def served(tmp_path):
    forge = Forge(str(tmp_path / "forge.db"))
    with ServerThread(forge) as server:
        yield forge, server
    forge.close()


@pytest.fixture
def page(browser):
    """A page that fails the test on any uncaught script error. Playwright's wait_for_function and
    evaluate run strings as script, which the page's CSP refuses, so these pages bypass it; the
    page's own CSP is tested without bypass (test_the_page_works_under_its_own_csp)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True, bypass_csp=True)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == []


def start(page: Page, participants: str, rounds: int = 3) -> None:
    page.fill("#participants-input", participants)
    page.fill("#rounds-input", str(rounds))
    page.click("#start-button")


def finished(forge: Forge, goal: str, participants: list[str], **settings) -> str:
    session_id = forge.create_session(goal, participants, **{"max_rounds": 1, **settings})
    list(forge.deliberate(session_id))
    return session_id


def open_session(page: Page, server, session_id: str, speed: str = "0") -> None:
    page.goto(server.url + "/")
    page.select_option("#speed", speed)
    page.click(f"button[data-session='{session_id}']")
    page.wait_for_selector("#synthesis[data-final='true']", timeout=WAIT)


def column(name: str) -> str:
    return f"[data-participant='{name}'] .body"


def no_horizontal_overflow(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


# -- live runs ---------------------------------------------------------------------------------------


def test_start_a_deliberation_and_watch_it_live(page, served, tmp_path):
    forge, server = served
    page.goto(server.url + "/")
    start(page, "mock:alice?word_delay=0.01\nmock:bob?word_delay=0.01\nmock:carol?word_delay=0.01")
    for name in ("alice", "bob", "carol"):  # each column fills with streamed text
        page.wait_for_function(f"document.querySelector(\"{column(name)}\")?.textContent.length > 40", timeout=WAIT)
    page.wait_for_selector("#synthesis[data-final='true']", timeout=60000)
    assert "Synthesis" in page.inner_text("#synthesis")
    assert page.locator("#synthesis h4").count() >= 1  # Markdown, rendered
    assert page.inner_text("#outcome").split(" ")[0] in ("converged", "max_rounds")
    assert page.locator("#score-table tr").count() == 4  # header + three drafts
    assert page.locator("#timeline .chip").count() >= 4
    page.wait_for_function("document.querySelector('#usage-table')?.textContent.includes('$0')", timeout=WAIT)
    assert page.locator("#usage-table tr").count() == 5  # header, three participants, total
    page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
    assert (tmp_path / "live.png").stat().st_size > 10_000


def test_the_page_reconnects_after_a_drop_and_misses_nothing(page, served, tmp_path):
    forge, server = served
    page.goto(server.url + "/")
    start(page, "mock:alice?word_delay=0.02\nmock:bob?word_delay=0.02", rounds=2)
    page.wait_for_function(f"document.querySelector(\"{column('alice')}\")?.textContent.length > 60", timeout=WAIT)
    page.evaluate("stream.socket.close()")  # the network drops
    page.wait_for_selector("#synthesis[data-final='true']", timeout=60000)
    session_id = forge.sessions()[-1]
    events = forge.events(session_id)
    last_round = max(e.round for e in events if isinstance(e, ContributionCompleted))
    for name in ("alice", "bob"):
        recorded = next(e.content for e in events if isinstance(e, ContributionCompleted)
                        and e.round == last_round and e.participant == name)
        streamed = page.evaluate(f"view.rounds.get({last_round}).parts.get('{name}').raw")
        assert streamed == recorded  # every delta once, in order, across the drop
    page.screenshot(path=str(tmp_path / "reconnected.png"), full_page=True)


def test_a_past_session_re_streams_at_a_chosen_speed(page, served):
    forge, server = served
    session_id = finished(forge, "Plan a garden", ["mock:alice", "mock:bob"])
    open_session(page, server, session_id, speed="20")
    assert page.inner_text("#title") == "Plan a garden"
    assert page.inner_text("#outcome").split(" ")[0] in ("converged", "max_rounds")


def test_the_current_round_follows_live_unless_the_user_looks_back_and_a_human_votes(page, served):
    forge, server = served
    session_id = forge.create_session("Plan a garden", ["mock:alice", "mock:bob"], max_rounds=2)
    forge.run_round(session_id, "draft")
    forge.run_round(session_id, "critique")
    page.goto(server.url + "/")
    page.click(f"button[data-session='{session_id}']")
    page.wait_for_selector("#timeline .chip[data-round='2'].completed", timeout=WAIT)
    assert page.inner_text("#round-heading") == "Round 2: critique"  # following: the newest round
    # between rounds nothing more comes: the cost fetched after the last round still reaches the facts line
    page.wait_for_function("document.querySelector('#facts').textContent.includes('est. cost $0')", timeout=WAIT)
    assert page.locator("#score-table tr").count() == 3
    assert page.locator("#vote-form").is_hidden()  # no synthesis to vote on yet

    page.click("#timeline .chip[data-round='1']")  # look back
    assert page.inner_text("#round-heading") == "Round 1: draft"
    assert "Proposal from alice" in page.inner_text(column("alice"))
    assert page.locator(f"{column('alice')} h4").count() >= 1  # the draft as Markdown
    forge.run_round(session_id, "synthesis")
    page.wait_for_selector("#timeline .chip[data-round='3'].completed", timeout=WAIT)
    assert page.inner_text("#round-heading") == "Round 1: draft"  # still where the user is looking
    assert page.locator("#scores-section").is_hidden()  # no critique yet at round 1
    page.click("#follow")
    assert page.inner_text("#round-heading") == "Round 3: synthesis (iteration 1)"
    assert page.locator("#scores-section").is_visible()

    page.fill("#vote-voter", "dana")  # the synthesis is up for a vote: a human casts one from the page
    page.select_option("#vote-choice", "DISAGREE")
    page.fill("#vote-concerns", "no budget for the irrigation")
    page.click("#vote-button")
    page.wait_for_function("view.votes.some((v) => v.voter === 'dana')", timeout=WAIT)
    assert page.inner_text("#vote-error") == ""
    # (the stream may bring the vote before the POST's answer: the notice is waited for)
    page.wait_for_function("document.querySelector('#vote-done').textContent === 'DISAGREE recorded for round 4'", timeout=WAIT)
    assert page.locator("#vote-form").bounding_box()["y"] > page.locator("#synthesis").bounding_box()["y"]  # below what it asks about
    forge.run_round(session_id, "convergence")
    page.wait_for_selector("#timeline .chip[data-round='4'].completed", timeout=WAIT)
    assert page.inner_text("#round-heading") == "Round 4: convergence (iteration 1)"
    votes = page.inner_text("#vote-table")
    assert "dana (human)" in votes and "DISAGREE" in votes and "no budget for the irrigation" in votes
    assert "no budget for the irrigation" in page.inner_text("[data-participant='dana'] .vote-card")  # her column, her card
    forge.run_round(session_id, "synthesis")  # a new synthesis is up for a vote: the old notice goes
    page.wait_for_selector("#timeline .chip[data-round='5'].completed", timeout=WAIT)
    assert page.locator("#vote-form").is_visible() and page.inner_text("#vote-done") == ""


def test_the_session_list_updates_while_a_session_runs(page, served):
    forge, server = served
    session_id = forge.create_session("Plan a garden", ["mock:alice", "mock:bob"], max_rounds=1)
    page.goto(server.url + "/")
    row = f"li[data-row='{session_id}'] small"
    page.wait_for_selector(row, timeout=WAIT)
    assert "· 0 rounds" in page.inner_text(row)
    forge.run_round(session_id, "draft")
    page.wait_for_function(f"document.querySelector(\"{row}\").textContent.includes('· 1 round ·')", timeout=WAIT)


# -- tool calls --------------------------------------------------------------------------------------


def test_tool_calls_and_results_show_in_the_participants_column(page, served, tmp_path):
    forge, server = served
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "README.md").write_text(f"# Demo\n\n{INJECTED}\n" + "".join(f"line {n}\n" for n in range(40)))
    session_id = finished(forge, "Review README.md", ["mock:alice?tools=file", "mock:bob"], workspace=str(workspace))
    open_session(page, server, session_id)
    page.click("#timeline .chip[data-round='1']")
    tool = page.locator("[data-participant='alice'] .tool[data-tool='read_file']")
    assert tool.count() == 1
    assert tool.locator(".call").inner_text() == '⚙ read_file(path="README.md")'
    summary = tool.locator("summary")
    assert "README.md" in summary.inner_text() and "lines" in summary.inner_text()
    assert tool.locator("pre").is_hidden()  # folded
    summary.click()
    assert INJECTED in tool.locator("pre").inner_text()  # the file's text, shown as text
    assert page.locator("[data-participant='bob'] .tool").count() == 0
    assert "Evidence" in page.inner_text(column("alice"))  # the answer that used it, after the call
    assert page.evaluate("window.__pwned") is None

    missing = finished(forge, "Review nothere.md", ["mock:alice?tools=file"], workspace=str(workspace))
    open_session(page, server, missing)
    page.click("#timeline .chip[data-round='1']")
    assert page.locator("[data-participant='alice'] .tool .badge.error").count() == 1


# -- safety: untrusted text never runs ---------------------------------------------------------------


def test_markdown_is_rendered_without_running_injected_html(page, served):
    forge, server = served
    goal = f"Plan a garden {INJECTED}"  # the mock quotes the goal in every reply, and the synthesis
    session_id = forge.create_session(goal, ["mock:alice", "mock:bob"], max_rounds=1)
    page.goto(server.url + "/")
    page.click(f"button[data-session='{session_id}']")
    page.wait_for_selector("#draft-form:not(.hidden)", timeout=WAIT)
    page.fill("#draft-author", "dana")
    page.fill("#draft-content", "   ")  # refused by the server: the error shows...
    page.click("#draft-button")
    page.wait_for_function("document.querySelector('#draft-error').textContent.includes('empty')", timeout=WAIT)
    draft = ("# A human plan\n\nWith **bold**, *italic*, `code` and [a link](https://example.com/plan).\n\n"
             f"- first\n- second {INJECTED}\n\n| a | b |\n|---|---|\n| 1 | <b onmouseover=x>2</b> |\n\n"
             "```\n<script>window.__pwned = 'fence'</script>\n```\n")
    page.fill("#draft-content", draft)
    page.click("#draft-button")  # ...and goes on the next try
    page.wait_for_selector("[data-participant='dana'] .md h3", timeout=WAIT)
    assert page.inner_text("#draft-error") == ""
    dana = page.locator("[data-participant='dana'] .body")
    assert dana.locator("h3").inner_text() == "A human plan"
    assert dana.locator("strong").inner_text() == "bold" and dana.locator("em").inner_text() == "italic"
    assert dana.locator("a").count() == 1
    assert dana.locator("a").get_attribute("href") == "https://example.com/plan"
    assert dana.locator("li").count() == 2 and dana.locator("table td").count() == 2
    assert "<script>" in dana.inner_text() and "[click me](javascript:" in dana.inner_text()

    page.click("#deliberate-button")  # the mocks now draft, critique and synthesize, quoting the goal
    page.wait_for_selector("#synthesis[data-final='true']", timeout=WAIT)
    assert "<script>" in page.inner_text("#synthesis") or "<img" in page.inner_text("#synthesis")
    assert "<script>" in page.inner_text("#title")
    page.click("#timeline .chip[data-round='1']")
    assert "<img src=x" in page.inner_text(column("alice"))
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#view script, #view img, #view [onerror], #view [onmouseover]").count() == 0
    assert page.locator("a[href^='javascript']").count() == 0


# -- exports, tokens, layout -------------------------------------------------------------------------


def test_export_buttons_download_each_format_and_usage_matches_the_engine(page, served):
    forge, server = served
    session_id = finished(forge, "Plan a garden", ["mock:alice", "mock:bob"])
    open_session(page, server, session_id)
    texts = {}
    for fmt in ("md", "json", "yaml"):
        with page.expect_download() as download:
            page.click(f"#exports [data-format='{fmt}']")
        assert download.value.suggested_filename == f"forge-{session_id}.{fmt}"
        texts[fmt] = open(download.value.path(), encoding="utf-8").read()
    assert texts["md"].startswith("# Plan a garden")
    usage = forge.usage(session_id)  # the page's token counts are the engine's, participant by participant
    page.wait_for_function("!document.querySelector('#usage-table').textContent.includes('…')", timeout=WAIT)
    rows = [[cell.inner_text() for cell in row.locator("td").all()] for row in page.locator("#usage-table tr").all()[1:]]
    expected = [[u.participant, u.model, f"{u.usage.input_tokens:,}", f"{u.usage.output_tokens:,}"] for u in usage.participants]
    assert [row[:4] for row in rows[:-1]] == expected
    assert rows[-1][2:4] == [f"{usage.total.input_tokens:,}", f"{usage.total.output_tokens:,}"]
    assert json.loads(texts["json"])["session_id"] == session_id
    assert f"session_id: {session_id}" in texts["yaml"]


def test_a_token_is_asked_for_kept_for_the_tab_and_sent(browser, tmp_path):
    forge = Forge(str(tmp_path / "forge.db"))
    session_id = finished(forge, "Plan a garden", ["mock:alice", "mock:bob"])
    with ServerThread(forge, token="s3cret-token") as server:
        context = browser.new_context(bypass_csp=True)
        page = context.new_page()
        page.goto(server.url + "/")
        page.wait_for_selector("#token-form:not(.hidden)", timeout=WAIT)
        page.fill("#token-input", "wrong")
        page.click("#token-button")
        page.wait_for_selector("#token-form:not(.hidden)", timeout=WAIT)  # refused: asked again
        page.fill("#token-input", "s3cret-token")
        page.click("#token-button")
        page.wait_for_selector(f"button[data-session='{session_id}']", timeout=WAIT)
        assert page.inner_text("#sessions-error") == ""  # the old error went with the retry
        page.reload()  # kept for the tab
        page.click(f"button[data-session='{session_id}']")
        page.wait_for_selector("#synthesis[data-final='true']", timeout=WAIT)  # the stream carries it too
        assert page.evaluate("sessionStorage.getItem('forge-token')") == "s3cret-token"
        assert page.locator("#token-form").is_hidden()
        context.close()
        linked = browser.new_context(bypass_csp=True).new_page()  # a link with the token: used, kept, out of the address
        linked.goto(f"{server.url}/#token=s3cret-token&session={session_id}")
        linked.wait_for_selector("#synthesis[data-final='true']", timeout=WAIT)
        assert "token" not in linked.evaluate("location.href")
        linked.context.close()
    forge.close()


def test_screenshots_at_desktop_and_phone_widths(page, served, tmp_path):
    forge, server = served
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "README.md").write_text("# Demo\n\n" + "a-very-long-unbroken-word-" * 20 + "\n")
    participants = ["mock:alice?tools=file", "mock:bob", "mock:carol", "mock:dave"]
    session_id = finished(forge, "Review README.md", participants, workspace=str(workspace), max_rounds=2)
    for width in (1400, 390):
        page.set_viewport_size({"width": width, "height": 900})
        open_session(page, server, session_id)
        page.click("#timeline .chip[data-round='1']")
        page.click("[data-participant='alice'] .tool summary")
        shot = tmp_path / f"page-{width}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        assert no_horizontal_overflow(page), f"the page scrolls sideways at {width} px"
    waiting = forge.create_session("Plan a garden " + "with-a-very-long-unbroken-goal-" * 8, ["mock:alice"])
    page.goto(server.url + "/")  # a phone, with the draft form open
    page.click(f"button[data-session='{waiting}']")
    page.wait_for_selector("#draft-form:not(.hidden)", timeout=WAIT)
    page.screenshot(path=str(tmp_path / "draft-390.png"), full_page=True)
    assert no_horizontal_overflow(page)


def test_the_address_reopens_the_session_and_round_being_looked_at(page, served):
    forge, server = served
    session_id = finished(forge, "Plan a garden", ["mock:alice", "mock:bob"])
    open_session(page, server, session_id)
    page.click("#timeline .chip[data-round='2']")
    assert page.evaluate("location.hash") == f"#session={session_id}&round=2"
    page.reload()
    page.wait_for_selector("#synthesis[data-final='true']", timeout=WAIT)
    assert page.inner_text("#round-heading") == "Round 2: critique"
    assert page.locator("#timeline .chip.selected").get_attribute("data-round") == "2"


MARKDOWN_CASES = [  # (source, the HTML the page builds from it: read back here, never written there)
    ("# Title #", "<h3>Title</h3>"),
    ("para one\nline two\n\npara two", "<p>para one<br>line two</p><p>para two</p>"),
    ("- a\n- b\n  - b1\n\n1. x\n2. y", "<ul><li><span>a</span></li><li><p>b</p><ul><li><span>b1</span></li></ul></li></ul>"
                                       "<ol><li><span>x</span></li><li><span>y</span></li></ol>"),
    ("3. three", '<ol start="3"><li><span>three</span></li></ol>'),
    ("> quoted **bold**", "<blockquote><p>quoted <strong>bold</strong></p></blockquote>"),
    ("```py\nx = '<b>'\n```", "<pre><code>x = '&lt;b&gt;'</code></pre>"),
    ("```\nnever closed", "<pre><code>never closed</code></pre>"),  # as it streams
    ("a snake_case_name and _it_ and *it*", "<p>a snake_case_name and <em>it</em> and <em>it</em></p>"),
    ("5 * 3 * 2", "<p>5 * 3 * 2</p>"),
    ("`<i>code</i>` ok", "<p><code>&lt;i&gt;code&lt;/i&gt;</code> ok</p>"),
    ("---", "<hr>"),
    ("[x](javascript:alert(1)) [y](data:text/html,hi) [z](JaVaScRiPt:alert(1))",
     "<p>[x](javascript:alert(1)) [y](data:text/html,hi) [z](JaVaScRiPt:alert(1))</p>"),
    ("[site](https://example.com/a?b=1)",
     '<p><a href="https://example.com/a?b=1" rel="noopener noreferrer nofollow" target="_blank">site</a></p>'),
    ("| a | b |\n|---|:-:|\n| 1 | x \\| y |", '<div class="scroll"><table><tr><th>a</th><th>b</th></tr>'
                                              "<tr><td>1</td><td>x | y</td></tr></table></div>"),
    ('<img src=x onerror="alert(1)">', "<p>&lt;img src=x onerror=\"alert(1)\"&gt;</p>"),
]


def test_the_markdown_renderer_builds_only_safe_nodes(page, served):
    forge, server = served
    page.goto(server.url + "/")
    render = "(source) => { const box = document.createElement('div'); box.append(markdown(source)); return box.innerHTML; }"
    for source, html in MARKDOWN_CASES:
        assert page.evaluate(render, source) == html, source


def test_a_failed_contribution_says_why_in_its_column(page, served):
    forge, server = served
    session_id = finished(forge, "Plan a garden", ["mock:alice", "mock:bob?fail_on=draft"], max_retries=0)
    page.goto(server.url + "/")
    page.select_option("#speed", "0")
    page.click(f"button[data-session='{session_id}']")
    page.wait_for_selector("#outcome:not(:empty)", timeout=WAIT)
    page.click("#timeline .chip[data-round='1']")
    assert "failed" in page.inner_text("[data-participant='bob'] .status")
    assert "attempt 1 failed" in page.inner_text(column("bob"))


def test_the_page_works_under_its_own_csp(browser, served, tmp_path):
    """No bypass here: the page's script (allowed by its hash) does everything; nothing is refused."""
    forge, server = served
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "README.md").write_text(f"# Demo\n\n{INJECTED}\n")
    session_id = finished(forge, "Review README.md", ["mock:alice?tools=file", "mock:bob"], workspace=str(workspace))
    context = browser.new_context()
    page = context.new_page()
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    open_session(page, server, session_id)
    page.click("#timeline .chip[data-round='1']")
    page.click("[data-participant='alice'] .tool summary")
    assert INJECTED in page.inner_text("[data-participant='alice'] .tool pre")
    with page.expect_download():
        page.click("#exports [data-format='md']")  # a blob: download is allowed too
    context.close()
    assert refused == [] and errors == []


def test_a_tool_call_shows_while_it_runs_then_its_result_with_badges(page, served):
    """Events fed to the page's fold one by one (as a live stream would): the call appears at once,
    "running…" until its result; a truncated result and a failed one are badged; a refused call too."""
    forge, server = served
    page.goto(server.url + "/")
    base = {"participant": "alice", "round": 1, "attempt": 1, "contribution_id": "r1.alice.1"}

    def feed(**event):
        page.evaluate("(event) => apply(event)", {**base, **event})
        page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")

    page.evaluate("() => { view = newView('s1'); }")
    page.evaluate("(e) => apply(e)", {"type": "SessionCreated", "session_id": "s1", "title": "t", "goal": "g",
                                      "settings": {"convergence_threshold": 0.8}, "participants": [{"name": "alice"}]})
    page.evaluate("(e) => apply(e)", {"type": "RoundStarted", "round": 1, "kind": "draft", "iteration": 1,
                                      "participants": ["alice"]})
    feed(type="PromptSent", purpose="initial")
    feed(type="ContentDelta", text="Let me look.")
    feed(type="ToolCalled", turn=1, call_id="c1", tool="grep", arguments={"pattern": "<b>x</b>", "max": 5}, error=None)
    tool = page.locator("[data-participant='alice'] .tool[data-call='c1']")
    assert tool.locator(".call").inner_text() == '⚙ grep(pattern="<b>x</b>", max=5)'
    assert tool.locator(".note").inner_text() == "running…"
    assert page.inner_text("[data-participant='alice'] .status") == "calling grep"
    feed(type="ToolResult", call_id="c1", tool="grep", output="a.py:1: x\n" * 300, truncated=True, error=None,
         duration_ms=12.4)
    assert tool.locator(".badge.truncated").count() == 1 and tool.locator(".note").first.inner_text().startswith(" · 300 lines")
    feed(type="ToolCalled", turn=1, call_id="c2", tool="nope", arguments={}, error="unknown tool nope")
    refused = page.locator("[data-participant='alice'] .tool[data-call='c2']")
    assert refused.locator(".badge.error").inner_text() == "refused"
    feed(type="ToolResult", call_id="c2", tool="nope", output="", truncated=False, error="unknown tool nope", duration_ms=0)
    assert refused.locator("summary .badge.error").count() == 1
    feed(type="ContentDelta", text="## Found it")
    feed(type="ContributionCompleted", content="## Found it", finish_reason="stop",
         usage={"input_tokens": 10, "output_tokens": 3}, latency_ms=1.0)
    body = page.locator(column("alice"))
    assert body.locator(".narration").inner_text() == "Let me look."  # the text before the calls, dimmed
    assert body.locator(".answer h4").inner_text() == "Found it"  # the answer after them, as Markdown


# -- answer first: a finished session opens on its outcome; the debate follows ------------------------


def console_errors(page: Page) -> list[str]:
    """The page's console errors from now on (a failed request, such as a favicon's 404, is one)."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    return errors


def test_a_finished_session_opens_on_its_answer_then_how_it_got_there(page, served, tmp_path):
    forge, server = served
    errors = console_errors(page)
    council = ["mock:carol", "mock:alice", "mock:bob", {"kind": "human", "name": "dana"}]
    session_id = finished(forge, "Plan a garden", council, max_rounds=3)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{server.url}/#session={session_id}")
    page.wait_for_selector("#synthesis[data-final='true']", timeout=WAIT)
    page.wait_for_function("!document.querySelector('#facts').textContent.includes('…')", timeout=WAIT)
    page.screenshot(path=str(tmp_path / "answer-first-1280.png"))  # the first viewport, as a person sees it
    assert page.locator("#synthesis").bounding_box()["y"] < 900 - 200  # the answer is in the first viewport
    assert page.inner_text("#synthesis-heading").startswith("Final synthesis by")
    assert page.locator("#synthesis h3, #synthesis h4").count() >= 1  # rendered, not raw
    assert page.locator("#goal").is_hidden()  # the goal is the title: said once
    votes = [e for e in forge.events(session_id) if isinstance(e, VoteRecorded)]
    last = [v.vote for v in votes if v.round == votes[-1].round]
    assert page.inner_text("#tally") == (f"votes on iteration 2: {last.count('AGREE')} agree · {last.count('DISAGREE')} disagree · "
                                         f"{last.count('ABSTAIN')} abstain")
    assert "tokens" in page.inner_text("#facts") and "est. cost $0" in page.inner_text("#facts")
    for raw in ('{"vote"', '"score"', '"strengths"', '"reasons"'):  # never raw JSON on the page
        assert raw not in page.inner_text("body")

    names = lambda: [n.get_attribute("data-participant") for n in page.locator("#columns .column").all()]  # noqa: E731
    assert page.inner_text("#rounds-heading") == "How it got there"
    assert names() == ["alice", "bob", "carol", "dana"]  # the last vote: by name, the seated human too
    assert page.locator("#columns .vote-card").count() == 3
    assert page.inner_text("[data-participant='dana'] .status") == "did not vote"
    card = page.locator("[data-participant='alice'] .vote-card")
    assert card.locator(".AGREE, .DISAGREE, .ABSTAIN").count() == 1 and "confidence" in card.inner_text()
    assert card.locator("li").count() >= 1  # its reasons, a list
    page.click("#timeline .chip[data-round='2']")  # the critiques: cards by the draft's author
    critique = page.locator("[data-participant='bob'] .critique-card")
    assert [c.get_attribute("data-author") for c in critique.all()] == ["alice", "carol"]
    assert "score" in critique.first.inner_text() and "strengths" in critique.first.inner_text()
    assert [h.inner_text() for h in page.locator("#score-table th").all()] == ["draft by", "alice", "bob", "carol", "mean"]
    assert names() == ["alice", "bob", "carol"] and "dana" in page.inner_text("#not-asked")
    page.click("#timeline .chip[data-round='3']")  # a synthesis round: one column, the others named
    assert len(names()) == 1 and "not asked in this round" in page.inner_text("#not-asked")
    page.click("#timeline .chip[data-round='1']")
    assert names() == ["alice", "bob", "carol", "dana"] and page.inner_text("[data-participant='dana'] .status") == "no draft"
    page.screenshot(path=str(tmp_path / "answer-first-1280-full.png"), full_page=True)

    syntheses = [e.content for e in forge.events(session_id) if isinstance(e, ContributionCompleted) and e.round in (3, 5)]
    assert len(syntheses) == 2 and syntheses[0] != syntheses[1]  # two iterations to compare
    page.click("#compare-button")
    assert page.locator("#synthesis-diff ins, #synthesis-diff del").count() >= 1
    assert page.locator("#synthesis").is_hidden()
    diff = page.locator("#synthesis-diff")  # the new text is what is not struck out; the old, what is not added
    assert diff.evaluate("(d) => [...d.childNodes].filter((n) => n.nodeName !== 'DEL').map((n) => n.textContent).join('')") == syntheses[1]
    assert diff.evaluate("(d) => [...d.childNodes].filter((n) => n.nodeName !== 'INS').map((n) => n.textContent).join('')") == syntheses[0]
    assert "iteration 1 → 2" in page.inner_text("#diff-note")
    page.screenshot(path=str(tmp_path / "compare-1280.png"), full_page=True)
    assert page.evaluate("textDiff('the cat sat', 'the dog sat')") == [
        {"op": "same", "text": "the "}, {"op": "del", "text": "cat"}, {"op": "ins", "text": "dog"}, {"op": "same", "text": " sat"}]
    # bounded: too many words for the table falls back to lines; too much text, to nothing
    assert [part["op"] for part in page.evaluate("textDiff('a b '.repeat(20000), 'b a '.repeat(20000))")] == ["del", "ins"]
    assert page.evaluate("textDiff('a '.repeat(300000), 'b '.repeat(300000))") is None
    page.click("#compare-button")
    assert page.locator("#synthesis").is_visible()
    assert errors == []


def test_on_a_phone_a_replay_plays_in_view_and_is_never_called_live(page, served, tmp_path):
    forge, server = served
    session_id = finished(forge, "Plan a garden", ["mock:alice?word_delay=0.002", "mock:bob?word_delay=0.002"])
    other = finished(forge, "Plan a party", ["mock:alice", "mock:bob"])
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{server.url}/#session={other}")  # a session open: on a phone the list is below it
    page.wait_for_selector("#synthesis[data-final='true']", timeout=WAIT)
    page.select_option("#speed", "1")
    page.evaluate("""() => { window.__notes = []; new MutationObserver(() => window.__notes.push(
                     document.querySelector('#round-note').textContent)).observe(document.querySelector('#round-note'),
                     {childList: true, characterData: true, subtree: true}); }""")
    replay = page.locator(f"button[data-session='{session_id}']")
    replay.scroll_into_view_if_needed()
    assert page.evaluate("window.scrollY") > 844  # the user scrolled down to the list
    replay.click()
    page.wait_for_function("document.querySelector('#round-note').textContent.startsWith('replay at 1×')", timeout=WAIT)
    in_view = ("(() => { const r = document.querySelector('#title').getBoundingClientRect(); "
               "return r.top >= 0 && r.bottom <= innerHeight; })()")
    assert page.evaluate(in_view)  # the user sees the session that plays, not the list
    assert page.inner_text("#connection") == "replaying at 1×"
    assert page.locator("#human-section").is_hidden()  # no draft or vote forms: the session replayed has ended
    page.screenshot(path=str(tmp_path / "replay-390.png"))
    page.wait_for_selector("#synthesis[data-final='true']", timeout=WAIT)
    assert page.evaluate(in_view)
    assert not any("live" in note for note in page.evaluate("window.__notes"))
    assert no_horizontal_overflow(page)


def test_the_address_drives_navigation_both_ways(page, served):
    forge, server = served
    garden = finished(forge, "Plan a garden", ["mock:alice", "mock:bob"])
    party = finished(forge, "Plan a party", ["mock:alice", "mock:bob"], title="Party")
    page.goto(server.url + "/")
    page.click(f"a[data-open='{garden}']")  # a title opens its session, at once (no replay)
    page.wait_for_selector("#synthesis[data-final='true']", timeout=WAIT)
    assert page.inner_text("#title") == "Plan a garden" and page.evaluate("location.hash") == f"#session={garden}"
    assert "replay" not in page.inner_text("#connection") and "live" not in page.inner_text("#round-note")
    assert " · 4 rounds · " in page.inner_text(f"li[data-row='{garden}'] small")
    page.evaluate(f"location.hash = '#session={party}&round=1'")  # an address edited in an open tab
    page.wait_for_function("document.querySelector('#title').textContent === 'Party'", timeout=WAIT)
    page.wait_for_selector("#synthesis[data-final='true']", timeout=WAIT)
    assert page.inner_text("#goal") == "Plan a party"  # a title of its own: the goal is shown too
    assert page.inner_text("#round-heading") == "Round 1: draft"
    page.go_back()  # the history follows
    page.wait_for_function("document.querySelector('#title').textContent === 'Plan a garden'", timeout=WAIT)
    page.click("#timeline .chip[data-round='2']")  # and opening a round writes the address
    assert page.evaluate("location.hash") == f"#session={garden}&round=2"


def test_a_seated_human_has_a_column_from_the_start_and_a_run_can_be_cancelled(page, served):
    forge, server = served
    errors = console_errors(page)
    session_id = forge.create_session("Plan a garden", ["mock:bob?word_delay=0.05", "mock:alice?word_delay=0.05",
                                                        {"kind": "human", "name": "dana"}], max_rounds=3)
    page.goto(f"{server.url}/#session={session_id}")
    page.wait_for_selector("[data-participant='dana']", timeout=WAIT)
    columns = [n.get_attribute("data-participant") for n in page.locator("#columns .column").all()]
    assert columns == ["alice", "bob", "dana"] and page.inner_text("[data-participant='dana'] .status") == "no draft yet"
    forge.start(session_id)
    page.wait_for_selector("#timeline .chip[data-round='1']", timeout=WAIT)
    assert page.inner_text("#round-note") == "live"
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel-button")
    page.wait_for_function("document.querySelector('#outcome').textContent.startsWith('cancelled')", timeout=WAIT)
    assert forge.state(session_id).status == "cancelled"
    assert "cancelled from the web page" in page.inner_text("#outcome")
    assert page.locator("#cancel-button").is_hidden()
    page.wait_for_function(f"document.querySelector(\"li[data-row='{session_id}'] small\").textContent.includes('cancelled')",
                           timeout=WAIT)  # the row follows the open session's stream
    assert errors == []


def test_fork_from_a_round_then_compare_with_the_parent(page, served):
    forge, server = served
    parent = finished(forge, "Design a TODO app API", ["mock:alice", "mock:bob", "mock:carol"], max_rounds=2)
    open_session(page, server, parent)
    page.click("#timeline .chip[data-round='1']")  # after the drafts: dave's critiques change the synthesis
    page.click("#fork-button")
    assert page.input_value("#fork-participants").splitlines() == ["mock:alice", "mock:bob", "mock:carol"]
    page.fill("#fork-participants", "mock:alice\nmock:bob\nmock:dave")  # carol dropped, dave joins
    page.fill("#fork-threshold", "0.9")
    page.click("#fork-submit")
    page.wait_for_function(f"document.querySelector('#lineage')?.textContent.includes('forked from {parent} after its round 1')",
                           timeout=WAIT)
    page.wait_for_selector("#synthesis[data-final='true']", timeout=WAIT)  # it deliberated to its end
    fork = page.evaluate("new URLSearchParams(location.hash.slice(1)).get('session')")
    state = forge.state(fork)
    assert state.forked_from.parent_id == parent and state.removed == ("carol",) and "dave" in state.participants
    assert state.settings.convergence_threshold == 0.9 and state.ended
    page.wait_for_function(f"document.querySelector(\"[data-row='{fork}'] small\")?.textContent"
                           f".includes('fork of {parent} after round 1')", timeout=WAIT)
    page.click("#compare-parent")
    page.wait_for_selector("#compare-rounds tr.first-difference", timeout=WAIT)
    first = forge.compare(parent, fork).first_difference
    assert page.get_attribute("#compare-rounds tr.first-difference", "data-round") == str(first.round)
    assert page.inner_text("#compare-rounds tr[data-round='1'] td:last-child") == "same"  # the copied round
    assert "final synthesis, A" in page.inner_text("#compare-synthesis-note")
    assert page.locator("#compare-synthesis ins, #compare-synthesis del").count() > 0
