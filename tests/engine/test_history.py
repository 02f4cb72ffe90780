"""The session history the history tools read: a full-text index of past contributions over the log."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import FAST_RETRIES

from eventstore import ANY, CorruptLogError, NewEvent
from forge_actors.engine import Forge
from forge_actors.engine import history as history_module
from forge_actors.engine.history import LogHistory, final_synthesis_from, fts5_query, query_terms
from forge_actors.tools.base import HistoryHit

IRRIGATION = "Design a greenhouse irrigation controller"
BAKERY = "Plan a bakery inventory system"
HEATING = "Design a greenhouse heating schedule"


def run_session(forge: Forge, goal: str, participants: list[str] | None = None, **settings: object) -> str:
    session_id = forge.create_session(goal, participants or ["mock:alice", "mock:bob"], max_rounds=2, seed=3,
                                      **settings)
    for _ in forge.deliberate(session_id):
        pass
    assert forge.state(session_id).ended
    return session_id


def history_of(forge: Forge, exclude: str | None = None) -> LogHistory:
    return LogHistory(forge._store, final_synthesis_from(forge.state), exclude_session=exclude)


def key(hit: HistoryHit) -> tuple[str, str, str]:
    return hit.session_id, hit.round_kind, hit.participant


class Log:
    def __init__(self, forge: Forge, irrigation: str, bakery: str, heating: str) -> None:
        self.forge = forge
        self.irrigation = irrigation
        self.bakery = bakery
        self.heating = heating


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Log]:
    """Three finished sessions, read only by the tests that use it; bob's critiques are re-asked."""
    path = tmp_path_factory.mktemp("history") / "forge.db"
    with Forge(str(path), retry_policy=FAST_RETRIES) as forge:
        irrigation = run_session(forge, IRRIGATION, ["mock:alice", "mock:bob?garble=critique"])
        bakery = run_session(forge, BAKERY)
        heating = run_session(forge, HEATING)
        yield Log(forge, irrigation, bakery, heating)


# -- finding ---------------------------------------------------------------------------------------


def test_a_word_finds_the_past_contributions_that_hold_it(log):
    hits = history_of(log.forge).search("bakery", 20)
    assert hits and {h.session_id for h in hits} == {log.bakery}
    assert all("bakery" in h.excerpt.lower() for h in hits)


def test_the_better_match_ranks_first(log):
    hits = history_of(log.forge).search("greenhouse irrigation", 20)
    assert hits[0].session_id == log.irrigation  # holds both words
    assert log.heating in {h.session_id for h in hits}  # holds one of them: found, ranked lower
    first_heating = min(i for i, h in enumerate(hits) if h.session_id == log.heating)
    assert all(h.session_id == log.irrigation for h in hits[:first_heating])


def test_hits_name_the_session_title_round_kind_and_participant(log):
    state = log.forge.state(log.bakery)
    hits = history_of(log.forge).search("bakery", 20)
    expected = set()
    for round_ in state.rounds:
        for participant, contribution in state.completed_in(round_.round).items():
            if "bakery" in contribution.content.lower():
                expected.add((log.bakery, round_.kind, participant))
    assert {key(h) for h in hits} == expected
    assert {h.title for h in hits} == {BAKERY}
    assert {"draft", "synthesis"} <= {h.round_kind for h in hits}


def test_excerpts_are_one_short_line(log):
    for hit in history_of(log.forge).search("greenhouse irrigation controller plan", 20):
        assert "\n" not in hit.excerpt and 0 < len(hit.excerpt) <= 300


def test_the_current_session_is_left_out(log):
    everything = history_of(log.forge).search("greenhouse", 20)
    assert log.irrigation in {h.session_id for h in everything}
    past = history_of(log.forge).for_session(log.irrigation).search("greenhouse", 20)
    assert past and {h.session_id for h in past} == {log.heating}
    assert history_of(log.forge, exclude=log.irrigation).search("greenhouse", 20) == past


