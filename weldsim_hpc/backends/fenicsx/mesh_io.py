"""Read a run's mesh directory (mesh.xdmf + groups.json) into dolfinx, collectively.

Why not gmshio: `gmshio.read_from_msh` is broken in dolfinx 0.5.2 and model_to_mesh
needs gmsh on every rank; the XDMF written by `weldsim_hpc.mesh.write_mesh_dir` reads on
any number of ranks with the tags distributed by dolfinx. XDMF carries no group names,
so rank 0 reads groups.json and broadcasts it. Errors found on rank 0 are broadcast and
raised on every rank, so no rank is left waiting in a collective call.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

from ...errors import MeshError
from ... import mesh as meshmod


class FenicsxMesh(NamedTuple):
    """What `read_mesh` returns (unpacks as a 4-tuple)."""

    mesh: Any              # dolfinx.mesh.Mesh
    cell_tags: Any         # MeshTags (dim 3): volume-group tags
    facet_tags: Any        # MeshTags (dim 2): surface-group tags
    groups: dict[str, tuple[int, int]]   # name -> (dim, tag), the same on every rank


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
            payload = (True, meshmod.read_groups_json(root))
        except MeshError as exc:
            payload = (False, str(exc))
    ok, value = comm.bcast(payload, root=0)
    if not ok:
        raise MeshError(value)
    groups: dict[str, tuple[int, int]] = value

    try:
        with XDMFFile(comm, str(xdmf), "r") as xf:
            mesh = xf.read_mesh(name=meshmod.GRID_MESH)
            tdim = mesh.topology.dim
            mesh.topology.create_connectivity(tdim - 1, tdim)  # facets must exist to tag them
            cell_tags = xf.read_meshtags(mesh, name=meshmod.GRID_CELL_TAGS)
            facet_tags = xf.read_meshtags(mesh, name=meshmod.GRID_FACET_TAGS)
    except RuntimeError as exc:  # dolfinx/HDF5 errors arrive as RuntimeError
        raise MeshError(f"{xdmf}: dolfinx cannot read the mesh ({exc})") from exc
    cell_tags.name = meshmod.GRID_CELL_TAGS
    facet_tags.name = meshmod.GRID_FACET_TAGS
    _check_tags_named(comm, xdmf, groups, cell_tags, facet_tags)
    return FenicsxMesh(mesh, cell_tags, facet_tags, groups)


def _check_tags_named(comm: Any, xdmf: Path, groups: dict[str, tuple[int, int]],
                      cell_tags: Any, facet_tags: Any) -> None:
    """Every tag value on any rank must be named in groups.json (same verdict on all ranks)."""
    import numpy as np

    local = {dim: set(np.unique(t.values).tolist()) for dim, t in ((3, cell_tags), (2, facet_tags))}
    everywhere = comm.allgather(local)
    for dim in (3, 2):
        values = set().union(*(rank_tags[dim] for rank_tags in everywhere))
        unnamed = sorted(values - {t for d, t in groups.values() if d == dim})
        if unnamed:
            kind = "cell" if dim == 3 else "facet"
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
