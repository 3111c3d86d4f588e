"""Visibility of the objects a URL names, checked before anything else reads the request.

For every path variable of an /api/ URL that has a guard here (project_id, case_id, …),
the guard runs right after authentication: a project or case the caller may not see
answers 404 before the body is even parsed, so another user's objects look exactly like
missing ones whatever is sent. Runs (run_id) and their files (artifact_id) are guarded
the same way. A new resource adds its own guard, e.g.::

    PATH_GUARDS["study_id"] = lambda session, user, args: studies.get_study(session, user, args["study_id"])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import request
from sqlalchemy.orm import Session

from ..extensions import db
from ..models import Artifact, User
from ..services import access, accounts, cases, materials, runs
from ..services.errors import NotFound

PathGuard = Callable[[Session, User, Mapping[str, Any]], object]

PATH_GUARDS: dict[str, PathGuard] = {
    "project_id": lambda session, user, args: access.get_project(session, user, args["project_id"]),
    "case_id": lambda session, user, args: cases.get_case(session, user, args["project_id"], args["case_id"]),
    "material_row_id": lambda session, user, args: materials.get_custom(session, user, args["material_row_id"]),
    "token_id": lambda session, user, args: accounts.get_token(session, user, args["token_id"]),
    "run_id": lambda session, user, args: runs.get_run(session, user, args["run_id"]),
    "artifact_id": lambda session, user, args: _artifact(session, user, args["run_id"], args["artifact_id"]),
}


def _artifact(session: Session, user: User, run_id: str, artifact_id: object) -> Artifact:
    """The artifact row if it belongs to a run `user` may see (its file is checked by the view)."""
    run = runs.get_run(session, user, run_id)
    artifact = session.get(Artifact, artifact_id) if isinstance(artifact_id, int) and 0 < artifact_id < 2**63 else None
    if artifact is None or artifact.run_id != run.run_id:
        raise NotFound(f"run {run_id} has no artifact {artifact_id}")
    return artifact


def check_path_objects(user: User) -> None:
    """Run the guard of every path variable of this request (NotFound stops it)."""
    args = request.view_args or {}
    for name in args:
        guard = PATH_GUARDS.get(name)
        if guard is not None:
            guard(db.session, user, args)
