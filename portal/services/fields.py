"""Result fields of a run for a 3D viewer, read with h5py from results/fields.xdmf (+ .h5).

Why here and like this: the portal must never import dolfinx, and both backends already
write the same XDMF 3 index — dolfinx's XDMFFile (datasets /Mesh/mesh/geometry|topology,
/Function/<name>/<t>) and meshio's time-series writer (the scipy backend: /data0, /data1 …)
— so the XDMF text is parsed (standard library ElementTree) for the mesh and the
attributes, and the arrays it points at are read with h5py. Modal runs store one output
step per mode, the step's time value being the mode number k (1, 2, … ascending
frequency); results/modes.json gives each mode's frequency and class and the working mode.

What a viewer gets (`field_data` + `encode`): points (float32, n×3), cells (int32, m×k:
tetrahedra, or boundary triangles with `surface=True`, oriented outwards) and the
values (float32, n or m rows, ×components), at most `MAX_POINTS` points. A larger mesh
is decimated by keeping every s-th cell (s the smallest stride that fits) and the
points those cells use, renumbered; the header says so (`decimation`). The binary body:

    [uint32 LE: header length H][H bytes: UTF-8 JSON header, padded with spaces]
    [arrays, each at the byte `offset` (from the start of the body, a multiple of 4)
     its header entry gives, with its dtype ("<f4" / "<i4") and shape]

In JavaScript: ``new Float32Array(buffer, h.arrays.points.offset, n * 3)``; in Python:
``np.frombuffer(body, "<f4", count, offset).reshape(shape)``.

Example::

    listing = list_fields(session, user, run_id, runs_root=settings.runs_root)
    header, arrays = field_data(session, user, run_id, "displacement", runs_root=rr, mode=6)
    body = encode(header, arrays)
"""

from __future__ import annotations

import json
import math
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from weldsim_hpc.run_paths import RunPaths

from ..models import User
from .errors import Conflict, Invalid, NotFound
from .paths import inside
from .runs import get_run

MAX_POINTS = 200_000
FORMAT = "weldsim-field/1"
#: SI units of the fields the backends write (None: not known)
FIELD_UNITS = {"temperature": "K", "displacement": "m", "von_mises": "Pa"}
MODE_SHAPE_UNIT = "m/sqrt(kg)"  # mass-normalised mode shapes: the scale is arbitrary
#: XDMF topology types → (cell type name for viewers, nodes per cell)
CELL_TYPES = {"tetrahedron": ("tetra", 4), "triangle": ("triangle", 3), "hexahedron": ("hexahedron", 8),
              "quadrilateral": ("quad", 4), "tetrahedron_10": ("tetra10", 10), "triangle_6": ("triangle6", 6)}
_LOCATIONS = {"node": "point", "cell": "cell"}
# faces of a tetrahedron, each listed with the vertex opposite it
_TET_FACES = ((1, 2, 3, 0), (0, 2, 3, 1), (0, 1, 3, 2), (0, 1, 2, 3))


@dataclass(frozen=True)
class DataRef:
    """An HDF5 dataset an XDMF DataItem points at: file (inside results/) and path."""

    file: Path
    path: str
    shape: tuple[int, ...]


@dataclass
class FieldInfo:
    name: str
    location: str              # "point" or "cell"
    attribute_type: str        # Scalar, Vector, Tensor …
    components: int
    steps: list[tuple[float, DataRef]] = field(default_factory=list)  # (time value, data), in file order


@dataclass
class Catalogue:
    """What results/fields.xdmf offers: the mesh, the fields, and the modal table if any."""

    geometry: DataRef
    topology: DataRef
    cell_type: str
    fields: dict[str, FieldInfo]
    analysis: str | None
    modes: dict[str, Any] | None   # results/modes.json


# --- reading the run's results -------------------------------------------------------------------

def _fail(run_id: str, why: str) -> Conflict:
    return Conflict(f"the field output of run {run_id} is unreadable: {why}")


