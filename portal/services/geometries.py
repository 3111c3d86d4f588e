"""Geometry versions of a project: parametric horns and tab stacks, uploads, meshes, previews.

Every version has a number (1, 2, … per project) and a directory of its own,
``<storage_root>/geometries/<version id>/``, holding files under generated names only:

    geometry.step   parametric: the generated solid (STEP, millimetre-declared, exact)
    source.step     an uploaded STEP horn   |   source.msh   an uploaded gmsh mesh
    geometry.stl    the surface (coarse before meshing, the mesh's surface after)
    mesh.msh        the volume mesh (gmsh MSH 4.1) with named physical groups; groups.json
    preview.json    the decimated surface for a viewer (portal.services.geometry_preview)

gmsh runs out of process (DESIGN.md): these functions check the input, store the row with
its `status` and hand the work to `jobs` (portal.geometry_jobs.GeometryJobs, or anything
with ``submit(version_id, request)``); the job records its result with `record_result`.
Status: parametric and uploaded STEP go generating → generated, then (request_mesh)
meshing → meshed; an uploaded .msh goes generating (being checked) → meshed; any job may
end in failed, with `error` saying why. A version used by a case is not meshed again (the
case must keep running on what it was made with): make a new version instead.

A case on a version (portal.services.cases) runs on the version's mesh once it has one
(`mesh_path`), so a run uses exactly the mesh that was previewed.

Example::

    v = create_parametric(session, user, pid, params={"kind": "stepped", …}, storage_root=root, jobs=jobs)
    jobs.wait(v.id); v = request_mesh(session, user, pid, v.id, options={"size_m": 0.004}, storage_root=root, jobs=jobs)
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, Literal

from pydantic import ConfigDict, Field, PositiveFloat, ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from weldsim_hpc.errors import MaterialError, MeshError, WeldSimError
from weldsim_hpc.geometry import parse_geometry
from weldsim_hpc.geometry.groups import HORN, INPUT_FACE, LATERAL, OUTPUT_FACE
from weldsim_hpc.geometry.sizing import MeshSettings, check_cell_limit, default_size_m, resolve_sizes, shear_wave_speed
from weldsim_hpc.materials import get_material, material_from_dict
from weldsim_hpc.mesh import read_msh_group_names

from ..models import GeometryKind, GeometryVersion, SimulationCase, User
from ..models.types import GeometryStatus
from . import geometry_uploads as uploads
from .access import get_project
from .errors import Conflict, Invalid, NotFound, Unavailable
from .materials import custom_library
from .pagination import DEFAULT_PER_PAGE, Page, paginate
from .paths import GEOMETRIES_DIR, geometry_dir, inside

log = logging.getLogger("weldsim.portal.geometry")

STEP, SOURCE_STEP, SOURCE_MSH = "geometry.step", "source.step", "source.msh"
STL, MSH, PREVIEW = "geometry.stl", "mesh.msh", "preview.json"
#: downloadable files: name in the API -> (suffix, MIME type)
FILE_KINDS = {"step": (".step", "application/step"), "stl": (".stl", "model/stl"), "msh": (".msh", "text/plain")}
BUSY = (GeometryStatus.GENERATING.value, GeometryStatus.MESHING.value)
MESHABLE = (GeometryStatus.GENERATED.value, GeometryStatus.MESHED.value, GeometryStatus.FAILED.value)
INTERRUPTED = "interrupted: the portal stopped while this job ran; request the mesh again or make a new version"
_INSERT_ATTEMPTS = 5


class MeshOptions(MeshSettings):
    """Mesh controls (metres) of request_mesh: weldsim_hpc's MeshSettings, plus the material
    and frequency of the default size rule (size_m left out: min(λ_s/6, d_min/4) with
    λ_s = c_s/(1.5 f), see weldsim_hpc.geometry.sizing)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    material: str | None = Field(None, max_length=200, description="built-in or custom material id (default size)")
    target_frequency_Hz: PositiveFloat | None = Field(None, description="working frequency (default size)")
    element_order: Literal[1, 2] = Field(2, description="the solver's element order (default size)")


