"""`make demo` (interim, until the actor engine lands): Draft and Critique rounds, live.

Three offline mock participants answer the real round prompts (forge_actors.rounds)
in parallel threads; every prompt, streamed delta, completion and parsed critique is
appended to the event log through the batching writer, while a subscriber prints
each committed event as it arrives. At the end the session is rebuilt from the log
alone. The session actor will replace the hand-rolled threads below.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from eventstore import BatchingWriter, EventStore, NewEvent
from forge_actors import rounds
from forge_actors.events import (
    ContentDelta,
    ContributionCompleted,
    CritiqueRecorded,
    Event,
    ParticipantInfo,
    PromptSent,
    RoundCompleted,
    RoundKind,
    RoundStarted,
    SessionCreated,
    SessionEnded,
    SessionSettings,
    TokenUsage,
    decode_event,
    encode_event,
    event_type,
)
from forge_actors.providers import LlmRequest, Message, get_provider
from forge_actors.state import rebuild

GOAL = "Design a TODO app API"
NAMES = ("alice", "bob", "carol")
COLOURS = {"alice": "\033[36m", "bob": "\033[33m", "carol": "\033[35m"}
RESET, BOLD = "\033[0m", "\033[1m"
SESSION = "demo-session"


def as_new(event: Event) -> NewEvent:
    return NewEvent.from_bytes(event_type(event), encode_event(event))


def contribute(writer: BatchingWriter, prompt: rounds.RoundPrompt, number: int) -> None:
    """One participant's contribution: prompt, deltas, completion (durable before returning)."""
    name = prompt.participant
    cid = f"r{number}.{name}.1"
    writer.append(SESSION, [as_new(PromptSent(
        contribution_id=cid, round=number, participant=name, attempt=1, model=name, messages=prompt.messages,
        temperature=0.7, max_tokens=1024, proposal_labels=prompt.proposal_labels,
    ))])
    provider = get_provider(f"mock:{name}?word_delay=0.01")
    request = LlmRequest(messages=tuple(Message(m.role, m.content) for m in prompt.messages))
    started, parts, usage = time.monotonic(), [], TokenUsage()
    for chunk in provider.stream(request):
        if chunk.delta:
            parts.append(chunk.delta)
            writer.append(SESSION, [as_new(ContentDelta(contribution_id=cid, participant=name, round=number,
                                                        attempt=1, text=chunk.delta))])
        if chunk.is_complete and chunk.usage:
            usage = TokenUsage(chunk.usage.input_tokens, chunk.usage.output_tokens)
    content = "".join(parts)
    events = [as_new(ContributionCompleted(contribution_id=cid, participant=name, round=number, attempt=1,
                                           content=content, finish_reason="stop", usage=usage,
                                           latency_ms=(time.monotonic() - started) * 1000))]
    if prompt.kind == "critique":
        parsed, _ = rounds.read_critiques(content, prompt.proposal_labels)
        events += [as_new(CritiqueRecorded(round=number, critic=name, label=label,
                                           proposal_author=prompt.proposal_labels[label], score=c.score,
                                           strengths=c.strengths, weaknesses=c.weaknesses, suggestions=c.suggestions))
                   for label, c in parsed.items()]
    writer.append(SESSION, events).wait()


def run_round(store: EventStore, writer: BatchingWriter, number: int, kind: RoundKind) -> None:
    writer.append(SESSION, [as_new(RoundStarted(round=number, kind=kind, iteration=1, participants=NAMES))]).wait()
    state = rebuild(e.event for e in store.read_stream(SESSION, codec=decode_event))
    prompts = [rounds.draft_prompt(state, n) if kind == "draft" else rounds.critique_prompt(state, n, number)
               for n in NAMES]
    workers = [threading.Thread(target=contribute, args=(writer, p, number)) for p in prompts if p is not None]
    for worker in workers:  # participants of a round run in parallel
        worker.start()
    for worker in workers:
        worker.join()
    writer.append(SESSION, [as_new(RoundCompleted(round=number, kind=kind, status="completed", succeeded=NAMES))]).wait()


def show_live(store: EventStore) -> None:
    """Print each participant's text line by line as its deltas commit."""
    buffers: dict[str, str] = {}
    with store.subscribe(stream_id=SESSION, codec=decode_event) as live:
        for recorded in live:
            event = recorded.event
            if isinstance(event, RoundStarted):
                print(f"\n{BOLD}== round {event.round}: {event.kind} =={RESET}")
            elif isinstance(event, ContentDelta):
                *complete, buffers[event.participant] = (buffers.get(event.participant, "") + event.text).split("\n")
                for line in complete:
                    if line.strip():
                        print(f"{COLOURS[event.participant]}[{event.participant:>5}]{RESET} {line[:100]}")
            elif isinstance(event, ContributionCompleted):
                print(f"{COLOURS[event.participant]}[{event.participant:>5}] done: {event.usage.output_tokens} tokens "
                      f"in {event.latency_ms:.0f} ms (log position {recorded.position}){RESET}")
            elif isinstance(event, SessionEnded):
                return


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="forge-demo-"))
    store = EventStore(folder / "forge.db")
    writer = BatchingWriter(store)
    print(f"{BOLD}goal:{RESET} {GOAL}\n{BOLD}event log:{RESET} {store.path}\n"
          "(interim demo: Draft and Critique rounds; the full engine comes next)")
    writer.append(SESSION, [as_new(SessionCreated(
        session_id=SESSION, title="demo", goal=GOAL, settings=SessionSettings(seed=7),
        participants=tuple(ParticipantInfo(n, provider=f"mock:{n}", model=n) for n in NAMES),
    ))]).wait()
    viewer = threading.Thread(target=show_live, args=(store,))
    viewer.start()
    run_round(store, writer, 1, "draft")
    run_round(store, writer, 2, "critique")
    writer.append(SESSION, [as_new(SessionEnded(outcome="max_rounds", reason="interim demo: draft and critique only"))]).wait()
    viewer.join()
    writer.close()

    state = rebuild(e.event for e in store.read_stream(SESSION, codec=decode_event))
    print(f"\n{BOLD}rebuilt from the {store.stream_version(SESSION)} events in the log{RESET}: status {state.status}, "
          f"{len(state.drafts)} drafts, {len(state.critiques)} critiques, {state.total_usage.total_tokens} tokens")
    for author, mean in sorted(state.mean_scores(2).items(), key=lambda kv: -kv[1]):
        print(f"  {author:<6} mean critique score {mean:5.1f}")
    print(f"  next synthesizer would be: {rounds.choose_synthesizer(state)}")
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