def _data_ref(item: ET.Element | None, results_dir: Path, run_id: str) -> DataRef:
    if item is None or (item.get("Format") or "").upper() != "HDF" or not (item.text or "").strip():
        raise _fail(run_id, "a DataItem is not an HDF5 reference")
    file_part, sep, path = item.text.strip().partition(":")
    if not sep or not path.startswith("/"):
        raise _fail(run_id, f"bad HDF5 reference {item.text.strip()!r}")
    try:
        file = inside(results_dir, file_part)
    except ValueError:
        raise _fail(run_id, f"{file_part!r} lies outside the results directory") from None
    try:
        shape = tuple(int(d) for d in (item.get("Dimensions") or "").split())
    except ValueError:
        raise _fail(run_id, f"bad Dimensions of {path}") from None
    return DataRef(file, path, shape)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(elem: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in elem if _local(c.tag) == name]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_catalogue(paths: RunPaths) -> Catalogue:
    """Parse results/fields.xdmf of a run (NotFound without one, Conflict when unreadable)."""
    run_id = paths.run_id
    xdmf = paths.fields_xdmf
    if not xdmf.is_file():
        raise NotFound(f"run {run_id} has no field output (results/fields.xdmf): has it completed?")
    try:
        root = ET.parse(xdmf).getroot()
    except (ET.ParseError, OSError) as exc:
        raise _fail(run_id, str(exc)) from None
    grids = [g for g in root.iter() if _local(g.tag) == "Grid"]
    mesh_grid = next((g for g in grids if _children(g, "Topology") and _children(g, "Geometry")), None)
    if mesh_grid is None:
        raise _fail(run_id, "no mesh (Topology and Geometry) in fields.xdmf")
    topo = _children(mesh_grid, "Topology")[0]
    topology = _data_ref(next(iter(_children(topo, "DataItem")), None), paths.results_dir, run_id)
    geometry = _data_ref(next(iter(_children(_children(mesh_grid, "Geometry")[0], "DataItem")), None),
                         paths.results_dir, run_id)
    cell_type, nodes = CELL_TYPES.get((topo.get("TopologyType") or "").lower(), (None, None))
    if cell_type is None or len(topology.shape) != 2 or topology.shape[1] != nodes or len(geometry.shape) != 2:
        raise _fail(run_id, f"unsupported mesh ({topo.get('TopologyType')}, {topology.shape})")
    fields: dict[str, FieldInfo] = {}
    for grid in grids:
        times = _children(grid, "Time")
        for attribute in _children(grid, "Attribute"):
            name = attribute.get("Name") or ""
            location = _LOCATIONS.get((attribute.get("Center") or "").lower())
            if not name or location is None:
                continue
            ref = _data_ref(next(iter(_children(attribute, "DataItem")), None), paths.results_dir, run_id)
            info = fields.setdefault(name, FieldInfo(name, location, attribute.get("AttributeType") or "Scalar",
                                                     ref.shape[1] if len(ref.shape) == 2 else 1))
            try:
                t = float(times[0].get("Value")) if times else 0.0
            except (TypeError, ValueError):
                raise _fail(run_id, f"bad time value of {name}") from None
            info.steps.append((t, ref))
    case = _read_json(paths.case_json)
    analysis = case.get("analysis") if isinstance(case, dict) else None
    modes = _read_json(paths.results_dir / "modes.json") if analysis == "modal" else None
    return Catalogue(geometry, topology, cell_type, fields, analysis, modes if isinstance(modes, dict) else None)


def _mode_table(cat: Catalogue) -> dict[int, dict[str, Any]]:
    rows = (cat.modes or {}).get("modes") or []
    return {int(r["index"]): r for r in rows if isinstance(r, dict) and isinstance(r.get("index"), int)}


def _working_mode(cat: Catalogue) -> int | None:
    k = (cat.modes or {}).get("working_mode")
    return k if isinstance(k, int) and not isinstance(k, bool) else None


def _unit(cat: Catalogue, name: str) -> str | None:
    if cat.analysis == "modal" and name == "displacement":
        return MODE_SHAPE_UNIT
    return FIELD_UNITS.get(name)


def _describe(cat: Catalogue, info: FieldInfo, run_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": info.name, "location": info.location, "components": info.components,
                           "unit": _unit(cat, info.name), "url": f"/api/v1/runs/{run_id}/results/field/{info.name}",
                           "steps": None, "modes": None}
    if cat.analysis == "modal":
        table, working = _mode_table(cat), _working_mode(cat)
        out["modes"] = [{"mode": int(t), "frequency_Hz": table.get(int(t), {}).get("frequency_Hz"),
                         "mode_class": table.get(int(t), {}).get("class"), "working": int(t) == working}
                        for t, _ in info.steps]
    else:
        out["steps"] = [{"index": i, "t": t} for i, (t, _) in enumerate(info.steps)]
    return out


def list_fields(session: Session, user: User, run_id: str, *, runs_root: Path) -> dict[str, Any]:
    """The fields of a visible run: name, location, components, unit, steps or modes."""
    run = get_run(session, user, run_id)
    cat = read_catalogue(RunPaths.for_id(runs_root, run.run_id))
    return {"run_id": run.run_id, "analysis": cat.analysis, "cell_type": cat.cell_type,
            "n_points": cat.geometry.shape[0], "n_cells": cat.topology.shape[0], "length_unit": "m",
            "max_points": MAX_POINTS, "working_mode": _working_mode(cat),
            "fields": [_describe(cat, info, run.run_id) for info in cat.fields.values()]}


