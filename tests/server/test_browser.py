"""The web page in headless Chromium (Debian's package), driven by Playwright.

Outside CI without chromium these tests skip, saying how to install it; `.ci/run`
installs it and sets FORGE_REQUIRE_BROWSER=1, so in CI a missing browser fails.
"""

from __future__ import annotations

import os
import shutil

import pytest

from forge_actors.core.events import ContributionCompleted
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


def start(page: Page, participants: str, rounds: int = 3) -> None:
    page.fill("#participants-input", participants)
    page.fill("#rounds-input", str(rounds))
    page.click("#start-button")


def test_start_a_deliberation_and_watch_it_live(browser, served, tmp_path):
    forge, server = served
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server.url + "/")
    start(page, "mock:alice?word_delay=0.01\nmock:bob?word_delay=0.01\nmock:carol?word_delay=0.01")
    for name in ("alice", "bob", "carol"):  # each column fills with streamed text
        page.wait_for_function(
            f"document.querySelector(\"[data-participant='{name}'] .text\")?.textContent.length > 40", timeout=30000)
    page.wait_for_selector("#synthesis[data-final='true']", timeout=60000)
    assert "Synthesis" in page.inner_text("#synthesis")
    assert page.inner_text("#outcome").split(" ")[0] in ("converged", "max_rounds")
    assert page.locator("#score-table tr").count() == 4  # header + three drafts
    assert page.locator("#timeline .chip").count() >= 4
    page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
    assert (tmp_path / "live.png").stat().st_size > 10_000


def test_the_page_reconnects_after_a_drop_and_misses_nothing(browser, served, tmp_path):
    forge, server = served
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server.url + "/")
    start(page, "mock:alice?word_delay=0.02\nmock:bob?word_delay=0.02", rounds=2)
    page.wait_for_function("document.querySelector(\"[data-participant='alice'] .text\")?.textContent.length > 60",
                           timeout=30000)
    page.evaluate("stream.socket.close()")  # the network drops
    page.wait_for_selector("#synthesis[data-final='true']", timeout=60000)
    session_id = forge.sessions()[-1]
    events = forge.events(session_id)
    last_round = max(e.round for e in events if isinstance(e, ContributionCompleted))
    for name in ("alice", "bob"):
        recorded = next(e.content for e in events if isinstance(e, ContributionCompleted)
                        and e.round == last_round and e.participant == name)
        assert page.inner_text(f"[data-participant='{name}'] .text").strip() == recorded.strip()
    page.screenshot(path=str(tmp_path / "reconnected.png"), full_page=True)


def test_a_past_session_re_streams_at_a_chosen_speed(browser, served):
    forge, server = served
    session_id = forge.create_session("Plan a garden", ["mock:alice", "mock:bob"], max_rounds=1)
    list(forge.deliberate(session_id))
    page = browser.new_page()
    page.goto(server.url + "/")
    page.select_option("#speed", "20")
    page.click(f"button[data-session='{session_id}']")
    page.wait_for_selector("#synthesis[data-final='true']", timeout=60000)
    assert page.inner_text("#title") == "Plan a garden"
    assert page.inner_text("#outcome").split(" ")[0] in ("converged", "max_rounds")
