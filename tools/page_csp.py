"""Set the web page's Content-Security-Policy hash to its script's, after editing the script.

    python tools/page_csp.py          # rewrites forge_actors/surfaces/server/static/index.html
    python tools/page_csp.py --check  # exits 1 when the hash is stale (what tests/server/test_page_source.py checks)

The page's CSP (its meta tag, which the server also sends as a header with frame-ancestors added)
lets only its one inline script run, named by the SHA-256 of its text, so any change to the
script must change the hash too.
"""

from __future__ import annotations

import base64
import hashlib
import re
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "forge_actors" / "surfaces" / "server" / "static" / "index.html"
SCRIPT = re.compile(r"<script>(.*)</script>", re.S)
SOURCE = re.compile(r"script-src 'sha256-[A-Za-z0-9+/=]*'")


def script_hash(html: str) -> str:
    match = SCRIPT.search(html)
    if match is None:
        raise SystemExit(f"{PAGE}: no <script> element")
    return base64.b64encode(hashlib.sha256(match.group(1).encode("utf-8")).digest()).decode()


def main(argv: list[str]) -> int:
    html = PAGE.read_text(encoding="utf-8")
    wanted = f"script-src 'sha256-{script_hash(html)}'"
    if wanted in html:
        return 0
    if "--check" in argv:
        print(f"{PAGE}: the CSP hash is stale; run python tools/page_csp.py", file=sys.stderr)
        return 1
    updated, count = SOURCE.subn(wanted, html)
    if count != 1:
        raise SystemExit(f"{PAGE}: expected one script-src 'sha256-...' in the CSP meta, found {count}")
    PAGE.write_text(updated, encoding="utf-8")
    print(f"{PAGE.name}: {wanted}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