# --- reading ------------------------------------------------------------------------------------

def get_version(session: Session, user: User, project_id: int, version_id: int) -> GeometryVersion:
    """A geometry version of a project `user` may see; NotFound otherwise."""
    project = get_project(session, user, project_id)
    version = session.get(GeometryVersion, version_id) \
        if isinstance(version_id, int) and not isinstance(version_id, bool) and 0 < version_id < 2**63 else None
    if version is None or version.project_id != project.id:
        raise NotFound(f"geometry version {version_id} not found in project {project.id}")
    return version


def list_versions(session: Session, user: User, project_id: int, *, page: int = 1,
                  per_page: int = DEFAULT_PER_PAGE) -> Page:
    """A project's geometry versions, newest first."""
    project = get_project(session, user, project_id)
    stmt = select(GeometryVersion).where(GeometryVersion.project_id == project.id)
    return paginate(session, stmt.order_by(GeometryVersion.version.desc()), page, per_page)


def version_dir(storage_root: Path, version_id: int) -> Path:
    """<storage_root>/geometries/<id>: built from the id only."""
    return geometry_dir(storage_root, version_id)


def relative_path(version_id: int, name: str) -> str:
    """A version's file as stored in the row: relative to the storage root."""
    return f"{GEOMETRIES_DIR}/{int(version_id)}/{name}"


def group_names(version: GeometryVersion) -> list[str]:
    """The named groups of the version (volumes and surfaces), as far as known now."""
    if version.mesh_info and version.mesh_info.get("groups"):
        return [g["name"] for g in version.mesh_info["groups"]]
    if version.kind == GeometryKind.PARAMETRIC.value and isinstance(version.params, Mapping):
        try:
            return list(parse_geometry(dict(version.params)).groups())
        except (ValidationError, TypeError):
            return []
    if version.file_path and version.file_path.lower().endswith(".step"):
        return [HORN, INPUT_FACE, OUTPUT_FACE, LATERAL]
    return []


def available_files(version: GeometryVersion, storage_root: Path) -> list[str]:
    """The FILE_KINDS this version can be downloaded as now."""
    return [kind for kind in FILE_KINDS if _file_of(version, kind, storage_root) is not None]


def file_of(session: Session, user: User, project_id: int, version_id: int, kind: str, *,
            storage_root: Path) -> tuple[Path, str, str]:
    """(absolute path, download name, MIME type) of one file of a version; NotFound if it has
    none of that kind (yet). The path is generated, never taken from the request."""
    version = get_version(session, user, project_id, version_id)
    if kind not in FILE_KINDS:
        raise NotFound(f"no file kind {kind!r} (kinds: {', '.join(FILE_KINDS)})")
    path = _file_of(version, kind, storage_root)
    if path is None:
        raise NotFound(f"geometry version {version.version} has no {kind} file (status {version.status})")
    suffix, mime = FILE_KINDS[kind]
    return path, f"geometry-p{version.project_id}-v{version.version}{suffix}", mime


def _file_of(version: GeometryVersion, kind: str, storage_root: Path) -> Path | None:
    if kind == "msh":
        rel = version.mesh_path
    elif kind == "step":
        rel = version.file_path if version.file_path and version.file_path.endswith((STEP, SOURCE_STEP)) else None
    else:
        rel = relative_path(version.id, STL) if version.status in (GeometryStatus.GENERATED.value,
                                                                   GeometryStatus.MESHED.value) else None
    if rel is None:
        return None
    try:
        path = inside(storage_root, rel)
    except ValueError:
        return None
    return path if path.is_file() else None


