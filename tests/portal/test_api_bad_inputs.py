"""Bad inputs get a 4xx with a clear message in the envelope, and leave the database as it
was (rows counted before and after) and the file system untouched."""

from __future__ import annotations

import pytest

from .helpers import CUSTOM_PROPERTIES, error_of, table_counts, thermal_spec

PROJECT = {"name": "Tab weld", "application_type": "li_battery_tab"}


@pytest.fixture
def ids(alice):
    project = alice.post("/api/v1/projects", json=PROJECT).get_json()
    case = alice.post(f"/api/v1/projects/{project['id']}/cases", json={"name": "t", "spec": thermal_spec()}).get_json()
    material = alice.post("/api/v1/materials/custom", json={"material_id": "ti_b", "properties": CUSTOM_PROPERTIES})
    return {"p": project["id"], "c": case["id"], "m": material.get_json()["id"]}


def write_urls(ids) -> list[tuple[str, str]]:
    return [("POST", "/api/v1/projects"), ("PATCH", f"/api/v1/projects/{ids['p']}"),
            ("POST", f"/api/v1/projects/{ids['p']}/cases"), ("PATCH", f"/api/v1/projects/{ids['p']}/cases/{ids['c']}"),
            ("POST", "/api/v1/materials/custom"), ("PATCH", f"/api/v1/materials/custom/{ids['m']}"),
            ("POST", "/api/v1/auth/tokens"), ("POST", "/api/v1/auth/login")]


