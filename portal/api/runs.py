"""/api/v1 runs: submit a case, cancel, get (metrics, artifacts), list, download, log tail.

    POST /projects/{project_id}/cases/{case_id}/runs   submit → 202, the run ``queued``
    GET  /projects/{project_id}/runs                    a project's runs (filters: state, case_id, …)
    GET  /projects/{project_id}/cases/{case_id}/runs    a case's runs
    GET  /runs                                          every run you may see
    GET  /runs/{run_id}                                 one run with its metrics and artifacts
    POST /runs/{run_id}/cancel                          cancel; answers once the run is final
    POST /runs/{run_id}/resume                          a new attempt of an interrupted, cancelled or lost run
    GET  /runs/{run_id}/log?lines=200                   the tail of solver.log
    GET  /runs/{run_id}/artifacts/{artifact_id}         download (XDMF, HDF5, VTU/PVD, logs, JSON)

Live progress is not polled here: open the WebSocket /ws/runs/{run_id} (portal.ws).
Submitting needs the run agent this portal process hosts (`weldsim portal`); without it
submit, cancel and resume answer 503.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import current_app, send_file
from pydantic import BaseModel, ConfigDict, Field

from .. import current_settings
from ..extensions import db
from ..models import Run, RunState
from ..services import runs
from ..services.pagination import DEFAULT_PER_PAGE, MAX_PER_PAGE, Page
from .common import Strict, api_blueprint, current_user, json_response, page_model, page_response
from .errors import ErrorEnvelope

bp = api_blueprint("runs", "", "Runs: submit a case, follow, cancel, results and files", tag="runs")

#: download types of run files (anything else: application/octet-stream)
MIME_TYPES = {".xdmf": "application/xml", ".pvd": "application/xml", ".vtu": "application/xml",
              ".pvtu": "application/xml", ".h5": "application/x-hdf5", ".log": "text/plain",
              ".json": "application/json", ".msh": "text/plain", ".step": "application/step",
              ".stl": "model/stl"}


class MetricOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str = Field(description="registered name, carrying its unit (f_working_Hz, T_max_K, probe.<p>.<field>)")
    value: float = Field(description="SI units")
    unit: str


class ArtifactOut(BaseModel):
    id: int
    kind: str = Field(description="fields_xdmf, fields_hdf5, fields_pvd, fields_vtu, mesh_xdmf, log, provenance, …")
    path: str = Field(description="relative to the run directory")
    size_bytes: int | None
    created_at: dt.datetime
    url: str = Field(description="where to download it")


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    run_id: str = Field(description="12 characters [a-z0-9]: also the run directory's name")
    project_id: int
    case_id: int
    study_id: int | None
    submitted_by_id: int | None
    state: RunState = Field(description="queued → running → completed | failed | cancelled | interrupted | lost")
    executor: str
    ntasks: int = Field(description="MPI ranks")
    attempts: int
    scheduler_job_ids: list[str] = Field(description="one per attempt (Slurm); [] for local runs")
    reason: str | None = Field(description="why it failed, was cancelled, interrupted or lost")
    exit_code: int | None = Field(description="of the last attempt: 0 completed, 2 invalid case, 3 solver failed, "
                                              "4 interrupted")
    progress_percent: float
    phase: str | None
    compute_time_s: float | None
    submitted_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    progress_ws: str = Field(description="the WebSocket with live progress messages")


class RunDetailOut(RunOut):
    metrics: list[MetricOut]
    artifacts: list[ArtifactOut]


RunPage = page_model(RunOut)


class RunSubmit(Strict):
    ranks: int | None = Field(None, ge=1, le=runs.MAX_RANKS, description="MPI ranks (default: the case's solver.ranks)")
    executor: str | None = Field(None, description="local or slurm (default: the portal's configured executor)")
    resources: dict[str, Any] | None = Field(None, description=f"Slurm: {', '.join(runs.RESOURCE_FIELDS)}")


class RunListQuery(Strict):
    page: int = Field(1, ge=1)
    per_page: int = Field(DEFAULT_PER_PAGE, ge=1, le=MAX_PER_PAGE)
    state: list[RunState] | None = Field(None, description="only runs in these states (repeat the parameter)")
    case_id: int | None = None
    study_id: int | None = None
    submitted_after: dt.datetime | None = Field(None, description="ISO 8601 with a time zone")
    submitted_before: dt.datetime | None = None


class CaseRunListQuery(Strict):
    page: int = Field(1, ge=1)
    per_page: int = Field(DEFAULT_PER_PAGE, ge=1, le=MAX_PER_PAGE)
    state: list[RunState] | None = None
    study_id: int | None = None
    submitted_after: dt.datetime | None = None
    submitted_before: dt.datetime | None = None


class AllRunsQuery(Strict):
    page: int = Field(1, ge=1)
    per_page: int = Field(DEFAULT_PER_PAGE, ge=1, le=MAX_PER_PAGE)
    state: list[RunState] | None = None


class ProjectPath(BaseModel):
    project_id: int


class CasePath(BaseModel):
    project_id: int
    case_id: int


class RunPath(BaseModel):
    run_id: str = Field(max_length=64)


class ArtifactPath(BaseModel):
    run_id: str = Field(max_length=64)
    artifact_id: int


class LogQuery(Strict):
    lines: int = Field(200, ge=1, le=runs.MAX_LOG_LINES)


class LogOut(BaseModel):
    run_id: str
    lines: int
    text: str = Field(description="the last lines of solver.log ('' before the solver starts)")


def _host():
    from ..agent_host import host_of

    return host_of(current_app)


def run_data(run: Run, detail: bool = False) -> dict[str, Any]:
    data = RunOut.model_validate({**{c: getattr(run, c) for c in RunOut.model_fields if c != "progress_ws"},
                                  "progress_ws": f"/ws/runs/{run.run_id}"}).model_dump()
    if detail:
        data["metrics"] = run.metrics
        data["artifacts"] = [{"id": a.id, "kind": a.kind, "path": a.path, "size_bytes": a.size_bytes,
                              "created_at": a.created_at,
                              "url": f"{bp.url_prefix}/runs/{run.run_id}/artifacts/{a.id}"} for a in run.artifacts]
    return data


def _states(values: list[RunState] | None) -> list[str] | None:
    return [s.value for s in values] if values else None


@bp.post("/projects/<int:project_id>/cases/<int:case_id>/runs", responses={202: RunOut, 503: ErrorEnvelope})
def submit_run(path: CasePath, body: RunSubmit):
    """Submit the case: 202 with the run ``queued``; its directory is prepared and the run
    started in the background (follow /ws/runs/{run_id}). 422 names every problem of the case."""
    settings = current_settings()
    host = _host()
    run = runs.submit_run(db.session, current_user(), path.project_id, path.case_id, dispatcher=host,
                          storage_root=settings.storage_root, ranks=body.ranks,
                          executor=body.executor or settings.executor, resources=body.resources)
    return json_response(RunOut, run_data(run), 202, Location=f"{bp.url_prefix}/runs/{run.run_id}")


@bp.get("/projects/<int:project_id>/runs", responses={200: RunPage})
def list_project_runs(path: ProjectPath, query: RunListQuery):
    """A project's runs, newest first."""
    page = runs.list_runs(db.session, current_user(), project_id=path.project_id, case_id=query.case_id,
                          states=_states(query.state), study_id=query.study_id,
                          submitted_after=query.submitted_after, submitted_before=query.submitted_before,
                          page=query.page, per_page=query.per_page)
    return page_response(RunPage, _page_of(page))