def preview(session: Session, user: User, project_id: int, version_id: int, *, storage_root: Path) -> dict[str, Any]:
    """The version's surface preview (portal.services.geometry_preview's document) with its
    id and status; Conflict while it is being made or when its job failed."""
    import json

    version = get_version(session, user, project_id, version_id)
    if version.status not in (GeometryStatus.GENERATED.value, GeometryStatus.MESHED.value):
        why = f": {version.error}" if version.error else ""
        raise Conflict(f"geometry version {version.version} has no preview while it is {version.status}{why}"
                       + (" (poll its status)" if version.status in BUSY else ""), field="status")
    path = inside(storage_root, relative_path(version.id, PREVIEW))
    if not path.is_file():
        raise NotFound(f"geometry version {version.version} has no preview file")
    doc = json.loads(path.read_text(encoding="utf-8"))
    return {"version_id": version.id, "version": version.version, "status": version.status, **doc}


# --- creating -------------------------------------------------------------------------------------

def create_parametric(session: Session, user: User, project_id: int, *, params: Any, storage_root: Path,
                      jobs: Any, kind: str | None = None) -> GeometryVersion:
    """A new parametric version (status generating); its STEP, STL and preview are made by a job.

    `params` is a geometry table as in a CaseSpec (a horn family or tab_stack, with `kind`;
    or give `kind` separately). Invalid names the parameter at fault ("params.fillet_radius_m").
    """
    project = get_project(session, user, project_id)
    _require(jobs)
    doc = _geometry_params(params, kind)
    version = _insert(session, project.id, kind=GeometryKind.PARAMETRIC.value, params=doc)
    session.commit()
    folder = version_dir(storage_root, version.id)
    folder.mkdir(parents=True, exist_ok=True)
    _submit(session, jobs, version, {"op": "generate", "params": doc, "dir": str(folder)})
    return version


def upload(session: Session, user: User, project_id: int, *, filename: Any, storage_root: Path, jobs: Any,
           max_bytes: int, stream: BinaryIO | None = None, data: bytes | None = None) -> GeometryVersion:
    """A new uploaded version from a STEP horn or a .msh (status generating: a job groups the
    STEP, or checks the mesh). Everything that can refuse the file is checked first, on a
    temporary file, so a refused upload stores nothing (see geometry_uploads)."""
    import io

    project = get_project(session, user, project_id)
    _require(jobs)
    label, suffix = uploads.check_filename(filename)
    if stream is None:
        stream = io.BytesIO(data or b"")
    tmp = uploads.receive(stream, max_bytes)
    try:
        found = uploads.sniff(tmp, suffix)
        if found == "msh":
            try:
                read_msh_group_names(tmp)
            except MeshError as exc:
                raise Invalid(str(exc).replace(str(tmp), label), field=uploads.FIELD) from None
        name = SOURCE_STEP if found == "step" else SOURCE_MSH
        version = _insert(session, project.id, kind=GeometryKind.UPLOADED.value, file_path="pending",
                          source_name=label)
        folder = version_dir(storage_root, version.id)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            shutil.move(str(tmp), folder / name)
            version.file_path = relative_path(version.id, name)
            session.commit()
        except BaseException:
            session.rollback()
            shutil.rmtree(folder, ignore_errors=True)
            raise
    finally:
        tmp.unlink(missing_ok=True)
    op = {"op": "group_step", "step": str(folder / name)} if found == "step" else \
        {"op": "check_msh", "msh": str(folder / name)}
    _submit(session, jobs, version, {**op, "dir": str(folder)})
    return version


