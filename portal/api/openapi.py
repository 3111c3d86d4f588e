"""GET /api/v1/openapi.json: the OpenAPI 3.1 document flask-openapi3 generates from the
pydantic models the views validate with (no hand-written schema). Public, like any
API's description; `flask --app portal openapi` prints it too.
"""

from __future__ import annotations

from flask import current_app, jsonify
from flask_openapi3 import Info, OpenAPI

from .common import API_V1, SECURITY_SCHEMES
from .errors import ErrorEnvelope

INFO = Info(title="WeldSim HPC portal API", version="1",
            description="Projects, materials and simulation cases of WeldSim HPC. Errors: "
                        '{"error": {"code", "message", "field"}}. Authenticate with a bearer API token, '
                        "or a browser session plus the X-CSRF-Token header on state-changing requests.")


def app_options() -> dict:
    """The keyword arguments create_app gives OpenAPI(...)."""
    from .errors import validation_error_response

    return {"info": INFO, "security_schemes": SECURITY_SCHEMES, "doc_ui": False,
            "validation_error_status": 422, "validation_error_model": ErrorEnvelope,
            "validation_error_callback": validation_error_response}


def openapi_json():
    return jsonify(current_app.api_doc)


def init_app(app: OpenAPI) -> None:
    app.add_url_rule(f"{API_V1}/openapi.json", endpoint="openapi_json", view_func=openapi_json)
