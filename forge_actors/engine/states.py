"""Sessions' states, folded once and kept: cheap reads for many concurrent readers.

A session's state is the fold of its events (``core.state.apply``). The first read folds the
whole session; later reads extend the kept state by what was committed since (usually nothing).
Concurrent first readers of a session wait for one fold instead of each folding it all.
"""

from __future__ import annotations

import threading

from eventstore import EventLog
from forge_actors.core.errors import SessionNotFoundError
from forge_actors.core.records import EVENT_CODEC
from forge_actors.core.state import SessionState, apply

#: Locks that single-flight the folds of sessions' states (a session's is picked by its id's hash).
_FOLD_LOCK_STRIPES = 64


class StateCache:
    """The folded state of every session read so far, by id. Thread-safe."""

    def __init__(self, store: EventLog) -> None:
        self._store = store
        self._states: dict[str, tuple[int, SessionState]] = {}
        self._lock = threading.Lock()
        # Striped rather than one lock per id, so that ids nobody has (asked for over HTTP, say)
        # leave nothing behind.
        self._fold_locks = tuple(threading.Lock() for _ in range(_FOLD_LOCK_STRIPES))

    def load(self, session_id: str) -> tuple[SessionState, int]:
        """The (state, version) of the session as committed now; SessionNotFoundError if it has no events."""
        with self._fold_locks[hash(session_id) % _FOLD_LOCK_STRIPES]:
            with self._lock:
                version, state = self._states.get(session_id, (0, SessionState()))
            for recorded in self._store.read_stream(session_id, after_version=version, codec=EVENT_CODEC):
                state = apply(state, recorded.event)
                version = recorded.version
            if version == 0:
                raise SessionNotFoundError(session_id)
            with self._lock:
                cached = self._states.get(session_id)
                if cached is None or cached[0] < version:
                    self._states[session_id] = (version, state)
        return state, version
