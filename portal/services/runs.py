"""Runs: submit a case, cancel, get (with metrics and artifacts), list, files and log tail.

A run's life: `submit_run` validates the case as a job will see it (custom materials
inlined, `cases.case_spec_for_run`), stores a Run row ``queued`` and hands the case
document to a `RunDispatcher` — the portal's agent host — which prepares the run
directory in a process of its own (gmsh) and gives the run to the agent. From then on
the run directory is the truth and the reconciler copies it into the row
(`run_sync`): queued → running → completed | failed | cancelled | interrupted | lost,
with timestamps, attempts and scheduler job ids.

Every function checks visibility through `access` (NotFound for runs of projects the
user may not see) and raises the domain errors of `errors`; none knows about HTTP.

Example::

    run = submit_run(session, user, project_id, case_id, dispatcher=host,
                     storage_root=settings.storage_root, ranks=2)
    run = cancel_run(session, user, run.run_id, canceller=host.cancel_run)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from weldsim_hpc.errors import WeldSimError
from weldsim_hpc.executors.base import tail
from weldsim_hpc.executors.record import Resources
from weldsim_hpc.run_paths import RunPaths, is_run_id, new_run_id

from ..models import Artifact, Project, Run, RunState, User
from ..models.types import EXECUTORS, values
from .access import can_see, get_project, visible_projects
from .cases import case_spec_for_run, get_case
from .errors import Conflict, Invalid, NotFound, Unavailable
from .pagination import DEFAULT_PER_PAGE, Page, paginate
from .paths import inside
from .run_sync import in_transaction
from .teardown import RunCanceller

MAX_RANKS = 4096
MAX_LOG_LINES = 5000
#: resources a submission may ask for besides ntasks (weldsim_hpc.executors.record.Resources)
RESOURCE_FIELDS = ("nodes", "partition", "account", "walltime", "mem")
FINAL_STATES = frozenset(s.value for s in RunState if s.is_terminal)


class RunDispatcher(Protocol):
    """What submit needs of the agent host: prepare the directory, then start the run."""

    def dispatch(self, run_id: str, case_document: dict[str, Any], *, executor: str, ntasks: int,
                 resources: dict[str, Any]) -> None: ...


# --- reading ---------------------------------------------------------------------------------

def get_run(session: Session, user: User, run_id: str) -> Run:
    """The run if `user` may see its project; NotFound otherwise (also for malformed ids)."""
    run = session.get(Run, run_id) if is_run_id(run_id) else None
    if run is None or not can_see(user, run.project):
        raise NotFound(f"run {run_id} not found")
    return run


def list_runs(session: Session, user: User, *, project_id: int, case_id: int | None = None,
              states: Iterable[str] | None = None, study_id: int | None = None,
              submitted_after: dt.datetime | None = None, submitted_before: dt.datetime | None = None,
              page: int = 1, per_page: int = DEFAULT_PER_PAGE) -> Page:
    """Runs of a project (or of one case of it), newest first, filtered by state(s),
    study and submission time."""
    if case_id is not None:
        project = get_case(session, user, project_id, case_id).project
    else:
        project = get_project(session, user, project_id)
    stmt = select(Run).where(Run.project_id == project.id)
    if case_id is not None:
        stmt = stmt.where(Run.case_id == case_id)
    stmt = _filtered(stmt, states=states, study_id=study_id, submitted_after=submitted_after,
                     submitted_before=submitted_before)
    return paginate(session, stmt.order_by(Run.submitted_at.desc(), Run.run_id), page, per_page)


def list_visible_runs(session: Session, user: User, *, states: Iterable[str] | None = None,
                      page: int = 1, per_page: int = DEFAULT_PER_PAGE) -> Page:
    """Every run `user` may see (all projects), newest first."""
    stmt = select(Run).join(Project, Run.project_id == Project.id).where(visible_projects(user))
    stmt = _filtered(stmt, states=states)
    return paginate(session, stmt.order_by(Run.submitted_at.desc(), Run.run_id), page, per_page)


def _filtered(stmt: Select, *, states: Iterable[str] | None = None, study_id: int | None = None,
              submitted_after: dt.datetime | None = None, submitted_before: dt.datetime | None = None) -> Select:
    if states:
        wanted = list(dict.fromkeys(states))
        bad = [s for s in wanted if s not in values(RunState)]
        if bad:
            raise Invalid(f"{bad[0]!r} is not a run state (valid: {', '.join(values(RunState))})", field="state")
        stmt = stmt.where(Run.state.in_(wanted))
    if study_id is not None:
        stmt = stmt.where(Run.study_id == study_id)
    for value, field, op in ((submitted_after, "submitted_after", "__ge__"),
                             (submitted_before, "submitted_before", "__lt__")):
        if value is not None:
            if value.tzinfo is None:
                raise Invalid("give a time zone (e.g. 2026-05-01T12:00:00Z)", field=field)
            stmt = stmt.where(getattr(Run.submitted_at, op)(value))
    return stmt


# --- submitting and cancelling ---------------------------------------------------------------

def _resources(ranks: Any, resources: Any) -> tuple[int, dict[str, Any]]:
    if isinstance(ranks, bool) or not isinstance(ranks, int) or not 1 <= ranks <= MAX_RANKS:
        raise Invalid(f"must be a whole number of MPI ranks from 1 to {MAX_RANKS}", field="ranks")
    given = dict(resources or {})
    unknown = sorted(set(given) - set(RESOURCE_FIELDS))
    if unknown:
        raise Invalid(f"unknown resource (valid: {', '.join(RESOURCE_FIELDS)})", field=f"resources.{unknown[0]}")
    try:
        checked = Resources(ntasks=ranks, **given)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise Invalid(str(err["msg"]).removeprefix("Value error, "), field=f"resources.{field}") from None
    return ranks, checked.model_dump(exclude_none=True)


def submit_run(session: Session, user: User, project_id: int, case_id: int, *,
               dispatcher: RunDispatcher | None, storage_root: Path, ranks: int | None = None,
               executor: str = "local", resources: dict[str, Any] | None = None,
               study_id: int | None = None) -> Run:
    """A new run of a case: validated now (Invalid with "spec." paths), stored ``queued``,
    and handed to `dispatcher`, which prepares and starts it in the background.

    ranks: MPI ranks (default: the case's solver.ranks). executor: local or slurm.
    resources: Slurm nodes, partition, account, walltime, mem. Unavailable when no agent
    runs in this portal (no dispatcher).
    """
    case = get_case(session, user, project_id, case_id)
    if dispatcher is None:
        raise Unavailable("no run agent runs in this portal process: start the portal with `weldsim portal` "
                          "(or the documented gunicorn command) to run cases")
    if executor not in EXECUTORS:
        raise Invalid(f"{executor!r} is not an executor (valid: {', '.join(EXECUTORS)})", field="executor")
    spec = case_spec_for_run(session, case, storage_root=storage_root)
    ntasks, res = _resources(spec.solver.ranks if ranks is None else ranks, resources)
    document = spec.to_json_dict()
    run_id = new_run_id()

    def add() -> Run:
        run = Run(run_id=run_id, project_id=case.project_id, case_id=case.id, study_id=study_id,
                  submitted_by_id=user.id, state=RunState.QUEUED.value, executor=executor, ntasks=ntasks,
                  attempts=0, scheduler_job_ids=[])
        session.add(run)
        return run

    run = in_transaction(session, add, f"storing run {run_id}")
    dispatcher.dispatch(run_id, document, executor=executor, ntasks=ntasks, resources=res)
    return run


def cancel_run(session: Session, user: User, run_id: str, *, canceller: RunCanceller | None) -> Run:
    """Cancel a queued or running run and return its row once the run is final.

    A run that has ended already is returned as it is (cancelling twice is harmless).
    """
    run = get_run(session, user, run_id)
    if run.state in FINAL_STATES:
        return run
    if canceller is None:
        raise Unavailable("no run agent runs in this portal process to cancel the run: "
                          f"use `weldsim cancel {run_id}` where the agent runs")
    try:
        canceller(run_id)
    except WeldSimError as exc:
        raise Conflict(f"could not cancel run {run_id}: {exc}") from None
    session.expire_all()
    return get_run(session, user, run_id)


#: ended runs that a new attempt can continue from their last checkpoint
RESUMABLE_STATES = (RunState.INTERRUPTED.value, RunState.CANCELLED.value, RunState.LOST.value)
RunResumer = Callable[[str], None]


def resume_run(session: Session, user: User, run_id: str, *, resumer: RunResumer | None) -> Run:
    """A new attempt of an interrupted, cancelled or lost run, from its last checkpoint
    (a run without one starts again from the beginning); returns the row, ``queued`` or
    further. Conflict for a run that is still going, completed or failed (a failure would
    fail again: fix the case and submit it anew)."""
    run = get_run(session, user, run_id)
    if run.state not in RESUMABLE_STATES:
        raise Conflict(f"run {run_id} is {run.state}: only {', '.join(RESUMABLE_STATES)} runs can be resumed")
    if resumer is None:
        raise Unavailable("no run agent runs in this portal process to resume the run: "
                          f"use `weldsim submit --resume {run_id}` where the agent runs")
    try:
        resumer(run_id)
    except WeldSimError as exc:
        raise Conflict(f"could not resume run {run_id}: {exc}") from None
    session.expire_all()
    return get_run(session, user, run_id)


# --- files -----------------------------------------------------------------------------------

def get_artifact(session: Session, user: User, run_id: str, artifact_id: int, *,
                 runs_root: Path) -> tuple[Artifact, Path]:
    """An artifact of a visible run and the file it names (NotFound if it is gone)."""
    run = get_run(session, user, run_id)
    artifact = session.get(Artifact, artifact_id) if isinstance(artifact_id, int) and 0 < artifact_id < 2**63 else None
    if artifact is None or artifact.run_id != run.run_id:
        raise NotFound(f"run {run_id} has no artifact {artifact_id}")
    try:
        path = inside(RunPaths.for_id(runs_root, run.run_id).root, artifact.path)
    except ValueError:
        raise NotFound(f"artifact {artifact_id} of run {run_id} lies outside its run directory") from None
    if not path.is_file():
        raise NotFound(f"the file {artifact.path} of run {run_id} is gone")
    return artifact, path


def solver_log_tail(session: Session, user: User, run_id: str, *, runs_root: Path, lines: int = 200) -> str:
    """The last `lines` lines of the run's solver.log ('' before the solver has started)."""
    if isinstance(lines, bool) or not isinstance(lines, int) or not 1 <= lines <= MAX_LOG_LINES:
        raise Invalid(f"must be a whole number from 1 to {MAX_LOG_LINES}", field="lines")
    run = get_run(session, user, run_id)
    return tail(RunPaths.for_id(runs_root, run.run_id).solver_log, lines)

