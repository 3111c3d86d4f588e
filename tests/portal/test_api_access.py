"""Access control: another user's project and everything under it is 404 (never 403, so ids
reveal nothing); an admin sees all; the owner's rows survive the attempts.

The runs API joins by adding its URLs to `private_urls` (run, artifact, stream …): every
entry is tried with every method by another user and must answer 404.
"""

from __future__ import annotations

import pytest

from .helpers import CUSTOM_PROPERTIES, error_of, table_counts, thermal_spec

METHODS = ("GET", "PATCH", "PUT", "DELETE", "POST")


@pytest.fixture
def alices_things(alice):
    project = alice.post("/api/v1/projects", json={"name": "Tab weld", "application_type": "li_battery_tab"}).get_json()
    case = alice.post(f"/api/v1/projects/{project['id']}/cases",
                      json={"name": "thermal", "spec": thermal_spec()}).get_json()
    material = alice.post("/api/v1/materials/custom",
                          json={"material_id": "ti_b", "properties": CUSTOM_PROPERTIES}).get_json()
    token = alice.post("/api/v1/auth/tokens", json={"name": "laptop"}).get_json()
    return {"project": project, "case": case, "material": material, "token": token}


def private_urls(things) -> list[str]:
    """Every URL of a thing that belongs to alice. Runs, artifacts and streams go here too."""
    p, c = things["project"]["id"], things["case"]["id"]
    return [
        f"/api/v1/projects/{p}",
        f"/api/v1/projects/{p}/cases",
        f"/api/v1/projects/{p}/cases/{c}",
        f"/api/v1/materials/custom/{things['material']['id']}",
        f"/api/v1/auth/tokens/{things['token']['id']}",
    ]


def test_another_user_gets_404_for_everything_of_alice(alice, bob, web_app, alices_things):
    before = table_counts(web_app)
    for url in private_urls(alices_things):
        for method in METHODS:
            response = bob.request(method, url, json={"name": "mine now"})
            if response.status_code == 405:  # this method does not exist on this URL for anyone
                assert alice.request(method, url, json={}).status_code == 405
                continue
            assert response.status_code == 404, (method, url, response.get_json())
            assert error_of(response)["code"] == "not_found"
            if method != "GET":  # whatever the body: 404 first
                garbage = bob.request(method, url, data="{not json", content_type="application/json")
                assert garbage.status_code == 404, (method, url)
    assert table_counts(web_app) == before
    assert bob.get("/api/v1/projects").get_json()["total"] == 0
    assert bob.get("/api/v1/materials/custom").get_json()["items"] == []
    assert all(not m["material_id"] == "ti_b" for m in bob.get("/api/v1/materials").get_json()["items"])


def test_a_missing_and_a_foreign_project_look_the_same(bob, alices_things):
    foreign = bob.get(f"/api/v1/projects/{alices_things['project']['id']}")
    missing = bob.get("/api/v1/projects/987654")
    assert foreign.status_code == missing.status_code == 404
    assert error_of(foreign)["message"].replace(str(alices_things["project"]["id"]), "N") == \
        error_of(missing)["message"].replace("987654", "N")


def test_another_users_custom_material_cannot_be_used_in_a_case(bob, alices_things):
    pid = bob.post("/api/v1/projects", json={"name": "Mine", "application_type": "horn_design"}).get_json()["id"]
    response = bob.post(f"/api/v1/projects/{pid}/cases",
                        json={"name": "t", "spec": thermal_spec(materials={"horn": "ti_b"})})
    assert response.status_code == 422 and error_of(response)["field"] == "spec.materials.horn"


def test_an_admin_sees_every_project(admin, alices_things):
    p, c = alices_things["project"]["id"], alices_things["case"]["id"]
    assert admin.get("/api/v1/projects").get_json()["total"] == 1
    assert admin.get(f"/api/v1/projects/{p}").get_json()["name"] == "Tab weld"
    assert admin.get(f"/api/v1/projects/{p}/cases/{c}").status_code == 200
    assert admin.get(f"/api/v1/materials/custom/{alices_things['material']['id']}").status_code == 200
    assert admin.get("/api/v1/materials/custom?all_users=true").get_json()["items"][0]["material_id"] == "ti_b"
    assert admin.patch(f"/api/v1/projects/{p}", json={"description": "checked"}).status_code == 200


def test_all_users_is_only_for_admins(bob, alices_things):
    assert bob.get("/api/v1/materials/custom?all_users=true").get_json()["items"] == []
