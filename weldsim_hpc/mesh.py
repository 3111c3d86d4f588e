"""Meshes as plain numpy data: read (.msh, STEP horn, mesh dir), write (XDMF + groups.json), inspect.

Why this module exists: every backend (dolfinx under MPI, scipy on one node, the portal's
previews) needs the same mesh with the same *named* groups, and only dolfinx can read a
mesh in parallel. So a mesh is converted once, here, into a run's ``mesh/`` directory:

    mesh.xdmf   three Uniform grids: ``mesh`` (tetrahedra), ``cell_tags`` and
                ``facet_tags`` (triangles), plus ``edge_tags`` (Polyline, 2 nodes) and
                ``point_tags`` (Polyvertex) only when the mesh has edge / point groups;
                ParaView opens it, dolfinx reads it on any number of ranks
                (`weldsim_hpc.backends.fenicsx.mesh_io.read_mesh`)
    mesh.h5     the arrays (written with serial h5py)
    groups.json {"name": {"dim": 3|2|1|0, "tag": int}} — dolfinx's XDMF carries no names

Only linear tetrahedra are supported for now; every cell carries one volume group and a
facet belongs to at most one surface group (anything else is an error, not a guess).
Edge (dim 1) and point (dim 0) groups — e.g. the mid-plane edge that NAFEMS LE10 holds —
name mesh edges and mesh vertices; each belongs to at most one group of its dimension.
Importing this module needs numpy only: meshio, h5py and gmsh are imported when used,
dolfinx never (it lives in `backends/fenicsx`).
"""

from __future__ import annotations

import hashlib
import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .errors import MeshError, WeldSimError

MESH_XDMF = "mesh.xdmf"
MESH_H5 = "mesh.h5"
GROUPS_JSON = "groups.json"
#: names of the XDMF grids (what dolfinx's read_mesh / read_meshtags are asked for)
GRID_MESH, GRID_CELL_TAGS, GRID_FACET_TAGS = "mesh", "cell_tags", "facet_tags"
#: optional grids, written only when the mesh has edge / point groups
GRID_EDGE_TAGS, GRID_POINT_TAGS = "edge_tags", "point_tags"
ELEMENT_TYPE = "tetra"

_VOLUME, _SURFACE, _EDGE, _POINT = 3, 2, 1, 0
_DIMS = (_VOLUME, _SURFACE, _EDGE, _POINT)
_KIND = {_VOLUME: "volume", _SURFACE: "surface", _EDGE: "edge", _POINT: "point"}
#: (array, tag array) of MeshData per group dimension
_ARRAYS = {_VOLUME: ("cells", "cell_tags"), _SURFACE: ("facets", "facet_tags"),
           _EDGE: ("edges", "edge_tags"), _POINT: ("vertices", "vertex_tags")}
