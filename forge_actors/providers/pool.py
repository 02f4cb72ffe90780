"""``pool:NAME`` — several providers behind one, with health per member.

Strategies: ``failover`` tries the members in order and returns to the first (the
primary) as soon as it is usable again; ``round_robin`` starts each call at the next
member. Either way a member is skipped while it is unhealthy:

- healthy: fewer than ``degraded_after`` errors within ``window_seconds``;
- degraded: skipped while some other member is healthy;
- unavailable (``unavailable_after`` recent errors): skipped until ``cooldown_seconds``
  have passed; then it is on probation: tried again in its place in the order (so
  failover returns to the primary), healthy again on a success, unavailable again
  (for another cool-down) on a failure.

A success resets the member's errors. A stream that fails before its first delta
moves on to the next member within the same call; one that fails after text went out
is reported as it is (the engine decides about retrying). ``served_by`` names the
member that answered the last call; the engine records it in the log.

Health lives in a ``PoolHealth`` that the engine shares between every participant
using the same pool, so that what one learns the others skip.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import msgspec

from forge_actors.providers.base import LlmRequest, LlmResponse, Provider, StreamChunk, chunks_of, collect
from forge_actors.providers.errors import ERRORS_BY_KIND, LlmError, NotStreamedError, ProviderConfigError, ServerError
from forge_actors.providers.structured import StructuredOutput

Strategy = Literal["round_robin", "failover"]
MemberState = Literal["healthy", "degraded", "unavailable", "probation"]


class HealthPolicy(msgspec.Struct, frozen=True):
    degraded_after: int = 2
    unavailable_after: int = 4
    window_seconds: float = 60.0
    cooldown_seconds: float = 30.0


class MemberHealth(msgspec.Struct, frozen=True):
    member: str
    state: MemberState
    consecutive_errors: int
    recent_errors: int
    successes: int
    last_error: str = ""
    #: Seconds until an unavailable member is tried again (0 when it may be tried now).
    retry_in: float = 0.0


class _Member:
    def __init__(self) -> None:
        self.errors: deque[float] = deque()
        self.consecutive = 0
        self.successes = 0
        self.last_error = ""
        self.unavailable_until = 0.0


class PoolHealth:
    """Error counts per member, shared by the pools built from one definition. Thread-safe."""

    def __init__(self, policy: HealthPolicy | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy or HealthPolicy()
        self.clock = clock
        self._members: dict[str, _Member] = {}
        self._lock = threading.Lock()

    def _get(self, member: str) -> _Member:
        return self._members.setdefault(member, _Member())

    def _recent(self, record: _Member, now: float) -> int:
        while record.errors and record.errors[0] <= now - self.policy.window_seconds:
            record.errors.popleft()
        return len(record.errors)

    def state(self, member: str) -> MemberState:
        with self._lock:
            return self._state(self._get(member), self.clock())

    def _state(self, record: _Member, now: float) -> MemberState:
        recent = self._recent(record, now)
        if recent >= self.policy.unavailable_after:
            return "unavailable" if now < record.unavailable_until else "probation"
        return "degraded" if recent >= self.policy.degraded_after else "healthy"

    def usable(self, member: str) -> bool:
        return self.state(member) != "unavailable"

    def succeeded(self, member: str) -> None:
        with self._lock:
            record = self._get(member)
            record.errors.clear()
            record.consecutive = 0
            record.successes += 1
            record.unavailable_until = 0.0

    def failed(self, member: str, error: str) -> None:
        with self._lock:
            record = self._get(member)
            now = self.clock()
            record.errors.append(now)
            record.consecutive += 1
            record.last_error = error
            if self._recent(record, now) >= self.policy.unavailable_after:
                record.unavailable_until = now + self.policy.cooldown_seconds

    def snapshot(self, members: Sequence[str]) -> list[MemberHealth]:
        with self._lock:
            now = self.clock()
            out = []
            for member in members:
                record = self._get(member)
                state = self._state(record, now)
                out.append(MemberHealth(member, state, record.consecutive, self._recent(record, now), record.successes,
                                        record.last_error, max(0.0, record.unavailable_until - now)
                                        if state == "unavailable" else 0.0))
            return out


class PoolProvider(StructuredOutput):
    name = "pool"

    def __init__(
        self,
        model: str,
        *,
        members: Sequence[tuple[str, Provider]],
        strategy: Strategy = "failover",
        health: PoolHealth | None = None,
    ) -> None:
        if not members:
            raise ProviderConfigError(f"pool:{model} has no members: list member specs under [forge.pools.{model}]")
        if strategy not in ("round_robin", "failover"):
            raise ProviderConfigError(f"pool:{model} strategy must be round_robin or failover, not {strategy!r}")
        self.model = model
        self.members = list(members)
        self.strategy: Strategy = strategy
        self.health = health or PoolHealth()
        self.served_by = ""
        self._next = 0
        self._current: Provider | None = None

    def __repr__(self) -> str:
        return f"PoolProvider({self.model!r}, strategy={self.strategy!r}, members={[m for m, _ in self.members]!r})"

    @property
    def supports_json(self) -> bool:
        """True only if every member honours ``response_schema``: any of them may be the one that answers."""
        return all(getattr(member, "supports_json", False) for _, member in self.members)

    @property
    def supports_tools(self) -> bool:
        """True only if every member honours ``tools`` natively, for the same reason."""
        return all(getattr(member, "supports_tools", False) for _, member in self.members)

    def labels(self) -> list[str]:
        return [label for label, _ in self.members]

    def order(self) -> list[tuple[str, Provider]]:
        """The members to try for the next call, best first."""
        members = self.members
        if self.strategy == "round_robin":
            start = self._next % len(members)
            self._next += 1
            members = members[start:] + members[:start]
        states = {label: self.health.state(label) for label, _ in members}
        # Unavailable members wait out their cool-down; degraded ones go last.
        usable = [m for m in members if states[m[0]] in ("healthy", "probation")]
        degraded = [m for m in members if states[m[0]] == "degraded"]
        return usable + degraded

    def close(self) -> None:
        for _, member in self.members:
            member.close()

    def abort(self) -> None:
        current = self._current
        if current is not None:
            getattr(current, "abort", lambda: None)()

    def complete(self, request: LlmRequest) -> LlmResponse:
        return collect(self.stream(request), self.model)

    def stream(self, request: LlmRequest) -> Iterator[StreamChunk]:
        return self._stream(request)

    def _stream(self, request: LlmRequest) -> Iterator[StreamChunk]:
        tried: list[str] = []
        last: LlmError | None = None
        for label, member in self.order():
            self._current = member
            chunks: Iterator[StreamChunk] | None = None
            started = False
            try:
                try:
                    chunks = member.stream(request)
                    for chunk in chunks:
                        if not started:
                            started = True
                            self.served_by = label
                        yield chunk
                except NotStreamedError as whole:
                    if whole.response is None:
                        raise
                    # The member answered with a whole body: that is its answer (what it cannot do is the
                    # member's, not the pool's: nothing is learned for the pool as a whole).
                    self.served_by = label
                    yield from chunks_of(whole.response)
            except LlmError as error:
                self.health.failed(label, f"{error.kind}: {error}")
                if started:  # text went out: report it, do not silently switch mid-answer
                    raise
                tried.append(f"{label} ({error.kind})")
                last = error
                continue
            finally:
                self._current = None
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
            self.health.succeeded(label)
            return
        if last is None:
            raise ServerError(f"pool:{self.model}: every member is unavailable (cooling down); try again shortly",
                              provider="pool")
        error = ERRORS_BY_KIND.get(last.kind, LlmError)(
            f"every member failed: {', '.join(tried)}; last: {last}", provider="pool",
            status_code=last.status_code, retry_after=last.retry_after,
        )
        raise error from last
