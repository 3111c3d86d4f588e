"""STEP files: correct units on export, metres on import, automatic horn groups."""

from __future__ import annotations

import re

import numpy as np
import pytest

from weldsim_hpc.errors import GeometryError, MeshError
from weldsim_hpc.geometry import groups as g
from weldsim_hpc.geometry import import_step_horn, write_step
from weldsim_hpc.geometry.meshing import mesh_built

from .test_horns import HORNS

pytestmark = pytest.mark.gmsh


@pytest.fixture
def session():
    """A fresh gmsh session in this (main) thread, finalised afterwards."""
    import gmsh as gmsh
    gmsh.initialize(readConfigFiles=False)
    gmsh.option.setNumber("General.Terminal", 0)
    try:
        yield gmsh
    finally:
        gmsh.finalize()


def _export(gmsh, horn, path):
    gmsh.model.add("export")
    horn.build()
    write_step(path)
    gmsh.model.remove()
    gmsh.model.add("import")


@pytest.mark.parametrize("kind", HORNS)
def test_step_round_trip_in_metres(session, tmp_path, kind):
    gmsh, horn = session, HORNS[kind]
    path = tmp_path / f"{kind}.step"
    _export(gmsh, horn, path)
    built = import_step_horn(path)
    (vol,) = built.volumes[g.HORN]
    box = np.array(gmsh.model.getBoundingBox(3, vol)).reshape(2, 3)
    np.testing.assert_allclose(box, horn.bounding_box(), rtol=0, atol=1e-6)
    assert gmsh.model.occ.getMass(3, vol) == pytest.approx(horn.volume_m3(), rel=5e-3)
    assert gmsh.option.getString("Geometry.OCCTargetUnit") == "M"


def test_step_declares_millimetres_with_millimetre_numbers(session, tmp_path):
    horn = HORNS["stepped"]                      # 24 mm long, 20 mm input diameter
    path = tmp_path / "stepped.step"
    _export(session, horn, path)
    text = path.read_text()
    assert "SI_UNIT(.MILLI.,.METRE.)" in text
    points = np.array([[float(v) for v in m.split(",")] for m in
                       re.findall(r"CARTESIAN_POINT\('',\(([^)]*)\)\)", text)
                       if m.count(",") == 2])
    assert points[:, 2].max() == pytest.approx(horn.length_m * 1000, rel=1e-9)
    assert np.abs(points[:, 0]).max() == pytest.approx(horn.diameter_input_m * 500, rel=1e-9)


def test_import_groups_planar_end_faces(session, tmp_path):
    gmsh, horn = session, HORNS["stepped"]
    path = tmp_path / "stepped.step"
    _export(gmsh, horn, path)
    built = import_step_horn(path)
    area = lambda name: sum(gmsh.model.occ.getMass(2, t) for t in built.surfaces[name])  # noqa
    r1, r2 = horn.diameter_input_m / 2, horn.diameter_output_m / 2
    assert area(g.INPUT_FACE) == pytest.approx(np.pi * r1**2, rel=1e-6)
    assert area(g.OUTPUT_FACE) == pytest.approx(np.pi * r2**2, rel=1e-6)
    assert built.refine_surfaces == built.surfaces[g.OUTPUT_FACE]
    # the shoulder at the step is planar and normal to z, but not an end face
    shoulder = [t for t in built.surfaces[g.LATERAL]
                if np.ptp(np.array(gmsh.model.getBoundingBox(2, t))[[2, 5]]) < 1e-6]
    assert len(shoulder) == 1
    # the imported horn meshes with its groups, within the cell limit
    with pytest.raises(MeshError, match="exceed the limit of 1.5 million"):
        mesh_built(built, tmp_path / "fine.msh", size_m=1e-4)
    groups = mesh_built(built, tmp_path / "stepped.msh", size_m=0.004)
    assert set(groups) == set(horn.groups())
    assert (tmp_path / "stepped.msh").stat().st_size > 0


def test_import_rejects_files_that_are_not_step_solids(session, tmp_path):
    gmsh = session
    with pytest.raises(GeometryError, match="does not exist"):
        import_step_horn(tmp_path / "missing.step")
    garbage = tmp_path / "garbage.step"
    garbage.write_text("this is not ISO-10303-21\n")
    with pytest.raises(GeometryError, match="cannot read garbage.step as a STEP file"):
        import_step_horn(garbage)
    gmsh.model.add("sheet")
    gmsh.model.occ.addRectangle(0, 0, 0, 0.01, 0.02)
    gmsh.model.occ.synchronize()
    write_step(tmp_path / "sheet.step")
    gmsh.model.remove()
    gmsh.model.add("import")
    with pytest.raises(GeometryError, match="no solid"):
        import_step_horn(tmp_path / "sheet.step")


def test_import_rejects_a_solid_without_planar_end_faces(session, tmp_path):
    gmsh = session
    gmsh.model.add("ball")
    gmsh.model.occ.addSphere(0, 0, 0, 0.01)
    gmsh.model.occ.synchronize()
    write_step(tmp_path / "ball.step")
    gmsh.model.remove()
    gmsh.model.add("import")
    with pytest.raises(GeometryError, match="no planar end face .* input_face"):
        import_step_horn(tmp_path / "ball.step")
