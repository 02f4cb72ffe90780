"""Damaging a real SQLite log in the ways the tests of damaged logs use, and telling whether a file
was written to: its digest, and whether a -wal with content appeared beside it."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

PAGE = 4096


def fingerprint(path: Path) -> tuple[str, int]:
    """The file's digest, and how many bytes its -wal holds (0: none, or an empty one)."""
    wal = Path(f"{path}-wal")
    return hashlib.sha256(path.read_bytes()).hexdigest(), wal.stat().st_size if wal.exists() else 0


def overwrite_pages(path: Path, seed: int = 7) -> None:
    """Garbage over three whole pages in the middle of the file (their b-tree headers included)."""
    pages = path.stat().st_size // PAGE
    assert pages >= 12, "the log should span several pages"
    garbage = random.Random(seed).randbytes(3 * PAGE)
    with path.open("r+b") as file:
        file.seek(pages // 2 * PAGE)
        file.write(garbage)


def overwrite_header(path: Path) -> None:
    """The database header after its first 16 bytes: a page size of 3 bytes, then garbage."""
    with path.open("r+b") as file:
        file.seek(16)
        file.write(b"\x00\x03" + random.Random(3).randbytes(82))


def cut_to_half(path: Path) -> None:
    """The file cut to half its pages: whole pages, so only its header tells."""
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size // PAGE // 2 * PAGE)


def cut_mid_page(path: Path) -> None:
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size // 2 + 123)


DAMAGES = {"pages": overwrite_pages, "header": overwrite_header, "cut": cut_to_half, "cut mid-page": cut_mid_page}
