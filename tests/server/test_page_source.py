"""The web page's source, checked without a browser: untrusted text can only reach it as text.

The page sets model, tool and user text with textContent / text nodes and builds Markdown as
DOM nodes (tests/server/test_browser.py runs that in Chromium); these checks keep an HTML
sink from creeping back in, on machines without a browser too.
"""

from __future__ import annotations

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
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", text), "one file, no build step, no CDN"
