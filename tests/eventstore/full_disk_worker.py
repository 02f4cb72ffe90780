"""Run the ``forge`` command on a disk that is full, or nearly: used by test_log_files.py.

    python full_disk_worker.py FREE_PAGES forge-arguments...

The log's write connection may grow the file by FREE_PAGES pages only (``PRAGMA
max_page_count``, per connection), then SQLite answers SQLITE_FULL as on a full disk.
Deterministic, and it needs neither root nor a small filesystem.
"""

import sys

from eventstore.sqlite import EventStore
from forge_actors.surfaces import cli


def limit_growth(free_pages: int) -> None:
    connect = EventStore._connect

    def connect_on_a_full_disk(self: EventStore, write: bool = False):
        conn = connect(self, write)
        if write:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {max(pages + free_pages, 1)}")
        return conn

    EventStore._connect = connect_on_a_full_disk  # type: ignore[method-assign]


if __name__ == "__main__":
    limit_growth(int(sys.argv[1]))
    raise SystemExit(cli.main(sys.argv[2:]))
