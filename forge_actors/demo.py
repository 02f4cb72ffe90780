"""`make demo`: a whole deliberation of three offline mock participants, streamed live.

It goes through the engine API only (``Forge``), like any service embedding forge:
create a session, follow ``deliberate()`` — the committed events, live — and print
each participant's text as it streams, the scores after the critique, the votes after
each convergence round, and the final synthesis. At the end it checks the log
(``audit.verify``) and shows that folding it again gives the same state.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from forge_actors import audit
from forge_actors.engine import Forge
from forge_actors.events import (
    ContentDelta,
    ContributionCompleted,
    ContributionFailed,
    RoundCompleted,
    RoundStarted,
    SessionEnded,
    decode_event,
)
from forge_actors.state import SessionState, rebuild

GOAL = "Design a TODO app API"
PARTICIPANTS = ["mock:alice?word_delay=0.004", "mock:bob?word_delay=0.005", "mock:carol?word_delay=0.006"]
COLOURS = {"alice": "\033[36m", "bob": "\033[33m", "carol": "\033[35m"}
RESET, BOLD, DIM = "\033[0m", "\033[1m", "\033[2m"


def colour(name: str) -> str:
    return COLOURS.get(name, "")


class LiveView:
    """Prints whole lines of each participant's text as their deltas commit."""

    def __init__(self, forge: Forge, session_id: str) -> None:
        self.forge = forge
        self.session_id = session_id
        self.partial: dict[str, str] = {}

    def show(self, position: int, event: object) -> None:
        if isinstance(event, RoundStarted):
            print(f"\n{BOLD}== round {event.round}: {event.kind} (iteration {event.iteration}) — "
                  f"{', '.join(event.participants)} =={RESET}")
        elif isinstance(event, ContentDelta):
            *lines, self.partial[event.participant] = (self.partial.get(event.participant, "") + event.text).split("\n")
            for line in lines:
                if line.strip():
                    print(f"{colour(event.participant)}[{event.participant:>5}]{RESET} {line[:110]}")
        elif isinstance(event, ContributionCompleted):
            self.partial.pop(event.participant, None)
            print(f"{colour(event.participant)}[{event.participant:>5}] done{RESET} {DIM}{event.usage.output_tokens} "
                  f"tokens, {event.latency_ms:.0f} ms, log position {position}{RESET}")
        elif isinstance(event, ContributionFailed):
            print(f"{colour(event.participant)}[{event.participant:>5}] failed{RESET}: {event.message}")
        elif isinstance(event, RoundCompleted):
            self.summarise(event)
        elif isinstance(event, SessionEnded):
            print(f"\n{BOLD}session {event.outcome}{RESET}: {event.reason}")

    def summarise(self, event: RoundCompleted) -> None:
        state = self.forge.state(self.session_id)
        if event.kind == "critique":
            print(f"{BOLD}mean critique scores{RESET}")
            for author, mean in sorted(state.mean_scores(event.round).items(), key=lambda kv: -kv[1]):
                print(f"  {author:<6} {mean:5.1f}")
        elif event.kind == "convergence":
            votes = state.votes_in(event.round)
            tally = ", ".join(f"{voter}: {vote.vote}" for voter, vote in votes.items())
            score = "n/a" if event.score is None else f"{event.score:.0%}"
            print(f"{BOLD}votes{RESET} {tally} — agreement {score}")
        if event.status != "completed":
            print(f"round {event.round} {event.status}: {event.reason}")


def print_outcome(state: SessionState) -> None:
    if state.synthesis is not None:
        print(f"\n{BOLD}final synthesis by {state.synthesis.author}{RESET}\n{state.synthesis.content}")
    print(f"{BOLD}tokens per participant{RESET}")
    for name, usage in state.usage.items():
        print(f"  {name:<6} {usage.input_tokens:>6} in  {usage.output_tokens:>6} out")


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="forge-demo-"))
    with Forge(str(folder / "forge.db")) as forge:
        session_id = forge.create_session(GOAL, PARTICIPANTS, seed=7, max_rounds=3)
        print(f"{BOLD}goal:{RESET} {GOAL}\n{BOLD}session:{RESET} {session_id}   {BOLD}event log:{RESET} "
              f"{forge.store.path}\n{DIM}three offline mock participants; every delta is appended to the log "
              f"before it is shown{RESET}")
        view = LiveView(forge, session_id)
        for recorded in forge.deliberate(session_id):
            view.show(recorded.position, recorded.event)
        state = forge.state(session_id)
        print_outcome(state)

        stored = list(forge.store.read_stream(session_id, codec=decode_event))
        problems = audit.verify(stored)
        same = rebuild(r.event for r in stored) == state
        print(f"\n{BOLD}audit{RESET}: {len(stored)} events; "
              f"{'no violations' if not problems else problems[0]}; "
              f"rebuilt from the log: {'identical state' if same else 'DIFFERENT state'}")
        return 0 if not problems and same else 1


if __name__ == "__main__":
    sys.exit(main())
