"""The structured numpy mesher: valid, conforming, tagged like gmsh, volumes in closed form."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from weldsim_hpc import pipeline
from weldsim_hpc.case_io import load_case
from weldsim_hpc.errors import GeometryError
from weldsim_hpc.geometry.horns import BlockHorn, ConicalHorn, CylinderHorn, SteppedHorn
from weldsim_hpc.geometry.structured import (
    angular_segments,
    approximated_volume_m3,
    approximation_note,
    boundary_faces,
    structured_mesh,
)
from weldsim_hpc.mesh import read_mesh_dir, tet_quality, tet_volumes, triangle_areas

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STEPPED_CASE = EXAMPLES / "horn_20khz_stepped_modal.toml"
SIZE, SEGMENTS = 0.004, 64  # 64-gon: area -0.16%, inside the 0.5% tolerance
HORNS = {
    "cylinder": CylinderHorn(length_m=0.127, diameter_m=0.04),
    "block": BlockHorn(length_m=0.1, width_m=0.06, depth_m=0.02),
    "stepped": SteppedHorn(length_input_m=0.06085, length_output_m=0.06085,
                           diameter_input_m=0.04, diameter_output_m=0.02, fillet_radius_m=0.004),
}
TAGS = {"horn": (3, 1), "input_face": (2, 101), "output_face": (2, 102), "lateral": (2, 103)}


@pytest.fixture(scope="module", params=sorted(HORNS))
def meshed(request):
    horn = HORNS[request.param]
    return horn, structured_mesh(horn, size_m=SIZE, curvature_segments=SEGMENTS)


def signed_volumes(mesh):
    p = mesh.points[mesh.cells]
    return np.einsum("ij,ij->i", p[:, 1] - p[:, 0],
                     np.cross(p[:, 2] - p[:, 0], p[:, 3] - p[:, 0])) / 6


def test_positive_orientation_and_quality(meshed):
    _, mesh = meshed
    assert signed_volumes(mesh).min() > 0
    assert tet_quality(mesh.points, mesh.cells).min() > 0.1


def test_volume_matches_closed_form(meshed):
    horn, mesh = meshed
    volume = tet_volumes(mesh.points, mesh.cells).sum()
    assert volume == pytest.approx(horn.volume_m3(), rel=5e-3)
    # and exactly the solid it claims to mesh (N-gon sections, fillet as a straight ramp)
    approx = approximated_volume_m3(horn, size_m=SIZE, curvature_segments=SEGMENTS)
    assert volume == pytest.approx(approx, rel=1e-12)


def test_stepped_fillet_approximation_is_stated():
    horn = HORNS["stepped"]
    n = angular_segments(horn, SIZE, SEGMENTS)
    polygon = n * math.sin(2 * math.pi / n) / (2 * math.pi)
    approx = approximated_volume_m3(horn, size_m=SIZE, curvature_segments=SEGMENTS)
    # the ramp (a chamfer) adds the area between chord and arc, rf^2 (1/2 - (1 - pi/4)),
    # revolved about the axis: +0.35% of this horn's volume
    ramp_excess = approx / polygon / horn.volume_m3() - 1
    assert 0.003 < ramp_excess < 0.004
    note = approximation_note(horn, size_m=SIZE, curvature_segments=SEGMENTS)
    assert "64-gon" in note and "fillet" in note and "ramp" in note


def test_group_names_and_tags_as_gmsh(meshed):
    _, mesh = meshed
    assert mesh.groups == TAGS
    assert (mesh.cell_tags == 1).all()


def test_boundary_is_exactly_the_tagged_facets(meshed):
    _, mesh = meshed
    boundary = {tuple(f) for f in np.sort(boundary_faces(mesh.cells), axis=1)}
    tagged = np.sort(mesh.facets, axis=1)
    assert len({tuple(f) for f in tagged}) == len(tagged)  # each triangle in one group only
    assert {tuple(f) for f in tagged} == boundary


def test_boundary_faces_of_independent_count(meshed):
    # every interior face is shared by exactly two tets, boundary faces by one
    _, mesh = meshed
    faces = np.sort(mesh.cells[:, [[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]]].reshape(-1, 3), axis=1)
    _, counts = np.unique(faces, axis=0, return_counts=True)
    assert set(np.unique(counts)) == {1, 2}
    assert (counts == 1).sum() == len(mesh.facets)


def on_surface(horn, points):
    """Nodes on the horn's (approximated) surface: end faces, the lateral wall, the shoulder."""
    x, y, z = points.T
    tol = 1e-9
    ends = np.isclose(z, 0, atol=tol) | np.isclose(z, horn.length_m, atol=tol)
    if horn.kind == "block":
        return (ends | np.isclose(np.abs(x), horn.width_m / 2, atol=tol)
                | np.isclose(np.abs(y), horn.depth_m / 2, atol=tol))
    r = np.hypot(x, y)
    if horn.kind == "cylinder":
        return ends | np.isclose(r, horn.diameter_m / 2, atol=tol)
    r1, r2, rf, l1 = (horn.diameter_input_m / 2, horn.diameter_output_m / 2,
                      horn.fillet_radius_m, horn.length_input_m)
    wall = np.where(z < l1 - tol, r1, np.interp(z, [l1, l1 + rf], [r2 + rf, r2]))
    shoulder = np.isclose(z, l1, atol=tol) & (r >= r2 + rf - tol)
    return ends | shoulder | np.isclose(r, wall, atol=tol)


