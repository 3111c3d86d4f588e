"""A rank-independent order of the dofs of a scalar P1/P2 space, for checkpoints.

A checkpoint written on 2 ranks must be readable on 1 (or 4): dof numbers depend on the
partition, so each dof gets an integer key from the mesh *as read from the file*
(`mesh.geometry.input_global_indices`): a vertex dof is keyed (i, -1) by its vertex's
input index i, an edge dof (P2) by the sorted input indices (i, j) of the edge's ends.
Sorting the keys gives the same order whatever the partition — exact integers, no
coordinate round-off. The values travel to rank 0 (gather) for writing and back from
rank 0 (scatter) on resume; a linear (P1) coordinate element is assumed, as our meshes are.

    order = GlobalOrder(V, comm)
    values = order.gather(u.x.array)        # rank 0: the global-order vector; others: None
    u.x.array[:] = order.scatter(values)    # every rank: owned + ghost entries, collective
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import compat

# basix/UFC reference tetrahedron: local edge e joins these local vertices
TET_EDGE_VERTICES = ((2, 3), (1, 3), (1, 2), (0, 3), (0, 2), (0, 1))


def dof_keys(V: Any) -> np.ndarray:
    """(n_local_dofs incl. ghosts, 2) int64 keys of a scalar Lagrange space (order 1 or 2)."""
    mesh = V.mesh
    if V.dofmap.index_map_bs != 1:
        raise ValueError("dof_keys needs a scalar space (checkpoint each component separately)")
    cells = compat.cell_dofs(V)
    geometry = mesh.geometry.dofmap.array.reshape(cells.shape[0], -1)
    if geometry.shape[1] != 4:
        raise ValueError("checkpoints need a linear tetrahedral mesh (4 geometry nodes per cell)")
    inputs = np.asarray(mesh.geometry.input_global_indices, dtype=np.int64)[geometry]
    layout = V.dofmap.dof_layout
    n_local = V.dofmap.index_map.size_local + V.dofmap.index_map.num_ghosts
    keys = np.full((n_local, 2), -2, dtype=np.int64)
    for vertex in range(4):
        for local in layout.entity_dofs(0, vertex):
            keys[cells[:, local], 0] = inputs[:, vertex]
            keys[cells[:, local], 1] = -1
    for edge, (a, b) in enumerate(TET_EDGE_VERTICES):
        for local in layout.entity_dofs(1, edge):
            keys[cells[:, local], 0] = np.minimum(inputs[:, a], inputs[:, b])
            keys[cells[:, local], 1] = np.maximum(inputs[:, a], inputs[:, b])
    if (keys[:, 0] < 0).any():
        raise ValueError("only vertex and edge dofs (order 1 or 2) can be checkpointed")
    return keys


class GlobalOrder:
    """Gather/scatter between a distributed scalar Function and one global-order vector."""

    def __init__(self, V: Any, comm: Any):
        self.comm = comm
        keys = dof_keys(V)
        self.n_owned = V.dofmap.index_map.size_local
        self._local_keys = keys
        gathered = comm.gather(keys[: self.n_owned], root=0)
        if comm.rank == 0:
            all_keys = np.concatenate(gathered)
            self.sort = np.lexsort((all_keys[:, 1], all_keys[:, 0]))
            sorted_keys = all_keys[self.sort]
            if len(sorted_keys) > 1 and (np.diff(sorted_keys, axis=0) == 0).all(axis=1).any():
                raise ValueError("two dofs share a key: the mesh has duplicate input nodes")
            self.sorted_keys = sorted_keys
            self.counts = [len(g) for g in gathered]
        self.size = comm.bcast(len(self.sorted_keys) if comm.rank == 0 else None, root=0)

    def gather(self, local_values: np.ndarray) -> np.ndarray | None:
        """Collective: rank 0 gets the values of every dof in global order, others None."""
        parts = self.comm.gather(np.asarray(local_values[: self.n_owned], dtype=np.float64), root=0)
        if self.comm.rank != 0:
            return None
        return np.concatenate(parts)[self.sort]

    def scatter(self, global_values: np.ndarray | None) -> np.ndarray:
        """Collective: each rank's local values (owned and ghost) from rank 0's global vector."""
        if self.comm.rank == 0:
            if len(global_values) != self.size:
                raise ValueError(f"checkpoint holds {len(global_values)} values, the space has {self.size}")
            table = (self.sorted_keys, np.asarray(global_values, dtype=np.float64))
        else:
            table = None
        keys, values = self.comm.bcast(table, root=0)
        # position of each local key in the sorted global keys
        width = int(max(keys[:, 0].max(initial=0), keys[:, 1].max(initial=0))) + 2
        flat_global = keys[:, 0] * width + (keys[:, 1] + 1)
        flat_local = self._local_keys[:, 0] * width + (self._local_keys[:, 1] + 1)
        where = np.searchsorted(flat_global, flat_local)
        if (where >= len(flat_global)).any() or (flat_global[np.minimum(where, len(flat_global) - 1)] != flat_local).any():
            raise ValueError("the checkpoint was written for another mesh")
        return values[where]
