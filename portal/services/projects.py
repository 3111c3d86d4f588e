"""Projects: create, get, list (paginated; filter by application type, search by name),
update, delete. Deleting a project deletes its geometry, cases and runs (the database
cascades) and then its files: <storage_root>/projects/<id>/ and every run directory.

Example::

    project = create_project(session, user, name="Tab weld 4x", application_type="li_battery_tab")
    page = list_projects(session, user, application_type="li_battery_tab", search="tab")
    delete_project(session, user, project.id, runs_root=rr, storage_root=sr)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..models import ApplicationType, Project, User
from ..models.types import values
from .access import get_project, visible_projects
from .errors import Conflict, Invalid
from .names import check_name
from .pagination import DEFAULT_PER_PAGE, Page, paginate
from .paths import geometry_dir, project_dir
from .teardown import RunCanceller, remove_run_dirs, remove_tree, stop_runs, unfinished_runs

__all__ = ["create_project", "delete_project", "get_project", "list_projects", "update_project"]

MAX_DESCRIPTION = 5000
UPDATABLE = ("name", "application_type", "description")


def _application_type(value: Any) -> str:
    text = value.value if isinstance(value, ApplicationType) else value
    if text not in values(ApplicationType):
        raise Invalid(f"{value!r} is not one of {', '.join(values(ApplicationType))}", field="application_type")
    return text


def _description(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid("must be a string", field="description")
    if len(value) > MAX_DESCRIPTION:
        raise Invalid(f"must be at most {MAX_DESCRIPTION} characters", field="description")
    return value


def _refuse_duplicate(session: Session, owner_id: int, name: str, except_id: int | None = None) -> None:
    stmt = select(Project.id).where(Project.owner_id == owner_id, Project.name == name)
    if except_id is not None:
        stmt = stmt.where(Project.id != except_id)
    if session.scalar(stmt) is not None:
        raise Conflict(f"a project named {name!r} exists already", field="name")


def _commit_or_conflict(session: Session, name: str) -> None:
    try:
        session.commit()
    except IntegrityError:  # a concurrent request took the name between check and commit
        session.rollback()
        raise Conflict(f"a project named {name!r} exists already", field="name") from None


def create_project(session: Session, owner: User, *, name: str, application_type: str | ApplicationType,
                   description: str = "") -> Project:
    """A new project of `owner`; names are unique per owner."""
    name = check_name(name)
    project = Project(owner_id=owner.id, name=name, application_type=_application_type(application_type),
                      description=_description(description))
    _refuse_duplicate(session, owner.id, name)
    session.add(project)
    _commit_or_conflict(session, name)
    return project


def list_projects(session: Session, user: User, *, page: int = 1, per_page: int = DEFAULT_PER_PAGE,
                  application_type: str | ApplicationType | None = None, search: str | None = None) -> Page:
    """The projects `user` may see, newest first; `search` matches names (case-insensitive)."""
    stmt = select(Project).where(visible_projects(user))
    if application_type is not None:
        stmt = stmt.where(Project.application_type == _application_type(application_type))
    if search:
        stmt = stmt.where(func.lower(Project.name).contains(search.strip().lower(), autoescape=True))
    return paginate(session, stmt.order_by(Project.id.desc()), page, per_page)


def update_project(session: Session, user: User, project_id: int, changes: Mapping[str, Any]) -> Project:
    """Apply `changes` (any of name, application_type, description) to a visible project."""
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise Invalid(f"cannot be changed (changeable: {', '.join(UPDATABLE)})", field=sorted(unknown)[0])
    project = get_project(session, user, project_id)
    new = {}
    if "name" in changes:
        new["name"] = check_name(changes["name"])
        _refuse_duplicate(session, project.owner_id, new["name"], except_id=project.id)
    if "application_type" in changes:
        new["application_type"] = _application_type(changes["application_type"])
    if "description" in changes:
        new["description"] = _description(changes["description"])
    for key, value in new.items():
        setattr(project, key, value)
    _commit_or_conflict(session, project.name)
    return project


def delete_project(session: Session, user: User, project_id: int, *, runs_root: Path, storage_root: Path,
                   cancel_runs: bool = False, cancel_run: RunCanceller | None = None) -> None:
    """Delete a visible project with everything under it, files included.

    Unfinished runs: Conflict unless `cancel_runs`, which cancels them through
    `cancel_run` first (see portal.services.teardown).
    """
    project = get_project(session, user, project_id)
    stop_runs(unfinished_runs(project.runs), cancel=cancel_runs, cancel_run=cancel_run,
              what=f"project {project.id}")
    run_ids = [r.run_id for r in project.runs]
    files = project_dir(storage_root, project.id)
    geometry_dirs = [geometry_dir(storage_root, v.id) for v in project.geometry_versions]
    session.delete(project)
    session.commit()
    remove_run_dirs(runs_root, run_ids)
    remove_tree(files)
    for folder in geometry_dirs:
        remove_tree(folder)
