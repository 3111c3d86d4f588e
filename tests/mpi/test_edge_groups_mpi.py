"""dolfinx reads edge (dim 1) and point (dim 0) groups of our mesh dirs on 1 and 2 ranks.

Run: OMP_NUM_THREADS=1 mpirun --allow-run-as-root -n 2 .venv/bin/python -m pytest --with-mpi tests/mpi
(also meaningful with -n 1). Assertions are collective (see test_mesh_mpi.py). The mesh
comes from `tests.test_mesh.build_box_with_edge_groups` (gmsh, rank 0 only): a 30×20×10 mm
box whose edge group `hold_edge` is 40 mm long and whose point group `corners` holds the
two corners (0,0,0) and (30,20,10) mm.
"""

from __future__ import annotations

import numpy as np
import pytest

import dolfinx  # noqa: F401  (the set-up installs it)
from mpi4py import MPI

from tests.test_mesh import EDGE_BOX, build_box_with_edge_groups
from tests.mpi.test_mesh_mpi import assert_all, on_root
from weldsim_hpc import mesh as M

COMM = MPI.COMM_WORLD


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    """(mesh dir, reference MeshData), built on rank 0 and broadcast."""
    def build():
        base = tmp_path_factory.mktemp("edges")
        data = M.read_msh(build_box_with_edge_groups(base / "box.msh", size=0.003))
        return str(M.write_mesh_dir(data, base / "mesh")), data

    return on_root(build)


@pytest.fixture(scope="module")
def loaded(box):
    from weldsim_hpc.backends.fenicsx.mesh_io import read_mesh

    return read_mesh(box[0], COMM)


@pytest.mark.mpi
def test_edge_tags_total_length(box, loaded):
    from weldsim_hpc.backends.fenicsx.mesh_io import owned_edge_length

    X, _, Z = EDGE_BOX
    _, ref = box
    et = loaded.edge_tags
    assert_all(et is not None and et.dim == 1, f"edge tags {et}")
    assert_all(loaded.entity_tags(1) is et and loaded.entity_tags(2) is loaded.facet_tags)
    tag = loaded.groups["hold_edge"][1]
    length = COMM.allreduce(owned_edge_length(loaded.mesh, et, tag))
    assert_all(abs(length / (X + Z) - 1) < 1e-12, f"hold_edge length {length} vs {X + Z}")
    n_owned = loaded.mesh.topology.index_map(1).size_local
    count = COMM.allreduce(int(((et.values == tag) & (et.indices < n_owned)).sum()))
    assert_all(count == len(ref.edges), f"{count} owned tagged edges over ranks, file has {len(ref.edges)}")


@pytest.mark.mpi
def test_point_tags_count_and_place(box, loaded):
    from weldsim_hpc.backends.fenicsx.mesh_io import owned_tagged_points

    pt = loaded.point_tags
    assert_all(pt is not None and pt.dim == 0, f"point tags {pt}")
    tag = loaded.groups["corners"][1]
    local = owned_tagged_points(loaded.mesh, pt, tag)
    everywhere = np.concatenate(COMM.allgather(local))
    assert_all(len(everywhere) == 2, f"{len(everywhere)} owned tagged points over ranks")
    found = sorted(map(tuple, np.round(everywhere, 12).tolist()))
    assert_all(found == [(0.0, 0.0, 0.0), EDGE_BOX], f"points at {found}")


@pytest.mark.mpi
def test_dirichlet_dofs_on_the_edge(loaded):
    """The edge tags locate P2 dofs topologically: every dof found lies on the edge, and
    the two joined straight pieces carry n_edges + 1 vertex dofs and n_edges midside dofs
    (owned dofs, counted once over ranks)."""
    from dolfinx import fem

    mesh = loaded.mesh
    V = fem.FunctionSpace(mesh, ("Lagrange", 2))
    tag = loaded.groups["hold_edge"][1]
    edges = loaded.edge_tags.indices[loaded.edge_tags.values == tag]
    dofs = fem.locate_dofs_topological(V, 1, edges)
    x = V.tabulate_dof_coordinates()[dofs]
    X, _, Z = EDGE_BOX
    on = (np.abs(x[:, 1]) < 1e-12) & ((np.abs(x[:, 2]) < 1e-12) | (np.abs(x[:, 0] - X) < 1e-12))
    assert_all(on.all(), f"{int((~on).sum())} dofs off the edge")
    n_owned = V.dofmap.index_map.size_local
    owned = COMM.allreduce(int((dofs < n_owned).sum()))
    n_edges = COMM.allreduce(int(((loaded.edge_tags.values == tag)
                                  & (loaded.edge_tags.indices < mesh.topology.index_map(1).size_local)).sum()))
    assert_all(owned == 2 * n_edges + 1, f"{owned} owned dofs on {n_edges} edges")


@pytest.mark.mpi
def test_meshes_without_edges_have_no_edge_tags(tmp_path_factory):
    from weldsim_hpc.backends.fenicsx.mesh_io import read_mesh
    from tests.test_mesh import box_mesh

    path = on_root(lambda: str(M.write_mesh_dir(box_mesh(), tmp_path_factory.mktemp("plain") / "mesh")))
    fm = read_mesh(path, COMM)
    assert_all(fm.edge_tags is None and fm.point_tags is None and fm.entity_tags(1) is None)
