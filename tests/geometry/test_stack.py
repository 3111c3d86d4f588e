"""The battery-tab weld stack: parameters, groups, and a conforming, connected mesh.

The mesh checks are the issue's bar: one connected component, no duplicated nodes, and
every interface triangle a face of a tet on both sides. `test_checks_catch_unfused_boxes`
runs the same checks on boxes that merely touch (no fragment) to show they can fail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pytest
from pydantic import ValidationError

from weldsim_hpc.geometry.model import BuiltGeometry
from weldsim_hpc.geometry.stack import FOIL_INTERFACES, TabStackParams

# small enough to mesh in about a second, thin layers included
SMALL = dict(
    anvil_width_m=8e-3, anvil_depth_m=6e-3, anvil_height_m=2e-3,
    tab_width_m=6e-3, tab_depth_m=5e-3, tab_thickness_m=0.2e-3,
    foil_width_m=4e-3, foil_depth_m=3e-3, n_foils=4, foil_thickness_m=50e-6,
    horn_tip_width_m=3e-3, horn_tip_depth_m=2e-3, horn_tip_height_m=1.5e-3,
)
SMALL_FOILS = {**SMALL, "n_foils": 3, "foil_thickness_m": 0.1e-3, "individual_foils": True}
MESH_SIZE_M = 0.6e-3


# ---- mesh helpers -------------------------------------------------------------------
@dataclass
class StackMesh:
    points: np.ndarray                    # (n, 3)
    tets: dict[str, np.ndarray]           # volume group -> (m, 4) node ids
    triangles: dict[str, np.ndarray]      # surface group -> (k, 3) node ids


def _gmsh_session(work):
    """Run `work()` in a fresh gmsh session on this (main) thread; return its result."""
    import gmsh

    gmsh.initialize()
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.model.add("stack")
        return work()
    finally:
        gmsh.finalize()


def _read(path) -> StackMesh:
    import meshio

    m = meshio.read(path)
    name_of = {(int(tag), int(dim)): name for name, (tag, dim) in m.field_data.items()}
    tets: dict[str, list] = {}
    tris: dict[str, list] = {}
    for block, phys in zip(m.cells, m.cell_data["gmsh:physical"]):
        if block.type not in ("tetra", "triangle"):
            continue
        dim, out = (3, tets) if block.type == "tetra" else (2, tris)
        for tag in np.unique(phys):
            out.setdefault(name_of[(int(tag), dim)], []).append(block.data[phys == tag])
    return StackMesh(
        points=np.asarray(m.points, dtype=float),
        tets={k: np.vstack(v) for k, v in tets.items()},
        triangles={k: np.vstack(v) for k, v in tris.items()},
    )


def _tet_volumes(points: np.ndarray, tets: np.ndarray) -> np.ndarray:
    p = points[tets]
    return np.abs(np.einsum("ij,ij->i", p[:, 1] - p[:, 0],
                            np.cross(p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]))) / 6.0


def _face_array(tets: np.ndarray) -> np.ndarray:
    """The 4 triangular faces of every tet, node ids sorted per row: (4m, 3)."""
    f = np.vstack([tets[:, [0, 1, 2]], tets[:, [0, 1, 3]], tets[:, [0, 2, 3]], tets[:, [1, 2, 3]]])
    return np.sort(f, axis=1)


def _faces(tets: np.ndarray) -> set[tuple[int, ...]]:
    """Every triangular face of the tets, as sorted node-id tuples."""
    return set(map(tuple, _face_array(tets).tolist()))


def _n_components(mesh: StackMesh) -> int:
    """Connected components of the graph tet <-> node over all used nodes."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    tets = np.vstack(list(mesh.tets.values()))
    used, local = np.unique(tets, return_inverse=True)
    local = local.reshape(tets.shape)
    n_t, n_n = len(tets), len(used)
    rows = np.repeat(np.arange(n_t), 4)
    graph = coo_matrix((np.ones(rows.size), (rows, n_t + local.ravel())), shape=(n_t + n_n,) * 2)
    n, _ = connected_components(graph, directed=False)
    return n


def _duplicate_node_pairs(mesh: StackMesh, tol: float = 1e-12) -> int:
    """Pairs of distinct nodes (used by tets) closer than `tol` metres."""
    from scipy.spatial import cKDTree

    used = np.unique(np.vstack(list(mesh.tets.values())))
    return len(cKDTree(mesh.points[used]).query_pairs(tol))


