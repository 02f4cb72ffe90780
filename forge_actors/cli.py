"""The ``forge`` command. (The full CLI arrives with the engine; this prints the version.)"""

from __future__ import annotations

import sys

from forge_actors import __version__


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-V", "--version", "version"):
        print(f"forge {__version__}")
        return 0
    print(f"forge {__version__}: the command-line interface is not built yet; try `forge --version`.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
