"""What every /api/v1 blueprint shares: the blueprint factory, the acting user, JSON answers,
page models, and the name type.

A blueprint is a flask-openapi3 APIBlueprint: its views declare pydantic models for
`path`, `query` and `body`, flask-openapi3 validates requests with them (errors become the
envelope of portal.api.errors) and the OpenAPI document is generated from the same models.

Example::

    bp = api_blueprint("projects", "/projects", "Projects: …")

    @bp.get("/<int:project_id>", responses={200: ProjectOut})
    def get_project(path: ProjectPath):
        return json_response(ProjectOut, projects.get_project(db.session, current_user(), path.project_id))
"""

from __future__ import annotations

from typing import Annotated, Any

from flask import Response, g, jsonify
from flask_openapi3 import APIBlueprint, Tag
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from ..models import User
from ..services.errors import Invalid
from ..services.names import check_name
from ..services.pagination import DEFAULT_PER_PAGE, MAX_PER_PAGE, Page
from .errors import ERROR_RESPONSES

API_V1 = "/api/v1"
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "an API token: `flask --app portal tokens create EMAIL`, or POST /api/v1/auth/tokens"},
    "session": {"type": "apiKey", "in": "cookie", "name": "weldsim_session",
                "description": "the browser session from POST /api/v1/auth/login (or /login); "
                               "POST, PATCH, PUT and DELETE also send the X-CSRF-Token header it gave"},
}
SECURITY = [{"bearer": []}, {"session": []}]


def api_blueprint(name: str, prefix: str, description: str, *, tag: str | None = None,
                  public: bool = False) -> APIBlueprint:
    """An APIBlueprint under /api/v1 with the shared error answers and (unless `public`) security.

    Public endpoints must also be listed in portal.api.auth.PUBLIC_ENDPOINTS.
    """
    return APIBlueprint(name, __name__, url_prefix=API_V1 + prefix,
                        abp_tags=[Tag(name=tag or name, description=description)],
                        abp_security=[] if public else SECURITY, abp_responses=ERROR_RESPONSES,
                        operation_id_callback=operation_id)


def operation_id(*, name: str = "", path: str = "", method: str = "", bp_name: str = "") -> str:
    """OpenAPI operationId = the view's name (list_projects, create_case …): unique across the API."""
    return name


def current_user() -> User:
    """The user of this request (set by portal.api.auth before any view runs)."""
    user = g.get("user")
    if user is None:  # a view reached without authentication: a wiring mistake, not a user error
        raise RuntimeError("no authenticated user: is this endpoint missing from the auth hook?")
    return user


def json_response(model: type[BaseModel], obj: Any, status: int = 200, **headers: str) -> Response:
    """`obj` (a model row or a dict) rendered through the response model `model`."""
    data = model.model_validate(obj, from_attributes=True).model_dump(mode="json", warnings=False)
    response = jsonify(data)
    response.status_code = status
    response.headers.update(headers)
    return response


def no_content() -> Response:
    return Response(status=204)


def page_model(item: type[BaseModel]) -> type[BaseModel]:
    """{"items": [item], "page", "per_page", "total"} named <Item>Page."""
    return create_model(f"{item.__name__.removesuffix('Out')}Page", __config__=ConfigDict(from_attributes=True),
                        items=(list[item], ...), page=(int, ...), per_page=(int, ...),
                        total=(int, Field(description="items on all pages")))


def page_response(model: type[BaseModel], page: Page) -> Response:
    return json_response(model, {"items": page.items, "page": page.page, "per_page": page.per_page,
                                 "total": page.total})


class Strict(BaseModel):
    """Request models: unknown fields are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class PageQuery(Strict):
    page: int = Field(1, ge=1, description="page number, from 1")
    per_page: int = Field(DEFAULT_PER_PAGE, ge=1, le=MAX_PER_PAGE,
                          description=f"items per page (at most {MAX_PER_PAGE})")


def _name(value: str) -> str:
    try:
        return check_name(value)
    except Invalid as exc:
        raise ValueError(exc.message) from None


Name = Annotated[str, Field(max_length=200, description="a label: no '/', '\\' or control characters"),
                 AfterValidator(_name)]


def changes_of(body: BaseModel, nullable: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields a PATCH body sets; null only where `nullable` allows it."""
    changes = {key: getattr(body, key) for key in body.model_fields_set}
    for key, value in changes.items():
        if value is None and key not in nullable:
            raise Invalid("must not be null (leave the field out to keep it)", field=key)
    return changes
