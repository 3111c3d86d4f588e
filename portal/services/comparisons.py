"""Comparisons: runs of one project set side by side on named metrics, against a baseline run.

Why stored and not computed on each GET: a comparison is something an engineer names and
comes back to ("horn length sweep"), and its numbers should not move under them; they
change when asked — `refresh_comparison` recomputes every row from the runs' current
metrics and may add runs (e.g. the ones that finished since).

Each run gets one ComparisonResult whose `summary` is, per compared metric::

    {"value": float | null, "unit": "Hz", "delta": value - baseline | null,
     "relative_delta": (value - baseline) / |baseline| | null, "note": str | null}

Units come from the metric registry (weldsim_hpc.results.metric_spec). A metric a run
does not have (not finished, failed, or an analysis that does not yield it) gives null
numbers and a note saying why — never an error. An empty `metric_names` compares every
metric the runs that have metrics all share.

Every function checks visibility through `access` (NotFound for comparisons of projects
the user may not see); bad input raises Invalid naming the field, before anything is
stored.

Example::

    comp = create_comparison(session, user, project.id, name="length sweep",
                             run_ids=[a, b], metric_names=["f_working_Hz"], baseline_run_id=a)
    comp = refresh_comparison(session, user, comp.id, add_run_ids=[c])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from weldsim_hpc.results import MetricError, metric_spec
from weldsim_hpc.run_paths import is_run_id

from ..models import Comparison, ComparisonResult, Run, User, utcnow
from .access import can_see, get_project
from .errors import Conflict, Invalid, NotFound
from .names import check_name
from .pagination import DEFAULT_PER_PAGE, Page, paginate

MAX_RUNS = 200
MAX_METRICS = 100
MAX_DESCRIPTION = 5000


# --- checking input -------------------------------------------------------------------------------

def _strings(value: Any, field: str, limit: int, what: str) -> list[str]:
    if not isinstance(value, (list, tuple)):
        raise Invalid(f"must be a list of {what}", field=field)
    if len(value) > limit:
        raise Invalid(f"at most {limit} {what} (got {len(value)})", field=field)
    seen: set[str] = set()
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise Invalid(f"must be a string, got {type(item).__name__}", field=f"{field}[{i}]")
        if item in seen:
            raise Invalid(f"{item!r} is listed twice", field=f"{field}[{i}]")
        seen.add(item)
    return list(value)


def check_metric_names(value: Any) -> list[str]:
    """Registered metric names (Invalid naming the first unknown one and the rule)."""
    names = _strings(value, "metric_names", MAX_METRICS, "metric names")
    for i, name in enumerate(names):
        try:
            metric_spec(name)
        except MetricError as exc:
            raise Invalid(str(exc), field=f"metric_names[{i}]") from None
    return names


def _runs_of_project(session: Session, project_id: int, run_ids: Sequence[str], field: str) -> list[Run]:
    """The runs, each of project `project_id` (a run of another project, or none at all,
    gets the same answer: ids reveal nothing)."""
    runs = []
    for i, run_id in enumerate(run_ids):
        run = session.get(Run, run_id) if is_run_id(run_id) else None
        if run is None or run.project_id != project_id:
            raise Invalid(f"run {run_id!r} is not a run of project {project_id}", field=f"{field}[{i}]")
        runs.append(run)
    return runs


def _description(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise Invalid(f"must be a string of at most {MAX_DESCRIPTION} characters", field="description")
    return value


# --- the numbers ----------------------------------------------------------------------------------

def effective_metric_names(comparison: Comparison) -> list[str]:
    """The metric names compared: the chosen ones, or (none chosen) those every run with
    metrics has, sorted."""
    if comparison.metric_names:
        return list(comparison.metric_names)
    sets = [{m.name for m in r.run.metrics} for r in comparison.results if r.run.metrics]
    return sorted(set.intersection(*sets)) if sets else []


def _entry(name: str, run: Run, value: float | None, baseline: Run, base: float | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"value": value, "unit": metric_spec(name).unit, "delta": None,
                             "relative_delta": None, "note": None}
    if value is None:
        state = "" if run.state == "completed" else f" (the run is {run.state})"
        entry["note"] = f"run {run.run_id} has no metric {name}{state}"
    elif base is None:
        entry["note"] = f"the baseline run {baseline.run_id} has no metric {name}"
    else:
        entry["delta"] = value - base
        if base == 0:
            entry["note"] = "the baseline value is 0: no relative delta"
        else:
            entry["relative_delta"] = (value - base) / abs(base)
    return entry


def _recompute(comparison: Comparison) -> None:
    if not comparison.results:
        return
    if not any(r.is_baseline for r in comparison.results):  # the baseline run was deleted
        ordered_results(comparison)[0].is_baseline = True
    baseline = next(r.run for r in comparison.results if r.is_baseline)
    names = effective_metric_names(comparison)
    base = {m.name: m.value for m in baseline.metrics}
    now = utcnow()
    for result in comparison.results:
        have = {m.name: m.value for m in result.run.metrics}
        result.summary = {n: _entry(n, result.run, have.get(n), baseline, base.get(n)) for n in names}
        result.computed_at = now


def _commit(session: Session, what: str) -> None:
    try:
        session.commit()
    except IntegrityError:  # a concurrent refresh added the same run, or a run was deleted meanwhile
        session.rollback()
        raise Conflict(f"{what} clashed with a concurrent change: try again") from None


# --- the operations -------------------------------------------------------------------------------

def create_comparison(session: Session, user: User, project_id: int, *, name: str, run_ids: Sequence[str],
                      metric_names: Sequence[str] = (), baseline_run_id: str | None = None,
                      description: str = "") -> Comparison:
    """A comparison of runs of a visible project on `metric_names` (registered names;
    empty: every shared metric) against `baseline_run_id` (default: the first run)."""
    project = get_project(session, user, project_id)
    name = check_name(name)
    description = _description(description)
    ids = _strings(run_ids, "run_ids", MAX_RUNS, "run ids")
    if not ids:
        raise Invalid("name at least one run", field="run_ids")
    names = check_metric_names(list(metric_names))
    runs = _runs_of_project(session, project.id, ids, "run_ids")
    baseline = ids[0] if baseline_run_id is None else baseline_run_id
    if baseline not in ids:
        raise Invalid(f"the baseline {baseline!r} must be one of run_ids", field="baseline_run_id")
    comparison = Comparison(project_id=project.id, name=name, description=description, metric_names=names)
    comparison.results = [ComparisonResult(run=run, run_id=run.run_id, is_baseline=run.run_id == baseline)
                          for run in runs]
    _recompute(comparison)
    session.add(comparison)
    _commit(session, "creating the comparison")
    return comparison


def get_comparison(session: Session, user: User, comparison_id: int) -> Comparison:
    """The comparison if `user` may see its project; NotFound otherwise."""
    ok = isinstance(comparison_id, int) and not isinstance(comparison_id, bool) and 0 < comparison_id < 2**63
    comparison = session.get(Comparison, comparison_id) if ok else None
    if comparison is None or not can_see(user, comparison.project):
        raise NotFound(f"comparison {comparison_id} not found")
    return comparison


def list_comparisons(session: Session, user: User, project_id: int, *, page: int = 1,
                     per_page: int = DEFAULT_PER_PAGE) -> Page:
    """A visible project's comparisons, newest first."""
    project = get_project(session, user, project_id)
    stmt = select(Comparison).where(Comparison.project_id == project.id).order_by(Comparison.id.desc())
    return paginate(session, stmt, page, per_page)


