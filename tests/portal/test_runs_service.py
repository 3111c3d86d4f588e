"""Runs service and API on both backends, without real jobs: submission checks and the
document handed to the dispatcher (custom materials inlined, prepared for real in a
prepare_job process), visibility, list filters, syncing rows from run directories
(idempotent, concurrent passes, a transient `lost`), the reconciler's hand-over and
failure of unprepared runs, artifacts and the log tail over HTTP."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Artifact, Metric, Run, utcnow
from portal.services import cases, materials, projects, run_sync, runs
from portal.services.errors import Invalid, NotFound, Unavailable
from weldsim_hpc.executors.record import read_record, update_record
from weldsim_hpc.results import write_metrics
from weldsim_hpc.run_paths import RunPaths, new_run_id, record_attempt_end, record_attempt_start
from weldsim_hpc.states import RunState

from .helpers import error_of, make_user
from .runs_helpers import CUSTOM_ANVIL, add_run_row, d2_properties, fake_run, tab_weld_spec, write_progress


class RecordingDispatcher:
    def __init__(self):
        self.calls = []

    def dispatch(self, run_id, case_document, *, executor, ntasks, resources):
        self.calls.append({"run_id": run_id, "case": case_document, "executor": executor, "ntasks": ntasks,
                           "resources": resources})


@pytest.fixture
def owner(db_session):
    return make_user(db_session, "eng@example.com")


@pytest.fixture
def tab_case(db_session, owner, tmp_path):
    materials.create_custom(db_session, owner, material_id=CUSTOM_ANVIL, name="my D2",
                            properties=d2_properties(), source="test sheet")
    project = projects.create_project(db_session, owner, name="Tabs", application_type="li_battery_tab")
    return cases.create_case(db_session, owner, project.id, spec=tab_weld_spec(custom_anvil=True), name="tab",
                             storage_root=tmp_path)


def test_submit_stores_a_queued_row_and_dispatches_the_case_with_custom_materials_inlined(
        db_session, owner, tab_case, tmp_path):
    dispatcher = RecordingDispatcher()
    run = runs.submit_run(db_session, owner, tab_case.project_id, tab_case.id, dispatcher=dispatcher,
                          storage_root=tmp_path, ranks=2, resources={"walltime": "00:10:00"})
    assert run.state == "queued" and run.ntasks == 2 and run.attempts == 0 and run.submitted_by_id == owner.id
    assert run.started_at is None and run.finished_at is None
    (call,) = dispatcher.calls
    assert call["run_id"] == run.run_id and call["ntasks"] == 2 and call["executor"] == "local"
    assert call["resources"] == {"ntasks": 2, "walltime": "00:10:00"}
    custom = call["case"]["custom_materials"][CUSTOM_ANVIL]
    assert call["case"]["materials"]["anvil"] == CUSTOM_ANVIL
    assert custom["density_kg_m3"] == d2_properties()["density_kg_m3"] and custom["name"] == "my D2"

    # the prepare job (gmsh in a process of its own) writes case.json with every value inline
    from portal.agent_host import run_prepare_job

    runs_root = tmp_path / "runs"
    result = run_prepare_job({"case": call["case"], "runs_root": str(runs_root), "run_id": run.run_id,
                              "ranks": 2, "base_dir": str(tmp_path)})
    assert result == {"ok": True, "run_id": run.run_id, "backend": result["backend"], "ranks": 2}
    case_json = json.loads(RunPaths.for_id(runs_root, run.run_id).case_json.read_text())
    assert case_json["custom_materials"] == {} and case_json["solver"]["ranks"] == 2
    anvil = case_json["materials"]["anvil"]
    assert anvil["id"] == f"{CUSTOM_ANVIL}.as_run" and anvil["density_kg_m3"] == d2_properties()["density_kg_m3"]


def test_a_preparation_that_fails_reports_the_problems(tmp_path):
    from portal.agent_host import PrepareFailed, run_prepare_job

    bad = {**tab_weld_spec(), "name": "bad"}
    bad["materials"] = {**bad["materials"], "tab": "unobtainium"}
    with pytest.raises(PrepareFailed, match=r"invalid case: materials.tab: unknown material 'unobtainium'"):
        run_prepare_job({"case": bad, "runs_root": str(tmp_path / "runs"), "run_id": new_run_id(), "ranks": 1})
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_submit_refuses_bad_requests_and_changes_nothing(db_session, owner, tab_case, tmp_path):
    dispatcher = RecordingDispatcher()
    submit = lambda **kw: runs.submit_run(db_session, owner, tab_case.project_id, tab_case.id,  # noqa: E731
                                          storage_root=tmp_path, **{"dispatcher": dispatcher, **kw})
    for kwargs, field in (({"ranks": 0}, "ranks"), ({"ranks": True}, "ranks"),
                          ({"resources": {"queue": "x"}}, "resources.queue"),
                          ({"resources": {"nodes": 0}}, "resources.nodes"),
                          ({"executor": "pbs"}, "executor")):
        with pytest.raises(Invalid) as info:
            submit(**kwargs)
        assert info.value.field == field, kwargs
    with pytest.raises(Unavailable, match="weldsim portal"):
        submit(dispatcher=None)
    stranger = make_user(db_session, "other@example.com")
    with pytest.raises(NotFound):
        runs.submit_run(db_session, stranger, tab_case.project_id, tab_case.id, dispatcher=dispatcher,
                        storage_root=tmp_path)
    # a custom material that no longer validates fails the submission, naming the field
    row = materials.list_custom(db_session, owner)[0]
    row.properties = {**row.properties, "poisson_ratio": 0.7}
    db_session.commit()
    with pytest.raises(Invalid) as info:
        submit()
    assert info.value.field.startswith("spec.custom_materials")
    assert dispatcher.calls == [] and db_session.scalar(select(func.count()).select_from(Run)) == 0


def test_list_filters_and_visibility(db_session, owner, tab_case, tmp_path):
    other_case = cases.create_case(db_session, owner, tab_case.project_id, spec=tab_weld_spec(), name="tab 2",
                                   storage_root=tmp_path)
    t0 = utcnow() - dt.timedelta(hours=1)
    made = {}
    for i, (case, state) in enumerate([(tab_case, "completed"), (tab_case, "failed"), (tab_case, "running"),
                                       (other_case, "completed")]):
        made[i] = add_run_row(db_session, case.project_id, case.id, new_run_id(), state,
                              submitted_at=t0 + dt.timedelta(minutes=i)).run_id
    page = runs.list_runs(db_session, owner, project_id=tab_case.project_id)
    assert [r.run_id for r in page.items] == [made[3], made[2], made[1], made[0]] and page.total == 4
    done = runs.list_runs(db_session, owner, project_id=tab_case.project_id, states=["completed", "failed"])
    assert {r.run_id for r in done.items} == {made[0], made[1], made[3]}
    of_case = runs.list_runs(db_session, owner, project_id=tab_case.project_id, case_id=tab_case.id,
                             states=["completed"])
    assert [r.run_id for r in of_case.items] == [made[0]]
    later = runs.list_runs(db_session, owner, project_id=tab_case.project_id,
                           submitted_after=t0 + dt.timedelta(minutes=2))
    assert {r.run_id for r in later.items} == {made[2], made[3]}
    with pytest.raises(Invalid) as info:
        runs.list_runs(db_session, owner, project_id=tab_case.project_id, states=["finished"])
    assert info.value.field == "state"
    stranger = make_user(db_session, "other@example.com")
    admin = make_user(db_session, "root@example.com", admin=True)
    with pytest.raises(NotFound):
        runs.list_runs(db_session, stranger, project_id=tab_case.project_id)
    with pytest.raises(NotFound):
        runs.get_run(db_session, stranger, made[0])
    with pytest.raises(NotFound):
        runs.get_run(db_session, owner, "../../etc/pw")
    assert runs.list_visible_runs(db_session, stranger).total == 0
    assert runs.list_visible_runs(db_session, admin, states=["completed"]).total == 2
    assert runs.get_run(db_session, admin, made[0]).run_id == made[0]


def _finished_directory(runs_root, run_id: str) -> RunPaths:
    """A run directory as a completed 2-rank attempt leaves it (without running anything)."""
    paths = fake_run(runs_root, run_id, state=RunState.RUNNING)
    record_attempt_start(paths, 1, 4242, 1_700_000_000.0, scheduler_job_id="991")
    write_progress(paths, rows=4, final=RunState.COMPLETED)
    write_metrics(paths, {"T_max_K": 514.9, "compute_time_s": 6.0, "probe.weld_centre.temperature_K": 407.0})
    (paths.results_dir / "fields.xdmf").write_text("<Xdmf/>")
    (paths.results_dir / "fields.h5").write_bytes(b"\x89HDF" + b"0" * 100)
    (paths.results_dir / "fields_p0_000000.vtu").write_text("<VTKFile/>")
    paths.solver_log.write_text("".join(f"line {i}\n" for i in range(500)))
    (paths.root / ".hidden.tmp").write_text("x")
    record_attempt_end(paths, 1, 0, end_time=1_700_000_010.0)
    update_record(paths, state=RunState.COMPLETED)
    return paths


def test_sync_copies_the_directory_into_the_rows_once(db_session, owner, tab_case, tmp_path):
    runs_root = tmp_path / "runs"
    run_id = add_run_row(db_session, tab_case.project_id, tab_case.id, new_run_id(), "running").run_id
    paths = _finished_directory(runs_root, run_id)
    assert run_sync.sync_run(db_session, run_id, runs_root) is True
    run = runs.get_run(db_session, owner, run_id)
    record = read_record(paths)
    assert (run.state, run.attempts, run.exit_code, run.scheduler_job_ids) == ("completed", 1, 0, ["991"])
    assert run.started_at == dt.datetime.fromtimestamp(1_700_000_000.0, dt.timezone.utc)
    assert run.finished_at == dt.datetime.fromtimestamp(record.finished_at, dt.timezone.utc)
    assert (run.progress_percent, run.phase, run.compute_time_s) == (100.0, "time_step", 6.0)
    assert {m.name: (m.value, m.unit) for m in run.metrics} == {
        "T_max_K": (514.9, "K"), "compute_time_s": (6.0, "s"), "probe.weld_centre.temperature_K": (407.0, "K")}
    kinds = {a.path: a.kind for a in run.artifacts}
    assert kinds == {"case.json": "case", "progress.h5": "progress_hdf5", "solver.log": "log",
                     "results/metrics.json": "metrics", "results/fields.xdmf": "fields_xdmf",
                     "results/fields.h5": "fields_hdf5", "results/fields_p0_000000.vtu": "fields_vtu"}
    assert run_sync.sync_run(db_session, run_id, runs_root) is False  # nothing new: nothing written
    # a file that grows is updated, one that went is dropped
    (paths.results_dir / "fields.xdmf").write_text("<Xdmf>more</Xdmf>")
    (paths.results_dir / "fields_p0_000000.vtu").unlink()
    assert run_sync.sync_run(db_session, run_id, runs_root) is True
    db_session.expire_all()
    sizes = {a.path: a.size_bytes for a in runs.get_run(db_session, owner, run_id).artifacts}
    assert sizes["results/fields.xdmf"] == len("<Xdmf>more</Xdmf>") and "results/fields_p0_000000.vtu" not in sizes


def test_concurrent_syncs_end_in_the_same_rows(app, db_session, owner, tab_case, tmp_path):
    runs_root = tmp_path / "runs"
    run_ids = [add_run_row(db_session, tab_case.project_id, tab_case.id, new_run_id(), "running").run_id
               for _ in range(3)]
    for run_id in run_ids:
        _finished_directory(runs_root, run_id)
    errors, start = [], threading.Barrier(4)

    def one_pass():
        with app.app_context():
            try:
                start.wait()
                run_sync.reconcile(db.session, runs_root, preparing=lambda _id: False,
                                   hand_over=lambda *_: errors.append("handed over"))
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=one_pass) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    db_session.expire_all()
    assert db_session.scalar(select(func.count()).select_from(Metric)) == 3 * 3
    assert db_session.scalar(select(func.count()).select_from(Artifact)) == 3 * 7
    assert {r.state for r in db_session.scalars(select(Run))} == {"completed"}
    # and a pass over the now final rows changes and submits nothing
    assert run_sync.reconcile(db_session, runs_root, preparing=lambda _id: False,
                              hand_over=lambda *_: errors.append("handed over")) == []
    assert errors == []


def test_reconcile_hands_over_prepared_runs_and_fails_unprepared_ones(db_session, owner, tab_case, tmp_path):
    runs_root = tmp_path / "runs"
    old = utcnow() - dt.timedelta(seconds=run_sync.PREPARE_GRACE_S + 5)
    prepared = add_run_row(db_session, tab_case.project_id, tab_case.id, new_run_id(), submitted_at=old).run_id
    paths = RunPaths.for_id(runs_root, prepared)
    paths.root.mkdir(parents=True)
    paths.case_json.write_text("{}")
    paths.attempts_json.write_text("[]")
    gone = add_run_row(db_session, tab_case.project_id, tab_case.id, new_run_id(), submitted_at=old).run_id
    recent = add_run_row(db_session, tab_case.project_id, tab_case.id, new_run_id()).run_id
    building = add_run_row(db_session, tab_case.project_id, tab_case.id, new_run_id(), submitted_at=old).run_id
    (runs_root / ".prepare-abc" / building).mkdir(parents=True)
    mine = add_run_row(db_session, tab_case.project_id, tab_case.id, new_run_id(), submitted_at=old).run_id
    handed = []

    def hand_over(run_id, run):
        handed.append(run_id)
        fake_run(runs_root, run_id, state=RunState.QUEUED)  # what the agent's submit writes

    changed = run_sync.reconcile(db_session, runs_root, preparing=lambda run_id: run_id == mine,
                                 hand_over=hand_over)
    assert handed == [prepared]
    assert sorted(changed) == sorted([gone, prepared])  # the handed-over run got its first sync
    db_session.expire_all()
    states = {r.run_id: (r.state, r.reason) for r in db_session.scalars(select(Run))}
    assert states[gone] == ("failed", run_sync.NOT_PREPARED)
    assert {states[r][0] for r in (prepared, recent, building, mine)} == {"queued"}
    assert run_sync.reconcile(db_session, runs_root, preparing=lambda run_id: run_id == mine,
                              hand_over=hand_over) == [] and handed == [prepared]


def test_a_lost_run_about_to_be_resubmitted_is_not_final(db_session, owner, tab_case, tmp_path):
    runs_root = tmp_path / "runs"
    rows = [add_run_row(db_session, tab_case.project_id, tab_case.id, new_run_id(), "running").run_id
            for _ in range(3)]
    for run_id in rows:
        fake_run(runs_root, run_id, state=RunState.LOST, reason="node died", resubmissions=0)
    assert run_sync.sync_run(db_session, rows[0], runs_root, max_resubmissions=1) is False  # the agent resubmits
    fake_run(runs_root, rows[1], state=RunState.LOST, reason="node died", resubmissions=1)  # it did once: final
    stale = RunPaths.for_id(runs_root, rows[2])  # the agent died between writing lost and queued
    record = json.loads((stale.root / "executor.json").read_text())
    record["updated_at"] -= run_sync.LOST_SETTLE_S + 1
    (stale.root / "executor.json").write_text(json.dumps(record))
    for run_id in rows[1:]:
        assert run_sync.sync_run(db_session, run_id, runs_root, max_resubmissions=1) is True
        db_session.expire_all()
        run = db_session.get(Run, run_id)
        assert (run.state, run.reason) == ("lost", "node died") and run.finished_at is not None
    assert db_session.get(Run, rows[0]).state == "running"


def test_run_endpoints(web_app, alice, bob):
    from portal import ws
    from portal.api import runs as runs_api
    from portal.models import User

    app, settings = web_app, web_app.extensions["weldsim"]
    runs_api.init_app(app)
    ws.init_app(app)
    with app.app_context():
        user = db.session.get(User, alice.user_id)
        project = projects.create_project(db.session, user, name="Tabs", application_type="li_battery_tab")
        case = cases.create_case(db.session, user, project.id, spec=tab_weld_spec(), name="tab",
                                 storage_root=settings.storage_root)
        project_id, case_id = project.id, case.id
        run_id = add_run_row(db.session, project_id, case_id, new_run_id(), "running").run_id
        _finished_directory(settings.runs_root, run_id)
        run_sync.sync_run(db.session, run_id, settings.runs_root)
        db.session.remove()

    # no agent in this process: submitting answers 503 in the envelope
    answer = alice.post(f"/api/v1/projects/{project_id}/cases/{case_id}/runs", json={"ranks": 2})
    assert answer.status_code == 503 and error_of(answer)["code"] == "unavailable"
    answer = alice.post(f"/api/v1/projects/{project_id}/cases/{case_id}/runs", json={"ranks": 0})
    assert answer.status_code == 422 and error_of(answer)["field"] == "ranks"

    detail = alice.get(f"/api/v1/runs/{run_id}")
    assert detail.status_code == 200
    body = detail.get_json()
    assert body["state"] == "completed" and body["progress_ws"] == f"/ws/runs/{run_id}"
    assert {m["name"] for m in body["metrics"]} == {"T_max_K", "compute_time_s", "probe.weld_centre.temperature_K"}
    xdmf = next(a for a in body["artifacts"] if a["kind"] == "fields_xdmf")
    download = alice.get(xdmf["url"])
    assert download.status_code == 200 and download.data == b"<Xdmf/>"
    assert download.headers["Content-Disposition"].startswith("attachment") and download.mimetype == "application/xml"
    assert alice.get(f"/api/v1/runs/{run_id}/artifacts/999999").status_code == 404

    log = alice.get(f"/api/v1/runs/{run_id}/log?lines=3").get_json()
    assert log == {"run_id": run_id, "lines": 3, "text": "line 497\nline 498\nline 499"}
    listed = alice.get(f"/api/v1/projects/{project_id}/runs?state=completed&state=failed").get_json()
    assert [r["run_id"] for r in listed["items"]] == [run_id] and listed["total"] == 1
    assert alice.get(f"/api/v1/projects/{project_id}/cases/{case_id}/runs?state=running").get_json()["total"] == 0
    assert alice.get("/api/v1/runs").get_json()["total"] == 1
    answer = alice.get(f"/api/v1/projects/{project_id}/runs?state=finished")
    assert answer.status_code == 422 and error_of(answer)["field"].startswith("state")
    # cancelling an ended run leaves it as it is (no agent needed)
    cancelled = alice.post(f"/api/v1/runs/{run_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.get_json()["state"] == "completed"

    for url in (f"/api/v1/runs/{run_id}", xdmf["url"], f"/api/v1/runs/{run_id}/log"):
        assert bob.get(url).status_code == 404, url
    assert bob.post(f"/api/v1/runs/{run_id}/cancel").status_code == 404
    assert app.test_client().get(f"/api/v1/runs/{run_id}").status_code == 401
    spec = app.api_doc["paths"]
    assert "/api/v1/runs/{run_id}/artifacts/{artifact_id}" in spec and "/api/v1/runs/{run_id}/cancel" in spec
