"""Humans from the command line: forge draft, forge vote, forge run --human / --constraint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import clean_env
from support import wait_until

from forge_actors.engine import Forge
from forge_actors.surfaces.cli import _deliberate_when_free

FORGE = str(Path(sys.executable).with_name("forge"))
TWO = ["-p", "mock:alice", "-p", "mock:bob"]


def forge(*args: str, cwd: Path, stdin: str | None = None, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess:
    return subprocess.run([FORGE, *args], cwd=cwd, env=env or clean_env(), capture_output=True, text=True,
                          input=stdin, timeout=120)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_run_waits_for_a_seated_humans_draft_from_another_terminal(tmp_path):
    run = subprocess.Popen([FORGE, "run", "Design a TODO app API", *TWO, "--human", "ada", "--human-timeout", "60",
                            "--max-iterations", "1", "--db", "h.db"],
                           cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert run.stderr is not None
    waiting = ""
    for line in run.stderr:  # the run says who it waits for, and the command that feeds it
        if "waiting up to 60 s for ada's draft" in line:
            waiting = line
            break
    session_id = waiting.split("forge draft ", 1)[1].split()[0]
    assert f"forge draft {session_id} --author ada --db h.db" in waiting

    drafted = forge("draft", session_id[:6], "--author", "ada", "--db", "h.db", "-", cwd=tmp_path,
                    stdin="# Ada's plan\n\nREST over JSON, ETags for concurrency.\n")
    assert drafted.returncode == 0, drafted.stderr
    assert json.loads(drafted.stdout) == {"session_id": session_id, "author": "ada", "round": 0}

    # The convergence round waits for ada's vote too; it reaches the running process through its mailbox.
    def synthesis_up() -> bool:
        with Forge(str(tmp_path / "h.db")) as reader:
            current = reader.state(session_id).current_round
            return current is not None and current.kind == "convergence"

    assert wait_until(synthesis_up, timeout=120)
    voted = forge("vote", session_id, "--voter", "ada", "agree", "--reason", "ETags are right", "--db", "h.db",
                  cwd=tmp_path)
    assert voted.returncode == 0, voted.stderr

    out, err = run.communicate(timeout=120)
    assert run.returncode in (0, 1), err
    assert "drafts in from ada; the deliberation starts" in err
    # The convergence round's wait was said too, with the command that answers it; ada answered in time.
    vote_wait = next(line for line in err.splitlines() if "for ada's vote" in line)
    assert vote_wait.startswith("waiting up to 1m 00s for ada's vote in round 4; from another terminal: ")
    assert vote_wait.endswith(f"forge vote {session_id} --voter ada --db h.db agree|disagree --reason TEXT")
    assert "no vote from ada" not in err
    events = json_lines(out)
    assert [e["vote"] for e in events if e["type"] == "VoteRecorded" and e["voter"] == "ada"] == ["AGREE"]
    types = [e["type"] for e in events]
    assert types.index("HumanDraftAdded") < types.index("RoundStarted")  # waited for before any round
    seated = events[0]["participants"][-1]
    assert (seated["name"], seated["kind"]) == ("ada", "human")  # seated from the start, not joined later
    critiqued = [e for e in events if e["type"] == "CritiqueRecorded" and e["proposal_author"] == "ada"]
    assert len(critiqued) == 2  # both AI participants reviewed the human's draft
    assert types[-1] == "SessionEnded"


def test_a_human_who_does_not_draft_in_time_is_left_out_and_the_run_says_so(cli):
    code, out, err = cli("run", "goal", "-p", "mock:alice", "--human", "ada", "--human-timeout", "0",
                         "--max-iterations", "1")
    assert code in (0, 1), err
    assert "no draft from ada within 0 s: the deliberation goes on without it" in err
    assert json_lines(out)[-1]["type"] == "SessionEnded"


def test_constraints_are_recorded_and_bad_human_flags_are_usage_errors(cli):
    code, out, err = cli("run", "goal", "-p", "mock:alice", "--max-iterations", "1", "--constraint", "no SQL",
                         "--constraint", "one page")
    assert code in (0, 1), err
    assert json_lines(out)[0]["constraints"] == ["no SQL", "one page"]
    for args, message in ((["--human", "ada", "--human", "ada"], "given twice"),
                          (["--human", " "], "--human needs a name"),
                          (["--human", "ada", "--human-timeout", "-1"], "--human-timeout")):
        code, out, err = cli("run", "goal", "-p", "mock:alice", *args)
        assert code == 2 and message in err, err


def test_draft_takes_text_after_the_options_and_refuses_empty_or_late_drafts(cli, tmp_path):
    with Forge(str(tmp_path / "forge.db")) as engine:
        session_id = engine.create_session("goal", ["mock:alice", "mock:bob"])
    code, out, err = cli("draft", session_id, "--author", "ada", "My plan: REST.")
    assert code == 0 and json.loads(out)["round"] == 0, err
    code, out, err = cli("draft", session_id, "--author", "ada", "-", stdin="  \n")
    assert code == 2 and "the draft is empty" in err
    with Forge(str(tmp_path / "forge.db")) as engine:
        assert engine.state(session_id).drafts["ada"] == "My plan: REST."
        engine.run_round(session_id, "draft")
        engine.run_round(session_id, "critique")
    code, out, err = cli("draft", session_id, "--author", "ada", "too late")
    assert code == 2 and "drafts are closed" in err and "Traceback" not in err


def test_vote_counts_in_the_next_convergence_round(tmp_path, cli):
    db = str(tmp_path / "forge.db")
    with Forge(db) as engine:  # a session stopped after its synthesis, as a crashed or stepped one is
        session_id = engine.create_session("Design a TODO app API", ["mock:alice", "mock:bob"], seed=7, max_rounds=1)
        for kind in ("draft", "critique", "synthesis"):
            engine.run_round(session_id, kind)  # type: ignore[arg-type]
    code, out, err = cli("vote", session_id, "--voter", "ada", "disagree", "--reason", "no auth story",
                         "--concern", "say how tokens are issued")
    assert code == 0, err
    assert json.loads(out) == {"session_id": session_id, "voter": "ada", "vote": "DISAGREE", "round": 4}
    with pytest.raises(SystemExit):  # argparse: exit 2, with the choices
        cli("vote", session_id, "--voter", "ada", "maybe")

    code, out, err = cli("resume", session_id)
    assert code in (0, 1), err
    with Forge(db, create=False) as engine:
        votes = engine.state(session_id).votes_in(4)
    assert votes["ada"].vote == "DISAGREE" and votes["ada"].by_human
    assert votes["ada"].reasons == ("no auth story",) and votes["ada"].concerns == ("say how tokens are issued",)
    assert {"alice", "bob"} <= set(votes)


def test_the_run_waits_out_a_forge_draft_that_holds_the_session_at_that_moment(tmp_path):
    db = str(tmp_path / "forge.db")
    with Forge(db) as runner:
        session_id = runner.create_session("goal", ["mock:alice", "mock:bob", {"kind": "human", "name": "ada"}],
                                           max_rounds=1)
        drafter = Forge(db)
        drafter.add_human_draft(session_id, "ada", "my plan")  # its engine now drives the session (holds the lease)
        naps: list[float] = []

        def nap(seconds: float) -> None:  # the drafting process lets go while the run waits
            naps.append(seconds)
            drafter.close()

        events = list(_deliberate_when_free(runner, session_id, sleep=nap))
    assert len(naps) == 1 and type(events[-1].event).__name__ == "SessionEnded"


def test_a_draft_for_a_session_another_process_runs_reaches_that_process(cli, tmp_path):
    with Forge(str(tmp_path / "forge.db")) as runner:
        session_id = runner.create_session("goal", ["mock:alice", "mock:bob"])
        runner.add_human_draft(session_id, "bob2", "a plan")  # this engine drives the session now
        code, out, err = cli("draft", session_id, "--author", "ada", "my plan")
        assert code == 0, err  # posted to the driver's mailbox, applied there
        assert runner.state(session_id).drafts["ada"] == "my plan"


def test_human_input_an_absent_driver_never_answers_is_queued_and_says_so(cli, tmp_path, monkeypatch):
    from eventstore import LogLeases
    from forge_actors.engine import mail

    monkeypatch.setattr(mail, "ANSWER_TIMEOUT", 0.3)
    with Forge(str(tmp_path / "forge.db")) as forge:
        session_id = forge.create_session("goal", ["mock:alice", "mock:bob"])
        LogLeases(forge._store).acquire(f"session:{session_id}", "elsewhere:1:x", 600)
    code, out, err = cli("draft", session_id, "--author", "ada", "my plan")
    assert code == 2 and "did not answer" in err and "queued" in err and len(err.strip().splitlines()) == 1