def refresh_comparison(session: Session, user: User, comparison_id: int, *, add_run_ids: Sequence[str] = (),
                       baseline_run_id: str | None = None) -> Comparison:
    """Recompute every row from the runs' current metrics, after adding `add_run_ids`
    (runs of the same project; ones already compared are kept as they are) and, if
    given, making `baseline_run_id` the baseline."""
    comparison = get_comparison(session, user, comparison_id)
    ids = _strings(list(add_run_ids), "add_run_ids", MAX_RUNS, "run ids")
    present = {r.run_id for r in comparison.results}
    new_runs = _runs_of_project(session, comparison.project_id, ids, "add_run_ids")
    new_runs = [r for r in new_runs if r.run_id not in present]
    if len(present) + len(new_runs) > MAX_RUNS:
        raise Invalid(f"a comparison holds at most {MAX_RUNS} runs", field="add_run_ids")
    if baseline_run_id is not None and baseline_run_id not in present | {r.run_id for r in new_runs}:
        raise Invalid(f"the baseline {baseline_run_id!r} must be a run of the comparison", field="baseline_run_id")
    for run in new_runs:
        comparison.results.append(ComparisonResult(run=run, run_id=run.run_id, is_baseline=False))
    if baseline_run_id is not None:
        for result in comparison.results:
            result.is_baseline = result.run_id == baseline_run_id
    _recompute(comparison)
    comparison.updated_at = utcnow()
    _commit(session, "refreshing the comparison")
    return comparison


def delete_comparison(session: Session, user: User, comparison_id: int) -> None:
    """Delete a visible comparison (its runs stay)."""
    comparison = get_comparison(session, user, comparison_id)
    session.delete(comparison)
    session.commit()


def ordered_results(comparison: Comparison) -> list[ComparisonResult]:
    """The baseline first, then the others in the order they were added (rows not yet
    flushed, i.e. without an id, after the stored ones)."""
    return sorted(comparison.results, key=lambda r: (not r.is_baseline, r.id is None, r.id or 0))
