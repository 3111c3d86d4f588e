"""/api/v1/projects/{project_id}/geometries: geometry versions, meshing, previews, files.

    GET  …/geometries                          the project's versions, newest first
    POST …/geometries                          a parametric version {"params": {"kind": "stepped", …}} → 202
    POST …/geometries/uploads                  multipart field `file`: a STEP horn or a .msh → 202
    GET  …/geometries/{geometry_id}            one version: its status (poll this), error, files
    POST …/geometries/{geometry_id}/mesh       {"options": {"size_m": 0.003, …}} → 202
    GET  …/geometries/{geometry_id}/preview    the decimated surface with a group per face (JSON)
    GET  …/geometries/{geometry_id}/files/{kind}   download: step, stl or msh

Generation and meshing run out of process (portal.geometry_jobs): the answers 202 carry
the version with ``status`` generating or meshing and a ``Location``/``status_url`` to poll
until it reads generated, meshed or failed (then ``error`` says why). Uploads are checked
before anything is stored: too large → 413, a wrong name or content → 422 (field "file").
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from flask import current_app, request, send_file
from flask_openapi3 import FileStorage
from pydantic import BaseModel, Field, SkipValidation

from weldsim_hpc.geometry import GeometryParams

from .. import current_settings
from ..extensions import db
from ..models import GeometryKind, GeometryVersion
from ..models.types import GeometryStatus
from ..services import geometries
from ..services.geometry_preview import MAX_PREVIEW_FACES
from ..services.geometry_uploads import TooLarge
from ..services.pagination import Page
from . import auth, guards
from .common import PageQuery, Strict, api_blueprint, current_user, json_response, page_model, page_response
from .errors import ErrorEnvelope, error_response

bp = api_blueprint("geometries", "/projects/<int:project_id>/geometries",
                   "Geometry versions of a project: parametric horns and tab stacks, STEP and .msh uploads, "
                   "meshes (made out of process: 202, then poll the status) and previews")

#: bytes a multipart body may carry beyond the file itself (boundaries, part headers)
MULTIPART_OVERHEAD = 64 * 1024
UPLOAD_ENDPOINT = "geometries.upload_geometry"
auth.NON_JSON_ENDPOINTS.add(UPLOAD_ENDPOINT)  # a multipart body, checked by the view and the service
guards.PATH_GUARDS["geometry_id"] = lambda session, user, args: geometries.get_version(
    session, user, args["project_id"], args["geometry_id"])


class GeometryOut(BaseModel):
    id: int
    project_id: int
    version: int = Field(description="1, 2, … per project")
    kind: GeometryKind
    status: GeometryStatus = Field(description="generating → generated; meshing → meshed; or failed (see error)")
    error: str | None = Field(description="why the last job failed")
    params: dict[str, Any] | None = Field(description="parametric: the geometry table (SI units, with kind)")
    source_name: str | None = Field(description="uploaded: the sanitised name of the file (a label only)")
    groups: list[str] = Field(description="named volume and surface groups (input_face, output_face, …)")
    mesh_info: dict[str, Any] | None = Field(description="meshed: node/cell counts, bounds, volume, quality, groups")
    files: dict[str, str] = Field(description="kind (step, stl, msh) → download URL, for the files made so far")
    status_url: str
    preview_url: str
    created_at: dt.datetime


GeometryPage = page_model(GeometryOut)


class GeometryCreate(Strict):
    params: SkipValidation[GeometryParams] = Field(
        description="a horn family (cylinder, block, stepped, exponential, conical, catenoidal) or tab_stack, "
                    "with its parameters in metres, as a case's geometry table")


class MeshOptionsBody(Strict):
    options: SkipValidation[geometries.MeshOptions] = Field(
        default_factory=dict, description="mesh controls in metres; size_m, or material + target_frequency_Hz "
                                          "for the wavelength rule (a STEP without either: a quarter of its "
                                          "smallest extent)")


class UploadForm(BaseModel):
    file: FileStorage = Field(description="a STEP horn (.step/.stp: ISO-10303-21) along +z with flat end faces, "
                                          "or a gmsh .msh with physical names; no archives")


class PreviewOut(BaseModel):
    version_id: int
    version: int
    status: GeometryStatus
    format: str
    units: Literal["m"]
    source: Literal["mesh", "geometry"] = Field(description="the volume mesh's surface, or the geometry's")
    vertices: list[list[float]]
    faces: list[list[int]] = Field(description="vertex indices, three per triangle")
    groups: list[str] = Field(description="surface group names")
    face_groups: list[int] = Field(description="per face: index into groups, -1 for none")
    faces_full: int = Field(description="triangles before decimation")
    decimated: bool
    cell_size_m: float | None = Field(description="vertex-clustering grid size (m) when decimated")
    max_faces: int = Field(description=f"the bound on faces ({MAX_PREVIEW_FACES})")
    bounds: dict[str, list[float]]


class ProjectPath(BaseModel):
    project_id: int


class GeometryPath(BaseModel):
    project_id: int
    geometry_id: int


class FilePath(BaseModel):
    project_id: int
    geometry_id: int
    kind: Literal["step", "stl", "msh"]


def _jobs():
    from ..geometry_jobs import jobs_of

    return jobs_of(current_app)


def geometry_data(version: GeometryVersion) -> dict[str, Any]:
    """The API view of a version (URLs and files computed)."""
    base = f"/api/v1/projects/{version.project_id}/geometries/{version.id}"
    storage_root = current_settings().storage_root
    return {**{c: getattr(version, c) for c in ("id", "project_id", "version", "kind", "status", "error", "params",
                                                "source_name", "mesh_info", "created_at")},
            "groups": geometries.group_names(version),
            "files": {k: f"{base}/files/{k}" for k in geometries.available_files(version, storage_root)},
            "status_url": base, "preview_url": f"{base}/preview"}


def _accepted(version: GeometryVersion):
    data = geometry_data(version)
    return json_response(GeometryOut, data, 202, Location=data["status_url"])


@bp.get("", responses={200: GeometryPage})
def list_geometries(path: ProjectPath, query: PageQuery):
    """The project's geometry versions, newest first."""
    page = geometries.list_versions(db.session, current_user(), path.project_id, page=query.page,
                                    per_page=query.per_page)
    return page_response(GeometryPage, Page(items=[geometry_data(v) for v in page.items], page=page.page,
                                            per_page=page.per_page, total=page.total))