# --- one field ------------------------------------------------------------------------------------

def _pick_step(cat: Catalogue, info: FieldInfo, run_id: str, mode: int | None,
               step: int | None) -> tuple[int, float, DataRef]:
    """(step index, time value, data) chosen by `mode` (modal) or `step` (others)."""
    if cat.analysis == "modal":
        if step is not None:
            raise Invalid("a modal result has modes, not steps: use mode=k", field="step")
        wanted = mode if mode is not None else (_working_mode(cat) or 1)
        for i, (t, ref) in enumerate(info.steps):
            if math.isclose(t, wanted):
                return i, t, ref
        have = ", ".join(str(int(t)) for t, _ in info.steps) or "none"
        raise NotFound(f"run {run_id} has no mode {wanted} of field {info.name!r} (modes: {have})")
    if mode is not None:
        raise Invalid(f"run {run_id} is not a modal analysis ({cat.analysis}): it has no modes", field="mode")
    if not info.steps:
        raise NotFound(f"field {info.name!r} of run {run_id} has no data")
    index = len(info.steps) - 1 if step is None else step
    if not 0 <= index < len(info.steps):
        raise NotFound(f"field {info.name!r} of run {run_id} has no step {step} "
                       f"(steps 0 to {len(info.steps) - 1})")
    t, ref = info.steps[index]
    return index, t, ref


def _read(ref: DataRef, run_id: str) -> np.ndarray:
    import h5py

    try:
        with h5py.File(ref.file, "r") as h5:
            dset = h5.get(ref.path)
            if not isinstance(dset, h5py.Dataset):
                raise _fail(run_id, f"no dataset {ref.path} in {ref.file.name}")
            return dset[()]
    except OSError as exc:
        raise _fail(run_id, f"{ref.file.name}: {exc}") from None


