"""Projects service: ownership, listing, updates, and deletion with runs and files."""

from __future__ import annotations

import pytest

from portal.models import Project, Run, RunState
from portal.services import cases, projects
from portal.services.errors import Conflict, Invalid, NotFound, Unavailable
from portal.services.paths import project_dir, run_dir
from weldsim_hpc.errors import WeldSimError
from weldsim_hpc.run_paths import new_run_id

from .helpers import counts, make_user, thermal_spec


class RecordingCanceller:
    """Stands in for the run agent's cancel_run: records the ids, marks the runs cancelled."""

    def __init__(self, session, fail_on: str | None = None):
        self.session, self.fail_on, self.cancelled = session, fail_on, []

    def __call__(self, run_id: str) -> None:
        if run_id == self.fail_on:
            raise WeldSimError("the scheduler did not answer")
        self.cancelled.append(run_id)
        self.session.get(Run, run_id).state = RunState.CANCELLED.value
        self.session.commit()


@pytest.fixture
def roots(tmp_path):
    return {"runs_root": tmp_path / "runs", "storage_root": tmp_path / "storage"}


def project_with_runs(session, owner, roots, states):
    project = projects.create_project(session, owner, name="Horn 20 kHz", application_type="horn_design")
    case = cases.create_case(session, owner, project.id, spec=thermal_spec(), name="thermal",
                             storage_root=roots["storage_root"])
    runs = [Run(run_id=new_run_id(), project_id=project.id, case_id=case.id, state=s) for s in states]
    session.add_all(runs)
    session.commit()
    for run in runs:
        path = run_dir(roots["runs_root"], run.run_id)
        path.mkdir(parents=True)
        (path / "case.json").write_text("{}")
    files = project_dir(roots["storage_root"], project.id)
    files.mkdir(parents=True)
    (files / "horn.msh").write_text("mesh")
    return project, [r.run_id for r in runs]


def test_owner_sees_own_projects_others_get_not_found_admin_sees_all(db_session):
    alice = make_user(db_session, "alice@example.com")
    bob = make_user(db_session, "bob@example.com")
    boss = make_user(db_session, "boss@example.com", admin=True)
    mine = projects.create_project(db_session, alice, name="Tab weld", application_type="li_battery_tab")
    assert projects.get_project(db_session, alice, mine.id) == mine
    with pytest.raises(NotFound, match=f"project {mine.id} not found"):
        projects.get_project(db_session, bob, mine.id)
    with pytest.raises(NotFound, match="project 999999 not found"):
        projects.get_project(db_session, bob, 999999)
    assert projects.get_project(db_session, boss, mine.id) == mine
    assert projects.list_projects(db_session, bob).total == 0
    assert [p.id for p in projects.list_projects(db_session, boss).items] == [mine.id]
    with pytest.raises(NotFound):
        projects.update_project(db_session, bob, mine.id, {"name": "taken over"})


def test_list_filters_searches_and_pages(db_session):
    user = make_user(db_session, "eng@example.com")
    for i in range(5):
        projects.create_project(db_session, user, name=f"Tab weld {i}", application_type="li_battery_tab")
    projects.create_project(db_session, user, name="Horn 100% ready_", application_type="horn_design")
    page = projects.list_projects(db_session, user, page=2, per_page=2, application_type="li_battery_tab")
    assert (page.total, page.page, page.per_page) == (5, 2, 2)
    assert [p.name for p in page.items] == ["Tab weld 2", "Tab weld 1"]  # newest first
    assert projects.list_projects(db_session, user, search="HORN").total == 1
    assert projects.list_projects(db_session, user, search="100%").total == 1  # % is a character
    assert projects.list_projects(db_session, user, search="_").total == 1
    assert projects.list_projects(db_session, user, page=9).items == []
    with pytest.raises(Invalid) as info:
        projects.list_projects(db_session, user, per_page=1000)
    assert info.value.field == "per_page"


def test_names_are_unique_per_owner_and_checked(db_session):
    alice = make_user(db_session, "alice@example.com")
    bob = make_user(db_session, "bob@example.com")
    projects.create_project(db_session, alice, name="Tab weld", application_type="li_battery_tab")
    projects.create_project(db_session, bob, name="Tab weld", application_type="li_battery_tab")
    before = counts(db_session)
    with pytest.raises(Conflict) as info:
        projects.create_project(db_session, alice, name=" Tab weld ", application_type="general_metal")
    assert info.value.field == "name"
    for name in ("../../etc/passwd", "a\\b", "..", "", "x" * 201, "tab\x00weld"):
        with pytest.raises(Invalid) as info:
            projects.create_project(db_session, alice, name=name, application_type="general_metal")
        assert info.value.field == "name"
    with pytest.raises(Invalid) as info:
        projects.create_project(db_session, alice, name="ok", application_type="welding")
    assert info.value.field == "application_type"
    assert counts(db_session) == before


