#!/usr/bin/env python3
"""Print what a WebSocket sends, one message per line, until it closes: the README's manual test
without websocat (which Debian does not package), with the websockets library forge installs.

    .venv/bin/python tools/ws_events.py ws://localhost:8000/api/v1/forge/sessions/SESSION_ID/deliberate

With `forge serve --token TOKEN`, add ?token=TOKEN to the URL. Exits 0 when the server closes the
stream normally (after SessionEnded), 1 otherwise, 2 when it cannot connect.
"""

from __future__ import annotations

import sys

try:
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
    from websockets.sync.client import connect
except ImportError:  # run by a Python without the project installed (e.g. the system's, by the shebang)
    print(f"ws_events.py: the websockets library is not installed for {sys.executable}: run it as "
          ".venv/bin/python tools/ws_events.py", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].startswith(("ws://", "wss://")):
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        with connect(argv[0], max_size=None) as socket:
            for message in socket:
                print(message if isinstance(message, str) else message.decode("utf-8", "replace"), flush=True)
            code = socket.close_code
    except (OSError, InvalidHandshake, InvalidURI) as exc:
        print(f"ws_events.py: cannot connect to {argv[0].split('?')[0]}: {exc}", file=sys.stderr)
        return 2
    except ConnectionClosed as exc:
        print(f"ws_events.py: the connection was closed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C while watching: the server goes on; nothing to report
        return 130
    return 0 if code == 1000 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
