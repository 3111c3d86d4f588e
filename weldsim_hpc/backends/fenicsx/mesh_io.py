"""Read a run's mesh directory (mesh.xdmf + groups.json) into dolfinx, collectively.

Why not gmshio: `gmshio.read_from_msh` is broken in dolfinx 0.5.2 and model_to_mesh
needs gmsh on every rank; the XDMF written by `weldsim_hpc.mesh.write_mesh_dir` reads on
any number of ranks with the tags distributed by dolfinx. XDMF carries no group names,
so rank 0 reads groups.json and broadcasts it. Errors found on rank 0 are broadcast and
raised on every rank, so no rank is left waiting in a collective call.

Edge (dim 1) and point (dim 0) groups: the optional ``edge_tags`` (Polyline) and
``point_tags`` (Polyvertex) grids are read with ``XDMFFile.read_meshtags`` like the
others — checked on dolfinx 0.5.2 on 1 and 2 ranks (dolfinx maps the entities by input
vertex index and distributes them; edges are created first so they can be tagged), so no
geometric fallback is needed. Their MeshTags are ``None`` when the mesh has no such grid.

Cell tags without the entity matching: `XDMFFile.read_meshtags` maps tagged entities to
local ones by their input vertex indices (distribute every entity to the ranks holding
its vertices, sort, match) — for the cell grid, which tags every cell, that took as long
as reading the mesh itself (1.7M tets: 9.3 s vs 10.4 s). When the ``cell_tags`` grid
reuses the mesh grid's topology dataset (as `weldsim_hpc.mesh.write_mesh_dir` writes it),
its i-th value belongs to input cell i, and dolfinx records the input index of every
local cell (owned and ghost) in ``mesh.topology.original_cell_index``; so the values are
read with h5py and indexed by it (`_fast_cell_tags`). The MeshTags is the same as
read_meshtags' (every local cell, sorted indices, int32 values) — checked on 1 and 2
ranks. Any other layout, or any rank failing to read the values, falls back to
read_meshtags (decided collectively).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

from ...errors import MeshError
from ... import mesh as meshmod


class FenicsxMesh(NamedTuple):
    """What `read_mesh` returns. Six fields: unpack the first four as
    ``mesh, ct, ft, groups = fmesh[:4]``, or use the names; edge_tags and point_tags are
    None when the mesh has no edge / point groups."""

    mesh: Any              # dolfinx.mesh.Mesh
    cell_tags: Any         # MeshTags (dim 3): volume-group tags
    facet_tags: Any        # MeshTags (dim 2): surface-group tags
    groups: dict[str, tuple[int, int]]   # name -> (dim, tag), the same on every rank
    edge_tags: Any = None  # MeshTags (dim 1): edge-group tags, or None
    point_tags: Any = None  # MeshTags (dim 0): point-group (vertex) tags, or None

    def entity_tags(self, dim: int) -> Any:
        """The MeshTags of dimension `dim` (3 cells, 2 facets, 1 edges, 0 vertices), or None
        when the mesh has none of that dimension (the same on every rank)."""
        return {3: self.cell_tags, 2: self.facet_tags, 1: self.edge_tags, 0: self.point_tags}.get(dim)


def read_mesh(mesh_dir: str | os.PathLike, comm: Any) -> FenicsxMesh:
    """Collective: every rank of `comm` must call it with the same mesh_dir."""
    from dolfinx.io import XDMFFile

    root = Path(mesh_dir)
    if root.suffix.lower() == ".xdmf":
        root = root.parent
    xdmf = root / meshmod.MESH_XDMF
    payload: tuple[bool, Any] | None = None
    if comm.rank == 0:
        try:
            if not xdmf.is_file():
                raise MeshError(f"{xdmf}: no such file (not a mesh directory?)")
            payload = (True, (meshmod.read_groups_json(root),) + _grid_layout(xdmf))
        except MeshError as exc:
            payload = (False, str(exc))
    ok, value = comm.bcast(payload, root=0)
    if not ok:
        raise MeshError(value)
    groups: dict[str, tuple[int, int]] = value[0]
    optional: set[str] = value[1]
    cell_values: tuple[str, str, int] | None = value[2]

    try:
        with XDMFFile(comm, str(xdmf), "r") as xf:
            mesh = xf.read_mesh(name=meshmod.GRID_MESH)
            tdim = mesh.topology.dim
            mesh.topology.create_connectivity(tdim - 1, tdim)  # facets must exist to tag them
            cell_tags = None if cell_values is None else _fast_cell_tags(mesh, root, *cell_values)
            if cell_tags is None:
                cell_tags = xf.read_meshtags(mesh, name=meshmod.GRID_CELL_TAGS)
            facet_tags = xf.read_meshtags(mesh, name=meshmod.GRID_FACET_TAGS)
            edge_tags = point_tags = None
            if meshmod.GRID_EDGE_TAGS in optional:
                mesh.topology.create_entities(1)
                mesh.topology.create_connectivity(1, 0)
                edge_tags = xf.read_meshtags(mesh, name=meshmod.GRID_EDGE_TAGS)
            if meshmod.GRID_POINT_TAGS in optional:
                point_tags = xf.read_meshtags(mesh, name=meshmod.GRID_POINT_TAGS)
    except RuntimeError as exc:  # dolfinx/HDF5 errors arrive as RuntimeError
        raise MeshError(f"{xdmf}: dolfinx cannot read the mesh ({exc})") from exc
    tags = {3: cell_tags, 2: facet_tags, 1: edge_tags, 0: point_tags}
    for dim, name in ((3, meshmod.GRID_CELL_TAGS), (2, meshmod.GRID_FACET_TAGS),
                      (1, meshmod.GRID_EDGE_TAGS), (0, meshmod.GRID_POINT_TAGS)):
        if tags[dim] is not None:
            tags[dim].name = name
    _check_tags_named(comm, xdmf, groups, tags)
    return FenicsxMesh(mesh, cell_tags, facet_tags, groups, edge_tags, point_tags)


def _grid_layout(xdmf: Path) -> tuple[set[str], tuple[str, str, int] | None]:
    """(rank 0, no dolfinx) Which optional tag grids (edge_tags, point_tags) mesh.xdmf has,
    and where the cell tag values are when `_fast_cell_tags` applies: (h5 file relative to
    the mesh dir, dataset, number of cells), or None (then read_meshtags reads them).

    The fast path needs the cell_tags grid to use the mesh grid's own topology DataItem
    (same HDF dataset, same dimensions) and one cell-centred HDF Int attribute with one
    value per cell.
    """
    import xml.etree.ElementTree as ET

    try:
        grids = {g.get("Name"): g for g in ET.parse(xdmf).getroot().iter("Grid")}
    except ET.ParseError as exc:
        raise MeshError(f"{xdmf}: invalid XDMF ({exc})") from exc
    optional = set(grids) & {meshmod.GRID_EDGE_TAGS, meshmod.GRID_POINT_TAGS}
    return optional, _cell_values_item(grids.get(meshmod.GRID_MESH), grids.get(meshmod.GRID_CELL_TAGS))


def _cell_values_item(mesh_grid: Any, tag_grid: Any) -> tuple[str, str, int] | None:
    if mesh_grid is None or tag_grid is None:
        return None

    def item(node: Any, path: str) -> Any:
        found = node.findall(path)
        return found[0] if len(found) == 1 else None

    topo, tag_topo = item(mesh_grid, "Topology/DataItem"), item(tag_grid, "Topology/DataItem")
    attr = item(tag_grid, "Attribute")
    values = None if attr is None else item(attr, "DataItem")
    if topo is None or tag_topo is None or values is None:
        return None
    same_topology = ((topo.text or "").strip() == (tag_topo.text or "").strip()
                     and topo.get("Dimensions") == tag_topo.get("Dimensions")
                     and topo.get("Format") == tag_topo.get("Format") == "HDF")
    try:
        n_cells = int((topo.get("Dimensions") or "").split()[0])
        n_values = [int(d) for d in (values.get("Dimensions") or "").split()]
    except (ValueError, IndexError):
        return None
    if not (same_topology and attr.get("Center") == "Cell" and values.get("Format") == "HDF"
            and values.get("NumberType", "Float") in ("Int", "UInt") and n_values in ([n_cells], [n_cells, 1])):
        return None
    h5file, sep, dataset = (values.text or "").strip().partition(":")
    if not sep or not h5file or not dataset:
        return None
    return h5file, dataset, n_cells


def _fast_cell_tags(mesh: Any, root: Path, h5file: str, dataset: str, n_cells: int) -> Any:
    """Collective: the cell MeshTags from the values indexed by each local cell's input
    index (see the module docstring), or None on every rank when any rank cannot do it."""
    import numpy as np

    tdim = mesh.topology.dim
    imap = mesh.topology.index_map(tdim)
    tags = None
    try:
        original = np.asarray(mesh.topology.original_cell_index, dtype=np.int64)
        n_local = imap.size_local + imap.num_ghosts
        if imap.size_global == n_cells and len(original) == n_local:
            import h5py

            with h5py.File(root / h5file, "r") as h5:
                values = np.asarray(h5[dataset][...]).reshape(-1)
            if len(values) == n_cells and (not n_local or (original.min() >= 0 and original.max() < n_cells)):
                tags = (np.arange(n_local, dtype=np.int32), np.ascontiguousarray(values[original], dtype=np.int32))
    except Exception:  # noqa: BLE001 — any failure: the collective fallback below
        tags = None
    from mpi4py import MPI

    if not mesh.comm.allreduce(tags is not None, op=MPI.LAND):
        return None
    from dolfinx.cpp.mesh import MeshTags_int32

    return MeshTags_int32(getattr(mesh, "_mesh", mesh), tdim, *tags)


def _distinct(values: Any) -> set[int]:
    """The distinct values of an int array (bincount for small non-negative tags, else sort)."""
    import numpy as np

    values = np.asarray(values)
    if not len(values):
        return set()
    lo, hi = int(values.min()), int(values.max())
    if lo >= 0 and hi < (1 << 22):
        return set(np.flatnonzero(np.bincount(values)).tolist())
    return set(np.unique(values).tolist())


def _check_tags_named(comm: Any, xdmf: Path, groups: dict[str, tuple[int, int]],
                      tags: dict[int, Any]) -> None:
    """Every tag value on any rank must be named in groups.json (same verdict on all ranks)."""
    local = {dim: _distinct(t.values) for dim, t in tags.items() if t is not None}
    everywhere = comm.allgather(local)
    for dim in (3, 2, 1, 0):
        values = set().union(*(rank_tags.get(dim, set()) for rank_tags in everywhere))
        unnamed = sorted(values - {t for d, t in groups.values() if d == dim})
        if unnamed:
            kind = {3: "cell", 2: "facet", 1: "edge", 0: "point"}[dim]
            raise MeshError(f"{xdmf}: {kind} tags {unnamed} are not named in {meshmod.GROUPS_JSON}")


def owned_facet_area(mesh: Any, facet_tags: Any, tag: int) -> float:
    """Area of this rank's OWNED facets with `tag` (sum over ranks = the group's area).

    Pure geometry (no form compilation): useful to check tags and to normalise loads.
    """
    import numpy as np

    tdim = mesh.topology.dim
    mesh.topology.create_connectivity(tdim - 1, 0)
    n_owned = mesh.topology.index_map(tdim - 1).size_local
    facets = facet_tags.indices[(facet_tags.values == tag) & (facet_tags.indices < n_owned)]
    if not len(facets):
        return 0.0
    from dolfinx.cpp.mesh import entities_to_geometry  # 0.5: cpp only, takes the cpp mesh

    p = mesh.geometry.x[entities_to_geometry(getattr(mesh, "_mesh", mesh), tdim - 1, facets, False)]
    return float(0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1).sum())


def owned_edge_length(mesh: Any, edge_tags: Any, tag: int) -> float:
    """Length of this rank's OWNED mesh edges with `tag` (sum over ranks = the group's
    length; straight segments between the edge's two vertices)."""
    import numpy as np

    mesh.topology.create_connectivity(1, 0)
    n_owned = mesh.topology.index_map(1).size_local
    edges = edge_tags.indices[(edge_tags.values == tag) & (edge_tags.indices < n_owned)]
    if not len(edges):
        return 0.0
    from dolfinx.cpp.mesh import entities_to_geometry

    p = mesh.geometry.x[entities_to_geometry(getattr(mesh, "_mesh", mesh), 1, edges, False)]
    return float(np.linalg.norm(p[:, -1] - p[:, 0], axis=1).sum())


def owned_tagged_points(mesh: Any, point_tags: Any, tag: int) -> np.ndarray:
    """(k, 3) coordinates of this rank's OWNED vertices with `tag` (vertex index is not the
    geometry node index: mapped through entities_to_geometry)."""
    import numpy as np

    n_owned = mesh.topology.index_map(0).size_local
    verts = point_tags.indices[(point_tags.values == tag) & (point_tags.indices < n_owned)]
    if not len(verts):
        return np.empty((0, 3))
    from dolfinx.cpp.mesh import entities_to_geometry

    nodes = entities_to_geometry(getattr(mesh, "_mesh", mesh), 0, verts, False).reshape(-1)
    return np.asarray(mesh.geometry.x[nodes], dtype=np.float64)
