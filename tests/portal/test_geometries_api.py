"""/api/v1/projects/{id}/geometries over HTTP: a parametric stepped horn generated and meshed
out of process (202 → poll the status URL), its preview and files; bad requests; access."""

from __future__ import annotations

import time

import numpy as np
import pytest

from portal.geometry_jobs import start_jobs

from .helpers import error_of, table_counts

STEPPED = {"kind": "stepped", "length_input_m": 0.06, "length_output_m": 0.06, "diameter_input_m": 0.04,
           "diameter_output_m": 0.02, "fillet_radius_m": 0.004}
BUSY = ("generating", "meshing")


@pytest.fixture
def jobs(web_app):
    runner = start_jobs(web_app)
    yield runner
    runner.stop()


def poll(client, url: str, timeout_s: float = 180.0) -> dict:
    """GET the status URL until the job has ended; the version."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.get(url)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        if body["status"] not in BUSY:
            return body
        assert time.monotonic() < deadline, f"still {body['status']} after {timeout_s} s"
        time.sleep(0.2)


def new_project(client, name: str = "Horns") -> int:
    response = client.post("/api/v1/projects", json={"name": name, "application_type": "horn_design"})
    assert response.status_code == 201
    return response.get_json()["id"]


def test_parametric_stepped_horn_generate_mesh_preview_download(alice, jobs):
    pid = new_project(alice)
    base = f"/api/v1/projects/{pid}/geometries"
    response = alice.post(base, json={"params": STEPPED})
    assert response.status_code == 202
    created = response.get_json()
    assert created["status"] == "generating" and created["version"] == 1
    assert response.headers["Location"] == created["status_url"] == f"{base}/{created['id']}"

    generated = poll(alice, created["status_url"])
    assert generated["status"] == "generated" and generated["error"] is None
    assert set(generated["files"]) == {"step", "stl"}
    assert generated["groups"] == ["horn", "input_face", "output_face", "lateral"]
    assert generated["params"]["fillet_radius_m"] == 0.004

    response = alice.post(f"{created['status_url']}/mesh", json={"options": {"size_m": 0.006}})
    assert response.status_code == 202 and response.get_json()["status"] == "meshing"
    assert response.headers["Location"] == created["status_url"]
    meshed = poll(alice, created["status_url"])
    assert meshed["status"] == "meshed", meshed["error"]
    assert set(meshed["files"]) == {"step", "stl", "msh"} and meshed["mesh_info"]["n_cells"] > 1000

    response = alice.get(meshed["preview_url"])
    assert response.status_code == 200
    view = response.get_json()
    assert view["source"] == "mesh" and "output_face" in view["groups"]
    assert len(view["faces"]) == len(view["face_groups"]) <= view["max_faces"] == 20_000
    out = view["groups"].index("output_face")
    corners = np.array(view["faces"])[np.array(view["face_groups"]) == out].ravel()
    assert len(corners) and np.allclose(np.array(view["vertices"])[corners, 2], 0.12)

    response = alice.get(meshed["files"]["msh"])
    assert response.status_code == 200 and response.data.startswith(b"$MeshFormat")
    assert f"geometry-p{pid}-v1.msh" in response.headers["Content-Disposition"]
    response = alice.get(meshed["files"]["step"])
    assert response.status_code == 200 and response.data.startswith(b"ISO-10303-21;")

    listed = alice.get(base).get_json()
    assert listed["total"] == 1 and listed["items"][0]["status"] == "meshed"

    # a case on the meshed version runs on that mesh
    response = alice.post(f"/api/v1/projects/{pid}/cases", json={
        "name": "modal", "geometry_version_id": created["id"],
        "spec": {"analysis": "modal", "materials": {"horn": "ti6al4v"}, "solver": {"target_frequency_Hz": 2e4}}})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["spec"]["geometry"] == {"kind": "mesh_file",
                                                       "path": f"geometries/{created['id']}/mesh.msh"}
    response = alice.post(f"{created['status_url']}/mesh", json={"options": {"size_m": 0.004}})
    assert response.status_code == 409 and "used by 1 case" in error_of(response)["message"]


def test_bad_requests_get_4xx_with_the_field_and_store_nothing(web_app, alice, jobs):
    pid = new_project(alice)
    base = f"/api/v1/projects/{pid}/geometries"
    before = table_counts(web_app)
    for body, status, field in (({"params": {**STEPPED, "fillet_radius_m": 0.02}}, 422, "params"),
                                ({"params": {**STEPPED, "diameter_output_m": "wide"}}, 422, "params.diameter_output_m"),
                                ({"params": {"kind": "banana"}}, 422, "params.kind"),
                                ({"params": STEPPED, "colour": "red"}, 422, "colour"),
                                ({}, 422, "params")):
        response = alice.post(base, json=body)
        assert response.status_code == status, (body, response.get_json())
        assert error_of(response)["field"] == field, (body, error_of(response))
    assert table_counts(web_app) == before

    created = alice.post(base, json={"params": STEPPED}).get_json()
    response = alice.get(created["preview_url"])
    assert response.status_code == 409 and "generating" in error_of(response)["message"]
    response = alice.post(f"{created['status_url']}/mesh", json={"options": {"size_m": 0.01}})
    assert response.status_code == 409
    poll(alice, created["status_url"])
    response = alice.post(f"{created['status_url']}/mesh", json={"options": {"size_m": 0.01, "colour": "red"}})
    assert response.status_code == 422 and error_of(response)["field"] == "options.colour"
    response = alice.post(f"{created['status_url']}/mesh", json={"options": {"size_m": 1e-4}})
    assert response.status_code == 422 and "cells exceed" in error_of(response)["message"]
    assert alice.get(f"{created['status_url']}/files/msh").status_code == 404  # not meshed yet
    assert alice.get(f"{created['status_url']}/files/exe").status_code == 422
    assert alice.get(f"{base}/999999").status_code == 404


def test_without_a_job_runner_the_api_answers_503(web_app, alice):
    pid = new_project(alice)
    before = table_counts(web_app)
    response = alice.post(f"/api/v1/projects/{pid}/geometries", json={"params": STEPPED})
    assert response.status_code == 503 and "agent" in error_of(response)["message"]
    assert table_counts(web_app) == before


def test_another_users_geometry_is_404_and_no_credentials_401(web_app, alice, bob, jobs):
    pid = new_project(alice)
    created = alice.post(f"/api/v1/projects/{pid}/geometries", json={"params": STEPPED}).get_json()
    poll(alice, created["status_url"])
    url = created["status_url"]
    requests = [("get", f"/api/v1/projects/{pid}/geometries", None), ("get", url, None),
                ("get", f"{url}/preview", None), ("get", f"{url}/files/step", None),
                ("post", f"{url}/mesh", {"options": {"size_m": 0.01}}),
                ("post", f"/api/v1/projects/{pid}/geometries", {"params": STEPPED})]
    before = table_counts(web_app)
    for method, target, body in requests:
        response = getattr(bob, method)(target, json=body) if body else getattr(bob, method)(target)
        assert response.status_code == 404, (target, response.get_json())
        assert error_of(response)["code"] == "not_found"
        anonymous = web_app.test_client()
        response = anonymous.open(target, method=method.upper(), json=body)
        assert response.status_code == 401, target
    assert table_counts(web_app) == before
    # the owner still gets everything
    assert alice.get(f"{url}/files/step").status_code == 200
