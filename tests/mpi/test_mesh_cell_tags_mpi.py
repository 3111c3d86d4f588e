"""read_mesh's cell tags: the direct read (values indexed by the input cell index) gives the
same MeshTags as dolfinx's read_meshtags, and a layout it cannot take falls back to it.

Run: OMP_NUM_THREADS=1 mpirun --allow-run-as-root -n 2 .venv/bin/python -m pytest --with-mpi \
    tests/mpi/test_mesh_cell_tags_mpi.py   (also meaningful with -n 1)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dolfinx  # noqa: F401  (the set-up installs it)
from mpi4py import MPI

from weldsim_hpc import mesh as M
from .collective import assert_all, on_root

COMM = MPI.COMM_WORLD
Z_SPLIT = 2.0


def _write(base, relayout: bool) -> str:
    from tests.backends.scipy.meshes import box_mesh

    data = box_mesh((3, 3, 8), (1.0, 1.0, 4.0), z_split=Z_SPLIT)   # volumes 'lower' (1), 'upper' (2)
    out = M.write_mesh_dir(data, base / "mesh")
    if relayout:  # cell_tags on a topology dataset of its own: the direct read does not apply
        import h5py

        with h5py.File(out / M.MESH_H5, "a") as h5:
            h5.create_dataset("cell_tags/topology", data=h5["mesh/topology"][...])
        xdmf = out / M.MESH_XDMF
        text = xdmf.read_text()
        head, sep, tail = text.partition(f'<Grid Name="{M.GRID_CELL_TAGS}"')
        assert sep
        xdmf.write_text(head + sep + tail.replace("/mesh/topology", "/cell_tags/topology", 1))
    return str(out)


@pytest.fixture(scope="module", params=[False, True], ids=["direct", "fallback"])
def mesh_dir(request, tmp_path_factory):
    """(mesh dir, whether the cell_tags grid was moved off the mesh topology dataset)."""
    return on_root(lambda: _write(tmp_path_factory.mktemp("celltags"), request.param)), request.param


def test_cell_tags_match_read_meshtags_and_geometry(mesh_dir):
    from dolfinx.cpp.mesh import entities_to_geometry
    from dolfinx.io import XDMFFile

    from weldsim_hpc.backends.fenicsx import mesh_io

    path, relayout = mesh_dir
    xdmf = Path(path) / M.MESH_XDMF
    direct = on_root(lambda: mesh_io._grid_layout(xdmf)[1] is not None)
    assert_all(direct != relayout, f"direct read chosen: {direct}")
    fm = mesh_io.read_mesh(path, COMM)
    with XDMFFile(COMM, str(xdmf), "r") as xf:
        ref = xf.read_meshtags(fm.mesh, name=M.GRID_CELL_TAGS)
    ct = fm.cell_tags
    assert_all(ct.dim == 3 and ct.name == M.GRID_CELL_TAGS, f"dim {ct.dim}, name {ct.name}")
    assert_all(np.array_equal(ct.indices, ref.indices) and np.array_equal(ct.values, ref.values)
               and ct.values.dtype == ref.values.dtype, "cell tags differ from read_meshtags")
    imap = fm.mesh.topology.index_map(3)
    assert_all(len(ct.indices) == imap.size_local + imap.num_ghosts, "not every local cell is tagged")
    # each cell's tag is its side of the split (no cell straddles z = Z_SPLIT)
    nodes = entities_to_geometry(fm.mesh._mesh, 3, ct.indices, False)
    zc = fm.mesh.geometry.x[nodes][:, :, 2].mean(axis=1)
    assert_all(np.array_equal(ct.values, np.where(zc < Z_SPLIT, 1, 2)), "a cell tag is on the wrong side")
