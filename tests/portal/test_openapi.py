"""The OpenAPI document: generated from the models the API validates with, complete, public."""

from __future__ import annotations

import json
import re

import pytest

from portal.api.cases import CaseCreate
from portal.api.projects import ProjectCreate
from portal.services.materials import CUSTOM_PROPERTIES
from weldsim_hpc.case import CaseSpec

from .conftest import make_app

FLASK_METHODS = {"GET", "POST", "PATCH", "PUT", "DELETE"}


@pytest.fixture
def web_app(tmp_path):
    """The document needs no database: an app on an unused in-memory SQLite."""
    return make_app("sqlite:///:memory:", tmp_path / "instance")


def document(web_app) -> dict:
    response = web_app.test_client().get("/api/v1/openapi.json")  # no credentials needed
    assert response.status_code == 200
    return response.get_json()


def test_every_api_route_is_documented_with_a_unique_operation_id(web_app):
    doc = document(web_app)
    assert doc["openapi"].startswith("3.1") and doc["info"]["title"] == "WeldSim HPC portal API"
    routes = set()
    for rule in web_app.url_map.iter_rules():
        if rule.rule.startswith("/api/") and rule.endpoint != "openapi_json":
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
            routes |= {(path, m.lower()) for m in rule.methods & FLASK_METHODS}
    documented = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert routes == documented
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_every_reference_resolves(web_app):
    doc = document(web_app)
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(doc)))
    assert refs and refs <= set(doc["components"]["schemas"])


def test_request_schemas_are_the_validating_models(web_app):
    schemas = document(web_app)["components"]["schemas"]
    create = schemas["ProjectCreate"]
    assert set(create["properties"]) == set(ProjectCreate.model_fields)
    assert create["additionalProperties"] is False and set(create["required"]) == {"name", "application_type"}
    assert schemas["ApplicationType"]["enum"] == ["li_battery_tab", "general_metal", "horn_design"]
    # the case document is weldsim_hpc's CaseSpec, with its sub-models as components
    spec = schemas["CaseCreate"]["properties"]["spec"]
    assert set(spec["properties"]) == set(CaseSpec.model_fields)
    assert spec["properties"]["analysis"]["enum"] == CaseSpec.model_json_schema()["properties"]["analysis"]["enum"]
    assert {"SteppedHorn", "TabStackParams", "ConvectionBC", "SolverSettings"} <= set(schemas)
    assert set(CaseCreate.model_fields) == set(schemas["CaseCreate"]["properties"])
    assert set(schemas["MaterialProperties"]["properties"]) == set(CUSTOM_PROPERTIES)


def test_errors_and_security_are_described(web_app):
    doc = document(web_app)
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "session"}
    assert doc["components"]["schemas"]["ErrorBody"]["required"] == ["code", "message"]
    create = doc["paths"]["/api/v1/projects"]["post"]
    assert create["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorEnvelope")
    assert create["security"] == [{"bearer": []}, {"session": []}]
    assert "security" not in doc["paths"]["/api/v1/auth/login"]["post"]
    deleting = doc["paths"]["/api/v1/projects/{project_id}"]["delete"]
    assert any(p["name"] == "cancel_runs" and p["in"] == "query" for p in deleting["parameters"])
