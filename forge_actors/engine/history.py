"""Past deliberations, searchable: a full-text index of completed contributions, kept in the
log's own file by the eventstore's ProjectionRunner (like ``summaries``), read by the history
tools (``search_history``, ``lookup_session``) through ``tools.base.SessionHistory``.

One row per contribution as the fold counts it: a participant's LAST completed attempt in a
round (``SessionState.completed_in``), so a re-asked critique or a re-run is indexed once, with
its final text. Titles and round kinds live in two small side tables joined at query time.

The index is SQLite FTS5 (bm25 ranking, ``snippet()`` excerpts) when this Python's sqlite3 has
it, else a plain table searched with ``LIKE`` per word. A query is a model's text, so it never
reaches FTS5 as syntax: it is cut into words, each quoted as an FTS5 string, joined with OR.
"""

from __future__ import annotations

import copy
import logging
import re
import sqlite3
import threading
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from eventstore import CorruptLogError, EventStore, LogReadError, LogWriteError, ProjectionRunner, RecordedEvent
from forge_actors.core.errors import SessionNotFoundError
from forge_actors.core.state import SessionState
from forge_actors.tools.base import HistoryHit

logger = logging.getLogger(__name__)

MAX_LIMIT = 20
MAX_TERMS = 12
MAX_EXCERPT_CHARS = 300
#: Tokens around the match in an FTS5 snippet (FTS5 allows up to 64).
_SNIPPET_TOKENS = 32
#: Characters either side of the first match in a fallback excerpt.
_WINDOW_CHARS = 130
_ELLIPSIS = "…"

#: A query word: letters and digits (``[^\W_]``: \w without the underscore), two or more.
_WORD = re.compile(r"[^\W_]{2,}")
_SPACES = re.compile(r"\s+")


# -- the projection ------------------------------------------------------------------------------


class _Created(msgspec.Struct):
    title: str


class _Round(msgspec.Struct):
    round: int
    kind: str


class _Completed(msgspec.Struct):
    contribution_id: str
    participant: str
    round: int
    content: str


_DECODERS: dict[str, Any] = {
    "SessionCreated": msgspec.json.Decoder(_Created).decode,
    "RoundStarted": msgspec.json.Decoder(_Round).decode,
    "ContributionCompleted": msgspec.json.Decoder(_Completed).decode,
}


