"""Structured tetrahedral box meshes (numpy only) for the scipy backend tests.

box_mesh(n, size): the box 0..size split into n[0]×n[1]×n[2] bricks of 6 tetrahedra each
(Kuhn subdivision, conforming); volume group 'bar' (or two volumes split at z = z_split:
'lower', 'upper' with the interior surface 'interface'); faces x0, x1, y0, y1, z0, z1.
"""

from __future__ import annotations

import numpy as np

from weldsim_hpc.mesh import MeshData

_KUHN = ((0, 1, 3, 7), (0, 1, 5, 7), (0, 2, 3, 7), (0, 2, 6, 7), (0, 4, 5, 7), (0, 4, 6, 7))


def box_mesh(n=(2, 2, 8), size=(1.0, 1.0, 4.0), z_split: float | None = None) -> MeshData:
    nx, ny, nz = n
    axes = [np.linspace(0.0, s, k + 1) for s, k in zip(size, n)]
    X, Y, Z = np.meshgrid(*axes, indexing="ij")
    points = np.stack([X.ravel(), Y.ravel(), Z.ravel()], 1)
    idx = np.arange(len(points)).reshape(nx + 1, ny + 1, nz + 1)
    i, j, k = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij")
    corners = np.stack([idx[i + a, j + b, k + c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], -1)
    # corner numbering: bit 2 = x, bit 1 = y, bit 0 = z
    corners = corners.reshape(-1, 8)[:, [0, 4, 2, 6, 1, 5, 3, 7]]   # -> bit 0 = x, bit 1 = y, bit 2 = z
    cells = np.concatenate([corners[:, list(t)] for t in _KUHN])
    x = points[cells]
    vol = np.einsum("ij,ij->i", np.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0]), x[:, 3] - x[:, 0])
    cells[vol < 0] = cells[vol < 0][:, [0, 2, 1, 3]]
    centroid = points[cells].mean(axis=1)
    faces = np.concatenate([cells[:, list(f)] for f in ((1, 2, 3), (0, 2, 3), (0, 1, 3), (0, 1, 2))])
    faces = np.unique(np.sort(faces, axis=1), axis=0)
    fp = points[faces]
    tris, tags, groups = [], [], {}
    tag = 1
    for axis, name in enumerate("xyz"):
        for side, value in ((0, 0.0), (1, size[axis])):
            on = np.all(np.isclose(fp[:, :, axis], value), axis=1)
            tris.append(faces[on])
            tags.append(np.full(on.sum(), tag))
            groups[f"{name}{side}"] = (2, tag)
            tag += 1
    if z_split is None:
        cell_tags = np.ones(len(cells), int)
        groups["bar"] = (3, 1)
    else:
        cell_tags = np.where(centroid[:, 2] < z_split, 1, 2)
        groups["lower"], groups["upper"] = (3, 1), (3, 2)
        on = np.all(np.isclose(fp[:, :, 2], z_split), axis=1)
        tris.append(faces[on])
        tags.append(np.full(on.sum(), tag))
        groups["interface"] = (2, tag)
    return MeshData(points, cells, cell_tags, np.concatenate(tris), np.concatenate(tags), groups)
