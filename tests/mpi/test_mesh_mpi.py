"""dolfinx reads our mesh dirs on 1 and 2 ranks with tags and group names intact.

Run: OMP_NUM_THREADS=1 mpirun --allow-run-as-root -n 2 .venv/bin/python -m pytest --with-mpi tests/mpi
(also meaningful with -n 1). Every assertion is collective: each rank computes its local
verdict, the verdicts are gathered, and every rank asserts the same thing, so one failing
rank cannot leave the other waiting in a collective call.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

# Importing mpi4py would break later `mpirun` launches from this process (see DESIGN.md):
# tests/conftest.py leaves tests/mpi uncollected outside an MPI launch.
import dolfinx  # noqa: E402,F401  (the set-up installs it)
from mpi4py import MPI  # noqa: E402

from weldsim_hpc import mesh as M  # noqa: E402
from weldsim_hpc.errors import MeshError  # noqa: E402
from .collective import assert_all, on_root  # noqa: E402

R, L = 0.02, 0.04  # cylinder Ø 40 mm x 40 mm; mesh size 2.5 mm -> ~50 segments on the rim
COMM = MPI.COMM_WORLD


@pytest.fixture(scope="module", params=["msh", "step"])
def cylinder(request, tmp_path_factory, msh_builder, step_builder):
    """(mesh dir, reference MeshData) from a named .msh or a STEP horn — built with gmsh
    on rank 0 only, path and data broadcast."""
    def build():
        base = tmp_path_factory.mktemp(f"cyl-{request.param}")
        if request.param == "msh":
            data = M.read_msh(msh_builder(base / "cyl.msh", "cylinder", radius=R, length=L, size=0.0025))
        else:
            data = M.read_step_horn(step_builder(base / "cyl.step", radius=R, length=L), size_m=0.0025)
        return str(M.write_mesh_dir(data, base / "mesh")), data

    return on_root(build)


@pytest.fixture(scope="module")
def loaded(cylinder):
    from weldsim_hpc.backends.fenicsx.mesh_io import read_mesh

    return read_mesh(cylinder[0], COMM)


@pytest.mark.mpi
def test_groups_and_tag_counts_intact(cylinder, loaded):
    _, ref = cylinder
    mesh, ct, ft, groups = loaded[:4]
    assert_all(groups == ref.groups, f"groups {groups}")
    assert_all(ct.dim == 3 and ft.dim == 2, f"dims {ct.dim}, {ft.dim}")
    n_cells = mesh.topology.index_map(3).size_local
    n_facets = mesh.topology.index_map(2).size_local
    owned_ct = ct.values[ct.indices < n_cells]
    owned_ft = ft.values[ft.indices < n_facets]
    # every owned cell tagged; owned tagged facets per tag add up to the file's counts
    assert_all(len(owned_ct) == n_cells, f"{len(owned_ct)} cell tags for {n_cells} owned cells")
    for name, (dim, tag) in ref.groups.items():
        local = int(((owned_ct if dim == 3 else owned_ft) == tag).sum())
        total = COMM.allreduce(local)
        expected = int(((ref.cell_tags if dim == 3 else ref.facet_tags) == tag).sum())
        assert_all(total == expected, f"{name}: {total} entities over ranks, file has {expected}")
    assert_all(COMM.allreduce(n_cells) == ref.n_cells)


@pytest.mark.mpi
def test_output_face_area(cylinder, loaded):
    from weldsim_hpc.backends.fenicsx.mesh_io import owned_facet_area

    _, ref = cylinder
    mesh, _, ft, groups = loaded[:4]
    tag = groups["output_face"][1]
    area = COMM.allreduce(owned_facet_area(mesh, ft, tag))
    exact = float(M.triangle_areas(ref.points, ref.facets[ref.facet_tags == tag]).sum())
    assert_all(abs(area / (np.pi * R**2) - 1) < 5e-3, f"output_face area {area:.6e} vs πR² {np.pi * R**2:.6e}")
    assert_all(abs(area / exact - 1) < 1e-10, f"output_face area {area} vs file {exact}")


@pytest.mark.mpi
def test_integrals_over_tags(cylinder, loaded):
    """The tags drive ufl measures: dx(horn) is the volume, ds(output_face) the face area."""
    import ufl
    from dolfinx import fem

    _, ref = cylinder
    mesh, ct, ft, groups = loaded[:4]
    one = fem.Constant(mesh, 1.0)
    dx = ufl.Measure("dx", domain=mesh, subdomain_data=ct)
    ds = ufl.Measure("ds", domain=mesh, subdomain_data=ft)
    vol = COMM.allreduce(fem.assemble_scalar(fem.form(one * dx(groups["horn"][1]))))
    area = COMM.allreduce(fem.assemble_scalar(fem.form(one * ds(groups["output_face"][1]))))
    assert_all(abs(vol / M.mesh_info(ref).volume - 1) < 1e-10, f"volume {vol}")
    assert_all(abs(vol / (np.pi * R**2 * L) - 1) < 5e-3, f"volume {vol} vs πR²L")
    assert_all(abs(area / (np.pi * R**2) - 1) < 5e-3, f"ds area {area}")


@pytest.mark.mpi(min_size=2)
def test_mesh_is_distributed(cylinder, loaded):
    mesh = loaded[0]
    owned = mesh.topology.index_map(3).size_local
    assert_all(0 < owned < cylinder[1].n_cells, f"rank owns {owned} of {cylinder[1].n_cells} cells")
    ghosts = mesh.topology.index_map(3).num_ghosts
    assert_all(ghosts > 0, "no ghost cells: the partition has no shared facets")


@pytest.mark.mpi
def test_missing_mesh_dir_fails_on_every_rank(tmp_path_factory):
    from weldsim_hpc.backends.fenicsx.mesh_io import read_mesh

    missing = COMM.bcast(str(tmp_path_factory.mktemp("nomesh")) if COMM.rank == 0 else None)
    try:
        read_mesh(missing, COMM)
        message = ""
    except MeshError as exc:
        message = str(exc)
    assert_all("mesh.xdmf: no such file" in message, f"got {message!r}")


@pytest.mark.mpi
def test_unnamed_tags_fail_on_every_rank(cylinder, tmp_path_factory):
    """groups.json that misses a tag in use: a MeshError on every rank, not a hang."""
    from weldsim_hpc.backends.fenicsx.mesh_io import read_mesh

    def corrupt():
        import json
        import shutil

        bad = tmp_path_factory.mktemp("unnamed") / "mesh"
        shutil.copytree(cylinder[0], bad)
        groups = json.loads((bad / "groups.json").read_text())
        del groups["lateral"]
        (bad / "groups.json").write_text(json.dumps(groups))
        return str(bad)

    bad = on_root(corrupt)
    try:
        read_mesh(bad, COMM)
        message = ""
    except MeshError as exc:
        message = str(exc)
    assert_all("facet tags [" in message and "not named in groups.json" in message, f"got {message!r}")


@pytest.mark.mpi
def test_dolfinx_written_dir_reads_in_numpy(cylinder, loaded, tmp_path_factory):
    """A mesh dir written by dolfinx in parallel reads back with read_mesh_dir (portal side)."""
    import shutil

    from dolfinx.io import XDMFFile

    mesh_dir, ref = cylinder
    mesh, ct, ft, _ = loaded[:4]
    out = on_root(lambda: str(tmp_path_factory.mktemp("dfx")))
    with XDMFFile(COMM, f"{out}/mesh.xdmf", "w") as xf:
        xf.write_mesh(mesh)
        xf.write_meshtags(ct)
        xf.write_meshtags(ft)

    def compare():
        shutil.copy(f"{mesh_dir}/groups.json", out)
        a, b = M.mesh_info(ref), M.mesh_info(M.read_mesh_dir(out))
        same = [(g.name, g.count) for g in a.groups] == [(g.name, g.count) for g in b.groups]
        close = all(abs(x.measure / y.measure - 1) < 1e-12 for x, y in zip(a.groups, b.groups))
        return same and close and abs(a.volume / b.volume - 1) < 1e-12, (a.groups, b.groups)

    ok, detail = on_root(compare)
    assert_all(ok, f"{detail}")
