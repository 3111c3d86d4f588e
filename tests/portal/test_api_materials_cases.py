"""/api/v1/materials and /api/v1/projects/{id}/cases over HTTP."""

from __future__ import annotations

from .helpers import CUSTOM_PROPERTIES, error_of, table_counts, thermal_spec


def new_project(client, name="Horn 20 kHz") -> int:
    return client.post("/api/v1/projects", json={"name": name, "application_type": "horn_design"}).get_json()["id"]


def test_builtin_materials_are_listed_and_read_only(alice):
    items = alice.get("/api/v1/materials/builtin").get_json()["items"]
    ti = next(m for m in items if m["material_id"] == "ti6al4v")
    assert ti["properties"]["density_kg_m3"] == 4430.0 and ti["sources"]["density_kg_m3"]
    assert round(ti["bar_sound_speed_m_s"]) == 5068
    assert alice.get("/api/v1/materials/builtin/ti6al4v").get_json() == ti
    assert alice.get("/api/v1/materials/builtin/unobtainium").status_code == 404
    for method in ("patch", "delete", "put"):
        response = getattr(alice, method)("/api/v1/materials/builtin/ti6al4v", json={})
        assert response.status_code == 405, method
    assert alice.post("/api/v1/materials/builtin", json={}).status_code == 405


def test_custom_material_crud(alice):
    response = alice.post("/api/v1/materials/custom", json={"material_id": "ti_b", "name": "Ti-6Al-4V (B)",
                                                            "properties": CUSTOM_PROPERTIES, "source": "sheet 7"})
    assert response.status_code == 201
    row = response.get_json()
    assert response.headers["Location"] == f"/api/v1/materials/custom/{row['id']}"
    assert row["properties"]["youngs_modulus_Pa"] == 113.8e9 and row["source"] == "sheet 7"
    choices = alice.get("/api/v1/materials").get_json()["items"]
    assert {"material_id": "ti_b", "name": "Ti-6Al-4V (B)", "builtin": False, "id": row["id"]} in choices
    assert any(c["material_id"] == "ti6al4v" and c["builtin"] for c in choices)
    patched = alice.patch(f"/api/v1/materials/custom/{row['id']}", json={"properties": {"solidus_K": 1870.0}})
    assert patched.status_code == 200 and patched.get_json()["properties"]["solidus_K"] == 1870.0
    assert patched.get_json()["properties"]["density_kg_m3"] == 4430.0
    assert alice.get("/api/v1/materials/custom").get_json()["items"] == [patched.get_json()]
    assert alice.delete(f"/api/v1/materials/custom/{row['id']}").status_code == 204
    assert alice.get(f"/api/v1/materials/custom/{row['id']}").status_code == 404


def test_custom_material_errors_name_the_property(alice, web_app):
    before = table_counts(web_app)
    response = alice.post("/api/v1/materials/custom", json={
        "material_id": "bad", "properties": {**CUSTOM_PROPERTIES, "loss_factor": 0.5}})
    assert response.status_code == 422
    assert error_of(response)["field"] == "properties.loss_factor" and "0.1" in error_of(response)["message"]
    response = alice.post("/api/v1/materials/custom", json={"material_id": "cu_c110", "properties": CUSTOM_PROPERTIES})
    assert response.status_code == 409 and error_of(response)["field"] == "material_id"
    response = alice.post("/api/v1/materials/custom", json={"material_id": "x", "properties": {"density_kg_m3": 1}})
    assert response.status_code == 422 and len(error_of(response)["details"]) >= 10
    assert table_counts(web_app) == before


def test_case_crud_with_a_custom_material(alice):
    pid = new_project(alice)
    alice.post("/api/v1/materials/custom", json={"material_id": "ti_b", "properties": CUSTOM_PROPERTIES})
    response = alice.post(f"/api/v1/projects/{pid}/cases",
                          json={"name": "thermal", "spec": thermal_spec(materials={"horn": "ti_b"})})
    assert response.status_code == 201, response.get_json()
    case = response.get_json()
    assert response.headers["Location"] == f"/api/v1/projects/{pid}/cases/{case['id']}"
    assert case["spec"]["materials"] == {"horn": "ti_b"} and case["spec"]["name"] == "thermal"
    assert alice.get(f"/api/v1/projects/{pid}/cases/{case['id']}").get_json() == case
    listed = alice.get(f"/api/v1/projects/{pid}/cases").get_json()
    assert listed["total"] == 1 and "spec" not in listed["items"][0]
    patched = alice.patch(f"/api/v1/projects/{pid}/cases/{case['id']}", json={"name": "thermal v2"}).get_json()
    assert patched["name"] == patched["spec"]["name"] == "thermal v2"
    material_id = alice.get("/api/v1/materials/custom").get_json()["items"][0]["id"]
    in_use = alice.delete(f"/api/v1/materials/custom/{material_id}")
    assert in_use.status_code == 409 and "thermal v2" in error_of(in_use)["message"]
    assert alice.delete(f"/api/v1/projects/{pid}/cases/{case['id']}").status_code == 204
    assert alice.get(f"/api/v1/projects/{pid}/cases").get_json()["total"] == 0


def test_case_errors_carry_spec_field_paths(alice, web_app):
    pid = new_project(alice)
    before = table_counts(web_app)
    spec = thermal_spec(boundary_conditions=[{"boundary": "input_face", "type": "temperature", "value": "x +"}])
    response = alice.post(f"/api/v1/projects/{pid}/cases", json={"name": "bad", "spec": spec})
    assert response.status_code == 422
    assert error_of(response)["field"] == "spec.boundary_conditions[0].value"
    spec = thermal_spec(geometry={"kind": "cylinder", "length_m": -0.1, "diameter_m": 0.04})
    response = alice.post(f"/api/v1/projects/{pid}/cases", json={"name": "bad", "spec": spec})
    assert response.status_code == 422 and error_of(response)["field"] == "spec.geometry.length_m"
    response = alice.post(f"/api/v1/projects/{pid}/cases", json={"name": "bad", "spec": "thermal"})
    assert response.status_code == 422 and error_of(response)["field"] == "spec"
    response = alice.post(f"/api/v1/projects/{pid}/cases", json={"name": "bad", "geometry_version_id": 99,
                                                                 "spec": thermal_spec()})
    assert response.status_code == 422 and error_of(response)["field"] == "geometry_version_id"
    assert table_counts(web_app) == before