# ---- fixtures: meshed with the project's own generate() ------------------------------
def _generated(params: TabStackParams, out_dir) -> tuple[StackMesh, dict]:
    from weldsim_hpc.geometry.meshing import generate
    from weldsim_hpc.geometry.sizing import ResolvedSizes

    sizes = ResolvedSizes(MESH_SIZE_M, MESH_SIZE_M / 2, MESH_SIZE_M, optimize=False)
    files = generate(params, sizes, out_dir)
    return _read(files.msh), json.loads(files.groups_json.read_text())


@pytest.fixture(scope="module")
def homogenised(tmp_path_factory):
    import gmsh  # noqa: F401  (the set-up installs it)
    p = TabStackParams(**SMALL)
    return (p, *_generated(p, tmp_path_factory.mktemp("homogenised")))


@pytest.fixture(scope="module")
def individual(tmp_path_factory):
    import gmsh  # noqa: F401  (the set-up installs it)
    p = TabStackParams(**SMALL_FOILS)
    return (p, *_generated(p, tmp_path_factory.mktemp("individual")))


# ---- parameters and groups without gmsh ---------------------------------------------
def test_groups_and_sizes_without_gmsh():
    p = TabStackParams(**SMALL)
    assert p.groups() == {
        "anvil": 3, "tab": 3, "foil_stack": 3, "horn_tip": 3,
        "weld_interface": 2, "horn_contact": 2, "anvil_contact": 2,
        "anvil_base": 2, "horn_top": 2, "outer": 2,
    }
    assert p.length_m == pytest.approx(2e-3 + 0.2e-3 + 4 * 50e-6 + 1.5e-3)
    assert p.part_volumes_m3()["foil_stack"] == pytest.approx(4e-3 * 3e-3 * 0.2e-3)
    assert p.volume_m3() == pytest.approx(
        8e-3 * 6e-3 * 2e-3 + 6e-3 * 5e-3 * 0.2e-3 + 4e-3 * 3e-3 * 0.2e-3 + 3e-3 * 2e-3 * 1.5e-3
    )
    assert p.min_feature_m() == pytest.approx(0.2e-3)   # tab and homogenised foils
    assert np.array(p.bounding_box()) == pytest.approx(
        np.array([(-4e-3, -3e-3, 0.0), (4e-3, 3e-3, p.length_m)]))

    q = TabStackParams(**SMALL_FOILS)
    assert [n for n, d in q.groups().items() if d == 3] == [
        "anvil", "tab", "foil_01", "foil_02", "foil_03", "horn_tip"]
    assert q.groups()[FOIL_INTERFACES] == 2
    assert FOIL_INTERFACES not in TabStackParams(**{**SMALL_FOILS, "n_foils": 1}).groups()


def test_min_feature_is_the_true_thinnest_layer():
    # 150 individual foils of 25 µm: the estimate must see 25 µm, not the 3.75 mm stack
    many = TabStackParams(n_foils=150, individual_foils=True)
    assert many.min_feature_m() == pytest.approx(25e-6)
    assert TabStackParams(n_foils=150).min_feature_m() == pytest.approx(0.2e-3)  # the tab
    # a narrow footprint margin is a feature too
    narrow = TabStackParams(foil_width_m=11.9e-3)   # tab 12 mm: 50 µm strips either side
    assert narrow.min_feature_m() == pytest.approx(50e-6)


@pytest.mark.parametrize(
    "changes, names",
    [
        ({"tab_thickness_m": -0.2e-3}, ["tab_thickness_m"]),
        ({"foil_thickness_m": 0.0}, ["foil_thickness_m"]),
        ({"anvil_height_m": float("nan")}, ["anvil_height_m"]),
        ({"horn_tip_width_m": 5e-3}, ["horn_tip_width_m", "foil_width_m"]),
        ({"foil_depth_m": 5.5e-3}, ["foil_depth_m", "tab_depth_m"]),
        ({"tab_width_m": 9e-3}, ["tab_width_m", "anvil_width_m"]),
        ({"tab_width_m": 4e-3 + 1e-7}, ["foil_width_m", "tab_width_m"]),   # sliver
        ({"n_foils": 0}, ["n_foils"]),
        ({"n_foils": 201}, ["n_foils"]),
        ({"n_foils": 2.5}, ["n_foils"]),
        ({"horn_tip_height_m": 6.0}, ["horn_tip_height_m"]),   # millimetres typed as metres
        ({"foil_count": 3}, ["foil_count"]),                   # unknown keys are rejected
    ],
)
def test_bad_parameters_name_the_parameter(changes, names):
    with pytest.raises(ValidationError) as err:
        TabStackParams(**{**SMALL, **changes})
    text = str(err.value)
    for name in names:
        assert name in text


