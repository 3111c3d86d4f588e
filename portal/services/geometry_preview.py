"""Surface previews of geometry versions for a 3-D viewer: bounded, with a group per face.

Why a separate, numpy-only module: the preview is computed in the geometry job process
(portal.geometry_worker, next to gmsh) and must stay small enough for a browser whatever
the mesh size. A preview is the outer surface as triangles, each carrying the index of
its named surface group, so a viewer can highlight `output_face`.

The bound: at most MAX_PREVIEW_FACES (20 000) triangles, hence at most 60 000 vertices
(in practice about half the face count). Larger surfaces are decimated by vertex
clustering: vertices are snapped to a uniform grid over the bounding box, each occupied
grid cell becomes one vertex (the mean of its members), triangles that collapse (two
corners in one cell) and duplicates are dropped; the grid is coarsened until the bound
holds. Each surviving triangle keeps its group. Clustering never moves a vertex by more
than one grid cell, so the shape is kept to within that tolerance (reported as
`cell_size_m`).

The JSON document (`preview_document`)::

    {"format": "weldsim-surface-preview/1", "units": "m", "source": "mesh" | "geometry",
     "vertices": [[x, y, z], …], "faces": [[i, j, k], …],
     "groups": ["input_face", "lateral", "output_face"],
     "face_groups": [0, 2, …],          # index into groups; -1: boundary in no group
     "faces_full": 51234, "decimated": true, "cell_size_m": 0.0012 | null,
     "max_faces": 20000, "bounds": {"min": [x, y, z], "max": [x, y, z]}}

Example::

    surface = boundary_surface(read_msh("horn.msh"))
    doc = preview_document(surface, source="mesh")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from weldsim_hpc.mesh import MeshData

MAX_PREVIEW_FACES = 20_000
FORMAT = "weldsim-surface-preview/1"
_TET_FACES = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
_COORD_DECIMALS = 9  # metres: a nanometre is far below any mesh size


@dataclass(frozen=True)
class Surface:
    """Triangles with a group index each: points (n, 3) m, faces (m, 3), face_groups (m,)
    indexing `groups` (-1: in no group)."""

    points: np.ndarray
    faces: np.ndarray
    face_groups: np.ndarray
    groups: tuple[str, ...]


def boundary_surface(mesh: MeshData) -> Surface:
    """The outer surface of a tetrahedral mesh (faces of exactly one cell), grouped by the
    mesh's surface groups (tagged facets); interface facets between volumes are not shown."""
    names = tuple(mesh.group_names(2))
    faces = np.sort(mesh.cells[:, _TET_FACES].reshape(-1, 3), axis=1)
    unique, counts = np.unique(faces, axis=0, return_counts=True)
    outer = unique[counts == 1]
    groups = np.full(len(outer), -1, dtype=np.int64)
    if len(mesh.facets) and len(outer):
        index_of_tag = {mesh.groups[n][1]: i for i, n in enumerate(names)}
        tagged = np.sort(mesh.facets, axis=1)
        tag_index = np.array([index_of_tag.get(int(t), -1) for t in mesh.facet_tags], dtype=np.int64)
        both = np.concatenate([outer, tagged])
        _, inverse = np.unique(both, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        slot = np.full(inverse.max() + 1, -1, dtype=np.int64)
        slot[inverse[len(outer):]] = tag_index
        groups = slot[inverse[:len(outer)]]
    return Surface(np.asarray(mesh.points, dtype=np.float64), outer.astype(np.int64), groups, names)


def compact(surface: Surface) -> Surface:
    """The same surface with unused points dropped and faces renumbered."""
    used, inverse = np.unique(surface.faces.reshape(-1), return_inverse=True)
    return Surface(surface.points[used], inverse.reshape(-1, 3).astype(np.int64),
                   surface.face_groups, surface.groups)


def decimate(surface: Surface, max_faces: int = MAX_PREVIEW_FACES) -> tuple[Surface, float | None]:
    """At most `max_faces` triangles by vertex clustering (module docstring); returns the
    surface and the grid cell size used (None when nothing had to be removed)."""
    if max_faces < 1:
        raise ValueError(f"max_faces must be at least 1, got {max_faces}")
    surface = compact(surface)
    if len(surface.faces) <= max_faces:
        return surface, None
    points = surface.points
    lo = points.min(axis=0)
    extent = float((points.max(axis=0) - lo).max()) or 1.0
    cells = max(2, int(np.sqrt(max_faces)))
    while True:
        h = extent / cells
        index = np.minimum(np.floor((points - lo) / h).astype(np.int64), cells)
        key = (index[:, 0] * (cells + 1) + index[:, 1]) * (cells + 1) + index[:, 2]
        _, vertex_of = np.unique(key, return_inverse=True)
        vertex_of = vertex_of.reshape(-1)
        count = np.bincount(vertex_of)
        centres = np.stack([np.bincount(vertex_of, weights=points[:, d]) for d in range(3)], axis=1) / count[:, None]
        faces = vertex_of[surface.faces]
        keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
        faces, groups = faces[keep], surface.face_groups[keep]
        _, first = np.unique(np.sort(faces, axis=1), axis=0, return_index=True)
        first.sort()
        faces, groups = faces[first], groups[first]
        if len(faces) <= max_faces or cells <= 1:
            return compact(Surface(centres, faces, groups, surface.groups)), h
        cells = min(cells - 1, max(1, int(cells * np.sqrt(max_faces / len(faces)) * 0.95)))


def preview_document(surface: Surface, *, source: str, max_faces: int = MAX_PREVIEW_FACES) -> dict[str, Any]:
    """The JSON-ready preview of `surface` (see the module docstring)."""
    full = len(surface.faces)
    small, cell = decimate(surface, max_faces)
    points = np.round(small.points, _COORD_DECIMALS)
    bounds = {"min": points.min(axis=0).tolist(), "max": points.max(axis=0).tolist()} if len(points) \
        else {"min": [0.0, 0.0, 0.0], "max": [0.0, 0.0, 0.0]}
    return {"format": FORMAT, "units": "m", "source": source,
            "vertices": points.tolist(), "faces": small.faces.tolist(),
            "groups": list(small.groups), "face_groups": small.face_groups.astype(int).tolist(),
            "faces_full": full, "decimated": cell is not None, "cell_size_m": cell,
            "max_faces": max_faces, "bounds": bounds}
