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
            payload = (True, (meshmod.read_groups_json(root), _optional_grids(xdmf)))
        except MeshError as exc:
            payload = (False, str(exc))
    ok, value = comm.bcast(payload, root=0)
    if not ok:
        raise MeshError(value)
    groups: dict[str, tuple[int, int]] = value[0]
    optional: set[str] = value[1]

    try:
        with XDMFFile(comm, str(xdmf), "r") as xf:
            mesh = xf.read_mesh(name=meshmod.GRID_MESH)
            tdim = mesh.topology.dim
            mesh.topology.create_connectivity(tdim - 1, tdim)  # facets must exist to tag them
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


def _optional_grids(xdmf: Path) -> set[str]:
    """Which optional tag grids (edge_tags, point_tags) mesh.xdmf has (rank 0, no dolfinx)."""
    import xml.etree.ElementTree as ET

    try:
        names = {g.get("Name") for g in ET.parse(xdmf).getroot().iter("Grid")}
    except ET.ParseError as exc:
        raise MeshError(f"{xdmf}: invalid XDMF ({exc})") from exc
    return names & {meshmod.GRID_EDGE_TAGS, meshmod.GRID_POINT_TAGS}


def _check_tags_named(comm: Any, xdmf: Path, groups: dict[str, tuple[int, int]],
                      tags: dict[int, Any]) -> None:
    """Every tag value on any rank must be named in groups.json (same verdict on all ranks)."""
    import numpy as np

    local = {dim: set(np.unique(t.values).tolist()) for dim, t in tags.items() if t is not None}
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
