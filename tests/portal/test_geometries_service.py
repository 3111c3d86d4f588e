"""Geometry versions through the services, on SQLite and PostgreSQL: parametric generation
and meshing out of process (real gmsh in portal.geometry_worker), previews, cases on a
meshed version, validation, access, restart recovery; and the preview decimation itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from portal.geometry_jobs import GeometryJobs
from portal.models import GeometryVersion, Project
from portal.services import cases, geometries, projects
from portal.services.errors import Conflict, Invalid, NotFound, Unavailable
from portal.services.geometry_preview import MAX_PREVIEW_FACES, Surface, boundary_surface, decimate, preview_document
from weldsim_hpc.geometry import SteppedHorn
from weldsim_hpc.geometry.structured import structured_mesh

from .helpers import counts, make_user

STEPPED = {"kind": "stepped", "length_input_m": 0.06, "length_output_m": 0.06, "diameter_input_m": 0.04,
           "diameter_output_m": 0.02, "fillet_radius_m": 0.004}
MODAL_SPEC = {"analysis": "modal", "materials": {"horn": "ti6al4v"},
              "solver": {"target_frequency_Hz": 20000.0, "modes_wanted": 6}}
WAIT_S = 180


@pytest.fixture
def owner(db_session):
    return make_user(db_session, "owner@example.com")


@pytest.fixture
def project(db_session, owner):
    return projects.create_project(db_session, owner, name="Horns", application_type="horn_design")


@pytest.fixture
def storage(app) -> Path:
    return app.extensions["weldsim"].storage_root


@pytest.fixture
def jobs(app):
    runner = GeometryJobs(app).start()
    yield runner
    runner.stop()


def finished(session, jobs, version) -> GeometryVersion:
    assert jobs.wait(version.id, WAIT_S), f"geometry job of version {version.id} did not finish"
    session.expire_all()
    return session.get(GeometryVersion, version.id)


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*") if p.is_file()) if Path(root).exists() else []


def test_stepped_horn_generates_meshes_previews_and_a_case_runs_on_its_mesh(db_session, owner, project, storage,
                                                                             jobs):
    version = geometries.create_parametric(db_session, owner, project.id, params=STEPPED, storage_root=storage,
                                           jobs=jobs)
    assert (version.version, version.kind, version.status) == (1, "parametric", "generating")
    version = finished(db_session, jobs, version)
    assert version.status == "generated" and version.error is None, version.error
    step = storage / version.file_path
    assert step == storage / "geometries" / str(version.id) / "geometry.step"
    assert step.read_bytes().startswith(b"ISO-10303-21;")
    assert set(geometries.available_files(version, storage)) == {"step", "stl"}
    shape = geometries.preview(db_session, owner, project.id, version.id, storage_root=storage)
    assert shape["source"] == "geometry" and "output_face" in shape["groups"]

    version = geometries.request_mesh(db_session, owner, project.id, version.id, options={"size_m": 0.006},
                                      storage_root=storage, jobs=jobs)
    assert version.status == "meshing"
    version = finished(db_session, jobs, version)
    assert version.status == "meshed", version.error
    assert version.mesh_path == f"geometries/{version.id}/mesh.msh" and (storage / version.mesh_path).is_file()
    assert version.mesh_info["n_cells"] > 1000
    view_cells = version.mesh_info["n_cells"]
    assert {g["name"] for g in version.mesh_info["groups"]} == {"horn", "input_face", "output_face", "lateral"}

    view = geometries.preview(db_session, owner, project.id, version.id, storage_root=storage)
    assert view["source"] == "mesh" and view["status"] == "meshed"
    assert 0 < len(view["faces"]) <= MAX_PREVIEW_FACES and len(view["face_groups"]) == len(view["faces"])
    out = view["groups"].index("output_face")
    vertices = np.array(view["vertices"])
    on_face = np.array(view["faces"])[np.array(view["face_groups"]) == out]
    assert len(on_face) > 10
    assert np.allclose(vertices[on_face.ravel(), 2], 0.12, atol=1e-9)  # the weld face is at z = L
    radius = np.hypot(vertices[on_face.ravel(), 0], vertices[on_face.ravel(), 1])
    assert radius.max() == pytest.approx(0.01, rel=1e-3)

    case = cases.create_case(db_session, owner, project.id, spec=MODAL_SPEC, name="on the mesh",
                             geometry_version_id=version.id, storage_root=storage)
    assert case.spec["geometry"] == {"kind": "mesh_file", "path": version.mesh_path}
    spec = cases.case_spec_for_run(db_session, case, storage_root=storage)
    assert Path(spec.geometry.path) == (storage / version.mesh_path).resolve()
    with pytest.raises(Conflict, match="used by 1 case"):
        geometries.request_mesh(db_session, owner, project.id, version.id, options={"size_m": 0.004},
                                storage_root=storage, jobs=jobs)
    # detached, the case keeps the parameters its mesh was made from; the version may be meshed again
    cases.update_case(db_session, owner, project.id, case.id, {"geometry_version_id": None}, storage_root=storage)
    assert case.spec["geometry"] == STEPPED and case.geometry_version_id is None
    version = geometries.request_mesh(db_session, owner, project.id, version.id, options={"size_m": 0.008},
                                      storage_root=storage, jobs=jobs)
    assert finished(db_session, jobs, version).mesh_info["n_cells"] < view_cells


def test_version_numbers_count_per_project(db_session, owner, project, storage, jobs):
    other = projects.create_project(db_session, owner, name="Other", application_type="horn_design")
    numbers = [geometries.create_parametric(db_session, owner, pid, params=STEPPED, storage_root=storage,
                                            jobs=jobs).version for pid in (project.id, project.id, other.id)]
    assert numbers == [1, 2, 1]
    assert jobs.wait_all(WAIT_S)
    page = geometries.list_versions(db_session, owner, project.id)
    assert [v.version for v in page.items] == [2, 1] and page.total == 2


def test_bad_parameters_name_their_field_and_store_nothing(db_session, owner, project, storage, jobs):
    before, files = counts(db_session), files_under(storage)
    with pytest.raises(Invalid) as info:
        geometries.create_parametric(db_session, owner, project.id, params={**STEPPED, "fillet_radius_m": 0.02},
                                     storage_root=storage, jobs=jobs)
    assert info.value.field == "params" and "fillet_radius_m" in info.value.message
    with pytest.raises(Invalid) as info:
        geometries.create_parametric(db_session, owner, project.id, params={**STEPPED, "length_input_m": -1},
                                     storage_root=storage, jobs=jobs)
    assert info.value.field == "params.length_input_m"
    with pytest.raises(Invalid) as info:
        geometries.create_parametric(db_session, owner, project.id, params={"kind": "banana"},
                                     storage_root=storage, jobs=jobs)
    assert info.value.field == "params.kind" and "banana" in info.value.message
    with pytest.raises(Unavailable):
        geometries.create_parametric(db_session, owner, project.id, params=STEPPED, storage_root=storage, jobs=None)
    assert counts(db_session) == before and files_under(storage) == files


def test_mesh_options_are_checked_before_any_job(db_session, owner, project, storage, jobs):
    version = finished(db_session, jobs, geometries.create_parametric(
        db_session, owner, project.id, params=STEPPED, storage_root=storage, jobs=jobs))
    for options, field, words in (({"size_m": 0.004, "colour": "red"}, "options.colour", "extra"),
                                  ({}, "options.size_m", "target frequency and material"),
                                  ({"size_m": 0.0002}, "options.size_m", "exceed the limit"),
                                  ({"material": "unobtainium", "target_frequency_Hz": 2e4}, "options.material",
                                   "unobtainium")):
        with pytest.raises(Invalid) as info:
            geometries.request_mesh(db_session, owner, project.id, version.id, options=options,
                                    storage_root=storage, jobs=jobs)
        assert info.value.field == field and words in info.value.message.lower() + str(info.value.details).lower()
    db_session.refresh(version)
    assert version.status == "generated"
    # the wavelength rule: c_s of Ti-6Al-4V at 1.5 x 20 kHz, /6 -> about 15 mm, capped at d_min/4 = 5 mm
    version = geometries.request_mesh(db_session, owner, project.id, version.id,
                                      options={"material": "ti6al4v", "target_frequency_Hz": 20000.0},
                                      storage_root=storage, jobs=jobs)
    with pytest.raises(Conflict, match="meshing"):
        geometries.request_mesh(db_session, owner, project.id, version.id, options={"size_m": 0.006},
                                storage_root=storage, jobs=jobs)
    version = finished(db_session, jobs, version)
    assert version.status == "meshed", version.error


def test_other_users_see_nothing_and_busy_versions_have_no_preview(db_session, owner, project, storage, jobs):
    stranger = make_user(db_session, "stranger@example.com")
    version = geometries.create_parametric(db_session, owner, project.id, params=STEPPED, storage_root=storage,
                                           jobs=jobs)
    with pytest.raises(Conflict, match="generating"):
        geometries.preview(db_session, owner, project.id, version.id, storage_root=storage)
    with pytest.raises(Invalid, match="generating"):  # a case waits for the geometry
        cases.create_case(db_session, owner, project.id, spec=MODAL_SPEC, name="too early",
                          geometry_version_id=version.id, storage_root=storage)
    finished(db_session, jobs, version)
    for call in (lambda: geometries.get_version(db_session, stranger, project.id, version.id),
                 lambda: geometries.preview(db_session, stranger, project.id, version.id, storage_root=storage),
                 lambda: geometries.file_of(db_session, stranger, project.id, version.id, "step",
                                            storage_root=storage),
                 lambda: geometries.request_mesh(db_session, stranger, project.id, version.id,
                                                 options={"size_m": 0.01}, storage_root=storage, jobs=jobs),
                 lambda: geometries.list_versions(db_session, stranger, project.id)):
        with pytest.raises(NotFound):
            call()
    with pytest.raises(NotFound):  # right id, wrong project
        other = projects.create_project(db_session, owner, name="Else", application_type="horn_design")
        geometries.get_version(db_session, owner, other.id, version.id)


def test_deleting_the_project_removes_the_geometry_files(db_session, owner, project, storage, jobs, tmp_path):
    version = finished(db_session, jobs, geometries.create_parametric(
        db_session, owner, project.id, params=STEPPED, storage_root=storage, jobs=jobs))
    folder = geometries.version_dir(storage, version.id)
    assert (folder / "geometry.step").is_file()
    projects.delete_project(db_session, owner, project.id, runs_root=tmp_path / "runs", storage_root=storage)
    assert not folder.exists()


def test_jobs_left_running_by_a_stopped_portal_are_failed_at_start(app, db_session, owner, project):
    stuck = GeometryVersion(project_id=project.id, version=1, kind="parametric", params=STEPPED,
                            status="meshing")
    db_session.add(stuck)
    db_session.commit()
    runner = GeometryJobs(app).start()
    try:
        db_session.expire_all()
        stuck = db_session.scalar(select(GeometryVersion).where(GeometryVersion.project_id == project.id))
        assert stuck.status == "failed" and stuck.error.startswith("interrupted")
        assert db_session.get(Project, project.id) is not None
    finally:
        runner.stop()


# --- the preview's decimation (numpy only) -----------------------------------------------------

@pytest.fixture(scope="module")
def fine_horn_surface() -> Surface:
    horn = SteppedHorn(**{k: v for k, v in STEPPED.items() if k != "kind"})
    return boundary_surface(structured_mesh(horn, size_m=0.0012, curvature_segments=96))


def test_boundary_surface_keeps_the_groups_of_the_outer_faces(fine_horn_surface):
    surface = fine_horn_surface
    assert set(surface.groups) == {"input_face", "output_face", "lateral"}
    assert (surface.face_groups >= 0).all()  # every outer face of a horn is in a group
    out = surface.faces[surface.face_groups == surface.groups.index("output_face")]
    assert np.allclose(surface.points[out.ravel(), 2], 0.12)


def test_decimation_bounds_the_faces_and_keeps_shape_and_groups(fine_horn_surface):
    surface = fine_horn_surface
    assert len(surface.faces) > 3 * 5000  # the test means something only if it must decimate
    small, cell = decimate(surface, 5000)
    assert cell is not None and 0 < len(small.faces) <= 5000
    assert set(small.face_groups.tolist()) == set(surface.face_groups.tolist())
    assert small.faces.max() < len(small.points)
    # no vertex moved further than a grid cell's diagonal from the original surface's bounding box
    lo, hi = surface.points.min(axis=0), surface.points.max(axis=0)
    assert (small.points >= lo - 1e-12).all() and (small.points <= hi + 1e-12).all()
    assert np.allclose(small.points.max(axis=0), hi, atol=np.sqrt(3) * cell)
    doc = preview_document(surface, source="mesh", max_faces=5000)
    assert doc["decimated"] and doc["faces_full"] == len(surface.faces) and len(doc["faces"]) <= 5000
    assert preview_document(surface, source="mesh")["decimated"] == (len(surface.faces) > MAX_PREVIEW_FACES)


def test_a_small_surface_is_passed_through_unchanged():
    points = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [9, 9, 9]], dtype=float)
    faces = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
    small, cell = decimate(Surface(points, faces, np.array([0, 0, 1, -1]), ("a", "b")), 4)
    assert cell is None and len(small.points) == 4 and len(small.faces) == 4  # the unused vertex is dropped
    assert small.face_groups.tolist() == [0, 0, 1, -1]
