"""Horn families: parameters, closed-form volumes, meshes, groups and generated files.

Meshes are small (h = 4 mm on 20 mm horns) with 64 segments per turn: a 64-gon loses
0.16% of a circle's area, well inside the 0.5% tolerance (a 36-gon would lose 0.51%).
"""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.integrate import quad

from weldsim_hpc.errors import GeometryError
from weldsim_hpc.geometry import (
    BlockHorn,
    CatenoidalHorn,
    ConicalHorn,
    CylinderHorn,
    ExponentialHorn,
    SteppedHorn,
    TabStackParams,
    generate,
    generate_in_subprocess,
    parse_geometry,
)
from weldsim_hpc.geometry import groups as g
from weldsim_hpc.geometry.sizing import ResolvedSizes

HORNS = {
    "cylinder": CylinderHorn(length_m=0.02, diameter_m=0.02),
    "block": BlockHorn(length_m=0.02, width_m=0.02, depth_m=0.01),
    "stepped": SteppedHorn(length_input_m=0.012, length_output_m=0.012, diameter_input_m=0.02,
                           diameter_output_m=0.012, fillet_radius_m=0.002),
    "conical": ConicalHorn(length_m=0.025, diameter_input_m=0.02, diameter_output_m=0.01),
    "exponential": ExponentialHorn(length_m=0.025, diameter_input_m=0.02,
                                   diameter_output_m=0.01),
    "catenoidal": CatenoidalHorn(length_m=0.025, diameter_input_m=0.02,
                                 diameter_output_m=0.01),
}
SIZES = ResolvedSizes(size_m=0.004, refine_size_m=0.002, refine_distance_m=0.004,
                      curvature_segments=64)
EXPECTED_TAGS = {g.HORN: (3, 1), g.INPUT_FACE: (2, 101), g.OUTPUT_FACE: (2, 102),
                 g.LATERAL: (2, 103)}


def profile_volume(horn) -> float:
    """pi * integral of r(z)^2, written independently of the models' closed forms."""
    if isinstance(horn, SteppedHorn):
        r1, r2, rf = horn.diameter_input_m / 2, horn.diameter_output_m / 2, horn.fillet_radius_m
        z1 = horn.length_input_m

        def r(z):
            if z < z1:
                return r1
            if z < z1 + rf:  # concave quarter circle centred at (r2 + rf, z1 + rf)
                return r2 + rf - math.sqrt(rf * rf - (z1 + rf - z) ** 2)
            return r2
        pieces = [(0, z1), (z1, z1 + rf), (z1 + rf, horn.length_m)]
        return sum(quad(lambda z: math.pi * r(z) ** 2, a, b, epsabs=0, epsrel=1e-10)[0]
                   for a, b in pieces)
    r1, r2, length = horn.diameter_input_m / 2, horn.diameter_output_m / 2, horn.length_m
    if isinstance(horn, ConicalHorn):
        r = lambda z: r1 + (r2 - r1) * z / length  # noqa: E731
    elif isinstance(horn, ExponentialHorn):
        r = lambda z: r1 * (r2 / r1) ** (z / length)  # noqa: E731
    else:  # catenoidal: r2 cosh(gamma (L - z)), cosh(gamma L) = r1 / r2
        gam = math.acosh(r1 / r2) / length
        r = lambda z: r2 * math.cosh(gam * (length - z))  # noqa: E731
    return quad(lambda z: math.pi * r(z) ** 2, 0, length, epsabs=0, epsrel=1e-10)[0]


def tet_volume(mesh) -> float:
    cells = np.concatenate([b.data for b in mesh.cells if b.type == "tetra"])
    a, b, c, d = (mesh.points[cells[:, i]] for i in range(4))
    return float(np.abs(np.einsum("ij,ij->i", np.cross(b - a, c - a), d - a)).sum() / 6)


