"""/api/v1/projects/{project_id}/cases: simulation cases, validated as CaseSpec.

The `spec` field is documented by weldsim_hpc's CaseSpec model and validated by it (with
the cross-field checks) in portal.services.cases, so every problem comes back with its
path: {"field": "spec.boundary_conditions[1].boundary", "message": "unknown boundary …"}.
`spec.name` defaults to the case name; with `geometry_version_id` the geometry comes from
that version of the project and `spec.geometry` is left out.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field, SkipValidation

from weldsim_hpc.case import CaseSpec

from .. import current_settings
from ..extensions import db
from ..services import cases
from ..services.projects import MAX_DESCRIPTION
from .common import (Name, PageQuery, Strict, api_blueprint, changes_of, current_user, json_response,
                     no_content, page_model, page_response)
from .errors import ErrorEnvelope
from .projects import DeleteQuery, run_canceller

bp = api_blueprint("cases", "/projects/<int:project_id>/cases",
                   "Simulation cases of a project: CaseSpec documents, validated with field paths")

SPEC_DESCRIPTION = ("a CaseSpec (SI units). `name` defaults to the case name; leave `geometry` out when "
                    "geometry_version_id gives it; an uploaded mesh is used only through geometry_version_id")
# documented as CaseSpec, checked in the service (which reports every problem at once)
Spec = SkipValidation[CaseSpec]


class CaseSummaryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    project_id: int
    name: str
    description: str
    geometry_version_id: int | None
    created_at: dt.datetime
    updated_at: dt.datetime


class CaseOut(CaseSummaryOut):
    spec: Spec = Field(description="the case document as stored (custom materials by id)")


CasePage = page_model(CaseSummaryOut)


class CaseCreate(Strict):
    name: Name | None = Field(None, description="default: spec.name")
    description: str = Field("", max_length=MAX_DESCRIPTION)
    spec: Spec = Field(description=SPEC_DESCRIPTION)
    geometry_version_id: int | None = Field(None, description="a geometry version of this project")


class CaseUpdate(Strict):
    name: Name | None = None
    description: str | None = Field(None, max_length=MAX_DESCRIPTION)
    spec: Spec | None = Field(None, description="replaces the whole document; " + SPEC_DESCRIPTION)
    geometry_version_id: int | None = Field(None, description="null detaches the case from its geometry version")


class CaseListQuery(PageQuery):
    q: str | None = Field(None, max_length=200, description="part of the name (case-insensitive)")


class ProjectPath(BaseModel):
    project_id: int


class CasePath(BaseModel):
    project_id: int
    case_id: int


@bp.get("", responses={200: CasePage})
def list_cases(path: ProjectPath, query: CaseListQuery):
    page = cases.list_cases(db.session, current_user(), path.project_id, page=query.page,
                            per_page=query.per_page, search=query.q)
    return page_response(CasePage, page)


@bp.post("", responses={201: CaseOut})
def create_case(path: ProjectPath, body: CaseCreate):
    """Create a case; 422 names every problem of the spec."""
    case = cases.create_case(db.session, current_user(), path.project_id, spec=body.spec, name=body.name,
                             description=body.description, geometry_version_id=body.geometry_version_id,
                             storage_root=current_settings().storage_root)
    return json_response(CaseOut, case, 201,
                         Location=f"/api/v1/projects/{case.project_id}/cases/{case.id}")


@bp.get("/<int:case_id>", responses={200: CaseOut})
def get_case(path: CasePath):
    return json_response(CaseOut, cases.get_case(db.session, current_user(), path.project_id, path.case_id))


@bp.patch("/<int:case_id>", responses={200: CaseOut})
def update_case(path: CasePath, body: CaseUpdate):
    case = cases.update_case(db.session, current_user(), path.project_id, path.case_id,
                             changes_of(body, nullable=("geometry_version_id",)),
                             storage_root=current_settings().storage_root)
    return json_response(CaseOut, case)


@bp.delete("/<int:case_id>", responses={204: None, 503: ErrorEnvelope})
def delete_case(path: CasePath, query: DeleteQuery):
    """Delete the case and its runs (409 while runs are unfinished, unless ?cancel_runs=true)."""
    cases.delete_case(db.session, current_user(), path.project_id, path.case_id,
                      runs_root=current_settings().runs_root, cancel_runs=query.cancel_runs,
                      cancel_run=run_canceller())
    return no_content()
