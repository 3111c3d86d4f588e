"""Workflows over HTTP, on SQLite and PostgreSQL: node-level validation errors (nothing
stored), access control, and REAL executions through the agent host — geometry generated
and meshed out of process, a case, a run on the LocalExecutor, post-processing — with
node statuses from GET and from /ws/workflows/<id>.

The DAG is the tab-weld example at its ci preset split into steps (tests/test_workflow.py).
The test process never imports mpi4py or dolfinx: geometry jobs and runs are subprocesses.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from portal import ws
from portal.agent_host import hub_of, start_host
from portal.api import runs as runs_api
from portal.extensions import db
from portal.models import GeometryVersion, SimulationCase, Workflow
from weldsim_hpc.states import RunState

from ..executors._local_helpers import tracker, wait_for  # noqa: F401
from ..test_workflow import tab_weld_nodes
from .helpers import CUSTOM_PROPERTIES, error_of, table_counts
from .runs_helpers import (LiveServer, close_code, connect, final_row, receive_one, receive_until_end,
                           row_of)

pytestmark = pytest.mark.timeout(600)


def new_project(client, name="Tab welds") -> int:
    answer = client.post("/api/v1/projects", json={"name": name, "application_type": "li_battery_tab"})
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["id"]


def nodes_with(change=None) -> list[dict[str, Any]]:
    nodes = copy.deepcopy(tab_weld_nodes())
    if change is not None:
        change({n["id"]: n for n in nodes})
    return nodes


def details(answer) -> dict[str, str]:
    """field -> message of a 422 answer's details."""
    assert answer.status_code == 422, answer.get_json()
    return {d["field"]: d["message"] for d in error_of(answer)["details"]}


# --- validation: node-level errors, nothing stored ------------------------------------------------

def test_a_cycle_a_missing_input_and_bad_configs_give_node_level_errors(alice, web_app):
    pid = new_project(alice)
    url = f"/api/v1/projects/{pid}/workflows"
    before = table_counts(web_app)

    cycle = alice.post(url, json={"name": "cycle", "nodes": nodes_with(lambda b: b["geo"].update(inputs=["mesh"]))})
    problems = [(d["field"], d["message"]) for d in error_of(cycle)["details"]]
    assert ("nodes.geo.inputs", "cycle: geo → mesh → geo") in problems
    assert ("nodes.mesh.inputs", "cycle: geo → mesh → geo") in problems
    assert ("nodes.geo.inputs", "a geometry node takes no mesh input (its inputs: none)") in problems
    assert cycle.status_code == 422 and error_of(cycle)["code"] == "invalid"

    missing = alice.post(url, json={"name": "missing", "nodes": nodes_with(lambda b: b["solve"].update(
        inputs=["mesh", "bcs"]))})
    assert details(missing) == {"nodes.solve.inputs": "missing input: a solver node needs at least 1 material "
                                                      "input (got none)"}
    assert error_of(missing)["field"] == "nodes.solve.inputs"

    def bad(b):
        b["bcs"]["config"]["boundary_conditions"][2]["h_W_m2K"] = -15.0
        b["geo"]["config"]["n_foils"] = 0
    found = details(alice.post(url, json={"name": "bad", "nodes": nodes_with(bad)}))
    assert set(found) == {"nodes.bcs.config.boundary_conditions[2].h_W_m2K", "nodes.geo.config.n_foils"}

    # a configuration each node accepts alone, but not the solver's assembled case
    wrong_face = nodes_with(lambda b: b["bcs"]["config"]["boundary_conditions"][0].update(boundary="weld_face"))
    found = details(alice.post(url, json={"name": "wrong face", "nodes": wrong_face}))
    assert list(found) == ["nodes.bcs.config.boundary_conditions[0].boundary"]
    assert "unknown boundary 'weld_face'" in found["nodes.bcs.config.boundary_conditions[0].boundary"]

    # the dry run answers the same, and nothing was stored by any of them
    check = alice.post(f"{url}/validate", json={"nodes": nodes_with(lambda b: b["mesh"].update(inputs=[]))})
    assert details(check) == {"nodes.mesh.inputs": "missing input: a mesh node needs one geometry input (got none)"}
    for body in ({"name": "x", "nodes": "geo → mesh"}, {"name": "x", "nodes": []},
                 {"name": "../x", "nodes": nodes_with()}, {"name": "x", "nodes": nodes_with(), "dag": {}},
                 {"nodes": nodes_with()}):
        assert alice.post(url, json=body).status_code == 422, body
    assert table_counts(web_app) == before

    ok = alice.post(f"{url}/validate", json={"nodes": nodes_with()})
    assert ok.status_code == 200 and ok.get_json()["valid"] is True
    assert ok.get_json()["order"].index("mesh") > ok.get_json()["order"].index("geo")
    assert table_counts(web_app) == before


