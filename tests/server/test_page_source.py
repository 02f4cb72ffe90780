"""The web page's source, checked without a browser: untrusted text can only reach it as text.

The page sets model, tool and user text with textContent / text nodes and builds Markdown as
DOM nodes (tests/server/test_browser.py runs that in Chromium); these checks keep an HTML
sink from creeping back in, on machines without a browser too.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import forge_actors.surfaces.server as server_package

PAGE = Path(server_package.__file__).with_name("static") / "index.html"


def script() -> str:
    return re.search(r"<script>(.*)</script>", PAGE.read_text(encoding="utf-8"), re.S).group(1)


def test_the_page_has_no_html_sinks():
    source = script()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                 "DOMParser", "createContextualFragment", "srcdoc"):
        assert sink not in source, f"{sink} would parse untrusted text as HTML or code"


def test_links_keep_only_safe_schemes():
    source = script()
    assert '["http:", "https:", "mailto:"].includes(url.protocol)' in source
    assert re.search(r"const href = safeUrl\(", source)  # every link goes through it


def test_the_page_loads_nothing_from_elsewhere():
    text = PAGE.read_text(encoding="utf-8")
    loads = re.findall(r"<(?:script|link|img|iframe)[^>]+(?:src|href)=\"([^\"]*)\"", text)
    # one file, no build step, no CDN; its icon is inline, so that no /favicon.ico is asked for (and 404s)
    assert [url.split(",")[0] for url in loads] == ["data:image/svg+xml"]
    assert re.search(r"<link rel=\"icon\" href=\"data:", text)
    assert "img-src 'self' data:" in text  # the CSP lets the inline icon load


def test_untrusted_text_reaches_cards_and_the_diff_as_text():
    """Critique and vote cards, and the synthesis diff, are built with el() (text nodes) like the rest;
    the diff is bounded, so that a huge synthesis cannot freeze the tab."""
    source = script()
    assert re.search(r"const DIFF_CELLS = \d+, DIFF_CHARS = \d+;", source)
    assert "if (n * m > DIFF_CELLS) return null;" in source
    assert "if (before.length + after.length > DIFF_CHARS) return null;" in source
    assert "document.createTextNode(x.text) : el(x.op, {}, x.text)" in source  # ins/del hold text only


def test_the_page_offers_no_key_in_a_spec():
    """API callers may not pass a key (api_key=...): the page never suggests one."""
    assert "api_key" not in PAGE.read_text(encoding="utf-8")


def test_the_content_security_policy_names_the_script_by_its_hash():
    """The page's CSP lets only its own script run (by hash): an injected <script> or on*= handler
    would be refused even if some text reached the DOM as HTML. Editing the script changes the hash."""
    digest = base64.b64encode(hashlib.sha256(script().encode("utf-8")).digest()).decode()
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', PAGE.read_text(encoding="utf-8"))
    assert policy, "the page lost its Content-Security-Policy meta tag"
    assert f"script-src 'sha256-{digest}'" in policy.group(1), (
        f"the script changed: run python tools/page_csp.py (script-src 'sha256-{digest}')")
    assert "unsafe-inline" not in policy.group(1).split("script-src", 1)[1].split(";")[0]
