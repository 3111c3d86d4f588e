"""Simulation cases: CaseSpec documents of a project, validated as a run would validate them.

A case stores the document its user wrote (`spec`), with `name` equal to the case name.
Validation is weldsim_hpc's own (`parse_case`: the pydantic models, then the cross-field
checks), with the owner's custom materials inlined first; every problem is reported with
its field path under "spec." ("spec.boundary_conditions[1].boundary").

Geometry comes either from the spec (a parametric horn or tab stack) or from a geometry
version of the project (`geometry_version_id`): the version's mesh once it is meshed, else
a parametric version's parameters or an uploaded file, as {"kind": "mesh_file", "path":
<relative to the storage root>}; a version still generating, meshing or failed is refused. A spec
may not name a mesh file by itself — user text never becomes a path.

`case_spec_for_run` is what a submission writes as case.json: custom materials inlined,
the mesh path resolved under the storage root.

Example::

    case = create_case(session, user, project.id, spec=doc, storage_root=settings.storage_root)
    spec = case_spec_for_run(session, case, storage_root=settings.storage_root)
    spec.to_json_dict()    # → case.json
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from weldsim_hpc.case import CaseSpec
from weldsim_hpc.case_io import parse_case
from weldsim_hpc.errors import CaseValidationError

from ..models import GeometryKind, GeometryVersion, Project, SimulationCase, User
from .access import get_project
from .errors import Conflict, Invalid, NotFound
from .materials import custom_library, inline_custom_materials
from .names import check_name
from .pagination import DEFAULT_PER_PAGE, Page, paginate
from .paths import inside
from .projects import MAX_DESCRIPTION
from .teardown import RunCanceller, remove_run_dirs, stop_runs, unfinished_runs

UPDATABLE = ("name", "description", "spec", "geometry_version_id")
MESH_FILE = "mesh_file"
#: statuses of a geometry version a case may use (portal.services.geometries)
USABLE_GEOMETRY = ("generated", "meshed")


def get_case(session: Session, user: User, project_id: int, case_id: int) -> SimulationCase:
    """A case of a project `user` may see; NotFound otherwise (or if it is another project's)."""
    project = get_project(session, user, project_id)
    case = session.get(SimulationCase, case_id) if isinstance(case_id, int) and 0 < case_id < 2**63 else None
    if case is None or case.project_id != project.id:
        raise NotFound(f"case {case_id} not found in project {project.id}")
    return case


def list_cases(session: Session, user: User, project_id: int, *, page: int = 1,
               per_page: int = DEFAULT_PER_PAGE, search: str | None = None) -> Page:
    project = get_project(session, user, project_id)
    stmt = select(SimulationCase).where(SimulationCase.project_id == project.id)
    if search:
        stmt = stmt.where(func.lower(SimulationCase.name).contains(search.strip().lower(), autoescape=True))
    return paginate(session, stmt.order_by(SimulationCase.id.desc()), page, per_page)


def create_case(session: Session, user: User, project_id: int, *, spec: Any, storage_root: Path,
                name: str | None = None, description: str = "",
                geometry_version_id: int | None = None) -> SimulationCase:
    """A new case of a visible project; Invalid with the field path if the spec is not sound."""
    project = get_project(session, user, project_id)
    version = _geometry_version(session, project, geometry_version_id)
    name, doc = _named(spec, name)
    doc = _validated(session, project, doc, version, storage_root)
    _refuse_duplicate(session, project.id, name)
    case = SimulationCase(project_id=project.id, name=name, description=_description(description), spec=doc,
                          geometry_version_id=version.id if version else None)
    session.add(case)
    _commit_or_conflict(session, name)
    return case


def update_case(session: Session, user: User, project_id: int, case_id: int, changes: Mapping[str, Any], *,
                storage_root: Path) -> SimulationCase:
    """Change name, description, spec (replaced whole) or geometry_version_id (null detaches)."""
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise Invalid(f"cannot be changed (changeable: {', '.join(UPDATABLE)})", field=sorted(unknown)[0])
    case = get_case(session, user, project_id, case_id)
    description = _description(changes["description"]) if "description" in changes else case.description
    if {"name", "spec", "geometry_version_id"} & set(changes):
        version = _geometry_version(session, case.project, changes["geometry_version_id"]) \
            if "geometry_version_id" in changes else case.geometry_version
        name, doc = _updated_document(case, changes, version)
        doc = _validated(session, case.project, doc, version, storage_root)
        _refuse_duplicate(session, case.project_id, name, except_id=case.id)
        case.name, case.spec = name, doc
        case.geometry_version_id = version.id if version else None
    case.description = description
    _commit_or_conflict(session, case.name)
    return case


def delete_case(session: Session, user: User, project_id: int, case_id: int, *, runs_root: Path,
                cancel_runs: bool = False, cancel_run: RunCanceller | None = None) -> None:
    """Delete a case and its runs (directories too); unfinished runs as for projects."""
    case = get_case(session, user, project_id, case_id)
    stop_runs(unfinished_runs(case.runs), cancel=cancel_runs, cancel_run=cancel_run, what=f"case {case.id}")
    run_ids = [r.run_id for r in case.runs]
    session.delete(case)
    session.commit()
    remove_run_dirs(runs_root, run_ids)


def case_spec_for_run(session: Session, case: SimulationCase, *, storage_root: Path) -> CaseSpec:
    """The case as a job gets it: validated again now, custom materials inlined, mesh path absolute.

    ``.to_json_dict()`` of the result is the run's case.json. Invalid (paths under "spec.")
    if the case no longer validates, e.g. a custom material it names was changed.
    """
    doc = inline_custom_materials(case.spec, custom_library(session, case.project.owner_id))
    try:
        return parse_case(doc, base_dir=Path(storage_root))
    except CaseValidationError as exc:
        raise Invalid.from_problems(exc.errors, "spec") from None


# --- helpers -----------------------------------------------------------------------------------

def _updated_document(case: SimulationCase, changes: Mapping[str, Any],
                      version: GeometryVersion | None) -> tuple[str, dict[str, Any]]:
    """The (name, spec) an update asks for, before validation."""
    if "spec" in changes:
        spec = changes["spec"]
        # a new spec keeps the case's name unless `name` or spec.name gives another
        has_name = isinstance(spec, Mapping) and spec.get("name") is not None
        return _named(spec, changes.get("name", None if has_name else case.name))
    doc = {k: v for k, v in case.spec.items() if k != "name"}
    if version is not None and version.id != case.geometry_version_id:
        doc.pop("geometry", None)  # a new version brings its own geometry; detaching keeps the old one
    old = case.geometry_version
    if version is None and old is not None and old.kind == GeometryKind.PARAMETRIC.value \
            and isinstance(old.params, Mapping) and (doc.get("geometry") or {}).get("kind") == MESH_FILE:
        doc["geometry"] = dict(old.params)  # detached from its mesh: the parameters it was made from
    return _named(doc, changes.get("name", case.name))


def _named(spec: Any, name: str | None) -> tuple[str, dict[str, Any]]:
    """(case name, spec with that name): from `name`, else from spec.name; they must agree."""
    if not isinstance(spec, Mapping):
        raise Invalid("must be a CaseSpec object (analysis, geometry, materials, …)", field="spec")
    doc = dict(spec)
    spec_name = doc.get("name")
    if name is None and spec_name is None:
        raise Invalid("give the case a name (name, or spec.name)", field="name")
    if name is not None:
        name = check_name(name)
        if spec_name is not None and (not isinstance(spec_name, str) or spec_name.strip() != name):
            raise Invalid(f"differs from name {name!r}: give one of them, or the same", field="spec.name")
    else:
        name = check_name(spec_name, "spec.name")
    doc["name"] = name
    return name, doc


def _description(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise Invalid(f"must be a string of at most {MAX_DESCRIPTION} characters", field="description")
    return value


def _geometry_version(session: Session, project: Project, version_id: Any) -> GeometryVersion | None:
    if version_id is None:
        return None
    version = session.get(GeometryVersion, version_id) \
        if isinstance(version_id, int) and not isinstance(version_id, bool) and 0 < version_id < 2**63 else None
    if version is None or version.project_id != project.id:
        raise Invalid(f"no geometry version {version_id!r} in project {project.id}", field="geometry_version_id")
    return version


def _geometry_of(version: GeometryVersion) -> dict[str, Any]:
    """The spec's geometry table for a geometry version: its mesh once it has one (so a run
    uses the mesh that was previewed), else its parameters or uploaded file."""
    if version.status not in USABLE_GEOMETRY:
        why = f" ({version.error})" if version.error else ""
        raise Invalid(f"geometry version {version.version} is {version.status}{why}: a case needs a version "
                      f"whose status is {' or '.join(USABLE_GEOMETRY)}", field="geometry_version_id")
    if version.mesh_path:
        return {"kind": MESH_FILE, "path": version.mesh_path}
    if version.kind == GeometryKind.PARAMETRIC.value:
        if not isinstance(version.params, Mapping) or "kind" not in version.params:
            raise Invalid(f"geometry version {version.version} holds no geometry table (with 'kind')",
                          field="geometry_version_id")
        return dict(version.params)
    return {"kind": MESH_FILE, "path": version.file_path}


def _validated(session: Session, project: Project, doc: dict[str, Any], version: GeometryVersion | None,
               storage_root: Path) -> dict[str, Any]:
    """`doc` with its geometry settled, after weldsim_hpc's validation passed."""
    if version is not None:
        derived = _geometry_of(version)
        if "geometry" in doc and doc["geometry"] != derived:
            raise Invalid(f"this case takes its geometry from geometry version {version.version} "
                          "(geometry_version_id): leave spec.geometry out", field="spec.geometry")
        if derived["kind"] == MESH_FILE:
            try:
                inside(storage_root, derived["path"])
            except (TypeError, ValueError):
                raise Invalid("the uploaded mesh of this geometry version lies outside the storage root",
                              field="geometry_version_id") from None
        doc["geometry"] = derived
    else:
        geometry = doc.get("geometry")
        if isinstance(geometry, Mapping) and geometry.get("kind") == MESH_FILE:
            raise Invalid("a case uses an uploaded mesh through geometry_version_id, not by path: upload the "
                          "mesh as a geometry version of the project", field="spec.geometry.kind")
    full = inline_custom_materials(doc, custom_library(session, project.owner_id))
    try:
        parse_case(full, base_dir=Path(storage_root))
    except CaseValidationError as exc:
        raise Invalid.from_problems(exc.errors, "spec") from None
    return doc


def _refuse_duplicate(session: Session, project_id: int, name: str, except_id: int | None = None) -> None:
    stmt = select(SimulationCase.id).where(SimulationCase.project_id == project_id, SimulationCase.name == name)
    if except_id is not None:
        stmt = stmt.where(SimulationCase.id != except_id)
    if session.scalar(stmt) is not None:
        raise Conflict(f"this project has a case named {name!r} already", field="name")


def _commit_or_conflict(session: Session, name: str) -> None:
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"this project has a case named {name!r} already", field="name") from None