def test_custom_materials_are_the_owners(alice, bob):
    """A material node may name the owner's custom material; another user's id is unknown."""
    assert alice.post("/api/v1/materials/custom", json={"material_id": "anvil_mine",
                                                        "properties": CUSTOM_PROPERTIES}).status_code == 201
    mine = nodes_with(lambda b: b["mat"]["config"]["materials"].update(anvil="anvil_mine"))
    pid = new_project(alice)
    created = alice.post(f"/api/v1/projects/{pid}/workflows", json={"name": "mine", "nodes": mine})
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["state"] == "draft" and body["progress_ws"] == f"/ws/workflows/{body['id']}"
    assert body["nodes"] == [{**n, "inputs": n.get("inputs", [])} for n in mine]  # as given, inputs spelt out
    assert set(body["node_status"]) == {n["id"] for n in mine}
    assert all(s["status"] == "pending" for s in body["node_status"].values())
    bobs = new_project(bob)
    found = details(bob.post(f"/api/v1/projects/{bobs}/workflows", json={"name": "theirs", "nodes": mine}))
    assert list(found) == ["nodes.mat.config.materials.anvil"]
    assert "unknown material 'anvil_mine'" in found["nodes.mat.config.materials.anvil"]


def test_access_control(alice, bob, admin, web_app):
    pid = new_project(alice)
    created = alice.post(f"/api/v1/projects/{pid}/workflows", json={"name": "wf", "nodes": nodes_with()}).get_json()
    url = f"/api/v1/projects/{pid}/workflows/{created['id']}"
    assert alice.get(url).status_code == 200
    assert alice.get(f"/api/v1/projects/{pid}/workflows").get_json()["total"] == 1
    before = table_counts(web_app)
    for method, suffix in (("get", ""), ("delete", ""), ("post", "/execute"), ("post", "/cancel")):
        answer = getattr(bob, method)(url + suffix)
        assert answer.status_code == 404 and error_of(answer)["code"] == "not_found", (method, suffix)
    assert bob.get(f"/api/v1/projects/{pid}/workflows").status_code == 404
    assert bob.post(f"/api/v1/projects/{pid}/workflows", json={"name": "x", "nodes": nodes_with()}).status_code == 404
    bobs = new_project(bob)  # alice's workflow under bob's project: not there either
    assert bob.get(f"/api/v1/projects/{bobs}/workflows/{created['id']}").status_code == 404
    assert alice.get(f"/api/v1/projects/{bobs}/workflows/{created['id']}").status_code == 404
    anonymous = web_app.test_client()
    assert anonymous.get(url).status_code == 401
    assert anonymous.post(url + "/execute").status_code == 401
    assert admin.get(url).status_code == 200  # an admin sees every project
    before["projects"] += 1  # bob's
    assert table_counts(web_app) == before
    # without an agent host in this process, executing answers 503 and changes nothing
    answer = alice.post(url + "/execute")
    assert answer.status_code == 503 and error_of(answer)["code"] == "unavailable"
    assert alice.get(url).get_json()["state"] == "draft"
    assert alice.delete(url).status_code == 204 and alice.get(url).status_code == 404


@pytest.fixture
def ws_app(web_app):
    runs_api.init_app(web_app)
    ws.init_app(web_app)
    yield web_app
    hub_of(web_app).stop()


def test_websocket_authentication_and_visibility(ws_app, alice, bob):
    pid = new_project(alice)
    wid = alice.post(f"/api/v1/projects/{pid}/workflows", json={"name": "wf", "nodes": nodes_with()}).get_json()["id"]
    with LiveServer(ws_app) as server:
        url = f"ws://127.0.0.1:{server.port}/ws/workflows/{wid}"
        nobody = connect(url, token="wsk_not-a-token")
        assert close_code(nobody) == 1008
        stranger = connect(url, token=bob.token)
        assert close_code(stranger) == 4404
        missing = connect(f"ws://127.0.0.1:{server.port}/ws/workflows/999999", token=alice.token)
        assert close_code(missing) == 4404
        owner = connect(url, token=alice.token)  # a draft: nothing yet, but pings are answered
        owner.send('{"type": "ping"}')
        assert receive_one(owner, 5) == {"type": "pong"}
        owner.close()


# --- execution ---------------------------------------------------------------------------------------

