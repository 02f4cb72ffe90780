"""POST /sessions/{id}/fork and GET /compare over real HTTP: a fork (and its refusals, nothing written),
and two sessions compared as JSON."""

from __future__ import annotations

import httpx
import pytest

from forge_actors.engine import Forge
from forge_actors.surfaces.server.app import API
from forge_actors.surfaces.server.runner import ServerThread

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server over a log holding one finished session of three mocks (4 rounds)."""
    forge = Forge(str(tmp_path_factory.mktemp("fork") / "forge.db"))
    parent = forge.create_session("Design a TODO app API", ["mock:alice", "mock:bob", "mock:carol"], seed=7,
                                  max_iterations=2)
    list(forge.deliberate(parent))
    with ServerThread(forge) as running:
        yield running, forge, parent
    forge.close()


def post(running: ServerThread, path: str, body: dict) -> httpx.Response:
    return httpx.post(running.url + API + path, json=body, headers=JSON, timeout=30)


def test_a_fork_is_created_with_its_changes_and_deliberates(server):
    running, forge, parent = server
    response = post(running, f"/sessions/{parent}/fork", {
        "at_round": 2, "participants": ["mock:dave"], "drop": ["carol"], "constraints": ["no SQL"],
        "config": {"convergence_threshold": 0.9}, "deliberate": True})
    assert response.status_code == 201, response.text
    document = response.json()
    fork = document["session_id"]
    assert response.headers["location"] == f"{API}/sessions/{fork}"
    assert document["forked_from"]["parent_id"] == parent and document["forked_from"]["round"] == 2
    assert document["constraints"] == ["no SQL"] and document["settings"]["convergence_threshold"] == 0.9
    list(forge.deliberate(fork))  # it runs here, started by the request: follow it to its end
    assert forge.state(fork).ended and "dave" in forge.state(fork).rounds[3].participants
    listed = httpx.get(running.url + API + "/sessions", timeout=30).json()
    row = next(r for r in listed if r["session_id"] == fork)
    assert (row["parent_id"], row["forked_at_round"]) == (parent, 2)


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"at_round": 9}, 422, "round 9 is past its end"),
    ({"at_round": 0}, 422, "the request body is invalid"),
    ({"at_round": 2, "drop": ["zed"]}, 422, "cannot drop 'zed'"),
    ({"at_round": 2, "participants": ["cli:x?command=rm -rf /"]}, 422, ""),
    ({"at_round": 2, "config": {"workspace": "/"}}, 422, "workspace"),
    ({"at_round": 2, "config": {"max_iterations": 1000}}, 422, "max_iterations"),
    ({"at_round": 2, "config": {"convergence_threshold": "high"}}, 422, "config.convergence_threshold"),
    ({"at_round": 2, "color": "blue"}, 422, "color"),
])
def test_refusals_write_nothing(server, body, status, says):
    running, forge, parent = server
    before = forge.sessions()
    response = post(running, f"/sessions/{parent}/fork", body)
    assert response.status_code == status, response.text
    assert says in response.text and forge.sessions() == before


def test_a_fork_of_a_missing_session_is_404(server):
    running, _, _ = server
    assert post(running, "/sessions/nope/fork", {"at_round": 1}).status_code == 404


def test_compare_is_the_comparison_as_json(server):
    running, forge, parent = server
    fork = forge.fork(parent, at_round=2, drop=["carol"])
    list(forge.deliberate(fork))
    response = httpx.get(running.url + API + "/compare", params={"a": parent, "b": fork}, timeout=30)
    assert response.status_code == 200, response.text
    comparison = response.json()
    assert comparison["schema"] == "forge_actors.comparison/1"
    assert (comparison["a"]["session_id"], comparison["b"]["session_id"]) == (parent, fork)
    assert comparison["first_difference"]["round"] == 3  # the copied rounds 1..2 are the same
    assert httpx.get(running.url + API + "/compare", params={"a": parent, "b": "nope"}, timeout=30).status_code == 404
    missing = httpx.get(running.url + API + "/compare", params={"a": parent}, timeout=30)
    assert missing.status_code == 422 and missing.json()["detail"][0]["field"] == "b"