@bp.post("", responses={202: GeometryOut, 503: ErrorEnvelope})
def create_geometry(path: ProjectPath, body: GeometryCreate):
    """A new parametric version: 202, generating its STEP, STL and preview (poll status_url)."""
    version = geometries.create_parametric(db.session, current_user(), path.project_id, params=body.params,
                                           storage_root=current_settings().storage_root, jobs=_jobs())
    return _accepted(version)


@bp.before_request
def _upload_limit() -> None:
    """The upload endpoint may receive more than the API's usual body limit."""
    if request.endpoint == UPLOAD_ENDPOINT:
        request.max_content_length = current_settings().max_upload_bytes + MULTIPART_OVERHEAD


@bp.post("/uploads", responses={202: GeometryOut, 503: ErrorEnvelope})
def upload_geometry(path: ProjectPath, form: UploadForm):
    """Upload a STEP horn (grouped automatically) or a .msh: 202 (poll status_url). 413 above the
    size limit; 422 for a name that is a path, an archive, or content that is not what the name says."""
    settings = current_settings()
    upload = form.file
    try:
        version = geometries.upload(db.session, current_user(), path.project_id, filename=upload.filename,
                                    stream=upload.stream, storage_root=settings.storage_root, jobs=_jobs(),
                                    max_bytes=settings.max_upload_bytes)
    except TooLarge as exc:
        return error_response(413, exc.code, exc.message, exc.field)
    return _accepted(version)


@bp.get("/<int:geometry_id>", responses={200: GeometryOut})
def get_geometry(path: GeometryPath):
    """One version: poll `status` after a 202 (generated, meshed or failed end a job)."""
    version = geometries.get_version(db.session, current_user(), path.project_id, path.geometry_id)
    return json_response(GeometryOut, geometry_data(version))


@bp.post("/<int:geometry_id>/mesh", responses={202: GeometryOut, 503: ErrorEnvelope})
def mesh_geometry(path: GeometryPath, body: MeshOptionsBody):
    """Mesh the version: 202 with status meshing (poll status_url). 409 while a job runs, for an uploaded
    mesh, or when a case uses the version; 422 for bad options or too many cells."""
    version = geometries.request_mesh(db.session, current_user(), path.project_id, path.geometry_id,
                                      options=body.options, storage_root=current_settings().storage_root,
                                      jobs=_jobs())
    return _accepted(version)


@bp.get("/<int:geometry_id>/preview", responses={200: PreviewOut})
def geometry_preview(path: GeometryPath):
    """The surface for a 3-D viewer (metres), at most 20 000 triangles, each with its group."""
    doc = geometries.preview(db.session, current_user(), path.project_id, path.geometry_id,
                             storage_root=current_settings().storage_root)
    return json_response(PreviewOut, doc)


@bp.get("/<int:geometry_id>/files/<kind>", responses={200: None})
def download_geometry_file(path: FilePath):
    """Download the STEP, STL or mesh (.msh) of the version, under a generated name."""
    file, name, mime = geometries.file_of(db.session, current_user(), path.project_id, path.geometry_id, path.kind,
                                          storage_root=current_settings().storage_root)
    return send_file(file, mimetype=mime, as_attachment=True, download_name=name, max_age=0)