def triangles_of(mesh, name):
    """Triangles (node index arrays) of a named surface group of a meshio mesh."""
    blocks = [b.data[idx] for b, idx in zip(mesh.cells, mesh.cell_sets[name])
              if b.type == "triangle" and len(idx)]
    return np.concatenate(blocks) if blocks else np.empty((0, 3), int)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Every horn family meshed once: kind -> (horn, GeneratedFiles)."""
    import gmsh  # noqa: F401  (the set-up installs it)
    root = tmp_path_factory.mktemp("horns")
    return {kind: (horn, generate(horn, SIZES, root / kind)) for kind, horn in HORNS.items()}


# ------------------------------------------------------------------ without gmsh

@pytest.mark.parametrize("kind", [k for k in HORNS if k not in ("cylinder", "block")])
def test_closed_form_volume_matches_profile_integral(kind):
    horn = HORNS[kind]
    assert horn.volume_m3() == pytest.approx(profile_volume(horn), rel=1e-9)


def test_simple_closed_forms():
    assert HORNS["cylinder"].volume_m3() == pytest.approx(math.pi * 0.01**2 * 0.02)
    assert HORNS["block"].volume_m3() == pytest.approx(0.02 * 0.02 * 0.01)


@pytest.mark.parametrize("kind", HORNS)
def test_groups_need_no_gmsh_and_parse_by_kind(kind):
    horn = HORNS[kind]
    assert horn.groups() == {g.HORN: 3, g.INPUT_FACE: 2, g.OUTPUT_FACE: 2, g.LATERAL: 2}
    again = parse_geometry(horn.model_dump(mode="json"))
    assert type(again) is type(horn) and again == horn


def test_union_includes_tab_stack():
    assert isinstance(parse_geometry({"kind": "tab_stack"}), TabStackParams)
    with pytest.raises(ValidationError, match="kind"):
        parse_geometry({"kind": "banana", "length_m": 0.1})


@pytest.mark.parametrize("data, field", [
    ({"kind": "cylinder", "length_m": -0.1, "diameter_m": 0.04}, "length_m"),
    ({"kind": "cylinder", "length_m": 0.1, "diameter_m": 0.0}, "diameter_m"),
    ({"kind": "block", "length_m": 0.1, "width_m": 0.04, "depth_m": float("nan")}, "depth_m"),
    ({"kind": "stepped", "length_input_m": 0.06, "length_output_m": 0.06,
      "diameter_input_m": 0.04, "diameter_output_m": 0.02, "fillet_radius_m": 0.012},
     "fillet_radius_m"),
    ({"kind": "stepped", "length_input_m": 0.06, "length_output_m": 0.003,
      "diameter_input_m": 0.04, "diameter_output_m": 0.02, "fillet_radius_m": 0.004},
     "fillet_radius_m"),
    ({"kind": "stepped", "length_input_m": 0.06, "length_output_m": 0.06,
      "diameter_input_m": 0.04, "diameter_output_m": 0.02, "fillet_radius_m": 0.0},
     "fillet_radius_m"),
    ({"kind": "stepped", "length_input_m": 0.06, "length_output_m": 0.06,
      "diameter_input_m": 0.02, "diameter_output_m": 0.04, "fillet_radius_m": 0.002},
     "diameter_output_m"),
    ({"kind": "conical", "length_m": 0.1, "diameter_input_m": 0.02, "diameter_output_m": 0.04},
     "diameter_output_m"),
    ({"kind": "exponential", "length_m": 0.1, "diameter_input_m": 0.02,
      "diameter_output_m": 0.02}, "diameter_output_m"),
    ({"kind": "catenoidal", "length_m": 0.1, "diameter_input_m": 0.02,
      "diameter_output_m": 0.03}, "diameter_output_m"),
    ({"kind": "cylinder", "length_m": 0.1, "diameter_m": 0.04, "radius_m": 0.02}, "radius_m"),
])
def test_bad_parameters_name_the_parameter(data, field):
    with pytest.raises(ValidationError) as info:
        parse_geometry(data)
    assert field in str(info.value)


def test_fillet_error_says_what_limits_it():
    with pytest.raises(ValidationError, match=r"step height .* = 0\.01"):
        SteppedHorn(length_input_m=0.06, length_output_m=0.06, diameter_input_m=0.04,
                    diameter_output_m=0.02, fillet_radius_m=0.01)


# ------------------------------------------------------------------ with gmsh

@pytest.mark.gmsh
@pytest.mark.parametrize("kind", HORNS)
def test_build_matches_parameters(kind):
    import gmsh

    horn = HORNS[kind]
    gmsh.initialize(readConfigFiles=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        built = horn.build()
        assert set(built.volumes) == {g.HORN} and built.refine_surfaces == \
            built.surfaces[g.OUTPUT_FACE]
        (vol,) = built.volumes[g.HORN]
        assert gmsh.model.occ.getMass(3, vol) == pytest.approx(horn.volume_m3(), rel=1e-6)
        box = np.array(gmsh.model.getBoundingBox(3, vol)).reshape(2, 3)
        np.testing.assert_allclose(box, horn.bounding_box(), atol=1e-6)
        assert len(gmsh.model.getEntities(2)) == sum(map(len, built.surfaces.values()))
        mass = lambda name: sum(gmsh.model.occ.getMass(2, t) for t in built.surfaces[name])  # noqa
        assert mass(g.OUTPUT_FACE) == pytest.approx(horn.refine_area_m2(), rel=1e-6)
    finally:
        gmsh.finalize()


@pytest.mark.gmsh
@pytest.mark.parametrize("kind", HORNS)
def test_mesh_volume_matches_closed_form(generated, kind):
    import meshio as meshio
    horn, files = generated[kind]
    mesh = meshio.read(files.msh)
    assert tet_volume(mesh) == pytest.approx(horn.volume_m3(), rel=5e-3)


@pytest.mark.gmsh
@pytest.mark.parametrize("kind", HORNS)
def test_named_groups_in_msh_and_groups_json(generated, kind):
    import meshio as meshio
    horn, files = generated[kind]
    for path in (files.step, files.stl, files.msh, files.groups_json):
        assert path.is_file() and path.stat().st_size > 0 and path.parent.name == kind
    mesh = meshio.read(files.msh)
    groups = json.loads(files.groups_json.read_text())
    assert {k: (v["dim"], v["tag"]) for k, v in groups.items()} == EXPECTED_TAGS
    assert {k: (int(v[1]), int(v[0])) for k, v in mesh.field_data.items()} == EXPECTED_TAGS
    for name in horn.groups():
        assert sum(len(i) for i in mesh.cell_sets[name]) > 0, name
    z = mesh.points[:, 2]
    assert np.allclose(z[triangles_of(mesh, g.INPUT_FACE)], 0.0, atol=1e-9)
    assert np.allclose(z[triangles_of(mesh, g.OUTPUT_FACE)], horn.length_m, atol=1e-9)
    tri = mesh.points[triangles_of(mesh, g.OUTPUT_FACE)]
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum() / 2
    assert area == pytest.approx(horn.refine_area_m2(), rel=5e-3)


@pytest.mark.gmsh
def test_generate_refuses_off_the_main_thread_and_subprocess_works(tmp_path):
    horn = CylinderHorn(length_m=0.02, diameter_m=0.01)
    coarse = ResolvedSizes(0.005, 0.005, 0.005, curvature_segments=16)
    outcome = {}

    def worker():
        try:
            generate(horn, coarse, tmp_path / "thread")
        except GeometryError as exc:
            outcome["error"] = str(exc)
        try:
            outcome["files"] = generate_in_subprocess(horn, coarse, tmp_path / "sub")
        except Exception as exc:  # reported by the asserts below
            outcome["files"] = exc

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(120)
    assert "main thread" in outcome["error"]
    files = outcome["files"]
    assert not isinstance(files, Exception), files
    assert files.msh == (tmp_path / "sub" / "geometry.msh").resolve() and files.msh.is_file()
    assert json.loads(files.groups_json.read_text())[g.OUTPUT_FACE] == {"dim": 2, "tag": 102}


@pytest.mark.gmsh
def test_subprocess_reraises_domain_errors(tmp_path):
    horn = CylinderHorn(length_m=0.5, diameter_m=0.2)
    with pytest.raises(Exception, match="exceed the limit") as info:
        generate_in_subprocess(horn, ResolvedSizes(0.001, 0.001, 0.001), tmp_path)
    assert type(info.value).__name__ == "MeshError"


def test_generate_rejects_a_stem_with_a_path():
    with pytest.raises(GeometryError, match="stem"):
        generate(HORNS["cylinder"], SIZES, "/tmp/unused", stem="../evil")