def fts5_available() -> bool:
    """Whether this Python's SQLite has FTS5 (probed on a throwaway in-memory database)."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE VIRTUAL TABLE probe USING fts5(text)")
        return True
    except sqlite3.OperationalError:  # the answer sought: no such module
        return False
    finally:
        conn.close()


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None


class HistoryProjection:
    """Tables ``history_sessions`` (titles), ``history_rounds`` (round -> kind per session),
    ``history_entries`` (one row per contribution, with its text) and, with FTS5, ``history_fts``
    (an external-content index over ``history_entries.content``)."""

    name = "forge.history"

    def __init__(self) -> None:
        self.fts = False  # decided in setup, by the probe

    def setup(self, conn: sqlite3.Connection) -> None:
        self.fts = fts5_available()
        logger.info("session history search uses %s", "SQLite FTS5" if self.fts else "plain LIKE (no FTS5 in this SQLite)")
        conn.execute("CREATE TABLE IF NOT EXISTS history_sessions (session_id TEXT PRIMARY KEY, title TEXT NOT NULL)")
        conn.execute("CREATE TABLE IF NOT EXISTS history_rounds (session_id TEXT NOT NULL, round INTEGER NOT NULL, "
                     "kind TEXT NOT NULL, PRIMARY KEY (session_id, round))")
        conn.execute("CREATE TABLE IF NOT EXISTS history_entries (id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, "
                     "round INTEGER NOT NULL, participant TEXT NOT NULL, contribution_id TEXT NOT NULL, "
                     "content TEXT NOT NULL, UNIQUE (session_id, round, participant))")
        conn.execute("CREATE TABLE IF NOT EXISTS history_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        had_index = _has_table(conn, "history_fts")
        if not self.fts:
            if had_index:  # written by a Python with FTS5: the rows this one adds will be missing from it
                conn.execute("INSERT OR REPLACE INTO history_meta VALUES ('fts_stale', 1)")
            return
        conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS history_fts USING fts5(content, content='history_entries', "
                     "content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')")
        stale = conn.execute("SELECT value FROM history_meta WHERE key = 'fts_stale'").fetchone()
        if stale or not had_index:
            # Rows a Python without FTS5 added (or rows from before the index existed): index them all again.
            conn.execute("INSERT INTO history_fts (history_fts) VALUES ('rebuild')")
            conn.execute("DELETE FROM history_meta WHERE key = 'fts_stale'")

    def apply(self, conn: sqlite3.Connection, recorded: RecordedEvent) -> None:
        decode = _DECODERS.get(recorded.type)
        if decode is None:
            return
        try:
            event = decode(recorded.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            # Skipped, not raised: a raise would roll the batch back and stop the index at this row forever.
            logger.warning("event %s at position %d of stream %s cannot be decoded (%s); left out of the session "
                           "history", recorded.type, recorded.position, recorded.stream_id, exc)
            return
        sid = recorded.stream_id
        if isinstance(event, _Created):
            conn.execute("INSERT INTO history_sessions VALUES (?, ?) ON CONFLICT (session_id) DO NOTHING",
                         (sid, event.title))
        elif isinstance(event, _Round):
            conn.execute("INSERT INTO history_rounds VALUES (?, ?, ?) ON CONFLICT (session_id, round) "
                         "DO UPDATE SET kind = excluded.kind", (sid, event.round, event.kind))
        else:
            self._index(conn, sid, event)

    def _index(self, conn: sqlite3.Connection, sid: str, done: _Completed) -> None:
        """The participant's answer in that round is its latest completed attempt: replace any earlier one."""
        row = conn.execute("SELECT id, content FROM history_entries WHERE session_id = ? AND round = ? AND "
                           "participant = ?", (sid, done.round, done.participant)).fetchone()
        if row is None:
            cursor = conn.execute("INSERT INTO history_entries (session_id, round, participant, contribution_id, "
                                  "content) VALUES (?, ?, ?, ?, ?)",
                                  (sid, done.round, done.participant, done.contribution_id, done.content))
            entry_id = cursor.lastrowid
        else:
            entry_id, old_content = row
            if self.fts:  # an external-content index forgets a row only when told its old text
                conn.execute("INSERT INTO history_fts (history_fts, rowid, content) VALUES ('delete', ?, ?)",
                             (entry_id, old_content))
            conn.execute("UPDATE history_entries SET contribution_id = ?, content = ? WHERE id = ?",
                         (done.contribution_id, done.content, entry_id))
        if self.fts:
            conn.execute("INSERT INTO history_fts (rowid, content) VALUES (?, ?)", (entry_id, done.content))


# -- queries -------------------------------------------------------------------------------------


def query_terms(query: object) -> list[str]:
    """The words of a model's query, lowercased: letters/digits, two or more, distinct, at most 12."""
    if not isinstance(query, str):
        return []
    terms: list[str] = []
    # NFKC first: a model's "ﬁ" ligature or decomposed accent is the text's plain letter.
    for word in _WORD.findall(unicodedata.normalize("NFKC", query)):
        folded = word.lower()  # (not casefold: the fallback compares with SQLite's lower())
        if folded not in terms:
            terms.append(folded)
            if len(terms) == MAX_TERMS:
                break
    return terms


def fts5_query(terms: Sequence[str]) -> str:
    """An FTS5 MATCH expression: each term a quoted string (so ``OR``, ``NEAR``, ``*`` are just words), ORed."""
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)


def clamp_limit(limit: object, default: int = 5) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int):
        return default
    return max(1, min(MAX_LIMIT, limit))


def one_line(text: str, limit: int = MAX_EXCERPT_CHARS) -> str:
    line = _SPACES.sub(" ", text).strip()
    return line if len(line) <= limit else line[: limit - 1].rstrip() + _ELLIPSIS


