"""The example project of `weldsim portal --example`: a login, the shipped example cases and
their runs, so that a first start shows the portal doing real work.

Why it is idempotent: the README's main command runs it on every start. The first start
creates the user (a random password), an API token, the project "Examples" with one case
per file in examples/, and submits one run of each; later starts find them and submit
nothing again — the agent host adopts whatever is still running. The login (e-mail,
password, token) is kept in ``<instance>/example-login.json`` (mode 600) so it can be
printed again; if that file is gone, the password is reset and a new token made.

Uses the services only (no Flask request), inside an application context.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash

from weldsim_hpc.case_io import apply_preset, read_case_data

from .models import Project, Run, SimulationCase, User
from .services import accounts, cases, projects, runs
from .services.errors import DomainError
from .services.runs import RunDispatcher

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
EMAIL = "engineer@example.com"
PROJECT = "Examples"
LOGIN_FILE = "example-login.json"
#: (example file, case name), in submission order: the quick ones first
EXAMPLES = (
    ("horn_20khz_stepped_modal.toml", "20 kHz stepped horn: modes"),
    ("tab_weld_cu_al_transient.toml", "Cu-Al tab weld: heating"),
    ("horn_exponential_harmonic.toml", "Exponential horn: driven response"),
    ("horn_coupled.toml", "Horn under a hot weld face: thermal stress"),
)


@dataclass(frozen=True)
class ExampleLogin:
    email: str
    password: str
    token: str
    project_id: int
    run_ids: tuple[str, ...]
    submitted: bool  # False: the runs were there from an earlier start


def seed_example(session: Session, *, instance_path: Path, storage_root: Path, dispatcher: RunDispatcher,
                 preset: str | None = None, ranks: int = 2) -> ExampleLogin:
    """Make sure the example user, project, cases and runs exist; return the login."""
    user, email, password, token = _login(session, instance_path)
    project = session.scalar(select(Project).where(Project.owner_id == user.id, Project.name == PROJECT))
    if project is None:
        project = projects.create_project(
            session, user, name=PROJECT, application_type="li_battery_tab",
            description="The shipped examples: a 20 kHz stepped horn's modes, a Cu/Al battery-tab weld's heating, "
                        "an exponential horn driven at its working frequency, a horn under a hot weld face.")
    by_name = {c.name: c for c in session.scalars(select(SimulationCase).where(SimulationCase.project_id == project.id))}
    for filename, name in EXAMPLES:
        if name not in by_name:
            spec = apply_preset(read_case_data(EXAMPLES_DIR / filename), preset)
            spec.pop("name", None)  # the case's name is the spec's
            by_name[name] = cases.create_case(session, user, project.id, spec=spec, name=name,
                                              storage_root=storage_root)
    submitted = False
    for filename, name in EXAMPLES:
        case = by_name[name]
        if session.scalar(select(Run.run_id).where(Run.case_id == case.id).limit(1)) is None:
            runs.submit_run(session, user, project.id, case.id, dispatcher=dispatcher, storage_root=storage_root,
                            ranks=ranks)
            submitted = True
    run_ids = tuple(session.scalars(select(Run.run_id).where(Run.project_id == project.id)
                                    .order_by(Run.submitted_at, Run.run_id)))
    return ExampleLogin(email, password, token, project.id, run_ids, submitted)


def _login(session: Session, instance_path: Path) -> tuple[User, str, str, str]:
    """The example user and its (e-mail, password, token), from the login file or made anew."""
    path = instance_path / LOGIN_FILE
    saved = _read_login(path)
    user = session.scalar(select(User).where(User.email == EMAIL))
    if user is not None and saved is not None:
        try:
            if check_password_hash(user.password_hash, saved["password"]) \
                    and accounts.user_for_token(session, saved["token"]).id == user.id:
                return user, EMAIL, saved["password"], saved["token"]
        except DomainError:  # a revoked or expired token: make a new login below
            pass
    password = secrets.token_urlsafe(12)
    if user is None:
        user = accounts.create_user(session, EMAIL, password)
    else:
        accounts.set_password(session, user, password)
    token = accounts.create_token(session, user, "example")[1]
    _write_login(path, {"email": EMAIL, "password": password, "token": token})
    return user, EMAIL, password, token


def _read_login(path: Path) -> dict[str, str] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(data, dict) and all(isinstance(data.get(k), str) for k in ("password", "token"))
    return data if ok else None


def _write_login(path: Path, data: dict[str, str]) -> None:
    """Written whole (temporary file + rename), readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)
