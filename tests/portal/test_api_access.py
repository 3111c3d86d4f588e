"""Access control: another user's project and everything under it is 404 (never 403, so ids
reveal nothing); an admin sees all; the owner's rows survive the attempts.

`private_urls` lists every URL of alice's things — project, case, a REAL completed run
(the tab weld at ci on 2 ranks), its artifact download, its log and its WebSocket stream:
every API entry is tried with every method by another user and must answer 404 (before
the body is read), and without credentials 401; the stream, opened by a real WebSocket
client on a real server, is closed with 4404 for another user.
"""

from __future__ import annotations

import pytest

from portal.agent_host import hub_of, start_host

from ..executors._local_helpers import tracker  # noqa: F401
from .helpers import CUSTOM_PROPERTIES, ApiClient, error_of, table_counts, thermal_spec
from .runs_helpers import LiveServer, close_code, connect, final_row, receive_until_end, tab_weld_spec

pytestmark = pytest.mark.timeout(300)

METHODS = ("GET", "PATCH", "PUT", "DELETE", "POST")


def completed_run(app, owner, project_id: int, tracker) -> dict:  # noqa: F811
    """A real run of the tab weld at ci (2 ranks) in `project_id`, submitted over the API by
    `owner` through a hosted agent and finished; its detail (metrics, artifacts)."""
    tracker.roots.append(app.extensions["weldsim"].runs_root)
    case = owner.post(f"/api/v1/projects/{project_id}/cases", json={"name": "tab", "spec": tab_weld_spec()})
    assert case.status_code == 201, case.get_json()
    host = start_host(app, reconcile_s=0.5, hub_poll_s=0.2)
    try:
        answer = owner.post(f"/api/v1/projects/{project_id}/cases/{case.get_json()['id']}/runs", json={"ranks": 2})
        assert answer.status_code == 202, answer.get_json()
        row = final_row(app, answer.get_json()["run_id"])
        assert row["state"] == "completed", row["reason"]
    finally:
        host.stop()
    return owner.get(f"/api/v1/runs/{row['run_id']}").get_json()


@pytest.fixture
def alices_things(alice):
    project = alice.post("/api/v1/projects", json={"name": "Tab weld", "application_type": "li_battery_tab"}).get_json()
    case = alice.post(f"/api/v1/projects/{project['id']}/cases",
                      json={"name": "thermal", "spec": thermal_spec()}).get_json()
    material = alice.post("/api/v1/materials/custom",
                          json={"material_id": "ti_b", "properties": CUSTOM_PROPERTIES}).get_json()
    token = alice.post("/api/v1/auth/tokens", json={"name": "laptop"}).get_json()
    return {"project": project, "case": case, "material": material, "token": token}


@pytest.fixture
def alices_run(alice, web_app, alices_things, tracker):  # noqa: F811
    """alices_things with a real completed run of hers."""
    run = completed_run(web_app, alice, alices_things["project"]["id"], tracker)
    assert run["metrics"] and run["artifacts"], run
    try:
        yield {**alices_things, "run": run}
    finally:
        hub_of(web_app).stop()


def private_urls(things) -> list[str]:
    """Every URL of a thing that belongs to alice: project, case, run, artifact, log, stream."""
    p, c = things["project"]["id"], things["case"]["id"]
    run = things["run"]
    return [
        f"/api/v1/projects/{p}",
        f"/api/v1/projects/{p}/cases",
        f"/api/v1/projects/{p}/cases/{c}",
        f"/api/v1/projects/{p}/runs",
        f"/api/v1/projects/{p}/cases/{run['case_id']}/runs",
        f"/api/v1/materials/custom/{things['material']['id']}",
        f"/api/v1/auth/tokens/{things['token']['id']}",
        f"/api/v1/runs/{run['run_id']}",
        f"/api/v1/runs/{run['run_id']}/cancel",
        f"/api/v1/runs/{run['run_id']}/log",
        f"/api/v1/runs/{run['run_id']}/log?lines=5",
        *(a["url"] for a in run["artifacts"][:3]),
        f"/ws/runs/{run['run_id']}",
    ]