def request_mesh(session: Session, user: User, project_id: int, version_id: int, *, options: Any,
                 storage_root: Path, jobs: Any) -> GeometryVersion:
    """Mesh the version (status meshing) with `options` (MeshOptions fields, metres).

    Conflict while a job runs, for an uploaded .msh (it is the mesh), and when a case uses
    the version; Invalid for bad options or a mesh over its cell limit (checked before any job).
    """
    version = get_version(session, user, project_id, version_id)
    _require(jobs)
    if version.kind == GeometryKind.UPLOADED.value and version.file_path.endswith(SOURCE_MSH):
        raise Conflict("this version is an uploaded mesh and is used as it is: upload a STEP horn to have it "
                       "meshed", field="status")
    used = session.scalar(select(func.count()).select_from(SimulationCase)
                          .where(SimulationCase.geometry_version_id == version.id))
    if used:
        raise Conflict(f"geometry version {version.version} is used by {used} case(s) and stays as they were made "
                       "with it: create a new version to mesh differently", field="status")
    if version.status in BUSY:
        raise Conflict(f"geometry version {version.version} is {version.status}: wait until its status is "
                       "generated or meshed", field="status")
    sizes = _mesh_sizes(session, version, options)
    folder = version_dir(storage_root, version.id)
    source = {"params": version.params} if version.kind == GeometryKind.PARAMETRIC.value else \
        {"step": str(inside(storage_root, version.file_path))}
    changed = session.execute(
        update(GeometryVersion).where(GeometryVersion.id == version.id, GeometryVersion.status.in_(MESHABLE))
        .values(status=GeometryStatus.MESHING.value, error=None)).rowcount
    session.commit()
    if changed != 1:
        session.refresh(version)
        raise Conflict(f"geometry version {version.version} is {version.status}: another request started a job",
                       field="status")
    session.refresh(version)
    folder.mkdir(parents=True, exist_ok=True)
    _submit(session, jobs, version, {"op": "mesh", **source, "sizes": sizes, "dir": str(folder)})
    return version


# --- the jobs' side -------------------------------------------------------------------------------

def record_result(session: Session, version_id: int, request: Mapping[str, Any], result: Mapping[str, Any], *,
                  storage_root: Path) -> None:
    """Write a job's outcome on its version (called by the job runner in its own session).

    A version deleted meanwhile (its project was) gets its directory removed instead.
    """
    version = session.get(GeometryVersion, version_id)
    if version is None:
        shutil.rmtree(version_dir(storage_root, version_id), ignore_errors=True)
        return
    op = request.get("op")
    expected = GeometryStatus.MESHING.value if op == "mesh" else GeometryStatus.GENERATING.value
    if version.status != expected:
        log.warning("geometry version %s: a %s result arrived while it is %s; ignored", version_id, op, version.status)
        return
    if not result.get("ok"):
        version.status = GeometryStatus.FAILED.value
        version.error = str(result.get("error") or "the geometry job failed")[:4000]
    elif op == "generate":
        version.file_path = relative_path(version.id, STEP)
        version.status, version.error = GeometryStatus.GENERATED.value, None
    elif op == "group_step":
        version.status, version.error = GeometryStatus.GENERATED.value, None
    elif op in ("mesh", "check_msh"):
        if version.kind == GeometryKind.PARAMETRIC.value:
            version.file_path = relative_path(version.id, STEP)
        version.mesh_path = relative_path(version.id, MSH) if op == "mesh" else version.file_path
        version.mesh_info = result.get("mesh_info")
        version.status, version.error = GeometryStatus.MESHED.value, None
    else:
        version.status, version.error = GeometryStatus.FAILED.value, f"unknown geometry job {op!r}"
    session.commit()


def fail_interrupted(session: Session) -> list[int]:
    """Mark versions left generating/meshing (by a process that stopped) failed; their ids."""
    ids = list(session.scalars(select(GeometryVersion.id).where(GeometryVersion.status.in_(BUSY))))
    if ids:
        session.execute(update(GeometryVersion).where(GeometryVersion.id.in_(ids), GeometryVersion.status.in_(BUSY))
                        .values(status=GeometryStatus.FAILED.value, error=INTERRUPTED))
        session.commit()
    return ids


# --- helpers ----------------------------------------------------------------------------------------

def _require(jobs: Any) -> None:
    if jobs is None:
        raise Unavailable("geometry jobs run in the portal process that hosts the run agent (weldsim portal); "
                          "this one runs none")


def _submit(session: Session, jobs: Any, version: GeometryVersion, request: dict[str, Any]) -> None:
    """Hand the job over; if that fails the version is marked failed and Unavailable raised."""
    try:
        jobs.submit(version.id, request)
    except Exception as exc:
        version.status, version.error = GeometryStatus.FAILED.value, f"the geometry job could not start: {exc}"
        session.commit()
        raise Unavailable(f"the geometry job could not start: {exc}") from None