def test_a_re_asked_contribution_is_indexed_once_with_its_last_answer(log):
    state = log.forge.state(log.irrigation)
    critique = state.last_round_of("critique")
    assert critique is not None
    bob_attempts = [c for c in state.attempts_in(critique.round, "bob") if c.status == "completed"]
    assert len(bob_attempts) == 2  # the re-ask answered too
    rows = log.forge._store.query(
        "SELECT contribution_id FROM history_entries WHERE session_id = ? AND round = ? AND participant = ?",
        (log.irrigation, critique.round, "bob"))
    assert rows == [(state.completed_in(critique.round)["bob"].contribution_id,)]
    hits = history_of(log.forge).search("particular format", 20)
    assert [key(h) for h in hits].count((log.irrigation, "critique", "bob")) == 1


def test_the_index_holds_exactly_what_the_fold_counts_as_answers(log):
    history_of(log.forge).search("plan", 1)  # caught up
    for session_id in (log.irrigation, log.bakery, log.heating):
        state = log.forge.state(session_id)
        expected = {(r.round, p, c.content) for r in state.rounds for p, c in state.completed_in(r.round).items()}
        rows = log.forge._store.query(
            "SELECT round, participant, content FROM history_entries WHERE session_id = ?", (session_id,))
        assert set(rows) == expected and len(rows) == len(expected)


# -- what a model may type --------------------------------------------------------------------------


@pytest.mark.parametrize("query", [
    '"', '"greenhouse', 'greenhouse"', "*", "greenhouse*", "OR", "greenhouse OR", "NEAR(", "NEAR(greenhouse, 2)",
    "-", "-greenhouse", ":", "content:greenhouse", "^greenhouse", "greenhouse AND NOT", "(greenhouse", "{x y}: z",
    "'; DROP TABLE history_entries; --",
])
def test_fts_syntax_in_a_query_is_just_text(log, query):
    hits = history_of(log.forge).search(query, 20)
    if "greenhouse" in query:  # the other words ("and", "not", "content"...) are searched as words
        assert {log.irrigation, log.heating} <= {h.session_id for h in hits}
    assert log.forge._store.query("SELECT count(*) FROM history_entries")[0][0] > 0


@pytest.mark.parametrize("query", ["", "   ", "\n\t", "a b c", "* - : ( )", '"""', None, 42])
def test_a_query_without_words_finds_nothing(log, query):
    assert history_of(log.forge).search(query, 5) == []


def test_words_are_quoted_and_capped():
    assert query_terms("Greenhouse, greenhouse! NEAR(x) a_b 7 42 ﬁne") == ["greenhouse", "near", "42", "fine"]
    assert len(query_terms(" ".join(f"w{i}" for i in range(40)))) == 12
    assert fts5_query(["or", "near"]) == '"or" OR "near"'