@bp.get("/projects/<int:project_id>/cases/<int:case_id>/runs", responses={200: RunPage})
def list_case_runs(path: CasePath, query: CaseRunListQuery):
    """A case's runs, newest first."""
    page = runs.list_runs(db.session, current_user(), project_id=path.project_id, case_id=path.case_id,
                          states=_states(query.state), study_id=query.study_id,
                          submitted_after=query.submitted_after, submitted_before=query.submitted_before,
                          page=query.page, per_page=query.per_page)
    return page_response(RunPage, _page_of(page))


@bp.get("/runs", responses={200: RunPage})
def list_all_runs(query: AllRunsQuery):
    """Every run you may see (an admin: all), newest first."""
    page = runs.list_visible_runs(db.session, current_user(), states=_states(query.state), page=query.page,
                                  per_page=query.per_page)
    return page_response(RunPage, _page_of(page))


@bp.get("/runs/<run_id>", responses={200: RunDetailOut})
def get_run(path: RunPath):
    """One run: state, timestamps, attempts, its metrics and downloadable files."""
    run = runs.get_run(db.session, current_user(), path.run_id)
    return json_response(RunDetailOut, run_data(run, detail=True))


@bp.post("/runs/<run_id>/cancel", responses={200: RunOut, 503: ErrorEnvelope})
def cancel_run(path: RunPath):
    """Cancel a queued or running run; answers once it is final (an ended run: as it is)."""
    host = _host()
    run = runs.cancel_run(db.session, current_user(), path.run_id,
                          canceller=None if host is None else host.cancel_run)
    return json_response(RunOut, run_data(run))


@bp.post("/runs/<run_id>/resume", responses={202: RunOut, 409: ErrorEnvelope, 503: ErrorEnvelope})
def resume_run(path: RunPath):
    """Continue an interrupted, cancelled or lost run from its last checkpoint: 202 with the
    run ``queued`` (a new attempt, same run id; follow /ws/runs/{run_id}). 409 for a run
    that is going, completed or failed."""
    host = _host()
    run = runs.resume_run(db.session, current_user(), path.run_id,
                          resumer=None if host is None else host.resume_run)
    return json_response(RunOut, run_data(run), 202)


@bp.get("/runs/<run_id>/log", responses={200: LogOut})
def run_log(path: RunPath, query: LogQuery):
    """The last lines of the run's solver.log."""
    text = runs.solver_log_tail(db.session, current_user(), path.run_id, runs_root=current_settings().runs_root,
                                lines=query.lines)
    return json_response(LogOut, {"run_id": path.run_id, "lines": query.lines, "text": text})


@bp.get("/runs/<run_id>/artifacts/<int:artifact_id>", responses={200: None})
def download_artifact(path: ArtifactPath):
    """Download one file of the run (see the run's `artifacts`)."""
    artifact, file = runs.get_artifact(db.session, current_user(), path.run_id, path.artifact_id,
                                       runs_root=current_settings().runs_root)
    return send_file(file, mimetype=MIME_TYPES.get(file.suffix.lower(), "application/octet-stream"),
                     as_attachment=True, download_name=file.name, max_age=0)


def _page_of(page: Page) -> Page:
    """The page with its runs rendered (RunOut needs the computed progress_ws)."""
    return Page(items=[run_data(r) for r in page.items], page=page.page, per_page=page.per_page, total=page.total)


def init_app(app) -> None:
    """Register the runs endpoints on `app` (once); portal.api registers the others."""
    if bp.name not in app.blueprints:
        app.register_api(bp)
