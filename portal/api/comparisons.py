"""/api/v1 comparisons: runs of a project side by side on metrics, against a baseline run.

    POST   /projects/{project_id}/comparisons     create from run ids × metric names → 201
    GET    /projects/{project_id}/comparisons     a project's comparisons, newest first
    GET    /comparisons/{comparison_id}           one, with a row per run
    POST   /comparisons/{comparison_id}/refresh   recompute from the runs' current metrics;
                                                  optionally add runs or change the baseline
    DELETE /comparisons/{comparison_id}           → 204 (the runs stay)

Per run and metric: value, unit (from the metric registry), delta = value − baseline,
relative_delta = delta / |baseline|, and a note when a number is missing (the run has no
such metric yet, the baseline has none, or the baseline is 0). The logic lives in
portal.services.comparisons.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..extensions import db
from ..models import Comparison
from ..services import comparisons
from ..services.comparisons import MAX_DESCRIPTION, MAX_METRICS, MAX_RUNS
from ..services.pagination import Page
from .common import (Name, PageQuery, Strict, api_blueprint, current_user, json_response, no_content, page_model,
                     page_response)

bp = api_blueprint("comparisons", "", "Comparisons of runs on their metrics, against a baseline run",
                   tag="comparisons")


class MetricEntryOut(BaseModel):
    value: float | None = Field(description="the run's value (SI), null if it has none")
    unit: str = Field(description="from the metric registry ('1' for ratios)")
    delta: float | None = Field(description="value − baseline value")
    relative_delta: float | None = Field(description="(value − baseline) / |baseline|")
    note: str | None = Field(description="why a number is missing")


class ComparisonRowOut(BaseModel):
    run_id: str
    case_id: int
    run_state: str
    is_baseline: bool
    computed_at: dt.datetime
    metrics: dict[str, MetricEntryOut]


class MetricInfoOut(BaseModel):
    name: str
    unit: str
    description: str


class ComparisonOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    project_id: int
    name: str
    description: str
    metric_names: list[str] = Field(description="as chosen; [] = every metric the runs share")
    metrics: list[MetricInfoOut] = Field(description="the metrics compared, with their units")
    baseline_run_id: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    results: list[ComparisonRowOut] = Field(description="the baseline first, then the runs in the order added")


ComparisonPage = page_model(ComparisonOut)


class ComparisonCreate(Strict):
    name: Name
    description: str = Field("", max_length=MAX_DESCRIPTION)
    run_ids: list[str] = Field(max_length=MAX_RUNS, description="runs of this project (at least one)")
    metric_names: list[str] = Field(default_factory=list, max_length=MAX_METRICS,
                                    description="registered metric names (f_working_Hz, gain, mode.3.frequency_Hz, "
                                                "probe.<p>.<field> …); [] = every metric the runs share")
    baseline_run_id: str | None = Field(None, description="one of run_ids (default: the first)")


class ComparisonRefresh(Strict):
    add_run_ids: list[str] = Field(default_factory=list, max_length=MAX_RUNS,
                                   description="runs of the project to add (already compared ones are kept)")
    baseline_run_id: str | None = Field(None, description="make this run of the comparison the baseline")


class ProjectPath(BaseModel):
    project_id: int


class ComparisonPath(BaseModel):
    comparison_id: int


def comparison_data(comparison: Comparison) -> dict[str, Any]:
    from weldsim_hpc.results import metric_spec

    rows = comparisons.ordered_results(comparison)
    names = comparisons.effective_metric_names(comparison)
    return {"id": comparison.id, "project_id": comparison.project_id, "name": comparison.name,
            "description": comparison.description, "metric_names": comparison.metric_names,
            "metrics": [{"name": n, "unit": metric_spec(n).unit, "description": metric_spec(n).description}
                        for n in names],
            "baseline_run_id": next((r.run_id for r in rows if r.is_baseline), None),
            "created_at": comparison.created_at, "updated_at": comparison.updated_at,
            "results": [{"run_id": r.run_id, "case_id": r.run.case_id, "run_state": r.run.state,
                         "is_baseline": r.is_baseline, "computed_at": r.computed_at, "metrics": r.summary}
                        for r in rows]}


@bp.post("/projects/<int:project_id>/comparisons", responses={201: ComparisonOut})
def create_comparison(path: ProjectPath, body: ComparisonCreate):
    """Compare runs of the project on metrics against a baseline run (422 names the bad field)."""
    comparison = comparisons.create_comparison(
        db.session, current_user(), path.project_id, name=body.name, description=body.description,
        run_ids=body.run_ids, metric_names=body.metric_names, baseline_run_id=body.baseline_run_id)
    return json_response(ComparisonOut, comparison_data(comparison), 201,
                         Location=f"{bp.url_prefix}/comparisons/{comparison.id}")


@bp.get("/projects/<int:project_id>/comparisons", responses={200: ComparisonPage})
def list_comparisons(path: ProjectPath, query: PageQuery):
    """The project's comparisons, newest first."""
    page = comparisons.list_comparisons(db.session, current_user(), path.project_id, page=query.page,
                                        per_page=query.per_page)
    return page_response(ComparisonPage, Page(items=[comparison_data(c) for c in page.items], page=page.page,
                                              per_page=page.per_page, total=page.total))


@bp.get("/comparisons/<int:comparison_id>", responses={200: ComparisonOut})
def get_comparison(path: ComparisonPath):
    return json_response(ComparisonOut, comparison_data(
        comparisons.get_comparison(db.session, current_user(), path.comparison_id)))


@bp.post("/comparisons/<int:comparison_id>/refresh", responses={200: ComparisonOut})
def refresh_comparison(path: ComparisonPath, body: ComparisonRefresh):
    """Recompute from the runs' current metrics (after new runs finished), adding runs if given."""
    comparison = comparisons.refresh_comparison(db.session, current_user(), path.comparison_id,
                                                add_run_ids=body.add_run_ids, baseline_run_id=body.baseline_run_id)
    return json_response(ComparisonOut, comparison_data(comparison))


@bp.delete("/comparisons/<int:comparison_id>", responses={204: None})
def delete_comparison(path: ComparisonPath):
    comparisons.delete_comparison(db.session, current_user(), path.comparison_id)
    return no_content()