def test_alice_gets_her_urls_and_no_credentials_get_401(alice, web_app, alices_run):
    """The URLs are real: alice gets them (so bob's 404s below are not missing pages);
    without credentials every one answers 401, and the stream closes with 1008."""
    run = alices_run["run"]
    for url in private_urls(alices_run):
        if url.startswith(("/ws/", "/api/v1/auth/tokens/")):  # tokens: DELETE only (tested elsewhere)
            continue
        method = "POST" if url.endswith("/cancel") else "GET"
        response = alice.request(method, url)
        assert response.status_code == 200, (url, response.status_code)
    assert alice.get(f"/api/v1/runs/{run['run_id']}").get_json()["state"] == "completed"
    with LiveServer(web_app) as server:
        messages = receive_until_end(connect(server.ws_url(run["run_id"]), token=alice.token), 30)
        assert messages[-1]["type"] == "completed" and messages[-1]["status"] == "completed", messages[-1]
    anonymous = ApiClient(web_app)
    for url in private_urls(alices_run):
        if url.startswith("/ws/"):
            continue
        for method in METHODS:
            response = anonymous.request(method, url, json={"name": "mine now"})
            assert response.status_code == 401, (method, url, response.status_code)
            assert error_of(response)["code"] == "unauthorized"
    with LiveServer(web_app) as server:
        stream = server.ws_url(run["run_id"])
        assert close_code(connect(stream, token="wsk_not-a-token")) == 1008
        assert close_code(connect(stream, headers={"Authorization": "Bearer wsk_nope"}), timeout=10) == 1008


def test_another_user_gets_404_for_everything_of_alice(alice, bob, web_app, alices_run):
    before = table_counts(web_app)
    streams = [url for url in private_urls(alices_run) if url.startswith("/ws/")]
    assert streams
    with LiveServer(web_app) as server:
        for url in streams:  # the stream: a real client, bob's token in the first message or the header
            assert close_code(connect(f"ws://127.0.0.1:{server.port}{url}", token=bob.token)) == 4404
            assert close_code(connect(f"ws://127.0.0.1:{server.port}{url}",
                                      headers={"Authorization": f"Bearer {bob.token}"})) == 4404
    for url in private_urls(alices_run):
        if url.startswith("/ws/"):
            continue
        for method in METHODS:
            response = bob.request(method, url, json={"name": "mine now"})
            if response.status_code == 405:  # this method does not exist on this URL for anyone
                assert alice.request(method, url, json={}).status_code == 405
                continue
            assert response.status_code == 404, (method, url, response.get_json())
            assert error_of(response)["code"] == "not_found"
            if method != "GET":  # whatever the body: 404 first
                garbage = bob.request(method, url, data="{not json", content_type="application/json")
                assert garbage.status_code == 404, (method, url)
    assert table_counts(web_app) == before
    assert bob.get("/api/v1/projects").get_json()["total"] == 0
    assert bob.get("/api/v1/materials/custom").get_json()["items"] == []
    assert all(not m["material_id"] == "ti_b" for m in bob.get("/api/v1/materials").get_json()["items"])


def test_a_missing_and_a_foreign_project_look_the_same(bob, alices_things):
    foreign = bob.get(f"/api/v1/projects/{alices_things['project']['id']}")
    missing = bob.get("/api/v1/projects/987654")
    assert foreign.status_code == missing.status_code == 404
    assert error_of(foreign)["message"].replace(str(alices_things["project"]["id"]), "N") == \
        error_of(missing)["message"].replace("987654", "N")


def test_another_users_custom_material_cannot_be_used_in_a_case(bob, alices_things):
    pid = bob.post("/api/v1/projects", json={"name": "Mine", "application_type": "horn_design"}).get_json()["id"]
    response = bob.post(f"/api/v1/projects/{pid}/cases",
                        json={"name": "t", "spec": thermal_spec(materials={"horn": "ti_b"})})
    assert response.status_code == 422 and error_of(response)["field"] == "spec.materials.horn"


def test_an_admin_sees_every_project(admin, alices_things):
    p, c = alices_things["project"]["id"], alices_things["case"]["id"]
    assert admin.get("/api/v1/projects").get_json()["total"] == 1
    assert admin.get(f"/api/v1/projects/{p}").get_json()["name"] == "Tab weld"
    assert admin.get(f"/api/v1/projects/{p}/cases/{c}").status_code == 200
    assert admin.get(f"/api/v1/materials/custom/{alices_things['material']['id']}").status_code == 200
    assert admin.get("/api/v1/materials/custom?all_users=true").get_json()["items"][0]["material_id"] == "ti_b"
    assert admin.patch(f"/api/v1/projects/{p}", json={"description": "checked"}).status_code == 200


def test_all_users_is_only_for_admins(bob, alices_things):
    assert bob.get("/api/v1/materials/custom?all_users=true").get_json()["items"] == []