def test_conforming_every_boundary_face_is_on_the_surface(meshed):
    # a face cut differently by two neighbours would show up as two unmatched triangles
    # inside the solid; all nodes of the boundary triangles must lie on the surface
    horn, mesh = meshed
    assert on_surface(horn, mesh.points[np.unique(mesh.facets)]).all()
    # and the interior has nodes (not a hollow shell)
    assert not on_surface(horn, mesh.points).all()


def test_no_duplicate_or_unused_nodes(meshed):
    _, mesh = meshed
    assert len(np.unique(np.round(mesh.points / SIZE, 9), axis=0)) == mesh.n_nodes
    assert np.array_equal(np.unique(mesh.cells), np.arange(mesh.n_nodes))


def test_one_connected_component(meshed):
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    _, mesh = meshed
    i, j = mesh.cells[:, [0, 0, 0, 1, 1, 2]].ravel(), mesh.cells[:, [1, 2, 3, 2, 3, 3]].ravel()
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(mesh.n_nodes,) * 2)
    assert connected_components(graph, directed=False)[0] == 1


def test_end_face_areas(meshed):
    horn, mesh = meshed
    areas = {name: triangle_areas(mesh.points, mesh.facets[mesh.facet_tags == tag]).sum()
             for name, (_, tag) in TAGS.items() if name != "horn"}
    if horn.kind == "block":
        expected_in = expected_out = horn.width_m * horn.depth_m
    elif horn.kind == "cylinder":
        expected_in = expected_out = math.pi * (horn.diameter_m / 2) ** 2
    else:
        expected_in = math.pi * (horn.diameter_input_m / 2) ** 2
        expected_out = math.pi * (horn.diameter_output_m / 2) ** 2
    assert areas["input_face"] == pytest.approx(expected_in, rel=5e-3)
    assert areas["output_face"] == pytest.approx(expected_out, rel=5e-3)
    z = mesh.points[mesh.facets, 2]
    assert (z[mesh.facet_tags == 101] == 0).all()
    assert np.allclose(z[mesh.facet_tags == 102], horn.length_m)


def test_stepped_shoulder_is_lateral():
    horn = HORNS["stepped"]
    mesh = structured_mesh(horn, size_m=SIZE, curvature_segments=SEGMENTS)
    z = mesh.points[mesh.facets, 2]
    shoulder = np.isclose(z, horn.length_input_m).all(axis=1)
    assert shoulder.any() and (mesh.facet_tags[shoulder] == 103).all()
    area = triangle_areas(mesh.points, mesh.facets[shoulder]).sum()
    r1, r0 = horn.diameter_input_m / 2, horn.diameter_output_m / 2 + horn.fillet_radius_m
    assert area == pytest.approx(math.pi * (r1**2 - r0**2), rel=5e-3)


def test_unsupported_kind_is_refused():
    horn = ConicalHorn(length_m=0.1, diameter_input_m=0.04, diameter_output_m=0.02)
    with pytest.raises(GeometryError, match="conical.*gmsh"):
        structured_mesh(horn, size_m=SIZE)


def test_mesh_case_structured_on_the_stepped_example(tmp_path):
    case = load_case(STEPPED_CASE, preset="ci")
    mesh, mesh_dir = pipeline.mesh_case(case, tmp_path, mesher="structured")
    back = read_mesh_dir(mesh_dir)
    assert back.equals(mesh)
    assert set(back.groups) == set(TAGS)
    assert tet_quality(back.points, back.cells).min() > 0.1
    assert not (tmp_path / pipeline.GEOMETRY_DIR).exists()  # gmsh was not used


def test_mesh_case_without_gmsh_falls_back_or_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "gmsh_available", lambda: False)
    case = load_case(STEPPED_CASE, preset="ci")
    mesh, _ = pipeline.mesh_case(case, tmp_path / "auto")
    assert mesh.groups == TAGS
    conical = case.model_copy(update={"geometry": ConicalHorn(
        length_m=0.1, diameter_input_m=0.04, diameter_output_m=0.02)})
    with pytest.raises(GeometryError, match=r"'conical' needs gmsh.*pip install gmsh.*python3-gmsh"):
        pipeline.mesh_case(conical, tmp_path / "conical")
    with pytest.raises(GeometryError, match="gmsh is not installed"):
        pipeline.mesh_case(case, tmp_path / "gmsh", mesher="gmsh")


def test_unknown_mesher_lists_the_valid_ones(tmp_path):
    case = load_case(STEPPED_CASE, preset="ci")
    with pytest.raises(GeometryError, match="auto, gmsh, structured"):
        pipeline.mesh_case(case, tmp_path, mesher="netgen")
