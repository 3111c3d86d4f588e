"""/api/v1 result fields of a run, for a 3D viewer (read with h5py, never dolfinx).

    GET /runs/{run_id}/results/fields               the fields: name, location (point/cell),
                                                    components, unit, steps or modes
    GET /runs/{run_id}/results/field/{name}         one field as one binary body
        ?mode=k      modal runs: the mode number (default: the working mode)
        ?step=i      other runs: the output step index (default: the last)
        ?surface=true  the boundary triangles (outward) instead of the tetrahedra

The binary body (``application/octet-stream``)::

    [uint32 little-endian: header length H]
    [H bytes: UTF-8 JSON header, padded with spaces]
    [points <f4 (n, 3) m][cells <i4 (m, k)][values <f4 (n or m[, components])]

Each entry of ``header["arrays"]`` gives the array's ``dtype``, ``shape``, ``nbytes`` and
``offset`` — counted from the start of the body, always a multiple of 4, so a viewer can
map it directly (``new Float32Array(buf, offset, count)``). The header also holds the
field's location, components, unit, the mode (number, frequency, class) or step, the value
range, and ``decimation``: at most 200 000 points are sent; a larger mesh keeps every s-th
cell and the points those cells use (``cell_stride`` s > 1, ``decimated`` true, the
original counts). The body is described in portal.services.fields.
"""

from __future__ import annotations

from flask import Response
from pydantic import BaseModel, Field

from .. import current_settings
from ..extensions import db
from ..services import fields
from .common import Strict, api_blueprint, current_user, json_response

bp = api_blueprint("fields", "", "Result fields of runs for 3D viewers: points, cells and values", tag="fields")

BINARY_RESPONSE = {
    "description": "[uint32 LE header length][JSON header (space-padded) with arrays' dtype, shape, offset, "
                   "nbytes][little-endian float32 points, int32 cells, float32 values at those offsets]",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}


class RunPath(BaseModel):
    run_id: str = Field(max_length=64)


class FieldPath(BaseModel):
    run_id: str = Field(max_length=64)
    name: str = Field(max_length=128, description="a field name from /results/fields (displacement, temperature …)")


class FieldQuery(Strict):
    mode: int | None = Field(None, ge=1, le=100_000,
                             description="modal runs: mode number k (default: the working mode)")
    step: int | None = Field(None, ge=0, description="other runs: output step index (default: the last)")
    surface: bool = Field(False, description="boundary triangles (oriented outwards) instead of the volume cells")


class ModeOut(BaseModel):
    mode: int = Field(description="mode number k, 1-based in ascending frequency")
    frequency_Hz: float | None
    mode_class: str | None = Field(description="longitudinal, flexural, torsional or other")
    working: bool


class StepOut(BaseModel):
    index: int
    t: float = Field(description="time value of the output step (s)")


class FieldOut(BaseModel):
    name: str
    location: str = Field(description="point (nodal values) or cell (one value per cell)")
    components: int = Field(description="1 scalar, 3 vector")
    unit: str | None = Field(description="SI unit if known; modal shapes are mass-normalised (arbitrary scale)")
    url: str = Field(description="where to fetch its data")
    steps: list[StepOut] | None = Field(description="output steps (non-modal runs)")
    modes: list[ModeOut] | None = Field(description="modes (modal runs)")


class FieldListOut(BaseModel):
    run_id: str
    analysis: str | None
    cell_type: str = Field(description="of the volume mesh: tetra, …")
    n_points: int
    n_cells: int
    length_unit: str
    max_points: int = Field(description="field data is decimated above this many points")
    working_mode: int | None
    fields: list[FieldOut]


@bp.get("/runs/<run_id>/results/fields", responses={200: FieldListOut})
def list_run_fields(path: RunPath):
    """The fields of a run's results, with their steps (or, for a modal run, its modes)."""
    listing = fields.list_fields(db.session, current_user(), path.run_id, runs_root=current_settings().runs_root)
    return json_response(FieldListOut, listing)


@bp.get("/runs/<run_id>/results/field/<name>", responses={200: BINARY_RESPONSE})
def get_run_field(path: FieldPath, query: FieldQuery):
    """One field as [uint32 LE header length][JSON header][little-endian float32/int32 arrays]:
    points (n, 3), cells (m, k), values; offsets in the header count from the start of the
    body. At most 200 000 points (decimated consistently when more; the header says so)."""
    header, arrays = fields.field_data(db.session, current_user(), path.run_id, path.name,
                                       runs_root=current_settings().runs_root, mode=query.mode, step=query.step,
                                       surface=query.surface)
    return Response(fields.encode(header, arrays), mimetype="application/octet-stream",
                    headers={"Cache-Control": "private, max-age=0"})
