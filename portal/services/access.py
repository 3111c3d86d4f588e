"""Who sees what. A project and everything under it (geometry, cases, runs, artifacts,
streams) belongs to its owner; an admin sees every project; anyone else gets NotFound —
the same answer as for a project that does not exist, so ids reveal nothing.

Other services build on these two functions: `get_project` for one project,
`visible_projects` to filter a query (e.g. runs joined to their project).

Example::

    project = get_project(session, user, 42)                 # NotFound unless visible
    stmt = select(Run).join(Project).where(visible_projects(user))
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, true
from sqlalchemy.orm import Session

from ..models import Project, User
from .errors import NotFound


def can_see(user: User, project: Project) -> bool:
    """True if `user` owns `project` or is an admin."""
    return bool(user.is_admin) or project.owner_id == user.id


def visible_projects(user: User) -> ColumnElement[bool]:
    """A WHERE clause on Project: the projects `user` may see."""
    return true() if user.is_admin else Project.owner_id == user.id


def get_project(session: Session, user: User, project_id: int) -> Project:
    """The project with this id if `user` may see it; NotFound otherwise."""
    project = session.get(Project, project_id) if _is_id(project_id) else None
    if project is None or not can_see(user, project):
        raise NotFound(f"project {project_id} not found")
    return project


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63