def diverging(b: dict[str, dict[str, Any]]) -> None:
    """The solver node's CG gets one iteration: the run fails ("CG did not converge")."""
    b["solve"]["config"]["solver"] = {"max_iterations": 1, "rtol": 1e-14, "atol": 1e-30}


def test_executing_a_valid_dag_and_a_failing_one(ws_app, alice, tracker):  # noqa: F811
    settings = ws_app.extensions["weldsim"]
    tracker.roots.append(settings.runs_root)
    pid = new_project(alice)
    url = f"/api/v1/projects/{pid}/workflows"
    good = alice.post(url, json={"name": "tab weld", "nodes": nodes_with()}).get_json()
    bad = alice.post(url, json={"name": "diverging", "nodes": nodes_with(diverging)})
    assert bad.status_code == 201, bad.get_json()  # sound as a DAG: it fails only when it runs
    bad = bad.get_json()
    host = start_host(ws_app, reconcile_s=0.5, hub_poll_s=0.2, workflow_options={"poll_s": 0.3})
    try:
        with LiveServer(ws_app) as server:
            started = time.monotonic()
            early = connect(f"ws://127.0.0.1:{server.port}/ws/workflows/{good['id']}", token=alice.token)
            answer = alice.post(f"{url}/{good['id']}/execute")
            assert answer.status_code == 202, answer.get_json()
            assert answer.get_json()["state"] == "running"
            assert all(s["status"] == "pending" for s in answer.get_json()["node_status"].values())
            assert alice.post(f"{url}/{good['id']}/execute").status_code == 409  # running already
            assert alice.delete(f"{url}/{good['id']}").status_code == 409
            assert alice.post(f"{url}/{bad['id']}/execute").status_code == 202

            messages = receive_until_end(early, 420)
            final = messages[-1]
            assert final["type"] == "completed" and final["status"] == "completed", final
            assert final["workflow_id"] == good["id"] and final["elapsed_s"] > 0
            assert final["nodes"] == {n["id"]: "completed" for n in nodes_with()}
            progress = messages[:-1]
            assert all(m["type"] == "progress" and m["workflow_id"] == good["id"] for m in progress)
            seen = [(m["node_id"], m["status"]) for m in progress]
            order = alice.get(f"{url}/{good['id']}").get_json()["order"]
            for node_id in order:  # every node went running → completed, in the run order
                assert (node_id, "running") in seen and (node_id, "completed") in seen
                assert seen.index((node_id, "running")) < seen.index((node_id, "completed"))
            completions = [n for n, s in seen if s == "completed"]
            assert completions == order
            assert [m["percent"] for m in progress] == sorted(m["percent"] for m in progress)
            assert progress[-1]["percent"] == 100.0
            assert any(m.get("run_id") for m in progress if m["node_id"] == "solve")

            body = alice.get(f"{url}/{good['id']}").get_json()
            assert body["state"] == "completed" and body["execution"]["error"] is None
            status = body["node_status"]
            assert {i: s["status"] for i, s in status.items()} == final["nodes"]
            run_id = status["solve"]["result"]["run_id"]
            row = final_row(ws_app, run_id, 10)
            assert row["state"] == RunState.COMPLETED.value
            metrics = status["post"]["result"]["metrics"]
            assert set(metrics) == {"T_max_K", "probe.weld_centre.temperature_K"}
            assert metrics["T_max_K"]["unit"] == "K" and metrics["T_max_K"]["value"] == row["metrics"]["T_max_K"][0]
            assert metrics["T_max_K"]["value"] > 300.0  # the weld heated up
            run = alice.get(f"/api/v1/runs/{run_id}").get_json()
            assert run["case_id"] == status["solve"]["result"]["case_id"] and run["state"] == "completed"
            with ws_app.app_context():
                try:
                    version = db.session.get(GeometryVersion, status["geo"]["result"]["geometry_version_id"])
                    assert version.project_id == pid and version.status == "meshed"
                    assert status["mesh"]["result"]["geometry_version_id"] == version.id
                    case = db.session.get(SimulationCase, run["case_id"])
                    assert case.geometry_version_id == version.id and case.spec["analysis"] == "thermal_transient"
                finally:
                    db.session.remove()

            # the failing workflow: the solver's run fails, post_process is skipped naming it
            deadline = time.monotonic() + 420
            while (body := alice.get(f"{url}/{bad['id']}").get_json())["state"] == "running":
                assert time.monotonic() < deadline, body["node_status"]
                time.sleep(0.5)
            status = body["node_status"]
            assert body["state"] == "failed", status
            assert {i: s["status"] for i, s in status.items()} == {
                "geo": "completed", "mesh": "completed", "mat": "completed", "bcs": "completed",
                "solve": "failed", "post": "skipped"}
            bad_run = status["solve"]["result"]["run_id"]
            assert status["solve"]["reason"].startswith(f"run {bad_run} failed: ")
            assert "did not converge" in status["solve"]["reason"], status["solve"]["reason"]
            assert status["post"]["reason"] == "not run: node 'solve' (solver) failed"
            assert status["post"]["cause"] == "solve" and status["post"]["result"] == {}
            assert body["execution"]["error"].startswith("node 'solve' failed: run ")

            # a late joiner gets the whole history, then the terminal error
            late = connect(f"ws://127.0.0.1:{server.port}/ws/workflows/{bad['id']}", token=alice.token)
            replay = receive_until_end(late, 30)
            assert replay[-1]["type"] == "error" and replay[-1]["status"] == "failed"
            assert replay[-1]["error"] == body["execution"]["error"]
            assert replay[-1]["nodes"]["post"] == "skipped"
            assert [(m["node_id"], m["status"]) for m in replay[:-1]][-2:] == [("solve", "failed"), ("post", "skipped")]
            assert time.monotonic() - started < 420
    finally:
        host.stop()
    with ws_app.app_context():
        try:
            assert {w.state for w in db.session.query(Workflow)} == {"completed", "failed"}
        finally:
            db.session.remove()