def window_excerpt(content: str, terms: Sequence[str]) -> str:
    """A window of the text around its first match of any term (the fallback's snippet)."""
    folded = content.lower()
    found = [i for i in (folded.find(term) for term in terms) if i >= 0]
    first = min(found, default=0)
    start = max(0, first - _WINDOW_CHARS)
    end = first + _WINDOW_CHARS
    text = _SPACES.sub(" ", content[start:end]).strip()
    prefix = _ELLIPSIS if start > 0 else ""
    suffix = _ELLIPSIS if end < len(content) else ""
    return one_line(prefix + text + suffix)


_JOINS = ("LEFT JOIN history_sessions s ON s.session_id = e.session_id "
          "LEFT JOIN history_rounds r ON r.session_id = e.session_id AND r.round = e.round ")

_FTS_SEARCH = (
    "SELECT e.session_id, COALESCE(s.title, ''), COALESCE(r.kind, ''), e.participant, "
    f"snippet(history_fts, 0, '', '', '{_ELLIPSIS}', {_SNIPPET_TOKENS}) "
    "FROM history_fts JOIN history_entries e ON e.id = history_fts.rowid " + _JOINS +
    "WHERE history_fts MATCH ? AND e.session_id IS NOT ? ORDER BY bm25(history_fts), e.id LIMIT ?"
)


def _like_search(terms: Sequence[str]) -> str:
    """The fallback's statement for ``len(terms)`` terms (the terms themselves are parameters):
    rows holding any term, ranked by how many distinct terms they hold, then by occurrences."""
    lowered = "lower(e.content)"
    any_term = " OR ".join([f"{lowered} LIKE ? ESCAPE '\\'"] * len(terms))
    distinct = " + ".join([f"(instr({lowered}, ?) > 0)"] * len(terms))
    occurrences = " + ".join([f"(length({lowered}) - length(replace({lowered}, ?, ''))) / length(?)"] * len(terms))
    return ("SELECT e.session_id, COALESCE(s.title, ''), COALESCE(r.kind, ''), e.participant, e.content "
            f"FROM history_entries e {_JOINS}WHERE e.session_id IS NOT ? AND ({any_term}) "
            f"ORDER BY ({distinct}) DESC, ({occurrences}) DESC, e.id LIMIT ?")


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


Rows = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


def search_index(rows: Rows, fts: bool, terms: Sequence[str], limit: int, exclude: str | None) -> list[HistoryHit]:
    """The hits of ``terms`` in an index read through ``rows`` (the store's, or an in-memory one)."""
    if fts:
        found = rows(_FTS_SEARCH, (fts5_query(terms), exclude, limit))
        return [HistoryHit(sid, title, kind, who, one_line(snippet)) for sid, title, kind, who, snippet in found]
    # Terms are lowercased; SQLite's lower() folds ASCII only, like LIKE's own case rule.
    parameters: list[Any] = [exclude, *(_like_pattern(t) for t in terms), *terms]
    for term in terms:
        parameters += [term, term]
    found = rows(_like_search(terms), (*parameters, limit))
    return [HistoryHit(sid, title, kind, who, window_excerpt(content, terms))
            for sid, title, kind, who, content in found]


# -- the history ---------------------------------------------------------------------------------


class _MemoryIndex:
    """The projection folded in an in-memory database: for a log that cannot take its writes."""

    def __init__(self) -> None:
        self.projection = HistoryProjection()
        self.conn = sqlite3.connect(":memory:", check_same_thread=False)
        self.projection.setup(self.conn)
        self.position = 0

    def catch_up(self, store: EventStore) -> None:
        for recorded in store.read_all(self.position):
            self.projection.apply(self.conn, recorded)
            self.position = recorded.position  # kept per event: a read failure mid-way loses nothing folded

    def rows(self, sql: str, parameters: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, parameters).fetchall()

    def close(self) -> None:
        self.conn.close()