def _insert(session: Session, project_id: int, **fields: Any) -> GeometryVersion:
    """Add a version numbered one past the project's highest (retried on a concurrent insert)."""
    for attempt in range(_INSERT_ATTEMPTS):
        number = (session.scalar(select(func.max(GeometryVersion.version))
                                 .where(GeometryVersion.project_id == project_id)) or 0) + 1
        version = GeometryVersion(project_id=project_id, version=number, status=GeometryStatus.GENERATING.value,
                                  **fields)
        session.add(version)
        try:
            session.flush()
            return version
        except IntegrityError:
            session.rollback()
            if attempt == _INSERT_ATTEMPTS - 1:
                raise Conflict("another geometry version was being added at the same time: try again") from None
    raise AssertionError("unreachable")


def _geometry_params(params: Any, kind: str | None) -> dict[str, Any]:
    if not isinstance(params, Mapping):
        raise Invalid("must be an object of geometry parameters (with 'kind')", field="params")
    doc = dict(params)
    if kind is not None:
        if doc.get("kind", kind) != kind:
            raise Invalid(f"differs from kind {kind!r}: give one of them, or the same", field="params.kind")
        doc["kind"] = kind
    try:
        return parse_geometry(doc).model_dump(mode="json")
    except ValidationError as exc:
        raise Invalid.from_problems(_problems(exc, doc.get("kind")), "params") from None


def _problems(exc: ValidationError, kind: Any) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        loc = list(err["loc"])
        if loc and loc[0] == kind:  # the discriminated union's tag
            loc = loc[1:]
        path = ".".join(str(p) for p in loc)
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "union_tag_invalid":
            path, message = "kind", f"unknown geometry kind {kind!r}: {message}"
        elif err["type"] == "union_tag_not_found":
            path, message = "kind", "required: the horn family or tab_stack"
        out.append((path, message))
    return out


def _mesh_sizes(session: Session, version: GeometryVersion, options: Any) -> dict[str, Any]:
    """The sizes the job gets: ResolvedSizes fields (parametric) or MeshSettings fields (STEP)."""
    from dataclasses import asdict

    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise Invalid("must be an object of mesh options (size_m, …)", field="options")
    try:
        opts = MeshOptions(**options)
    except ValidationError as exc:
        raise Invalid.from_problems([(".".join(str(p) for p in e["loc"]), str(e["msg"]).removeprefix("Value error, "))
                                     for e in exc.errors()], "options") from None
    shear = _shear_speed(session, version, opts.material)
    settings = MeshSettings(**opts.model_dump(exclude={"material", "target_frequency_Hz", "element_order"}))
    if version.kind == GeometryKind.PARAMETRIC.value:
        geometry = parse_geometry(dict(version.params))
        try:
            sizes = resolve_sizes(settings, geometry, shear, opts.target_frequency_Hz, opts.element_order)
            check_cell_limit(geometry, sizes)
        except MeshError as exc:
            raise Invalid(str(exc).replace("mesh.", "options."), field="options.size_m") from None
        return asdict(sizes)
    sizes = settings.model_dump()
    if sizes["size_m"] is None and shear is not None and opts.target_frequency_Hz is not None:
        # a STEP's smallest feature is unknown before gmsh reads it: the wavelength rule alone
        sizes["size_m"] = default_size_m(shear, opts.target_frequency_Hz, float("inf"), opts.element_order)
    return sizes


def _shear_speed(session: Session, version: GeometryVersion, material_id: str | None) -> float | None:
    if material_id is None:
        return None
    try:
        custom = {mid: material_from_dict(row.properties)
                  for mid, row in custom_library(session, version.project.owner_id).items()}
        material = get_material(material_id, custom)
    except (MaterialError, WeldSimError, ValueError) as exc:
        raise Invalid(str(exc), field="options.material") from None
    return shear_wave_speed(material.youngs_modulus_Pa, material.poisson_ratio, material.density_kg_m3)