@settings(max_examples=60, derandomize=True, database=None, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_a_harmless_query(log, query):
    hits = history_of(log.forge).search(query, 3)
    assert len(hits) <= 3


@pytest.mark.parametrize(("limit", "expected"), [(0, 1), (-5, 1), (1, 1), (3, 3), (50, 20), (10**9, 20)])
def test_the_limit_is_clamped_to_1_to_20(log, limit, expected):
    everywhere = "the plan proposal vote reviews score"  # every contribution holds one of them...
    assert log.forge._store.query("SELECT count(*) FROM history_entries")[0][0] > 20  # ...and there are > 20
    assert len(history_of(log.forge).search(everywhere, limit)) == expected


# -- without FTS5 ----------------------------------------------------------------------------------


def test_without_fts5_a_plain_table_gives_the_same_hits(tmp_path, monkeypatch, caplog):
    queries = ("irrigation", "bakery inventory", "heating")
    with Forge(str(tmp_path / "forge.db"), retry_policy=FAST_RETRIES) as forge:
        run_session(forge, IRRIGATION)
        run_session(forge, BAKERY)
        run_session(forge, HEATING)
        with caplog.at_level(logging.INFO, logger="forge_actors.engine.history"):
            indexed = {q: history_of(forge).search(q, 20) for q in queries}
        assert "uses SQLite FTS5" in caplog.text
        # The same log, read by a Python whose SQLite has no FTS5: the plain table is built again from the log.
        with forge._store.write_transaction() as conn:
            conn.execute("DELETE FROM checkpoints WHERE name = 'forge.history'")
            conn.execute("DELETE FROM history_entries")
        monkeypatch.setattr(history_module, "fts5_available", lambda: False)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="forge_actors.engine.history"):
            plain = {q: history_of(forge).search(q, 20) for q in queries}
        assert "plain LIKE" in caplog.text
        for query, hits in indexed.items():
            assert hits and {key(h) for h in plain[query]} == {key(h) for h in hits}
            assert all(len(h.excerpt) <= 300 and "\n" not in h.excerpt for h in plain[query])
            assert all(any(w in h.excerpt.lower() for w in query.split()) for h in plain[query])
        # Back on a Python with FTS5: the index it finds is stale (rows were added without it), so it is rebuilt.
        monkeypatch.undo()
        again = {q: history_of(forge).search(q, 20) for q in queries}
        assert {q: [key(h) for h in hits] for q, hits in again.items()} == \
            {q: [key(h) for h in hits] for q, hits in indexed.items()}


def test_without_fts5_the_better_match_still_ranks_first(tmp_path, monkeypatch):
    monkeypatch.setattr(history_module, "fts5_available", lambda: False)
    with Forge(str(tmp_path / "forge.db"), retry_policy=FAST_RETRIES) as forge:
        irrigation = run_session(forge, IRRIGATION)
        run_session(forge, HEATING)
        history = history_of(forge)
        hits = history.search("greenhouse irrigation", 20)
        assert hits[0].session_id == irrigation
        assert history.for_session(irrigation).search("irrigation", 20) == []
        assert history.search('NEAR( "irrigation* -', 20)
        assert forge._store.query("SELECT count(*) FROM sqlite_master WHERE name = 'history_fts'") == [(0,)]


# -- catching up, lookups ----------------------------------------------------------------------------


def test_new_sessions_are_found_on_the_next_search(forge):
    history = history_of(forge)
    assert history.search("bakery", 5) == []
    bakery = run_session(forge, BAKERY)
    assert {h.session_id for h in history.search("bakery", 5)} == {bakery}
    view = history.for_session(bakery)
    heating = run_session(forge, HEATING)
    assert {h.session_id for h in view.search("bakery heating", 20)} == {heating}  # one runner, caught up once


def test_final_synthesis_of_a_finished_session_and_none_for_unknown_ids(log):
    history = history_of(log.forge)
    synthesis = log.forge.state(log.bakery).synthesis
    assert synthesis is not None and history.final_synthesis(log.bakery) == synthesis.content
    for unknown in ("", "no-such-session", "' OR 1=1 --", "x" * 10_000, None):
        assert history.final_synthesis(unknown) is None
    assert history.for_session(log.bakery).final_synthesis(log.bakery) is None  # not a past session


def test_a_session_without_a_synthesis_has_no_final_synthesis(forge):
    session_id = forge.create_session(BAKERY, ["mock:alice", "mock:bob"])
    assert history_of(forge).final_synthesis(session_id) is None


# -- logs that cannot take writes, damaged logs -----------------------------------------------------------