def test_equal_footprints_are_allowed_and_params_are_frozen():
    p = TabStackParams(**{**SMALL, "horn_tip_width_m": 4e-3, "horn_tip_depth_m": 3e-3})
    assert p.min_feature_m() == pytest.approx(0.2e-3)
    with pytest.raises(ValidationError):
        p.n_foils = 3
    assert TabStackParams.model_validate({"kind": "tab_stack", **SMALL}) == TabStackParams(**SMALL)


# ---- gmsh ---------------------------------------------------------------------------
@pytest.mark.gmsh
@pytest.mark.parametrize("params", [SMALL, SMALL_FOILS, {**SMALL_FOILS, "n_foils": 1}],
                         ids=["homogenised", "individual", "one_foil"])
def test_build_matches_groups(params):
    import gmsh  # noqa: F401  (the set-up installs it)
    p = TabStackParams(**params)
    built = _gmsh_session(p.build)
    assert {**{n: 3 for n in built.volumes}, **{n: 2 for n in built.surfaces}} == p.groups()
    assert all(len(tags) == 1 for tags in built.volumes.values())
    surface_tags = [t for tags in built.surfaces.values() for t in tags]
    assert all(built.surfaces[name] for name in built.surfaces)
    assert len(surface_tags) == len(set(surface_tags)), "a surface sits in two groups"
    refine = built.surfaces["weld_interface"] + built.surfaces["horn_contact"]
    assert built.refine_surfaces == refine
    assert len(built.surfaces["anvil_base"]) == len(built.surfaces["horn_top"]) == 1


@pytest.mark.gmsh
def test_many_thin_foils_fuse_into_one_volume_each():
    """The thinnest legal case: 60 individual foils of 25 µm still fuse part by part."""
    import gmsh  # noqa: F401  (the set-up installs it)
    p = TabStackParams(n_foils=60, individual_foils=True)
    built = _gmsh_session(p.build)
    assert list(built.volumes) == list(p.part_volumes_m3())
    assert len(built.surfaces[FOIL_INTERFACES]) == 59


@pytest.mark.gmsh
@pytest.mark.parametrize("fixture", ["homogenised", "individual"])
def test_every_group_is_meshed_and_volumes_match(fixture, request):
    p, mesh, groups_json = request.getfixturevalue(fixture)
    assert {name: v["dim"] for name, v in groups_json.items()} == p.groups()
    assert set(mesh.tets) | set(mesh.triangles) == set(p.groups())
    assert all(len(c) for c in mesh.tets.values()) and all(len(c) for c in mesh.triangles.values())
    expected = p.part_volumes_m3()
    measured = {name: _tet_volumes(mesh.points, t).sum() for name, t in mesh.tets.items()}
    for name, v in expected.items():
        assert measured[name] == pytest.approx(v, rel=5e-3), name
    assert sum(measured.values()) == pytest.approx(p.volume_m3(), rel=5e-3)
    lo, hi = p.bounding_box()
    assert mesh.points.min(axis=0) == pytest.approx(lo, abs=1e-12)
    assert mesh.points.max(axis=0) == pytest.approx(hi, abs=1e-12)


@pytest.mark.gmsh
@pytest.mark.parametrize("fixture", ["homogenised", "individual"])
def test_mesh_is_connected_and_conforming(fixture, request):
    p, mesh, _ = request.getfixturevalue(fixture)
    assert _n_components(mesh) == 1
    assert _duplicate_node_pairs(mesh) == 0

    faces = {name: _faces(t) for name, t in mesh.tets.items()}
    foils = [n for n in p.groups() if n == "foil_stack" or n.startswith("foil_0")]
    sides = {
        "anvil_contact": ("anvil", "tab"),
        "weld_interface": ("tab", foils[0]),
        "horn_contact": (foils[-1], "horn_tip"),
    }
    for group, (a, b) in sides.items():
        tris = set(map(tuple, np.sort(mesh.triangles[group], axis=1).tolist()))
        assert tris <= faces[a], f"{group}: a triangle is not a face of a {a} tet"
        assert tris <= faces[b], f"{group}: a triangle is not a face of a {b} tet"
    # parts share faces only across the named interfaces
    neighbours = {frozenset(pair) for pair in sides.values()}
    neighbours |= {frozenset(pair) for pair in zip(foils, foils[1:])}
    for a, b in combinations(faces, 2):
        if frozenset((a, b)) not in neighbours:
            assert not faces[a] & faces[b], f"{a} and {b} share faces"

    # the mesh boundary (faces of one tet only) is exactly anvil_base + horn_top + outer
    all_faces = np.vstack([_face_array(t) for t in mesh.tets.values()])
    uniq, n = np.unique(all_faces, axis=0, return_counts=True)
    assert n.max() == 2
    boundary = set(map(tuple, uniq[n == 1].tolist()))
    outside = set()
    for group in ("anvil_base", "horn_top", "outer"):
        outside |= set(map(tuple, np.sort(mesh.triangles[group], axis=1).tolist()))
    assert boundary == outside

    z = mesh.points[:, 2]
    assert np.allclose(z[mesh.triangles["anvil_base"]], 0.0, atol=1e-12)
    assert np.allclose(z[mesh.triangles["horn_top"]], p.length_m, atol=1e-12)