def test_a_workflow_survives_a_portal_restart_and_can_be_cancelled(ws_app, alice, tracker):  # noqa: F811
    """The host stops while the solver node waits for its run: the workflow stays running;
    the next host resumes it (same run), and cancelling it cancels the run and the rest."""
    settings = ws_app.extensions["weldsim"]
    tracker.roots.append(settings.runs_root)
    pid = new_project(alice)
    url = f"/api/v1/projects/{pid}/workflows"
    nodes = nodes_with(lambda b: b["solve"]["config"].update(time=ENDLESS))
    wid = alice.post(url, json={"name": "long", "nodes": nodes}).get_json()["id"]

    def solver_status() -> dict[str, Any]:
        return alice.get(f"{url}/{wid}").get_json()["node_status"]["solve"]

    host = start_host(ws_app, reconcile_s=0.5, hub_poll_s=0.2, workflow_options={"poll_s": 0.3})
    try:
        assert alice.post(f"{url}/{wid}/execute").status_code == 202
        wait_for(lambda: solver_status()["result"].get("run_id"), 300, "the solver node's run")
        run_id = solver_status()["result"]["run_id"]
        wait_for(lambda: row_of(ws_app, run_id)["state"] == "running", 300, "the run to be running")
    finally:
        host.stop()
    body = alice.get(f"{url}/{wid}").get_json()
    assert body["state"] == "running" and body["node_status"]["solve"]["status"] == "running"
    assert row_of(ws_app, run_id)["state"] == "running"  # runs go on without the portal

    host = start_host(ws_app, reconcile_s=0.5, hub_poll_s=0.2, workflow_options={"poll_s": 0.3})
    try:
        wait_for(lambda: host.workflows.is_active(wid), 10, "the workflow to be resumed")
        assert solver_status()["status"] == "running" and solver_status()["result"]["run_id"] == run_id
        answer = alice.post(f"{url}/{wid}/cancel")
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        assert body["state"] == "cancelled" and body["execution"]["error"] == "cancelled on request"
        status = body["node_status"]
        assert status["solve"]["status"] == "cancelled" and status["solve"]["reason"] == "cancelled on request"
        assert status["post"] == {**status["post"], "status": "cancelled", "cause": "solve",
                                  "reason": "not run: node 'solve' (solver) cancelled"}
        assert all(status[i]["status"] == "completed" for i in ("geo", "mesh", "mat", "bcs"))
        assert final_row(ws_app, run_id, 60)["state"] == "cancelled"
        assert len({m["run_id"] for m in body_runs(alice, pid)}) == 1  # resumed, not submitted again
        # an ended workflow can be cancelled again (no-op), executed again, or deleted
        assert alice.post(f"{url}/{wid}/cancel").get_json()["state"] == "cancelled"
        assert alice.delete(f"{url}/{wid}").status_code == 204
    finally:
        host.stop()


#: 30 000 steps: minutes on any machine; the test cancels the run long before it ends
ENDLESS = {"end_s": 300.0, "dt_s": 0.01, "checkpoint_every": 1000}


def body_runs(client, pid: int) -> list[dict[str, Any]]:
    return client.get(f"/api/v1/projects/{pid}/runs").get_json()["items"]
