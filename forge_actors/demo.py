"""`make demo` (interim): three participants stream drafts into the event log, live.

Until the deliberation engine lands this shows the spine at work: three threads
append streamed deltas through the batching writer while a subscriber prints each
committed event as it arrives, then the session is rebuilt from the log alone.
"""

from __future__ import annotations

import random
import sys
import tempfile
import threading
import time
from pathlib import Path

from eventstore import BatchingWriter, EventStore, NewEvent
from forge_actors.events import (
    ContentDelta,
    ContributionCompleted,
    Event,
    ParticipantInfo,
    PromptMessage,
    PromptSent,
    RoundCompleted,
    RoundStarted,
    SessionCreated,
    SessionEnded,
    SessionSettings,
    TokenUsage,
    decode_event,
    encode_event,
    event_type,
)
from forge_actors.state import rebuild

GOAL = "Design a TODO app API"
DRAFTS = {
    "alice": "Expose /todos as a REST resource with cursor pagination, ETags for optimistic updates, and soft deletes.",
    "bob": "Model todos as events; serve a read model over HTTP; add webhooks so clients can sync offline edits.",
    "carol": "Keep it tiny: CRUD on /todos, JSON Schema validation, rate limits per token, and an OpenAPI document.",
}
COLOURS = {"alice": "\033[36m", "bob": "\033[33m", "carol": "\033[35m"}
RESET = "\033[0m"


def as_new(event: Event) -> NewEvent:
    return NewEvent.from_bytes(event_type(event), encode_event(event))


def stream_draft(writer: BatchingWriter, session: str, name: str, rng: random.Random) -> None:
    cid = f"r1.{name}.1"
    writer.append(session, [as_new(PromptSent(
        contribution_id=cid, round=1, participant=name, attempt=1, model=name,
        messages=(PromptMessage("user", f"Propose a solution: {GOAL}"),), temperature=0.7, max_tokens=512,
    ))])
    started = time.monotonic()
    words = DRAFTS[name].split(" ")
    for i, word in enumerate(words):
        time.sleep(rng.uniform(0.01, 0.05))
        text = word if i == 0 else " " + word
        writer.append(session, [as_new(ContentDelta(contribution_id=cid, participant=name, round=1, attempt=1, text=text))])
    writer.append(session, [as_new(ContributionCompleted(
        contribution_id=cid, participant=name, round=1, attempt=1, content=DRAFTS[name], finish_reason="stop",
        usage=TokenUsage(12, len(words)), latency_ms=(time.monotonic() - started) * 1000,
    ))]).wait()  # a completed contribution is durable before anything moves on


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="forge-demo-"))
    store = EventStore(folder / "forge.db")
    writer = BatchingWriter(store)
    session = "demo-session"
    names = tuple(DRAFTS)
    print(f"event log: {store.path}\ngoal: {GOAL}\n")
    writer.append(session, [as_new(SessionCreated(
        session_id=session, title="demo", goal=GOAL, settings=SessionSettings(),
        participants=tuple(ParticipantInfo(n, provider=f"mock:{n}", model=n) for n in names),
    )), as_new(RoundStarted(round=1, kind="draft", iteration=1, participants=names))]).wait()

    subscription = store.subscribe(stream_id=session, codec=decode_event)
    lines = {name: "" for name in names}

    def show() -> None:
        for recorded in subscription:
            event = recorded.event
            if isinstance(event, ContentDelta):
                lines[event.participant] += event.text
                colour = COLOURS[event.participant]
                sys.stdout.write(f"{colour}[{event.participant:>5}]{RESET} #{recorded.position:<4} {lines[event.participant][-90:]}\n")
            elif isinstance(event, ContributionCompleted):
                print(f"{COLOURS[event.participant]}[{event.participant:>5}] done in {event.latency_ms:.0f} ms{RESET}")
            elif isinstance(event, SessionEnded):
                return

    viewer = threading.Thread(target=show)
    viewer.start()
    rng = random.Random(7)
    workers = [threading.Thread(target=stream_draft, args=(writer, session, n, random.Random(rng.random()))) for n in names]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    writer.append(session, [
        as_new(RoundCompleted(round=1, kind="draft", status="completed", succeeded=names)),
        as_new(SessionEnded(outcome="max_rounds", reason="demo: one draft round only")),
    ]).wait()
    viewer.join()
    subscription.close()
    writer.close()

    state = rebuild(e.event for e in store.read_stream(session, codec=decode_event))
    print(f"\nrebuilt from {store.stream_version(session)} events in the log: status {state.status}, "
          f"{len(state.drafts)} drafts, {state.total_usage.total_tokens} tokens")
    for name, draft in state.drafts.items():
        print(f"  {name}: {draft}")
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