@pytest.mark.gmsh
def test_individual_foils_connect(individual):
    p, mesh, _ = individual
    assert [n for n in mesh.tets if n.startswith("foil_")] == ["foil_01", "foil_02", "foil_03"]
    faces = {name: _faces(t) for name, t in mesh.tets.items()}
    tris = set(map(tuple, np.sort(mesh.triangles[FOIL_INTERFACES], axis=1).tolist()))
    between = (faces["foil_01"] & faces["foil_02"]) | (faces["foil_02"] & faces["foil_03"])
    assert tris == between and tris
    assert not faces["foil_01"] & faces["foil_03"]
    for name in ("foil_01", "foil_02", "foil_03"):
        zs = mesh.points[mesh.tets[name], 2]
        k = int(name[-2:]) - 1
        z0 = 2e-3 + 0.2e-3 + k * 0.1e-3
        assert zs.min() == pytest.approx(z0, abs=1e-12)
        assert zs.max() == pytest.approx(z0 + 0.1e-3, abs=1e-12)


@pytest.mark.gmsh
@pytest.mark.parametrize("equal_footprints", [False, True])
def test_checks_catch_unfused_boxes(tmp_path, equal_footprints):
    """Negative control: the same boxes, touching but not fragmented, fail the checks.

    Nested footprints: no interface face is shared. Equal footprints: the touching faces
    are meshed twice, so their nodes are duplicated."""
    import gmsh

    same = {f"{part}_{axis}_m": SMALL[f"horn_tip_{axis}_m"]
            for part in ("anvil", "tab", "foil") for axis in ("width", "depth")}
    p = TabStackParams(**{**SMALL, **same}) if equal_footprints else TabStackParams(**SMALL)

    def touching_boxes():
        from weldsim_hpc.geometry.meshing import mesh_built

        occ = gmsh.model.occ
        vols = {L.name: occ.addBox(-L.width_m / 2, -L.depth_m / 2, L.z0_m,
                                   L.width_m, L.depth_m, L.thickness_m) for L in p.layers()}
        occ.synchronize()
        built = BuiltGeometry(volumes={k: [v] for k, v in vols.items()}, surfaces={})
        mesh_built(built, tmp_path / "loose.msh", size_m=MESH_SIZE_M, optimize=False)

    _gmsh_session(touching_boxes)
    mesh = _read(tmp_path / "loose.msh")
    assert _n_components(mesh) == 4
    assert not _faces(mesh.tets["tab"]) & _faces(mesh.tets["foil_stack"])
    if equal_footprints:
        assert _duplicate_node_pairs(mesh) > 0


@pytest.mark.gmsh
def test_cell_estimate_of_individual_foils_within_factor_two(tmp_path):
    """The cell guard must see the sheets of flat tetrahedra that individual foils need."""
    import meshio

    from weldsim_hpc.geometry import generate
    from weldsim_hpc.geometry.sizing import MeshSettings, estimate_cells, resolve_sizes

    p = TabStackParams(n_foils=20, individual_foils=True)
    sizes = resolve_sizes(MeshSettings(size_m=0.5e-3, refine_size_m=0.25e-3), p)
    files = generate(p, sizes, tmp_path)
    actual = sum(len(c.data) for c in meshio.read(files.msh).cells if c.type == "tetra")
    estimate = estimate_cells(p, sizes)
    assert 0.5 <= estimate / actual <= 2.0, (estimate, actual)