@pytest.mark.parametrize("body, status, words", [
    (b'{"name": "Tab weld", ', 400, "malformed JSON"),
    (b"{'name': 'single quotes'}", 400, "malformed JSON"),
    (b'{"name": NaN}', 400, "NaN is not a JSON number"),
    (b'{"x": Infinity}', 400, "Infinity is not a JSON number"),
    (b'["a", "list"]', 400, "must be a JSON object, not list"),
    (b'"a string"', 400, "must be a JSON object, not str"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
    (b'{"name": "\xff\xfe"}', 400, "malformed JSON"),
])
def test_malformed_json_is_400_everywhere(alice, web_app, ids, body, status, words):
    before = table_counts(web_app)
    for method, url in write_urls(ids):
        response = alice.request(method, url, data=body, content_type="application/json")
        assert response.status_code == status, (method, url)
        error = error_of(response)
        assert error["code"] == "bad_request" and words in error["message"], (method, url, error)
    assert table_counts(web_app) == before


def test_a_body_that_is_not_json_is_415(alice, web_app, ids):
    before = table_counts(web_app)
    for method, url in write_urls(ids):
        response = alice.request(method, url, data="name=Tab", content_type="application/x-www-form-urlencoded")
        assert response.status_code == 415 and "Content-Type: application/json" in error_of(response)["message"]
    assert table_counts(web_app) == before


@pytest.mark.parametrize("url_key, body, field", [
    ("projects", {"name": 42, "application_type": "li_battery_tab"}, "name"),
    ("projects", {"name": ["a"], "application_type": "li_battery_tab"}, "name"),
    ("projects", {"name": "Tab", "application_type": 7}, "application_type"),
    ("projects", {"name": "Tab", "application_type": "li_battery_tab", "description": {"a": 1}}, "description"),
    ("cases", {"name": "t", "spec": thermal_spec(), "geometry_version_id": "one"}, "geometry_version_id"),
    ("cases", {"name": "t", "spec": thermal_spec(boundary_conditions="none")}, "spec.boundary_conditions"),
    ("cases", {"name": "t", "spec": thermal_spec(time={"end_s": "long", "dt_s": 1})}, "spec.time.end_s"),
    ("materials", {"material_id": 5, "properties": CUSTOM_PROPERTIES}, "material_id"),
    ("materials", {"material_id": "m", "properties": {**CUSTOM_PROPERTIES, "solidus_K": "hot"}},
     "properties.solidus_K"),
    ("materials", {"material_id": "m", "properties": [1, 2]}, "properties"),
    ("tokens", {"name": "t", "expires_in_days": "soon"}, "expires_in_days"),
])
def test_wrong_types_are_422_naming_the_field(alice, web_app, ids, url_key, body, field):
    url = {"projects": "/api/v1/projects", "cases": f"/api/v1/projects/{ids['p']}/cases",
           "materials": "/api/v1/materials/custom", "tokens": "/api/v1/auth/tokens"}[url_key]
    before = table_counts(web_app)
    response = alice.post(url, json=body)
    assert response.status_code == 422, response.get_json()
    error = error_of(response)
    assert error["code"] == "invalid" and error["field"] == field, error
    assert table_counts(web_app) == before


@pytest.mark.parametrize("method, url, body, field", [
    ("POST", "/api/v1/projects", {**PROJECT, "owner_id": 1}, "owner_id"),
    ("PATCH", "/api/v1/projects/{p}", {"nmae": "typo"}, "nmae"),
    ("POST", "/api/v1/projects/{p}/cases", {"name": "t", "spec": thermal_spec(), "runs": []}, "runs"),
    ("POST", "/api/v1/projects/{p}/cases", {"name": "t", "spec": thermal_spec(solver={"backnd": "scipy"})},
     "spec.solver.backnd"),
    ("PATCH", "/api/v1/materials/custom/{m}", {"material_id": "renamed"}, "material_id"),
    ("PATCH", "/api/v1/materials/custom/{m}", {"properties": {"colour": "grey"}}, "properties.colour"),
    ("POST", "/api/v1/auth/login", {"email": "a@b.c", "password": "x" * 8, "remember": True}, "remember"),
])
def test_unknown_fields_are_422_naming_the_field(alice, web_app, ids, method, url, body, field):
    before = table_counts(web_app)
    response = alice.request(method, url.format(**ids), json=body)
    assert response.status_code == 422
    error = error_of(response)
    assert error["field"] == field and "unknown" in error["message"], error
    assert table_counts(web_app) == before


def test_oversized_bodies_are_413(alice, web_app, ids):
    before = table_counts(web_app)
    big = {**PROJECT, "description": "x" * (3 * 1024 * 1024)}
    for method, url in write_urls(ids):
        response = alice.request(method, url, json=big)
        assert response.status_code == 413, (method, url)
        error = error_of(response)
        assert error["code"] == "payload_too_large" and "2097152 bytes" in error["message"]
    assert table_counts(web_app) == before


def test_long_fields_under_the_body_limit_are_422(alice, web_app):
    before = table_counts(web_app)
    response = alice.post("/api/v1/projects", json={**PROJECT, "description": "x" * 6000})
    assert response.status_code == 422 and error_of(response)["field"] == "description"
    assert table_counts(web_app) == before


@pytest.mark.parametrize("name", ["../../etc/passwd", "..", "a/b", "C:\\Windows\\x", "/abs", "tab\nweld", ""])
def test_path_like_names_are_422(alice, web_app, ids, name):
    storage = web_app.extensions["weldsim"].storage_root
    files_before = sorted(storage.rglob("*")) if storage.exists() else []
    before = table_counts(web_app)
    attempts = [
        ("POST", "/api/v1/projects", {**PROJECT, "name": name}, "name"),
        ("PATCH", f"/api/v1/projects/{ids['p']}", {"name": name}, "name"),
        ("POST", f"/api/v1/projects/{ids['p']}/cases", {"name": name, "spec": thermal_spec()}, "name"),
        ("POST", f"/api/v1/projects/{ids['p']}/cases", {"spec": thermal_spec(name=name)}, "spec.name"),
        ("POST", "/api/v1/materials/custom", {"material_id": name, "properties": CUSTOM_PROPERTIES}, "material_id"),
        ("POST", "/api/v1/auth/tokens", {"name": name}, "name"),
    ]
    for method, url, body, field in attempts:
        response = alice.request(method, url, json=body)
        assert response.status_code == 422, (url, body, response.get_json())
        assert error_of(response)["field"] == field, (url, error_of(response))
    assert table_counts(web_app) == before
    assert (sorted(storage.rglob("*")) if storage.exists() else []) == files_before


@pytest.mark.parametrize("path", ["../../../etc/passwd.msh", "/etc/hosts.msh", "horn.msh", "..\\..\\x.step"])
def test_a_spec_naming_a_mesh_path_is_422(alice, web_app, ids, path):
    before = table_counts(web_app)
    spec = thermal_spec(geometry={"kind": "mesh_file", "path": path})
    response = alice.post(f"/api/v1/projects/{ids['p']}/cases", json={"name": "mesh", "spec": spec})
    assert response.status_code == 422 and error_of(response)["field"] == "spec.geometry.kind"
    assert "geometry_version_id" in error_of(response)["message"]
    assert table_counts(web_app) == before


@pytest.mark.parametrize("url", ["/api/v1/projects/abc", "/api/v1/projects/-1", "/api/v1/projects/99999999999999999999",
                                 "/api/v1/projects/1/cases/99999999999999999999",
                                 "/api/v1/materials/builtin/..%2F..%2Fetc%2Fpasswd",
                                 "/api/v1/materials/builtin/../../etc/passwd", "/api/v1/materials/custom/1.5"])
def test_malformed_ids_in_urls_are_404(alice, url):
    response = alice.get(url)
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"
