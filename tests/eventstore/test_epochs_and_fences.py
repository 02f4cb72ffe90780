"""Fencing: every lease has an epoch that only grows, and an append fenced by an epoch its lease has
left is refused inside the append's own transaction, alone (the other appends of its batch land).

Every test runs on both backends (``store``, see conftest.py). On PostgreSQL a batch of at most 128
rows is checked by the server's ``eventstore_append``, a longer one the long way (BEGIN, the commit
lock, each lease row read FOR SHARE): ``rows`` covers both.
"""

from __future__ import annotations

import json

import pytest
from eventstore_support import write_raw
from support import FakeWallClock

from eventstore import BatchingWriter, Fence, FencedError, Lease, LeaseHeldError, LogLeases, NewEvent


def events(count: int) -> list[NewEvent]:
    return [NewEvent("Thing", json.dumps({"n": n})) for n in range(count)]


# -- the epoch ----------------------------------------------------------------------------------------


def test_the_epoch_grows_with_each_new_owner_and_after_each_expiry_or_release(leases):
    assert leases.acquire("n", "a", 5).epoch == 1
    leases._clock.advance(4)
    assert leases.acquire("n", "a", 5).epoch == 1  # ours and live: extended, same epoch
    assert leases.renew("n", "a", 5).epoch == 1
    leases._clock.advance(6)
    assert leases.acquire("n", "a", 5).epoch == 2  # ours, but expired: someone may have held it meanwhile
    leases._clock.advance(6)
    assert leases.acquire("n", "b", 5).epoch == 3
    assert leases.acquire("n", "c", 5, stale=lambda lease: True).epoch == 4  # taken over before expiry
    assert leases.release("n", "c")
    assert leases.recorded("n") is None and leases.holder("n") is None  # released: nobody's
    assert leases.acquire("n", "a", 5).epoch == 5  # the released row kept its epoch
    assert leases.acquire("other", "a", 5).epoch == 1  # each name has its own


def test_a_refused_acquire_leaves_the_epoch_alone(leases):
    leases.acquire("n", "a", 5)
    with pytest.raises(LeaseHeldError):
        leases.acquire("n", "b", 5)
    assert leases.holder("n") == Lease("n", "a", leases._clock() + 5 * 10**9, leases._clock(), 1)


def test_a_leases_table_from_before_epochs_is_read_and_upgraded_at_the_first_lease_write(store):
    write_raw(store, "CREATE TABLE leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at BIGINT NOT NULL, "
                     "acquired_at BIGINT NOT NULL)")
    write_raw(store, "INSERT INTO leases VALUES ('n', 'a', 10, 1), ('m', 'a', 10, 1)")
    leases = LogLeases(store, clock=FakeWallClock())
    assert leases.recorded("n") == Lease("n", "a", 10, 1, 0)  # read as it is: nothing written
    assert "epoch" not in columns(store)
    assert leases.acquire("n", "b", 5).epoch == 1  # the old rows are at epoch 0
    assert "epoch" in columns(store)
    assert leases.recorded("m") == Lease("m", "a", 10, 1, 0)
    assert LogLeases(store, clock=FakeWallClock()).acquire("m", "b", 5).epoch == 1  # another process's view


def columns(store) -> set[str]:
    if store.dialect == "sqlite":
        return {row[0] for row in store.query("SELECT name FROM pragma_table_info('leases')")}
    return {row[0] for row in store.query(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = 'leases'")}


# -- the fence ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [1, 200])
def test_an_append_fenced_by_a_stale_epoch_is_refused_and_writes_nothing(store, leases, rows):
    first = leases.acquire("session:1", "a", 5)
    store.append("s1", events(rows), fence=Fence("session:1", first.epoch))
    leases._clock.advance(6)
    second = leases.acquire("session:1", "b", 5)
    with pytest.raises(FencedError) as refused:
        store.append("s1", events(rows), expected_version=rows, fence=Fence("session:1", first.epoch))
    error = refused.value
    assert (error.stream_id, error.lease, error.epoch, error.current) == ("s1", "session:1", 1, 2)
    assert "epoch 1" in str(error) and "now at epoch 2" in str(error) and "nothing of it was written" in str(error)
    assert store.stream_version("s1") == rows
    store.append("s1", events(rows), expected_version=rows, fence=Fence("session:1", second.epoch))
    assert store.stream_version("s1") == 2 * rows


def test_a_fence_naming_no_lease_is_refused(store, leases):
    with pytest.raises(FencedError, match="no longer recorded"):  # no leases table at all
        store.append("s1", events(1), fence=Fence("session:1", 1))
    leases.acquire("session:2", "a", 5)
    with pytest.raises(FencedError, match="no longer recorded"):
        store.append("s1", events(1), fence=Fence("session:1", 1))
    assert store.stream_version("s1") == 0


def test_an_append_after_release_keeps_its_epoch_until_another_owner_takes_the_lease(store, leases):
    lease = leases.acquire("n", "a", 5)
    leases.release("n", "a")
    store.append("s", events(1), fence=Fence("n", lease.epoch))  # nobody took it since: not stale
    leases.acquire("n", "b", 5)
    with pytest.raises(FencedError):
        store.append("s", events(1), fence=Fence("n", lease.epoch))


def test_a_fence_must_be_a_fence(store):
    with pytest.raises(TypeError, match="Fence"):
        store.append("s", events(1), fence=("n", 1))  # type: ignore[arg-type]
    with BatchingWriter(store) as writer, pytest.raises(TypeError, match="Fence"):
        writer.append("s", events(1), fence=("n", 1))  # type: ignore[arg-type]


@pytest.mark.parametrize("rows", [1, 200])
def test_a_fenced_out_append_fails_its_own_ticket_only_not_the_batch_of_the_others(store, leases, rows):
    old = leases.acquire("session:old", "a", 5)
    live = leases.acquire("session:live", "a", 5)
    leases._clock.advance(6)
    leases.acquire("session:old", "b", 5)  # a was paused past its lease; b took it
    with BatchingWriter(store, max_delay=10) as writer:  # nothing commits before the flush: one batch
        before = writer.append("other", events(rows))
        stale = writer.append("old", events(rows), fence=Fence("session:old", old.epoch))
        stale_next = writer.append("old", events(rows), expected_version=rows,
                                   fence=Fence("session:old", old.epoch))
        fenced = writer.append("live", events(rows), fence=Fence("session:live", live.epoch))
        after = writer.append("other", events(rows), expected_version=rows)
        writer.flush()
        for ticket in (stale, stale_next):
            with pytest.raises(FencedError):
                ticket.wait()
        assert [t.wait().last_version for t in (before, fenced, after)] == [rows, rows, 2 * rows]
    assert store.stream_version("old") == 0 and store.stream_version("live") == rows
    assert [r.position for r in store.read_all()] == list(range(1, 3 * rows + 1))  # dense, no gap


def test_the_new_owner_writes_after_the_fenced_out_one(store, leases):
    old = leases.acquire("n", "a", 5)
    store.append("s", events(1), fence=Fence("n", old.epoch))
    leases._clock.advance(6)
    new = leases.acquire("n", "b", 5)
    with BatchingWriter(store, max_delay=10) as writer:
        refused = writer.append("s", events(1), expected_version=1, fence=Fence("n", old.epoch))
        taken = writer.append("s", events(1), expected_version=1, fence=Fence("n", new.epoch))
        writer.flush()
        with pytest.raises(FencedError):
            refused.wait()
        assert taken.wait().last_version == 2
