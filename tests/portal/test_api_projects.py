"""/api/v1/projects over HTTP: CRUD, pagination, filters, and deletion with runs."""

from __future__ import annotations

import pytest

from portal.extensions import db
from portal.models import Run, RunState
from portal.services.paths import project_dir, run_dir
from weldsim_hpc.run_paths import new_run_id

from .helpers import error_of, table_counts, thermal_spec

TAB = {"name": "Tab weld 4x Cu", "application_type": "li_battery_tab", "description": "4 Cu foils on Ni"}


def test_create_get_update_delete(alice):
    response = alice.post("/api/v1/projects", json=TAB)
    assert response.status_code == 201
    project = response.get_json()
    assert response.headers["Location"] == f"/api/v1/projects/{project['id']}"
    assert {k: project[k] for k in TAB} == TAB and project["owner_id"] == alice.user_id
    assert alice.get(f"/api/v1/projects/{project['id']}").get_json() == project
    updated = alice.patch(f"/api/v1/projects/{project['id']}", json={"description": "6 foils"}).get_json()
    assert updated["description"] == "6 foils" and updated["name"] == TAB["name"]
    assert alice.delete(f"/api/v1/projects/{project['id']}").status_code == 204
    assert alice.get(f"/api/v1/projects/{project['id']}").status_code == 404


def test_list_pages_filters_and_searches(alice):
    for i in range(7):
        alice.post("/api/v1/projects", json={"name": f"Tab {i}", "application_type": "li_battery_tab"})
    alice.post("/api/v1/projects", json={"name": "Booster horn", "application_type": "horn_design"})
    page = alice.get("/api/v1/projects?page=2&per_page=3&application_type=li_battery_tab").get_json()
    assert (page["page"], page["per_page"], page["total"]) == (2, 3, 7)
    assert [p["name"] for p in page["items"]] == ["Tab 3", "Tab 2", "Tab 1"]
    assert [p["name"] for p in alice.get("/api/v1/projects?q=BOOSTER").get_json()["items"]] == ["Booster horn"]
    assert alice.get("/api/v1/projects").get_json()["per_page"] == 20
    for query, field in (("per_page=101", "per_page"), ("page=0", "page"), ("application_type=welding",
                                                                           "application_type"),
                         ("page=two", "page"), ("sort=name", "sort")):
        response = alice.get(f"/api/v1/projects?{query}")
        assert response.status_code == 422 and error_of(response)["field"] == field, query


def test_duplicate_names_are_409_with_the_field(alice):
    alice.post("/api/v1/projects", json=TAB)
    response = alice.post("/api/v1/projects", json=TAB)
    assert response.status_code == 409 and error_of(response)["field"] == "name"


def test_null_is_not_a_name(alice):
    pid = alice.post("/api/v1/projects", json=TAB).get_json()["id"]
    response = alice.patch(f"/api/v1/projects/{pid}", json={"name": None})
    assert response.status_code == 422 and error_of(response)["field"] == "name"


def add_runs(app, project_id: int, case_id: int, states: list[str]) -> list[str]:
    """Run rows (as the runs service will make them) and their directories."""
    settings = app.extensions["weldsim"]
    with app.app_context():
        runs = [Run(run_id=new_run_id(), project_id=project_id, case_id=case_id, state=s) for s in states]
        db.session.add_all(runs)
        db.session.commit()
        ids = [r.run_id for r in runs]
        db.session.remove()
    for run_id in ids:
        run_dir(settings.runs_root, run_id).mkdir(parents=True)
    return ids


class RecordingAgentHost:
    """Stands in for the hosted run agent: records cancel_run calls and marks runs cancelled."""

    def __init__(self, app):
        self.app, self.cancelled = app, []

    def cancel_run(self, run_id: str) -> None:
        self.cancelled.append(run_id)
        run = db.session.get(Run, run_id)
        run.state = RunState.CANCELLED.value
        db.session.commit()


@pytest.fixture
def project_with_runs(alice, web_app):
    pid = alice.post("/api/v1/projects", json=TAB).get_json()["id"]
    cid = alice.post(f"/api/v1/projects/{pid}/cases", json={"name": "t", "spec": thermal_spec()}).get_json()["id"]
    run_ids = add_runs(web_app, pid, cid, ["running", "completed"])
    files = project_dir(web_app.extensions["weldsim"].storage_root, pid)
    files.mkdir(parents=True)
    return pid, run_ids, files


def test_delete_with_unfinished_runs_is_409_and_changes_nothing(alice, web_app, project_with_runs):
    pid, run_ids, files = project_with_runs
    before = table_counts(web_app)
    response = alice.delete(f"/api/v1/projects/{pid}")
    assert response.status_code == 409 and "cancel_runs=true" in error_of(response)["message"]
    assert table_counts(web_app) == before and files.is_dir()
    response = alice.delete(f"/api/v1/projects/{pid}?cancel_runs=true")  # no agent hosted here
    assert response.status_code == 503 and error_of(response)["code"] == "unavailable"
    assert table_counts(web_app) == before


def test_cancel_runs_goes_through_the_hosted_agent(alice, web_app, project_with_runs):
    pid, run_ids, files = project_with_runs
    host = web_app.extensions["weldsim_agent_host"] = RecordingAgentHost(web_app)
    assert alice.delete(f"/api/v1/projects/{pid}?cancel_runs=true").status_code == 204
    assert host.cancelled == run_ids[:1]
    runs_root = web_app.extensions["weldsim"].runs_root
    assert not files.exists() and not any(run_dir(runs_root, r).exists() for r in run_ids)
    assert table_counts(web_app)["runs"] == 0


def test_deleting_a_case_follows_the_same_rule(alice, web_app, project_with_runs):
    pid, run_ids, _ = project_with_runs
    cid = alice.get(f"/api/v1/projects/{pid}/cases").get_json()["items"][0]["id"]
    assert alice.delete(f"/api/v1/projects/{pid}/cases/{cid}").status_code == 409
    web_app.extensions["weldsim_agent_host"] = RecordingAgentHost(web_app)
    assert alice.delete(f"/api/v1/projects/{pid}/cases/{cid}?cancel_runs=1").status_code == 204
    assert table_counts(web_app)["runs"] == 0
    assert alice.get(f"/api/v1/projects/{pid}").status_code == 200  # the project stays