class _SharedIndex:
    """The projection of one log, caught up before each search; shared by a history and its per-session views."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.lock = threading.Lock()
        self.runner: ProjectionRunner | None = None
        self.projection = HistoryProjection()
        self.memory: _MemoryIndex | None = None

    def search(self, terms: Sequence[str], limit: int, exclude: str | None) -> list[HistoryHit]:
        with self.lock:
            memory = self.catch_up()
            if memory is not None:  # its connection is used under the lock only
                return search_index(memory.rows, memory.projection.fts, terms, limit, exclude)
        return search_index(self.store.query, self.projection.fts, terms, limit, exclude)

    def catch_up(self) -> _MemoryIndex | None:
        """Bring the index up to date (call with the lock held). Returns the in-memory fold to
        search instead when the log cannot take the index's writes, None when the log's tables are current."""
        try:
            if self.runner is None:
                self.runner = ProjectionRunner(self.store, self.projection)
            self.runner.catch_up()
        except LogWriteError as exc:  # e.g. a full disk: the log is still there to read
            return self._fold_in_memory(exc)
        except (LogReadError, CorruptLogError) as exc:  # a damaged page, an I/O error: search what is indexed
            if self.runner is None:
                raise
            logger.warning("could not read the newest events of %s (%s); searching the session history as "
                           "indexed so far", exc.path, exc.reason)
        if self.memory is not None:
            logger.info("the session history of %s is saved in the log again", self.store.path)
            self.memory.close()
            self.memory = None
        return None

    def _fold_in_memory(self, exc: LogWriteError) -> _MemoryIndex:
        if self.memory is None:
            logger.warning("could not save the session history in %s (%s); searching it from the log instead",
                           exc.path, exc.reason)
            self.memory = _MemoryIndex()
        try:
            self.memory.catch_up(self.store)
        except (LogReadError, CorruptLogError) as error:
            logger.warning("could not read all of %s (%s); searching the session history as folded so far",
                           error.path, error.reason)
        return self.memory


class LogHistory:
    """``SessionHistory`` over one event log: ``search`` over past contributions, ``final_synthesis``
    of a session. ``exclude_session`` is left out of both (a participant asks about *other* sessions).
    Thread-safe."""

    def __init__(self, store: EventStore, final_synthesis_of: Callable[[str], str | None],
                 exclude_session: str | None = None) -> None:
        self._index = _SharedIndex(store)
        self._final_synthesis_of = final_synthesis_of
        self._exclude = exclude_session

    @property
    def exclude_session(self) -> str | None:
        return self._exclude

    def for_session(self, session_id: str) -> LogHistory:
        """The same history (one index, one runner) with ``session_id`` left out."""
        view = copy.copy(self)
        view._exclude = session_id
        return view

    def catch_up(self) -> None:
        """Index what the log holds now, so that the next search has little to do: the first one on a
        large log folds all of it (about 1 s per 140,000 events), which an engine may rather do at start."""
        with self._index.lock:
            self._index.catch_up()

    def search(self, query: str, limit: int = 5) -> list[HistoryHit]:
        """Contributions matching any word of ``query``, best first (bm25 with FTS5); [] for a query
        with no word of two letters or digits. ``limit`` is clamped to 1..20."""
        terms = query_terms(query)
        if not terms:
            return []
        return self._index.search(terms, clamp_limit(limit), self._exclude)

    def final_synthesis(self, session_id: str) -> str | None:
        """The session's last synthesis; None for an unknown id, the excluded session, or no synthesis."""
        if not isinstance(session_id, str) or not session_id or session_id == self._exclude:
            return None
        try:
            return self._final_synthesis_of(session_id)
        except SessionNotFoundError:  # an id the model made up: "no such session" is the answer
            return None


def final_synthesis_from(state_of: Callable[[str], SessionState]) -> Callable[[str], str | None]:
    """The ``final_synthesis_of`` of a ``LogHistory``, over the engine's folded states (``Forge.state``)."""
    def final_synthesis_of(session_id: str) -> str | None:
        synthesis = state_of(session_id).synthesis
        return synthesis.content if synthesis is not None else None
    return final_synthesis_of