def test_a_full_disk_still_searches_and_the_index_is_saved_once_there_is_space(tmp_path, caplog):
    with Forge(str(tmp_path / "forge.db"), retry_policy=FAST_RETRIES) as forge:
        history = history_of(forge)
        bakery = run_session(forge, BAKERY)
        assert history.search("bakery", 20)
        heating = run_session(forge, HEATING)
        conn = forge._store._conn  # the write connection: SQLite answers SQLITE_FULL as a full disk does
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        with caplog.at_level(logging.WARNING, logger="forge_actors.engine.history"):
            folded = history.search("bakery heating", 20)
        assert "could not save the session history" in caplog.text and "disk full" in caplog.text
        assert {h.session_id for h in folded} == {bakery, heating}
        assert forge._store.checkpoint("forge.history") < forge._store.last_position()  # nothing saved
        conn.execute("PRAGMA max_page_count = 1073741823")
        saved = history.search("bakery heating", 20)
        assert forge._store.checkpoint("forge.history") == forge._store.last_position()
        assert {key(h) for h in saved} == {key(h) for h in folded}


def test_an_undecodable_event_is_left_out_and_the_rest_still_searches(forge, caplog):
    bakery = run_session(forge, BAKERY)
    forge._store.append(bakery, [NewEvent("ContributionCompleted", '{"participant": 3, "content": ')], expected_version=ANY)
    history = history_of(forge)
    with caplog.at_level(logging.WARNING, logger="forge_actors.engine.history"):
        assert {h.session_id for h in history.search("bakery", 20)} == {bakery}
    assert "cannot be decoded" in caplog.text
    heating = run_session(forge, HEATING)  # the index went on past the bad row
    assert {h.session_id for h in history.search("heating", 20)} == {heating}


def test_a_damaged_log_searches_what_was_indexed(forge, monkeypatch, caplog):
    bakery = run_session(forge, BAKERY)
    history = history_of(forge)
    before = history.search("bakery", 20)
    run_session(forge, HEATING)

    def damaged(*args: object, **kwargs: object) -> Iterator[object]:
        raise CorruptLogError(forge._store.path, "database disk image is malformed")

    monkeypatch.setattr(forge._store, "read_all", damaged)
    with caplog.at_level(logging.WARNING, logger="forge_actors.engine.history"):
        assert history.search("bakery", 20) == before and before and before[0].session_id == bakery
    assert "searching the session history as indexed so far" in caplog.text
    assert history.search("heating", 20) == []  # not indexed yet, and nothing raised


def test_the_index_lives_in_the_log_file_and_resumes_from_its_checkpoint(tmp_path: Path):
    path = str(tmp_path / "forge.db")
    with Forge(path, retry_policy=FAST_RETRIES) as forge:
        bakery = run_session(forge, BAKERY)
        first = history_of(forge).search("bakery", 20)
        position = forge._store.checkpoint("forge.history")
    with Forge(path, retry_policy=FAST_RETRIES) as forge:
        assert forge._store.checkpoint("forge.history") == position
        assert history_of(forge).search("bakery", 20) == first and first[0].session_id == bakery
        assert forge._store.query("SELECT count(*) FROM history_entries WHERE session_id = ?", (bakery,))[0][0] > 0


def test_searches_from_many_threads_while_a_session_runs_are_consistent(forge):
    bakery = run_session(forge, BAKERY)
    history = history_of(forge)
    history.catch_up()
    assert forge._store.checkpoint("forge.history") == forge._store.last_position()
    errors: list[BaseException] = []
    seen: list[set[str]] = []

    def search() -> None:
        try:
            for _ in range(10):
                seen.append({h.session_id for h in history.for_session("other").search("bakery", 20)})
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=search) for _ in range(4)]
    for thread in threads:
        thread.start()
    heating = run_session(forge, HEATING)
    for thread in threads:
        thread.join()
    assert errors == [] and all(ids == {bakery} for ids in seen)
    assert {h.session_id for h in history.search("heating", 20)} == {heating}
    entries = forge._store.query("SELECT count(*), count(DISTINCT session_id || '/' || round || '/' || participant) "
                                 "FROM history_entries")
    assert entries[0][0] == entries[0][1]  # no contribution indexed twice by racing catch-ups