#: arrays hashed only when non-empty, so meshes without edge/point groups keep their digest
_OPTIONAL = ("edges", "edge_tags", "vertices", "vertex_tags")
_KEY_LIMIT = 2_000_000  # node count below which a sorted triangle fits one int64 key
_UNSUPPORTED_VOLUME = {
    "hexahedron": "hexahedral", "hexahedron20": "hexahedral", "hexahedron27": "hexahedral",
    "wedge": "prism (wedge)", "wedge15": "prism (wedge)", "wedge18": "prism (wedge)",
    "pyramid": "pyramid", "pyramid13": "pyramid", "pyramid14": "pyramid",
    "tetra10": "quadratic tetrahedral (tetra10)", "tetra20": "cubic tetrahedral",
}


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, eq=False)
class MeshData:
    """A linear tetrahedral mesh with named groups, as read-only numpy arrays (SI metres).

    points (n, 3) float64; cells (m, 4) int64; cell_tags (m,) int32 — every cell has one
    volume tag; facets (k, 3) int64 — tagged boundary/interface triangles only;
    facet_tags (k,) int32; groups: name -> (dim, tag), dim 3 for volumes, 2 for surfaces,
    1 for edges, 0 for points. Optional (default empty): edges (e, 2) int64 — tagged mesh
    edges (segments between two mesh nodes) — with edge_tags (e,) int32, and vertices (v,)
    int64 — tagged mesh nodes — with vertex_tags (v,) int32.
    Compare two meshes with `equals` (arrays make ``==`` ambiguous).
    """

    points: np.ndarray
    cells: np.ndarray
    cell_tags: np.ndarray
    facets: np.ndarray
    facet_tags: np.ndarray
    groups: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    edges: np.ndarray = field(default_factory=lambda: np.empty((0, 2), np.int64))
    edge_tags: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))
    vertices: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    vertex_tags: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))

    def __post_init__(self) -> None:
        def frozen(name: str, dtype: Any, shape: tuple) -> np.ndarray:
            arr = np.array(getattr(self, name), dtype=dtype, copy=True)
            if len(shape) == 2 and arr.size == 0:
                arr = arr.reshape(0, shape[1])
            if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
                raise MeshError(f"mesh {name}: expected shape {shape}, got {arr.shape}")
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
            return arr

        pts = frozen("points", np.float64, (None, 3))
        cells = frozen("cells", np.int64, (None, 4))
        ctags = frozen("cell_tags", np.int32, (len(cells),))
        facets = frozen("facets", np.int64, (None, 3))
        ftags = frozen("facet_tags", np.int32, (len(facets),))
        edges = frozen("edges", np.int64, (None, 2))
        etags = frozen("edge_tags", np.int32, (len(edges),))
        verts = frozen("vertices", np.int64, (None,))
        vtags = frozen("vertex_tags", np.int32, (len(verts),))
        groups = {str(k): (int(v[0]), int(v[1])) for k, v in dict(self.groups).items()}
        object.__setattr__(self, "groups", groups)
        if not np.isfinite(pts).all():
            raise MeshError("mesh points contain NaN or infinite coordinates")
        for name, conn in (("cells", cells), ("facets", facets), ("edges", edges), ("vertices", verts)):
            if conn.size and (conn.min() < 0 or conn.max() >= len(pts)):
                raise MeshError(f"mesh {name} refer to nodes outside 0..{len(pts) - 1}")
        seen: dict[tuple[int, int], str] = {}
        for name, key in groups.items():
            if key[0] not in _DIMS:
                raise MeshError(f"group '{name}': dimension {key[0]} (expected 3, 2, 1 or 0)")
            if key in seen:
                raise MeshError(f"groups '{seen[key]}' and '{name}' share dim {key[0]}, tag {key[1]}")
            seen[key] = name
        for dim, tags, what in ((_VOLUME, ctags, "cells"), (_SURFACE, ftags, "facets"),
                                (_EDGE, etags, "edges"), (_POINT, vtags, "vertices")):
            known = np.array([t for d, t in groups.values() if d == dim], dtype=np.int32)
            bad = np.unique(tags[~np.isin(tags, known)])
            if bad.size:
                raise MeshError(f"{what} carry tags {bad.tolist()} that no {_KIND[dim]} group names")

    @property
    def n_nodes(self) -> int:
        return len(self.points)

    @property
    def n_cells(self) -> int:
        return len(self.cells)

    def group_names(self, dim: int) -> list[str]:
        """Group names of one dimension (3 volumes, 2 surfaces, 1 edges, 0 points), in tag order."""
        return [n for n, (d, t) in sorted(self.groups.items(), key=lambda kv: kv[1]) if d == dim]

    def tag(self, name: str, dim: int | None = None) -> int:
        """Tag of group `name` (checked against `dim` if given); MeshError lists the known names."""
        key = self.groups.get(name)
        if key is None or (dim is not None and key[0] != dim):
            kinds = _KIND
            known = ", ".join(sorted(n for n, (d, _) in self.groups.items() if dim in (None, d)))
            raise MeshError(f"the mesh has no {kinds.get(dim, '')} group '{name}' (it has: {known})".replace("no  ", "no "))
        return key[1]

    def equals(self, other: "MeshData") -> bool:
        """Same arrays (exactly) and same groups."""
        return self.groups == other.groups and all(
            np.array_equal(getattr(self, a), getattr(other, a))
            for a in ("points", "cells", "cell_tags", "facets", "facet_tags") + _OPTIONAL
        )

    def digest(self) -> str:
        """sha256 of arrays and groups: the 'mesh hash' of provenance and checkpoints.

        Edge and vertex arrays count only when non-empty, so a mesh without edge or point
        groups hashes as it did before they existed.
        """
        h = hashlib.sha256()
        for a in ("points", "cells", "cell_tags", "facets", "facet_tags") + _OPTIONAL:
            arr = getattr(self, a)
            if a in _OPTIONAL and not arr.size:
                continue
            h.update(f"{a}{arr.dtype.str}{arr.shape}".encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update(json.dumps(sorted(self.groups.items())).encode())
        return h.hexdigest()


# --------------------------------------------------------------------------- .msh


def read_msh_group_names(path: str | os.PathLike) -> dict[str, int]:
    """Physical names of a gmsh .msh file (name -> dim 3|2|1|0), from its header only.

    Cheap (no mesh is read) so that case validation can check group names; the
    $PhysicalNames section is ASCII in ASCII and binary files alike.
    """
    path = Path(path)
    _require_file(path)
    names: dict[str, int] = {}
    try:
        with open(path, "rb") as fh:
            if fh.readline().strip() != b"$MeshFormat":
                raise MeshError(f"{path}: not a gmsh .msh file (no $MeshFormat header)")
            for raw in fh:
                line = raw.strip()
                if line in (b"$Entities", b"$Nodes", b"$Elements"):
                    break
                if line == b"$PhysicalNames":
                    count = int(fh.readline())
                    for _ in range(count):
                        dim, _tag, name = fh.readline().decode().split(maxsplit=2)
                        if int(dim) in _DIMS:
                            names[name.strip().strip('"')] = int(dim)
                    break
    except MeshError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise MeshError(f"{path}: unreadable gmsh .msh header ({exc})") from exc
    if not names:
        raise MeshError(f"{path}: no physical names (name the volumes and surfaces in gmsh, "
                        "e.g. Physical Volume(\"horn\") = {1};)")
    return names


def read_msh(path: str | os.PathLike) -> MeshData:
    """Read a gmsh .msh (2.2 or 4.1, ASCII or binary) with named physical groups (meshio).

    Raises MeshError naming the file and the problem: unreadable or truncated file, no
    tetrahedra, unsupported (hexahedral, prism, quadratic) cells, no physical names,
    untagged tetrahedra, or a cell/facet in two groups.
    """
    import meshio

    path = Path(path)
    _require_file(path)
    try:
        msh = meshio.gmsh.read(path)
    except Exception as exc:  # meshio raises anything from ReadError to IndexError
        reason = str(exc) or type(exc).__name__
        raise MeshError(f"{path}: unreadable gmsh .msh file — corrupt, truncated or not a "
                        f"mesh (meshio: {reason})") from exc
    try:
        return _from_meshio(msh)
    except MeshError as exc:
        raise MeshError(f"{path}: {exc}") from None


def _from_meshio(msh: Any) -> MeshData:
    """Tets + tagged triangles, lines and vertices of a meshio gmsh mesh; membership from
    cell_sets (msh 4.1, which knows entities in several groups) or gmsh:physical (msh 2.2,
    duplicated elements). Lines and vertices in no named group are dropped."""
    named = {str(k): (int(v[1]), int(v[0])) for k, v in msh.field_data.items()
             if len(v) >= 2 and int(v[1]) in _DIMS}
    types = [b.type for b in msh.cells]
    counts = {t: sum(len(b.data) for b in msh.cells if b.type == t) for t in dict.fromkeys(types)}
    for t, kind in _UNSUPPORTED_VOLUME.items():
        if t in counts:
            found = ", ".join(f"{n} {tt}" for tt, n in counts.items())
            raise MeshError(f"{kind} mesh is not supported yet — only linear tetrahedra "
                            f"(gmsh: Mesh.ElementOrder = 1, no recombination); found {found}")
    if "tetra" not in counts:
        found = ", ".join(f"{n} {t}" for t, n in counts.items()) or "no elements"
        raise MeshError(f"no tetrahedra (found {found}); a 3D volume mesh is needed")
    if not named:
        raise MeshError("no physical names: name the volume(s) and surfaces as physical groups")
    if not any(d == _VOLUME for d, _ in named.values()):
        raise MeshError("no named physical volume: every tetrahedron needs a volume group")

    by_tag = {key: name for name, key in named.items()}
    sets = msh.cell_sets or {}
    use_sets = any(n in sets for n in named)
    phys = msh.cell_data.get("gmsh:physical")
    rows: dict[int, list[np.ndarray]] = {d: [] for d in _DIMS}
    tags: dict[int, list[np.ndarray]] = {d: [] for d in _DIMS}
    for k, block in enumerate(msh.cells):
        dim = {"tetra": _VOLUME, "triangle": _SURFACE, "line": _EDGE, "vertex": _POINT}.get(block.type)
        if dim is None:
            continue
        data = np.asarray(block.data, dtype=np.int64).reshape(len(block.data), -1)
        if use_sets:
            tagged = np.zeros(len(data), bool)
            for name, (d, t) in named.items():
                idx = sets[name][k] if name in sets and k < len(sets[name]) else None
                if d == dim and idx is not None and len(idx):
                    rows[dim].append(data[idx])
                    tags[dim].append(np.full(len(idx), t, np.int64))
                    tagged[idx] = True
            if dim == _VOLUME and not tagged.all():
                rows[dim].append(data[~tagged])
                tags[dim].append(np.full(int((~tagged).sum()), -1, np.int64))
        else:
            t = np.asarray(phys[k], np.int64) if phys is not None and k < len(phys) else np.full(len(data), -1)
            unnamed = {int(v) for v in np.unique(t) if v > 0 and (dim, int(v)) not in by_tag}
            if unnamed and dim in (_EDGE, _POINT):  # unnamed curves/points: not ours, drop
                t = np.where(np.isin(t, sorted(unnamed)), -1, t)
            elif unnamed:
                raise MeshError(f"physical {_KIND[dim]} tag(s) {sorted(unnamed)} have no name")
            rows[dim].append(data)
            tags[dim].append(np.where(t > 0, t, -1))

    cells, ctags = _merge(rows[_VOLUME], tags[_VOLUME], 4, "tetrahedra", "volume", by_tag, _VOLUME)
    untagged = int((ctags < 0).sum())
    if untagged:
        raise MeshError(f"{untagged} of {len(ctags)} tetrahedra belong to no named physical volume")
    facets, ftags = _merge(rows[_SURFACE], tags[_SURFACE], 3, "facets", "surface", by_tag, _SURFACE)
    keep = ftags >= 0
    facets, ftags = facets[keep], ftags[keep]
    edges, etags = _merge(rows[_EDGE], tags[_EDGE], 2, "edges", "edge", by_tag, _EDGE)
    edges, etags = edges[etags >= 0], etags[etags >= 0]
    verts, vtags = _merge(rows[_POINT], tags[_POINT], 1, "points", "point", by_tag, _POINT)
    verts, vtags = verts[vtags >= 0].reshape(-1), vtags[vtags >= 0]

    # drop nodes no tetrahedron uses (gmsh saves geometry points, curve nodes, ...)
    points = np.asarray(msh.points, dtype=np.float64)
    if points.shape[1] == 2:
        points = np.column_stack([points, np.zeros(len(points))])
    used = np.unique(cells)
    new_index = np.full(len(points), -1, np.int64)
    new_index[used] = np.arange(len(used))
    cells, facets = new_index[cells], new_index[facets]
    edges, verts = new_index[edges], new_index[verts]
    for dim, conn, tg, what in ((_SURFACE, facets, ftags, "triangles"), (_EDGE, edges, etags, "segments"),
                                (_POINT, verts.reshape(-1, 1), vtags, "nodes")):
        stray = np.unique(tg[(conn < 0).any(axis=1)])
        if stray.size:
            raise MeshError(f"{_KIND[dim]} group(s) {[by_tag[(dim, int(t))] for t in stray]} have "
                            f"{what} off the volume mesh ({_KIND[dim]}s not embedded in the volume)")
    _check_facets_on_cells(cells, facets, ftags, by_tag)
    _check_edges_on_cells(cells, edges, etags, by_tag)
    groups = {name: key for name, key in named.items()}
    return MeshData(points[used], cells, ctags.astype(np.int32), facets, ftags.astype(np.int32), groups,
                    edges, etags.astype(np.int32), verts, vtags.astype(np.int32))


def _merge(rows: list[np.ndarray], tags: list[np.ndarray], width: int, what: str, kind: str,
           by_tag: Mapping[tuple[int, int], str], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """One row per distinct entity (same vertex set) with its tag (-1 untagged); an entity
    with two different tags is an error naming the groups and how many entities."""
    if not rows:
        return np.empty((0, width), np.int64), np.empty(0, np.int64)
    data, tag = np.concatenate(rows), np.concatenate(tags)
    uniq, first, inverse = np.unique(np.sort(data, axis=1), axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    pairs = np.unique(np.column_stack([inverse, tag])[tag >= 0], axis=0)  # sorted by entity
    n_tags = np.bincount(pairs[:, 0], minlength=len(uniq)) if len(pairs) else np.zeros(len(uniq), int)
    if (n_tags > 1).any():
        ent = np.flatnonzero(n_tags > 1)
        starts = np.searchsorted(pairs[:, 0], ent)
        ends = np.searchsorted(pairs[:, 0], ent, side="right")
        combos, count = np.unique(np.column_stack([pairs[starts, 1], pairs[ends - 1, 1]]), axis=0, return_counts=True)
        detail = "; ".join(f"{c} in both '{by_tag[(dim, int(a))]}' and '{by_tag[(dim, int(b))]}'"
                           for (a, b), c in zip(combos, count))
        raise MeshError(f"{int(ent.size)} {what} belong to two {kind} groups ({detail}); "
                        f"each may belong to one {kind} group only")
    out_tag = np.full(len(uniq), -1, np.int64)
    if len(pairs):
        out_tag[pairs[:, 0]] = pairs[:, 1]
    order = np.argsort(first, kind="stable")  # keep file order and original vertex order
    return data[first[order]], out_tag[order]


def _check_facets_on_cells(cells: np.ndarray, facets: np.ndarray, ftags: np.ndarray,
                           by_tag: Mapping[tuple[int, int], str]) -> None:
    """Every tagged triangle must be a face of some tetrahedron, or dolfinx would drop it."""
    if not len(facets):
        return
    faces = cells[:, [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]].reshape(-1, 3)
    n = int(cells.max()) + 1
    if n < _KEY_LIMIT:  # one int64 key per sorted triangle: a 1-D isin instead of row uniques
        def key(tri: np.ndarray) -> np.ndarray:
            tri = np.sort(tri, axis=1)
            return (tri[:, 0] * n + tri[:, 1]) * n + tri[:, 2]
        lonely = ~np.isin(key(facets), key(faces))
    else:
        both = np.concatenate([np.unique(np.sort(faces, axis=1), axis=0), np.sort(facets, axis=1)])
        _, inv, cnt = np.unique(both, axis=0, return_inverse=True, return_counts=True)
        lonely = cnt[inv.reshape(-1)[len(both) - len(facets):]] < 2
    if lonely.any():
        names = sorted({by_tag[(2, int(t))] for t in np.unique(ftags[lonely])})
        raise MeshError(f"{int(lonely.sum())} tagged triangles (groups {names}) are not faces of "
                        "any tetrahedron (non-conforming surface mesh)")


def _check_edges_on_cells(cells: np.ndarray, edges: np.ndarray, etags: np.ndarray,
                          by_tag: Mapping[tuple[int, int], str]) -> None:
    """Every tagged segment must be an edge of some tetrahedron (a conforming edge group)."""
    if not len(edges):
        return
    n = int(max(cells.max(), edges.max())) + 1

    def key(seg: np.ndarray) -> np.ndarray:
        seg = np.sort(seg, axis=1)
        return seg[:, 0] * n + seg[:, 1]  # n² < 2^63 for any mesh that fits in memory

    tet_edges = cells[:, [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]].reshape(-1, 2)
    lonely = ~np.isin(key(edges), key(tet_edges))
    if lonely.any():
        names = sorted({by_tag[(1, int(t))] for t in np.unique(etags[lonely])})
        raise MeshError(f"{int(lonely.sum())} tagged segments (groups {names}) are not edges of "
                        "any tetrahedron (non-conforming edge mesh)")


# --------------------------------------------------------------------------- STEP horn


def read_step_horn(path: str | os.PathLike, *, size_m: float | None = None,
                   min_size_m: float | None = None, **mesh_options: Any) -> MeshData:
    """Mesh a STEP horn with gmsh and return it with the automatic horn groups.

    The STEP is imported in metres (``Geometry.OCCTargetUnit = "M"``) by
    `geometry.step_io.import_step_horn`, which groups the planar end faces normal to the
    axis (+z) into input_face / output_face and the rest into lateral;
    `geometry.meshing.mesh_built` adds the physical groups and meshes (size_m None: a
    quarter of the smallest extent; other keywords: refine_size_m, refine_distance_m,
    curvature_segments, optimize, sizes). It opens and closes its own gmsh session, in
    this process's main thread: call it outside any open gmsh session, from a subprocess
    or a job, never from a web request or a worker thread.
    Raises GeometryError (bad or unsuitable STEP) or MeshError (meshing failed).
    """
    import tempfile
    import threading

    path = Path(path)
    _require_file(path)
    if threading.current_thread() is not threading.main_thread():
        raise MeshError(f"{path}: gmsh can only mesh in the main thread of a process "
                        "(run it in a subprocess)")
    import gmsh

    from .geometry import meshing, step_io

    gmsh.initialize(readConfigFiles=False)  # own session (gmsh 4.8 cannot tell if one is open)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.model.add(f"step_{path.stem}")
        with tempfile.TemporaryDirectory(prefix="weldsim-step-") as tmp:
            msh = Path(tmp) / "horn.msh"
            try:
                built = step_io.import_step_horn(path)
                meshing.mesh_built(built, msh, size_m=size_m, min_size_m=min_size_m, **mesh_options)
            except WeldSimError:
                raise
            except Exception as exc:  # gmsh raises bare Exceptions with its last error
                raise MeshError(f"{path}: gmsh could not mesh the STEP horn ({exc})") from exc
            return read_msh(msh)
    finally:
        gmsh.finalize()


def read_mesh_file(path: str | os.PathLike, **mesh_options: Any) -> MeshData:
    """Any mesh source by suffix: .msh, .step/.stp (meshed), a mesh dir or its mesh.xdmf."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".xdmf":
        return read_mesh_dir(path)
    if suffix == ".msh":
        return read_msh(path)
    if suffix in (".step", ".stp"):
        return read_step_horn(path, **mesh_options)
    raise MeshError(f"{path}: unknown mesh format '{suffix}' (expected .msh, .step/.stp, "
                    "or a mesh directory with mesh.xdmf)")


# --------------------------------------------------------------------------- XDMF dir


def write_mesh_dir(mesh: MeshData, out_dir: str | os.PathLike) -> Path:
    """Write out_dir/mesh.xdmf + mesh.h5 + groups.json; return out_dir.

    Files are written under temporary names and renamed; an old mesh.xdmf is removed
    first and the new one renamed last, so mesh.xdmf exists only next to a complete,
    matching mesh.h5 and groups.json.
    """
    import h5py

    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    suffix = f".tmp{os.getpid()}"
    tmp = {n: out / (n + suffix) for n in (MESH_H5, GROUPS_JSON, MESH_XDMF)}
    try:
        with h5py.File(tmp[MESH_H5], "w") as h5:
            h5.attrs["format"] = "weldsim-mesh"
            h5.attrs["format_version"] = 1
            h5.create_dataset("mesh/geometry", data=mesh.points)
            h5.create_dataset("mesh/topology", data=mesh.cells)
            h5.create_dataset("cell_tags/values", data=mesh.cell_tags)
            h5.create_dataset("facet_tags/topology", data=mesh.facets)
            h5.create_dataset("facet_tags/values", data=mesh.facet_tags)
            if len(mesh.edges):  # optional grids: absent unless the mesh has them
                h5.create_dataset("edge_tags/topology", data=mesh.edges)
                h5.create_dataset("edge_tags/values", data=mesh.edge_tags)
            if len(mesh.vertices):
                h5.create_dataset("point_tags/topology", data=mesh.vertices.reshape(-1, 1))
                h5.create_dataset("point_tags/values", data=mesh.vertex_tags)
        groups = {n: {"dim": d, "tag": t} for n, (d, t) in sorted(mesh.groups.items(), key=lambda kv: (-kv[1][0], kv[1][1]))}
        tmp[GROUPS_JSON].write_text(json.dumps(groups, indent=2) + "\n")
        tmp[MESH_XDMF].write_text(_xdmf_text(mesh))
        (out / MESH_XDMF).unlink(missing_ok=True)
        for name in (MESH_H5, GROUPS_JSON, MESH_XDMF):
            os.replace(tmp[name], out / name)
    except BaseException:
        for p in tmp.values():
            p.unlink(missing_ok=True)
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    return out


def _xdmf_text(mesh: MeshData) -> str:
    """Three Uniform grids (+ edge_tags / point_tags when non-empty); each tag grid repeats
    the Geometry DataItem (same dataset), which ParaView needs and dolfinx ignores (it maps
    tags by input vertex index). Edges are XDMF Polyline cells with 2 nodes, points
    Polyvertex cells: dolfinx 0.5.2 reads them as interval / point meshtags (dims 1 and 0)."""
    n, m, k = len(mesh.points), len(mesh.cells), len(mesh.facets)

    def item(dims: str, number: str, prec: int, dataset: str) -> str:
        return (f'<DataItem Dimensions="{dims}" NumberType="{number}" Precision="{prec}" '
                f'Format="HDF">{MESH_H5}:{dataset}</DataItem>')

    geometry = f'<Geometry GeometryType="XYZ">{item(f"{n} 3", "Float", 8, "/mesh/geometry")}</Geometry>'

    def topo(kind: str, count: int, npe: int, dataset: str) -> str:
        return (f'<Topology TopologyType="{kind}" NumberOfElements="{count}" NodesPerElement="{npe}">'
                f'{item(f"{count} {npe}", "Int", 8, dataset)}</Topology>')

    def attribute(name: str, count: int, dataset: str) -> str:
        return (f'<Attribute Name="{name}" AttributeType="Scalar" Center="Cell">'
                f'{item(str(count), "Int", 4, dataset)}</Attribute>')

    grids = [
        (GRID_MESH, topo("Tetrahedron", m, 4, "/mesh/topology") + geometry),
        (GRID_CELL_TAGS, topo("Tetrahedron", m, 4, "/mesh/topology") + geometry
         + attribute(GRID_CELL_TAGS, m, "/cell_tags/values")),
        (GRID_FACET_TAGS, topo("Triangle", k, 3, "/facet_tags/topology") + geometry
         + attribute(GRID_FACET_TAGS, k, "/facet_tags/values")),
    ]
    e, v = len(mesh.edges), len(mesh.vertices)
    if e:
        grids.append((GRID_EDGE_TAGS, topo("Polyline", e, 2, "/edge_tags/topology") + geometry
                      + attribute(GRID_EDGE_TAGS, e, "/edge_tags/values")))
    if v:
        grids.append((GRID_POINT_TAGS, topo("Polyvertex", v, 1, "/point_tags/topology") + geometry
                      + attribute(GRID_POINT_TAGS, v, "/point_tags/values")))
    body = "\n".join(f'    <Grid Name="{name}" GridType="Uniform">\n      {inner}\n    </Grid>'
                     for name, inner in grids)
    return ('<?xml version="1.0"?>\n<!DOCTYPE Xdmf SYSTEM "Xdmf.dtd" []>\n'
            '<Xdmf Version="3.0" xmlns:xi="http://www.w3.org/2001/XInclude">\n  <Domain>\n'
            f"{body}\n  </Domain>\n</Xdmf>\n")


def read_groups_json(mesh_dir: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """groups.json of a mesh dir: name -> (dim, tag)."""
    path = _mesh_dir(mesh_dir) / GROUPS_JSON
    _require_file(path)
    try:
        raw = json.loads(path.read_text())
        return {str(n): (int(v["dim"]), int(v["tag"])) for n, v in raw.items()}
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise MeshError(f"{path}: invalid groups file, expected "
                        '{"name": {"dim": 3|2|1|0, "tag": int}} ' f"({exc})") from exc


def read_mesh_dir(mesh_dir: str | os.PathLike) -> MeshData:
    """Read a mesh dir (or an XDMF file in it, any name) back into MeshData with numpy/h5py
    (no dolfinx); groups.json sits beside the XDMF.

    The datasets are found through the XDMF grids, so a dolfinx-written file with the same
    grid names reads as well.
    """
    import h5py

    root = _mesh_dir(mesh_dir)
    xdmf = Path(mesh_dir) if Path(mesh_dir).suffix.lower() == ".xdmf" else root / MESH_XDMF
    _require_file(xdmf)
    groups = read_groups_json(root)
    try:
        domain = ET.parse(xdmf).getroot().find("Domain")
        grids = {g.get("Name"): g for g in domain.iter("Grid")}  # type: ignore[union-attr]
    except (ET.ParseError, AttributeError) as exc:
        raise MeshError(f"{xdmf}: invalid XDMF ({exc})") from exc

    def dataset(grid_name: str, path: str, required: bool = True) -> np.ndarray | None:
        grid = grids.get(grid_name)
        node = grid.find(path) if grid is not None else None
        if node is None:
            if required:
                raise MeshError(f"{xdmf}: no grid '{grid_name}' with {path}")
            return None
        if node.get("Format", "XML") != "HDF" or ":" not in (node.text or ""):
            raise MeshError(f"{xdmf}: grid '{grid_name}': only HDF5 data items are supported")
        fname, dset = node.text.strip().split(":", 1)
        h5path = xdmf.parent / fname
        try:
            with h5py.File(h5path, "r") as h5:
                return h5[dset][()]
        except (OSError, KeyError) as exc:
            raise MeshError(f"{h5path}: cannot read dataset {dset} ({exc})") from exc

    points = dataset(GRID_MESH, "Geometry/DataItem")
    cells = dataset(GRID_MESH, "Topology/DataItem")
    ctopo = dataset(GRID_CELL_TAGS, "Topology/DataItem")
    cvals = dataset(GRID_CELL_TAGS, "Attribute/DataItem")
    facets = dataset(GRID_FACET_TAGS, "Topology/DataItem", required=False)
    fvals = dataset(GRID_FACET_TAGS, "Attribute/DataItem", required=False)
    edges = dataset(GRID_EDGE_TAGS, "Topology/DataItem", required=False)
    evals = dataset(GRID_EDGE_TAGS, "Attribute/DataItem", required=False)
    verts = dataset(GRID_POINT_TAGS, "Topology/DataItem", required=False)
    vvals = dataset(GRID_POINT_TAGS, "Attribute/DataItem", required=False)
    cells = np.asarray(cells, np.int64).reshape(-1, 4)
    ctopo = np.asarray(ctopo, np.int64).reshape(-1, 4)
    if not np.array_equal(ctopo, cells):  # e.g. written by dolfinx: tags in another order
        ctopo_key = np.sort(ctopo, axis=1)
        order = np.lexsort(ctopo_key.T[::-1])
        idx = np.lexsort(np.sort(cells, axis=1).T[::-1])
        if len(ctopo) != len(cells) or not np.array_equal(ctopo_key[order], np.sort(cells, axis=1)[idx]):
            raise MeshError(f"{xdmf}: cell_tags do not tag every cell of the mesh exactly once")
        aligned = np.empty(len(cells), np.int64)
        aligned[idx] = np.asarray(cvals).reshape(-1)[order]
        cvals = aligned
    if facets is None:
        facets, fvals = np.empty((0, 3), np.int64), np.empty(0, np.int32)
    if edges is None or evals is None:
        edges, evals = np.empty((0, 2), np.int64), np.empty(0, np.int32)
    if verts is None or vvals is None:
        verts, vvals = np.empty(0, np.int64), np.empty(0, np.int32)
    try:
        return MeshData(points, cells, np.asarray(cvals).reshape(-1), np.asarray(facets).reshape(-1, 3),
                        np.asarray(fvals).reshape(-1), groups,
                        np.asarray(edges).reshape(-1, 2), np.asarray(evals).reshape(-1),
                        np.asarray(verts).reshape(-1), np.asarray(vvals).reshape(-1))
    except MeshError as exc:
        raise MeshError(f"{xdmf}: {exc}") from None


def _mesh_dir(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.parent if p.suffix.lower() == ".xdmf" else p


def _require_file(path: Path) -> None:
    if not path.exists():
        raise MeshError(f"{path}: no such file")
    if not path.is_file():
        raise MeshError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise MeshError(f"{path}: empty file")


# --------------------------------------------------------------------------- info


@dataclass(frozen=True)
class GroupInfo:
    """One named group: its entity count and measure (m³ for volumes, m² for surfaces,
    m for edges, 0 for points)."""

    name: str
    dim: int
    tag: int
    count: int
    measure: float


@dataclass(frozen=True)
class MeshInfo:
    """What an engineer checks before solving: size, extent, volume, element quality, groups.

    quality is the normalised radius ratio 3·r_in/r_circ per tetrahedron: 1 for a regular
    tetrahedron, towards 0 for slivers (below ~0.1 hurts accuracy and conditioning).
    """

    n_nodes: int
    n_cells: int
    n_facets: int
    element_type: str
    bbox_min: tuple[float, float, float]
    bbox_max: tuple[float, float, float]
    volume: float
    quality_min: float
    quality_max: float
    quality_mean: float
    groups: tuple[GroupInfo, ...]

    def as_rows(self) -> list[tuple[str, str]]:
        """(quantity, value) strings for a two-column table (CLI, portal)."""
        ext = [hi - lo for lo, hi in zip(self.bbox_min, self.bbox_max)]
        rows = [
            ("nodes", f"{self.n_nodes:,}"),
            ("cells", f"{self.n_cells:,}"),
            ("element type", "linear tetrahedron (tetra, 4 nodes)"),
            ("tagged facets", f"{self.n_facets:,}"),
            ("bounding box min [m]", _vec(self.bbox_min)),
            ("bounding box max [m]", _vec(self.bbox_max)),
            ("extent [m]", _vec(ext)),
            ("volume [m³]", f"{self.volume:.6g}"),
            ("quality min / mean / max", f"{self.quality_min:.3f} / {self.quality_mean:.3f} / {self.quality_max:.3f}"),
        ]
        for g in self.groups:
            unit, what = {_VOLUME: ("m³", "cells"), _SURFACE: ("m²", "facets"),
                          _EDGE: ("m", "edges"), _POINT: ("", "nodes")}[g.dim]
            size = f", {g.measure:.6g} {unit}" if unit else ""
            rows.append((f"{_KIND[g.dim]} '{g.name}' (tag {g.tag})", f"{g.count:,} {what}{size}"))
        return rows

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (portal, `weldsim mesh --json`)."""
        from dataclasses import asdict

        return asdict(self)


def _vec(v: Iterable[float]) -> str:
    return "(" + ", ".join(f"{x:.6g}" for x in v) + ")"


_CHUNK = 500_000  # cells per vectorised block: bounds temporary memory (~100 MB)


def tet_volumes(points: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Unsigned volume of each tetrahedron."""
    return np.concatenate([_tet_geometry(points, cells[i:i + _CHUNK])[0]
                           for i in range(0, max(len(cells), 1), _CHUNK)]) if len(cells) else np.empty(0)


def tet_quality(points: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Normalised radius ratio 3·r_in/r_circ of each tetrahedron, in [0, 1]."""
    return np.concatenate([_tet_geometry(points, cells[i:i + _CHUNK])[1]
                           for i in range(0, max(len(cells), 1), _CHUNK)]) if len(cells) else np.empty(0)


def _tet_geometry(points: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = points[cells]
    a, b, c = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]
    bxc, cxa, axb = np.cross(b, c), np.cross(c, a), np.cross(a, b)
    det = np.einsum("ij,ij->i", a, bxc)
    vol = np.abs(det) / 6.0
    area = 0.5 * (np.linalg.norm(bxc, axis=1) + np.linalg.norm(cxa, axis=1) + np.linalg.norm(axb, axis=1)
                  + np.linalg.norm(np.cross(p[:, 2] - p[:, 1], p[:, 3] - p[:, 1]), axis=1))
    # circumcentre offset from p0 = (|a|² b×c + |b|² c×a + |c|² a×b) / (2 a·(b×c))
    num = np.linalg.norm((a * a).sum(1)[:, None] * bxc + (b * b).sum(1)[:, None] * cxa
                         + (c * c).sum(1)[:, None] * axb, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r_in = 3.0 * vol / area
        r_circ = num / (2.0 * np.abs(det))
        q = np.where(vol > 0, 3.0 * r_in / r_circ, 0.0)
    return vol, np.clip(np.nan_to_num(q), 0.0, 1.0)


def triangle_areas(points: np.ndarray, facets: np.ndarray) -> np.ndarray:
    """Area of each triangle."""
    if not len(facets):
        return np.empty(0)
    p = points[facets]
    return 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)


def edge_lengths(points: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Length of each segment."""
    if not len(edges):
        return np.empty(0)
    return np.linalg.norm(points[edges[:, 1]] - points[edges[:, 0]], axis=1)


def mesh_info(mesh: MeshData) -> MeshInfo:
    """Counts, bounding box, volume (sum of cell volumes), quality range and group sizes
    (edge groups with their length, point groups with their node count)."""
    vol = tet_volumes(mesh.points, mesh.cells)
    q = tet_quality(mesh.points, mesh.cells)
    measures = {_VOLUME: vol, _SURFACE: triangle_areas(mesh.points, mesh.facets),
                _EDGE: edge_lengths(mesh.points, mesh.edges), _POINT: np.zeros(len(mesh.vertices))}
    used = mesh.points[np.unique(mesh.cells)] if mesh.n_cells else mesh.points
    lo = tuple(float(x) for x in used.min(axis=0)) if len(used) else (0.0, 0.0, 0.0)
    hi = tuple(float(x) for x in used.max(axis=0)) if len(used) else (0.0, 0.0, 0.0)
    groups = []
    for name, (dim, tag) in sorted(mesh.groups.items(), key=lambda kv: (-kv[1][0], kv[1][1])):
        sel = getattr(mesh, _ARRAYS[dim][1]) == tag
        measure = measures[dim][sel].sum()
        groups.append(GroupInfo(name, dim, tag, int(sel.sum()), float(measure)))
    return MeshInfo(
        n_nodes=mesh.n_nodes, n_cells=mesh.n_cells, n_facets=len(mesh.facets),
        element_type=ELEMENT_TYPE, bbox_min=lo, bbox_max=hi,  # type: ignore[arg-type]
        volume=float(vol.sum()),
        quality_min=float(q.min()) if q.size else 0.0,
        quality_max=float(q.max()) if q.size else 0.0,
        quality_mean=float(q.mean()) if q.size else 0.0,
        groups=tuple(groups),
    )
