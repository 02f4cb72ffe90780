"""The log's growth is bounded by settings, whatever a provider streams.

A contribution records at most ``max_reply_chars`` characters (the stream is closed there and the
reply kept as cut), and a session ends ``budget_spent`` once a round ends with its events taking
``max_session_bytes`` of the log. Both are decisions of recorded facts, so the log audits clean and a re-run
reproduces them.
"""

from __future__ import annotations

import itertools
import json

from loopback import LoopbackServer, Reply
from support import wait_until

from forge_actors.core.audit import verify
from forge_actors.core.events import ContentDelta, ContributionCompleted, RoundCompleted, SessionEnded
from forge_actors.core.state import SessionState, apply
from forge_actors.engine import Forge


def endless_openai_stream() -> Reply:
    """A Chat Completions stream that never ends: the same delta, forever, until the client hangs up."""
    chunk = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "word "}}]}
    return Reply(parts=itertools.repeat(f"data: {json.dumps(chunk)}\n\n".encode()))


def test_a_stream_without_end_is_cut_at_max_reply_chars_and_closed(tmp_path):
    with LoopbackServer(endless_openai_stream()) as server, Forge(str(tmp_path / "forge.db")) as forge:
        session_id = forge.create_session("Design a TODO app API", [
            {"spec": f"openai:gpt-x?base_url={server.url}", "name": "endless"}, "mock:bob?word_delay=0"],
            max_reply_chars=1000, max_retries=0)
        forge.run_round(session_id, "draft", timeout=60)
        assert wait_until(lambda: server.disconnects >= 1, timeout=10)  # the server saw the client hang up
        events = forge.events(session_id)
        round_status = forge.state(session_id).round_state(1).status
    completed = next(e for e in events if isinstance(e, ContributionCompleted) and e.participant == "endless")
    assert len(completed.content) == 1000 and completed.finish_reason == "max_reply_chars"
    deltas = "".join(e.text for e in events if isinstance(e, ContentDelta) and e.participant == "endless")
    assert deltas == completed.content
    assert round_status == "completed"


def test_a_session_ends_budget_spent_once_its_events_take_max_session_bytes(tmp_path):
    with Forge(str(tmp_path / "forge.db")) as forge:
        session_id = forge.create_session("Design a TODO app API", ["mock:alice?word_delay=0", "mock:bob?word_delay=0"],
                                          max_session_bytes=20_000)
        ended = [r.event for r in forge.deliberate(session_id) if isinstance(r.event, SessionEnded)]
        state = forge.state(session_id)
        records = forge.records(session_id)
    assert ended[0].outcome == "budget_spent" and "max_session_bytes" in ended[0].reason
    assert state.status == "budget_spent" and state.log_bytes >= 20_000
    # It ended after the first round that ended with the budget spent, and not before.
    folded, spent_at = SessionState(), []
    for record in records:
        folded = apply(folded, record.event)
        if isinstance(record.event, RoundCompleted):
            spent_at.append(folded.log_bytes >= 20_000)
    assert spent_at[-1] and not any(spent_at[:-1])
    assert verify(records) == []
