"""`forge eval`: a council against a baseline on a task file, the report's files, a re-run with no provider call."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from forge_actors.providers.mock import MockProvider

COUNCIL = ["-p", "mock:alice?accuracy=0.7", "-p", "mock:bob?accuracy=0.7", "-p", "mock:carol?accuracy=0.7"]
TASKS = "\n".join(json.dumps(t) for t in (
    {"id": "sum", "prompt": "Maya has 14 marbles. She wins 9 more. How many marbles does Maya have?",
     "expected": 23, "scorer": "numeric"},
    {"id": "gold", "prompt": "What is the chemical symbol for gold?", "expected": "Au", "scorer": "exact"},
    {"id": "bard", "prompt": "Who wrote the play Romeo and Juliet?", "expected": "Shakespeare", "scorer": "judge"},
)) + "\n"


def test_eval_reports_json_writes_the_files_and_a_rerun_calls_no_provider(cli, tmp_path, monkeypatch):
    (tmp_path / "tasks.jsonl").write_text(TASKS)
    code, out, err = cli("eval", "tasks.jsonl", *COUNCIL, "--baseline", "mock:solo?accuracy=0.7",
                         "--judge", "mock:judge", "--setting", "max_iterations=2", "--db", "e.db", "-o", "report")
    assert code == 0, err
    report = json.loads(out)
    assert [s["name"] for s in report["systems"]] == ["council", "mock:solo?accuracy=0.7"]
    assert [s["tasks"] for s in report["systems"]] == [3, 3] and report["provider_calls"] > 0
    assert "[6/6]" in err and f"forge eval --rerun {report['run_id']} --db e.db" in err
    folder = tmp_path / "report"
    assert json.loads((folder / "report.json").read_text()) == report
    assert "| council | council |" in (folder / "report.md").read_text()
    ET.fromstring((folder / "accuracy-cost.svg").read_text())

    def refuse(*args):
        raise AssertionError("a re-run called a provider")
    monkeypatch.setattr(MockProvider, "complete", refuse)
    monkeypatch.setattr(MockProvider, "stream", refuse)
    code, out, err = cli("eval", "--rerun", report["run_id"], "--db", "e.db")
    assert code == 0, err
    again = json.loads(out)
    assert again["rerun_of"] == report["run_id"] and again["provider_calls"] == 0
    assert "[6/6]" in err
    assert [(o["task_id"], o["correct"], o["answer"]) for o in again["outcomes"]] == [
        (o["task_id"], o["correct"], o["answer"]) for o in report["outcomes"]]


def test_the_shipped_set_runs_by_name(cli):
    code, out, err = cli("eval", "basic", "--baseline", "mock:solo?accuracy=1", "--db", "e.db")
    assert code == 0, err
    assert json.loads(out)["systems"][0]["accuracy"] == 1.0  # 44 tasks, all worked out by the mock


def test_mistakes_are_one_line_and_exit_2(cli, tmp_path):
    (tmp_path / "bad.jsonl").write_text(TASKS + '{"id": "x", "prompt": "?", "expected": 1, "scorer": "fuzzy"}\n')
    code, out, err = cli("eval", "bad.jsonl", *COUNCIL, "--db", "e.db")
    assert code == 2 and out == ""
    assert "bad.jsonl, line 4: unknown scorer 'fuzzy'; use one of exact, numeric, regex, contains, judge" in err
    code, _, err = cli("eval", "--rerun", "eval-x", "basic", "--db", "e.db")
    assert code == 2 and "give only RUN_ID" in err
    code, _, err = cli("eval", "basic", "--db", "e.db")
    assert code == 2 and "nothing to evaluate" in err
    code, _, err = cli("eval", "missing.jsonl", *COUNCIL, "--db", "e.db")
    assert code == 2 and "cannot read the task file missing.jsonl" in err
    code, _, err = cli("eval", "basic", *COUNCIL, "--setting", "max_iterations", "--db", "e.db")
    assert code == 2 and "write KEY=VALUE" in err
    code, _, err = cli("eval", "basic", *COUNCIL, "--variant", "one-pass", "--db", "e.db")
    assert code == 2 and "write NAME:KEY=VALUE" in err


def test_a_variant_is_the_council_again_under_other_settings(cli, tmp_path):
    (tmp_path / "tasks.jsonl").write_text(TASKS.splitlines()[0] + "\n")
    code, out, err = cli("eval", "tasks.jsonl", *COUNCIL, "--setting", "max_iterations=3", "--variant",
                         "one-pass:max_iterations=1,convergence_threshold=0.5", "--db", "e.db")
    assert code == 0, err
    report = json.loads(out)
    assert [s["name"] for s in report["systems"]] == ["council", "one-pass"]
    from forge_actors.engine import Forge
    with Forge(str(tmp_path / "e.db")) as forge:
        settings = {o["system"]: forge.state(o["session_id"]).settings for o in report["outcomes"]}
    assert (settings["council"].max_rounds, settings["council"].convergence_threshold) == (3, 0.8)
    assert (settings["one-pass"].max_rounds, settings["one-pass"].convergence_threshold) == (1, 0.5)
