"""weldsim_hpc.mesh: reading .msh, writing/reading mesh dirs, mesh info, bad inputs.

Meshes without gmsh are built in numpy and written as msh 2.2 by meshio; gmsh-made
meshes (msh 4.1) come from the `msh_builder` fixture. dolfinx runs in a subprocess only:
a pytest process that imported mpi4py could no longer launch mpirun for other tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from weldsim_hpc import mesh as M
from weldsim_hpc.errors import MeshError

ROOT = Path(__file__).resolve().parents[1]
R, L = 0.02, 0.04  # test cylinder: Ø 40 mm, 40 mm long


# ------------------------------------------------------------------ numpy-made meshes


def box_mesh(n=(3, 2, 2), size=(0.03, 0.02, 0.01)):
    """Structured box of n cubes, each split into 6 tets (Kuhn); groups horn/bottom/top/sides."""
    axes = [np.linspace(0, s, k + 1) for s, k in zip(size, n)]
    X, Y, Z = np.meshgrid(*axes, indexing="ij")
    pts = np.column_stack([X.ravel(), Y.ravel(), Z.ravel()])
    idx = np.arange(len(pts)).reshape(tuple(k + 1 for k in n))
    i, j, k = (a.ravel() for a in np.meshgrid(*[np.arange(k) for k in n], indexing="ij"))
    v = [idx[i + a, j + b, k + c] for a, b, c in
         [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)]]
    kuhn = [(0, 1, 2, 6), (0, 2, 3, 6), (0, 3, 7, 6), (0, 7, 4, 6), (0, 4, 5, 6), (0, 5, 1, 6)]
    cells = np.concatenate([np.column_stack([v[a] for a in t]) for t in kuhn])
    faces = np.sort(cells[:, [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]].reshape(-1, 3), axis=1)
    uniq, cnt = np.unique(faces, axis=0, return_counts=True)
    bnd = uniq[cnt == 1]
    z = pts[bnd][:, :, 2]
    tags = np.where((z == 0).all(1), 1, np.where((z == size[2]).all(1), 2, 3))
    groups = {"horn": (3, 1), "input_face": (2, 1), "output_face": (2, 2), "lateral": (2, 3)}
    return M.MeshData(pts, cells, np.ones(len(cells)), bnd, tags, groups)


def write_msh22(path, points, blocks, field_data):
    """blocks: [(type, cells, physical tags)] -> msh 2.2 via meshio (no gmsh needed)."""
    import meshio

    cells = [(t, np.asarray(c)) for t, c, _ in blocks]
    data = {"gmsh:physical": [np.asarray(p) for _, _, p in blocks],
            "gmsh:geometrical": [np.ones(len(c), int) for _, c, _ in blocks]}
    fd = {k: np.array(v) for k, v in field_data.items()}
    meshio.Mesh(points, cells, cell_data=data, field_data=fd).write(path, file_format="gmsh22", binary=False)
    return Path(path)


def box_msh22(path, **kw):
    b = box_mesh(**kw)
    return write_msh22(path, b.points, [("tetra", b.cells, b.cell_tags), ("triangle", b.facets, b.facet_tags)],
                       {n: [t, d] for n, (d, t) in b.groups.items()}), b


def regular_tet():
    return np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float), np.array([[0, 1, 2, 3]])


# ------------------------------------------------------------------ import hygiene


def test_import_needs_neither_dolfinx_nor_gmsh():
    code = ("import sys, weldsim_hpc.mesh, weldsim_hpc.backends.fenicsx.mesh_io\n"
            "bad = [m for m in ('dolfinx', 'gmsh', 'mpi4py', 'petsc4py', 'meshio', 'h5py') if m in sys.modules]\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# ------------------------------------------------------------------ round trips


def test_msh22_round_trip_without_gmsh(tmp_path):
    path, ref = box_msh22(tmp_path / "box.msh")
    data = M.read_msh(path)
    assert data.groups == ref.groups
    assert data.n_cells == ref.n_cells and len(data.facets) == len(ref.facets)
    out = M.write_mesh_dir(data, tmp_path / "mesh")
    assert sorted(p.name for p in out.iterdir()) == ["groups.json", "mesh.h5", "mesh.xdmf"]
    assert M.read_mesh_dir(out).equals(data)
    assert M.read_mesh_dir(out / "mesh.xdmf").digest() == data.digest()
    assert json.loads((out / "groups.json").read_text())["output_face"] == {"dim": 2, "tag": 2}


@pytest.mark.gmsh
def test_gmsh_msh41_round_trip(tmp_path, msh_builder):
    path = msh_builder(tmp_path / "cyl.msh", "cylinder", radius=R, length=L, size=0.005)
    data = M.read_msh(path)
    assert set(data.groups) == {"horn", "input_face", "output_face", "lateral"}
    assert data.groups["horn"][0] == 3 and data.groups["output_face"][0] == 2
    assert set(np.unique(data.facet_tags)) == {t for d, t in data.groups.values() if d == 2}
    assert np.array_equal(np.unique(data.cells), np.arange(data.n_nodes))  # no stray nodes
    out = M.write_mesh_dir(data, tmp_path / "run" / "mesh")
    back = M.read_mesh_dir(out)
    assert back.equals(data) and back.digest() == data.digest()
    assert M.read_msh_group_names(path) == {"horn": 3, "input_face": 2, "output_face": 2, "lateral": 2}
    # rewriting over an existing mesh dir replaces it
    M.write_mesh_dir(box_mesh(), out)
    assert M.read_mesh_dir(out).equals(box_mesh())


def test_failed_write_leaves_no_half_mesh(tmp_path, monkeypatch):
    good = box_mesh()
    existing = M.write_mesh_dir(good, tmp_path / "old")

    def boom(_mesh):
        raise RuntimeError("disk full")

    monkeypatch.setattr(M, "_xdmf_text", boom)
    with pytest.raises(RuntimeError):
        M.write_mesh_dir(box_mesh(n=(1, 1, 1)), tmp_path / "new")
    assert not (tmp_path / "new").exists()
    with pytest.raises(RuntimeError):
        M.write_mesh_dir(box_mesh(n=(1, 1, 1)), existing)
    assert sorted(p.name for p in existing.iterdir()) == ["groups.json", "mesh.h5", "mesh.xdmf"]
    assert M.read_mesh_dir(existing).equals(good)


@pytest.mark.gmsh
def test_step_horn_grouped_and_in_metres(tmp_path, step_builder):
    step = step_builder(tmp_path / "horn.step", radius=R, length=L)
    assert b"MILLI" in step.read_bytes()  # the file is in mm, the mesh must come out in m
    data = M.read_mesh_file(step, size_m=0.0025)
    assert set(data.groups) == {"horn", "input_face", "output_face", "lateral"}
    info = M.mesh_info(data)
    assert info.bbox_min == pytest.approx((-R, -R, 0), abs=1e-6)
    assert info.bbox_max == pytest.approx((R, R, L), abs=1e-6)
    g = {x.name: x for x in info.groups}
    for face in ("input_face", "output_face"):
        assert g[face].measure == pytest.approx(np.pi * R**2, rel=5e-3)
    assert g["lateral"].measure == pytest.approx(2 * np.pi * R * L, rel=5e-3)
    out = M.write_mesh_dir(data, tmp_path / "mesh")
    assert M.read_mesh_dir(out).equals(data)


@pytest.mark.gmsh
def test_bad_step_files(tmp_path, step_builder):
    from weldsim_hpc.errors import GeometryError

    bad = tmp_path / "bad.step"
    bad.write_text("ISO-10303-21;\nHEADER;\ngarbage\n")
    with pytest.raises(GeometryError, match=r"bad\.step"):
        M.read_step_horn(bad)
    ball = step_builder(tmp_path / "ball.step", sphere=True)
    with pytest.raises(GeometryError, match="no planar end face"):
        M.read_step_horn(ball)


# ------------------------------------------------------------------ info


def test_info_box_exact():
    b = box_mesh(n=(3, 2, 2), size=(0.03, 0.02, 0.01))
    info = M.mesh_info(b)
    assert info.volume == pytest.approx(0.03 * 0.02 * 0.01, rel=1e-12)
    assert info.bbox_min == (0.0, 0.0, 0.0) and info.bbox_max == pytest.approx((0.03, 0.02, 0.01))
    assert (info.n_nodes, info.n_cells, info.element_type) == (4 * 3 * 3, 72, "tetra")
    assert 0 < info.quality_min <= info.quality_mean <= info.quality_max <= 1
    g = {x.name: x for x in info.groups}
    assert g["output_face"].measure == pytest.approx(0.03 * 0.02, rel=1e-12)
    assert g["output_face"].count == 2 * 3 * 2 and g["horn"].count == 72
    assert g["lateral"].measure == pytest.approx(2 * (0.03 + 0.02) * 0.01, rel=1e-12)
    rows = info.as_rows()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in rows)
    labels = [k for k, _ in rows]
    assert "volume [m³]" in labels and any("output_face" in k for k in labels)
    json.dumps(info.as_dict())


def test_quality_regular_and_degenerate():
    pts, cells = regular_tet()
    assert M.tet_quality(pts, cells)[0] == pytest.approx(1.0, abs=1e-12)
    flat = pts.copy()
    flat[3] = (pts[0] + pts[1] + pts[2]) / 3  # all four in one plane
    assert M.tet_quality(flat, cells)[0] == pytest.approx(0.0, abs=1e-12)
    sliver = pts.copy()
    sliver[3] = (pts[0] + pts[1] + pts[2]) / 3 + 1e-3 * np.array([-1, -1, 1])
    assert 0 < M.tet_quality(sliver, cells)[0] < 0.05
    assert M.tet_volumes(pts, cells)[0] == pytest.approx(8 / 3)


@pytest.mark.gmsh
def test_info_cylinder(tmp_path, msh_builder):
    data = M.read_msh(msh_builder(tmp_path / "cyl.msh", "cylinder", radius=R, length=L, size=0.0025))
    info = M.mesh_info(data)
    assert info.volume == pytest.approx(np.pi * R**2 * L, rel=5e-3)
    assert info.bbox_min == pytest.approx((-R, -R, 0), abs=1e-4)
    assert info.bbox_max == pytest.approx((R, R, L), abs=1e-4)
    assert 0 < info.quality_min and info.quality_max <= 1
    g = {x.name: x for x in info.groups}
    assert g["output_face"].measure == pytest.approx(np.pi * R**2, rel=5e-3)
    assert g["input_face"].measure == pytest.approx(np.pi * R**2, rel=5e-3)
    assert g["lateral"].measure == pytest.approx(2 * np.pi * R * L, rel=5e-3)
    assert g["horn"].count == info.n_cells
    assert sum(x.count for x in info.groups if x.dim == 2) == info.n_facets


# ------------------------------------------------------------------ bad inputs


def test_random_bytes_msh(tmp_path):
    path = tmp_path / "noise.msh"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(MeshError, match=r"noise\.msh: unreadable gmsh \.msh file"):
        M.read_msh(path)
    with pytest.raises(MeshError, match="noise.msh"):
        M.read_msh_group_names(path)


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_truncated_msh(tmp_path, fraction):
    path, _ = box_msh22(tmp_path / "box.msh")
    raw = path.read_bytes()
    cut = tmp_path / "cut.msh"
    cut.write_bytes(raw[: int(len(raw) * fraction)])
    with pytest.raises(MeshError, match=r"cut\.msh: "):
        M.read_msh(cut)


@pytest.mark.gmsh
@pytest.mark.parametrize("binary", [False, True])
def test_truncated_gmsh_msh41(tmp_path, msh_builder, binary):
    path = msh_builder(tmp_path / "cyl.msh", "cylinder", size=0.006, binary=binary)
    assert M.read_msh(path).n_cells > 0
    raw = path.read_bytes()
    for fraction in (0.2, 0.5, 0.95):
        cut = tmp_path / "cut.msh"
        cut.write_bytes(raw[: int(len(raw) * fraction)])
        with pytest.raises(MeshError, match=r"cut\.msh: unreadable gmsh \.msh file — corrupt, truncated"):
            M.read_msh(cut)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(MeshError, match="no such file"):
        M.read_msh(tmp_path / "nope.msh")
    (tmp_path / "empty.msh").write_bytes(b"")
    with pytest.raises(MeshError, match="empty file"):
        M.read_msh(tmp_path / "empty.msh")
    with pytest.raises(MeshError, match="unknown mesh format"):
        M.read_mesh_file(tmp_path / "horn.stl")


def test_facet_in_two_groups_msh22(tmp_path):
    b = box_mesh()
    top = b.facets[b.facet_tags == 2]
    path = write_msh22(tmp_path / "two.msh", b.points,
                       [("tetra", b.cells, b.cell_tags), ("triangle", b.facets, b.facet_tags),
                        ("triangle", top, np.full(len(top), 3))],
                       {"horn": [1, 3], "input_face": [1, 2], "output_face": [2, 2], "lateral": [3, 2]})
    with pytest.raises(MeshError, match=rf"two\.msh: {len(top)} facets belong to two surface groups "
                                        r".*'output_face' and 'lateral'"):
        M.read_msh(path)


@pytest.mark.gmsh
def test_facet_in_two_groups_gmsh(tmp_path, msh_builder):
    path = msh_builder(tmp_path / "two.msh", "box", size=0.005, overlap=True)
    with pytest.raises(MeshError, match=r"two\.msh: \d+ facets belong to two surface groups.*'output_face'.*'lateral'"):
        M.read_msh(path)


@pytest.mark.gmsh
def test_no_physical_names_gmsh(tmp_path, msh_builder):
    path = msh_builder(tmp_path / "plain.msh", "box", size=0.005, named=False)
    with pytest.raises(MeshError, match=r"plain\.msh: no physical names"):
        M.read_msh(path)
    with pytest.raises(MeshError, match=r"plain\.msh: no physical names"):
        M.read_msh_group_names(path)


def test_no_physical_names_msh22(tmp_path):
    b = box_mesh()
    path = write_msh22(tmp_path / "plain.msh", b.points, [("tetra", b.cells, np.zeros(len(b.cells), int))], {})
    with pytest.raises(MeshError, match="no physical names"):
        M.read_msh(path)


def test_hexahedral_mesh_rejected(tmp_path):
    pts = np.array([[x, y, z] for z in (0, 1) for y in (0, 1) for x in (0, 1)], float)
    hexa = np.array([[0, 1, 3, 2, 4, 5, 7, 6]])
    path = write_msh22(tmp_path / "hex.msh", pts, [("hexahedron", hexa, [1])], {"block": [1, 3]})
    with pytest.raises(MeshError, match=r"hex\.msh: hexahedral mesh is not supported yet.*1 hexahedron"):
        M.read_msh(path)


def test_quadratic_tets_rejected(tmp_path):
    pts, cells = regular_tet()
    mids = np.array([(pts[a] + pts[b]) / 2 for a, b in [(0, 1), (1, 2), (0, 2), (0, 3), (2, 3), (1, 3)]])
    path = write_msh22(tmp_path / "t10.msh", np.vstack([pts, mids]),
                       [("tetra10", np.arange(10)[None], [1])], {"horn": [1, 3]})
    with pytest.raises(MeshError, match=r"quadratic tetrahedral \(tetra10\) mesh is not supported"):
        M.read_msh(path)


def test_surface_only_mesh_rejected(tmp_path):
    b = box_mesh()
    path = write_msh22(tmp_path / "skin.msh", b.points, [("triangle", b.facets, b.facet_tags)],
                       {"input_face": [1, 2], "output_face": [2, 2], "lateral": [3, 2]})
    with pytest.raises(MeshError, match=r"skin\.msh: no tetrahedra \(found \d+ triangle\)"):
        M.read_msh(path)


def test_untagged_and_unnamed_tets_rejected(tmp_path):
    b = box_mesh()
    tags = np.ones(len(b.cells), int)
    tags[:5] = 0
    path = write_msh22(tmp_path / "partly.msh", b.points, [("tetra", b.cells, tags)], {"horn": [1, 3]})
    with pytest.raises(MeshError, match="5 of 72 tetrahedra belong to no named physical volume"):
        M.read_msh(path)
    tags[:5] = 7
    path = write_msh22(tmp_path / "unnamed.msh", b.points, [("tetra", b.cells, tags)], {"horn": [1, 3]})
    with pytest.raises(MeshError, match=r"physical volume tag\(s\) \[7\] have no name"):
        M.read_msh(path)


@pytest.mark.parametrize("key_limit", [M._KEY_LIMIT, 0])  # 0: the row-unique path of huge meshes
def test_facet_off_the_volume_rejected(tmp_path, monkeypatch, key_limit):
    monkeypatch.setattr(M, "_KEY_LIMIT", key_limit)
    b = box_mesh()
    bad = np.array([[0, b.n_nodes - 1, b.n_nodes // 2]])  # a triangle through the box
    path = write_msh22(tmp_path / "stray.msh", b.points,
                       [("tetra", b.cells, b.cell_tags), ("triangle", bad, [2])],
                       {"horn": [1, 3], "cut": [2, 2]})
    with pytest.raises(MeshError, match=r"1 tagged triangles \(groups \['cut'\]\) are not faces"):
        M.read_msh(path)


def test_meshdata_validation():
    b = box_mesh()
    with pytest.raises(MeshError, match=r"cells carry tags \[9\]"):
        M.MeshData(b.points, b.cells, np.full(b.n_cells, 9), b.facets, b.facet_tags, b.groups)
    with pytest.raises(MeshError, match="outside"):
        M.MeshData(b.points, b.cells + 1000, b.cell_tags, b.facets, b.facet_tags, b.groups)
    with pytest.raises(MeshError, match="share dim 2, tag 1"):
        M.MeshData(b.points, b.cells, b.cell_tags, b.facets, b.facet_tags, {**b.groups, "dup": (2, 1)})
    assert not b.points.flags.writeable
    assert b.tag("output_face") == 2 and b.tag("horn", dim=3) == 1
    with pytest.raises(MeshError, match=r"no surface group 'horn' \(it has: input_face, lateral, output_face\)"):
        b.tag("horn", dim=2)
    assert b.group_names(2) == ["input_face", "output_face", "lateral"]


def test_bad_mesh_dirs(tmp_path):
    with pytest.raises(MeshError, match="mesh.xdmf: no such file"):
        M.read_mesh_dir(tmp_path)
    out = M.write_mesh_dir(box_mesh(), tmp_path / "m")
    (out / "groups.json").write_text("{not json")
    with pytest.raises(MeshError, match="groups.json: invalid groups file"):
        M.read_mesh_dir(out)
    M.write_mesh_dir(box_mesh(), out)
    (out / "mesh.h5").write_bytes(b"garbage")
    with pytest.raises(MeshError, match=r"mesh\.h5: cannot read dataset"):
        M.read_mesh_dir(out)


# ------------------------------------------------------------------ dolfinx (1 rank, subprocess)


@pytest.mark.dolfinx
def test_dolfinx_reads_mesh_dir_one_rank(tmp_path):
    import dolfinx  # noqa: F401  (the set-up installs it)
    b = box_mesh(n=(4, 3, 2))
    out = M.write_mesh_dir(b, tmp_path / "mesh")
    code = textwrap.dedent(f"""
        import json, numpy as np
        from mpi4py import MPI
        from weldsim_hpc.backends.fenicsx.mesh_io import read_mesh, owned_facet_area
        m, ct, ft, groups = read_mesh({str(out)!r}, MPI.COMM_WORLD)[:4]
        print(json.dumps({{"cells": m.topology.index_map(3).size_local,
                          "ctags": np.unique(ct.values).tolist(), "nct": len(ct.indices),
                          "nft": len(ft.indices), "groups": groups,
                          "area": owned_facet_area(m, ft, groups["output_face"][1])}}))
    """)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["cells"] == res["nct"] == b.n_cells and res["ctags"] == [1]
    assert res["nft"] == len(b.facets)
    assert {k: tuple(v) for k, v in res["groups"].items()} == b.groups
    assert res["area"] == pytest.approx(0.03 * 0.02, rel=1e-12)


# ------------------------------------------------------------------ edge and point groups

EDGE_BOX = (0.03, 0.02, 0.01)  # box for the edge/point groups: x 30 mm, y 20 mm, z 10 mm


def build_box_with_edge_groups(path, *, version: float = 4.1, size: float = 0.004) -> Path:
    """gmsh box with groups block (3), bottom (2), hold_edge (1: the edges y=0,z=0 and
    x=X,y=0 — 40 mm long) and corners (0: (0,0,0) and (X,Y,Z)). Call on one rank only."""
    import gmsh

    X, Y, Z = EDGE_BOX
    gmsh.initialize()
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.model.add("edges")
        vol = gmsh.model.occ.addBox(0, 0, 0, X, Y, Z)
        gmsh.model.occ.synchronize()

        def entities(dim, lo, hi):
            eps = 1e-6  # OCC bounding boxes carry a ~1e-7 m tolerance
            return [t for _, t in gmsh.model.getEntitiesInBoundingBox(
                lo[0] - eps, lo[1] - eps, lo[2] - eps, hi[0] + eps, hi[1] + eps, hi[2] + eps, dim)]

        groups = [(3, [vol], "block"), (2, entities(2, (0, 0, 0), (X, Y, 0)), "bottom"),
                  (1, entities(1, (0, 0, 0), (X, 0, 0)) + entities(1, (X, 0, 0), (X, 0, Z)), "hold_edge"),
                  (0, entities(0, (0, 0, 0), (0, 0, 0)) + entities(0, (X, Y, Z), (X, Y, Z)), "corners")]
        for dim, tags, name in groups:
            assert tags, name
            gmsh.model.setPhysicalName(dim, gmsh.model.addPhysicalGroup(dim, tags, 10 + dim), name)
        gmsh.option.setNumber("Mesh.MeshSizeMax", size)
        gmsh.model.mesh.generate(3)
        gmsh.option.setNumber("Mesh.MshFileVersion", version)
        gmsh.write(str(path))
    finally:
        gmsh.finalize()
    return Path(path)


def _old_digest(m: M.MeshData) -> str:
    """The digest formula from before edge/point groups existed (five arrays + groups)."""
    import hashlib

    h = hashlib.sha256()
    for a in ("points", "cells", "cell_tags", "facets", "facet_tags"):
        arr = getattr(m, a)
        h.update(f"{a}{arr.dtype.str}{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(json.dumps(sorted(m.groups.items())).encode())
    return h.hexdigest()


@pytest.mark.gmsh
@pytest.mark.parametrize("version", [4.1, 2.2])
def test_edge_and_point_groups_round_trip(tmp_path, version):
    X, Y, Z = EDGE_BOX
    path = build_box_with_edge_groups(tmp_path / "box.msh", version=version)
    assert M.read_msh_group_names(path) == {"block": 3, "bottom": 2, "hold_edge": 1, "corners": 0}
    data = M.read_msh(path)
    assert data.groups == {"block": (3, 13), "bottom": (2, 12), "hold_edge": (1, 11), "corners": (0, 10)}
    assert data.edges.shape[1] == 2 and len(data.edges) >= 10 and set(data.edge_tags) == {11}
    p = data.points
    on_edge = ((np.abs(p[data.edges][:, :, 1]) < 1e-12)
               & ((np.abs(p[data.edges][:, :, 2]) < 1e-12) | (np.abs(p[data.edges][:, :, 0] - X) < 1e-12)))
    assert on_edge.all()
    assert M.edge_lengths(p, data.edges).sum() == pytest.approx(X + Z, rel=1e-12)
    assert sorted(map(tuple, p[data.vertices].tolist())) == [(0.0, 0.0, 0.0), (X, Y, Z)]
    assert np.array_equal(data.vertex_tags, [10, 10])

    out = M.write_mesh_dir(data, tmp_path / "mesh")
    xdmf = (out / "mesh.xdmf").read_text()
    assert 'Name="edge_tags"' in xdmf and 'TopologyType="Polyline"' in xdmf
    assert 'Name="point_tags"' in xdmf and 'TopologyType="Polyvertex"' in xdmf
    back = M.read_mesh_dir(out)
    assert back.equals(data) and back.digest() == data.digest()
    assert data.digest() != _old_digest(data)  # edges and points count when present
    assert json.loads((out / "groups.json").read_text())["hold_edge"] == {"dim": 1, "tag": 11}

    info = {g.name: g for g in M.mesh_info(back).groups}
    assert info["hold_edge"].dim == 1 and info["hold_edge"].measure == pytest.approx(X + Z, rel=1e-12)
    assert info["corners"].count == 2 and info["bottom"].measure == pytest.approx(X * Y, rel=1e-12)
    rows = dict(M.mesh_info(back).as_rows())
    assert "edge 'hold_edge' (tag 11)" in rows and rows["point 'corners' (tag 10)"] == "2 nodes"


def test_meshes_without_edge_groups_keep_layout_and_digest(tmp_path):
    b = box_mesh()
    assert b.digest() == _old_digest(b)
    out = M.write_mesh_dir(b, tmp_path / "mesh")
    assert "edge_tags" not in (out / "mesh.xdmf").read_text()
    assert "point_tags" not in (out / "mesh.xdmf").read_text()
    back = M.read_mesh_dir(out)
    assert back.edges.shape == (0, 2) and back.vertices.shape == (0,)
    assert back.digest() == b.digest()


def test_edge_and_point_tags_validated():
    b = box_mesh()
    groups = {**b.groups, "e": (1, 5), "p": (0, 5)}
    ok = M.MeshData(b.points, b.cells, b.cell_tags, b.facets, b.facet_tags, groups,
                    b.cells[:2, :2], [5, 5], [0, 1], [5, 5])
    assert len(ok.edges) == 2 and ok.group_names(1) == ["e"] and ok.tag("p", 0) == 5
    with pytest.raises(MeshError, match="edges carry tags \\[6\\] that no edge group names"):
        M.MeshData(b.points, b.cells, b.cell_tags, b.facets, b.facet_tags, groups, b.cells[:1, :2], [6])
    with pytest.raises(MeshError, match="vertices refer to nodes outside"):
        M.MeshData(b.points, b.cells, b.cell_tags, b.facets, b.facet_tags, groups, vertices=[10**6], vertex_tags=[5])
    with pytest.raises(MeshError, match="no edge group 'x'"):
        ok.tag("x", 1)


@pytest.mark.gmsh
def test_displacement_may_hold_an_edge_but_pressure_may_not(tmp_path):
    """check_groups: fixed/displacement accept surface, edge and point groups; the others
    need a surface, and the message names the index and the group's dimension."""
    from weldsim_hpc.case import CaseSpec
    from weldsim_hpc.case_checks import check_groups

    path = build_box_with_edge_groups(tmp_path / "box.msh")
    data = {
        "name": "edge groups",
        "analysis": "static_structural",
        "geometry": {"kind": "mesh_file", "path": str(path)},
        "materials": {"block": "ti6al4v"},
        "boundary_conditions": [
            {"boundary": "hold_edge", "type": "displacement", "value": [None, None, 0.0]},
            {"boundary": "corners", "type": "fixed"},
            {"boundary": "bottom", "type": "pressure", "value": 1e6},
            {"boundary": "hold_edge", "type": "pressure", "value": 1e6},
            {"boundary": "block", "type": "fixed"},
            {"boundary": "hold_edeg", "type": "fixed"},
        ],
    }
    case = CaseSpec.model_validate(data)
    problems = dict(check_groups(case, case.geometry.groups()))
    assert set(problems) == {f"boundary_conditions[{i}].boundary" for i in (3, 4, 5)}, problems
    assert "'hold_edge' is an edge group (dim 1)" in problems["boundary_conditions[3].boundary"]
    assert "needs a surface group (dim 2)" in problems["boundary_conditions[3].boundary"]
    assert "'block' is a volume group (dim 3)" in problems["boundary_conditions[4].boundary"]
    assert "unknown boundary 'hold_edeg'" in problems["boundary_conditions[5].boundary"]
    assert "did you mean 'hold_edge'" in problems["boundary_conditions[5].boundary"]
