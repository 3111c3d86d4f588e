"""Geometry uploads over HTTP: a real STEP horn comes out grouped and meshed, a .msh with
physical names is checked and used as it is; a renamed text file, an oversized file, a
traversal name, an archive … are refused with 4xx and NOTHING stored (rows and files
counted before and after); another user's project is 404, no credentials 401."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import meshio
import numpy as np
import pytest

from portal.geometry_jobs import start_jobs
from weldsim_hpc.geometry import CylinderHorn
from weldsim_hpc.geometry.structured import structured_mesh

from .conftest import dispose_app, make_app
from .helpers import api_client, error_of, table_counts
from .test_geometries_api import poll

LIMIT = 256 * 1024  # MAX_UPLOAD_BYTES of these tests
CONICAL = {"kind": "conical", "length_m": 0.1, "diameter_input_m": 0.04, "diameter_output_m": 0.024}


@pytest.fixture
def upload_app(migrated_url, tmp_path):
    """An app with a small upload limit and a geometry job runner; every user deleted after."""
    app = make_app(migrated_url, tmp_path / "instance", MAX_UPLOAD_BYTES=LIMIT)
    runner = start_jobs(app)
    try:
        yield app
    finally:
        runner.stop()
        dispose_app(app)


@pytest.fixture
def carol(upload_app):
    return api_client(upload_app, "carol@example.com")


@pytest.fixture
def dave(upload_app):
    return api_client(upload_app, "dave@example.com")


@pytest.fixture
def pid(carol) -> int:
    response = carol.post("/api/v1/projects", json={"name": "Uploads", "application_type": "horn_design"})
    assert response.status_code == 201
    return response.get_json()["id"]


@pytest.fixture(scope="module")
def step_horn(tmp_path_factory) -> bytes:
    """A conical horn's STEP, written by weldsim_hpc's own generator in a subprocess (gmsh)."""
    out = tmp_path_factory.mktemp("step")
    (out / "params.json").write_text(json.dumps(CONICAL))
    (out / "sizes.json").write_text(json.dumps({"size_m": 0.01}))
    proc = subprocess.run([sys.executable, "-m", "weldsim_hpc.geometry.meshing", str(out / "params.json"),
                           str(out / "sizes.json"), str(out / "gen")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = (out / "gen" / "geometry.step").read_bytes()
    assert data.startswith(b"ISO-10303-21;")
    return data


@pytest.fixture(scope="module")
def msh_horn(tmp_path_factory) -> tuple[bytes, int]:
    """A cylinder horn mesh with physical names (.msh 2.2, by meshio from the structured mesher)."""
    mesh = structured_mesh(CylinderHorn(length_m=0.1, diameter_m=0.03), size_m=0.008, curvature_segments=16)
    field_data = {name: np.array([tag, dim]) for name, (dim, tag) in mesh.groups.items()}
    out = meshio.Mesh(mesh.points, [("tetra", mesh.cells), ("triangle", mesh.facets)],
                      cell_data={"gmsh:physical": [mesh.cell_tags, mesh.facet_tags],
                                 "gmsh:geometrical": [mesh.cell_tags, mesh.facet_tags]},
                      field_data=field_data)
    path = tmp_path_factory.mktemp("msh") / "horn.msh"
    meshio.gmsh.write(str(path), out, fmt_version="2.2", binary=False)
    return path.read_bytes(), mesh.n_cells


def files_under(root: Path) -> list[Path]:
    root = Path(root)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def send(client, pid: int, name: str, data: bytes, field: str = "file"):
    return client.post(f"/api/v1/projects/{pid}/geometries/uploads",
                       data={field: (io.BytesIO(data), name)}, content_type="multipart/form-data")


def test_a_step_horn_comes_out_grouped_and_meshed(upload_app, carol, pid, step_horn):
    storage = upload_app.extensions["weldsim"].storage_root
    response = send(carol, pid, "My horn (v2).STEP", step_horn)
    assert response.status_code == 202, response.get_json()
    created = response.get_json()
    assert created["kind"] == "uploaded" and created["status"] == "generating"
    assert created["source_name"] == "My horn (v2).STEP"
    stored = storage / "geometries" / str(created["id"]) / "source.step"
    assert stored.read_bytes() == step_horn  # kept under a generated name

    grouped = poll(carol, created["status_url"])
    assert grouped["status"] == "generated", grouped["error"]
    assert grouped["groups"] == ["horn", "input_face", "output_face", "lateral"]
    view = carol.get(grouped["preview_url"]).get_json()
    assert view["source"] == "geometry" and set(view["groups"]) == {"input_face", "output_face", "lateral"}

    response = carol.post(f"{created['status_url']}/mesh", json={"options": {"size_m": 0.006}})
    assert response.status_code == 202
    meshed = poll(carol, created["status_url"])
    assert meshed["status"] == "meshed", meshed["error"]
    groups = {g["name"]: g for g in meshed["mesh_info"]["groups"]}
    assert set(groups) == {"horn", "input_face", "output_face", "lateral"}
    # read back in metres, grouped by position: the weld face is the small end, at z = L
    assert groups["output_face"]["measure"] == pytest.approx(math.pi * 0.012 ** 2, rel=0.02)
    assert groups["input_face"]["measure"] == pytest.approx(math.pi * 0.02 ** 2, rel=0.02)
    assert meshed["mesh_info"]["bbox_max"][2] == pytest.approx(0.1, rel=1e-6)
    view = carol.get(meshed["preview_url"]).get_json()
    out = view["groups"].index("output_face")
    corners = np.array(view["faces"])[np.array(view["face_groups"]) == out].ravel()
    assert len(corners) and np.allclose(np.array(view["vertices"])[corners, 2], 0.1, atol=1e-7)
    response = carol.get(meshed["files"]["step"])
    assert response.data == step_horn and "My horn" not in response.headers["Content-Disposition"]


def test_a_msh_with_physical_names_is_checked_and_used_as_it_is(upload_app, carol, pid, msh_horn):
    data, n_cells = msh_horn
    response = send(carol, pid, "horn.msh", data)
    assert response.status_code == 202, response.get_json()
    meshed = poll(carol, response.get_json()["status_url"])
    assert meshed["status"] == "meshed", meshed["error"]
    assert meshed["mesh_info"]["n_cells"] == n_cells and "output_face" in meshed["groups"]
    assert carol.get(meshed["files"]["msh"]).data == data
    response = carol.post(f"{meshed['status_url']}/mesh", json={"options": {"size_m": 0.01}})
    assert response.status_code == 409 and "uploaded mesh" in error_of(response)["message"]


def test_a_mesh_that_fails_the_job_s_check_lands_failed_with_its_error(upload_app, carol, pid):
    broken = (b"$MeshFormat\n2.2 0 8\n$EndMeshFormat\n$PhysicalNames\n1\n3 1 \"horn\"\n$EndPhysicalNames\n"
              b"$Nodes\n4\n1 0 0 0\n2 1 0 0\n$EndNodes\n")
    response = send(carol, pid, "broken.msh", broken)
    assert response.status_code == 202
    failed = poll(carol, response.get_json()["status_url"])
    assert failed["status"] == "failed" and "unreadable gmsh .msh" in failed["error"]
    response = carol.get(failed["preview_url"])
    assert response.status_code == 409 and "failed" in error_of(response)["message"]


SPHERE_STEP = """
import sys
import gmsh
from weldsim_hpc.geometry.step_io import write_step
gmsh.initialize(readConfigFiles=False)
gmsh.option.setNumber("General.Terminal", 0)
gmsh.model.occ.addSphere(0, 0, 0, 0.02)
gmsh.model.occ.synchronize()
write_step(sys.argv[1])
gmsh.finalize()
"""


def test_a_step_that_is_no_horn_fails_with_the_reason(upload_app, carol, pid, tmp_path):
    path = tmp_path / "ball.step"
    proc = subprocess.run([sys.executable, "-c", SPHERE_STEP, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    response = send(carol, pid, "ball.step", path.read_bytes())
    assert response.status_code == 202
    failed = poll(carol, response.get_json()["status_url"])
    assert failed["status"] == "failed" and "no planar end face" in failed["error"]
    response = carol.post(f"{failed['status_url']}/mesh", json={"options": {"size_m": 0.005}})
    assert response.status_code == 202  # meshing may be retried: it fails again, for the same reason
    failed = poll(carol, failed["status_url"])
    assert failed["status"] == "failed" and "no planar end face" in failed["error"]


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("horn.step", "ISO-10303-21;\n")
    return buffer.getvalue()


REFUSED = [
    ("renamed text file", "notes.step", b"These are my notes about the horn.\n", 422, "not a STEP file"),
    ("oversized file", "big.step", b"ISO-10303-21;\n" + b"x" * LIMIT, 413, "upload limit"),
    ("far too large body", "huge.step", b"ISO-10303-21;\n" + b"x" * (4 * LIMIT), 413, "too large"),
    ("traversal name", "../../etc/passwd.step", b"ISO-10303-21;\nHEADER;\n", 422, "not a path"),
    ("windows traversal", "..\\..\\horn.step", b"ISO-10303-21;\nHEADER;\n", 422, "not a path"),
    ("archive", "horns.zip", None, 422, "archives are not accepted"),
    ("archive named .step", "horn.step", None, 422, "archives are not accepted"),
    ("mesh named .step", "horn.step", b"$MeshFormat\n2.2 0 8\n$EndMeshFormat\n", 422, "name it .msh"),
    ("mesh without names", "horn.msh", b"$MeshFormat\n2.2 0 8\n$EndMeshFormat\n$Nodes\n0\n$EndNodes\n", 422,
     "no physical names"),
    ("unsupported type", "horn.stl", b"solid horn\nendsolid\n", 422, "unsupported file type"),
    ("empty file", "horn.step", b"", 422, "empty"),
]


@pytest.mark.parametrize("what, name, data, status, words", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_uploads_store_nothing(upload_app, carol, pid, what, name, data, status, words):
    storage = upload_app.extensions["weldsim"].storage_root
    rows, files = table_counts(upload_app), files_under(storage)
    response = send(carol, pid, name, _zip() if data is None else data)
    assert response.status_code == status, (what, response.get_json())
    error = error_of(response)
    assert words in error["message"], error
    assert table_counts(upload_app) == rows and files_under(storage) == files


def test_a_request_without_the_file_is_422(upload_app, carol, pid):
    rows = table_counts(upload_app)
    response = send(carol, pid, "horn.step", b"ISO-10303-21;\n", field="attachment")
    assert response.status_code == 422 and error_of(response)["field"] in ("file", "attachment")
    assert table_counts(upload_app) == rows


def test_uploads_to_another_users_project_are_404_and_need_credentials(upload_app, carol, dave, pid, step_horn):
    storage = upload_app.extensions["weldsim"].storage_root
    rows, files = table_counts(upload_app), files_under(storage)
    response = send(dave, pid, "horn.step", step_horn)
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    anonymous = upload_app.test_client()
    response = anonymous.post(f"/api/v1/projects/{pid}/geometries/uploads",
                              data={"file": (io.BytesIO(step_horn), "horn.step")}, content_type="multipart/form-data")
    assert response.status_code == 401
    assert table_counts(upload_app) == rows and files_under(storage) == files