def test_update_changes_only_what_is_given(db_session):
    user = make_user(db_session, "eng@example.com")
    project = projects.create_project(db_session, user, name="Tab weld", application_type="li_battery_tab",
                                      description="four Cu foils")
    other = projects.create_project(db_session, user, name="Other", application_type="general_metal")
    projects.update_project(db_session, user, project.id, {"application_type": "general_metal"})
    assert (project.name, project.application_type, project.description) == \
        ("Tab weld", "general_metal", "four Cu foils")
    with pytest.raises(Conflict):
        projects.update_project(db_session, user, other.id, {"name": "Tab weld"})
    with pytest.raises(Invalid) as info:
        projects.update_project(db_session, user, project.id, {"owner_id": 5})
    assert info.value.field == "owner_id"
    db_session.refresh(other)
    assert other.name == "Other"


def test_delete_removes_rows_run_directories_and_files(db_session, roots):
    user = make_user(db_session, "eng@example.com")
    project, run_ids = project_with_runs(db_session, user, roots, ["completed", "failed"])
    keep = projects.create_project(db_session, user, name="Keep", application_type="general_metal")
    projects.delete_project(db_session, user, project.id, **roots)
    assert db_session.get(Project, project.id) is None and db_session.get(Project, keep.id) is not None
    assert counts(db_session)["runs"] == 0 and counts(db_session)["simulation_cases"] == 0
    assert not any(run_dir(roots["runs_root"], r).exists() for r in run_ids)
    assert not project_dir(roots["storage_root"], project.id).exists()
    assert roots["runs_root"].is_dir()  # the root itself stays


def test_delete_with_unfinished_runs_is_a_conflict_and_changes_nothing(db_session, roots):
    user = make_user(db_session, "eng@example.com")
    project, run_ids = project_with_runs(db_session, user, roots, ["running", "queued", "completed"])
    before = counts(db_session)
    with pytest.raises(Conflict, match=r"2 unfinished runs .*cancel_runs=true"):
        projects.delete_project(db_session, user, project.id, **roots)
    assert counts(db_session) == before
    assert all(run_dir(roots["runs_root"], r).exists() for r in run_ids)


def test_cancel_runs_cancels_the_unfinished_ones_first(db_session, roots):
    user = make_user(db_session, "eng@example.com")
    project, run_ids = project_with_runs(db_session, user, roots, ["running", "interrupted", "completed"])
    canceller = RecordingCanceller(db_session)
    projects.delete_project(db_session, user, project.id, cancel_runs=True, cancel_run=canceller, **roots)
    assert canceller.cancelled == run_ids[:2]
    assert db_session.get(Project, project.id) is None
    assert not any(run_dir(roots["runs_root"], r).exists() for r in run_ids)


def test_cancel_runs_without_an_agent_or_with_a_failing_one_deletes_nothing(db_session, roots):
    user = make_user(db_session, "eng@example.com")
    project, run_ids = project_with_runs(db_session, user, roots, ["running"])
    with pytest.raises(Unavailable, match="no run agent"):
        projects.delete_project(db_session, user, project.id, cancel_runs=True, cancel_run=None, **roots)
    canceller = RecordingCanceller(db_session, fail_on=run_ids[0])
    with pytest.raises(Conflict, match=f"could not cancel run {run_ids[0]}: the scheduler did not answer"):
        projects.delete_project(db_session, user, project.id, cancel_runs=True, cancel_run=canceller, **roots)
    assert db_session.get(Project, project.id) is not None
    assert run_dir(roots["runs_root"], run_ids[0]).exists()


def test_another_users_project_cannot_be_deleted(db_session, roots):
    alice = make_user(db_session, "alice@example.com")
    bob = make_user(db_session, "bob@example.com")
    project, _ = project_with_runs(db_session, alice, roots, ["completed"])
    with pytest.raises(NotFound):
        projects.delete_project(db_session, bob, project.id, **roots)
    assert project_dir(roots["storage_root"], project.id).exists()
