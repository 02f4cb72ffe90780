"""`forge run --max-cost-usd / --max-session-tokens`: the session ends budget_exhausted (exit 1), `forge show`
states spent and remaining, and a budget the engine cannot judge is a usage error with nothing recorded."""

from __future__ import annotations

import io
import json
import os
import sys

from cli_support import clean_env
from rich.console import Console

from forge_actors.engine import Forge
from forge_actors.surfaces.cli import main
from forge_actors.surfaces.terminal import LiveView

PAIR = ["-p", "mock:alice", "-p", "mock:bob"]


def test_a_token_budget_ends_the_run_budget_exhausted_and_show_states_it(cli, capsys, monkeypatch):
    code, out, _ = cli("run", "Plan a garden", *PAIR, "--max-session-tokens", "1")
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and events[-1]["type"] == "SessionEnded" and events[-1]["outcome"] == "budget_exhausted"
    assert events[0]["settings"]["max_session_tokens"] == 1 and events[0]["settings"]["max_cost_usd"] is None
    session_id = events[0]["session_id"]
    code, out, _ = cli("show", session_id)
    document = json.loads(out)
    assert code == 0 and document["budget"]["spent_tokens"] == 0 and document["budget"]["remaining_tokens"] == 1
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)  # the text view, not JSON
    assert main(["show", session_id], clean_env()) == 0
    shown = capsys.readouterr().out
    assert "budget_exhausted" in shown and "budget: spent 0 of 1 tokens (1 remaining)" in shown


def test_a_cost_budget_records_the_prices_it_is_judged_by(cli):
    code, out, err = cli("run", "Plan a garden", *PAIR, "--max-cost-usd", "0.5", "--max-iterations", "1")
    assert code in (0, 1), err
    created = json.loads(out.splitlines()[0])
    assert created["settings"]["max_cost_usd"] == 0.5
    assert created["prices"] == {"alice": {"input_per_mtok": 0.0, "output_per_mtok": 0.0},
                                 "bob": {"input_per_mtok": 0.0, "output_per_mtok": 0.0}}  # mocks are free


def test_a_cost_budget_with_an_unknown_price_is_refused_and_nothing_is_recorded(cli, tmp_path):
    code, out, err = cli("run", "Plan a garden", "-p", "openai:a-model-nobody-prices?api_key=sk-test",
                         "--max-cost-usd", "1")
    assert (code, out) == (2, "")
    assert "the price of a-model-nobody-prices is unknown" in err and "max_session_tokens" in err
    assert os.listdir(tmp_path) == []


def test_a_budget_out_of_range_is_a_usage_error(cli):
    code, _, err = cli("run", "Plan a garden", *PAIR, "--max-cost-usd", "0")
    assert code == 2 and "max_cost_usd must be more than 0" in err
    code, _, err = cli("run", "Plan a garden", *PAIR, "--max-session-tokens", "0")
    assert code == 2 and "max_session_tokens must be at least 1" in err


def test_the_terminals_end_line_states_spent_and_remaining(tmp_path):
    with Forge(str(tmp_path / "forge.db")) as forge:
        roomy = list(forge.deliberate(forge.create_session("Plan a garden", ["mock:a", "mock:b"], max_rounds=1,
                                                           max_session_tokens=10_000_000)))
        tight = list(forge.deliberate(forge.create_session("Plan a garden", ["mock:a"], max_session_tokens=1)))
    for events, said in ((roomy, "budget: spent "), (tight, "budget_exhausted — spent 0 of 1 tokens (1 remaining)")):
        screen = Console(width=200, record=True, file=io.StringIO(), color_system=None)
        view = LiveView(screen)
        view.run(events)
        view.print_outcome()
        shown = screen.export_text()
        assert said in shown and shown.count("spent ") == 1, shown
        if events is roomy:
            assert "of 10,000,000 tokens (" in shown and "remaining)" in shown