def boundary_triangles(points: np.ndarray, tets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The faces of `tets` that belong to one cell only, oriented outwards, and that cell."""
    faces = np.concatenate([tets[:, list(f[:3])] for f in _TET_FACES])
    opposite = np.concatenate([tets[:, f[3]] for f in _TET_FACES])
    owner = np.tile(np.arange(len(tets)), len(_TET_FACES))
    _, first, count = np.unique(np.sort(faces, axis=1), axis=0, return_index=True, return_counts=True)
    keep = np.sort(first[count == 1])
    tri, opp, own = faces[keep].copy(), opposite[keep], owner[keep]
    a, b, c = points[tri[:, 0]], points[tri[:, 1]], points[tri[:, 2]]
    inward = np.einsum("ij,ij->i", np.cross(b - a, c - a), points[opp] - a) > 0
    tri[inward, 1], tri[inward, 2] = tri[inward, 2], tri[inward, 1].copy()
    return tri, own


def decimate(cells: np.ndarray, n_points: int, max_points: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(kept cell indices, kept point indices, stride): every s-th cell, s the smallest
    stride whose cells use at most `max_points` points (stride 1: nothing dropped)."""
    def used(stride: int) -> np.ndarray:
        return np.unique(cells[::stride])

    if len(used(1)) <= max_points:
        return np.arange(len(cells)), used(1), 1
    low, high = 1, 2  # low does not fit; find the smallest high that does (doubling, then bisection)
    while len(used(high)) > max_points:
        if high >= len(cells):
            raise Invalid(f"no cell subset has at most {max_points} points", field="max_points")
        low, high = high, min(2 * high, len(cells))
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if len(used(middle)) <= max_points else (middle, high)
    return np.arange(0, len(cells), high), used(high), high


def field_data(session: Session, user: User, run_id: str, name: str, *, runs_root: Path,
               mode: int | None = None, step: int | None = None, surface: bool = False,
               max_points: int = MAX_POINTS) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, {points, cells, values}) of one field of a visible run, at most
    `max_points` points (see the module docstring). Modal runs: `mode` (default the
    working mode); others: `step` index (default the last)."""
    run = get_run(session, user, run_id)
    return load_field(RunPaths.for_id(runs_root, run.run_id), name, mode=mode, step=step, surface=surface,
                      max_points=max_points)


def load_field(paths: RunPaths, name: str, *, mode: int | None = None, step: int | None = None,
               surface: bool = False, max_points: int = MAX_POINTS) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """`field_data` for a run directory (no access check: callers check visibility)."""
    run_id = paths.run_id
    cat = read_catalogue(paths)
    info = cat.fields.get(name)
    if info is None:
        have = ", ".join(cat.fields) or "none"
        raise NotFound(f"run {run_id} has no field {name!r} (fields: {have})")
    index, t, ref = _pick_step(cat, info, run_id, mode, step)
    points = _read(cat.geometry, run_id).astype(np.float64)
    cells = _read(cat.topology, run_id).astype(np.int64)
    values = _read(ref, run_id)
    values = values.reshape(len(values), -1) if values.ndim > 1 else values.reshape(-1, 1)
    n_rows = len(points) if info.location == "point" else len(cells)
    if len(values) != n_rows or cells.size and (cells.min() < 0 or cells.max() >= len(points)):
        raise _fail(run_id, f"field {name!r} has {len(values)} rows for {n_rows} {info.location}s")
    cell_type, original = cat.cell_type, {"points": len(points), "cells": len(cells)}
    owner = np.arange(len(cells))
    if surface:
        if cell_type != "tetra":
            raise Invalid(f"surface extraction needs a tetrahedral mesh, this one is {cell_type}", field="surface")
        cells, owner = boundary_triangles(points, cells)
        cell_type = "triangle"
    kept_cells, kept_points, stride = decimate(cells, len(points), max_points)
    renumber = np.full(len(points), -1, dtype=np.int64)
    renumber[kept_points] = np.arange(len(kept_points))
    out_cells = renumber[cells[kept_cells]]
    out_values = values[kept_points] if info.location == "point" else values[owner[kept_cells]]
    if info.components == 1:
        out_values = out_values.reshape(-1)
    arrays = {"points": np.ascontiguousarray(points[kept_points], dtype="<f4"),
              "cells": np.ascontiguousarray(out_cells, dtype="<i4"),
              "values": np.ascontiguousarray(out_values, dtype="<f4")}
    finite = np.isfinite(arrays["values"])
    magnitude = np.abs(arrays["values"]) if info.components == 1 else np.linalg.norm(arrays["values"], axis=1)
    header: dict[str, Any] = {
        "format": FORMAT, "run_id": run_id, "field": name, "location": info.location,
        "components": info.components, "attribute_type": info.attribute_type, "unit": _unit(cat, name),
        "length_unit": "m", "cell_type": cell_type, "surface": surface, "analysis": cat.analysis,
        "step": {"index": index, "t": t, "count": len(info.steps)} if cat.analysis != "modal" else None,
        "mode": _mode_of(cat, int(t)) if cat.analysis == "modal" else None,
        "range": {"min": _num(np.min(arrays["values"][finite]) if finite.any() else None),
                  "max": _num(np.max(arrays["values"][finite]) if finite.any() else None),
                  "max_magnitude": _num(np.max(magnitude[np.isfinite(magnitude)])
                                        if np.isfinite(magnitude).any() else None)},
        "decimation": {"decimated": stride > 1, "max_points": max_points, "cell_stride": stride,
                       "original": original, "method": "every cell_stride-th cell and the points it uses"
                       if stride > 1 else "none"},
        "arrays": {},
    }
    return header, arrays


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _mode_of(cat: Catalogue, k: int) -> dict[str, Any]:
    row = _mode_table(cat).get(k, {})
    return {"mode": k, "frequency_Hz": row.get("frequency_Hz"), "mode_class": row.get("class"),
            "working": k == _working_mode(cat)}


# --- the binary body ------------------------------------------------------------------------------

def encode(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """[uint32 LE header length][JSON header, space-padded][arrays at 4-byte aligned offsets]."""
    relative, position = {}, 0
    for key, array in arrays.items():
        relative[key] = position
        position += array.nbytes + (-array.nbytes) % 4
    start = 0
    for _ in range(10):  # the offsets' digits change the header's length: settle it
        header["arrays"] = {key: {"dtype": array.dtype.str, "shape": list(array.shape),
                                  "offset": start + relative[key], "nbytes": array.nbytes}
                            for key, array in arrays.items()}
        text = json.dumps(header, allow_nan=False).encode()
        needed = 4 + len(text) + (-(4 + len(text))) % 4
        if needed <= start:
            break
        start = needed
    text = text.ljust(start - 4)
    parts = [struct.pack("<I", len(text)), text]
    for array in arrays.values():
        raw = array.tobytes()
        parts.append(raw + b"\0" * ((-len(raw)) % 4))
    return b"".join(parts)


def decode(body: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The inverse of `encode` (for clients and tests)."""
    (length,) = struct.unpack_from("<I", body, 0)
    header = json.loads(body[4:4 + length])
    arrays = {key: np.frombuffer(body, dtype=spec["dtype"], count=int(np.prod(spec["shape"])),
                                 offset=spec["offset"]).reshape(spec["shape"])
              for key, spec in header["arrays"].items()}
    return header, arrays
