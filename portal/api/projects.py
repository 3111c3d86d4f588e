"""/api/v1/projects: create, get, update, delete, list (paginated, filtered, searched).

DELETE answers 409 while the project has unfinished runs, unless ``?cancel_runs=true``,
which cancels them through the run agent the portal hosts (if it hosts none: 503).
"""

from __future__ import annotations

import datetime as dt

from flask import current_app
from pydantic import BaseModel, ConfigDict, Field

from .. import current_settings
from ..extensions import db
from ..models import ApplicationType
from ..services import projects
from ..services.projects import MAX_DESCRIPTION
from ..services.teardown import RunCanceller
from .common import (Name, PageQuery, Strict, api_blueprint, changes_of, current_user, json_response,
                     no_content, page_model, page_response)
from .errors import ErrorEnvelope

bp = api_blueprint("projects", "/projects", "Projects: every case, geometry and run belongs to one")


class ProjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    owner_id: int
    name: str
    application_type: ApplicationType
    description: str
    created_at: dt.datetime
    updated_at: dt.datetime


ProjectPage = page_model(ProjectOut)


class ProjectCreate(Strict):
    name: Name
    application_type: ApplicationType
    description: str = Field("", max_length=MAX_DESCRIPTION)


class ProjectUpdate(Strict):
    name: Name | None = None
    application_type: ApplicationType | None = None
    description: str | None = Field(None, max_length=MAX_DESCRIPTION)


class ProjectListQuery(PageQuery):
    application_type: ApplicationType | None = None
    q: str | None = Field(None, max_length=200, description="part of the name (case-insensitive)")


class ProjectPath(BaseModel):
    project_id: int


class DeleteQuery(Strict):
    cancel_runs: bool = Field(False, description="cancel unfinished runs first instead of answering 409")


def run_canceller() -> RunCanceller | None:
    """The hosted run agent's `cancel_run(run_id)`, or None when the portal hosts no agent."""
    host = current_app.extensions.get("weldsim_agent_host")
    return None if host is None else host.cancel_run


@bp.get("", responses={200: ProjectPage})
def list_projects(query: ProjectListQuery):
    """Your projects (an admin: everyone's), newest first."""
    page = projects.list_projects(db.session, current_user(), page=query.page, per_page=query.per_page,
                                  application_type=query.application_type, search=query.q)
    return page_response(ProjectPage, page)


@bp.post("", responses={201: ProjectOut})
def create_project(body: ProjectCreate):
    project = projects.create_project(db.session, current_user(), name=body.name,
                                      application_type=body.application_type, description=body.description)
    return json_response(ProjectOut, project, 201, Location=f"{bp.url_prefix}/{project.id}")


@bp.get("/<int:project_id>", responses={200: ProjectOut})
def get_project(path: ProjectPath):
    return json_response(ProjectOut, projects.get_project(db.session, current_user(), path.project_id))


@bp.patch("/<int:project_id>", responses={200: ProjectOut})
def update_project(path: ProjectPath, body: ProjectUpdate):
    project = projects.update_project(db.session, current_user(), path.project_id, changes_of(body))
    return json_response(ProjectOut, project)


@bp.delete("/<int:project_id>", responses={204: None, 503: ErrorEnvelope})
def delete_project(path: ProjectPath, query: DeleteQuery):
    """Delete the project with its cases, geometry, runs and files."""
    settings = current_settings()
    projects.delete_project(db.session, current_user(), path.project_id, runs_root=settings.runs_root,
                            storage_root=settings.storage_root, cancel_runs=query.cancel_runs,
                            cancel_run=run_canceller())
    return no_content()
